//! Backups taken (or under way) and restores.

use serde::{Deserialize, Serialize};

pub use bcm_model::JobStatus;

/// A backup, taken or under way.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupView {
    pub id: u64,
    /// The plan it was taken for, or null for an ad hoc backup.
    pub plan: Option<u64>,
    pub plan_name: Option<String>,
    pub source_node: u64,
    pub paths: Vec<String>,
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    #[schema(value_type = String)]
    pub status: JobStatus,
    pub size_bytes: Option<u64>,
    /// The storage nodes holding it.
    pub storage_nodes: Vec<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Unix milliseconds.
    pub updated_at_ms: u64,
}

/// A restore of a backup onto a node.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestoreView {
    pub id: u64,
    /// The backup restored.
    pub backup: u64,
    pub target_node: u64,
    pub target_path: String,
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    #[schema(value_type = String)]
    pub status: JobStatus,
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Unix milliseconds.
    pub updated_at_ms: u64,
}

crate::optional_fields! {
    /// Either `{"plan": ID}` or `{"source_node": ID, "paths": [...]}`.
    NewBackup {
        plan: u64,
        source_node: u64,
        paths: Vec<String>,
    }
}

/// Where to restore to.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRestore {
    pub target_node: u64,
    pub target_path: String,
}

crate::filters! {
    /// `GET /backups` filters.
    BackupFilter {
        /// The exact id, or part of the plan name or of a path (any case).
        q: String,
        /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
        status: String,
        /// Only backups of this plan.
        plan: u64,
        /// Only backups from, or stored on, this node.
        node: u64,
    }
}

crate::filters! {
    /// `GET /restores` filters.
    RestoreFilter {
        /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
        status: String,
        /// Only restores of this backup.
        backup: u64,
        /// Only restores onto this node.
        node: u64,
    }
}
