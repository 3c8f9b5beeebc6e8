//! The service layer: every operation of the API, the UI and the CLI goes through
//! here. Writes and linearizable reads are routed to the leader.

use std::time::{Duration, Instant};

use bcm_raft_store::{limits, Command, NodeId, Response};
use openraft::error::RaftError;
use openraft::ServerState;

use crate::membership;
use crate::rpc::{self, LeaderOp, LeaderReply, MemberHealth, OpResult, PeerError};
use crate::runtime::{Node, SharedNode, REQUEST_DEADLINE};

/// What can go wrong in a service call; the API maps each to one HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NoLeader(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    /// The write is larger than one command may be (413).
    #[error("{0}")]
    TooLarge(String),
}

/// Refuses a command whose encoding would pass [`limits::COMMAND_BYTES`]: every
/// write is checked here, before it can join a batch, so that no log entry, no
/// AppendEntries and no forwarded batch can outgrow the limits after it.
pub fn check_size(command: &Command) -> Result<(), ServiceError> {
    let len = bcm_raft_store::codec::encoded_len(command)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    if len > limits::COMMAND_BYTES {
        return Err(ServiceError::TooLarge(format!(
            "the write is {len} bytes once encoded; at most {} are accepted",
            limits::COMMAND_BYTES
        )));
    }
    Ok(())
}

/// Proposes a command on this node, which must be the leader.
pub async fn write_local(node: &Node, command: Command) -> Result<Response, ServiceError> {
    check_size(&command)?;
    match execute_locally(
        node,
        LeaderOp::Write(command),
        Instant::now() + REQUEST_DEADLINE,
    )
    .await
    {
        LeaderReply::Ok(OpResult::Written(r, _)) => Ok(r),
        LeaderReply::Ok(other) => Err(ServiceError::Internal(format!(
            "unexpected result {other:?}"
        ))),
        LeaderReply::NotLeader { .. } => Err(ServiceError::NoLeader(
            "this node is no longer the leader".into(),
        )),
        LeaderReply::Refused(s) => Err(ServiceError::Conflict(s)),
        LeaderReply::Unavailable(s) => Err(ServiceError::Unavailable(s)),
    }
}

/// Proposes a command through the leader, wherever it is. When it returns, this
/// node has applied the write too (or a second has passed): a client reads its own
/// writes from the node it wrote through.
pub async fn write(node: &SharedNode, command: Command) -> Result<Response, ServiceError> {
    check_size(&command)?;
    match leader_op(node, LeaderOp::Write(command), REQUEST_DEADLINE).await? {
        OpResult::Written(r, index) => {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), node.state.wait_applied(index)).await;
            Ok(r)
        }
        other => Err(ServiceError::Internal(format!(
            "unexpected result {other:?}"
        ))),
    }
}

/// Waits until this node's state reflects everything committed before the call:
/// after it returns, a local read is linearizable. Concurrent reads on this node
/// share ReadIndex rounds (see rounds.rs): one request to the leader serves every
/// read that arrived before it was sent.
pub async fn read_barrier(node: &SharedNode) -> Result<(), ServiceError> {
    let started = Instant::now();
    let index = node
        .read_rounds
        .run(|| async {
            match leader_op(node, LeaderOp::ReadIndex, REQUEST_DEADLINE).await? {
                OpResult::ReadIndex(i) => Ok(i),
                other => Err(ServiceError::Internal(format!(
                    "unexpected result {other:?}"
                ))),
            }
        })
        .await?;
    let left = REQUEST_DEADLINE.saturating_sub(started.elapsed());
    tokio::time::timeout(left, node.state.wait_applied(index))
        .await
        .map_err(|_| {
            ServiceError::Unavailable(format!("this node has not applied up to index {index} yet"))
        })
}

pub async fn decommission(node: &SharedNode, id: NodeId) -> Result<(), ServiceError> {
    leader_op(node, LeaderOp::Decommission(id), Duration::from_secs(30)).await?;
    Ok(())
}

pub async fn snapshot(node: &SharedNode) -> Result<u64, ServiceError> {
    match leader_op(node, LeaderOp::Snapshot, Duration::from_secs(30)).await? {
        OpResult::Snapshot(i) => Ok(i),
        other => Err(ServiceError::Internal(format!(
            "unexpected result {other:?}"
        ))),
    }
}

/// The leader's live view of the members, or None when it cannot be had quickly.
pub async fn member_health(node: &SharedNode) -> Option<Vec<MemberHealth>> {
    match leader_op(node, LeaderOp::Health, Duration::from_millis(1500)).await {
        Ok(OpResult::Health(h)) => Some(h),
        _ => None,
    }
}

