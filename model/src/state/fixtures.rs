//! What the tests of the state machine share.

use crate::command::{Command, NodeInfo, Rejection, Response};
use crate::records::Role;
use crate::state::ClusterState;

pub(super) fn info(id: u64, roles: Vec<Role>) -> NodeInfo {
    NodeInfo {
        id,
        name: format!("node-{id}"),
        api_addr: format!("http://127.0.0.1:{}", 8080 + id),
        rpc_addr: format!("http://127.0.0.1:{}", 9080 + id),
        roles,
    }
}

/// Node `id` registering itself with `roles`, at time `at`.
pub(super) fn register(id: u64, roles: Vec<Role>, at: u64) -> Command {
    Command::RegisterNode {
        info: info(id, roles),
        at,
    }
}

pub(super) fn init() -> Command {
    Command::InitCluster {
        cluster_id: "c1".into(),
        token_key: vec![7; 32],
        admin_password_hash: "$argon2id$v=19$m=19456,t=2,p=1$x$y".into(),
        at: 1,
    }
}

/// A cluster formed by [`init`] at log index 1.
pub(super) fn initialized() -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(1, &init());
    s
}

pub(super) fn quota_of(r: &Response) -> Option<&str> {
    match r {
        Response::Rejected(Rejection::QuotaExceeded { quota, .. }) => Some(quota),
        _ => None,
    }
}
