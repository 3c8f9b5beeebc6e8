//! Keeping a member out of Raft when the cluster went on without it: after `bcm
//! recover` re-formed the cluster from another node (or this node was removed
//! while it was down), its old Raft data still names it a member of the old
//! membership, and with another old member it could elect a leader of the old
//! cluster beside the new one, or be admitted with a log that contradicts the
//! new cluster's. A node that starts with Raft data first asks the other nodes
//! which members the leader has, and stays out when that leader lists it not.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use bcm_raft_store::{NodeId, RaftMetrics};
use serde::{Deserialize, Serialize};

use super::node::{Node, SharedNode};
use super::rpc_server::{decode, encode};
use crate::net::problem::Problem;

pub const PATH_MEMBERS: &str = "/internal/members";

/// How long each node gets to answer at start-up. A node that does not answer
/// (the whole cluster restarting) does not hold the start up for longer.
const ASK_WITHIN: Duration = Duration::from_secs(1);
/// How long this node's own state gets to show its cluster id.
const REPLAY_WAIT: Duration = Duration::from_secs(3);

/// Who asks (`/internal/members`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ask {
    pub node_id: NodeId,
}

/// What a node says of its Raft membership (`/internal/members`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Members {
    pub node_id: NodeId,
    pub cluster_id: Option<String>,
    /// Whether the answering node leads now.
    pub leading: bool,
    pub term: u64,
    /// Every member of the newest membership in its log, voters and learners.
    pub members: BTreeSet<NodeId>,
    /// Whether its registry has the asking node decommissioned.
    pub asker_removed: bool,
}

pub async fn members(State(node): State<SharedNode>, body: Bytes) -> Result<Response, Problem> {
    let ask: Ask = decode(&body)?;
    let m = node.raft_metrics();
    let asker_removed = node.state.read(|d| d.state.is_removed(ask.node_id));
    Ok(encode(&Members {
        node_id: node.cfg.id,
        cluster_id: node.state.read(|d| d.state.cluster_id.clone()),
        // A node that takes no part in Raft yet leads nothing, whatever it had.
        leading: node.is_leader() && node.raft_open(),
        term: m.current_term,
        members: m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect(),
        asker_removed,
    }))
}

/// This node's cluster id and its Raft metrics, once its Raft data is loaded:
/// the metrics show the membership once Raft's core has started, and the state
/// the cluster id once the entries committed before the restart (as far as the
/// saved commit index says) are applied again, which Raft does by itself at
/// start-up (a moment). `None` for a node that never applied the cluster's
/// formation, or whose saved commit index does not reach it (killed a moment
/// after the cluster formed): only a leader's entries tell it more, and waiting
/// longer would not.
async fn loaded(node: &Node) -> Option<(String, RaftMetrics)> {
    let deadline = tokio::time::Instant::now() + REPLAY_WAIT;
    while node
        .raft_metrics()
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_none()
    {
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let committed = node
        .raft
        .with_raft_state(|s| s.committed.map(|l| l.index))
        .await
        .ok()?
        .unwrap_or(0);
    let replayed = node.state.wait_applied(committed);
    tokio::time::timeout_at(deadline, replayed).await.ok()?;
    let id = node.state.read(|d| d.state.cluster_id.clone())?;
    Some((id, node.raft_metrics()))
}

/// The leader whose answer fences node `me` of cluster `cluster_id`, if one
/// does (see [`superseded`]).
fn fencing<'a>(answers: &'a [Members], me: NodeId, cluster_id: &str) -> Option<&'a Members> {
    answers
        .iter()
        .filter(|a| a.leading && a.cluster_id.as_deref() == Some(cluster_id))
        .max_by_key(|a| a.term)
        .filter(|a| !a.members.contains(&me) && !a.asker_removed)
}

