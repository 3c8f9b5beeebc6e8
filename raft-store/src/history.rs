//! A stopped node's Raft storage read whole (snapshot, every log entry, vote, commit
//! index, last membership), for re-forming a cluster from it (`bcm recover`).

use std::path::{Path, PathBuf};

use bcm_model::{codec, ClusterState};
use openraft::EntryPayload;
use serde::de::DeserializeOwned;

use crate::engine::{Engine, EngineError};
use crate::state_machine::read_snapshot;
use crate::store::{COMMITTED, VOTE};
use crate::types::{Entry, LogId, StoredMembership, Vote};

/// Why a data directory's history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A node (or another `bcm recover`) has the directory open.
    #[error("{dir} is in use: is another bcm process using this data directory?")]
    InUse { dir: PathBuf },
    #[error("{dir} holds no Raft data")]
    Empty { dir: PathBuf },
    #[error("cannot read the Raft data in {dir}: {why}")]
    Unreadable { dir: PathBuf, why: String },
}

/// What a node's Raft storage holds.
#[derive(Debug, Clone, Default)]
pub struct LocalHistory {
    /// The last entry the snapshot covers, when there is a snapshot.
    pub snapshot: Option<LogId>,
    /// The last entry of the log (the snapshot's when the log holds nothing after it).
    pub last_log: Option<LogId>,
    /// The commit index this node saved last. It is saved lazily: what the node
    /// knew committed may be a little further.
    pub committed: Option<LogId>,
    pub vote: Option<Vote>,
    /// The last membership, of the snapshot or of a later log entry (openraft uses
    /// a membership from the moment it is in the log, committed or not).
    pub membership: StoredMembership,
    /// The snapshot's state with every log entry after it applied, committed or
    /// not, as the state machine applies them.
    pub state: ClusterState,
    /// Log entries applied on top of the snapshot.
    pub entries_after_snapshot: u64,
}

/// A data directory opened by [`read_history`]: its lock is held until this is
/// dropped, so that no node opens the directory meanwhile.
pub struct HeldDir {
    _engine: Engine,
}

/// How many bytes of log records are read at a time.
const READ_BYTES: usize = 64 << 20;

