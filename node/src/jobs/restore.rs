//! A restore on its target node: the manifest from a storage node holding the
//! backup, then every entry (under `include`) written by `bcm-chunks`' restorer
//! on a blocking thread, its chunks fetched a few at a time from a holder (the
//! next one when that one fails), each checked against its id before it is
//! written.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bcm_chunks::{ChunkId, Entry, EntryKind, Restorer};
use bcm_raft_store::{Command, JobRef, Outcome, Progress};

use super::wire::RunRestore;
use super::{report, short, DataCounters, Stop, DATA, PROGRESS_EVERY};
use crate::cluster::rpc::Peers;
use crate::cluster::{now_ms, SharedNode};
use crate::storage::client::{manifest_from, StorageNode};

/// Chunks fetched in one go (about 8 MiB on average).
const WINDOW: usize = 8;

/// Runs the restore and reports how it ended.
pub async fn run(node: SharedNode, job: RunRestore) {
    let id = job.restore;
    tracing::info!(
        restore = id,
        backup = job.backup,
        attempt = job.attempt,
        "restore started"
    );
    let outcome = match restore(&node, &job).await {
        Ok((files, bytes)) => {
            DataCounters::add(&DATA.restored_bytes, bytes);
            DataCounters::add(&DATA.restores_succeeded, 1);
            Outcome::RestoreDone { files, bytes }
        }
        Err(Ok(stop)) => {
            tracing::info!(restore = id, "restore stopped: {stop}");
            return;
        }
        Err(Err(error)) => {
            DataCounters::add(&DATA.restores_failed, 1);
            tracing::warn!(restore = id, "restore failed: {error}");
            Outcome::Failed {
                error: short(error),
            }
        }
    };
    let end = Command::FinishJob {
        job: JobRef::Restore(id),
        epoch: job.epoch,
        attempt: job.attempt,
        outcome,
        at: now_ms(),
    };
    if let Err(why) = report(&node, end).await {
        tracing::warn!(restore = id, "restore's end not recorded: {why}");
    }
}

/// Files and bytes written so far, shared with the writer thread.
#[derive(Default)]
struct Counters {
    files: AtomicU64,
    bytes: AtomicU64,
}

/// `Err(Ok(_))`: stopped (superseded); `Err(Err(_))`: failed, saying why.
async fn restore(node: &SharedNode, job: &RunRestore) -> Result<(u64, u64), Result<Stop, String>> {
    let peers = node.peers.with_own_pool();
    let manifest = manifest_from(&peers, &job.holders, job.backup)
        .await
        .map_err(Err)?;
    let prefix = job
        .include
        .as_deref()
        .map(|i| PathBuf::from(i.trim_start_matches('/')))
        .unwrap_or_default();
    let entries: Vec<Entry> = manifest.under(&prefix).cloned().collect();
    if entries.is_empty() && job.include.is_some() {
        return Err(Err(format!(
            "backup {} holds nothing at {}",
            job.backup,
            prefix.display()
        )));
    }
    let total = Progress {
        files_done: 0,
        bytes_done: 0,
        files_total: Some(entries.iter().filter(|e| is_file(e)).count() as u64),
        bytes_total: Some(entries.iter().map(Entry::size).sum()),
    };
    let counters = Arc::new(Counters::default());
    let writer = {
        let counters = counters.clone();
        let fetcher = Fetcher::new(peers, job.holders.clone());
        let (target, overwrite) = (PathBuf::from(&job.target_path), job.overwrite);
        tokio::task::spawn_blocking(move || {
            write_all(&target, overwrite, &entries, fetcher, &counters)
        })
    };
    tokio::pin!(writer);
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    loop {
        tokio::select! {
            done = &mut writer => {
                let stats = done.map_err(|e| Err(format!("the restore stopped: {e}")))?.map_err(Err)?;
                return Ok((stats.files, stats.bytes));
            }
            _ = ticker.tick() => {
                let progress = Progress {
                    files_done: counters.files.load(Ordering::Relaxed),
                    bytes_done: counters.bytes.load(Ordering::Relaxed),
                    ..total
                };
                let cmd = Command::JobProgress {
                    job: JobRef::Restore(job.restore),
                    epoch: job.epoch,
                    attempt: job.attempt,
                    progress,
                    at: now_ms(),
                };
                // A refused report: the restore moved on. The writer thread ends
                // with the process's next job or its own end; its files are
                // written under temporary names until complete.
                report(node, cmd).await.map_err(Ok)?;
            }
        }
    }
}

