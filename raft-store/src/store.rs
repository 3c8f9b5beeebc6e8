//! openraft's storage traits (v2) on top of [`Engine`].
//!
//! Durability rules: a log append is reported flushed to openraft only after the
//! log's fdatasync returned; a vote is saved only after fsync; `last_purged` is made
//! durable before any record is removed; a truncation is durable before it returns;
//! a snapshot is durable before it is reported.

// openraft's trait methods return its large StorageError; our helpers return the same type.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, RwLock};

use bcm_model::{codec, ClusterState, Command, Response, StateEvent};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, StorageIOError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::budget::AppendBudget;
use crate::engine::Engine;
use crate::space::DiskSpace;
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

pub(crate) const VOTE: &str = "vote";
pub(crate) const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl ToString) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

pub(crate) fn read_err(e: impl ToString) -> StorageError {
    io_err(ErrorSubject::Store, ErrorVerb::Read, e)
}

fn write_err(e: impl ToString) -> StorageError {
    io_err(ErrorSubject::Store, ErrorVerb::Write, e)
}

/// A node's Raft storage, opened from its data directory.
pub struct Opened {
    pub log: LogStore,
    pub state_machine: StateMachineStore,
    /// Nothing was ever stored: a new or wiped data directory.
    pub pristine: bool,
    /// The data disk's space, as the log sees it (see space.rs).
    pub space: Arc<DiskSpace>,
}

/// Opens both halves of a node's Raft storage from one data directory.
pub fn open(dir: &std::path::Path) -> Result<Opened, StorageError> {
    let engine = Arc::new(Engine::open(dir).map_err(read_err)?);
    let pristine = engine.is_empty();
    let (flush_tx, flush_rx) = std::sync::mpsc::channel();
    let flusher = engine.clone();
    std::thread::Builder::new()
        .name("bcm-log-sync".into())
        .spawn(move || group_commit(&flusher, flush_rx))
        .map_err(write_err)?;
    let space = Arc::new(DiskSpace::new(dir));
    let log = LogStore {
        engine: engine.clone(),
        flush_tx,
        space: space.clone(),
        append_budget: AppendBudget::default(),
    };
    let state_machine = StateMachineStore::load(engine)?;
    Ok(Opened {
        log,
        state_machine,
        pristine,
        space,
    })
}

// ---------------------------------------------------------------- log

/// The Raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    engine: Arc<Engine>,
    /// Appended entries waiting for the next fsync (see `group_commit`).
    flush_tx: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
    space: Arc<DiskSpace>,
    append_budget: AppendBudget,
}

/// How long an append that found the disk full waits before it tries again, at
/// first and at most.
const NO_SPACE_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const NO_SPACE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Group commit, on a thread of its own: appends return as soon as their entries
/// are written (readable), and one fdatasync then covers every append that arrived
/// while the previous one ran. Each append's callback (which lets openraft
/// acknowledge it) fires only after an fdatasync that started after its entries
/// were written, and callbacks fire in append order. (openraft 0.9's core waits for
/// each append's callback before its next append, so today one sync covers one
/// append per node; the leader batches client writes into entries instead, see
/// node/src/propose.rs.) The thread ends with the last `LogStore`.
fn group_commit(engine: &Engine, rx: std::sync::mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let synced = engine.log_sync().map_err(|e| e.to_string());
        if let Err(e) = &synced {
            tracing::error!(error = %e, "cannot make the Raft log durable");
        }
        for callback in waiting {
            callback.log_io_completed(synced.clone().map_err(std::io::Error::other));
        }
    }
}

impl LogStore {
    /// The byte cap on one AppendEntries' entries, which the network adjusts.
    pub fn append_budget(&self) -> AppendBudget {
        self.append_budget.clone()
    }
}

