//! Checking one backup in a [`PackStore`]: is its manifest there, and does every
//! chunk it names read back and hash to its name? A pack found damaged, or whose
//! file is gone, is set aside as [`PackStore::verify`] does, so that what it
//! alone held shows as missing, for a repair to fetch from another replica.

use std::collections::BTreeMap;

use super::{PackStore, StoreError};
use crate::id::ChunkId;
use crate::pack::PackId;

/// Bytes of chunks read back at once.
const CHECK_BYTES: usize = 16 * 1024 * 1024;
/// Why a pack is suspect when it is not there at all.
const GONE: &str = "its file is gone";
/// In a shared place, a check looks the packs over first unless that was done
/// this recently.
const CHECK_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`PackStore::check_backup`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupCheck {
    /// The store holds the backup's manifest (and it reads).
    pub held: bool,
    /// Why the manifest there cannot be read, when it cannot.
    pub manifest_error: Option<String>,
    /// Distinct chunks the manifest names.
    pub chunks: u64,
    /// Those the store lacks (after setting damaged packs aside).
    pub missing: Vec<ChunkId>,
    /// Packs set aside, with why.
    pub damaged: Vec<(PackId, String)>,
}

impl BackupCheck {
    pub fn is_clean(&self) -> bool {
        self.held && self.missing.is_empty() && self.damaged.is_empty()
    }
}

impl PackStore {
    /// Reads back every chunk of `backup`'s manifest (see the module's doc).
    pub fn check_backup(&self, backup: u64) -> Result<BackupCheck, StoreError> {
        self.flush()?;
        self.refresh_if_older(CHECK_FRESH)?;
        let manifest = match self.manifest(backup) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(BackupCheck::default()),
            Err(e @ StoreError::Manifest { .. }) => {
                return Ok(BackupCheck {
                    manifest_error: Some(e.to_string()),
                    ..BackupCheck::default()
                })
            }
            Err(e) => return Err(e),
        };
        let ids = manifest.chunks();
        let mut suspects = self.suspects(&ids)?;
        if suspects.values().any(|why| why == GONE) && self.backend.shared() {
            // In a shared place, a pack gone since the last look was rewritten
            // by another store's GC: look again, and read where its chunks
            // are now.
            self.refresh()?;
            suspects = self.suspects(&ids)?;
        }
        let mut check = BackupCheck {
            held: true,
            chunks: ids.len() as u64,
            ..BackupCheck::default()
        };
        if !suspects.is_empty() {
            let _one = self.seal.lock().expect("the seal lock is never poisoned");
            for (id, why) in suspects {
                let Some((size, entries)) = self
                    .lock()
                    .packs
                    .get(&id)
                    .map(|p| (p.size, p.entries.clone()))
                else {
                    continue; // rewritten by a GC meanwhile
                };
                let bytes = self.read_pack(&id, size)?;
                let (good, _) = super::gc::sort_out(bytes.as_ref(), &entries);
                self.set_aside(id, good)?;
                check.damaged.push((id, why));
            }
        }
        check.missing = self.missing(&ids);
        Ok(check)
    }

    /// The packs holding `ids` that are gone or do not read back whole, with
    /// why: the chunks read by pack, in runs (one read of the backend for
    /// neighbours). A chunk not in the index is not looked for (missing).
    fn suspects(&self, ids: &[ChunkId]) -> Result<BTreeMap<PackId, String>, StoreError> {
        let mut by_pack: BTreeMap<PackId, Vec<ChunkId>> = BTreeMap::new();
        {
            let inner = self.lock();
            for id in ids {
                if let Some(loc) = inner.index.get(id) {
                    by_pack.entry(loc.pack).or_default().push(*id);
                }
            }
        }
        let mut suspects: BTreeMap<PackId, String> = BTreeMap::new();
        for (pack, chunks) in by_pack {
            if !self.backend.has_pack(&pack)? {
                suspects.insert(pack, GONE.into());
                continue;
            }
            let mut left = &chunks[..];
            while !left.is_empty() {
                let read = match self.read_places(left, CHECK_BYTES) {
                    Ok(read) => read,
                    Err(StoreError::Pack { source, .. }) if !source.is_io() => {
                        suspects.insert(pack, source.to_string());
                        break;
                    }
                    Err(e) => return Err(e),
                };
                let bad = read
                    .iter()
                    .find(|s| !crate::pack::holds(s.id, s.raw_len, s.compressed, &s.bytes));
                if let Some(bad) = bad {
                    let why = crate::pack::PackError::BadChunk(bad.id);
                    suspects.insert(pack, why.to_string());
                    break;
                }
                left = &left[read.len()..];
            }
        }
        Ok(suspects)
    }
}
