use std::fs;
use std::path::PathBuf;

use super::disk::files_under;
use super::*;
use crate::gen::noise;
use crate::manifest::{Entry, EntryKind, Stamp};

pub(super) fn blob(data: &[u8]) -> Blob {
    Blob::new(ChunkId::of(data), data).unwrap()
}

fn open(dir: &Path) -> Arc<PackStore> {
    Arc::new(PackStore::open(dir).unwrap().0)
}

pub(super) fn manifest_of(chunks: &[&[u8]]) -> Manifest {
    Manifest {
        entries: vec![Entry {
            path: b"f".to_vec(),
            kind: EntryKind::File {
                size: chunks.iter().map(|c| c.len() as u64).sum(),
                chunks: chunks.iter().map(|c| ChunkId::of(c)).collect(),
            },
            mode: 0o600,
            mtime: (0, 0),
            stamp: Stamp::default(),
        }],
        skipped: vec![],
    }
}

fn pack_files(dir: &Path) -> Vec<PathBuf> {
    files_under(&dir.join("packs")).unwrap()
}

#[test]
fn chunks_put_and_flushed_come_back_after_a_reopen_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = b"alpha ".repeat(500);
    let b = noise(3000, 1);
    assert!(store.put(&blob(&a)).unwrap());
    assert!(!store.put(&blob(&a)).unwrap(), "a chunk is kept once");
    assert!(store.put(&blob(&b)).unwrap());
    // Readable before the flush too.
    assert_eq!(store.get(&ChunkId::of(&b)).unwrap(), b);
    store.flush().unwrap();
    store.flush().unwrap();
    assert_eq!(pack_files(dir.path()).len(), 1);
    drop(store);
    let (store, report) = PackStore::open(dir.path()).unwrap();
    assert_eq!((report.packs, report.quarantined.len()), (1, 0));
    assert_eq!(store.get(&ChunkId::of(&a)).unwrap(), a);
    assert_eq!(store.get(&ChunkId::of(&b)).unwrap(), b);
    let c = ChunkId::of(b"never put");
    assert!(matches!(store.get(&c), Err(StoreError::NotFound(_))));
    assert_eq!(store.missing(&[ChunkId::of(&a), c]), vec![c]);
    let s = store.stats().unwrap();
    assert_eq!((s.packs, s.chunks, s.raw_bytes), (1, 2, 6000));
    assert!(s.stored_bytes < 6000, "compressed: {s:?}");
}

#[test]
fn a_blob_that_does_not_hash_to_its_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut forged = blob(b"the real bytes");
    forged.stored = b"other bytes!!!".to_vec();
    forged.compressed = false;
    assert!(matches!(store.put(&forged), Err(StoreError::Mismatch(_))));
    assert!(!store.has(&forged.id));
}

#[test]
fn a_full_pack_is_sealed_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for i in 0..5 {
        store.put(&blob(&noise(4 << 20, i))).unwrap();
    }
    assert_eq!(pack_files(dir.path()).len(), 1, "16 MiB sealed, 4 MiB open");
    store.flush().unwrap();
    assert_eq!(pack_files(dir.path()).len(), 2);
}

#[test]
fn a_manifest_is_kept_only_when_its_chunks_are() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let m = manifest_of(&[b"one", b"two"]);
    store.put(&blob(b"one")).unwrap();
    assert!(matches!(
        store.put_manifest(7, &m),
        Err(StoreError::MissingChunks(1))
    ));
    assert_eq!(store.manifest(7).unwrap(), None);
    store.put(&blob(b"two")).unwrap();
    store.put_manifest(7, &m).unwrap();
    store.put_manifest(3, &manifest_of(&[b"one"])).unwrap();
    assert_eq!(store.manifest(7).unwrap(), Some(m));
    assert_eq!(store.backups().unwrap(), vec![3, 7]);
    assert!(store.delete_manifest(7).unwrap());
    assert!(!store.delete_manifest(7).unwrap());
    assert_eq!(store.backups().unwrap(), vec![3]);
}

