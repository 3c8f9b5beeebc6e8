//! The node registry: what each node does and how it is reached.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use bcm_model::{NodeStatus, Role};

/// A node registry record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: u64,
    pub name: String,
    pub api_addr: String,
    pub rpc_addr: String,
    /// Any of `manager`, `backup-manager`, `storage`.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    pub enabled: bool,
    pub labels: BTreeMap<String, String>,
    /// `up`, `down`, `joining` or `removed`.
    #[schema(value_type = String)]
    pub status: NodeStatus,
    /// In maintenance (`bcm nodes drain`): it hands leadership to another voter
    /// and is not given the backup-manager role.
    #[serde(default)]
    pub maintenance: bool,
}

/// A decommissioned node.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Removed {
    pub id: u64,
    /// Always `removed`.
    #[schema(value_type = String)]
    pub status: NodeStatus,
}

/// A node to pre-register; it joins when it starts with this id.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    /// Unique, positive.
    #[schema(minimum = 1)]
    pub id: u64,
    /// Defaults to `node-<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
    /// An http(s) URL.
    pub api_addr: String,
    /// An http(s) URL.
    pub rpc_addr: String,
    /// At least one of `manager`, `backup-manager`, `storage`.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub roles: Vec<String>,
}

crate::optional_fields! {
    /// Changes to a node; absent fields stay as they are.
    UpdateNode {
        /// At least one of `manager`, `backup-manager`, `storage`.
        #[schema(min_items = 1)]
        roles: Vec<String>,
        enabled: bool,
        /// Replaces all labels: at most 64, keys 1 to 64 characters, values up to 256.
        labels: BTreeMap<String, String>,
        /// Maintenance on: leadership and the backup-manager role move to other
        /// nodes (drain); off: the node may hold them again.
        maintenance: bool,
    }
}

crate::filters! {
    /// `GET /nodes` filters.
    NodeFilter {
        /// Part of the name (any case), or the exact id.
        q: String,
        /// `manager`, `backup-manager` or `storage`.
        #[param(pattern = "^(manager|backup-manager|storage)$")]
        role: String,
        /// `up`, `down`, `joining` or `removed`.
        status: String,
        enabled: bool,
    }
}
