//! The Raft group, its members and the health endpoints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::nodes::{NodeStatus, Role};

/// The Raft group as the answering node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// Set once when the cluster is formed; null while forming.
    pub cluster_id: Option<String>,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    #[serde(default)]
    pub last_applied: u64,
    /// The last log index in this node's latest snapshot.
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// The node that answered.
    pub this_node_id: u64,
    pub backup_manager: Option<BackupManagerView>,
    pub members: Vec<MemberView>,
    /// The leader's snapshot export to PostgreSQL; null when `[postgres]` is not
    /// configured (or no leader answered).
    #[serde(default)]
    pub snapshot_export: Option<SnapshotExportView>,
}

impl ClusterView {
    pub fn member(&self, id: u64) -> Option<&MemberView> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// One member as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    pub id: u64,
    pub name: String,
    /// Where clients reach its HTTP API.
    pub api_addr: String,
    /// Where peers reach it (Raft).
    pub rpc_addr: String,
    /// A Raft voter (role `manager`) or a learner.
    pub voter: bool,
    /// Any of `manager`, `backup-manager`, `storage`.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    /// `up`, `down`, `joining` or `removed`.
    #[schema(value_type = String)]
    pub status: NodeStatus,
    pub enabled: bool,
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since the leader last heard from it (null unless asked of the
    /// leader, or never heard).
    pub last_contact_ms: Option<u64>,
    /// The last log index the leader knows it holds.
    pub matched_index: Option<u64>,
    /// In maintenance (`bcm nodes drain`): it hands leadership to another voter
    /// and is not given the backup-manager role.
    #[serde(default)]
    pub maintenance: bool,
}

/// The leader's export to PostgreSQL.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotExportView {
    /// The log index of the newest state Postgres holds (null: none exported yet).
    pub last_index: Option<u64>,
    /// When the last export succeeded (RFC 3339 UTC).
    pub last_at: Option<String>,
    /// Why the last attempt failed; null once an export succeeds.
    pub last_error: Option<String>,
    /// This node's applied index minus `last_index`.
    pub lag: u64,
}

/// Which node holds the backup-manager role, and its fencing epoch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupManagerView {
    pub node_id: u64,
    /// Grows every time the role moves.
    pub epoch: u64,
    /// Unix milliseconds.
    pub since_ms: u64,
}

/// The index of the snapshot taken.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotTaken {
    pub snapshot_index: u64,
}

/// A digest of this node's replicated state and the log index it holds: nodes
/// that applied the same index hold the same state, so their digests match.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateDigest {
    pub node_id: u64,
    pub applied_index: u64,
    /// BLAKE3 of the state's encoding, in hex.
    pub digest: String,
}

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (healthz) or `ready` (readyz).
    pub status: String,
}

/// Who leads, as the answering node knows it (`/leader`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaderView {
    pub leader_id: Option<u64>,
    pub term: u64,
    /// The node that answered.
    pub node_id: u64,
}
