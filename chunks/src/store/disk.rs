//! The default home of a store: a directory on the node's own disk, pack files
//! under `packs/<2 hex>/<id>.pack` (written around the page cache, and read so
//! too where the file system allows it), manifests under
//! `manifests/<backup>.manifest`, damaged packs moved to `quarantine/`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;

use super::backend::Backend;
use super::durable;
use crate::direct::{AlignedBuf, Pipeline, ALIGN};
use crate::id::ChunkId;
use crate::pack::PackId;

/// Bytes of a pack written at once.
const SCRATCH: usize = 4 * 1024 * 1024;

pub struct Disk {
    root: PathBuf,
    /// The packs' files, open: a pack deleted by hand under a running store
    /// can still be read (and so written anew by a verify).
    files: RwLock<HashMap<PackId, Arc<File>>>,
    /// The buffers packs are written through (around the page cache, one
    /// being filled while the other is written).
    scratch: Mutex<Pipeline>,
}

impl Disk {
    /// The store's directory (made when missing).
    pub fn new(root: &Path) -> io::Result<Disk> {
        for dir in ["packs", "manifests", "quarantine"] {
            fs::create_dir_all(root.join(dir))?;
        }
        Ok(Disk {
            root: root.to_path_buf(),
            files: RwLock::new(HashMap::new()),
            scratch: Mutex::new(Pipeline::new(SCRATCH, 1)),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn pack_path(&self, id: &PackId) -> PathBuf {
        let hex = id.to_string();
        self.root
            .join("packs")
            .join(&hex[..2])
            .join(format!("{hex}.pack"))
    }

    fn manifest_path(&self, backup: u64) -> PathBuf {
        self.root
            .join("manifests")
            .join(format!("{backup}.manifest"))
    }

    /// Pack `id`'s open file (opened now when it is not yet).
    fn file(&self, id: &PackId) -> io::Result<Arc<File>> {
        if let Some(f) = self.files.read().expect("files lock").get(id) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.pack_path(id))?);
        self.files
            .write()
            .expect("files lock")
            .insert(*id, f.clone());
        Ok(f)
    }
}

impl Backend for Disk {
    fn describe(&self) -> String {
        format!("pack files in {}", self.root.display())
    }

    fn capacity(&self) -> io::Result<Option<(u64, u64)>> {
        let s = rustix::fs::statvfs(&self.root)?;
        Ok(Some((
            s.f_blocks.saturating_mul(s.f_frsize),
            s.f_bavail.saturating_mul(s.f_frsize),
        )))
    }

    fn clean_leftovers(&self) -> io::Result<usize> {
        let mut n = 0;
        for dir in ["packs", "manifests"] {
            for path in files_under(&self.root.join(dir))? {
                if path.to_string_lossy().ends_with(durable::TMP) {
                    fs::remove_file(&path)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    fn list_packs(&self) -> io::Result<Vec<(PackId, u64)>> {
        let mut out = Vec::new();
        for path in files_under(&self.root.join("packs"))? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(id) = name.strip_suffix(".pack").and_then(parse_pack_id) else {
                continue; // not ours
            };
            out.push((id, self.file(&id)?.metadata()?.len()));
        }
        Ok(out)
    }

    /// One direct read (the aligned bytes around the range, answered as a
    /// slice of them) where the file system allows it; else one through the
    /// open file, which also serves a pack deleted by hand since it was opened.
    fn read(&self, id: &PackId, offset: u64, len: usize) -> io::Result<Bytes> {
        let to = offset + len as u64;
        let base = offset / ALIGN as u64 * ALIGN as u64;
        let span = (to - base).div_ceil(ALIGN as u64) as usize * ALIGN;
        let mut buf = AlignedBuf::new(span);
        let direct = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(self.pack_path(id));
        // Direct reads are a speed-up only: a file system that refuses them at
        // open or read (tmpfs), or a pack removed since, is read as before.
        let done = match direct {
            Ok(d) => buf.read_at(&d, base, span),
            Err(e) => Err(e),
        };
        if done.is_err() || buf.as_ref().len() < (to - base) as usize {
            buf.read_at(&*self.file(id)?, base, (to - base) as usize)?;
        }
        let got = buf.as_ref().len().min((to - base) as usize);
        let from = (offset - base) as usize;
        Ok(Bytes::from_owner(buf).slice(from.min(got)..got))
    }

    fn write_pack(&self, id: &PackId, parts: &[&[u8]]) -> io::Result<()> {
        let path = self.pack_path(id);
        let mut scratch = self
            .scratch
            .lock()
            .expect("the scratch lock is never poisoned");
        durable::write_direct(&path, parts, &mut scratch)?;
        drop(scratch);
        // A pack written anew (a verify's repair) is read from the new file.
        let f = Arc::new(File::open(&path)?);
        self.files.write().expect("files lock").insert(*id, f);
        Ok(())
    }

    fn has_pack(&self, id: &PackId) -> io::Result<bool> {
        self.pack_path(id).try_exists()
    }

    fn remove_pack(&self, id: &PackId) -> io::Result<bool> {
        self.files.write().expect("files lock").remove(id);
        durable::remove(&self.pack_path(id))
    }

    fn quarantine_pack(&self, id: &PackId) -> io::Result<()> {
        self.files.write().expect("files lock").remove(id);
        let path = self.pack_path(id);
        if !path.exists() {
            return Ok(());
        }
        let name = path.file_name().expect("a file name");
        durable::rename(&path, &self.root.join("quarantine").join(name))
    }

    fn write_manifest(&self, backup: u64, bytes: &[u8]) -> io::Result<()> {
        durable::write(&self.manifest_path(backup), bytes)
    }

    fn read_manifest(&self, backup: u64) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.manifest_path(backup)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove_manifest(&self, backup: u64) -> io::Result<bool> {
        durable::remove(&self.manifest_path(backup))
    }

    fn manifests(&self) -> io::Result<Vec<u64>> {
        Ok(fs::read_dir(self.root.join("manifests"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".manifest")?.parse().ok()
            })
            .collect())
    }
}

/// A pack's name from its hex form.
pub fn parse_pack_id(hex: &str) -> Option<PackId> {
    let id: ChunkId = hex.parse().ok()?;
    Some(PackId(id.0))
}

/// Every file below `dir`, in no particular order.
pub(super) fn files_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.map_err(io::Error::other)?;
        if entry.file_type().is_file() {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}
