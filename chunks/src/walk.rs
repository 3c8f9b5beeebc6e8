//! Walking a backup's source paths: directories, regular files and symlinks
//! (with their modes and mtimes) become entries; everything else is skipped and
//! said why. Files are cut into chunks one at a time, streamed, never whole in
//! memory.

use std::collections::HashSet;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::chunker::{Chunk, Cutter};
use crate::id::ChunkId;
use crate::manifest::{entry_path, Entry, EntryKind, Stamp};

/// One thing the walk met.
#[derive(Debug)]
pub enum Found {
    /// A directory or a symlink, whole.
    Entry(Entry),
    /// A regular file to read: where it is, and its entry without chunks yet.
    File { source: PathBuf, entry: Entry },
    /// Not kept: the path (as an entry path) and why.
    Skipped(Vec<u8>, String),
}

/// Why a source path cannot be backed up at all.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source path {0:?} is not absolute")]
    NotAbsolute(PathBuf),
    #[error("source path {0:?} does not exist")]
    Missing(PathBuf),
    #[error("source path {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Checks that every root is absolute and exists (what a plan must name).
pub fn check_roots(roots: &[PathBuf]) -> Result<(), SourceError> {
    for root in roots {
        if !root.is_absolute() {
            return Err(SourceError::NotAbsolute(root.clone()));
        }
        match std::fs::symlink_metadata(root) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SourceError::Missing(root.clone()))
            }
            Err(source) => {
                return Err(SourceError::Io {
                    path: root.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Walks `roots` (checked with [`check_roots`]) in a stable order: each root's
/// parent directories first, then the root and what is below it, by name. A root
/// inside another root is walked once, as part of the outer one.
pub fn walk(roots: &[PathBuf]) -> Result<impl Iterator<Item = Found>, SourceError> {
    check_roots(roots)?;
    let mut roots: Vec<PathBuf> = roots.to_vec();
    roots.sort();
    roots.dedup();
    let outer: Vec<PathBuf> = roots
        .iter()
        .filter(|r| !roots.iter().any(|o| o != *r && r.starts_with(o)))
        .cloned()
        .collect();
    let mut parents_seen: HashSet<PathBuf> = HashSet::new();
    let iter = outer.into_iter().flat_map(move |root| {
        let parents: Vec<Found> = root
            .ancestors()
            .skip(1)
            .filter(|p| p.parent().is_some())
            .filter(|p| parents_seen.insert(p.to_path_buf()))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(found_at_path)
            .collect();
        let below = walkdir::WalkDir::new(&root)
            .sort_by_file_name()
            .into_iter()
            .map(|e| match e {
                Ok(e) => match e.metadata() {
                    Ok(m) => found(e.path(), &m),
                    Err(err) => skipped(e.path(), &err.to_string()),
                },
                Err(err) => {
                    let at = err.path().map(Path::to_path_buf).unwrap_or_default();
                    skipped(&at, &err.to_string())
                }
            });
        parents.into_iter().chain(below)
    });
    Ok(iter)
}

fn found_at_path(path: &Path) -> Found {
    match std::fs::symlink_metadata(path) {
        Ok(m) => found(path, &m),
        Err(e) => skipped(path, &e.to_string()),
    }
}

fn skipped(path: &Path, why: &str) -> Found {
    Found::Skipped(bytes_of(path), why.to_string())
}

fn bytes_of(path: &Path) -> Vec<u8> {
    entry_path(path).as_os_str().as_bytes().to_vec()
}

fn found(path: &Path, m: &Metadata) -> Found {
    let t = m.file_type();
    let entry = |kind| Entry {
        path: bytes_of(path),
        kind,
        mode: m.mode() & 0o7777,
        mtime: (m.mtime(), m.mtime_nsec() as u32),
        stamp: Stamp {
            inode: m.ino(),
            ctime: (m.ctime(), m.ctime_nsec() as u32),
        },
    };
    if t.is_dir() {
        Found::Entry(entry(EntryKind::Dir))
    } else if t.is_symlink() {
        match std::fs::read_link(path) {
            Ok(target) => Found::Entry(entry(EntryKind::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
            })),
            Err(e) => skipped(path, &e.to_string()),
        }
    } else if t.is_file() {
        Found::File {
            source: path.to_path_buf(),
            entry: entry(EntryKind::File {
                size: m.len(),
                chunks: Vec::new(),
            }),
        }
    } else {
        let what = if t.is_socket() {
            "a socket"
        } else if t.is_fifo() {
            "a fifo"
        } else if t.is_block_device() || t.is_char_device() {
            "a device"
        } else {
            "not a file, directory or symlink"
        };
        skipped(path, what)
    }
}

/// Reads the file at `source` and cuts it into chunks, handing each to `each` in
/// order; the file's length (as read) and its chunk ids.
pub fn chunk_file(
    cutter: &mut Cutter,
    source: &Path,
    mut each: impl FnMut(Chunk) -> io::Result<()>,
) -> io::Result<(u64, Vec<ChunkId>)> {
    let file = File::open(source)?;
    let mut size = 0u64;
    let mut ids = Vec::new();
    cutter.cut(file, |chunk| {
        size += chunk.data.len() as u64;
        ids.push(chunk.id);
        each(chunk)
    })?;
    Ok((size, ids))
}
