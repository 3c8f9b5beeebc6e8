//! A backup on its source node: walk the paths and cut the files into chunks on
//! a blocking thread, and send each batch of chunks to every replica: ask each
//! which it lacks, compress only those, send each its own (in parallel across
//! replicas). Then the manifest to every replica, then the end to the cluster.
//!
//! Memory stays bounded: the walker hands over batches of about 16 MiB through a
//! channel of two, so at most a few batches are held at once, never a whole file.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bcm_chunks::walk::{self, Found};
use bcm_chunks::{Blob, Chunk, ChunkId, Chunker, Entry, EntryKind, Manifest};
use bcm_raft_store::{Command, JobRef, Outcome, Progress};
use futures_util::future::try_join_all;

use super::wire::RunBackup;
use super::{report, short, DataCounters, Stop, DATA, PROGRESS_EVERY};
use crate::cluster::rpc::Peers;
use crate::cluster::{now_ms, SharedNode};
use crate::storage::client::StorageError;
use crate::storage::wire::{Fence, PUT_BATCH_BYTES};

/// Raw bytes of chunks the walker gathers before it hands them over.
const BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Tries of a storage call that failed for a reason that may pass.
const TRIES: u32 = 4;

/// Why a backup did not finish.
pub(super) enum Fail {
    Stop(Stop),
    Error(String),
}

impl From<StorageError> for Fail {
    fn from(e: StorageError) -> Fail {
        match e {
            StorageError::Stale { .. } => Fail::Stop(Stop::Superseded(e.to_string())),
            other => Fail::Error(short(other)),
        }
    }
}

/// Files and bytes done so far, shared with the walker thread; of the bytes,
/// those of files kept unchanged without being read.
#[derive(Default)]
struct Counters {
    files: AtomicU64,
    bytes: AtomicU64,
    unchanged: AtomicU64,
}

impl Counters {
    fn progress(&self) -> Progress {
        Progress {
            files_done: self.files.load(Ordering::Relaxed),
            bytes_done: self.bytes.load(Ordering::Relaxed),
            files_total: None,
            bytes_total: None,
        }
    }
}

/// Runs the backup and reports how it ended.
pub async fn run(node: SharedNode, job: RunBackup) {
    let id = job.backup;
    tracing::info!(backup = id, attempt = job.attempt, paths = ?job.paths, "backup started");
    let (epoch, attempt) = (job.epoch, job.attempt);
    let outcome = match backup(&node, &job).await {
        Ok(done) => done,
        Err(Fail::Stop(why)) => {
            tracing::info!(backup = id, attempt, "backup stopped: {why}");
            return;
        }
        Err(Fail::Error(error)) => {
            tracing::warn!(backup = id, attempt, "backup failed: {error}");
            Outcome::Failed { error }
        }
    };
    let ended = match outcome {
        Outcome::Failed { .. } => &DATA.backups_failed,
        _ => &DATA.backups_succeeded,
    };
    DataCounters::add(ended, 1);
    let end = Command::FinishJob {
        job: JobRef::Backup(id),
        epoch,
        attempt,
        outcome,
        at: now_ms(),
    };
    match report(&node, end).await {
        Ok(()) => tracing::info!(backup = id, attempt, "backup ended"),
        Err(why) => tracing::warn!(backup = id, attempt, "backup's end not recorded: {why}"),
    }
}

async fn backup(node: &SharedNode, job: &RunBackup) -> Result<Outcome, Fail> {
    let roots: Vec<PathBuf> = job.paths.iter().map(PathBuf::from).collect();
    let counters = Arc::new(Counters::default());
    let peers = node.peers.with_own_pool();
    let fence = Fence { epoch: job.epoch };
    let unchanged = super::parent::reusable(&peers, job, fence).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Chunk>>(2);
    let walker = {
        let counters = counters.clone();
        tokio::task::spawn_blocking(move || {
            read_all(&roots, &Chunker::default(), &unchanged, &tx, &counters)
        })
    };
    let mut stored = 0u64;
    // Raw bytes of the chunks some replica lacked (the rest was deduplicated).
    let mut sent_raw = 0u64;
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(chunks) => {
                    let (added, raw) = send(&peers, job, fence, chunks).await?;
                    stored += added;
                    sent_raw += raw;
                }
                None => break,
            },
            _ = ticker.tick() => {
                let progress = Command::JobProgress {
                    job: JobRef::Backup(job.backup),
                    epoch: job.epoch,
                    attempt: job.attempt,
                    progress: counters.progress(),
                    at: now_ms(),
                };
                report(node, progress).await.map_err(Fail::Stop)?;
            }
        }
    }
    let manifest = walker
        .await
        .map_err(|e| Fail::Error(format!("the walk stopped: {e}")))?
        .map_err(Fail::Error)?;
    try_join_all(job.replicas.iter().map(|r| {
        let (peers, manifest) = (&peers, &manifest);
        retry(move || r.put_manifest(peers, fence, job.backup, manifest))
    }))
    .await?;
    let unchanged = counters.unchanged.load(Ordering::Relaxed);
    let read = counters.bytes.load(Ordering::Relaxed) - unchanged;
    DataCounters::add(&DATA.backed_up_bytes, read);
    DataCounters::add(&DATA.unchanged_bytes, unchanged);
    DataCounters::add(&DATA.stored_bytes, stored);
    DataCounters::add(&DATA.deduplicated_bytes, read.saturating_sub(sent_raw));
    Ok(Outcome::BackupDone {
        files: manifest.files().count() as u64,
        size_bytes: manifest.size(),
        stored_bytes: stored,
        storage_nodes: job.replicas.iter().map(|r| r.id).collect(),
    })
}

