//! What applying a command changed, for the event stream.

use serde::{Deserialize, Serialize};

use super::catalog::JobStatus;
use super::nodes::NodeStatus;

/// Something that changed, for the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StateEvent {
    ClusterInitialized {
        cluster_id: String,
    },
    NodeRegistered {
        node_id: u64,
    },
    NodeUpdated {
        node_id: u64,
    },
    /// The cluster CA changed, or node certificates are due (records/tls.rs).
    ClusterTlsChanged,
    NodeStatusChanged {
        node_id: u64,
        status: NodeStatus,
    },
    BackupManagerAssigned {
        node_id: u64,
        epoch: u64,
    },
    ConfigChanged {
        key: String,
        version: u64,
    },
    ConfigDeleted {
        key: String,
    },
    UserChanged {
        user_id: u64,
    },
    UserDeleted {
        user_id: u64,
    },
    GroupChanged {
        name: String,
    },
    PlanChanged {
        plan_id: u64,
    },
    BackupChanged {
        backup_id: u64,
        status: JobStatus,
    },
    BackupDeleted {
        backup_id: u64,
    },
    RestoreChanged {
        restore_id: u64,
        status: JobStatus,
    },
}
