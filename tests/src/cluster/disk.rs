//! Data dirs on file systems of their own: small tmpfs mounts filled and freed
//! again (the full-disk tests), ext4 images frozen and thawed (the stalled-disk
//! test). Mounting needs root.

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
    run(
        "mount",
        &["-t", "tmpfs", "-o", "size=1m", "tmpfs"],
        &[probe.path()],
    )
    .map_err(|e| format!("cannot mount a tmpfs here: {e}"))?;
    unmount(probe.path());
    Ok(())
}

/// Whether this process may freeze a file system: it may mount one, and a
/// loop-mounted ext4 image can be made, frozen and thawed.
pub fn can_freeze() -> Result<(), String> {
    can_mount()?;
    let probe = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mnt = probe.path().join("mnt");
    let image = probe.path().join("probe.img");
    let tried = (|| {
        make_ext4(&image, 16)?;
        fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        run("mount", &["-o", "loop"], &[&image, &mnt])?;
        let frozen =
            run("fsfreeze", &["-f"], &[&mnt]).and_then(|()| run("fsfreeze", &["-u"], &[&mnt]));
        unmount(&mnt);
        frozen
    })();
    tried.map_err(|e| format!("cannot freeze a loop-mounted ext4 here: {e}"))
}

/// Runs `program` with `args` and `paths`; `Err` with its output when it fails.
fn run(program: &str, args: &[&str], paths: &[&Path]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .args(paths)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A sparse image file of `size_mb` MiB holding an empty ext4 file system.
fn make_ext4(image: &Path, size_mb: u64) -> Result<(), String> {
    let file = fs::File::create(image).map_err(|e| e.to_string())?;
    file.set_len(size_mb << 20).map_err(|e| e.to_string())?;
    run("mkfs.ext4", &["-q", "-F"], &[image])
}

/// What a node's data dir lives on, when not on the test directory's disk.
#[derive(Debug, Clone, Copy)]
pub(super) struct DataDisk {
    pub kind: DiskKind,
    pub size_mb: u64,
    /// The node's `node.disk_reserve_mb`.
    pub reserve_mb: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum DiskKind {
    Tmpfs,
    /// A loop-mounted ext4 image (beside the data dir), which can be frozen.
    Ext4,
}

impl DataDisk {
    /// Mounts a file system of this kind at `dir` (created when missing).
    pub(super) fn mount(&self, dir: &Path) {
        match self.kind {
            DiskKind::Tmpfs => mount_tmpfs(dir, self.size_mb),
            DiskKind::Ext4 => {
                let image = dir.with_extension("img");
                make_ext4(&image, self.size_mb).expect("make an ext4 image");
                fs::create_dir_all(dir).expect("create the mount point");
                run("mount", &["-o", "loop"], &[&image, dir]).expect("mount the ext4 image");
                // Only its owner may read a data dir, as on the tmpfs mounts.
                fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .expect("chmod the mount point");
            }
        }
    }
}

/// Mounts a tmpfs of `size_mb` MiB at `dir` (created when missing).
fn mount_tmpfs(dir: &Path, size_mb: u64) {
    fs::create_dir_all(dir).expect("create the mount point");
    let options = format!("size={size_mb}m,mode=0700");
    run("mount", &["-t", "tmpfs", "-o", &options, "tmpfs"], &[dir])
        .unwrap_or_else(|e| panic!("mount a tmpfs at {}: {e}", dir.display()));
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

    /// Freezes node `id`'s data disk (an ext4 image, `data_on_ext4`): every
    /// write and sync there waits until [`Cluster::thaw_disk`], as on a disk
    /// that stalls.
    pub fn freeze_disk(&self, id: u64) {
        run("fsfreeze", &["-f"], &[&self.data_dir(id)]).expect("freeze the data disk");
        self.log(format!("froze node {id}'s data disk"));
    }

    /// Lets node `id`'s frozen data disk go on.
    pub fn thaw_disk(&self, id: u64) {
        run("fsfreeze", &["-u"], &[&self.data_dir(id)]).expect("thaw the data disk");
        self.log(format!("thawed node {id}'s data disk"));
    }

    pub(super) fn unmount_all(&self) {
        let Some(disk) = self.disk else { return };
        for id in self.nodes.keys() {
            let dir = self.data_dir(*id);
            if disk.kind == DiskKind::Ext4 {
                // A frozen file system is thawed first (a failure: it was not frozen).
                let _ = run("fsfreeze", &["-u"], &[&dir]);
            }
            unmount(&dir);
        }
    }
}
