//! Garbage collection and verification of a [`PackStore`].
//!
//! GC keeps every chunk a manifest, an open [`Session`](super::Session) or the
//! open pack uses. A pack with nothing live is deleted; a pack mostly dead is
//! rewritten with its live chunks, and deleted only once the new pack is durable.
//! So a GC cut short by `kill -9` has lost nothing live: it left a pack that is
//! still whole, or one whose chunks are in another durable pack too.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::{durable, Loc, Pack, PackStore, StoreError};
use crate::id::ChunkId;
use crate::pack::{self, BlobEntry, PackBuilder, PackId};

/// A pack whose dead bytes are at least this share of it is rewritten.
const REWRITE_DEAD_SHARE: f64 = 0.5;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    pub packs_deleted: u64,
    pub packs_rewritten: u64,
    pub chunks_deleted: u64,
    /// Bytes of pack files removed, less those written anew.
    pub bytes_freed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    pub packs: u64,
    pub chunks: u64,
    /// Packs found damaged (their good chunks were kept in a new pack; the file
    /// moved to `quarantine/`), with why.
    pub damaged: Vec<(PackId, String)>,
    /// Per backup, the chunks its manifest uses that the store does not hold.
    pub missing: BTreeMap<u64, Vec<ChunkId>>,
    /// Manifests that cannot be read, with why.
    pub bad_manifests: Vec<(u64, String)>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.missing.is_empty() && self.bad_manifests.is_empty()
    }
}

/// What GC does to one pack.
enum Plan {
    Delete(PackId),
    Rewrite(PackId, Vec<BlobEntry>),
}

impl PackStore {
    /// Removes the chunks no manifest and no open session uses. Refuses to run
    /// when any manifest cannot be read: deleting on a guess could lose data.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        self.flush()?;
        let _one = self.seal.lock().expect("the seal lock is never poisoned");
        let mut live: HashSet<ChunkId> = HashSet::new();
        for backup in self.backups()? {
            if let Some(m) = self.manifest(backup)? {
                live.extend(m.chunks());
            }
        }
        let mut report = GcReport::default();
        let plans = {
            let mut inner = self.lock();
            live.extend(inner.claimed.iter().copied());
            let mut plans = Vec::new();
            for (id, pack) in &inner.packs {
                // A chunk is live in this pack when it is live and the index
                // finds it here (a copy in another pack is dead here).
                let here = |e: &&BlobEntry| {
                    live.contains(&e.id) && inner.index.get(&e.id).is_some_and(|l| l.pack == *id)
                };
                let kept: Vec<BlobEntry> = pack.entries.iter().filter(here).copied().collect();
                let kept_bytes: u64 = kept.iter().map(|e| e.stored_len as u64).sum();
                if kept.is_empty() {
                    plans.push(Plan::Delete(*id));
                } else if kept.len() < pack.entries.len()
                    && (pack.size - kept_bytes) as f64 >= REWRITE_DEAD_SHARE * pack.size as f64
                {
                    plans.push(Plan::Rewrite(*id, kept));
                }
            }
            let dead: Vec<ChunkId> = inner
                .index
                .keys()
                .filter(|id| !live.contains(id))
                .copied()
                .collect();
            for id in &dead {
                inner.index.remove(id);
            }
            report.chunks_deleted = dead.len() as u64;
            plans
        };
        for plan in plans {
            match plan {
                Plan::Delete(id) => {
                    let size = self.drop_pack(&id)?;
                    report.packs_deleted += u64::from(size > 0);
                    report.bytes_freed += size;
                }
                Plan::Rewrite(id, kept) => {
                    let written = self.rewrite(&id, &kept)?;
                    let size = self.drop_pack(&id)?;
                    report.packs_rewritten += 1;
                    report.bytes_freed += size.saturating_sub(written);
                }
            }
        }
        Ok(report)
    }

    /// Copies `kept` chunks of pack `from` into a new durable pack, and points
    /// the index at it. The bytes written.
    fn rewrite(&self, from: &PackId, kept: &[BlobEntry]) -> Result<u64, StoreError> {
        let file = self.lock().packs[from].file.clone();
        let mut builder = PackBuilder::default();
        for entry in kept {
            let blob = pack::read_stored(&file, entry).map_err(|source| StoreError::Pack {
                id: entry.id,
                source,
            })?;
            builder.push(&blob);
        }
        let (id, pack) = self.write_pack(&builder)?;
        let size = pack.size;
        self.adopt(id, pack);
        Ok(size)
    }

    /// Makes a newly written pack the home of its chunks.
    fn adopt(&self, id: PackId, pack: Pack) {
        let mut inner = self.lock();
        for entry in &pack.entries {
            inner.index.insert(
                entry.id,
                Loc {
                    pack: id,
                    entry: *entry,
                },
            );
        }
        inner.packs.insert(id, pack);
    }

    /// Forgets pack `id` and deletes its file durably, unless the index finds a
    /// chunk in it after all (a rewrite made a pack with the same content, and
    /// so the same name). Its size, when deleted.
    fn drop_pack(&self, id: &PackId) -> Result<u64, StoreError> {
        let pack = {
            let mut inner = self.lock();
            let Some(pack) = inner.packs.get(id) else {
                return Ok(0);
            };
            let used = pack
                .entries
                .iter()
                .any(|e| inner.index.get(&e.id).is_some_and(|l| l.pack == *id));
            if used {
                return Ok(0);
            }
            inner.packs.remove(id)
        };
        durable::remove(&self.pack_path(id))?;
        Ok(pack.map_or(0, |p| p.size))
    }

    /// Reads every pack whole and every chunk in it, and checks every manifest
    /// against the index. A damaged pack's good chunks move to a new pack and the
    /// damaged file to `quarantine/`, so that what it lost shows as missing (for
    /// a repair to fetch from another replica).
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.flush()?;
        let _one = self.seal.lock().expect("the seal lock is never poisoned");
        let mut report = VerifyReport::default();
        let packs: Vec<(PackId, Arc<std::fs::File>, Vec<BlobEntry>)> = self
            .lock()
            .packs
            .iter()
            .map(|(id, p)| (*id, p.file.clone(), p.entries.clone()))
            .collect();
        for (id, file, entries) in packs {
            report.packs += 1;
            let mut good = PackBuilder::default();
            let mut bad = Vec::new();
            for entry in &entries {
                report.chunks += 1;
                match pack::read_stored(&file, entry) {
                    Ok(blob) if blob.open().is_ok() => good.push(&blob),
                    _ => bad.push(entry.id),
                }
            }
            let gone = !self.pack_path(&id).exists();
            let whole = !gone && whole_file_hash(&file)? == id.0;
            if bad.is_empty() && whole {
                continue;
            }
            let why = match bad.len() {
                _ if gone => "its file is gone".to_string(),
                0 => "its bytes do not hash to its name".to_string(),
                n => format!("{n} of {} chunk(s) do not check out", entries.len()),
            };
            self.set_aside(id, &entries, good)?;
            report.damaged.push((id, why));
        }
        for backup in self.backups()? {
            match self.manifest(backup) {
                Ok(Some(m)) => {
                    let lacking = self.missing(&m.chunks());
                    if !lacking.is_empty() {
                        report.missing.insert(backup, lacking);
                    }
                }
                Ok(None) => {}
                Err(e) => report.bad_manifests.push((backup, e.to_string())),
            }
        }
        Ok(report)
    }
}

