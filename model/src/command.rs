//! Commands proposed through Raft and the responses `apply` gives back.
//!
//! Everything nondeterministic (timestamps, generated ids and keys, password hashes)
//! is computed by the proposer and carried inside the command, so that applying the
//! same log gives the same state on every node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::tls::ClusterCa;
use crate::records::{
    AuditEntry, AuditOutcome, Backup, ConfigEntry, Group, JobRef, JobStatus, Millis, NodeRecord,
    NodeStatus, Outcome, Plan, PlanSpec, Progress, Restore, Role, User,
};

/// What a node tells the cluster about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: u64,
    pub name: String,
    pub api_addr: String,
    pub rpc_addr: String,
    pub roles: Vec<Role>,
}

/// A change to one node's operator-controlled settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePatch {
    pub roles: Option<Vec<Role>>,
    pub enabled: Option<bool>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// A state change, proposed through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Formation: sets the cluster id, the token signing key and the `admin` user.
    /// Applied once; later copies are refused with [`Rejection::AlreadyInitialized`].
    InitCluster {
        cluster_id: String,
        token_key: Vec<u8>,
        admin_password_hash: String,
        at: Millis,
    },
    /// A node announces its addresses and roles (at start-up, on every restart).
    RegisterNode {
        info: NodeInfo,
        at: Millis,
    },
    /// An operator pre-registers a node that will join later.
    AddNode {
        info: NodeInfo,
        at: Millis,
    },
    /// An operator changes roles, enablement or labels of a node.
    UpdateNode {
        id: u64,
        patch: NodePatch,
    },
    /// The cluster manager records a node's health as it sees it.
    SetNodeStatus {
        id: u64,
        status: NodeStatus,
        at: Millis,
    },
    /// The cluster manager hands the backup-manager role to `node_id` with `epoch`,
    /// which must be exactly one more than the current epoch (fencing).
    AssignBackupManager {
        node_id: u64,
        epoch: u64,
        at: Millis,
    },
    /// Sets a cluster-wide setting; with `if_version` only when the current version
    /// matches (`Some(0)`: only when the key does not exist).
    PutConfig {
        key: String,
        value_json: String,
        if_version: Option<u64>,
        at: Millis,
    },
    /// Removes a setting; with `if_version` only when the current version matches.
    DeleteConfig {
        key: String,
        if_version: Option<u64>,
    },
    /// Adds a user; `password_hash` is argon2id, computed by the proposer.
    CreateUser {
        name: String,
        password_hash: String,
        groups: Vec<String>,
        at: Millis,
    },
    /// Changes a user; a new password or disabling ends its earlier tokens.
    UpdateUser {
        id: u64,
        enabled: Option<bool>,
        password_hash: Option<String>,
        groups: Option<Vec<String>>,
    },
    DeleteUser {
        id: u64,
    },
    /// Creates (`create`) or replaces the permissions of a custom group.
    PutGroup {
        name: String,
        permissions: std::collections::BTreeSet<String>,
        create: bool,
    },
    DeleteGroup {
        name: String,
    },
    CreatePlan {
        spec: PlanSpec,
        at: Millis,
    },
    UpdatePlan {
        id: u64,
        spec: PlanSpec,
    },
    DeletePlan {
        id: u64,
    },
    /// Starts a backup, from a plan or ad hoc (`source_node` and `paths`).
    CreateBackup {
        plan: Option<u64>,
        source_node: Option<u64>,
        paths: Vec<String>,
        at: Millis,
    },
    /// The backup manager reports progress; only legal transitions apply.
    SetBackupStatus {
        id: u64,
        status: JobStatus,
        size_bytes: Option<u64>,
        storage_nodes: Option<Vec<u64>>,
        error: Option<String>,
        at: Millis,
    },
    DeleteBackup {
        id: u64,
    },
    CreateRestore {
        backup: u64,
        target_node: u64,
        target_path: String,
        at: Millis,
    },
    SetRestoreStatus {
        id: u64,
        status: JobStatus,
        error: Option<String>,
        at: Millis,
    },
    /// Several commands in one log entry, applied in order, each as if alone
    /// (answered with [`Response::Batch`], one response each). The leader batches
    /// the writes that arrive while its log is busy, so one append and one fsync
    /// carry many. Commands that write the same config key never share a batch:
    /// a key's version is the log index of its last write (a second one is refused
    /// with [`Rejection::Conflict`]). A batch inside a batch is refused.
    Batch(#[serde(deserialize_with = "crate::codec::nested")] Vec<Command>),
    /// Logging out: the bearer token whose signature is `token_id` is refused from
    /// now on, until it would have expired anyway (`expires_at`, Unix seconds).
    /// Revocations that expired by `at` are forgotten. (Appended last: a command's
    /// position is its encoding.)
    RevokeToken {
        token_id: String,
        expires_at: u64,
        at: Millis,
    },
    /// A restore as the API asks for it today (with `overwrite` and `include`);
    /// [`Command::CreateRestore`] stays for logs written before.
    RequestRestore {
        backup: u64,
        target_node: u64,
        target_path: String,
        overwrite: bool,
        include: Option<String>,
        at: Millis,
    },
    /// The backup manager of `epoch` starts attempt `attempt` of `job`: a pending
    /// job (attempt 1), or a running one it takes over from an attempt that will
    /// not finish (the role moved, the node running it died). For a backup,
    /// `nodes` are the storage nodes its replicas go to; for a restore, nothing.
    StartJob {
        job: JobRef,
        epoch: u64,
        attempt: u32,
        nodes: Vec<u64>,
        at: Millis,
    },
    /// How far the running attempt has come.
    JobProgress {
        job: JobRef,
        epoch: u64,
        attempt: u32,
        progress: Progress,
        at: Millis,
    },
    /// The running attempt ended, as `outcome` says. (Attempt 0 with a failure:
    /// the backup manager gives up on a pending job it cannot start.)
    FinishJob {
        job: JobRef,
        epoch: u64,
        attempt: u32,
        outcome: Outcome,
        at: Millis,
    },
    /// The backup manager of `epoch` runs plan `plan`'s scheduled slot `slot`: a
    /// backup for it, unless the plan already ran for this slot or a later one
    /// (so slots missed while nobody held the role run once, as the latest).
    RunSlot {
        plan: u64,
        slot: Millis,
        epoch: u64,
        at: Millis,
    },
    /// A verify re-created a succeeded backup's replica that was on `from` (a
    /// node down or gone) on storage node `to`: the catalog now places it there.
    /// Refused unless `epoch` is the current backup manager's.
    MoveReplica {
        backup: u64,
        from: u64,
        to: u64,
        epoch: u64,
        at: Millis,
    },
    /// Puts node `node` into maintenance (`on`) or takes it out: a node in
    /// maintenance hands leadership over and is not given the backup-manager role.
    SetMaintenance {
        node: u64,
        on: bool,
        at: Millis,
    },
    /// Adds a cluster CA. Without `retire_previous_at` it is the CA the cluster
    /// formed with, applied only while there is none (a later copy changes
    /// nothing). With it, a rotation: the new CA issues from now on, and the CAs
    /// before it stay trusted until then (the overlap).
    AddClusterCa {
        ca: ClusterCa,
        retire_previous_at: Option<Millis>,
        at: Millis,
    },
    /// Every node renews a certificate issued before `at` (`bcm certs rotate`).
    RenewNodeCerts {
        at: Millis,
    },
    /// A write someone asked for: `inner` is applied as if alone (and answered
    /// with its own response), and one audit record of `entry` is written with
    /// its outcome, refused or not, in the same log entry. An inner batch or
    /// audit command is refused, and no record written.
    Audited {
        entry: AuditEntry,
        inner: Box<Command>,
    },
    /// An audit record of something that is no write of its own (a login, a
    /// failed one, a request refused before anything was proposed).
    Audit {
        entry: AuditEntry,
        outcome: AuditOutcome,
    },
}

