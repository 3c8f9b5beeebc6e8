//! A generated tree backed up into a real store on disk and restored elsewhere:
//! byte-identical, with modes, mtimes and symlinks; deduplicated when backed up
//! again; and a restore that must not write refuses before touching anything.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bcm_chunks::gen::noise;
use bcm_chunks::local::{self, LocalError};
use bcm_chunks::manifest::{Entry, EntryKind, Manifest, Stamp};
use bcm_chunks::{Chunker, PackStore, RestoreError};
use filetime::FileTime;

/// Nested directories, 300 files (empty, small, large, duplicated), modes,
/// mtimes, symlinks (one dangling) and a fifo (skipped).
fn make_tree(root: &Path) {
    let big = noise(3 << 20, 1);
    for d in 0..3 {
        for e in 0..4 {
            let dir = root.join(format!("d{d}/e{e}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..25u64 {
                let path = dir.join(format!("f{f}.txt"));
                let body = match f % 5 {
                    0 => Vec::new(),
                    1 => format!("small file {d} {e} {f}\n").into_bytes(),
                    2 => noise(10_000 + f as usize * 97, f + 100 * d),
                    _ => b"shared content\n".repeat(200),
                };
                fs::write(&path, body).unwrap();
                let mode = [0o644, 0o600, 0o755, 0o640, 0o444][f as usize % 5];
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
                let t = FileTime::from_unix_time(1_600_000_000 + f as i64 * 3600, 123_456_789);
                filetime::set_file_mtime(&path, t).unwrap();
            }
        }
    }
    fs::write(root.join("big.bin"), &big).unwrap();
    fs::write(root.join("d1/big-copy.bin"), &big).unwrap();
    std::os::unix::fs::symlink("d0/e0/f1.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("d2/dangling")).unwrap();
    let fifo = root.join("d0/pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    fs::set_permissions(root.join("d2"), fs::Permissions::from_mode(0o750)).unwrap();
    filetime::set_file_mtime(root.join("d2"), FileTime::from_unix_time(1_500_000_000, 0)).unwrap();
}

/// Every path below `root` with what a restore must give back.
fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        let what = if m.file_type().is_symlink() {
            format!("link -> {:?}", fs::read_link(e.path()).unwrap())
        } else if m.is_dir() {
            "dir".to_string()
        } else if m.is_file() {
            format!("file {}", blake3::hash(&fs::read(e.path()).unwrap()))
        } else {
            "other".to_string()
        };
        let mtime = (m.mtime(), m.mtime_nsec());
        let mode = if m.file_type().is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        out.insert(rel, format!("{what} mode {mode:o} mtime {mtime:?}"));
    }
    out
}

fn store_in(dir: &Path) -> Arc<PackStore> {
    Arc::new(PackStore::open(dir).unwrap().0)
}

#[test]
fn a_tree_comes_back_byte_identical_with_modes_mtimes_and_symlinks() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let store = store_in(&work.path().join("store"));
    let chunker = Chunker::default();
    let (manifest, stats) = local::backup(&store, &chunker, std::slice::from_ref(&src), 1).unwrap();
    assert_eq!(stats.files, 302);
    assert_eq!(stats.skipped, 1, "the fifo: {:?}", manifest.skipped);
    assert!(manifest.skipped[0].1.contains("fifo"));
    // The duplicated 3 MiB file and the shared small files are stored once.
    assert!(stats.new_bytes < stats.size_bytes - (3 << 20), "{stats:?}");

    let target = work.path().join("restored");
    let restored = local::restore(&store, 1, &target, false, None).unwrap();
    assert_eq!(restored.files, 302);
    let inside = target.join(src.strip_prefix("/").unwrap());
    let mut want = describe(&src);
    want.remove(Path::new("d0/pipe"));
    assert_eq!(describe(&inside), want);

    // Unchanged: the second backup stores nothing new.
    let (_, again) = local::backup(&store, &chunker, std::slice::from_ref(&src), 2).unwrap();
    assert_eq!((again.new_chunks, again.size_bytes), (0, stats.size_bytes));
}

/// A generated tree under a temporary directory, backed up as backup 1.
fn backed_up() -> (tempfile::TempDir, PathBuf, Arc<PackStore>, Manifest) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    make_tree(&src);
    let store = store_in(&work.path().join("store"));
    let (manifest, _) =
        local::backup(&store, &Chunker::default(), std::slice::from_ref(&src), 1).unwrap();
    (work, src, store, manifest)
}

