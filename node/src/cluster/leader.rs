//! Work only the leader can do, from any node: writes and linearizable reads are
//! run here when this node leads and forwarded to the leader otherwise, retried
//! across leader changes until their deadline.

use std::time::{Duration, Instant};

use bcm_raft_store::{Command, NodeId, Response};
use openraft::error::RaftError;

use crate::cluster::error::ClusterError;
use crate::cluster::local::{check_size, write_here};
use crate::cluster::membership;
use crate::cluster::rpc::{LeaderOp, LeaderReply, MemberHealth, OpResult, PeerError};
use crate::cluster::{Node, REQUEST_DEADLINE};

/// Proposes a command through the leader, wherever it is. When it returns, this
/// node has applied the write too (or a second has passed): a client reads its own
/// writes from the node it wrote through.
pub async fn write(node: &Node, command: Command) -> Result<Response, ClusterError> {
    check_size(&command)?;
    match leader_op(node, LeaderOp::Write(command), REQUEST_DEADLINE).await? {
        OpResult::Written(r, index) => {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), node.state.wait_applied(index)).await;
            Ok(r)
        }
        other => Err(ClusterError::Internal(format!(
            "unexpected result {other:?}"
        ))),
    }
}

/// Waits until this node's state reflects everything committed before the call:
/// after it returns, a local read is linearizable. Concurrent reads on this node
/// share ReadIndex rounds (see rounds.rs): one request to the leader serves every
/// read that arrived before it was sent.
pub async fn read_barrier(node: &Node) -> Result<(), ClusterError> {
    let started = Instant::now();
    let index = node
        .read_rounds
        .run(|| async {
            match leader_op(node, LeaderOp::ReadIndex, REQUEST_DEADLINE).await? {
                OpResult::ReadIndex(i) => Ok(i),
                other => Err(ClusterError::Internal(format!(
                    "unexpected result {other:?}"
                ))),
            }
        })
        .await?;
    let left = REQUEST_DEADLINE.saturating_sub(started.elapsed());
    tokio::time::timeout(left, node.state.wait_applied(index))
        .await
        .map_err(|_| {
            ClusterError::Unavailable(format!("this node has not applied up to index {index} yet"))
        })
}

pub async fn decommission(node: &Node, id: NodeId) -> Result<(), ClusterError> {
    leader_op(node, LeaderOp::Decommission(id), Duration::from_secs(30)).await?;
    Ok(())
}

pub async fn snapshot(node: &Node) -> Result<u64, ClusterError> {
    match leader_op(node, LeaderOp::Snapshot, Duration::from_secs(30)).await? {
        OpResult::Snapshot(i) => Ok(i),
        other => Err(ClusterError::Internal(format!(
            "unexpected result {other:?}"
        ))),
    }
}

/// The leader's live view of the members, or None when it cannot be had quickly.
pub async fn member_health(node: &Node) -> Option<Vec<MemberHealth>> {
    match leader_op(node, LeaderOp::Health, Duration::from_millis(1500)).await {
        Ok(OpResult::Health(h)) => Some(h),
        _ => None,
    }
}

fn not_leader(node: &Node) -> LeaderReply<OpResult> {
    let leader = node.leader();
    LeaderReply::NotLeader {
        leader_id: leader.as_ref().map(|l| l.0),
        leader_rpc: leader.map(|l| l.1.rpc_addr),
    }
}

