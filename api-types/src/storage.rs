//! Storage nodes as operators see them: room, use, and what they hold.

use serde::{Deserialize, Serialize};

/// One storage node (a node with role `storage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageView {
    pub node_id: u64,
    pub name: String,
    /// Whether it answered just now; when not, the numbers are null and `error`
    /// says why.
    pub reachable: bool,
    /// `local` (pack files on its disk) or `s3` (an object store).
    pub backend: Option<String>,
    /// Where its chunk store is: `pack files in <dir>`, or `bucket "<name>"
    /// at <endpoint>` (storage nodes sharing a bucket name the same bucket).
    pub place: Option<String>,
    /// Size of the file system holding its chunk store (null in an object
    /// store, which does not say).
    pub capacity_bytes: Option<u64>,
    /// Free on that file system (for unprivileged writers).
    pub free_bytes: Option<u64>,
    /// Bytes of its pack files (compressed, deduplicated backup data).
    pub used_bytes: Option<u64>,
    /// Distinct chunks it keeps.
    pub chunks: Option<u64>,
    /// Backups it holds a replica of (manifests).
    pub backups: Option<u64>,
    pub error: Option<String>,
}
