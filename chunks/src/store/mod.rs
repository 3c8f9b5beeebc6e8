//! The chunk store of a storage node: chunks kept once, in pack files, found
//! through an index in memory rebuilt from the packs' trailers at start-up; and
//! one manifest per backup. Where the packs and manifests are kept is its
//! [`Backend`]'s business: a directory on this node's disk ([`Disk`]), or an
//! object store, perhaps shared with other storage nodes
//! ([`PackStore::refresh`] takes in what they wrote).
//!
//! A chunk is durable, and may be acknowledged, once [`PackStore::flush`] has
//! returned after its put; a manifest once [`PackStore::put_manifest`] has (which
//! flushes first and refuses a manifest whose chunks are not all held). Garbage
//! collection and verification are in [`gc`], the check of one backup in
//! [`check`], reads of many chunks at once in [`read`].

pub mod backend;
pub mod check;
pub mod disk;
pub mod durable;
pub mod gc;
pub mod read;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::id::{Checked, ChunkId};
use crate::manifest::{Manifest, ManifestError};
use crate::pack::{self, Blob, BlobEntry, PackBuilder, PackError, PackId};

pub use backend::Backend;
pub use check::BackupCheck;
pub use disk::Disk;
pub use gc::{GcReport, VerifyReport};
pub use read::Stored;

/// An open pack is sealed into a file once it holds this many bytes.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chunk store I/O: {0}")]
    Io(#[from] io::Error),
    #[error("chunk {0} is not in this store")]
    NotFound(ChunkId),
    #[error("chunk {id}: {source}")]
    Pack { id: ChunkId, source: PackError },
    #[error("a blob sent as chunk {0} does not hash to it")]
    Mismatch(ChunkId),
    #[error("the manifest uses {0} chunk(s) this store does not hold")]
    MissingChunks(usize),
    #[error("manifest of backup {id}: {source}")]
    Manifest { id: u64, source: ManifestError },
}

/// Where a chunk is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    pack: PackId,
    entry: BlobEntry,
}

/// A sealed pack.
#[derive(Debug)]
struct Pack {
    size: u64,
    entries: Vec<BlobEntry>,
}

#[derive(Default)]
struct Inner {
    index: HashMap<ChunkId, Loc>,
    packs: BTreeMap<PackId, Pack>,
    /// Chunks put and not yet sealed.
    open: PackBuilder,
    open_index: HashMap<ChunkId, usize>,
    /// A pack being written by [`PackStore::flush`], still readable.
    sealing: Option<Arc<(PackBuilder, HashMap<ChunkId, usize>)>>,
    /// Backups being written ([`Session`]s) and the chunks they were told the
    /// store holds: live for garbage collection until no session is open.
    sessions: usize,
    claimed: HashSet<ChunkId>,
}

/// The store's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreStats {
    pub packs: u64,
    pub chunks: u64,
    /// Bytes of pack files (compressed).
    pub stored_bytes: u64,
    /// Bytes of the chunks they hold, uncompressed.
    pub raw_bytes: u64,
    pub manifests: u64,
}

/// What opening the store found.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub packs: usize,
    /// Packs that are not packs after all (a damaged index), moved to
    /// `quarantine/`, with why.
    pub quarantined: Vec<(PackId, String)>,
    /// Temporary files of writes a crash cut short, removed.
    pub leftovers: usize,
}

pub struct PackStore {
    backend: Box<dyn Backend>,
    inner: Mutex<Inner>,
    /// Held while a pack is sealed or the packs are collected: one at a time.
    seal: Mutex<()>,
    /// When [`PackStore::refresh`] last looked over a shared place.
    refreshed: Mutex<Instant>,
}

impl PackStore {
    /// Opens (creating) a store in the directory `root` on this machine.
    pub fn open(root: &Path) -> Result<(PackStore, OpenReport), StoreError> {
        PackStore::open_in(Box::new(Disk::new(root)?))
    }

