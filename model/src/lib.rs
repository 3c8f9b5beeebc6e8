//! bcm's replicated model: records, commands, the deterministic state machine, codec, limits.
//!
//! The files import one way: `records` (plain data) imports nothing of the rest;
//! `command` (what is proposed and what applying returns) imports the records;
//! `state` (`ClusterState` and its transitions) imports both. `codec` and `limits`
//! import nothing; `samples` (values of every kind, for tests) imports the rest.

pub mod codec;
pub mod command;
pub mod limits;
pub mod records;
pub mod samples;
pub mod state;

pub use command::{Command, NodeInfo, NodePatch, Rejection, Response};
pub use records::{
    Attempt, AuditEntry, AuditLog, AuditOutcome, AuditRecord, Backup, BackupManager, ConfigEntry,
    ConfigMap, Group, JobRef, JobStatus, Millis, NodeRecord, NodeStatus, Outcome, PermissionSet,
    Plan, PlanSpec, Progress, Restore, RevokedTokens, Role, StateEvent, User, BUILTIN_GROUPS,
    PERMISSIONS,
};
pub use state::{Applied, ClusterState};
