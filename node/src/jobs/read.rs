//! The source's reading: the walk in one thread, and the files it finds cut into
//! chunks by several threads at once (one file each), each chunk not met before
//! in this backup put into batches for the sender. The manifest keeps the walk's
//! order whatever order the files finish in.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};

use bcm_chunks::walk::{self, Found};
use bcm_chunks::{Chunk, ChunkId, Chunker, Entry, EntryKind, Manifest};
use bcm_raft_store::Progress;

/// Raw bytes of chunks a reading thread gathers before it hands them over.
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Reading threads at most (one per core up to this).
const MAX_READERS: usize = 4;

/// Files and bytes done so far, shared with the reading threads; of the bytes,
/// those of files kept unchanged without being read.
#[derive(Default)]
pub struct Counters {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub unchanged: AtomicU64,
}

impl Counters {
    pub fn progress(&self) -> Progress {
        Progress {
            files_done: self.files.load(Ordering::Relaxed),
            bytes_done: self.bytes.load(Ordering::Relaxed),
            files_total: None,
            bytes_total: None,
        }
    }
}

type Batches = tokio::sync::mpsc::Sender<Vec<Chunk>>;
/// A file read: its place among the entries, and its length and chunks.
type Read = (usize, std::io::Result<(u64, Vec<ChunkId>)>);

/// Every entry of `roots` into the manifest, every chunk not met before in this
/// backup into batches on `tx`; a file `unchanged` holds as it is now keeps its
/// chunks there and is not read. Blocking: run it on a blocking thread.
pub fn read_all(
    roots: &[PathBuf],
    chunker: &Chunker,
    unchanged: &HashMap<Vec<u8>, Entry>,
    tx: &Batches,
    counters: &Counters,
) -> Result<Manifest, String> {
    let readers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_READERS);
    let seen: Mutex<HashSet<ChunkId>> = Mutex::new(HashSet::new());
    let (work, queue) = mpsc::sync_channel::<(usize, PathBuf)>(readers);
    let queue = Mutex::new(queue);
    let (done, results) = mpsc::channel::<Read>();
    let mut entries: Vec<Entry> = Vec::new();
    let mut skipped = Vec::new();
    let walked = std::thread::scope(|s| {
        for _ in 0..readers {
            let (queue, done, seen) = (&queue, done.clone(), &seen);
            s.spawn(move || reader(chunker, queue, done, seen, tx, counters));
        }
        drop(done);
        let mut sent = 0usize;
        for found in walk::walk(roots).map_err(|e| e.to_string())? {
            if tx.is_closed() {
                break;
            }
            match found {
                Found::Entry(e) => entries.push(e),
                Found::Skipped(path, why) => skipped.push((path, why)),
                Found::File { mut entry, source } => match unchanged.get(&entry.path) {
                    Some(before) if entry.unchanged_since(before) => {
                        counters.bytes.fetch_add(before.size(), Ordering::Relaxed);
                        counters
                            .unchanged
                            .fetch_add(before.size(), Ordering::Relaxed);
                        counters.files.fetch_add(1, Ordering::Relaxed);
                        entry.kind = before.kind.clone();
                        entries.push(entry);
                    }
                    _ => {
                        if work.send((entries.len(), source)).is_err() {
                            break;
                        }
                        entries.push(entry);
                        sent += 1;
                    }
                },
            }
        }
        drop(work);
        Ok::<_, String>((results.iter().take(sent).collect::<Vec<_>>(), sent))
    })?;
    let (walked, sent) = walked;
    if tx.is_closed() {
        return Err(stopped());
    }
    if walked.len() != sent {
        return Err("a reading thread stopped before its files were read".into());
    }
    let mut unreadable = HashSet::new();
    for (at, read) in walked {
        match read {
            Ok((size, chunks)) => {
                entries[at].kind = EntryKind::File { size, chunks };
                counters.files.fetch_add(1, Ordering::Relaxed);
            }
            // Unreadable (permissions, gone meanwhile): skipped, said why.
            Err(e) => {
                skipped.push((entries[at].path.clone(), e.to_string()));
                unreadable.insert(at);
            }
        }
    }
    let entries = entries
        .into_iter()
        .enumerate()
        .filter(|(at, _)| !unreadable.contains(at))
        .map(|(_, e)| e)
        .collect();
    Ok(Manifest { entries, skipped })
}

fn stopped() -> String {
    "the backup was stopped".to_string()
}

/// One reading thread: files from `queue` until it closes, their chunks not met
/// before into its own batch, handed over when full and at the end.
fn reader(
    chunker: &Chunker,
    queue: &Mutex<mpsc::Receiver<(usize, PathBuf)>>,
    done: mpsc::Sender<Read>,
    seen: &Mutex<HashSet<ChunkId>>,
    tx: &Batches,
    counters: &Counters,
) {
    let mut batch: Vec<Chunk> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut cutter = chunker.cutter();
    loop {
        let next = queue.lock().expect("queue lock").recv();
        let Ok((at, source)) = next else { break };
        if tx.is_closed() {
            // Stopped: the rest of the queue is answered without reading.
            let _ = done.send((at, Err(std::io::Error::other(stopped()))));
            continue;
        }
        let read = walk::chunk_file(&mut cutter, &source, |chunk| {
            let len = chunk.data.len();
            counters.bytes.fetch_add(len as u64, Ordering::Relaxed);
            if seen.lock().expect("seen lock").insert(chunk.id) {
                batch_bytes += len;
                batch.push(chunk);
            }
            if batch_bytes >= BATCH_BYTES {
                batch_bytes = 0;
                tx.blocking_send(std::mem::take(&mut batch))
                    .map_err(|_| std::io::Error::other(stopped()))?;
            }
            Ok(())
        });
        if done.send((at, read)).is_err() {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
}