#[test]
fn gc_removes_what_no_backup_uses_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (shared, only_a, only_b) = (noise(50_000, 1), noise(50_000, 2), noise(50_000, 3));
    for c in [&shared, &only_a] {
        store.put(&blob(c)).unwrap();
    }
    store
        .put_manifest(1, &manifest_of(&[&shared, &only_a]))
        .unwrap();
    store.put(&blob(&only_b)).unwrap();
    store
        .put_manifest(2, &manifest_of(&[&shared, &only_b]))
        .unwrap();
    // Nothing to collect yet.
    assert_eq!(store.gc().unwrap().chunks_deleted, 0);
    store.delete_manifest(1).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.chunks_deleted, 1);
    // Pack 1 held shared + only_a: half dead, rewritten.
    assert_eq!((report.packs_deleted, report.packs_rewritten), (0, 1));
    assert!(!store.has(&ChunkId::of(&only_a)));
    for c in [&shared, &only_b] {
        assert_eq!(store.get(&ChunkId::of(c)).unwrap(), *c);
    }
    store.delete_manifest(2).unwrap();
    let report = store.gc().unwrap();
    assert_eq!((report.chunks_deleted, report.packs_deleted), (2, 2));
    assert!(pack_files(dir.path()).is_empty());
    // After a reopen, nothing dead comes back.
    let store = open(dir.path());
    assert_eq!(store.stats().unwrap().chunks, 0);
}

#[test]
fn gc_keeps_chunks_an_open_session_was_told_are_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let old = noise(10_000, 9);
    store.put(&blob(&old)).unwrap();
    store.flush().unwrap();
    let session = store.session();
    // A backup in progress learns the chunk is there and does not send it.
    assert!(session.missing(&[ChunkId::of(&old)]).is_empty());
    assert_eq!(store.gc().unwrap().chunks_deleted, 0);
    store.put_manifest(5, &manifest_of(&[&old])).unwrap();
    drop(session);
    assert_eq!(store.gc().unwrap().chunks_deleted, 0);
    assert_eq!(store.get(&ChunkId::of(&old)).unwrap(), old);
}

#[test]
fn a_gc_cut_short_before_it_deleted_the_old_pack_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (keep, drop_) = (noise(40_000, 4), noise(60_000, 5));
    store.put(&blob(&keep)).unwrap();
    store.put(&blob(&drop_)).unwrap();
    store.put_manifest(1, &manifest_of(&[&keep])).unwrap();
    let old = pack_files(dir.path());
    let saved: Vec<(PathBuf, Vec<u8>)> = old
        .iter()
        .map(|p| (p.clone(), fs::read(p).unwrap()))
        .collect();
    assert_eq!(store.gc().unwrap().packs_rewritten, 1);
    drop(store);
    // As if killed between writing the new pack and deleting the old one.
    for (p, bytes) in saved {
        fs::write(p, bytes).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.get(&ChunkId::of(&keep)).unwrap(), keep);
    assert_eq!(store.stats().unwrap().packs, 2);
    store.gc().unwrap();
    assert_eq!(store.stats().unwrap().packs, 1);
    assert_eq!(store.get(&ChunkId::of(&keep)).unwrap(), keep);
    assert!(!store.has(&ChunkId::of(&drop_)));
}