/// The leader's Postgres export status, or None when it cannot be had quickly.
pub async fn export_status(node: &SharedNode) -> Option<crate::export::ExportStatus> {
    match leader_op(node, LeaderOp::ExportStatus, Duration::from_millis(1500)).await {
        Ok(OpResult::ExportStatus(s)) => Some(s),
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
                Err(e) => LeaderReply::Refused(encode_service_error(&e)),
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
        LeaderOp::ExportStatus => LeaderReply::Ok(OpResult::ExportStatus(node.export.get())),
    }
}

/// Proposes one write on this node, the leader, and waits up to `left` for it.
async fn write_here(node: &Node, command: Command, left: Duration) -> LeaderReply<OpResult> {
    // A leader cut off from a majority answers at once instead of appending
    // an entry that cannot commit.
    let lost_after = node.cfg.raft.election_timeout_max_ms * 2;
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

// Refusals travel as text between nodes; keep the kind so the HTTP status survives.
fn encode_service_error(e: &ServiceError) -> String {
    let kind = match e {
        ServiceError::NotFound(_) => "not-found",
        ServiceError::Conflict(_) => "conflict",
        _ => "unavailable",
    };
    format!("{kind}|{e}")
}

fn decode_refusal(s: String) -> ServiceError {
    match s.split_once('|') {
        Some(("not-found", m)) => ServiceError::NotFound(m.to_string()),
        Some(("unavailable", m)) => ServiceError::Unavailable(m.to_string()),
        Some(("conflict", m)) => ServiceError::Conflict(m.to_string()),
        _ => ServiceError::Conflict(s),
    }
}

/// Runs `op` on the leader: here when this node leads, else forwarded over the
/// cluster-internal protocol. Retries while there is no leader until `budget` ends.
pub async fn leader_op(
    node: &SharedNode,
    op: LeaderOp,
    budget: Duration,
) -> Result<OpResult, ServiceError> {
    let deadline = Instant::now() + budget;
    let mut last_problem = String::from("no leader is known");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ServiceError::NoLeader(format!(
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
                    _ => {
                        node.peers
                            .call::<_, LeaderReply<OpResult>>(
                                &leader.rpc_addr,
                                rpc::PATH_LEADER,
                                &op,
                                left,
                            )
                            .await
                    }
                };
                match answer {
                    Ok(r) => r,
                    // Nothing was delivered: safe to try again.
                    Err(e @ PeerError::Unreachable { .. }) | Err(e @ PeerError::Status { .. }) => {
                        last_problem = format!("leader {id}: {e}");
                        wait_for_leader_change(node, Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => {
                        return Err(ServiceError::Unavailable(format!(
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
            LeaderReply::Refused(s) => return Err(decode_refusal(s)),
            LeaderReply::Unavailable(s) => return Err(ServiceError::Unavailable(s)),
        }
    }
}

async fn wait_for_leader_change(node: &Node, max: Duration) {
    let mut rx = node.raft.metrics();
    let before = rx.borrow_and_update().current_leader;
    let _ = tokio::time::timeout(max, rx.wait_for(|m| m.current_leader != before)).await;
}

/// Readiness: the node knows a leader and has applied what it knows to be committed.
pub async fn is_ready(node: &Node) -> Result<(), String> {
    let m = node.raft_metrics();
    if m.running_state.is_err() {
        return Err("raft stopped".into());
    }
    if let Some(why) = node.excluded() {
        return Err(why);
    }
    if !node.raft_open() {
        return Err("waiting to be admitted to the cluster".into());
    }
    let is_member = m
        .membership_config
        .membership()
        .nodes()
        .any(|(id, _)| *id == node.cfg.id);
    if !is_member {
        return Err("not a member of the cluster (yet)".into());
    }
    let Some(_leader) = m.current_leader else {
        return Err("no leader known".into());
    };
    if !node.state.read(|d| d.state.is_initialized()) {
        return Err("the cluster is still forming".into());
    }
    if m.state != ServerState::Leader
        && m.state != ServerState::Follower
        && m.state != ServerState::Learner
    {
        return Err(format!("raft state {:?}", m.state));
    }
    if m.state != ServerState::Leader && !node.has_synced_with_leader() {
        // The commit index saved before a restart can be behind what this node had
        // applied and served: wait for the leader's, which comes with its entries.
        return Err("waiting for the leader's first entries since start".into());
    }
    let committed = node
        .raft
        .with_raft_state(|s| s.committed.map(|l| l.index))
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(0);
    let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
    if applied < committed {
        return Err(format!(
            "applied {applied} of {committed} committed entries"
        ));
    }
    Ok(())
}
