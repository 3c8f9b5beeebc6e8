//! A backup on its source node: walk the paths and cut the files into chunks
//! (several files at once: [`super::read`]), and send each batch of chunks to
//! every replica: ask each which it lacks, compress only those, send each its own
//! (in parallel across replicas, two batches at once). Then the manifest to every
//! replica, then the end to the cluster.
//!
//! Memory stays bounded: each reading thread hands over batches of about 8 MiB
//! through a channel of two, and two are sent at once, so at most a few batches
//! are held at once, never a whole file.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bcm_chunks::{Blob, Chunk, ChunkId, Chunker};
use bcm_raft_store::{Command, JobRef, Outcome};
use futures_util::future::try_join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::read::{self, Counters};
use super::wire::RunBackup;
use super::{report, short, DataCounters, Stop, DATA, PROGRESS_EVERY};
use crate::cluster::rpc::Peers;
use crate::cluster::{now_ms, SharedNode};
use crate::storage::client::StorageError;
use crate::storage::wire::{Fence, PUT_BATCH_BYTES};

/// Batches being sent at once (one compressed while the other is stored).
const SENDING: usize = 2;
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
            read::read_all(&roots, &Chunker::default(), &unchanged, &tx, &counters)
        })
    };
    let mut stored = 0u64;
    // Raw bytes of the chunks some replica lacked (the rest was deduplicated).
    let mut sent_raw = 0u64;
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    let mut sending = FuturesUnordered::new();
    let mut walking = true;
    while walking || !sending.is_empty() {
        tokio::select! {
            batch = rx.recv(), if walking && sending.len() < SENDING => match batch {
                Some(chunks) => sending.push(send(&peers, job, fence, chunks)),
                None => walking = false,
            },
            Some(sent) = sending.next(), if !sending.is_empty() => {
                let (added, raw) = sent?;
                stored += added;
                sent_raw += raw;
            }
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
