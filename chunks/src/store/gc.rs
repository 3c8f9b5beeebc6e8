//! Garbage collection and verification of a [`PackStore`].
//!
//! GC keeps every chunk a manifest, an open [`Session`](super::Session) or the
//! open pack uses. A pack with nothing live is deleted; a pack mostly dead is
//! rewritten with its live chunks, and deleted only once the new pack is durable.
//! So a GC cut short by `kill -9` has lost nothing live: it left a pack that is
//! still whole, or one whose chunks are in another durable pack too.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::backend::CLAIM_LIFETIME;
use super::{Loc, Pack, PackStore, StoreError};
use crate::id::ChunkId;
use crate::manifest::Manifest;
use crate::pack::{self, BlobEntry, PackBuilder, PackId};

/// A pack whose dead bytes are at least this share of it is rewritten.
const REWRITE_DEAD_SHARE: f64 = 0.5;
/// In a shared place, how often a GC looks again for other stores' writers.
const LOOK_AGAIN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    pub packs_deleted: u64,
    pub packs_rewritten: u64,
    pub chunks_deleted: u64,
    /// Bytes of pack files removed, less those written anew.
    pub bytes_freed: u64,
    /// Why it stopped before it was done, when it did (it may run again).
    pub stopped: Option<String>,
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
        self.gc_while(&|| true)
    }

    /// [`PackStore::gc`], asking `go_on` before each pack it deletes or
    /// rewrites, and stopping (with what it did so far) once it says no.
    ///
    /// In a place shared with other stores, the manifests they keep there count
    /// as live too, and it runs only while none of them is writing a backup
    /// there (their sessions' claims are not known here, only their marks,
    /// [`Backend::foreign_claims`](super::Backend::foreign_claims)): it does
    /// not start while another store's mark is fresh, and stops when one
    /// appears. A backup that began in between finds what it relied on gone
    /// when its manifest is put (which looks the place over first), and is not
    /// reported stored.
    pub fn gc_while(&self, go_on: &dyn Fn() -> bool) -> Result<GcReport, StoreError> {
        self.flush()?;
        self.refresh()?;
        let _one = self.seal.lock().expect("the seal lock is never poisoned");
        let writers = |report: &mut GcReport| -> Result<bool, StoreError> {
            let marks = self.backend.foreign_claims(CLAIM_LIFETIME)?;
            if !marks.is_empty() {
                report.stopped = Some(format!(
                    "backups are being written to this place through other storage nodes ({})",
                    marks.join(", ")
                ));
            }
            Ok(!marks.is_empty())
        };
        let mut report = GcReport::default();
        if writers(&mut report)? {
            return Ok(report);
        }
        let mut live: HashSet<ChunkId> = HashSet::new();
        for backup in self.backups()? {
            if let Some(m) = self.manifest(backup)? {
                live.extend(m.chunks());
            }
        }
        for (name, bytes) in self.backend.foreign_manifests()? {
            let m = Manifest::decode(&bytes).map_err(|e| {
                StoreError::Io(io::Error::other(format!(
                    "manifest {name} of another store sharing this place: {e}"
                )))
            })?;
            live.extend(m.chunks());
        }
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
        let mut looked = Instant::now();
        for plan in plans {
            if !go_on() {
                report.stopped = Some("called off".into());
                break;
            }
            if looked.elapsed() >= LOOK_AGAIN && self.backend.shared() {
                looked = Instant::now();
                if writers(&mut report)? {
                    break;
                }
            }
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
        let size = self.lock().packs[from].size;
        let bytes = self.read_run(from, 0, size).map_err(|e| StoreError::Pack {
            id: kept[0].id,
            source: e.into(),
        })?;
        let mut builder = PackBuilder::default();
        for entry in kept {
            builder.push(&blob_in(&bytes, entry));
        }
        let (id, pack) = self.write_pack(&builder)?;
        let size = pack.size;
        self.adopt(id, pack);
        Ok(size)
    }

    /// Pack `id` (fewer bytes than `size` when it was cut short), or None when
    /// it is gone (deleted by hand; in a shared place, rewritten by another
    /// store's GC).
    pub(super) fn read_pack(&self, id: &PackId, size: u64) -> Result<Option<Bytes>, StoreError> {
        match self.backend.read(id, 0, size as usize) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
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
        self.backend.remove_pack(id)?;
        Ok(pack.map_or(0, |p| p.size))
    }

    /// Reads every pack whole and every chunk in it, and checks every manifest
    /// against the index. A damaged pack's good chunks move to a new pack and the
    /// damaged file to `quarantine/`, so that what it lost shows as missing (for
    /// a repair to fetch from another replica).
    /// In a shared place a pack gone since the last look is another store's
    /// GC's doing, not damage: it is forgotten, and what it held is found in
    /// the pack that replaced it.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.flush()?;
        self.refresh()?;
        let _one = self.seal.lock().expect("the seal lock is never poisoned");
        let mut report = VerifyReport::default();
        let packs: Vec<(PackId, u64, Vec<BlobEntry>)> = self
            .lock()
            .packs
            .iter()
            .map(|(id, p)| (*id, p.size, p.entries.clone()))
            .collect();
        for (id, size, entries) in packs {
            report.packs += 1;
            report.chunks += entries.len() as u64;
            let bytes = self.read_pack(&id, size)?;
            let (good, bad) = sort_out(bytes.as_ref(), &entries);
            // A file deleted by hand may still be read where it was open.
            let gone = bytes.is_none() || !self.backend.has_pack(&id)?;
            if gone && self.backend.shared() {
                self.lock().forget_packs(&HashSet::from([id]));
                continue;
            }
            let whole = bytes
                .as_ref()
                .is_some_and(|b| *blake3::hash(b).as_bytes() == id.0);
            if bad.is_empty() && whole && !gone {
                continue;
            }
            let why = match bad.len() {
                _ if gone => "its file is gone".to_string(),
                0 => "its bytes do not hash to its name".to_string(),
                n => format!("{n} of {} chunk(s) do not check out", entries.len()),
            };
            self.set_aside(id, good)?;
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
    pub(super) fn set_aside(&self, id: PackId, good: PackBuilder) -> Result<(), StoreError> {
        self.lock().forget_packs(&HashSet::from([id]));
        if !good.is_empty() {
            let (new_id, pack) = self.write_pack(&good)?;
            self.adopt(new_id, pack);
            if new_id == id {
                // Every chunk was good and the file only gone: written anew as it was.
                return Ok(());
            }
        }
        self.backend.quarantine_pack(&id)?;
        Ok(())
    }
}

/// Chunk `entry` of a pack whose bytes are `pack`, as stored.
fn blob_in(pack: &Bytes, entry: &BlobEntry) -> pack::Blob {
    let at = entry.offset as usize;
    pack::stored_blob(entry, pack[at..at + entry.stored_len as usize].to_vec())
}

/// Of a pack's `entries`, the chunks that check out in its bytes (none when it
/// could not be read), and the ids of those that do not.
pub(super) fn sort_out(pack: Option<&Bytes>, entries: &[BlobEntry]) -> (PackBuilder, Vec<ChunkId>) {
    let mut good = PackBuilder::default();
    let mut bad = Vec::new();
    for entry in entries {
        let fits = |b: &Bytes| entry.offset + u64::from(entry.stored_len) <= b.len() as u64;
        match pack.filter(|b| fits(b)).map(|b| blob_in(b, entry)) {
            Some(blob) if blob.verify() => good.push(&blob),
            _ => bad.push(entry.id),
        }
    }
    (good, bad)
}
