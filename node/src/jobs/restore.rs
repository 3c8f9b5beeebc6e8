//! A restore on its target node: the manifest from a storage node holding the
//! backup, then every entry (under `include`) written by `bcm-chunks`' restorer
//! on a blocking thread, while a task fetches the chunks ahead of it, several
//! windows at once, from a holder (the next one when that one fails), each
//! checked against its id once, on the way in (a damaged copy is fetched from
//! the next holder).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bcm_chunks::{Checked, ChunkId, Entry, EntryKind, Restorer};
use bcm_raft_store::{Command, JobRef, Outcome, Progress};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::wire::RunRestore;
use super::{report, short, DataCounters, Stop, DATA, PROGRESS_EVERY};
use crate::cluster::rpc::Peers;
use crate::cluster::{now_ms, SharedNode};
use crate::storage::client::{manifest_from, StorageNode};

/// Chunks fetched in one go (about 8 MiB on average).
const WINDOW: usize = 8;
/// Windows being fetched at once.
const IN_FLIGHT: usize = 3;
/// Chunks fetched and checked, waiting for the writer.
const AHEAD: usize = 16;

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
    let entries = Arc::new(entries);
    let (tx, rx) = mpsc::channel(AHEAD);
    let fetcher = tokio::spawn(fetch_all(peers, job.holders.clone(), entries.clone(), tx));
    let _stop_fetching = StopOnDrop(fetcher.abort_handle());
    let writer = {
        let counters = counters.clone();
        let (target, overwrite) = (PathBuf::from(&job.target_path), job.overwrite);
        tokio::task::spawn_blocking(move || write_all(&target, overwrite, &entries, rx, &counters))
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

/// Stops the fetching task when the restore ends, however it ends.
struct StopOnDrop(tokio::task::AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn is_file(e: &Entry) -> bool {
    matches!(e.kind, EntryKind::File { .. })
}

fn write_all(
    target: &Path,
    overwrite: bool,
    entries: &[Entry],
    mut chunks: mpsc::Receiver<Result<Checked, String>>,
    counters: &Counters,
) -> Result<bcm_chunks::RestoreStats, String> {
    let mut r = Restorer::new(target, overwrite).map_err(|e| e.to_string())?;
    for e in entries {
        // The restorer refuses a chunk other than the one it asked for.
        r.entry(e, |_| match chunks.blocking_recv() {
            Some(got) => got,
            None => Err("the fetching stopped".to_string()),
        })
        .map_err(|e| e.to_string())?;
        if is_file(e) {
            counters.files.fetch_add(1, Ordering::Relaxed);
            counters.bytes.fetch_add(e.size(), Ordering::Relaxed);
        }
    }
    r.finish().map_err(|e| e.to_string())
}

/// Every chunk of `entries`' files, in the order the writer needs them, into
/// `out`: [`WINDOW`] at a time from a holder (the next one when it fails, each
/// chunk checked), [`IN_FLIGHT`] windows at once. Ends early when the writer
/// stops listening.
async fn fetch_all(
    peers: Peers,
    holders: Vec<StorageNode>,
    entries: Arc<Vec<Entry>>,
    out: mpsc::Sender<Result<Checked, String>>,
) {
    let order: Vec<ChunkId> = entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::File { chunks, .. } => Some(chunks.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    let windows: Vec<Vec<ChunkId>> = order.chunks(WINDOW).map(<[_]>::to_vec).collect();
    let (peers, holders) = (Arc::new(peers), Arc::new(holders));
    let preferred = Arc::new(AtomicUsize::new(0));
    let windows = windows.into_iter().map(move |w| {
        let (peers, holders, preferred) = (peers.clone(), holders.clone(), preferred.clone());
        async move {
            let got = fetch(&peers, &holders, &preferred, &w).await;
            (w, got)
        }
    });
    let mut windows = futures_util::stream::iter(windows).buffered(IN_FLIGHT);
    while let Some((ids, got)) = windows.next().await {
        let sent = match got {
            Ok(mut got) => {
                let mut ok = true;
                for (i, id) in ids.iter().enumerate() {
                    // The last use of a chunk in the window takes it, the others copy.
                    let again = ids[i + 1..].contains(id);
                    let data = if again {
                        got.get(id).cloned()
                    } else {
                        got.remove(id)
                    };
                    let item = data.ok_or_else(|| format!("no storage node gave chunk {id}"));
                    if out.send(item).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                ok
            }
            Err(why) => {
                let _ = out.send(Err(why)).await;
                false
            }
        };
        if !sent {
            return;
        }
    }
}

/// `ids` from one holder (the preferred one first, then each other in turn),
/// every chunk checked against its id.
async fn fetch(
    peers: &Peers,
    holders: &[StorageNode],
    preferred: &AtomicUsize,
    ids: &[ChunkId],
) -> Result<HashMap<ChunkId, Checked>, String> {
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    let mut why = Vec::new();
    let first = preferred.load(Ordering::Relaxed);
    for turn in 0..holders.len() {
        let at = (first + turn) % holders.len();
        match fetch_from(peers, &holders[at], &unique).await {
            Ok(got) => {
                preferred.store(at, Ordering::Relaxed);
                return Ok(got);
            }
            Err(e) => why.push(e),
        }
    }
    if holders.is_empty() {
        why.push("no storage node holds the backup".into());
    }
    Err(why.join("; "))
}

async fn fetch_from(
    peers: &Peers,
    holder: &StorageNode,
    ids: &[ChunkId],
) -> Result<HashMap<ChunkId, Checked>, String> {
    let mut got = HashMap::new();
    let mut rest = ids.to_vec();
    while !rest.is_empty() {
        let blobs = holder
            .get(peers, rest.clone())
            .await
            .map_err(|e| e.to_string())?;
        if blobs.is_empty() {
            return Err(format!("storage node {} answered no chunk", holder.id));
        }
        rest.drain(..blobs.len().min(rest.len()));
        let id = holder.id;
        let opened = tokio::task::spawn_blocking(move || {
            blobs
                .into_iter()
                .map(|b| {
                    let data = b
                        .check()
                        .map_err(|e| format!("storage node {id} sent a damaged chunk: {e}"))?;
                    Ok((b.id, data))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .await
        .map_err(|e| format!("checking chunks stopped: {e}"))??;
        got.extend(opened);
    }
    Ok(got)
}
