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
    /// Logical bytes read (once it succeeded).
    pub size_bytes: Option<u64>,
    /// The storage nodes holding it (chosen when it starts).
    pub storage_nodes: Vec<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Unix milliseconds.
    pub updated_at_ms: u64,
    /// Replicas wanted.
    #[serde(default)]
    pub replicas: u32,
    /// Files backed up (once it succeeded).
    #[serde(default)]
    pub files: Option<u64>,
    /// New bytes it added to the store after dedup and compression.
    #[serde(default)]
    pub stored_bytes: Option<u64>,
    /// How far it has come while it runs.
    #[serde(default)]
    pub progress: Option<ProgressView>,
    /// Which run it is (1 for the first; more after a restart or a takeover).
    #[serde(default)]
    pub attempt: u32,
    /// The backup-manager epoch of that run.
    #[serde(default)]
    pub epoch: u64,
    /// The scheduled slot it was taken for (Unix ms); null when on demand.
    #[serde(default)]
    pub slot_ms: Option<u64>,
    /// When it ended (Unix ms).
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
}

/// How far a running job has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProgressView {
    pub files_done: u64,
    pub bytes_done: u64,
    /// Known once the source's walk ended (a restore knows them from the start).
    pub files_total: Option<u64>,
    pub bytes_total: Option<u64>,
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
    /// It writes into a non-empty target.
    #[serde(default)]
    pub overwrite: bool,
    /// Only this path of the backup (and what is below it).
    #[serde(default)]
    pub include: Option<String>,
    #[serde(default)]
    pub progress: Option<ProgressView>,
    /// Files and bytes written (once it succeeded).
    #[serde(default)]
    pub files: Option<u64>,
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub attempt: u32,
    /// When it ended (Unix ms).
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
}

crate::optional_fields! {
    /// Either `{"plan": ID}` or `{"source_node": ID, "paths": [...]}`.
    NewBackup {
        #[schema(minimum = 1)]
        plan: u64,
        #[schema(minimum = 1)]
        source_node: u64,
        #[schema(min_items = 1, max_items = 64)]
        paths: Vec<String>,
    }
}

/// Where to restore to.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRestore {
    #[schema(minimum = 1)]
    pub target_node: u64,
    /// An absolute directory on the target node; it must be empty or absent
    /// unless `overwrite`.
    #[schema(pattern = "^/")]
    pub target_path: String,
    /// Write into a non-empty target (files of the backup replace those there).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overwrite: bool,
    /// Only this path of the backup (absolute, as backed up) and what is below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,
}

crate::filters! {
    /// `GET /backups` filters.
    BackupFilter {
        /// The exact id, or part of the plan name or of a path (any case).
        q: String,
        /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
        #[param(pattern = "^(pending|running|succeeded|failed|cancelled)$")]
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
        #[param(pattern = "^(pending|running|succeeded|failed|cancelled)$")]
        status: String,
        /// Only restores of this backup.
        backup: u64,
        /// Only restores onto this node.
        node: u64,
    }
}
