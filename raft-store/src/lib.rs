//! bcm's replicated state: the commands, the deterministic state machine, and the
//! Raft storage (an append-only log file, sled for the vote and snapshots). Knows
//! nothing of HTTP.

pub mod access;
pub mod catalog;
pub mod codec;
pub mod command;
pub mod engine;
pub mod limits;
pub mod pg;
pub mod state;
pub mod store;
pub mod types;
pub mod wal;

pub use access::{Group, PermissionSet, BUILTIN_GROUPS, PERMISSIONS};
pub use catalog::{Backup, JobStatus, Plan, PlanSpec, Restore};
pub use command::{Command, Millis, NodeInfo, NodePatch, Rejection, Response};
pub use state::{
    BackupManager, ClusterState, ConfigEntry, NodeRecord, NodeStatus, Role, StateEvent, User,
};
pub use store::{seed_from_export, LogStore, StateHandle, StateMachineData, StateMachineStore};
pub use types::*;