/// Runs `op` here, on the leader. Used for local requests and for forwarded ones.
pub async fn execute_locally(
    node: &Node,
    op: LeaderOp,
    deadline: Instant,
) -> LeaderReply<OpResult> {
    if !node.is_leader() || node.stepping_aside() {
        // Callers wait for a leader change and try again.
        return not_leader(node);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    match op {
        LeaderOp::Write(command) => write_here(node, command, left).await,
        LeaderOp::WriteBatch(commands) => {
            // Each joins the leader's proposal queue (propose.rs); the answers come
            // back in order.
            let each = commands.into_iter().map(|c| write_here(node, c, left));
            LeaderReply::Ok(OpResult::Batch(futures_util::future::join_all(each).await))
        }
        // One leadership confirmation serves every ReadIndex request (local reads
        // and followers' batches) that arrived before it began.
        LeaderOp::ReadIndex => {
            let round = || async {
                match tokio::time::timeout(left, node.raft.ensure_linearizable()).await {
                    Ok(Ok(read_log_id)) => LeaderReply::Ok(OpResult::ReadIndex(
                        read_log_id.map(|l| l.index).unwrap_or(0),
                    )),
                    Ok(Err(RaftError::APIError(
                        openraft::error::CheckIsLeaderError::ForwardToLeader(_),
                    ))) => not_leader(node),
                    Ok(Err(e)) => {
                        LeaderReply::Unavailable(format!("cannot confirm leadership: {e}"))
                    }
                    Err(_) => LeaderReply::Unavailable(
                        "a majority of voters did not confirm the leader in time".into(),
                    ),
                }
            };
            node.leader_read_rounds.run(round).await
        }
        LeaderOp::Decommission(id) => {
            match Box::pin(membership::decommission_on_leader(node, id)).await {
                Ok(()) => LeaderReply::Ok(OpResult::Done),
                Err(e) => LeaderReply::Refused(e),
            }
        }
        LeaderOp::Snapshot => {
            let target = node.state.applied_index();
            if let Err(e) = node.raft.trigger().snapshot().await {
                return LeaderReply::Unavailable(format!("cannot start a snapshot: {e}"));
            }
            let mut rx = node.raft.metrics();
            let waited = tokio::time::timeout(
                left,
                rx.wait_for(|m| m.snapshot.map(|s| s.index).unwrap_or(0) >= target),
            )
            .await;
            match waited {
                Ok(Ok(m)) => {
                    LeaderReply::Ok(OpResult::Snapshot(m.snapshot.map(|s| s.index).unwrap_or(0)))
                }
                _ => LeaderReply::Unavailable("the snapshot did not finish in time".into()),
            }
        }
        LeaderOp::Health => LeaderReply::Ok(OpResult::Health(leader_health(node))),
        LeaderOp::Login(op) => LeaderReply::Ok(OpResult::Login(node.logins.handle(op))),
    }
}

/// Each member's last contact and matched index, as the leader sees them.
pub fn leader_health(node: &Node) -> Vec<MemberHealth> {
    let m = node.raft_metrics();
    let replication = m.replication.clone().unwrap_or_default();
    m.membership_config
        .membership()
        .nodes()
        .map(|(id, _)| {
            if *id == node.cfg.id {
                return MemberHealth {
                    id: *id,
                    last_contact_ms: Some(0),
                    matched_index: m.last_log_index,
                };
            }
            MemberHealth {
                id: *id,
                last_contact_ms: node
                    .peers
                    .contacts
                    .last(*id)
                    .map(|t| t.elapsed().as_millis() as u64),
                matched_index: replication.get(id).and_then(|l| l.map(|l| l.index)),
            }
        })
        .collect()
}

/// Runs `op` on the leader: here when this node leads, else forwarded over the
/// cluster-internal protocol. Retries while there is no leader until `budget` ends.
pub async fn leader_op(
    node: &Node,
    op: LeaderOp,
    budget: Duration,
) -> Result<OpResult, ClusterError> {
    let deadline = Instant::now() + budget;
    let mut last_problem = String::from("no leader is known");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClusterError::NoLeader(format!(
                "no leader could serve the request within {budget:?}: {last_problem}"
            )));
        }
        let reply = match node.leader() {
            Some((id, _)) if id == node.cfg.id => execute_locally(node, op.clone(), deadline).await,
            Some((id, leader)) => {
                let answer = match &op {
                    LeaderOp::Write(command) => {
                        node.forwarder
                            .write(&leader.rpc_addr, command.clone(), left)
                            .await
                    }
                    _ => node.forwarder.call(&leader.rpc_addr, &op, left).await,
                };
                match answer {
                    Ok(r) => r,
                    // Nothing was delivered (no connection; or refused before it
                    // was read: shed by a busy server): safe to try again.
                    Err(e @ PeerError::Unreachable { .. })
                    | Err(e @ PeerError::Status { status: 503, .. }) => {
                        last_problem = format!("leader {id}: {e}");
                        wait_for_leader_change(node, Duration::from_millis(100)).await;
                        continue;
                    }
                    // Anything else may have been acted on: a write tried again
                    // could be applied twice, or a compare-and-set refused by its
                    // own first try. The client is told it does not know.
                    Err(e) => {
                        return Err(ClusterError::Unavailable(format!(
                            "leader {id} did not answer: {e}; the request may or may not have taken effect"
                        )))
                    }
                }
            }
            None => {
                wait_for_leader_change(node, left.min(Duration::from_millis(200))).await;
                continue;
            }
        };
        match reply {
            LeaderReply::Ok(r) => return Ok(r),
            LeaderReply::NotLeader { .. } => {
                last_problem = "leadership was changing".into();
                wait_for_leader_change(node, Duration::from_millis(50)).await;
            }
            LeaderReply::Refused(e) => return Err(e),
            LeaderReply::Unavailable(s) => return Err(ClusterError::Unavailable(s)),
        }
    }
}

async fn wait_for_leader_change(node: &Node, max: Duration) {
    let mut rx = node.raft.metrics();
    let before = rx.borrow_and_update().current_leader;
    let _ = tokio::time::timeout(max, rx.wait_for(|m| m.current_leader != before)).await;
}