#[test]
fn a_sub_path_restores_alone() {
    let (work, src, store, _) = backed_up();
    let target = work.path().join("restored");
    let sub = src.join("d1/e2");
    let include = bcm_chunks::manifest::entry_path(&sub);
    let stats = local::restore(&store, 1, &target, false, Some(&include)).unwrap();
    assert_eq!(stats.files, 25);
    let inside = target.join(&include);
    assert_eq!(describe(&inside), describe(&sub));
    assert!(!target
        .join(bcm_chunks::manifest::entry_path(&src.join("d0")))
        .exists());
}

#[test]
fn a_non_empty_target_is_refused_without_overwrite_and_left_as_it_was() {
    let (work, src, store, _) = backed_up();
    let target = work.path().join("busy");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("mine.txt"), b"an operator's file").unwrap();
    let before = describe(&target);
    let err = local::restore(&store, 1, &target, false, None).unwrap_err();
    assert!(
        matches!(err, LocalError::Restore(RestoreError::NotEmpty(_))),
        "{err}"
    );
    assert_eq!(describe(&target), before);
    // With overwrite, it is restored beside what was there.
    local::restore(&store, 1, &target, true, None).unwrap();
    assert_eq!(
        fs::read(target.join("mine.txt")).unwrap(),
        b"an operator's file"
    );
    let inside = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(describe(&inside).len(), describe(&src).len() - 1);
}

#[test]
fn a_relative_target_and_bad_sources_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let store = store_in(&work.path().join("store"));
    let c = Chunker::default();
    for bad in ["relative/path", "/no/such/path/anywhere"] {
        let err = local::backup(&store, &c, &[PathBuf::from(bad)], 1).unwrap_err();
        assert!(matches!(err, LocalError::Source(_)), "{bad}: {err}");
    }
    assert!(store.backups().unwrap().is_empty());
    let m = Manifest::default();
    let err = bcm_chunks::restore::restore(&m, Path::new("rel"), false, None, |_| {
        Err::<bcm_chunks::Checked, String>("unused".into())
    })
    .unwrap_err();
    assert!(matches!(err, RestoreError::NotAbsolute(_)), "{err}");
}

#[test]
fn a_manifest_that_climbs_through_a_symlink_writes_nothing_outside() {
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let target = work.path().join("target");
    // Built by hand: a symlink to outside, then a file "through" it.
    let m = Manifest {
        entries: vec![
            Entry {
                path: b"escape".to_vec(),
                kind: EntryKind::Symlink {
                    target: outside.as_os_str().as_encoded_bytes().to_vec(),
                },
                mode: 0o777,
                mtime: (0, 0),
                stamp: Stamp::default(),
            },
            Entry {
                path: b"escape/planted".to_vec(),
                kind: EntryKind::File {
                    size: 0,
                    chunks: vec![],
                },
                mode: 0o644,
                mtime: (0, 0),
                stamp: Stamp::default(),
            },
        ],
        skipped: vec![],
    };
    let err = bcm_chunks::restore::restore(&m, &target, false, None, |_| {
        Err::<bcm_chunks::Checked, String>("unused".into())
    })
    .unwrap_err();
    assert!(matches!(err, RestoreError::NotADirectory(_)), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn a_chunk_that_does_not_hash_to_its_id_fails_the_restore_and_leaves_no_part_file() {
    let (work, _src, store, manifest) = backed_up();
    let target = work.path().join("restored");
    let err = bcm_chunks::restore::restore(&manifest, &target, false, None, |id| {
        let mut data = store.get(id).map_err(|e| e.to_string())?;
        if data.len() > 1000 {
            data[500] ^= 1; // a bit flipped on the way
        }
        bcm_chunks::Checked::new(*id, data).ok_or("its bytes do not hash to its id".to_string())
    })
    .unwrap_err();
    assert!(
        matches!(&err, RestoreError::Chunk { why, .. } if why.contains("hash")),
        "{err}"
    );
    let parts = walkdir::WalkDir::new(&target)
        .into_iter()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".bcm-restore")
        })
        .count();
    assert_eq!(parts, 0);
}