#[test]
fn verify_finds_a_damaged_chunk_keeps_the_good_ones_and_says_which_backup_lacks_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (good, bad) = (noise(20_000, 6), noise(20_000, 7));
    store.put(&blob(&good)).unwrap();
    store.put(&blob(&bad)).unwrap();
    store.put_manifest(1, &manifest_of(&[&good])).unwrap();
    store.put_manifest(2, &manifest_of(&[&bad])).unwrap();
    assert!(store.verify().unwrap().is_clean());
    drop(store);
    let pack = pack_files(dir.path()).remove(0);
    let mut bytes = fs::read(&pack).unwrap();
    bytes[20_000 + 100] ^= 0x55; // inside the second blob (stored raw)
    fs::write(&pack, bytes).unwrap();
    let store = open(dir.path());
    let report = store.verify().unwrap();
    assert_eq!(report.damaged.len(), 1, "{report:?}");
    assert_eq!(report.missing.get(&2), Some(&vec![ChunkId::of(&bad)]));
    assert!(!report.missing.contains_key(&1));
    assert_eq!(store.get(&ChunkId::of(&good)).unwrap(), good);
    assert_eq!(
        fs::read_dir(dir.path().join("quarantine")).unwrap().count(),
        1
    );
    // Repair: the chunk put again (from another replica) makes it whole.
    store.put(&blob(&bad)).unwrap();
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn opening_sets_aside_what_is_not_a_pack_and_clears_crash_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put(&blob(b"kept")).unwrap();
    store.flush().unwrap();
    drop(store);
    let junk = dir
        .path()
        .join("packs/ab")
        .join(format!("{}.pack", "ab".repeat(32)));
    fs::create_dir_all(junk.parent().unwrap()).unwrap();
    fs::write(&junk, b"not a pack at all, just bytes").unwrap();
    fs::write(dir.path().join("packs/ab/half.pack.tmp"), b"half").unwrap();
    let (store, report) = PackStore::open(dir.path()).unwrap();
    assert_eq!(report.packs, 1);
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert_eq!(report.leftovers, 1);
    assert!(!junk.exists());
    assert_eq!(store.get(&ChunkId::of(b"kept")).unwrap(), b"kept");
}

#[test]
fn checking_a_backup_reads_its_chunks_and_sets_a_damaged_pack_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (good, bad) = (noise(20_000, 8), noise(20_000, 9));
    store.put(&blob(&good)).unwrap();
    store.put(&blob(&bad)).unwrap();
    store.put_manifest(1, &manifest_of(&[&good, &bad])).unwrap();
    let clean = store.check_backup(1).unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!(clean.chunks, 2);
    assert!(
        !store.check_backup(7).unwrap().held,
        "no manifest, not held"
    );
    drop(store);
    let pack = pack_files(dir.path()).remove(0);
    let mut bytes = fs::read(&pack).unwrap();
    bytes[20_000 + 100] ^= 0x55;
    fs::write(&pack, bytes).unwrap();
    let store = open(dir.path());
    let found = store.check_backup(1).unwrap();
    assert!(!found.is_clean());
    assert_eq!(found.damaged.len(), 1, "{found:?}");
    assert_eq!(found.missing, vec![ChunkId::of(&bad)]);
    assert_eq!(store.get(&ChunkId::of(&good)).unwrap(), good, "kept");
    store.put(&blob(&bad)).unwrap();
    assert!(store.check_backup(1).unwrap().is_clean());
}

#[test]
fn a_pack_file_deleted_under_a_running_store_is_written_anew_or_shows_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = noise(30_000, 10);
    store.put(&blob(&a)).unwrap();
    store.put_manifest(1, &manifest_of(&[&a])).unwrap();
    let pack = pack_files(dir.path()).remove(0);
    fs::remove_file(&pack).unwrap();
    // Still open: its chunks are read from the open file into a new one.
    let found = store.check_backup(1).unwrap();
    assert_eq!(found.damaged.len(), 1, "{found:?}");
    assert!(found.missing.is_empty(), "{found:?}");
    assert_eq!(pack_files(dir.path()).len(), 1, "written anew");
    assert!(store.check_backup(1).unwrap().is_clean());
    // Deleted while the store is down: the chunk is missing at the next check.
    drop(store);
    for p in pack_files(dir.path()) {
        fs::remove_file(p).unwrap();
    }
    let store = open(dir.path());
    let found = store.check_backup(1).unwrap();
    assert!(found.held);
    assert_eq!(found.missing, vec![ChunkId::of(&a)]);
    assert!(!store.verify().unwrap().is_clean());
}