/// Why this node must take no part in Raft, or `None`. Only a node whose own
/// Raft data names it a member asks: every other node its data names, and the
/// configured bootstrap and join addresses, at once. The leader of the same
/// cluster that answers, the one of the highest term when two do (an older one
/// may be cut off and behind), fences it when its membership does not have this
/// node. No leader answering fences nothing, and neither does one that has this
/// node decommissioned: its join is refused, saying so (admission.rs). (This
/// node's own term says nothing here: the old members may have gone on
/// electing after the survivor stopped, to terms above the one `bcm recover`
/// gave the new cluster.)
pub async fn superseded(node: &Node) -> Option<String> {
    let me = node.cfg.id;
    let (cluster_id, m) = loaded(node).await?;
    let mine = m.membership_config.membership();
    if !mine.nodes().any(|(id, _)| *id == me) {
        return None;
    }
    let mut addrs: BTreeSet<String> = mine
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(_, n)| n.rpc_addr.clone())
        .collect();
    addrs.extend(node.cfg.bootstrap.iter().cloned());
    addrs.extend(node.cfg.join.iter().cloned());
    addrs.remove(&node.cfg.rpc_advertise);
    let asks = addrs.iter().map(|addr| async move {
        node.peers
            .call::<_, Members>(addr, PATH_MEMBERS, &Ask { node_id: me }, ASK_WITHIN)
            .await
            .ok()
    });
    let answers: Vec<Members> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let leader = fencing(&answers, me, &cluster_id)?;
    Some(superseded_by(node, leader.node_id, leader.term))
}

/// What a node whose Raft data the cluster's leader (`leader`, in `term`)
/// superseded says, in its log and on every request: found by this node's
/// question ([`superseded`]) or by the leader's answer to its join
/// (membership.rs).
pub fn superseded_by(node: &Node, leader: NodeId, term: u64) -> String {
    let me = node.cfg.id;
    let dir = node.cfg.data_dir.join("raft");
    format!(
        "this node's Raft data names node {me} a member, but the cluster's leader (node \
         {leader}, term {term}) has no member {me}: the cluster was re-formed without it (bcm \
         recover) or it was removed while it was down, and its Raft data must not be used. \
         Stop it, move {} away and start it again: it joins the cluster with an empty log",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(node_id: NodeId, leading: bool, term: u64, members: &[NodeId]) -> Members {
        Members {
            node_id,
            cluster_id: Some("c1".into()),
            leading,
            term,
            members: members.iter().copied().collect(),
            asker_removed: false,
        }
    }

    #[test]
    fn only_the_newest_leader_of_the_same_cluster_without_this_node_fences_it() {
        // The recovered cluster's leader has nodes 1 and 2; node 3 asks.
        let recovered = answer(1, true, 4, &[1, 2]);
        let follower = answer(2, false, 4, &[1, 2]);
        let both = [follower, recovered.clone()];
        assert_eq!(fencing(&both, 3, "c1").map(|a| a.node_id), Some(1));
        // A follower's view, however old, fences nothing; nor does no answer.
        assert!(fencing(&[answer(2, false, 9, &[2])], 3, "c1").is_none());
        assert!(fencing(&[], 3, "c1").is_none());
        // A leader that has this node, or of another cluster, does not fence.
        assert!(fencing(&[answer(1, true, 4, &[1, 2, 3])], 3, "c1").is_none());
        assert!(fencing(std::slice::from_ref(&recovered), 3, "c2").is_none());
        // A leader cut off and behind (an older term, without the node added
        // since) is overruled by the newer leader that has it.
        let stale = answer(1, true, 5, &[1, 2]);
        let newer = answer(2, true, 6, &[1, 2, 3]);
        assert!(fencing(&[stale.clone(), newer], 3, "c1").is_none());
        // A decommissioned node is left to the join's refusal, which says so.
        let removed = Members {
            asker_removed: true,
            ..recovered
        };
        assert!(fencing(&[removed], 3, "c1").is_none());
        assert!(fencing(&[stale], 3, "c1").is_some());
    }
}
