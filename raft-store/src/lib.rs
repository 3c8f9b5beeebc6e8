//! bcm's Raft storage: the log, snapshot and metadata on disk, behind openraft's traits.
//!
//! What is stored (the commands and the state they build) is `bcm-model`'s; this
//! crate re-exports what the node uses of it, so that one dependency serves. Knows
//! nothing of HTTP.

pub mod budget;
pub mod engine;
pub mod history;
pub mod samples;
pub mod space;
pub mod state_machine;
pub mod store;
pub mod types;
pub mod wal;

pub use bcm_model::records::tls;
pub use bcm_model::{codec, limits};
pub use bcm_model::{
    Attempt, AuditEntry, AuditOutcome, AuditRecord, Backup, BackupManager, ClusterState, Command,
    ConfigEntry, Group, JobRef, JobStatus, Millis, NodeInfo, NodePatch, NodeRecord, NodeStatus,
    Outcome, PermissionSet, Plan, PlanSpec, Progress, Rejection, Response, Restore, Role,
    StateEvent, User, BUILTIN_GROUPS, PERMISSIONS,
};
pub use budget::AppendBudget;
pub use history::{read_history, HeldDir, HistoryError, LocalHistory};
pub use state_machine::{
    reseeded_term, seed_from_export, StateHandle, StateMachineData, StateMachineStore,
};
pub use store::LogStore;
pub use types::*;
