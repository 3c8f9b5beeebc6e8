//! What is inside a backup (its tree, `GET /backups/{id}/files`) and the check
//! of its replicas (`POST /backups/{id}/verify`).

use serde::{Deserialize, Serialize};

/// One directory, file or symlink of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileView {
    /// Absolute, as it was backed up (a name that is not UTF-8 is shown lossily).
    pub path: String,
    /// `dir`, `file` or `symlink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A file's length in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Permission bits, in octal (`"0644"`).
    pub mode: String,
    /// Modification time (Unix ms).
    pub mtime_ms: i64,
    /// What a symlink points to.
    #[serde(default)]
    pub target: Option<String>,
}

crate::filters! {
    /// `GET /backups/{id}/files` parameters.
    FilesQuery {
        /// The directory to list (absolute, as backed up); the backup's own
        /// paths when absent.
        #[param(pattern = "^/")]
        path: String,
        /// Everything below `path`, not only what is directly in it.
        recursive: bool,
    }
}

/// How one replica of a backup fared in a verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaView {
    pub node_id: u64,
    /// `ok` (whole), `repaired` (made whole from another replica), `moved` (its
    /// node is down or gone: re-created on `moved_to`), `damaged` (not whole and
    /// no whole replica to repair it from) or `unreachable` (its node did not
    /// answer, and no other storage node could take the replica).
    pub state: String,
    /// Distinct chunks the backup uses.
    #[serde(default)]
    pub chunks: Option<u64>,
    /// Chunks the replica lacked (deleted, damaged or never written).
    pub missing_chunks: u64,
    /// Pack files found damaged or gone there, set aside.
    pub damaged_packs: u64,
    /// Chunks copied to it from another replica.
    pub repaired_chunks: u64,
    #[serde(default)]
    pub moved_to: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The answer to `POST /backups/{id}/verify` (202, given once the check and
/// the repairs are done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerifyView {
    pub backup: u64,
    /// Every replica is whole now (after the repairs made).
    pub ok: bool,
    pub replicas: Vec<ReplicaView>,
}