/// The walker: every entry of `roots` into the manifest, every chunk not met
/// before in this backup into batches for the sender; a file `unchanged` holds
/// as it is now keeps its chunks there and is not read.
fn read_all(
    roots: &[PathBuf],
    chunker: &Chunker,
    unchanged: &HashMap<Vec<u8>, Entry>,
    tx: &tokio::sync::mpsc::Sender<Vec<Chunk>>,
    counters: &Counters,
) -> Result<Manifest, String> {
    let stopped = || "the backup was stopped".to_string();
    let mut manifest = Manifest::default();
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut batch: Vec<Chunk> = Vec::new();
    let mut batch_bytes = 0usize;
    for found in walk::walk(roots).map_err(|e| e.to_string())? {
        match found {
            Found::Entry(e) => manifest.entries.push(e),
            Found::Skipped(path, why) => manifest.skipped.push((path, why)),
            Found::File { mut entry, .. }
                if unchanged
                    .get(&entry.path)
                    .is_some_and(|before| entry.unchanged_since(before)) =>
            {
                let before = &unchanged[&entry.path];
                counters.bytes.fetch_add(before.size(), Ordering::Relaxed);
                counters
                    .unchanged
                    .fetch_add(before.size(), Ordering::Relaxed);
                counters.files.fetch_add(1, Ordering::Relaxed);
                entry.kind = before.kind.clone();
                manifest.entries.push(entry);
            }
            Found::File { source, mut entry } => {
                let read = walk::chunk_file(chunker, &source, |chunk| {
                    counters
                        .bytes
                        .fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
                    if seen.insert(chunk.id) {
                        batch_bytes += chunk.data.len();
                        batch.push(chunk);
                    }
                    if batch_bytes >= BATCH_BYTES {
                        batch_bytes = 0;
                        tx.blocking_send(std::mem::take(&mut batch))
                            .map_err(|_| std::io::Error::other(stopped()))?;
                    }
                    Ok(())
                });
                if tx.is_closed() {
                    return Err(stopped());
                }
                match read {
                    Ok((size, chunks)) => {
                        entry.kind = EntryKind::File { size, chunks };
                        manifest.entries.push(entry);
                        counters.files.fetch_add(1, Ordering::Relaxed);
                    }
                    // Unreadable (permissions, gone meanwhile): skipped, said why.
                    Err(e) => manifest.skipped.push((entry.path, e.to_string())),
                }
            }
        }
    }
    if !batch.is_empty() {
        tx.blocking_send(batch).map_err(|_| stopped())?;
    }
    Ok(manifest)
}

/// Sends one batch to every replica; the bytes it added to the first one, and
/// the raw bytes of the chunks some replica lacked.
async fn send(
    peers: &Peers,
    job: &RunBackup,
    fence: Fence,
    chunks: Vec<Chunk>,
) -> Result<(u64, u64), Fail> {
    let ids: Vec<ChunkId> = chunks.iter().map(|c| c.id).collect();
    let lacking: Vec<HashSet<ChunkId>> = try_join_all(job.replicas.iter().map(|r| {
        let ids = ids.clone();
        async move {
            let missing = retry(|| r.missing(peers, fence, job.backup, ids.clone())).await?;
            Ok::<_, Fail>(missing.into_iter().collect::<HashSet<_>>())
        }
    }))
    .await?;
    let wanted: HashSet<ChunkId> = lacking.iter().flatten().copied().collect();
    if wanted.is_empty() {
        return Ok((0, 0));
    }
    let raw: u64 = chunks
        .iter()
        .filter(|c| wanted.contains(&c.id))
        .map(|c| c.data.len() as u64)
        .sum();
    let blobs: Vec<Blob> = tokio::task::spawn_blocking(move || {
        chunks
            .into_iter()
            .filter(|c| wanted.contains(&c.id))
            .map(|c| Blob::new(c.id, &c.data))
            .collect::<std::io::Result<Vec<Blob>>>()
    })
    .await
    .map_err(|e| Fail::Error(format!("compression stopped: {e}")))?
    .map_err(|e| Fail::Error(format!("cannot compress a chunk: {e}")))?;
    let added = try_join_all(job.replicas.iter().zip(&lacking).map(|(r, lacks)| {
        let blobs = &blobs;
        async move {
            let mine: Vec<&Blob> = blobs.iter().filter(|b| lacks.contains(&b.id)).collect();
            let mut added = 0;
            for part in split(&mine) {
                let part: Vec<Blob> = part.into_iter().cloned().collect();
                added += retry(|| r.put(peers, fence, job.backup, &part))
                    .await?
                    .new_bytes;
            }
            Ok::<u64, Fail>(added)
        }
    }))
    .await?;
    Ok((added.first().copied().unwrap_or(0), raw))
}

/// `blobs` in parts of at most [`PUT_BATCH_BYTES`] (a larger blob alone).
pub(super) fn split<'a>(blobs: &[&'a Blob]) -> Vec<Vec<&'a Blob>> {
    let mut parts: Vec<Vec<&Blob>> = Vec::new();
    let mut size = 0;
    for b in blobs {
        if parts.is_empty() || size + b.stored.len() > PUT_BATCH_BYTES {
            parts.push(Vec::new());
            size = 0;
        }
        size += b.stored.len();
        parts.last_mut().expect("pushed above").push(b);
    }
    parts
}

/// `call` again (after 1, 2, 4 s) while it fails for a reason that may pass.
pub(super) async fn retry<T, F, Fut>(mut call: F) -> Result<T, Fail>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    let mut wait = Duration::from_secs(1);
    for left in (0..TRIES).rev() {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && left > 0 => {
                tracing::debug!("{e}; trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the last try returns")
}
