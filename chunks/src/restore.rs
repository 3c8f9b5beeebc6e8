//! Writing a backup's entries back under a target directory: each file into a
//! temporary name, from chunks checked against their ids ([`Checked`]: the
//! caller checks them, once, as they arrive), then renamed once it is
//! durable (files go in batches: one `syncfs` makes a batch durable, then its
//! files get their names); modes and mtimes set (directories' last, once their
//! contents are in); symlinks recreated. Nothing is written outside the target: entry paths are
//! plain names, and no directory on the way may be a symlink.

use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;

use crate::direct::{DirectWriter, Pipeline};
use crate::id::{Checked, ChunkId};
use crate::manifest::{relative_path, Entry, EntryKind, Manifest, ManifestError};

/// Suffix of a file being restored.
const PART: &str = ".bcm-restore";
/// Files written and not yet renamed, at most (and their bytes).
const BATCH_FILES: usize = 512;
const BATCH_BYTES: u64 = 256 << 20;
/// Files this large or larger are written around the page cache
/// ([`crate::direct`]); smaller ones through it (one device write each would
/// cost more than the copy), through buffers of `WRITE_BUF` bytes, up to
/// `WRITES_IN_FLIGHT` of them being written while the next is filled.
const DIRECT_MIN: u64 = 1 << 20;
const WRITE_BUF: usize = 4 << 20;
const WRITES_IN_FLIGHT: usize = 1;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the target path {0:?} is not absolute")]
    NotAbsolute(PathBuf),
    #[error("the target path {0:?} is not empty (restore with overwrite to write into it)")]
    NotEmpty(PathBuf),
    #[error("{0:?} is in the way: it is not a directory")]
    NotADirectory(PathBuf),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("chunk {id} of {path:?}: {why}")]
    Chunk {
        id: ChunkId,
        path: PathBuf,
        why: String,
    },
    #[error("{path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a restore wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for RestoreStats {
    fn add_assign(&mut self, o: RestoreStats) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.bytes += o.bytes;
    }
}

impl std::ops::Add for RestoreStats {
    type Output = RestoreStats;

    fn add(mut self, o: RestoreStats) -> RestoreStats {
        self += o;
        self
    }
}

/// A restore in progress under one target directory.
pub struct Restorer {
    target: PathBuf,
    overwrite: bool,
    /// Directories restored, to get their modes and mtimes at the end.
    dirs: Vec<(PathBuf, u32, (i64, u32))>,
    /// Files written under their temporary names, to rename once durable, and
    /// their bytes.
    written: Vec<(PathBuf, PathBuf)>,
    written_bytes: u64,
    /// Large files' writes go out while the next chunks are copied in.
    writes: Pipeline,
    pub stats: RestoreStats,
}

