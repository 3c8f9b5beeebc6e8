//! The node registry's records, and who holds the backup-manager role.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::time::Millis;

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// May vote and become the Raft leader (the cluster manager).
    Manager,
    /// May hold the backup-manager role.
    BackupManager,
    /// Runs backup and restore jobs and keeps backup data.
    Storage,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Manager, Role::BackupManager, Role::Storage];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::BackupManager => "backup-manager",
            Role::Storage => "storage",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A node's health as the cluster manager last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    Up,
    Down,
    Joining,
    Removed,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Up => "up",
            NodeStatus::Down => "down",
            NodeStatus::Joining => "joining",
            NodeStatus::Removed => "removed",
        }
    }
}

/// One entry of the node registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: u64,
    pub name: String,
    pub api_addr: String,
    pub rpc_addr: String,
    pub roles: Vec<Role>,
    pub enabled: bool,
    pub labels: BTreeMap<String, String>,
    pub status: NodeStatus,
    pub registered_at: Millis,
    pub status_since: Millis,
}

impl NodeRecord {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Who holds the backup-manager role, with its fencing epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManager {
    pub node_id: u64,
    pub epoch: u64,
    pub since: Millis,
}