/// Reads everything the Raft storage in `dir` holds and builds the state from it:
/// the snapshot, then every entry of the log after it. Changes nothing of bcm's
/// data (sled, opened, rewrites its own bookkeeping files, as at every open); the
/// directory stays locked until the returned [`HeldDir`] is dropped.
pub fn read_history(dir: &Path) -> Result<(LocalHistory, HeldDir), HistoryError> {
    let unreadable = |why: String| HistoryError::Unreadable {
        dir: dir.to_path_buf(),
        why,
    };
    let engine = match Engine::open(dir) {
        Ok(engine) => engine,
        Err(EngineError::InUse { .. }) => {
            return Err(HistoryError::InUse {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(unreadable(e.to_string())),
    };
    if engine.is_empty() {
        return Err(HistoryError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    let meta = |name: &str| -> Result<Option<Vec<u8>>, HistoryError> {
        engine.meta_get(name).map_err(|e| unreadable(e.to_string()))
    };
    fn decoded<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
        codec::decode(bytes).map_err(|e| format!("{what} does not decode: {e}"))
    }

    let mut h = LocalHistory::default();
    if let Some(snap) = read_snapshot(&engine).map_err(|e| unreadable(e.to_string()))? {
        h.state = ClusterState::decode(&snap.data)
            .map_err(|e| unreadable(format!("the snapshot's state does not decode: {e}")))?;
        h.snapshot = snap.meta.last_log_id;
        h.last_log = snap.meta.last_log_id;
        h.membership = snap.meta.last_membership;
    }
    if let Some(bytes) = meta(VOTE)? {
        h.vote = Some(decoded(&bytes, "the vote").map_err(unreadable)?);
    }
    if let Some(bytes) = meta(COMMITTED)? {
        h.committed = decoded::<Option<LogId>>(&bytes, "the commit index").map_err(unreadable)?;
    }

    // Entries after the snapshot, one bounded read at a time. Without a snapshot
    // the log starts wherever its first record is.
    let mut next = h.snapshot.map(|s| s.index + 1);
    loop {
        let from = next.unwrap_or(0);
        let records = engine
            .log_range_at_most(from.., READ_BYTES)
            .map_err(|e| unreadable(e.to_string()))?;
        if records.is_empty() {
            break;
        }
        for (index, bytes) in records {
            if let Some(expected) = next.filter(|n| *n != index) {
                return Err(unreadable(format!(
                    "the log has no entry {expected} (its next entry is {index})"
                )));
            }
            let entry: Entry =
                decoded(&bytes, &format!("log entry {index}")).map_err(unreadable)?;
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(command) => {
                    h.state.apply(index, command);
                }
                EntryPayload::Membership(m) => {
                    h.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                }
            }
            h.last_log = Some(entry.log_id);
            h.entries_after_snapshot += 1;
            next = Some(index + 1);
        }
    }
    Ok((h, HeldDir { _engine: engine }))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use bcm_model::Command;

    use super::*;
    use crate::types::BcmNode;

    fn node(port: u16) -> BcmNode {
        BcmNode {
            api_addr: format!("http://127.0.0.1:{port}"),
            rpc_addr: format!("http://127.0.0.1:{}", port + 1000),
        }
    }

    fn entry(term: u64, index: u64, payload: EntryPayload<crate::TypeConfig>) -> (u64, Vec<u8>) {
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload,
        };
        (index, codec::encode(&entry).unwrap())
    }

    fn put(key: &str, value: u64) -> EntryPayload<crate::TypeConfig> {
        EntryPayload::Normal(Command::PutConfig {
            key: key.into(),
            value_json: value.to_string(),
            if_version: None,
            at: 0,
        })
    }

    #[tokio::test]
    async fn the_history_is_the_snapshot_and_every_entry_after_it() {
        let dir = tempfile::tempdir().unwrap();
        // A snapshot at index 10 (term 2) holding one key...
        let mut state = ClusterState::default();
        state.apply(
            7,
            &Command::PutConfig {
                key: "in-snapshot".into(),
                value_json: "1".into(),
                if_version: None,
                at: 0,
            },
        );
        crate::seed_from_export(
            dir.path(),
            codec::encode(&state).unwrap(),
            2,
            10,
            1,
            node(1),
        )
        .await
        .unwrap();
        // ...and a log that keeps two entries it covers, then goes on: a key, a
        // membership of three voters, a blank entry, the key again.
        let three = openraft::Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([(1, node(1)), (2, node(2)), (3, node(3))]),
        );
        {
            let engine = Engine::open(dir.path()).unwrap();
            engine
                .log_append([
                    entry(2, 9, put("covered", 9)),
                    entry(2, 10, put("covered", 10)),
                    entry(2, 11, put("after", 11)),
                    entry(3, 12, EntryPayload::Membership(three.clone())),
                    entry(3, 13, EntryPayload::Blank),
                    entry(3, 14, put("after", 14)),
                ])
                .unwrap();
            engine.log_sync().unwrap();
        }
        let (h, held) = read_history(dir.path()).unwrap();
        assert_eq!(h.snapshot.map(|l| l.index), Some(10));
        assert_eq!(
            h.last_log.map(|l| (l.leader_id.term, l.index)),
            Some((3, 14))
        );
        assert_eq!(h.entries_after_snapshot, 4);
        assert_eq!(h.vote.map(|v| v.leader_id().term), Some(2));
        assert_eq!(
            h.membership.membership().voter_ids().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(h.membership.log_id().as_ref().map(|l| l.index), Some(12));
        let config = &h.state.config;
        assert_eq!(config.get("in-snapshot").map(|e| e.version), Some(7));
        assert!(
            config.get("covered").is_none(),
            "entries the snapshot covers are not applied again"
        );
        assert_eq!(
            config
                .get("after")
                .map(|e| (e.value_json.as_str(), e.version)),
            Some(("14", 14))
        );

        // Held: a second reader (or a node) is refused, and may open it once dropped.
        match read_history(dir.path()) {
            Err(HistoryError::InUse { .. }) => {}
            other => panic!("expected InUse, got {:?}", other.map(|(h, _)| h)),
        }
        drop(held);
        assert!(read_history(dir.path()).is_ok());
    }

    #[test]
    fn an_empty_directory_has_no_history() {
        let dir = tempfile::tempdir().unwrap();
        match read_history(dir.path()) {
            Err(HistoryError::Empty { .. }) => {}
            other => panic!("expected Empty, got {:?}", other.map(|(h, _)| h)),
        }
    }
}
