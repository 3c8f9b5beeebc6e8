//! The backup catalog: plans (what to back up), backups (taken or under way) and
//! restores. The backup manager acts on it; status changes are commands with
//! legal transitions only (applied in `state/catalog.rs` and `state/jobs.rs`).

use serde::{Deserialize, Serialize};

use super::jobs::{Attempt, Progress};
use super::time::Millis;

/// What to back up, where from, how often, and how many copies to keep: the
/// operator's [`PlanSpec`] with the id and creation time the cluster gave it.
/// (postcard writes a nested struct as its fields in order, so this encodes as
/// the nine fields it is.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: u64,
    pub spec: PlanSpec,
    pub created_at: Millis,
}

/// The fields of a plan an operator sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSpec {
    pub name: String,
    pub source_node: u64,
    pub paths: Vec<String>,
    /// A cron expression (validated by the proposer), or None for on demand only.
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
    /// Logical bytes read (set when it succeeded).
    pub size_bytes: Option<u64>,
    /// The storage nodes its replicas go to (chosen when it starts) or are on.
    pub storage_nodes: Vec<u64>,
    pub error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Replicas wanted: the plan's, 1 for a backup on demand without a plan.
    pub replicas: u32,
    /// The scheduled slot it was taken for; None when started on demand.
    pub slot: Option<Millis>,
    pub attempt: Attempt,
    pub progress: Option<Progress>,
    pub files: Option<u64>,
    /// New bytes it added to a store (after dedup and compression).
    pub stored_bytes: Option<u64>,
    pub finished_at: Option<Millis>,
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
    /// Write into a non-empty target.
    pub overwrite: bool,
    /// Only this path of the backup (and what is below it).
    pub include: Option<String>,
    pub attempt: Attempt,
    pub progress: Option<Progress>,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    pub finished_at: Option<Millis>,
}

#[cfg(test)]
mod tests {
    use super::JobStatus::{self, *};
    use super::{Plan, PlanSpec};
    use crate::codec;

    #[test]
    fn a_plan_encodes_as_its_nine_fields_in_order() {
        let plan = Plan {
            id: 3,
            spec: PlanSpec {
                name: "etc-nightly".into(),
                source_node: 2,
                paths: vec!["/etc".into(), "/srv".into()],
                schedule: Some("0 3 * * *".into()),
                keep_last: 7,
                replicas: 2,
                enabled: true,
            },
            created_at: 1_700_000_000_000,
        };
        let s = &plan.spec;
        // The layout from before `Plan` held a `PlanSpec`: snapshots and logs
        // written then must read the same.
        let flat = (
            (plan.id, &s.name, s.source_node, &s.paths, &s.schedule),
            (s.keep_last, s.replicas, s.enabled, plan.created_at),
        );
        let bytes = codec::encode(&plan).unwrap();
        assert_eq!(bytes, codec::encode(&flat).unwrap());
        assert_eq!(codec::decode::<Plan>(&bytes).unwrap(), plan);
    }

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