impl Command {
    /// The config key this command writes, if it writes one.
    pub fn config_key(&self) -> Option<&str> {
        match self {
            Command::PutConfig { key, .. } | Command::DeleteConfig { key, .. } => Some(key),
            Command::Audited { inner, .. } => inner.config_key(),
            _ => None,
        }
    }
}

/// Why a command changed nothing. Part of the replicated result, so it is the same on
/// every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("the cluster is already initialized")]
    AlreadyInitialized,
    #[error("the cluster is not initialized yet")]
    NotInitialized,
    #[error("{what} {id} does not exist")]
    NotFound { what: String, id: String },
    #[error("{what} {id} already exists")]
    AlreadyExists { what: String, id: String },
    #[error(
        "version mismatch: expected {expected}, current {}",
        .current.map_or("none (the key does not exist)".to_string(), |c| c.to_string())
    )]
    VersionMismatch { expected: u64, current: Option<u64> },
    #[error("stale epoch {proposed}: the current backup-manager epoch is {current}")]
    StaleEpoch { proposed: u64, current: u64 },
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// A quota on what the replicated state holds (see `limits::quota`).
    #[error("quota {quota} reached: at most {limit} {detail}")]
    QuotaExceeded {
        quota: String,
        limit: u64,
        detail: String,
    },
}

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Response {
    /// A blank or membership entry, or a command with nothing to return.
    #[default]
    Done,
    Config(ConfigEntry),
    Node(NodeRecord),
    User(User),
    Group(Group),
    Plan(Plan),
    /// (Boxed: a backup is the largest answer. postcard encodes a box as what it
    /// holds, so the encoding is the same.)
    Backup(Box<Backup>),
    Restore(Box<Restore>),
    Rejected(Rejection),
    /// The responses to a [`Command::Batch`], in order.
    Batch(#[serde(deserialize_with = "crate::codec::nested")] Vec<Response>),
}
