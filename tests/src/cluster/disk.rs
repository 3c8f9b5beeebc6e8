//! Data dirs on small tmpfs mounts, filled and freed again: the full-disk tests
//! (mounting needs root).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Cluster;

/// Whether this process may mount file systems (root, and a mount tried).
pub fn can_mount() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("data dirs on tmpfs need root (mount)".into());
    }
    let probe = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(probe.path())
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cannot mount a tmpfs here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    unmount(probe.path());
    Ok(())
}

/// Mounts a tmpfs of `size_mb` MiB at `dir` (created when missing).
pub(super) fn mount_tmpfs(dir: &Path, size_mb: u64) {
    fs::create_dir_all(dir).expect("create the mount point");
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size_mb}m,mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount a tmpfs at {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Unmounts `dir` (lazily: a process that still holds a file there lets go later).
pub(super) fn unmount(dir: &Path) {
    let _ = Command::new("umount").arg("-l").arg(dir).output();
}

impl Cluster {
    /// Fills node `id`'s data disk until the file system refuses a write (ENOSPC),
    /// with a file of its own; returns its path and how many bytes it took.
    pub fn fill_disk(&self, id: u64) -> (PathBuf, u64) {
        let path = self.data_dir(id).join("filler");
        let mut file = fs::File::create(&path).expect("create the filler file");
        let block = vec![0x5au8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("fill {}: {e}", path.display()),
            }
        }
        // The last bytes (a partial page) one at a time.
        while let Ok(1) = file.write(&[0x5a]) {
            written += 1;
        }
        self.log(format!(
            "filled node {id}'s data disk: {} holds {written} bytes",
            path.display()
        ));
        (path, written)
    }

    /// Deletes what [`Cluster::fill_disk`] wrote.
    pub fn free_disk(&self, id: u64) {
        let path = self.data_dir(id).join("filler");
        fs::remove_file(&path).expect("remove the filler file");
        self.log(format!("freed node {id}'s data disk"));
    }

    pub(super) fn unmount_all(&self) {
        for id in self.nodes.keys() {
            if self.tmpfs.is_some() {
                unmount(&self.data_dir(*id));
            }
        }
    }
}