impl PackStore {
    /// Takes a damaged pack (or one whose file is gone) out of the store: its
    /// `good` chunks go into a new durable pack, the file into `quarantine/`, and
    /// what it alone held shows as missing from then on. Call with the seal lock
    /// held.
    pub(super) fn set_aside(
        &self,
        id: PackId,
        entries: &[BlobEntry],
        good: PackBuilder,
    ) -> Result<(), StoreError> {
        let path = self.pack_path(&id);
        {
            let mut inner = self.lock();
            inner.packs.remove(&id);
            let lost: HashSet<ChunkId> = entries
                .iter()
                .filter(|e| inner.index.get(&e.id).is_some_and(|l| l.pack == id))
                .map(|e| e.id)
                .collect();
            inner.index.retain(|c, _| !lost.contains(c));
            // A copy in another pack (a rewrite cut short leaves some) serves.
            let copies: Vec<(ChunkId, Loc)> = inner
                .packs
                .iter()
                .flat_map(|(p, pack)| {
                    pack.entries
                        .iter()
                        .filter(|e| lost.contains(&e.id))
                        .map(|e| {
                            (
                                e.id,
                                Loc {
                                    pack: *p,
                                    entry: *e,
                                },
                            )
                        })
                })
                .collect();
            for (c, loc) in copies {
                inner.index.entry(c).or_insert(loc);
            }
        }
        if !good.is_empty() {
            let (new_id, pack) = self.write_pack(&good)?;
            self.adopt(new_id, pack);
            if new_id == id {
                // Every chunk was good and the file only gone: written anew as it was.
                return Ok(());
            }
        }
        if path.exists() {
            let name = path.file_name().expect("a file name");
            durable::rename(&path, &self.root.join("quarantine").join(name))?;
        }
        Ok(())
    }
}

/// The BLAKE3 hash of a whole file, read by offset (the file is shared, so its
/// cursor is not ours to move).
fn whole_file_hash(file: &std::fs::File) -> std::io::Result<[u8; 32]> {
    use std::os::unix::fs::FileExt;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            return Ok(*hasher.finalize().as_bytes());
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
}
