//! Writing and removing files so that a crash leaves the old state or the new,
//! never a half: write to a temporary name, fsync, rename, fsync the directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::direct::{DirectWriter, Pipeline};

/// Suffix of a file being written; any left at start-up are a crash's leftovers.
pub const TMP: &str = ".tmp";

/// Writes `bytes` to `path` durably: when this returns, the file is on disk under
/// its name, whole.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    put(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)?;
        Ok(f)
    })
}

/// [`write`] of `parts` one after the other, through [`crate::direct`]: around
/// the page cache, for pack files.
pub fn write_direct(path: &Path, parts: &[&[u8]], pipeline: &mut Pipeline) -> io::Result<()> {
    put(path, |tmp| {
        // A crash's leftover of the same file: written again from the start.
        match fs::remove_file(tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut w = DirectWriter::create_new(tmp, pipeline, true)?;
        for part in parts {
            w.write_all(part)?;
        }
        Ok(w.finish()?.0)
    })
}

/// `write` fills the temporary name; then fsync, rename, fsync the directory
/// (and its parent when the directory is new).
fn put(path: &Path, write: impl FnOnce(&Path) -> io::Result<File>) -> io::Result<()> {
    let dir = path.parent().expect("a file in a directory");
    let fresh_dir = !dir.exists();
    if fresh_dir {
        fs::create_dir_all(dir)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(TMP);
    let tmp = Path::new(&tmp_name);
    let f = write(tmp)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)?;
    sync_dir(dir)?;
    if fresh_dir {
        if let Some(up) = dir.parent() {
            sync_dir(up)?;
        }
    }
    Ok(())
}

/// Removes `path` (if there) and makes the removal durable.
pub fn remove(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(path.parent().expect("a file in a directory"))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Moves `from` to `to` (same file system) durably.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(to.parent().expect("a file in a directory"))?;
    sync_dir(from.parent().expect("a file in a directory"))
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
