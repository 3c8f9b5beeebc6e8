//! The state machine's half of openraft's storage traits: the applied state in
//! memory, snapshots built from it and installed into it, on top of [`Engine`].

// openraft's trait methods return its large StorageError; our helpers return the same type.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use bcm_model::{codec, ClusterState, Command, Response, StateEvent};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::{broadcast, watch};

use crate::engine::Engine;
use crate::store::{io_err, read_err, write_err, NO_SPACE_RETRY_MAX, VOTE};
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

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
    pub(crate) fn load(engine: Arc<Engine>) -> Result<StateMachineStore, StorageError> {
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
        // the whole state first (apply waits for the lock meanwhile: an entry
        // applied during the encoding still holds the Raft runtime's thread for
        // the rest of it). On the blocking pool, so that with nothing to apply the
        // heartbeats and appends go on while a large state is encoded.
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

/// How far above the highest term of the history a reseeded cluster starts.
const RESEED_TERM_GAP: u64 = 1_000_000;

/// The term a cluster re-formed from a history whose highest term is `highest`
/// starts at (`bcm recover`, a restore from PostgreSQL): above every term the
/// old cluster used, which the one node that reseeds cannot know. The others
/// may have gone on electing after it stopped (in a test, two old members
/// reached a term above the survivor's + 1). An old member started with its old
/// data by mistake must never have a log that looks newer than the new
/// cluster's (Raft would let it win votes there and overwrite committed
/// entries), and an old member's term grows by one per election: a million of
/// them is out of reach.
pub fn reseeded_term(highest: u64) -> u64 {
    highest.saturating_add(RESEED_TERM_GAP)
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
