//! The backup catalog: plans, backups and restores, whose status changes follow
//! the job's life ([`JobStatus::may_become`]).

use std::collections::BTreeMap;

use super::{conflict, invalid, not_found, take_id, Applied, ClusterState};
use crate::command::{Rejection, Response};
use crate::records::{Attempt, Backup, JobStatus, Millis, Plan, PlanSpec, Restore, StateEvent};

/// What a status change needs of a backup or a restore.
trait Job {
    /// Its status, when that last changed, and the error it reported.
    fn life(&mut self) -> (&mut JobStatus, &mut Millis, &mut Option<String>);
}

impl Job for Backup {
    fn life(&mut self) -> (&mut JobStatus, &mut Millis, &mut Option<String>) {
        (&mut self.status, &mut self.updated_at, &mut self.error)
    }
}

impl Job for Restore {
    fn life(&mut self) -> (&mut JobStatus, &mut Millis, &mut Option<String>) {
        (&mut self.status, &mut self.updated_at, &mut self.error)
    }
}

/// Moves `what` `id` (a backup or a restore, in `jobs`) to status `to` at `at`,
/// with `error` if one is reported, and answers with `changed(job)`; refused when
/// the job does not exist or its life does not allow the change.
fn change_status<J: Job>(
    jobs: &mut BTreeMap<u64, J>,
    what: &str,
    id: u64,
    to: JobStatus,
    error: Option<&str>,
    at: Millis,
    changed: impl FnOnce(&mut J) -> Applied,
) -> Applied {
    let Some(job) = jobs.get_mut(&id) else {
        return not_found(what, id);
    };
    let (status, updated_at, reported) = job.life();
    if !status.may_become(to) {
        return conflict(format!(
            "{what} {id} cannot go from {} to {}",
            status.as_str(),
            to.as_str()
        ));
    }
    (*status, *updated_at) = (to, at);
    if let Some(e) = error {
        *reported = Some(e.to_string());
    }
    changed(job)
}

/// The answer to a command that created, changed or deleted a plan.
fn plan_changed(plan: Plan) -> Applied {
    let event = StateEvent::PlanChanged { plan_id: plan.id };
    Applied::ok(Response::Plan(plan), vec![event])
}

/// The answer to a command that created or changed backup `b`.
pub(super) fn backup_changed(b: Backup) -> Applied {
    let (backup_id, status) = (b.id, b.status);
    let event = StateEvent::BackupChanged { backup_id, status };
    Applied::ok(Response::Backup(Box::new(b)), vec![event])
}

/// The answer to a command that created or changed restore `r`.
pub(super) fn restore_changed(r: Restore) -> Applied {
    let (restore_id, status) = (r.id, r.status);
    let event = StateEvent::RestoreChanged { restore_id, status };
    Applied::ok(Response::Restore(Box::new(r)), vec![event])
}

impl ClusterState {
    /// Refuses a `field` that names a node not registered.
    pub(super) fn check_node(&self, field: &str, node: u64) -> Option<Applied> {
        (!self.nodes.contains_key(&node))
            .then(|| invalid(format!("{field} {node} is not a registered node")))
    }

    fn check_plan(&self, spec: &PlanSpec, id: Option<u64>) -> Option<Applied> {
        if let Some(refused) = self.check_node("source_node", spec.source_node) {
            return Some(refused);
        }
        if self
            .plans
            .values()
            .any(|p| Some(p.id) != id && p.spec.name.eq_ignore_ascii_case(&spec.name))
        {
            return Some(Applied::rejected(Rejection::AlreadyExists {
                what: "plan".into(),
                id: spec.name.clone(),
            }));
        }
        None
    }

    pub(super) fn create_plan(&mut self, spec: &PlanSpec, at: Millis) -> Applied {
        if let Some(refused) = self.check_plan(spec, None) {
            return refused;
        }
        let id = take_id(&mut self.next_plan_id);
        self.put_plan(Plan {
            id,
            spec: spec.clone(),
            created_at: at,
        })
    }

    pub(super) fn update_plan(&mut self, id: u64, spec: &PlanSpec) -> Applied {
        let Some(created_at) = self.plans.get(&id).map(|p| p.created_at) else {
            return not_found("plan", id);
        };
        if let Some(refused) = self.check_plan(spec, Some(id)) {
            return refused;
        }
        self.put_plan(Plan {
            id,
            spec: spec.clone(),
            created_at,
        })
    }

    /// Stores a new plan or a plan's new version.
    fn put_plan(&mut self, plan: Plan) -> Applied {
        self.plans.insert(plan.id, plan.clone());
        plan_changed(plan)
    }

    pub(super) fn delete_plan(&mut self, id: u64) -> Applied {
        match self.plans.remove(&id) {
            Some(plan) => {
                self.plan_slots.remove(&id);
                plan_changed(plan)
            }
            None => not_found("plan", id),
        }
    }