impl Restorer {
    /// Checks the target (absolute; a directory or absent; empty unless
    /// `overwrite`) and creates it when absent. Nothing is touched on refusal.
    pub fn new(target: &Path, overwrite: bool) -> Result<Restorer, RestoreError> {
        if !target.is_absolute() {
            return Err(RestoreError::NotAbsolute(target.to_path_buf()));
        }
        match fs::metadata(target) {
            Ok(m) if !m.is_dir() => return Err(RestoreError::NotADirectory(target.into())),
            Ok(_) => {
                let mut entries = fs::read_dir(target).map_err(at(target))?;
                if entries.next().is_some() && !overwrite {
                    return Err(RestoreError::NotEmpty(target.to_path_buf()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(target).map_err(at(target))?
            }
            Err(e) => return Err(at(target)(e)),
        }
        Ok(Restorer {
            target: target.to_path_buf(),
            overwrite,
            dirs: Vec::new(),
            written: Vec::new(),
            written_bytes: 0,
            writes: Pipeline::new(WRITE_BUF, WRITES_IN_FLIGHT),
            stats: RestoreStats::default(),
        })
    }

    /// Another restorer into the same target (already checked), for a thread of
    /// its own: restorers share a target when each takes some of the files.
    /// Give it no directory entries (their modes are set by the one that has
    /// them, last); finish it before the first one.
    pub fn worker(&self) -> Restorer {
        Restorer {
            target: self.target.clone(),
            overwrite: self.overwrite,
            dirs: Vec::new(),
            written: Vec::new(),
            written_bytes: 0,
            writes: Pipeline::new(WRITE_BUF, WRITES_IN_FLIGHT),
            stats: RestoreStats::default(),
        }
    }

    /// Restores one entry; a file's chunks come from `fetch`, each checked
    /// against its id before it is written. On an error, the files written and
    /// not yet renamed are removed.
    pub fn entry<E: std::fmt::Display>(
        &mut self,
        entry: &Entry,
        fetch: impl FnMut(&ChunkId) -> Result<Checked, E>,
    ) -> Result<(), RestoreError> {
        let done = self.entry_inner(entry, fetch);
        if done.is_err() {
            self.discard();
        }
        done
    }

    fn entry_inner<E: std::fmt::Display>(
        &mut self,
        entry: &Entry,
        mut fetch: impl FnMut(&ChunkId) -> Result<Checked, E>,
    ) -> Result<(), RestoreError> {
        let rel = relative_path(entry.path())?;
        let path = self.target.join(rel);
        self.make_parents(rel)?;
        match &entry.kind {
            EntryKind::Dir => {
                make_dir(&path)?;
                // Writable while its contents go in; its own mode comes last.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).map_err(at(&path))?;
                self.dirs.push((path, entry.mode, entry.mtime));
                self.stats.dirs += 1;
            }
            EntryKind::File { size, chunks } => {
                let part = part_name(&path);
                let writes = &mut self.writes;
                let written =
                    match write_file(&part, &path, writes, *size, chunks, entry, &mut fetch) {
                        Ok(n) => n,
                        Err(e) => {
                            let _ = fs::remove_file(&part);
                            return Err(e);
                        }
                    };
                self.written.push((part, path));
                self.written_bytes += written;
                self.stats.files += 1;
                self.stats.bytes += written;
                if self.written.len() >= BATCH_FILES || self.written_bytes >= BATCH_BYTES {
                    self.rename_written()?;
                }
            }
            EntryKind::Symlink { target } => {
                let part = part_name(&path);
                let _ = fs::remove_file(&part);
                let to = Path::new(std::ffi::OsStr::from_bytes(target));
                std::os::unix::fs::symlink(to, &part).map_err(at(&part))?;
                filetime::set_symlink_file_times(&part, time(entry.mtime), time(entry.mtime))
                    .map_err(at(&part))?;
                self.replace(&part, &path)?;
                self.stats.symlinks += 1;
            }
        }
        Ok(())
    }

    /// Makes the files written so far durable (one `syncfs` of the target's file
    /// system), then gives each its name.
    fn rename_written(&mut self) -> Result<(), RestoreError> {
        if self.written.is_empty() {
            return Ok(());
        }
        sync_file_system(&self.target)?;
        for (part, path) in std::mem::take(&mut self.written) {
            if let Err(e) = self.replace(&part, &path) {
                self.written.clear();
                return Err(e);
            }
        }
        self.written_bytes = 0;
        Ok(())
    }

    /// Gives up: the files written and not yet renamed are removed.
    pub fn abandon(mut self) {
        self.discard();
    }

    /// Removes the files written and not renamed (a restore that failed).
    fn discard(&mut self) {
        for (part, _) in self.written.drain(..) {
            let _ = fs::remove_file(part);
        }
        self.written_bytes = 0;
    }

    /// Moves a restored file or symlink to its name, over what is there when
    /// overwriting (never over a directory).
    fn replace(&self, part: &Path, path: &Path) -> Result<(), RestoreError> {
        if let Ok(m) = fs::symlink_metadata(path) {
            if m.is_dir() || !self.overwrite {
                let _ = fs::remove_file(part);
                return Err(if m.is_dir() {
                    RestoreError::NotADirectory(part.to_path_buf())
                } else {
                    RestoreError::NotEmpty(path.to_path_buf())
                });
            }
        }
        fs::rename(part, path).map_err(at(path))
    }

    /// Creates the directories above `rel` that are missing; refuses one that is
    /// a symlink or not a directory, so that nothing lands outside the target.
    fn make_parents(&self, rel: &Path) -> Result<(), RestoreError> {
        let mut dir = self.target.clone();
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        for name in parent.components() {
            dir.push(name);
            make_dir(&dir)?;
        }
        Ok(())
    }

    /// Gives directories their modes and mtimes, deepest first, and flushes
    /// them (so the renames into them are durable).
    pub fn finish(mut self) -> Result<RestoreStats, RestoreError> {
        if let Err(e) = self.rename_written() {
            self.discard();
            return Err(e);
        }
        self.dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (dir, mode, mtime) in &self.dirs {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(at(dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(*mode)).map_err(at(dir))?;
            filetime::set_file_mtime(dir, time(*mtime)).map_err(at(dir))?;
        }
        File::open(&self.target)
            .and_then(|d| d.sync_all())
            .map_err(at(&self.target))?;
        Ok(self.stats)
    }
}

/// Creates the directory `dir` unless it is one already (another restorer of the
/// same target may create it at the same moment); refuses anything else there,
/// a symlink included.
fn make_dir(dir: &Path) -> Result<(), RestoreError> {
    for _ in 0..2 {
        match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => return Err(RestoreError::NotADirectory(dir.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(dir) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                made => return made.map_err(at(dir)),
            },
            Err(e) => return Err(at(dir)(e)),
        }
    }
    Err(RestoreError::NotADirectory(dir.to_path_buf()))
}

/// Writes a file's chunks into `part` (created anew: never through a symlink
/// someone left there), checking each, with its mode and mtime; not flushed.
fn write_file<E: std::fmt::Display>(
    part: &Path,
    path: &Path,
    writes: &mut Pipeline,
    size: u64,
    chunks: &[ChunkId],
    entry: &Entry,
    fetch: &mut impl FnMut(&ChunkId) -> Result<Checked, E>,
) -> Result<u64, RestoreError> {
    let _ = fs::remove_file(part);
    let mut f = DirectWriter::create_new(part, writes, size >= DIRECT_MIN).map_err(at(part))?;
    let bad = |id: &ChunkId, why: String| RestoreError::Chunk {
        id: *id,
        path: path.to_path_buf(),
        why,
    };
    for id in chunks {
        let data = fetch(id).map_err(|e| bad(id, e.to_string()))?;
        if data.id() != *id {
            return Err(bad(id, format!("chunk {} came in its place", data.id())));
        }
        f.write_all(data.bytes()).map_err(at(part))?;
    }
    let (f, written) = f.finish().map_err(at(part))?;
    if written != size {
        let last = chunks.last().copied().unwrap_or(ChunkId([0; 32]));
        return Err(bad(
            &last,
            format!("the chunks hold {written} bytes, the file {size}"),
        ));
    }
    f.set_permissions(fs::Permissions::from_mode(entry.mode))
        .map_err(at(part))?;
    filetime::set_file_handle_times(&f, None, Some(time(entry.mtime))).map_err(at(part))?;
    Ok(written)
}

/// Flushes everything written to the file system holding `dir` (syncfs(2): one
/// call for a batch of files, where one fsync each would wait for a journal
/// commit each).
fn sync_file_system(dir: &Path) -> Result<(), RestoreError> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir).map_err(at(dir))?;
    // SAFETY: `d` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(at(dir)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Restores the entries of `manifest` at or under `include` (an entry path; all
/// when `None`) into `target`.
pub fn restore<E: std::fmt::Display>(
    manifest: &Manifest,
    target: &Path,
    overwrite: bool,
    include: Option<&Path>,
    mut fetch: impl FnMut(&ChunkId) -> Result<Checked, E>,
) -> Result<RestoreStats, RestoreError> {
    let prefix = include.unwrap_or(Path::new(""));
    let mut r = Restorer::new(target, overwrite)?;
    for entry in manifest.under(prefix) {
        r.entry(entry, &mut fetch)?;
    }
    r.finish()
}

fn part_name(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().expect("an entry has a name"));
    name.push(PART);
    path.with_file_name(name)
}

fn time((secs, nanos): (i64, u32)) -> FileTime {
    FileTime::from_unix_time(secs, nanos)
}