    /// Opens the store kept by `backend`, indexing every pack there; a pack
    /// whose index is damaged is moved to quarantine. Fails (and moves
    /// nothing) when the backend cannot be read.
    pub fn open_in(backend: Box<dyn Backend>) -> Result<(PackStore, OpenReport), StoreError> {
        let mut report = OpenReport {
            leftovers: backend.clean_leftovers()?,
            ..OpenReport::default()
        };
        let mut inner = Inner::default();
        for (id, loaded) in load_packs(&*backend, backend.list_packs()?)? {
            match loaded {
                Ok(pack) => {
                    inner.add_pack(id, pack);
                    report.packs += 1;
                }
                Err(why) => {
                    backend.quarantine_pack(&id)?;
                    report.quarantined.push((id, why.to_string()));
                }
            }
        }
        let store = PackStore {
            backend,
            inner: Mutex::new(inner),
            seal: Mutex::new(()),
            refreshed: Mutex::new(Instant::now()),
        };
        Ok((store, report))
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// For a store whose place is shared with other stores: takes in the packs
    /// they wrote there since the last look (their chunks are then not sent
    /// again), and forgets packs gone from it (another store's GC rewrote
    /// them), so that the index finds their chunks where they are now. Packs
    /// whose index is damaged are left alone (their writer's verify sees to
    /// them). Under the seal lock: this store's own flush and GC do not change
    /// its packs between the listing and what is made of it.
    pub fn refresh(&self) -> Result<(), StoreError> {
        if !self.backend.shared() {
            return Ok(());
        }
        let _one = self.seal.lock().expect("the seal lock is never poisoned");
        let started = Instant::now();
        let known: HashSet<PackId> = self.lock().packs.keys().copied().collect();
        let listed = self.backend.list_packs()?;
        let there: HashSet<PackId> = listed.iter().map(|(id, _)| *id).collect();
        let new: Vec<(PackId, u64)> = listed
            .into_iter()
            .filter(|(id, _)| !known.contains(id))
            .collect();
        let loaded = load_packs(&*self.backend, new)?;
        let gone: HashSet<PackId> = known.into_iter().filter(|id| !there.contains(id)).collect();
        let mut inner = self.lock();
        for (id, pack) in loaded {
            if let Ok(pack) = pack {
                inner.add_pack(id, pack);
            }
        }
        inner.forget_packs(&gone);
        *self.refreshed.lock().expect("refreshed lock") = started;
        Ok(())
    }

    /// [`PackStore::refresh`] unless the last one began less than `max_age` ago.
    pub fn refresh_if_older(&self, max_age: Duration) -> Result<(), StoreError> {
        if self.refreshed.lock().expect("refreshed lock").elapsed() < max_age {
            return Ok(());
        }
        self.refresh()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("the store's lock is never poisoned")
    }

    pub fn has(&self, id: &ChunkId) -> bool {
        self.lock().has(id)
    }

    /// Of `ids`, those the store does not hold.
    pub fn missing(&self, ids: &[ChunkId]) -> Vec<ChunkId> {
        let inner = self.lock();
        ids.iter().filter(|id| !inner.has(id)).copied().collect()
    }

    /// Checks `blob` against its id and keeps it unless held already. Not durable
    /// until [`PackStore::flush`]. True when it was new.
    pub fn put(&self, blob: &Blob) -> Result<bool, StoreError> {
        if self.claim_if_held(blob.id) {
            return Ok(false);
        }
        // Checked outside the lock: other puts go on meanwhile.
        if !blob.verify() {
            return Err(StoreError::Mismatch(blob.id));
        }
        let full = {
            let mut inner = self.lock();
            if inner.sessions > 0 {
                inner.claimed.insert(blob.id);
            }
            if inner.has(&blob.id) {
                return Ok(false);
            }
            let at = inner.open.entries().len();
            inner.open.push(blob);
            inner.open_index.insert(blob.id, at);
            inner.open.len() >= PACK_TARGET
        };
        if full {
            self.flush()?;
        }
        Ok(true)
    }

    /// Whether the store holds the chunk; if so, it is kept for the open
    /// sessions (see [`PackStore::session`]) in the same step, so that no GC
    /// can take it in between.
    fn claim_if_held(&self, id: ChunkId) -> bool {
        let mut inner = self.lock();
        let held = inner.has(&id);
        if held && inner.sessions > 0 {
            inner.claimed.insert(id);
        }
        held
    }

    /// Seals the chunks put so far into a pack file, durably.
    pub fn flush(&self) -> Result<(), StoreError> {
        let _one = self.seal.lock().expect("the seal lock is never poisoned");
        let sealing = {
            let mut inner = self.lock();
            if inner.open.is_empty() {
                return Ok(());
            }
            let taken = Arc::new((
                std::mem::take(&mut inner.open),
                std::mem::take(&mut inner.open_index),
            ));
            inner.sealing = Some(taken.clone());
            taken
        };
        let written = self.write_pack(&sealing.0);
        let mut inner = self.lock();
        match written {
            Ok((id, pack)) => {
                inner.add_pack(id, pack);
                inner.sealing = None;
                Ok(())
            }
            Err(e) => {
                // Put them back: a later flush tries again.
                inner.sealing = None;
                let (builder, _) = &*sealing;
                for entry in builder.entries() {
                    if !inner.has(&entry.id) {
                        let blob = builder.blob(entry);
                        let at = inner.open.entries().len();
                        inner.open.push(&blob);
                        inner.open_index.insert(entry.id, at);
                    }
                }
                Err(e)
            }
        }
    }

    /// Writes a pack durably.
    fn write_pack(&self, builder: &PackBuilder) -> Result<(PackId, Pack), StoreError> {
        let (id, end) = builder.end();
        self.backend
            .write_pack(&id, &[builder.blob_bytes(), &end])?;
        let pack = Pack {
            size: (builder.len() + end.len()) as u64,
            entries: builder.entries().to_vec(),
        };
        Ok((id, pack))
    }

    /// A chunk's bytes, checked against its id.
    pub fn get(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        self.get_checked(id).map(Checked::into_bytes)
    }

    /// [`PackStore::get`], saying so in its type.
    pub fn get_checked(&self, id: &ChunkId) -> Result<Checked, StoreError> {
        self.get_blob(id)?
            .into_checked()
            .map_err(|source| StoreError::Pack { id: *id, source })
    }

    /// A chunk as stored (compressed), to send on; the receiver checks it.
    pub fn get_blob(&self, id: &ChunkId) -> Result<Blob, StoreError> {
        let stored = self.read_many(std::slice::from_ref(id), 0)?.pop();
        let stored = stored.ok_or(StoreError::NotFound(*id))?;
        Ok(Blob {
            id: stored.id,
            raw_len: stored.raw_len,
            compressed: stored.compressed,
            stored: stored.bytes.to_vec(),
        })
    }

    /// Starts writing a backup: until the session is dropped, every chunk that
    /// [`Session::missing`] says the store holds stays, whatever GC finds.
    pub fn session(self: &Arc<Self>) -> Session {
        self.lock().sessions += 1;
        Session {
            store: self.clone(),
        }
    }

    /// Keeps a backup's manifest durably, after its chunks; refuses it when the
    /// store lacks any of them.
    /// In a shared place the packs are looked over first: a chunk the index
    /// still finds in a pack another store's GC deleted is not held.
    pub fn put_manifest(&self, backup: u64, manifest: &Manifest) -> Result<(), StoreError> {
        self.flush()?;
        self.refresh()?;
        let lacking = self.missing(&manifest.chunks()).len();
        if lacking > 0 {
            return Err(StoreError::MissingChunks(lacking));
        }
        self.backend.write_manifest(backup, &manifest.encode())?;
        Ok(())
    }

    /// A backup's manifest, when this store holds it.
    pub fn manifest(&self, backup: u64) -> Result<Option<Manifest>, StoreError> {
        let Some(bytes) = self.backend.read_manifest(backup)? else {
            return Ok(None);
        };
        Manifest::decode(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Manifest { id: backup, source })
    }

    /// Forgets a backup (its chunks go at the next [`PackStore::gc`]). True when
    /// the store held it.
    pub fn delete_manifest(&self, backup: u64) -> Result<bool, StoreError> {
        Ok(self.backend.remove_manifest(backup)?)
    }

    /// The backups whose manifests this store holds, in order.
    pub fn backups(&self) -> Result<Vec<u64>, StoreError> {
        let mut out = self.backend.manifests()?;
        out.sort_unstable();
        Ok(out)
    }

    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let manifests = self.backups()?.len() as u64;
        let inner = self.lock();
        let raw = |entries: &[BlobEntry]| entries.iter().map(|e| e.raw_len as u64).sum::<u64>();
        Ok(StoreStats {
            packs: inner.packs.len() as u64,
            chunks: (inner.index.len() + inner.open_index.len()) as u64,
            stored_bytes: inner.packs.values().map(|p| p.size).sum::<u64>()
                + inner.open.len() as u64,
            raw_bytes: inner.packs.values().map(|p| raw(&p.entries)).sum::<u64>()
                + raw(inner.open.entries()),
            manifests,
        })
    }
}