    pub(super) fn create_backup(
        &mut self,
        plan: Option<u64>,
        source_node: Option<u64>,
        paths: &[String],
        slot: Option<Millis>,
        at: Millis,
    ) -> Applied {
        let (plan_name, source_node, paths, replicas) = match plan {
            Some(pid) => match self.plans.get(&pid) {
                Some(p) => (
                    Some(p.spec.name.clone()),
                    p.spec.source_node,
                    p.spec.paths.clone(),
                    p.spec.replicas,
                ),
                None => return not_found("plan", pid),
            },
            None => match source_node {
                Some(n) if !paths.is_empty() => (None, n, paths.to_vec(), 1),
                _ => return invalid("a backup needs a plan, or a source_node and paths"),
            },
        };
        if let Some(refused) = self.check_node("source_node", source_node) {
            return refused;
        }
        let backup = Backup {
            id: take_id(&mut self.next_backup_id),
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
            replicas,
            slot,
            attempt: Attempt::default(),
            progress: None,
            files: None,
            stored_bytes: None,
            finished_at: None,
        };
        self.backups.insert(backup.id, backup.clone());
        backup_changed(backup)
    }

    pub(super) fn set_backup_status(
        &mut self,
        id: u64,
        status: JobStatus,
        size_bytes: Option<u64>,
        storage_nodes: Option<&[u64]>,
        error: Option<&str>,
        at: Millis,
    ) -> Applied {
        change_status(&mut self.backups, "backup", id, status, error, at, |b| {
            if size_bytes.is_some() {
                b.size_bytes = size_bytes;
            }
            if let Some(n) = storage_nodes {
                b.storage_nodes = n.to_vec();
            }
            backup_changed(b.clone())
        })
    }

    pub(super) fn delete_backup(&mut self, id: u64) -> Applied {
        let Some(b) = self.backups.get(&id) else {
            return not_found("backup", id);
        };
        if b.status == JobStatus::Running {
            return conflict(format!("backup {id} is running; cancel it first"));
        }
        if self
            .restores
            .values()
            .any(|r| r.backup == id && matches!(r.status, JobStatus::Pending | JobStatus::Running))
        {
            return conflict(format!("backup {id} is being restored"));
        }
        let b = self.backups.remove(&id).expect("checked above");
        let event = StateEvent::BackupDeleted { backup_id: id };
        Applied::ok(Response::Backup(Box::new(b)), vec![event])
    }

    /// Only a succeeded backup can be restored, and only to a registered node.
    fn check_restore(&self, backup: u64, target_node: u64) -> Option<Applied> {
        let Some(b) = self.backups.get(&backup) else {
            return Some(not_found("backup", backup));
        };
        if b.status != JobStatus::Succeeded {
            return Some(conflict(format!(
                "backup {backup} is {}: only a succeeded backup can be restored",
                b.status.as_str()
            )));
        }
        self.check_node("target_node", target_node)
    }

    pub(super) fn create_restore(
        &mut self,
        backup: u64,
        target_node: u64,
        target_path: &str,
        (overwrite, include): (bool, Option<&str>),
        at: Millis,
    ) -> Applied {
        if let Some(refused) = self.check_restore(backup, target_node) {
            return refused;
        }
        let r = Restore {
            id: take_id(&mut self.next_restore_id),
            backup,
            target_node,
            target_path: target_path.into(),
            status: JobStatus::Pending,
            error: None,
            created_at: at,
            updated_at: at,
            overwrite,
            include: include.map(str::to_string),
            attempt: Attempt::default(),
            progress: None,
            files: None,
            bytes: None,
            finished_at: None,
        };
        self.restores.insert(r.id, r.clone());
        restore_changed(r)
    }

    pub(super) fn set_restore_status(
        &mut self,
        id: u64,
        status: JobStatus,
        error: Option<&str>,
        at: Millis,
    ) -> Applied {
        change_status(&mut self.restores, "restore", id, status, error, at, |r| {
            restore_changed(r.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, Response};
    use crate::records::{JobStatus, Role, StateEvent};
    use crate::state::fixtures::{initialized, register};

    #[test]
    fn a_restore_reports_each_status_change_as_an_event() {
        let mut s = initialized();
        s.apply(2, &register(1, vec![Role::Storage], 2));
        s.apply(
            3,
            &Command::CreateBackup {
                plan: None,
                source_node: Some(1),
                paths: vec!["/etc".into()],
                at: 3,
            },
        );
        for (i, status) in [JobStatus::Running, JobStatus::Succeeded]
            .into_iter()
            .enumerate()
        {
            s.apply(
                4 + i as u64,
                &Command::SetBackupStatus {
                    id: 1,
                    status,
                    size_bytes: Some(10),
                    storage_nodes: Some(vec![1]),
                    error: None,
                    at: 4,
                },
            );
        }
        let created = s.apply(
            6,
            &Command::CreateRestore {
                backup: 1,
                target_node: 1,
                target_path: "/restore".into(),
                at: 6,
            },
        );
        let Response::Restore(r) = created.response else {
            panic!("{:?}", created.response)
        };
        assert_eq!(
            created.events,
            vec![StateEvent::RestoreChanged {
                restore_id: r.id,
                status: JobStatus::Pending
            }]
        );
        let running = s.apply(
            7,
            &Command::SetRestoreStatus {
                id: r.id,
                status: JobStatus::Running,
                error: None,
                at: 7,
            },
        );
        assert_eq!(
            running.events,
            vec![StateEvent::RestoreChanged {
                restore_id: r.id,
                status: JobStatus::Running
            }]
        );
    }
}
