//! Checking one backup in a [`PackStore`]: is its manifest there, and does every
//! chunk it names read back and hash to its name? A pack found damaged, or whose
//! file is gone, is set aside as [`PackStore::verify`] does, so that what it
//! alone held shows as missing, for a repair to fetch from another replica.

use std::collections::BTreeMap;

use super::{PackStore, StoreError};
use crate::id::ChunkId;
use crate::pack::{self, PackBuilder, PackId};

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
        let mut suspects: BTreeMap<PackId, String> = BTreeMap::new();
        for id in &ids {
            let Some(pack) = self.lock().index.get(id).map(|l| l.pack) else {
                continue; // missing: counted below
            };
            if suspects.contains_key(&pack) {
                continue;
            }
            if !self.pack_path(&pack).exists() {
                suspects.insert(pack, "its file is gone".into());
            } else if let Err(e) = self.get(id) {
                suspects.insert(pack, e.to_string());
            }
        }
        let mut check = BackupCheck {
            held: true,
            chunks: ids.len() as u64,
            ..BackupCheck::default()
        };
        if !suspects.is_empty() {
            let _one = self.seal.lock().expect("the seal lock is never poisoned");
            for (id, why) in suspects {
                let Some((file, entries)) = self
                    .lock()
                    .packs
                    .get(&id)
                    .map(|p| (p.file.clone(), p.entries.clone()))
                else {
                    continue; // rewritten by a GC meanwhile
                };
                let mut good = PackBuilder::default();
                for entry in &entries {
                    if let Ok(blob) = pack::read_stored(&file, entry) {
                        if blob.open().is_ok() {
                            good.push(&blob);
                        }
                    }
                }
                self.set_aside(id, &entries, good)?;
                check.damaged.push((id, why));
            }
        }
        check.missing = self.missing(&ids);
        Ok(check)
    }
}