/// A backup being written to the store (see [`PackStore::session`]).
pub struct Session {
    store: Arc<PackStore>,
}

impl Session {
    pub fn store(&self) -> &PackStore {
        &self.store
    }

    /// Of `ids`, those the store lacks; the others are kept for this session.
    pub fn missing(&self, ids: &[ChunkId]) -> Vec<ChunkId> {
        let mut inner = self.store.lock();
        let mut out = Vec::new();
        for id in ids {
            if inner.has(id) {
                inner.claimed.insert(*id);
            } else {
                out.push(*id);
            }
        }
        out
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut inner = self.store.lock();
        inner.sessions -= 1;
        if inner.sessions == 0 {
            inner.claimed = HashSet::new();
        }
    }
}

impl Inner {
    fn has(&self, id: &ChunkId) -> bool {
        self.index.contains_key(id)
            || self.open_index.contains_key(id)
            || self
                .sealing
                .as_deref()
                .is_some_and(|(_, index)| index.contains_key(id))
    }

    /// Takes `gone` packs out: the chunks the index found there are found in
    /// another pack holding a copy, or are missing from now on. The chunks that
    /// went missing.
    fn forget_packs(&mut self, gone: &HashSet<PackId>) -> HashSet<ChunkId> {
        let mut lost = HashSet::new();
        for id in gone {
            let Some(pack) = self.packs.remove(id) else {
                continue;
            };
            lost.extend(
                pack.entries
                    .iter()
                    .filter(|e| self.index.get(&e.id).is_some_and(|l| l.pack == *id))
                    .map(|e| e.id),
            );
        }
        if lost.is_empty() {
            return lost;
        }
        self.index.retain(|c, _| !lost.contains(c));
        // A copy in another pack (a rewrite cut short leaves some) serves.
        for (p, other) in &self.packs {
            for e in &other.entries {
                if lost.remove(&e.id) {
                    self.index.insert(
                        e.id,
                        Loc {
                            pack: *p,
                            entry: *e,
                        },
                    );
                }
            }
        }
        lost
    }