fn is_file(e: &Entry) -> bool {
    matches!(e.kind, EntryKind::File { .. })
}

fn write_all(
    target: &Path,
    overwrite: bool,
    entries: &[Entry],
    mut fetcher: Fetcher,
    counters: &Counters,
) -> Result<bcm_chunks::RestoreStats, String> {
    let mut r = Restorer::new(target, overwrite).map_err(|e| e.to_string())?;
    for e in entries {
        if let EntryKind::File { chunks, .. } = &e.kind {
            fetcher.plan(chunks);
        }
        r.entry(e, |id| fetcher.take(id))
            .map_err(|e| e.to_string())?;
        if is_file(e) {
            counters.files.fetch_add(1, Ordering::Relaxed);
            counters.bytes.fetch_add(e.size(), Ordering::Relaxed);
        }
    }
    r.finish().map_err(|e| e.to_string())
}

/// Chunks of the file being written, fetched [`WINDOW`] at a time ahead of the
/// writer, from the holder that answered last (the others when it fails).
struct Fetcher {
    handle: tokio::runtime::Handle,
    peers: Peers,
    holders: Vec<StorageNode>,
    /// Index in `holders` of the one to ask first.
    preferred: usize,
    ahead: VecDeque<ChunkId>,
    fetched: HashMap<ChunkId, Vec<u8>>,
}

impl Fetcher {
    fn new(peers: Peers, holders: Vec<StorageNode>) -> Fetcher {
        Fetcher {
            handle: tokio::runtime::Handle::current(),
            peers,
            holders,
            preferred: 0,
            ahead: VecDeque::new(),
            fetched: HashMap::new(),
        }
    }

    /// The chunks the next file needs, in order.
    fn plan(&mut self, chunks: &[ChunkId]) {
        self.ahead = chunks.iter().copied().collect();
        self.fetched.clear();
    }

    /// Chunk `id` (the next one planned), fetching the next window when needed.
    fn take(&mut self, id: &ChunkId) -> Result<Vec<u8>, String> {
        if self.ahead.front() == Some(id) {
            self.ahead.pop_front();
        }
        if let Some(data) = self.fetched.remove(id) {
            return Ok(data);
        }
        let mut window = vec![*id];
        window.extend(self.ahead.iter().take(WINDOW - 1).copied());
        window.dedup();
        let got = self.fetch(&window)?;
        self.fetched.extend(got);
        self.fetched
            .remove(id)
            .ok_or_else(|| format!("no storage node gave chunk {id}"))
    }

    /// `ids` from one holder (trying each in turn), every chunk checked.
    fn fetch(&mut self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, Vec<u8>>, String> {
        let mut why = Vec::new();
        for turn in 0..self.holders.len() {
            let at = (self.preferred + turn) % self.holders.len();
            match self.fetch_from(&self.holders[at].clone(), ids) {
                Ok(got) => {
                    self.preferred = at;
                    return Ok(got);
                }
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    }

    fn fetch_from(
        &self,
        holder: &StorageNode,
        ids: &[ChunkId],
    ) -> Result<HashMap<ChunkId, Vec<u8>>, String> {
        let mut got = HashMap::new();
        let mut rest = ids.to_vec();
        while !rest.is_empty() {
            let blobs = self
                .handle
                .block_on(holder.get(&self.peers, rest.clone()))
                .map_err(|e| e.to_string())?;
            if blobs.is_empty() {
                return Err(format!("storage node {} answered no chunk", holder.id));
            }
            for blob in &blobs {
                let data = blob
                    .open()
                    .map_err(|e| format!("storage node {} sent a damaged chunk: {e}", holder.id))?;
                got.insert(blob.id, data);
            }
            rest.drain(..blobs.len().min(rest.len()));
        }
        Ok(got)
    }
}
