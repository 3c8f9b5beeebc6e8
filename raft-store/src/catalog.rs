//! The backup catalog: plans (what to back up), backups (taken or under way) and
//! restores. The backup manager (a later release) acts on it; status changes are
//! commands with legal transitions only.

use serde::{Deserialize, Serialize};

use crate::command::{Millis, Rejection, Response};
use crate::state::{Applied, ClusterState, StateEvent};

/// What to back up, where from, how often, and how many copies to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: u64,
    pub name: String,
    pub source_node: u64,
    pub paths: Vec<String>,
    /// A cron expression (validated by the proposer), or None for on demand only.
    pub schedule: Option<String>,
    pub keep_last: u32,
    pub replicas: u32,
    pub enabled: bool,
    pub created_at: Millis,
}

/// The fields of a plan an operator sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSpec {
    pub name: String,
    pub source_node: u64,
    pub paths: Vec<String>,
    pub schedule: Option<String>,
    pub keep_last: u32,
    pub replicas: u32,
    pub enabled: bool,
}

/// The life of a backup or a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// pending -> running | failed | cancelled; running -> succeeded | failed |
    /// cancelled; the last three are final.
    pub fn may_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Pending, Failed)
                | (Pending, Cancelled)
                | (Running, Succeeded)
                | (Running, Failed)
                | (Running, Cancelled)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub id: u64,
    pub plan: Option<u64>,
    pub plan_name: Option<String>,
    pub source_node: u64,
    pub paths: Vec<String>,
    pub status: JobStatus,
    pub size_bytes: Option<u64>,
    pub storage_nodes: Vec<u64>,
    pub error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub id: u64,
    pub backup: u64,
    pub target_node: u64,
    pub target_path: String,
    pub status: JobStatus,
    pub error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// Refuses a status change the job's life does not allow.
fn check_transition(what: &str, id: u64, from: JobStatus, to: JobStatus) -> Option<Applied> {
    (!from.may_become(to)).then(|| {
        Applied::rejected(Rejection::Conflict(format!(
            "{what} {id} cannot go from {} to {}",
            from.as_str(),
            to.as_str()
        )))
    })
}

fn not_found(what: &str, id: impl ToString) -> Applied {
    Applied::rejected(Rejection::NotFound {
        what: what.into(),
        id: id.to_string(),
    })
}

fn invalid(msg: impl Into<String>) -> Applied {
    Applied::rejected(Rejection::Invalid(msg.into()))
}

impl ClusterState {
    fn check_plan(&self, spec: &PlanSpec, id: Option<u64>) -> Option<Applied> {
        if !self.nodes.contains_key(&spec.source_node) {
            return Some(invalid(format!(
                "source_node {} is not a registered node",
                spec.source_node
            )));
        }
        if self
            .plans
            .values()
            .any(|p| Some(p.id) != id && p.name.eq_ignore_ascii_case(&spec.name))
        {
            return Some(Applied::rejected(Rejection::AlreadyExists {
                what: "plan".into(),
                id: spec.name.clone(),
            }));
        }
        None
    }

    pub(crate) fn create_plan(&mut self, spec: &PlanSpec, at: Millis) -> Applied {
        if let Some(refused) = self.check_plan(spec, None) {
            return refused;
        }
        let id = self.next_plan_id.max(1);
        self.next_plan_id = id + 1;
        let plan = Plan {
            id,
            name: spec.name.clone(),
            source_node: spec.source_node,
            paths: spec.paths.clone(),
            schedule: spec.schedule.clone(),
            keep_last: spec.keep_last,
            replicas: spec.replicas,
            enabled: spec.enabled,
            created_at: at,
        };
        self.plans.insert(id, plan.clone());
        Applied::ok(
            Response::Plan(plan),
            vec![StateEvent::PlanChanged { plan_id: id }],
        )
    }

    pub(crate) fn update_plan(&mut self, id: u64, spec: &PlanSpec) -> Applied {
        let Some(existing) = self.plans.get(&id).cloned() else {
            return not_found("plan", id);
        };
        if let Some(refused) = self.check_plan(spec, Some(id)) {
            return refused;
        }
        let plan = Plan {
            id,
            name: spec.name.clone(),
            source_node: spec.source_node,
            paths: spec.paths.clone(),
            schedule: spec.schedule.clone(),
            keep_last: spec.keep_last,
            replicas: spec.replicas,
            enabled: spec.enabled,
            created_at: existing.created_at,
        };
        self.plans.insert(id, plan.clone());
        Applied::ok(
            Response::Plan(plan),
            vec![StateEvent::PlanChanged { plan_id: id }],
        )
    }

    pub(crate) fn delete_plan(&mut self, id: u64) -> Applied {
        match self.plans.remove(&id) {
            Some(plan) => Applied::ok(
                Response::Plan(plan),
                vec![StateEvent::PlanChanged { plan_id: id }],
            ),
            None => not_found("plan", id),
        }
    }

