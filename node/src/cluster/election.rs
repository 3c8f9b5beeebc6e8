//! Elections: bcm's own election timer (a fresh random timeout before every
//! attempt) and the pre-vote that keeps a node that is behind or cut off from
//! disturbing the cluster (docs/OPERATIONS.md "Timing defaults, and why").

use std::time::{Duration, Instant};

use bcm_raft_store::NodeId;
use openraft::ServerState;

use super::node::SharedNode;
use super::rpc;

/// The election timer. openraft 0.9 draws one election timeout per process, so two
/// followers that drew close values split the vote election after election (seen
/// in tests: a dozen failed terms in a row). This timer draws a new timeout in
/// [min, max) before every attempt and starts elections through openraft's trigger.
///
/// A follower campaigns when it has not heard from a leader (an accepted append,
/// a snapshot chunk, or a vote it granted) for the leader lease (max, while the
/// vote it holds is committed: peers refuse to vote before their lease runs out)
/// plus the drawn timeout. A node that just started counts its start as contact,
/// so it first gives an existing leader the chance to reach it.
/// How much longer than the others a node that should not lead waits before it
/// campaigns (see [`super::Node::should_not_lead`]).
const RELUCTANCE: Duration = Duration::from_secs(5);

pub(super) async fn election_timer(node: SharedNode) {
    use rand::Rng;
    let min = node.cfg.raft.election_timeout_min_ms;
    let max = node.cfg.raft.election_timeout_max_ms;
    let draw = || Duration::from_millis(rand::thread_rng().gen_range(min..max));
    let mut timeout = draw();
    // Attempts are spaced by a fresh random timeout; the leader-contact clock is only
    // reset by real signs of a leader, so peers judge our silence correctly.
    let mut last_attempt: Option<Instant> = None;
    let mut shutdown = node.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = shutdown.changed() => return,
        }
        let m = node.raft_metrics();
        let is_voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == node.cfg.id);
        if m.state == ServerState::Leader || !is_voter || !node.raft_open() {
            continue;
        }
        let lease = if m.vote.is_committed() {
            Duration::from_millis(max)
        } else {
            Duration::ZERO
        };
        // A node that should not lead now (its disk is full) leaves the election
        // to the others, unless none of them has taken over for a while.
        let reluctance = if node.should_not_lead().is_some() {
            RELUCTANCE
        } else {
            Duration::ZERO
        };
        if node.since_leader_contact() < lease + timeout + reluctance {
            continue;
        }
        if last_attempt.is_some_and(|t| t.elapsed() < timeout) {
            continue;
        }
        timeout = draw();
        last_attempt = Some(Instant::now());
        let voters: Vec<(NodeId, String)> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != node.cfg.id)
            .filter_map(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| (id, n.rpc_addr.clone()))
            })
            .collect();
        if !pre_vote_granted(&node, &voters).await {
            tracing::debug!(
                term = m.current_term,
                "pre-vote not granted by a majority; not campaigning"
            );
            continue;
        }
        tracing::info!(
            term = m.current_term,
            "no leader heard from and a majority would vote; starting an election"
        );
        if node.raft.trigger().elect().await.is_err() {
            return;
        }
    }
}

/// Asks the other voters whether they would vote for this node now. Unreachable
/// voters count as "no".
async fn pre_vote_granted(node: &SharedNode, others: &[(NodeId, String)]) -> bool {
    let req = crate::cluster::rpc::PreVoteRequest {
        candidate: node.cfg.id,
        last_log: node.last_log().await,
    };
    let timeout = Duration::from_millis(node.cfg.raft.heartbeat_ms.max(100));
    let asks = others.iter().map(|(_, addr)| {
        let req = &req;
        async move {
            node.raft_peers
                .call::<_, bool>(addr, rpc::PATH_PRE_VOTE, req, timeout)
                .await
                .unwrap_or(false)
        }
    });
    let yes = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .filter(|granted| *granted)
        .count();
    let voters = others.len() + 1;
    yes + 1 > voters / 2
}
