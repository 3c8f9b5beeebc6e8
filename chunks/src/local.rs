//! A backup written straight into a store on the same machine, and restored from
//! it: the two ends of the data path with nothing between them (for tests, for
//! benchmarks, and for a node that is its own source and storage).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::chunker::Chunker;
use crate::manifest::{EntryKind, Manifest};
use crate::pack::Blob;
use crate::restore::{self, RestoreError, RestoreStats};
use crate::store::{PackStore, StoreError};
use crate::walk::{self, Found, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("this store holds no backup {0}")]
    NoBackup(u64),
}

/// What a backup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupStats {
    pub files: u64,
    /// Logical bytes read.
    pub size_bytes: u64,
    /// Chunks the store did not have.
    pub new_chunks: u64,
    /// Their bytes, uncompressed.
    pub new_bytes: u64,
    pub skipped: u64,
}

/// Backs up `roots` into `store` as backup `backup`.
pub fn backup(
    store: &Arc<PackStore>,
    chunker: &Chunker,
    roots: &[PathBuf],
    backup: u64,
) -> Result<(Manifest, BackupStats), LocalError> {
    let session = store.session();
    let mut manifest = Manifest::default();
    let mut stats = BackupStats::default();
    let mut cutter = chunker.cutter();
    for found in walk::walk(roots)? {
        match found {
            Found::Entry(e) => manifest.entries.push(e),
            Found::Skipped(path, why) => manifest.skipped.push((path, why)),
            Found::File { source, mut entry } => {
                let mut put_error = None;
                let read = walk::chunk_file(&mut cutter, &source, |chunk| {
                    if session.missing(&[chunk.id]).is_empty() {
                        return Ok(());
                    }
                    let blob = Blob::new(chunk.id, &chunk.data)?;
                    match session.store().put(&blob) {
                        Ok(true) => {
                            stats.new_chunks += 1;
                            stats.new_bytes += chunk.data.len() as u64;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            put_error = Some(e);
                            return Err(std::io::Error::other("the store refused a chunk"));
                        }
                    }
                    Ok(())
                });
                if let Some(e) = put_error {
                    return Err(e.into());
                }
                match read {
                    Ok((size, chunks)) => {
                        entry.kind = EntryKind::File { size, chunks };
                        stats.files += 1;
                        stats.size_bytes += size;
                        manifest.entries.push(entry);
                    }
                    Err(e) => manifest.skipped.push((entry.path, e.to_string())),
                }
            }
        }
    }
    stats.skipped = manifest.skipped.len() as u64;
    store.put_manifest(backup, &manifest)?;
    Ok((manifest, stats))
}

/// Restores backup `backup` from `store` into `target`.
pub fn restore(
    store: &PackStore,
    backup: u64,
    target: &Path,
    overwrite: bool,
    include: Option<&Path>,
) -> Result<RestoreStats, LocalError> {
    let manifest = store
        .manifest(backup)?
        .ok_or(LocalError::NoBackup(backup))?;
    let stats = restore::restore(&manifest, target, overwrite, include, |id| {
        store.get_checked(id)
    })?;
    Ok(stats)
}