    fn add_pack(&mut self, id: PackId, pack: Pack) {
        for entry in &pack.entries {
            self.index.entry(entry.id).or_insert(Loc {
                pack: id,
                entry: *entry,
            });
        }
        self.packs.insert(id, pack);
    }
}

/// A listed pack read: its index, or why it is not a pack.
type Loaded = Result<Pack, PackError>;

/// The packs `listed` with their indexes read (many at once where the backend
/// can), each an index or why it is not a pack; a pack gone since the listing
/// is left out. An error reading is an error of the whole: only a pack that
/// was read and found wanting is judged.
fn load_packs(
    backend: &dyn Backend,
    listed: Vec<(PackId, u64)>,
) -> Result<Vec<(PackId, Loaded)>, StoreError> {
    let tails: Vec<(PackId, u64, usize)> = listed
        .iter()
        .map(|(id, size)| {
            let n = (pack::TAIL_READ as u64).min(*size);
            (*id, size - n, n as usize)
        })
        .collect();
    let read = backend.read_ranges(&tails);
    let mut out = Vec::with_capacity(listed.len());
    for ((id, size), tail) in listed.into_iter().zip(read) {
        let tail = match tail {
            Ok(tail) => tail,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let entries = match pack::index_from_suffix(size, &tail) {
            Ok(Ok(entries)) => Ok(entries),
            Ok(Err(need)) => {
                let more = match backend.read(&id, size - need as u64, need) {
                    Ok(more) => more,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                pack::index_from_suffix(size, &more).and_then(|found| {
                    found.map_err(|_| PackError::BadTrailer("shorter than it says".into()))
                })
            }
            Err(e) => Err(e),
        };
        out.push((id, entries.map(|entries| Pack { size, entries })));
    }
    Ok(out)
}

#[cfg(test)]
mod shared_tests;
#[cfg(test)]
mod tests;
