//! Writes proposed on this node while it leads: the size check every write passes
//! first, and the proposal itself (after a check that this leader still has a
//! quorum). Forwarded writes, the cluster manager's and membership's own writes all
//! end here.

use std::time::{Duration, Instant};

use bcm_raft_store::{limits, Command, Response};

use super::error::ClusterError;
use super::node::{Node, REQUEST_DEADLINE};
use super::rpc::{LeaderReply, OpResult};

/// Refuses a command whose encoding would pass [`limits::COMMAND_BYTES`]: every
/// write is checked here, before it can join a batch, so that no log entry, no
/// AppendEntries and no forwarded batch can outgrow the limits after it.
pub fn check_size(command: &Command) -> Result<(), ClusterError> {
    let len = bcm_raft_store::codec::encoded_len(command)
        .map_err(|e| ClusterError::Internal(e.to_string()))?;
    if len > limits::COMMAND_BYTES {
        return Err(ClusterError::TooLarge(format!(
            "the write is {len} bytes once encoded; at most {} are accepted",
            limits::COMMAND_BYTES
        )));
    }
    Ok(())
}

/// Proposes a command on this node, which must be the leader.
pub async fn write_local(node: &Node, command: Command) -> Result<Response, ClusterError> {
    check_size(&command)?;
    if !node.is_leader() || node.stepping_aside() {
        return Err(ClusterError::NoLeader(
            "this node is no longer the leader".into(),
        ));
    }
    let left = (Instant::now() + REQUEST_DEADLINE).saturating_duration_since(Instant::now());
    match write_here(node, command, left).await {
        LeaderReply::Ok(OpResult::Written(r, _)) => Ok(r),
        LeaderReply::Ok(other) => Err(ClusterError::Internal(format!(
            "unexpected result {other:?}"
        ))),
        LeaderReply::NotLeader { .. } => Err(ClusterError::NoLeader(
            "this node is no longer the leader".into(),
        )),
        LeaderReply::Refused(e) => Err(e),
        LeaderReply::Unavailable(s) => Err(ClusterError::Unavailable(s)),
    }
}

/// Proposes one write on this node, the leader, and waits up to `left` for it.
pub(super) async fn write_here(
    node: &Node,
    command: Command,
    left: Duration,
) -> LeaderReply<OpResult> {
    // A leader cut off from a majority answers at once instead of appending
    // an entry that cannot commit.
    let lost_after = node.cut_off_after_ms();
    let quorum_ack = node.raft.metrics().borrow().millis_since_quorum_ack;
    if let Some(ms) = quorum_ack {
        if ms > lost_after
            && node
                .leader_for()
                .is_some_and(|d| d.as_millis() as u64 > lost_after)
        {
            return LeaderReply::Unavailable(format!(
                "the leader has not heard from a majority of voters for {ms} ms"
            ));
        }
    }
    node.proposer.propose(command, left).await
}
