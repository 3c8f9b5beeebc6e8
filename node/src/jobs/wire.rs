//! What the backup manager sends the node that runs a job (cluster-internal,
//! postcard, behind the cluster secret), and the check of a backup's paths.

use serde::{Deserialize, Serialize};

use crate::storage::client::StorageNode;

pub const PATH_BACKUP: &str = "/internal/jobs/backup";
pub const PATH_RESTORE: &str = "/internal/jobs/restore";
pub const PATH_CHECK_PATHS: &str = "/internal/jobs/check-paths";

/// Run attempt `attempt` of backup `backup` here: read `paths`, send the chunks
/// to every one of `replicas`; files unchanged since `parent` are not read again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunBackup {
    pub backup: u64,
    pub attempt: u32,
    pub epoch: u64,
    pub paths: Vec<String>,
    pub replicas: Vec<StorageNode>,
    pub parent: Option<Parent>,
}

/// The plan's latest succeeded backup and the storage nodes holding it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parent {
    pub backup: u64,
    pub holders: Vec<StorageNode>,
}

/// Run attempt `attempt` of restore `restore` here: backup `backup`, from any of
/// `holders`, into `target_path`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRestore {
    pub restore: u64,
    pub attempt: u32,
    pub epoch: u64,
    pub backup: u64,
    pub holders: Vec<StorageNode>,
    pub target_path: String,
    pub overwrite: bool,
    pub include: Option<String>,
}

/// Can these paths be backed up here? Answered with what is wrong, one line per
/// path (empty when nothing is).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckPaths {
    pub paths: Vec<String>,
}
