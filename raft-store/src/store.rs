//! Opening a node's Raft storage, and the log's half of openraft's storage traits (v2)
//! on top of [`Engine`] (the state machine's half is in `state_machine.rs`).
//!
//! Durability rules: a log append is reported flushed to openraft only after the
//! log's fdatasync returned; a vote is saved only after fsync; `last_purged` is made
//! durable before any record is removed; a truncation is durable before it returns;
//! a snapshot is durable before it is reported.

// openraft's trait methods return its large StorageError; our helpers return the same type.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use bcm_model::codec;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::budget::AppendBudget;
use crate::engine::Engine;
use crate::space::DiskSpace;
pub use crate::state_machine::StateMachineStore;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

pub(crate) const VOTE: &str = "vote";
pub(crate) const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

pub(crate) fn io_err(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl ToString,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(e.to_string())).into()
}

pub(crate) fn read_err(e: impl ToString) -> StorageError {
    io_err(ErrorSubject::Store, ErrorVerb::Read, e)
}

pub(crate) fn write_err(e: impl ToString) -> StorageError {
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
    let space = Arc::new(DiskSpace::new(dir));
    let log = LogStore {
        engine: engine.clone(),
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
    space: Arc<DiskSpace>,
    append_budget: AppendBudget,
}

/// How long an append that found the disk full waits before it tries again, at
/// first and at most.
const NO_SPACE_RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
pub(crate) const NO_SPACE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

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

impl LogStore {
    /// Turns a saved vote by which node `me` led its term into the vote of a
    /// candidate of that term, and says which vote it was, if it did. Run before
    /// Raft starts: openraft 0.9 restores a restarted leader as leader at once,
    /// and it then replicates to the others before anything checked that its
    /// data still belongs to the cluster (`bcm recover` may have re-formed the
    /// cluster without it, at a lower term than the old one reached). Without
    /// the restore the node starts as a follower, and leads only once elected
    /// again, in a new term (openraft 0.10's `enable_leader_restore = false`).
    /// Safe for Raft: the node still voted for itself in that term, so it grants
    /// no other candidate of the term, and keeps every entry.
    pub async fn forget_leadership(&mut self, me: NodeId) -> Result<Option<Vote>, StorageError> {
        let Some(vote) = self.read_vote().await? else {
            return Ok(None);
        };
        if !vote.is_committed() || vote.leader_id().voted_for() != Some(me) {
            return Ok(None);
        }
        self.save_vote(&Vote::new(vote.leader_id().term, me))
            .await?;
        Ok(Some(vote))
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
        // Synced here, on openraft's core task, before the callback: openraft 0.9's
        // core waits for an append's callback before its next append (and the
        // leader before it replicates), so there is never a second append to share
        // a sync with, and a hand-off to a sync thread only added two thread
        // wake-ups (there and back) to every write on every node. The Raft runtime
        // has one thread, which waits meanwhile: a leader whose disk stalls for
        // longer than a follower waits before it campaigns stops sending
        // heartbeats and is replaced, as an etcd leader is (docs/OPERATIONS.md).
        let synced = self.engine.log_sync();
        callback.log_io_completed(synced.map_err(std::io::Error::other));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restarted_leader_keeps_its_vote_but_not_its_leadership() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path()).unwrap().log;
        // Node 3 led term 5: after the restart it is a candidate of term 5.
        let mut led = Vote::new(5, 3);
        led.commit();
        log.save_vote(&led).await.unwrap();
        assert_eq!(log.forget_leadership(3).await.unwrap(), Some(led));
        drop(log);
        let mut log = open(dir.path()).unwrap().log;
        let now = log.read_vote().await.unwrap().unwrap();
        assert_eq!(now, Vote::new(5, 3));
        assert!(!now.is_committed());
        // It voted for itself in term 5: no other candidate of term 5 gets its
        // vote (openraft grants a vote not below its own), one of term 6 may.
        assert_eq!(Vote::new(5, 2).partial_cmp(&now), None);
        assert!(Vote::new(6, 2) > now);
        // Another node's leadership, a candidate's vote and no vote stay as they are.
        assert_eq!(log.forget_leadership(3).await.unwrap(), None);
        let mut followed = Vote::new(6, 1);
        followed.commit();
        log.save_vote(&followed).await.unwrap();
        assert_eq!(log.forget_leadership(3).await.unwrap(), None);
        assert_eq!(log.read_vote().await.unwrap(), Some(followed));
        let empty = tempfile::tempdir().unwrap();
        let mut log = open(empty.path()).unwrap().log;
        assert_eq!(log.forget_leadership(3).await.unwrap(), None);
        assert_eq!(log.read_vote().await.unwrap(), None);
    }
}
