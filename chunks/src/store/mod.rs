//! The chunk store of a storage node: chunks kept once, in pack files under
//! `<root>/packs/`, found through an index in memory rebuilt from the packs'
//! trailers at start-up; and one manifest per backup under `<root>/manifests/`.
//!
//! A chunk is durable, and may be acknowledged, once [`PackStore::flush`] has
//! returned after its put; a manifest once [`PackStore::put_manifest`] has (which
//! flushes first and refuses a manifest whose chunks are not all held). Garbage
//! collection and verification are in [`gc`], the check of one backup in
//! [`check`], reads of many chunks at once in [`read`].

pub mod check;
pub mod durable;
pub mod gc;
pub mod read;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::direct::Pipeline;
use crate::id::{Checked, ChunkId};
use crate::manifest::{Manifest, ManifestError};
use crate::pack::{self, Blob, BlobEntry, PackBuilder, PackError, PackId};

pub use check::BackupCheck;
pub use gc::{GcReport, VerifyReport};
pub use read::Stored;

/// An open pack is sealed into a file once it holds this many bytes.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;
/// Bytes of a pack written at once.
const SCRATCH: usize = 4 * 1024 * 1024;

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

/// A sealed pack file.
#[derive(Debug)]
struct Pack {
    file: Arc<File>,
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
    /// Pack files that could not be read, moved to `quarantine/`, with why.
    pub quarantined: Vec<(PathBuf, String)>,
    /// Temporary files of writes a crash cut short, removed.
    pub leftovers: usize,
}

pub struct PackStore {
    root: PathBuf,
    inner: Mutex<Inner>,
    /// Held while a pack is sealed or the packs are collected: one at a time.
    seal: Mutex<()>,
    /// The buffers packs are written through (around the page cache, one
    /// being filled while the other is written), used under the seal lock.
    scratch: Mutex<Pipeline>,
}

impl PackStore {
    /// Opens (creating) the store under `root`, indexing every pack file.
    pub fn open(root: &Path) -> Result<(PackStore, OpenReport), StoreError> {
        for dir in ["packs", "manifests", "quarantine"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let mut report = OpenReport::default();
        let mut inner = Inner::default();
        for path in files_under(&root.join("packs"))? {
            if path.to_string_lossy().ends_with(durable::TMP) {
                fs::remove_file(&path)?;
                report.leftovers += 1;
                continue;
            }
            match open_pack(&path) {
                Ok((id, pack)) => {
                    inner.add_pack(id, pack);
                    report.packs += 1;
                }
                Err(why) => {
                    let name = path.file_name().expect("a file name");
                    durable::rename(&path, &root.join("quarantine").join(name))?;
                    report.quarantined.push((path, why.to_string()));
                }
            }
        }
        for path in files_under(&root.join("manifests"))? {
            if path.to_string_lossy().ends_with(durable::TMP) {
                fs::remove_file(&path)?;
                report.leftovers += 1;
            }
        }
        let store = PackStore {
            root: root.to_path_buf(),
            inner: Mutex::new(inner),
            seal: Mutex::new(()),
            scratch: Mutex::new(Pipeline::new(SCRATCH, 1)),
        };
        Ok((store, report))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .expect("the store's lock is never poisoned")
    }

    pub fn root(&self) -> &Path {
        &self.root
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

    /// Writes a pack file durably and opens it.
    fn write_pack(&self, builder: &PackBuilder) -> Result<(PackId, Pack), StoreError> {
        let (id, end) = builder.end();
        let path = self.pack_path(&id);
        let mut scratch = self
            .scratch
            .lock()
            .expect("the scratch lock is never poisoned");
        durable::write_direct(&path, &[builder.blob_bytes(), &end], &mut scratch)?;
        drop(scratch);
        let pack = Pack {
            file: Arc::new(File::open(&path)?),
            size: (builder.len() + end.len()) as u64,
            entries: builder.entries().to_vec(),
        };
        Ok((id, pack))
    }

    fn pack_path(&self, id: &PackId) -> PathBuf {
        let hex = id.to_string();
        self.root
            .join("packs")
            .join(&hex[..2])
            .join(format!("{hex}.pack"))
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
        match self.places(std::slice::from_ref(id), 0)?.pop() {
            Some(read::Place::Packed { file, entry, .. }) => pack::read_stored(&file, &entry)
                .map_err(|source| StoreError::Pack { id: *id, source }),
            Some(read::Place::Here(blob)) => Ok(blob),
            None => Err(StoreError::NotFound(*id)),
        }
    }

    /// Starts writing a backup: until the session is dropped, every chunk that
    /// [`Session::missing`] says the store holds stays, whatever GC finds.
    pub fn session(self: &Arc<Self>) -> Session {
        self.lock().sessions += 1;
        Session {
            store: self.clone(),
        }
    }

    fn manifest_path(&self, backup: u64) -> PathBuf {
        self.root
            .join("manifests")
            .join(format!("{backup}.manifest"))
    }

    /// Keeps a backup's manifest durably, after its chunks; refuses it when the
    /// store lacks any of them.
    pub fn put_manifest(&self, backup: u64, manifest: &Manifest) -> Result<(), StoreError> {
        self.flush()?;
        let lacking = self.missing(&manifest.chunks()).len();
        if lacking > 0 {
            return Err(StoreError::MissingChunks(lacking));
        }
        durable::write(&self.manifest_path(backup), &manifest.encode())?;
        Ok(())
    }

    /// A backup's manifest, when this store holds it.
    pub fn manifest(&self, backup: u64) -> Result<Option<Manifest>, StoreError> {
        let bytes = match fs::read(self.manifest_path(backup)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Manifest::decode(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Manifest { id: backup, source })
    }

    /// Forgets a backup (its chunks go at the next [`PackStore::gc`]). True when
    /// the store held it.
    pub fn delete_manifest(&self, backup: u64) -> Result<bool, StoreError> {
        Ok(durable::remove(&self.manifest_path(backup))?)
    }

    /// The backups whose manifests this store holds, in order.
    pub fn backups(&self) -> Result<Vec<u64>, StoreError> {
        let mut out: Vec<u64> = fs::read_dir(self.root.join("manifests"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".manifest")?.parse().ok()
            })
            .collect();
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

fn open_pack(path: &Path) -> Result<(PackId, Pack), PackError> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let id = parse_pack_id(name).ok_or(PackError::NotAPack)?;
    let file = File::open(path)?;
    let entries = pack::read_index(&file)?;
    let size = file.metadata()?.len();
    Ok((
        id,
        Pack {
            file: Arc::new(file),
            size,
            entries,
        },
    ))
}

fn parse_pack_id(hex: &str) -> Option<PackId> {
    let id: ChunkId = hex.parse().ok()?;
    Some(PackId(id.0))
}

/// Every file below `dir`, in no particular order.
fn files_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.map_err(io::Error::other)?;
        if entry.file_type().is_file() {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