    pub(crate) fn create_backup(
        &mut self,
        plan: Option<u64>,
        source_node: Option<u64>,
        paths: &[String],
        at: Millis,
    ) -> Applied {
        let (plan_name, source_node, paths) = match plan {
            Some(pid) => match self.plans.get(&pid) {
                Some(p) => (Some(p.name.clone()), p.source_node, p.paths.clone()),
                None => return not_found("plan", pid),
            },
            None => match source_node {
                Some(n) if !paths.is_empty() => (None, n, paths.to_vec()),
                _ => return invalid("a backup needs a plan, or a source_node and paths"),
            },
        };
        if !self.nodes.contains_key(&source_node) {
            return invalid(format!(
                "source_node {source_node} is not a registered node"
            ));
        }
        let id = self.next_backup_id.max(1);
        self.next_backup_id = id + 1;
        let backup = Backup {
            id,
            plan,
            plan_name,
            source_node,
            paths,
            status: JobStatus::Pending,
            size_bytes: None,
            storage_nodes: Vec::new(),
            error: None,
            created_at: at,
            updated_at: at,
        };
        self.backups.insert(id, backup.clone());
        Applied::ok(
            Response::Backup(backup),
            vec![StateEvent::BackupChanged {
                backup_id: id,
                status: JobStatus::Pending,
            }],
        )
    }

    pub(crate) fn set_backup_status(
        &mut self,
        id: u64,
        status: JobStatus,
        size_bytes: Option<u64>,
        storage_nodes: Option<&[u64]>,
        error: Option<&str>,
        at: Millis,
    ) -> Applied {
        let Some(b) = self.backups.get_mut(&id) else {
            return not_found("backup", id);
        };
        if let Some(refused) = check_transition("backup", id, b.status, status) {
            return refused;
        }
        b.status = status;
        b.updated_at = at;
        if size_bytes.is_some() {
            b.size_bytes = size_bytes;
        }
        if let Some(n) = storage_nodes {
            b.storage_nodes = n.to_vec();
        }
        if let Some(e) = error {
            b.error = Some(e.to_string());
        }
        let b = b.clone();
        Applied::ok(
            Response::Backup(b),
            vec![StateEvent::BackupChanged {
                backup_id: id,
                status,
            }],
        )
    }

    pub(crate) fn delete_backup(&mut self, id: u64) -> Applied {
        let Some(b) = self.backups.get(&id) else {
            return not_found("backup", id);
        };
        if b.status == JobStatus::Running {
            return Applied::rejected(Rejection::Conflict(format!(
                "backup {id} is running; cancel it first"
            )));
        }
        if self
            .restores
            .values()
            .any(|r| r.backup == id && matches!(r.status, JobStatus::Pending | JobStatus::Running))
        {
            return Applied::rejected(Rejection::Conflict(format!(
                "backup {id} is being restored"
            )));
        }
        let b = self.backups.remove(&id).expect("checked above");
        Applied::ok(
            Response::Backup(b),
            vec![StateEvent::BackupDeleted { backup_id: id }],
        )
    }

    pub(crate) fn create_restore(
        &mut self,
        backup: u64,
        target_node: u64,
        target_path: &str,
        at: Millis,
    ) -> Applied {
        let Some(b) = self.backups.get(&backup) else {
            return not_found("backup", backup);
        };
        if b.status != JobStatus::Succeeded {
            return Applied::rejected(Rejection::Conflict(format!(
                "backup {backup} is {}: only a succeeded backup can be restored",
                b.status.as_str()
            )));
        }
        if !self.nodes.contains_key(&target_node) {
            return invalid(format!(
                "target_node {target_node} is not a registered node"
            ));
        }
        let id = self.next_restore_id.max(1);
        self.next_restore_id = id + 1;
        let r = Restore {
            id,
            backup,
            target_node,
            target_path: target_path.into(),
            status: JobStatus::Pending,
            error: None,
            created_at: at,
            updated_at: at,
        };
        self.restores.insert(id, r.clone());
        Applied::ok(
            Response::Restore(r),
            vec![StateEvent::RestoreChanged {
                restore_id: id,
                status: JobStatus::Pending,
            }],
        )
    }

    pub(crate) fn set_restore_status(
        &mut self,
        id: u64,
        status: JobStatus,
        error: Option<&str>,
        at: Millis,
    ) -> Applied {
        let Some(r) = self.restores.get_mut(&id) else {
            return not_found("restore", id);
        };
        if let Some(refused) = check_transition("restore", id, r.status, status) {
            return refused;
        }
        r.status = status;
        r.updated_at = at;
        if let Some(e) = error {
            r.error = Some(e.to_string());
        }
        let r = r.clone();
        Applied::ok(
            Response::Restore(r),
            vec![StateEvent::RestoreChanged {
                restore_id: id,
                status,
            }],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::{self, *};

    #[test]
    fn only_legal_transitions() {
        assert!(Pending.may_become(Running));
        assert!(Running.may_become(Succeeded));
        for done in [Succeeded, Failed, Cancelled] {
            for next in JobStatus::ALL {
                assert!(!done.may_become(next), "{done:?} -> {next:?}");
            }
        }
        assert!(!Running.may_become(Pending));
        assert!(!Pending.may_become(Succeeded));
    }
}
