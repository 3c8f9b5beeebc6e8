//! The store under `kill -9`: a writer process (this test binary, re-run in
//! child mode) puts chunks and manifests, deletes old backups and collects
//! garbage in a loop, saying what was acknowledged; it is killed at a random
//! moment, five times over the same store. After each kill, everything
//! acknowledged is there and readable, and every manifest on disk has all its
//! chunks (a GC cut short loses nothing a live backup needs).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_chunks::gen::noise;
use bcm_chunks::manifest::{Entry, EntryKind, Manifest, Stamp};
use bcm_chunks::{Blob, ChunkId, PackStore};

const CHILD_DIR: &str = "BCM_CHUNKS_CRASH_DIR";
const CHILD_START: &str = "BCM_CHUNKS_CRASH_START";

/// Chunk `i` of the run: 20–84 KiB, some compressible, all distinct.
fn chunk(i: u64) -> Vec<u8> {
    let mut data = noise(20_000 + (i as usize * 7919) % 65_536, i);
    if i.is_multiple_of(3) {
        data.truncate(data.len() / 2);
        data.extend(b"repeating tail ".repeat(1000));
    }
    data
}

/// Backup `b` holds chunks 8b..8b+12 (so neighbouring backups share four).
fn backup_chunks(b: u64) -> std::ops::Range<u64> {
    8 * b..8 * b + 12
}

fn manifest(b: u64) -> Manifest {
    let ids: Vec<ChunkId> = backup_chunks(b).map(|i| ChunkId::of(&chunk(i))).collect();
    let size = backup_chunks(b).map(|i| chunk(i).len() as u64).sum();
    Manifest {
        entries: vec![Entry {
            path: format!("backup-{b}").into_bytes(),
            kind: EntryKind::File { size, chunks: ids },
            mode: 0o600,
            mtime: (0, 0),
            stamp: Stamp::default(),
        }],
        skipped: vec![],
    }
}

/// Child mode: write backups from `CHILD_START` on until killed, printing
/// `manifest B` once backup B is durable, `deleting B` before its deletion and
/// `deleted B` once that is durable.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // a normal test run: nothing to do here
    };
    let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let store = Arc::new(PackStore::open(Path::new(&dir)).unwrap().0);
    let out = std::io::stdout();
    for b in start..start + 10_000 {
        let session = store.session();
        for i in backup_chunks(b) {
            let data = chunk(i);
            if !session.missing(&[ChunkId::of(&data)]).is_empty() {
                store
                    .put(&Blob::new(ChunkId::of(&data), &data).unwrap())
                    .unwrap();
            }
        }
        store.put_manifest(b, &manifest(b)).unwrap();
        drop(session);
        writeln!(out.lock(), "manifest {b}").unwrap();
        if b >= 2 {
            // Said before: a kill between the delete and its line would
            // otherwise look like an acknowledged backup lost.
            writeln!(out.lock(), "deleting {}", b - 2).unwrap();
            if store.delete_manifest(b - 2).unwrap() {
                writeln!(out.lock(), "deleted {}", b - 2).unwrap();
            }
        }
        store.gc().unwrap();
    }
}

#[test]
fn nothing_acknowledged_is_lost_when_the_writer_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().unwrap();
    let mut next = 0u64;
    let mut live: BTreeSet<u64> = BTreeSet::new();
    // Kill points, fixed so a failure reproduces: 150 ms to 1.35 s into a run.
    for (round, wait_ms) in [400u64, 150, 1350, 700, 1000].into_iter().enumerate() {
        let mut child = Command::new(&me)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_START, next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let acks = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let acks = acks.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    acks.lock().unwrap().push(line);
                }
            })
        };
        let started = Instant::now();
        // Wait for the first acknowledgement, then the kill point.
        while acks.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acks = acks.lock().unwrap().clone();
        assert!(
            !acks.is_empty(),
            "round {round}: the writer acknowledged nothing"
        );
        for line in &acks {
            match line.split_once(' ') {
                Some(("manifest", b)) => {
                    let b: u64 = b.parse().unwrap();
                    live.insert(b);
                    next = next.max(b + 1);
                }
                Some(("deleting" | "deleted", b)) => {
                    live.remove(&b.parse().unwrap());
                }
                _ => {}
            }
        }
        // A backup being written when the kill came may be there too; start after it.
        next += 1;

        let store = PackStore::open(dir.path()).unwrap().0;
        let on_disk: BTreeSet<u64> = store.backups().unwrap().into_iter().collect();
        assert!(
            live.is_subset(&on_disk),
            "round {round}: acknowledged backups {:?} are gone",
            live.difference(&on_disk).collect::<Vec<_>>()
        );
        for b in &on_disk {
            let m = store.manifest(*b).unwrap().expect("listed, so readable");
            assert_eq!(m, manifest(*b), "round {round}: backup {b}");
            for id in m.chunks() {
                let data = store
                    .get(&id)
                    .unwrap_or_else(|e| panic!("round {round}: backup {b} lost chunk {id:?}: {e}"));
                assert!(id.matches(&data));
            }
        }
        assert!(store.verify().unwrap().is_clean(), "round {round}");
        eprintln!(
            "round {round}: killed after {} acknowledgements; {} backups live, all whole",
            acks.len(),
            on_disk.len()
        );
        live = on_disk;
    }
}
