//! Events a client can follow on `GET /api/v1/events`.

use bcm_raft_store::{NodeId, StateEvent};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ClusterEvent {
    /// Seen by this node's Raft instance.
    LeaderChanged {
        leader_id: Option<NodeId>,
        term: u64,
    },
    /// Applied to the replicated state.
    State(StateEvent),
}

impl ClusterEvent {
    /// The SSE `event:` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterEvent::LeaderChanged { .. } => "leader_changed",
            ClusterEvent::State(s) => match s {
                StateEvent::ClusterInitialized { .. } => "cluster_initialized",
                StateEvent::NodeRegistered { .. } => "node_registered",
                StateEvent::NodeUpdated { .. } => "node_updated",
                StateEvent::NodeStatusChanged { .. } => "node_status_changed",
                StateEvent::BackupManagerAssigned { .. } => "backup_manager_assigned",
                StateEvent::ConfigChanged { .. } => "config_changed",
                StateEvent::ConfigDeleted { .. } => "config_deleted",
                StateEvent::UserChanged { .. } => "user_changed",
                StateEvent::UserDeleted { .. } => "user_deleted",
                StateEvent::GroupChanged { .. } => "group_changed",
                StateEvent::PlanChanged { .. } => "plan_changed",
                StateEvent::BackupChanged { .. } => "backup_changed",
                StateEvent::BackupDeleted { .. } => "backup_deleted",
                StateEvent::RestoreChanged { .. } => "restore_changed",
                StateEvent::ClusterTlsChanged => "cluster_tls_changed",
            },
        }
    }
}