impl LogStore {
    /// Appends `records`; while the disk is full, waits for space and tries again
    /// with what is not in the log yet (writes are positional: a write cut short
    /// is simply written again). openraft stops a node for good on a storage
    /// error, so a full disk must not be one: the node waits (its peers go on
    /// without it, and it catches up once space is freed).
    async fn append_waiting_for_space(
        &self,
        records: &[(u64, Vec<u8>)],
    ) -> Result<(), StorageError> {
        let mut wait = NO_SPACE_RETRY_MIN;
        let mut warned: Option<std::time::Instant> = None;
        loop {
            let done = self.engine.log_last_index();
            let left = records
                .iter()
                .filter(|(i, _)| done.is_none_or(|d| *i > d))
                .map(|(i, p)| (*i, p.as_slice()));
            match self.engine.log_append(left) {
                Ok(()) => {
                    if warned.is_some() {
                        tracing::info!("the data disk has room again: the Raft log takes appends");
                    }
                    self.space.set_stalled(false);
                    return Ok(());
                }
                Err(e) if e.is_no_space() => {
                    self.space.set_stalled(true);
                    if warned.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10)) {
                        tracing::error!(
                            error = %e,
                            "the data disk is full: the Raft log waits for space (this node \
                             falls behind until space is freed; nothing is lost)"
                        );
                        warned = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(NO_SPACE_RETRY_MAX);
                }
                Err(e) => return Err(write_err(e)),
            }
        }
    }

    fn meta<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, StorageError> {
        match self.engine.meta_get(name).map_err(read_err)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StorageError> {
        let bytes = codec::encode(value).map_err(write_err)?;
        self.engine.meta_put(name, bytes).map_err(write_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.engine
            .log_range(range)
            .map_err(read_err)?
            .into_iter()
            .map(|(_, bytes)| codec::decode(&bytes).map_err(read_err))
            .collect()
    }

    /// What replication sends in one AppendEntries: at most the
    /// [`AppendBudget`] of entries (always at least one). openraft caps
    /// the range by count only (`max_payload_entries`), and a count of large
    /// entries once built requests no follower would accept.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.engine
            .log_range_at_most(start..end, self.append_budget.bytes())
            .map_err(read_err)?
            .into_iter()
            .map(|(_, bytes)| codec::decode(&bytes).map_err(read_err))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.meta(LAST_PURGED)?;
        let last = match self.engine.log_last().map_err(read_err)? {
            Some((_, bytes)) => Some(codec::decode::<Entry>(&bytes).map_err(read_err)?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(VOTE, vote)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.engine
            .flush()
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed on its own: it only lets a restarted node re-apply sooner. It
        // becomes durable with the next vote or sled's own flush (every 500 ms), not
        // with an append (the log's sync is its own): a node killed within that may
        // restart with an older one, and waits for the leader's (see readiness).
        self.put_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed = self.meta::<Option<LogId>>(COMMITTED)?.flatten();
        // The committed index and the log sync separately: after a power loss the
        // index may name entries that never reached the disk here. It only lets a
        // restarted node re-apply early, so never past its own log.
        let last = self.get_log_state().await?.last_log_id;
        Ok(match (committed, last) {
            (Some(c), Some(l)) if c.index > l.index => Some(l),
            (Some(_), None) => None,
            (c, _) => c,
        })
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, codec::encode(&e).map_err(write_err)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        self.append_waiting_for_space(&records).await?;
        // Entries are readable now; they are acknowledged once synced.
        if let Err(std::sync::mpsc::SendError(callback)) = self.flush_tx.send(callback) {
            // The sync thread is gone (it could not start, or panicked): sync here.
            let synced = self.engine.log_sync();
            callback.log_io_completed(synced.map_err(std::io::Error::other));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Durable when it returns (it deletes and syncs: off the async threads).
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.log_remove_from(log_id.index))
            .await
            .map_err(write_err)?
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // last_purged is made durable with the engine's own bound, before any record
        // goes: a crash between the two steps leaves a log that starts right after it.
        self.put_meta(LAST_PURGED, &log_id)?;
        self.engine
            .log_remove_through(log_id.index)
            .await
            .map_err(write_err)
    }
}

// ---------------------------------------------------------------- state machine

/// What the state machine holds: the applied position, the membership and the state.
#[derive(Debug, Clone, Default)]
pub struct StateMachineData {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub state: ClusterState,
}

pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Vec<u8>,
}

pub(crate) fn read_snapshot(engine: &Engine) -> Result<Option<StoredSnapshot>, StorageError> {
    let Some((meta, data)) = engine.snapshot_get().map_err(read_err)? else {
        return Ok(None);
    };
    Ok(Some(StoredSnapshot {
        meta: codec::decode(&meta).map_err(read_err)?,
        data,
    }))
}

/// Saves the snapshot durably; hands the data back.
async fn write_snapshot(
    engine: &Engine,
    meta: &SnapshotMeta,
    data: Vec<u8>,
) -> Result<Vec<u8>, StorageError> {
    let meta = codec::encode(meta).map_err(write_err)?;
    let mut data = data;
    let mut warned = false;
    loop {
        // The data comes back with a full-disk error too (see Engine::snapshot_put).
        match engine.snapshot_put(meta.clone(), data).await {
            Ok(data) => return Ok(data),
            Err((e, back)) if e.is_no_space() => {
                if !warned {
                    tracing::error!(error = %e, "the data disk is full: the snapshot waits for space");
                    warned = true;
                }
                data = back;
                tokio::time::sleep(NO_SPACE_RETRY_MAX).await;
            }
            Err((e, _)) => return Err(write_err(e)),
        }
    }
}

/// A read handle on the applied state, shared with the node's service layer.
#[derive(Clone)]
pub struct StateHandle {
    inner: Arc<Shared>,
}

struct Shared {
    data: RwLock<StateMachineData>,
    applied: watch::Sender<u64>,
    /// Commands applied since the process started (a batch counts each of its).
    writes: std::sync::atomic::AtomicU64,
    events: broadcast::Sender<StateEvent>,
}

impl StateHandle {
    /// Reads the state under a short read lock.
    pub fn read<T>(&self, f: impl FnOnce(&StateMachineData) -> T) -> T {
        f(&self.inner.data.read().expect("state lock poisoned"))
    }

    /// The index of the last applied log entry (0 when none).
    pub fn applied_index(&self) -> u64 {
        *self.inner.applied.borrow()
    }

    /// Commands applied here since the process started; a batch entry counts each
    /// command it carries (the node snapshots by this count, see runtime.rs).
    pub fn writes_applied(&self) -> u64 {
        self.inner.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the entry at `index` has been applied here.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.inner.applied.subscribe();
        // The sender lives as long as `self`, so this only ends when the index is reached.
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }

    /// A consistent copy of the applied state with its position, for export.
    pub fn copy(&self) -> StateMachineData {
        self.read(|d| d.clone())
    }

    /// A stream of state changes as they are applied on this node.
    pub fn subscribe(&self) -> broadcast::Receiver<StateEvent> {
        self.inner.events.subscribe()
    }
}

/// The state machine half of the storage.
pub struct StateMachineStore {
    engine: Arc<Engine>,
    handle: StateHandle,
}

impl StateMachineStore {
    fn load(engine: Arc<Engine>) -> Result<StateMachineStore, StorageError> {
        let mut data = StateMachineData::default();
        if let Some(stored) = read_snapshot(&engine)? {
            data.state = ClusterState::decode(&stored.data).map_err(read_err)?;
            data.last_applied = stored.meta.last_log_id;
            data.last_membership = stored.meta.last_membership;
        }
        let applied = data.last_applied.map(|l| l.index).unwrap_or(0);
        let handle = StateHandle {
            inner: Arc::new(Shared {
                data: RwLock::new(data),
                applied: watch::Sender::new(applied),
                writes: Default::default(),
                events: broadcast::channel(1024).0,
            }),
        };
        Ok(StateMachineStore { engine, handle })
    }

    pub fn handle(&self) -> StateHandle {
        self.handle.clone()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self
            .handle
            .read(|d| (d.last_applied, d.last_membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut events = Vec::new();
        let mut writes = 0u64;
        let last = {
            let mut data = self.handle.inner.data.write().expect("state lock poisoned");
            for entry in entries {
                data.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => Response::Done,
                    EntryPayload::Normal(command) => {
                        writes += match &command {
                            Command::Batch(each) => each.len() as u64,
                            _ => 1,
                        };
                        let applied = data.state.apply(entry.log_id.index, &command);
                        events.extend(applied.events);
                        applied.response
                    }
                    EntryPayload::Membership(m) => {
                        data.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        Response::Done
                    }
                };
                responses.push(response);
            }
            data.last_applied.map(|l| l.index).unwrap_or(0)
        };
        for event in events {
            // No subscriber is fine.
            let _ = self.handle.inner.events.send(event);
        }
        self.handle
            .inner
            .writes
            .fetch_add(writes, std::sync::atomic::Ordering::Relaxed);
        self.handle.inner.applied.send_replace(last);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            engine: self.engine.clone(),
            handle: self.handle.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        // Decoding a whole state takes a while: not on the Raft runtime's thread.
        let (state, data) =
            tokio::task::spawn_blocking(move || (ClusterState::decode(&data), data))
                .await
                .map_err(read_err)?;
        let state = state.map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        write_snapshot(&self.engine, meta, data).await?;
        let applied = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        {
            let mut d = self.handle.inner.data.write().expect("state lock poisoned");
            // Replace everything: nothing of the old state survives an install.
            *d = StateMachineData {
                last_applied: meta.last_log_id,
                last_membership: meta.last_membership.clone(),
                state,
            };
        }
        self.handle.inner.applied.send_replace(applied);
        tracing::info!(index = applied, snapshot_id = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        // Reading the whole file (possibly a hundred MiB) blocks: not on an async worker.
        let engine = self.engine.clone();
        let stored = tokio::task::spawn_blocking(move || read_snapshot(&engine))
            .await
            .map_err(read_err)??;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Builds a snapshot from a consistent copy of the state taken under the lock.
pub struct SnapshotBuilder {
    engine: Arc<Engine>,
    handle: StateHandle,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        // Encode under the read lock: a consistent point in time without copying
        // the whole state first (apply waits for the lock meanwhile). On the
        // blocking pool: a large state takes a while, and the Raft runtime's one
        // thread carries the heartbeats.
        let handle = self.handle.clone();
        let (data, last_applied, last_membership) = tokio::task::spawn_blocking(move || {
            handle.read(|d| {
                (
                    codec::encode(&d.state),
                    d.last_applied,
                    d.last_membership.clone(),
                )
            })
        })
        .await
        .map_err(write_err)?;
        let data = data.map_err(write_err)?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, unique_suffix()),
            None => format!("0-0-{}", unique_suffix()),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let data = write_snapshot(&self.engine, &meta, data).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// Seeds an empty data directory with a state exported earlier (disaster recovery).
///
/// `state_data` (an encoded [`ClusterState`], as in a snapshot) becomes this node's
/// snapshot at log index `index`, with this node as the only voter; the vote is set
/// to `term` so the node's first election starts above the exported history. Other
/// members then join it empty and receive the snapshot. Refuses a directory that
/// already holds Raft data.
pub async fn seed_from_export(
    dir: &std::path::Path,
    state_data: Vec<u8>,
    term: u64,
    index: u64,
    id: crate::types::NodeId,
    me: crate::types::BcmNode,
) -> Result<(), StorageError> {
    ClusterState::decode(&state_data)
        .map_err(|e| read_err(format!("the exported state does not decode: {e}")))?;
    let engine = Engine::open(dir).map_err(read_err)?;
    if !engine.is_empty() {
        return Err(write_err(format!(
            "{} already holds Raft data; restore only into an empty data directory",
            dir.display()
        )));
    }
    let log_id = LogId::new(openraft::CommittedLeaderId::new(term, id), index);
    let membership = openraft::Membership::new(
        vec![std::collections::BTreeSet::from([id])],
        std::collections::BTreeMap::from([(id, me)]),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: format!("restored-{term}-{index}-{}", unique_suffix()),
    };
    write_snapshot(&engine, &meta, state_data).await?;
    let vote = codec::encode(&Vote::new(term, id)).map_err(write_err)?;
    engine.meta_put(VOTE, vote).map_err(write_err)?;
    engine.flush().await.map_err(write_err)
}

/// Snapshot ids must differ between builds at the same log position.
fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
