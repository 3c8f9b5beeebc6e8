//! Log entries and snapshot metadata of every kind, as a cluster writes them: the
//! valid encodings the fuzz targets of this crate and of node (whose Raft RPCs
//! carry them) start their mutations from. The commands are the model's samples.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{CommittedLeaderId, EntryPayload, Membership};

pub use bcm_model::samples::{applied, commands};

use crate::{BcmNode, Entry, LogId, SnapshotMeta, StoredMembership};

/// The id of entry `index`, written in `term` by node 1.
pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// Node `id`'s addresses.
pub fn node(id: u64) -> BcmNode {
    BcmNode {
        api_addr: format!("http://127.0.0.1:{}", 8080 + id),
        rpc_addr: format!("http://127.0.0.1:{}", 9080 + id),
    }
}

/// Three voters becoming two (a joint configuration), and a learner.
pub fn membership() -> Membership<u64, BcmNode> {
    Membership::new(
        vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2])],
        (1..=4).map(|id| (id, node(id))).collect::<BTreeMap<_, _>>(),
    )
}

/// A blank entry, a membership change, and an entry for every kind of command.
pub fn entries() -> Vec<Entry> {
    let mut out = vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Membership(membership()),
        },
    ];
    for (i, c) in bcm_model::samples::commands().into_iter().enumerate() {
        out.push(Entry {
            log_id: log_id(2, i as u64 + 3),
            payload: EntryPayload::Normal(c),
        });
    }
    out
}

/// A snapshot's metadata: of an empty state, and of one with a membership.
pub fn metas() -> Vec<SnapshotMeta> {
    vec![
        SnapshotMeta::default(),
        SnapshotMeta {
            last_log_id: Some(log_id(3, 41)),
            last_membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
            snapshot_id: "3-41-1700000000000".into(),
        },
    ]
}
