//! A restore on its target node: the manifest from a storage node holding the
//! backup, then every entry (under `include`) written by `bcm-chunks`'
//! restorers, several threads at once (each file whole by one of them), while
//! a stream of fetches per writer brings its chunks ahead of it, several windows
//! at once, from a holder (each writer's another one first; the next one when
//! that one fails), each chunk checked against its id once, on the way in (a
//! damaged copy is fetched from the next holder).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bcm_chunks::{Checked, ChunkId, Entry, EntryKind, Restorer};
use bcm_raft_store::{Command, JobRef, Outcome, Progress};
use tokio::sync::mpsc;

use super::wire::RunRestore;
use super::{report, short, DataCounters, Stop, DATA, PROGRESS_EVERY};
use crate::cluster::rpc::Peers;
use crate::cluster::{now_ms, SharedNode};
use crate::storage::client::{manifest_from, StorageNode};

/// Chunks fetched in one go (about 8 MiB on average).
const WINDOW: usize = 8;
/// Windows being fetched at once for each writer.
const IN_FLIGHT: usize = 3;
/// Chunks fetched and checked, waiting for each writer.
const AHEAD: usize = 12;
/// Threads writing files at once (a file is written by one, whole): the
/// creation of files and their writes overlap.
const WRITERS: usize = 3;

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
    let assigned = Arc::new(assign(&entries, WRITERS));
    let (outs, ins): (Vec<_>, Vec<_>) = (0..WRITERS).map(|_| mpsc::channel(AHEAD)).unzip();
    let fetching = fetch_all(
        peers,
        job.holders.clone(),
        entries.clone(),
        assigned.clone(),
        outs,
    );
    let fetcher = tokio::spawn(fetching);
    let _stop_fetching = StopOnDrop(fetcher.abort_handle());
    let writer = {
        let counters = counters.clone();
        let (target, overwrite) = (PathBuf::from(&job.target_path), job.overwrite);
        tokio::task::spawn_blocking(move || {
            write_all(&target, overwrite, &entries, &assigned, ins, &counters)
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

/// Which writer restores each entry: directories and symlinks the first (it sets
/// the directories' modes last), each file the writer with the fewest bytes so far.
fn assign(entries: &[Entry], writers: usize) -> Vec<usize> {
    let mut load = vec![0u64; writers];
    entries
        .iter()
        .map(|e| {
            if !is_file(e) {
                return 0;
            }
            let (k, _) = load
                .iter()
                .enumerate()
                .min_by_key(|(_, l)| **l)
                .expect("at least one writer");
            // An empty file costs its creation.
            load[k] += e.size().max(64 * 1024);
            k
        })
        .collect()
}

/// A writer's end: its restorer (to finish), or why it stopped, and whether
/// that was only because the chunks stopped coming (another writer's failure).
type Written = Result<Restorer, (bool, String)>;

/// [`WRITERS`] threads writing files at once, each its own files (by `assign`)
/// from its own channel of chunks; the directories' modes last, once all are done.
fn write_all(
    target: &Path,
    overwrite: bool,
    entries: &[Entry],
    assigned: &[usize],
    chunks: Vec<mpsc::Receiver<Result<Checked, String>>>,
    counters: &Counters,
) -> Result<bcm_chunks::RestoreStats, String> {
    let first = Restorer::new(target, overwrite).map_err(|e| e.to_string())?;
    let mut restorers: Vec<Restorer> = (1..chunks.len()).map(|_| first.worker()).collect();
    restorers.insert(0, first);
    let ended: Vec<Written> = std::thread::scope(|s| {
        let writers: Vec<_> = restorers
            .into_iter()
            .zip(chunks)
            .enumerate()
            .map(|(k, (mut r, mut rx))| {
                s.spawn(move || {
                    let mut starved = false;
                    let mine = entries.iter().zip(assigned).filter(|(_, w)| **w == k);
                    for (e, _) in mine {
                        // The restorer refuses a chunk other than the one it asked for.
                        r.entry(e, |_| match rx.blocking_recv() {
                            Some(got) => got,
                            None => {
                                starved = true;
                                Err("the fetching stopped".to_string())
                            }
                        })
                        .map_err(|e| (starved, e.to_string()))?;
                        if is_file(e) {
                            counters.files.fetch_add(1, Ordering::Relaxed);
                            counters.bytes.fetch_add(e.size(), Ordering::Relaxed);
                        }
                    }
                    Ok(r)
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err((false, "a writing thread panicked".into())))
            })
            .collect()
    });
    let mut done = Vec::new();
    let mut failed: Option<(bool, String)> = None;
    for end in ended {
        match end {
            Ok(r) => done.push(r),
            // The first writer's own failure says why; one only starved, if none.
            Err(why) if failed.as_ref().is_none_or(|f| f.0 && !why.0) => failed = Some(why),
            Err(_) => {}
        }
    }
    if let Some((_, why)) = failed {
        done.into_iter().for_each(Restorer::abandon);
        return Err(why);
    }
    let first = done.remove(0);
    let mut stats = bcm_chunks::RestoreStats::default();
    for r in done {
        stats += r.finish().map_err(|e| e.to_string())?;
    }
    Ok(stats + first.finish().map_err(|e| e.to_string())?)
}

/// Every chunk of `entries`' files to its writer (`assigned`, `outs`): one
/// stream of fetches per writer, in the order that writer needs them (a writer
/// slow to take its chunks holds up no other), each [`WINDOW`] chunks at a time
/// from a holder (writer k's asks the k-th first, spreading the reads; the next
/// one when it fails; each chunk checked), [`IN_FLIGHT`] windows at once. A
/// stream ends early when its writer stops listening.
async fn fetch_all(
    peers: Peers,
    holders: Vec<StorageNode>,
    entries: Arc<Vec<Entry>>,
    assigned: Arc<Vec<usize>>,
    outs: Vec<mpsc::Sender<Result<Checked, String>>>,
) {
    let (peers, holders) = (Arc::new(peers), Arc::new(holders));
    let streams = outs.into_iter().enumerate().map(|(k, out)| {
        let order: Vec<ChunkId> = entries
            .iter()
            .zip(assigned.iter())
            .filter(|(_, w)| **w == k)
            .filter_map(|(e, _)| match &e.kind {
                EntryKind::File { chunks, .. } => Some(chunks.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        let first = k % holders.len().max(1);
        fetch_stream(peers.clone(), holders.clone(), first, order, out)
    });
    futures_util::future::join_all(streams).await;
}

/// One writer's chunks (`order`) to it, in order, starting with holder `first`.
async fn fetch_stream(
    peers: Arc<Peers>,
    holders: Arc<Vec<StorageNode>>,
    first: usize,
    order: Vec<ChunkId>,
    out: mpsc::Sender<Result<Checked, String>>,
) {
    let preferred = Arc::new(AtomicUsize::new(first));
    let mut windows = order.chunks(WINDOW);
    // Each window fetched (and checked) by a task of its own, so that fetching
    // goes on while this one waits for the writer to take a chunk.
    let mut fetching = std::collections::VecDeque::new();
    loop {
        while fetching.len() < IN_FLIGHT {
            let Some(ids) = windows.next() else { break };
            let (peers, holders, preferred) = (peers.clone(), holders.clone(), preferred.clone());
            let wanted = ids.to_vec();
            let task =
                tokio::spawn(async move { fetch(&peers, &holders, &preferred, &wanted).await });
            fetching.push_back((ids, StopOnDrop(task.abort_handle()), task));
        }
        let Some((ids, _stop, task)) = fetching.pop_front() else {
            return;
        };
        let got = task
            .await
            .unwrap_or_else(|e| Err(format!("fetching chunks stopped: {e}")));
        let mut got = match got {
            Ok(got) => got,
            Err(why) => {
                let _ = out.send(Err(why)).await;
                return;
            }
        };
        for (i, id) in ids.iter().enumerate() {
            // The last use of a chunk in the window takes it, the others copy.
            let data = if ids[i + 1..].contains(id) {
                got.get(id).cloned()
            } else {
                got.remove(id)
            };
            let item = data.ok_or_else(|| format!("no storage node gave chunk {id}"));
            if out.send(item).await.is_err() {
                return;
            }
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
                    let id_of = b.id;
                    let data = b
                        .into_checked()
                        .map_err(|e| format!("storage node {id} sent a damaged chunk: {e}"))?;
                    Ok((id_of, data))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .await
        .map_err(|e| format!("checking chunks stopped: {e}"))??;
        got.extend(opened);
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcm_chunks::Stamp;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        let (mode, mtime, stamp) = (0o640, (1_700_000_000, 0), Stamp::default());
        let path = path.as_bytes().to_vec();
        Entry {
            path,
            kind,
            mode,
            mtime,
            stamp,
        }
    }

    /// Files of several chunks each under nested directories, and their chunks.
    fn tree(files: usize) -> (Vec<Entry>, HashMap<ChunkId, Vec<u8>>) {
        let mut entries = vec![entry("d", EntryKind::Dir), entry("d/e", EntryKind::Dir)];
        let mut chunks = HashMap::new();
        for f in 0..files {
            let pieces: Vec<Vec<u8>> = (0..f % 4)
                .map(|p| {
                    format!("file {f} piece {p} ")
                        .repeat(1 + 500 * p)
                        .into_bytes()
                })
                .collect();
            let ids = pieces.iter().map(|p| ChunkId::of(p)).collect();
            let size = pieces.iter().map(|p| p.len() as u64).sum();
            for p in pieces {
                chunks.insert(ChunkId::of(&p), p);
            }
            let kind = EntryKind::File { size, chunks: ids };
            entries.push(entry(&format!("d/e/{}/f{f}", f % 3), kind));
        }
        (entries, chunks)
    }

    /// Runs `write_all` with the chunks fed in order, as the fetcher does.
    fn restore(
        target: &Path,
        overwrite: bool,
        entries: &[Entry],
        chunks: &HashMap<ChunkId, Vec<u8>>,
    ) -> Result<bcm_chunks::RestoreStats, String> {
        let assigned = assign(entries, WRITERS);
        assert!(
            (0..WRITERS).all(|w| assigned.contains(&w)),
            "every writer has files"
        );
        let (outs, ins): (Vec<_>, Vec<_>) = (0..WRITERS).map(|_| mpsc::channel(AHEAD)).unzip();
        let feed: Vec<(usize, ChunkId)> = entries
            .iter()
            .zip(&assigned)
            .filter_map(|(e, w)| match &e.kind {
                EntryKind::File { chunks, .. } => Some(chunks.iter().map(move |c| (*w, *c))),
                _ => None,
            })
            .flatten()
            .collect();
        let chunks = chunks.clone();
        let feeder = std::thread::spawn(move || {
            for (w, id) in feed {
                let data = Checked::new(id, chunks[&id].clone()).unwrap();
                if outs[w].blocking_send(Ok(data)).is_err() {
                    return;
                }
            }
        });
        let out = write_all(
            target,
            overwrite,
            entries,
            &assigned,
            ins,
            &Counters::default(),
        );
        feeder.join().unwrap();
        out
    }

    #[test]
    fn several_writers_restore_every_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let (entries, chunks) = tree(40);
        let stats = restore(&target, false, &entries, &chunks).unwrap();
        assert_eq!((stats.files, stats.dirs), (40, 2));
        for e in &entries {
            if let EntryKind::File { chunks: ids, .. } = &e.kind {
                let want: Vec<u8> = ids.iter().flat_map(|id| chunks[id].clone()).collect();
                let path = target.join(std::str::from_utf8(&e.path).unwrap());
                assert_eq!(std::fs::read(&path).unwrap(), want, "{path:?}");
            }
        }
    }

    #[test]
    fn a_writer_that_fails_says_why_and_no_file_is_left_half_done() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let (entries, chunks) = tree(40);
        // A directory where the last file goes: its writer fails, the others
        // stop for want of chunks.
        std::fs::create_dir_all(target.join("d/e/0/f39")).unwrap();
        let why = restore(&target, true, &entries, &chunks).unwrap_err();
        assert!(
            why.contains("f39") && !why.contains("fetching stopped"),
            "{why}"
        );
        let left: Vec<_> = walkdir(&target)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".bcm-restore"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    fn walkdir(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                out.extend(walkdir(&path));
            }
            out.push(path);
        }
        out
    }
}
