//! Trees of files to back up, and what a restore must give back of them.
//!
//! [`make_tree`] writes a seeded tree: nested directories, empty, small and
//! large files, content repeated across files, varied modes and mtimes, a
//! symlink (and a dangling one) and a fifo (which a backup skips). [`describe`]
//! says, per path below a root, what a byte-identical restore must match.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Bytes from `seed` that neither repeat nor compress (xorshift64, eight bytes
/// a step: fast enough in a debug build for files of tens of MiB).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What [`make_tree`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    pub files: u64,
    pub bytes: u64,
}

/// Writes about `files` regular files under `root` (at least 120), in nested
/// directories, plus two symlinks and a fifo.
pub fn make_tree(root: &Path, files: u64) -> TreeStats {
    let mut stats = TreeStats { files: 0, bytes: 0 };
    let big = noise(3 << 20, 1);
    let mut write = |path: &Path, body: &[u8], mode: u32, mtime_s: u64| {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        set_mtime(path, mtime_s);
        stats.files += 1;
        stats.bytes += body.len() as u64;
    };
    let per_dir = 30;
    let dirs = files.div_ceil(per_dir).max(4);
    for d in 0..dirs {
        let dir = root.join(format!("d{}/e{}", d % 4, d));
        for f in 0..per_dir {
            let n = d * per_dir + f;
            let body = match n % 6 {
                0 => Vec::new(),
                1 => format!("small file {n}\n").into_bytes(),
                2 => noise(5_000 + (n as usize * 131) % 60_000, n),
                3 => b"the same content in many files\n".repeat(300),
                4 => noise(200_000, n),
                _ => format!("line {n}\n").repeat(50).into_bytes(),
            };
            let mode = [0o644, 0o600, 0o755, 0o640, 0o444, 0o700][(n % 6) as usize];
            write(
                &dir.join(format!("f{n}.dat")),
                &body,
                mode,
                1_600_000_000 + n * 977,
            );
        }
    }
    write(&root.join("big.bin"), &big, 0o644, 1_650_000_000);
    write(&root.join("d1/big-copy.bin"), &big, 0o600, 1_650_000_001);
    std::os::unix::fs::symlink("d0/e0/f1.dat", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("d2/dangling")).unwrap();
    let fifo = root.join("d3/pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success(), "mkfifo {}", fifo.display());
    fs::set_permissions(root.join("d2"), fs::Permissions::from_mode(0o750)).unwrap();
    for d in ["d0", "d1", "d2", "d3"] {
        set_mtime(&root.join(d), 1_500_000_000);
    }
    stats
}

fn set_mtime(path: &Path, secs: u64) {
    let f = File::open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::new(secs, 123_456_789))
        .unwrap();
}

/// Per path below `root` (fifos and other special files aside): its kind,
/// content hash or link target, mode and mtime.
pub fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            let t = m.file_type();
            let what = if t.is_symlink() {
                format!("link -> {:?}", fs::read_link(&path).unwrap())
            } else if t.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if t.is_file() {
                format!("file {:016x}", digest(&fs::read(&path).unwrap()))
            } else {
                continue;
            };
            let mode = if t.is_symlink() { 0 } else { m.mode() & 0o7777 };
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let mtime = (m.mtime(), m.mtime_nsec());
            out.insert(rel, format!("{what} mode {mode:o} mtime {mtime:?}"));
        }
    }
    out
}

/// A content digest good enough to tell files apart in a test (FNV-1a, 64 bits).
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
