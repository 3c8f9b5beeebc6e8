//! What is inside a succeeded backup and whether its replicas are whole: its
//! tree, read from a storage node holding it (`GET /backups/{id}/files`), and
//! the check and repair of every replica (`POST /backups/{id}/verify`, the work
//! is jobs/verify.rs's).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use bcm_api::{FileView, FilesQuery, VerifyView};
use bcm_chunks::{Entry, EntryKind};
use bcm_raft_store::{Backup, JobStatus};

use super::auth::Caller;
use super::backups::get;
use super::OpError;
use crate::cluster::Node;
use crate::jobs::{placement, verify as replicas};
use crate::storage::client::manifest_from;

/// A backup whose data can be read: it succeeded.
fn succeeded(node: &Node, id: u64) -> Result<Backup, OpError> {
    let b = get(node, id)?;
    if b.status != JobStatus::Succeeded {
        return Err(OpError::conflict(format!(
            "backup {id} is {}: only a succeeded backup has data to read",
            b.status.as_str()
        )));
    }
    Ok(b)
}

/// The entries of backup `id` directly in `q.path` (everything below it with
/// `recursive`; the backup's own paths when no `path`), in walk order. 404 when
/// the backup holds no such path; 503 when no storage node holding it answers.
pub async fn files(node: &Node, id: u64, q: &FilesQuery) -> Result<Vec<FileView>, OpError> {
    let b = succeeded(node, id)?;
    let at = match q.path.as_deref() {
        None => None,
        Some(p) if p.starts_with('/') => Some(bcm_chunks::manifest::entry_path(Path::new(p))),
        Some(p) => {
            return Err(OpError::BadRequest {
                field: Some("path".into()),
                message: format!("path must be absolute (as backed up), not {p:?}"),
            })
        }
    };
    let holders = placement::addressed(node, &b.storage_nodes);
    let manifest = manifest_from(&node.peers, &holders, id)
        .await
        .map_err(OpError::Unavailable)?;
    let recursive = q.recursive.unwrap_or(false);
    let listed: Vec<&Entry> = match &at {
        // The backup's own paths (the walk also keeps the directories above
        // them, for a restore to recreate), and with `recursive` all below.
        None => {
            let roots: Vec<PathBuf> = b
                .paths
                .iter()
                .map(|p| bcm_chunks::manifest::entry_path(Path::new(p)))
                .collect();
            manifest
                .entries
                .iter()
                .filter(|e| {
                    roots
                        .iter()
                        .any(|r| e.path() == r.as_path() || (recursive && e.path().starts_with(r)))
                })
                .collect()
        }
        Some(dir) => {
            let below: Vec<&Entry> = manifest
                .under(dir)
                .filter(|e| e.path() != dir.as_path())
                .filter(|e| recursive || e.path().parent() == Some(dir.as_path()))
                .collect();
            let held = manifest.entries.iter().any(|e| e.path() == dir.as_path());
            if below.is_empty() && !held {
                return Err(OpError::NotFound(format!(
                    "backup {id} holds no path {}",
                    q.path.as_deref().unwrap_or_default()
                )));
            }
            below
        }
    };
    Ok(listed.into_iter().map(view).collect())
}

fn view(e: &Entry) -> FileView {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (kind, size, target) = match &e.kind {
        EntryKind::Dir => ("dir", None, None),
        EntryKind::File { size, .. } => ("file", Some(*size), None),
        EntryKind::Symlink { target } => ("symlink", None, Some(lossy(target))),
    };
    FileView {
        path: format!("/{}", lossy(e.path().as_os_str().as_bytes())),
        kind: kind.into(),
        size,
        mode: format!("{:04o}", e.mode),
        mtime_ms: e.mtime.0 * 1000 + i64::from(e.mtime.1 / 1_000_000),
        target,
    }
}

/// Checks every replica of backup `id`, repairing what it can.
pub async fn verify(node: &Node, caller: &Caller, id: u64) -> Result<VerifyView, OpError> {
    let audit = caller.audit("backups.verify", format!("backup {id}"));
    audit
        .run_alone(node, async {
            let b = succeeded(node, id)?;
            Ok(replicas::verify(node, &b).await)
        })
        .await
}
