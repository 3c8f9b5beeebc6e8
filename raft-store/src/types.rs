//! The openraft type configuration of bcm.

use std::fmt;
use std::io::Cursor;

use bcm_model::{Command, Response};
use serde::{Deserialize, Serialize};

/// A cluster member's identity as stored in the Raft membership: where to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BcmNode {
    /// Public HTTP address (API and web UI), e.g. `http://127.0.0.1:8080`.
    pub api_addr: String,
    /// Cluster-internal HTTP address (Raft RPC), e.g. `http://127.0.0.1:9080`.
    pub rpc_addr: String,
}

impl fmt::Display for BcmNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{api: {}, rpc: {}}}", self.api_addr, self.rpc_addr)
    }
}

openraft::declare_raft_types!(
    /// bcm's Raft types.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = BcmNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BcmNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BcmNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, BcmNode>;
