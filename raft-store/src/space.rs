//! The data disk running full: telling a write that found no space from other
//! failures, the room the log leaves for the metadata, and the reserve file a node
//! gives up when its disk fills so that its metadata can still be written.
//!
//! Why it matters: openraft 0.9 stops a node for good on any storage error, and
//! sled 0.34 refuses every later write once one of its writes failed. So a full
//! disk must never reach either as an error. The log waits instead (see
//! `LogStore::append`): a write that found no space is retried, positionally, until
//! there is room; the log only starts a new segment while a segment's size plus
//! [`HEADROOM`] is free, and the reserve file (`space-reserve`, [`RESERVE_BYTES`])
//! is deleted when the disk is nearly full, which gives sled room for its few small
//! records while the log waits. It is written again once there is room.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Kept free beside a new log segment: room for the metadata and a snapshot's
/// temporary file while the log waits for space.
pub const HEADROOM: u64 = 4 * 1024 * 1024;

/// The size of the reserve file.
pub const RESERVE_BYTES: u64 = 16 * 1024 * 1024;

const RESERVE_FILE: &str = "space-reserve";

/// Whether an I/O error means the disk (or the user's quota) is full.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The error a write gets when it would leave less than it must.
pub(crate) fn no_space() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

/// Bytes an unprivileged process may still write on the file system holding `path`.
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed statvfs of the right type.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// A node's view of its data disk's space, shared by its storage and the node.
pub struct DiskSpace {
    dir: PathBuf,
    /// Set while a log append waits for space.
    stalled: AtomicBool,
    /// Held while the reserve file is written or deleted.
    reserve: Mutex<()>,
}

impl DiskSpace {
    pub(crate) fn new(dir: &Path) -> DiskSpace {
        DiskSpace {
            dir: dir.to_path_buf(),
            stalled: AtomicBool::new(false),
            reserve: Mutex::new(()),
        }
    }

    /// The directory whose file system this watches.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes still free for this node's writes (the reserve file not counted).
    pub fn available(&self) -> io::Result<u64> {
        available_bytes(&self.dir)
    }

    /// Whether a log append is waiting for space right now.
    pub fn log_stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    pub(crate) fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    fn reserve_path(&self) -> PathBuf {
        self.dir.join(RESERVE_FILE)
    }

    /// Whether the reserve file is in place.
    pub fn reserve_held(&self) -> bool {
        self.reserve_path().exists()
    }

    /// Deletes the reserve file (its space becomes free); true when it was there.
    pub fn release_reserve(&self) -> bool {
        let _held = self.reserve.lock().expect("reserve lock");
        std::fs::remove_file(self.reserve_path()).is_ok()
    }

    /// Writes the reserve file (allocated, not sparse) unless it is there; gives
    /// up, leaving none, when the disk has no room for it.
    pub fn hold_reserve(&self) -> io::Result<()> {
        use std::os::unix::io::AsRawFd;
        let _held = self.reserve.lock().expect("reserve lock");
        let path = self.reserve_path();
        if path.metadata().is_ok_and(|m| m.len() == RESERVE_BYTES) {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{RESERVE_FILE}.tmp"));
        let made = (|| {
            let file = std::fs::File::create(&tmp)?;
            // SAFETY: fallocate on a file descriptor we own.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, RESERVE_BYTES as i64) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                if is_no_space(&e) {
                    return Err(e);
                }
                // No fallocate here: write the zeroes.
                use std::io::Write;
                let zeros = vec![0u8; 1024 * 1024];
                let mut f = &file;
                for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
                    f.write_all(&zeros)?;
                }
            }
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_held_released_and_held_again() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path());
        assert!(!space.reserve_held());
        space.hold_reserve().unwrap();
        assert!(space.reserve_held());
        // Allocated, not sparse: its space is really taken.
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir.path().join(RESERVE_FILE)).unwrap();
        assert_eq!(meta.len(), RESERVE_BYTES);
        assert!(meta.blocks() * 512 >= RESERVE_BYTES);
        assert!(space.release_reserve());
        assert!(!space.release_reserve());
        space.hold_reserve().unwrap();
        space.hold_reserve().unwrap();
        assert!(space.reserve_held());
    }

    #[test]
    fn no_space_is_told_from_other_errors() {
        assert!(is_no_space(&no_space()));
        assert!(is_no_space(&io::Error::from_raw_os_error(libc::EDQUOT)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(libc::EIO)));
        assert!(!is_no_space(&io::Error::other("x")));
    }
}
