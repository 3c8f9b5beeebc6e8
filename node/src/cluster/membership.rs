//! The cluster manager's side of membership: voters following role `manager`,
//! handing leadership over, and decommissioning (a join's answer and the
//! admission it starts are in admission.rs).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bcm_raft_store::{BcmNode, Command, NodeId, NodeStatus, Role};
use openraft::ChangeMembers;

use crate::cluster::error::ClusterError;
use crate::cluster::local;
use crate::cluster::{now_ms, Node, SharedNode};

/// Runs a membership change in its own task. openraft 0.9 makes a change in two
/// steps (joint, then final) inside `change_membership`; a caller that gave up
/// half-way would leave the cluster in the joint configuration. The task always
/// runs to the end; the caller waits at most `wait`. Voters the change drops leave
/// the membership, or stay as learners with `retain`.
pub async fn change_membership(
    node: &crate::cluster::Node,
    change: ChangeMembers<NodeId, BcmNode>,
    retain: bool,
    wait: Duration,
) -> Result<(), String> {
    let raft = node.raft.clone();
    let task = tokio::spawn(async move { raft.change_membership(change, retain).await });
    match tokio::time::timeout(wait, task).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(e)) => Err(format!("the membership change task failed: {e}")),
        Err(_) => Err(format!(
            "the membership change did not commit within {wait:?}; it goes on in the background"
        )),
    }
}

/// Finishes a membership change left in the joint configuration (its leader died
/// between the two steps). `seen` remembers since when this joint configuration has
/// been in place: a change still running in its task is left alone for 3 s.
pub async fn finish_joint_change(
    node: &crate::cluster::Node,
    seen: &mut Option<(Option<bcm_raft_store::LogId>, Instant)>,
) -> Result<(), String> {
    let m = node.raft_metrics();
    let mem = m.membership_config.membership();
    if mem.get_joint_config().len() < 2 {
        *seen = None;
        return Ok(());
    }
    let log_id = m.membership_config.log_id().to_owned();
    match seen {
        Some((id, since)) if *id == log_id => {
            if since.elapsed() < Duration::from_secs(3) {
                return Ok(());
            }
        }
        _ => {
            *seen = Some((log_id, Instant::now()));
            return Ok(());
        }
    }
    let Some(last) = mem.get_joint_config().last().cloned() else {
        return Ok(());
    };
    // The registry tells what the change was for: a voter that lost role `manager`
    // was being demoted and stays a learner; one being decommissioned leaves.
    let retain = node.state.read(|d| {
        mem.voter_ids().filter(|id| !last.contains(id)).any(|id| {
            d.state
                .nodes
                .get(&id)
                .is_some_and(|r| r.status != NodeStatus::Removed && !r.has_role(Role::Manager))
        })
    });
    tracing::info!(voters = ?last, retain, "finishing a membership change left half-way");
    change_membership(
        node,
        ChangeMembers::ReplaceAllVoters(last),
        retain,
        Duration::from_secs(10),
    )
    .await
}

/// The voters that answer a probe right now (this node counts as alive): the ones a
/// new configuration can count on. Asked at the moment of the change, because the
/// last heartbeat may predate a crash by up to one heartbeat interval.
async fn alive_now(node: &crate::cluster::Node, ids: &BTreeSet<NodeId>) -> BTreeSet<NodeId> {
    let m = node.raft_metrics();
    let mem = m.membership_config.membership();
    let probes = ids.iter().map(|id| {
        let addr = mem.get_node(id).map(|n| n.rpc_addr.clone());
        async move {
            if *id == node.cfg.id {
                return Some(*id);
            }
            let addr = addr?;
            node.peers
                .call::<_, crate::cluster::rpc::Hello>(
                    &addr,
                    crate::cluster::rpc::PATH_HELLO,
                    &(),
                    Duration::from_millis(500),
                )
                .await
                .ok()
                .filter(|h| h.info.id == *id)
                .map(|_| *id)
        }
    });
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Whether the voters could lose `id` now: some voter remains, and both the current
/// and the new configuration have a majority up (a change passes through both).
/// Probed now: the registry's status lags by member_down_after_ms, the last
/// heartbeat by up to one interval. The error completes "removing node N ...".
async fn quorum_without(
    node: &crate::cluster::Node,
    voters: &BTreeSet<NodeId>,
    id: NodeId,
) -> Result<(), String> {
    quorum_left(voters, &alive_now(node, voters).await, id)
}

/// The arithmetic of [`quorum_without`], given the voters that are up.
fn quorum_left(
    voters: &BTreeSet<NodeId>,
    alive: &BTreeSet<NodeId>,
    id: NodeId,
) -> Result<(), String> {
    let remaining = voters.len() - usize::from(voters.contains(&id));
    if remaining == 0 {
        return Err("would leave the cluster without voters".into());
    }
    let up_remaining = voters
        .iter()
        .filter(|v| **v != id && alive.contains(v))
        .count();
    let up_now = voters.iter().filter(|v| alive.contains(v)).count();
    if up_remaining < remaining / 2 + 1 || up_now < voters.len() / 2 + 1 {
        return Err(format!(
            "would leave no quorum: {up_remaining} of the remaining {remaining} voters are up"
        ));
    }
    Ok(())
}

/// How far behind the leader's log a learner may be and still be promoted: the
/// joint configuration it enters must commit with it counted.
const PROMOTE_WITHIN_ENTRIES: u64 = 64;

/// Promotes or demotes one node (`doing`: "promoting" or "demoting", `why`: to
/// what and why, for the log), retaining it as a learner when asked.
async fn move_voter(
    node: &Node,
    id: NodeId,
    change: ChangeMembers<NodeId, BcmNode>,
    retain: bool,
    doing: &str,
    why: &str,
) -> Result<(), String> {
    tracing::info!(node_id = id, "{doing} node {why}");
    change_membership(node, change, retain, Duration::from_secs(10))
        .await
        .map_err(|e| format!("{doing} node {id}: {e}"))?;
    let action = if doing == "promoting" {
        "nodes.promote"
    } else {
        "nodes.demote"
    };
    super::audit::record(node, action, format!("node {id}"), why.to_string()).await;
    Ok(())
}

/// Keeps the Raft voters in step with the registry's roles, one change per call
/// (the cluster manager calls it every tick while it leads): a learner with role
/// `manager` that is up and has caught up becomes a voter; a voter without it
/// becomes a learner once the voters left and up still form a majority. A voter
/// not in the registry yet (a bootstrap member before it registered) is left alone.
/// The error says why a wanted change waits.
pub async fn reconcile_voters(node: &SharedNode) -> Result<(), String> {
    let m = node.raft_metrics();
    let mem = m.membership_config.membership();
    if mem.get_joint_config().len() > 1 || !node.joining.lock().expect("joining lock").is_empty() {
        // A change is under way (finish_joint_change and admissions see to it).
        return Ok(());
    }
    let (voters, all) = membership_sets(node);
    let records = node.state.read(|d| {
        all.iter()
            .filter_map(|id| d.state.nodes.get(id).cloned())
            .filter(|r| r.status != NodeStatus::Removed)
            .collect::<Vec<_>>()
    });
    let matched = |id: NodeId| -> Option<u64> {
        let repl = m.replication.as_ref()?;
        repl.get(&id)?.as_ref().map(|l| l.index)
    };
    let last = m.last_log_index.unwrap_or(0);

    // Why wanted changes wait; one that can go ahead is made at once.
    let mut waiting = Vec::new();
    for rec in records
        .iter()
        .filter(|r| r.has_role(Role::Manager) && !voters.contains(&r.id))
    {
        let caught_up = matched(rec.id).is_some_and(|i| i + PROMOTE_WITHIN_ENTRIES >= last);
        if !caught_up || node.observed_up(rec.id) != Some(true) {
            waiting.push(format!(
                "node {} has role manager and becomes a voter once it is up and has caught up with the leader's log",
                rec.id
            ));
            continue;
        }
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([rec.id]));
        return move_voter(
            node,
            rec.id,
            change,
            false,
            "promoting",
            "to voter: it has role manager",
        )
        .await;
    }

    for rec in records
        .iter()
        .filter(|r| !r.has_role(Role::Manager) && voters.contains(&r.id))
    {
        // The leader's last contacts first (no probe every tick while a voter is
        // down), then a probe of the voters right now.
        let by_contact: BTreeSet<NodeId> = voters
            .iter()
            .copied()
            .filter(|v| node.observed_up(*v) == Some(true))
            .collect();
        let quorum = match quorum_left(&voters, &by_contact, rec.id) {
            Ok(()) => quorum_without(node, &voters, rec.id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = quorum {
            waiting.push(format!(
                "node {} lost role manager and stays a voter for now: removing it {e}",
                rec.id
            ));
            continue;
        }
        if rec.id == node.cfg.id {
            // openraft 0.9 lets a learner go on leading: step aside first, and the
            // next leader demotes this node.
            hand_over(node, "it lost role manager");
            return Ok(());
        }
        let change = ChangeMembers::RemoveVoters(BTreeSet::from([rec.id]));
        return move_voter(
            node,
            rec.id,
            change,
            true,
            "demoting",
            "to learner: it lost role manager",
        )
        .await;
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(waiting.join("; "))
    }
}

/// Whether `id` is the last node (not removed) with role `manager`: taking the role
/// from it would leave [`reconcile_voters`] no voter to keep.
pub fn is_last_manager(node: &crate::cluster::Node, id: NodeId) -> bool {
    node.state.read(|d| {
        !d.state
            .nodes
            .values()
            .any(|n| n.id != id && n.status != NodeStatus::Removed && n.has_role(Role::Manager))
    })
}

/// How long a leader that steps aside waits for another voter to take over before
/// it leads on (an election takes the lease plus 300-500 ms), and how long it then
/// leads before it tries again: the cluster serves nothing while it steps aside.
const HAND_OVER_MAX: Duration = Duration::from_secs(5);
const HAND_OVER_RETRY: Duration = Duration::from_secs(60);

/// Makes this leader step aside: it stops its heartbeats and answers every request
/// as a node that does not lead (callers wait for the next leader), so the other
/// voters elect a leader once the lease has passed, as after a crash but with
/// nothing lost. openraft 0.9 has no leadership transfer.
pub(super) fn hand_over(node: &SharedNode, why: &str) {
    let failed = *node.hand_over_failed.lock().expect("hand_over_failed lock");
    if failed.is_some_and(|t| t.elapsed() < HAND_OVER_RETRY)
        || node.handing_over.swap(true, Ordering::SeqCst)
    {
        return;
    }
    tracing::info!("this leader steps aside for another voter: {why}");
    node.raft.runtime_config().heartbeat(false);
    let node = node.clone();
    tokio::spawn(async move {
        let me = node.cfg.id;
        let mut rx = node.raft.metrics();
        let stepped_down =
            tokio::time::timeout(HAND_OVER_MAX, rx.wait_for(|m| m.current_leader != Some(me)))
                .await
                .is_ok_and(|r| r.is_ok());
        node.raft.runtime_config().heartbeat(true);
        node.handing_over.store(false, Ordering::SeqCst);
        if stepped_down {
            tracing::info!("another voter leads now");
        } else {
            *node.hand_over_failed.lock().expect("hand_over_failed lock") = Some(Instant::now());
            tracing::warn!(
                "no other voter took over within {HAND_OVER_MAX:?}; leading on, trying again in {HAND_OVER_RETRY:?}"
            );
        }
    });
}

/// Whether a voter other than this node is in the membership.
pub fn has_other_voters(node: &crate::cluster::Node) -> bool {
    membership_sets(node).0.iter().any(|v| *v != node.cfg.id)
}

pub(super) fn membership_sets(node: &crate::cluster::Node) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    let m = node.raft_metrics();
    let mem = m.membership_config.membership();
    let voters: BTreeSet<_> = mem.voter_ids().collect();
    let all: BTreeSet<_> = mem.nodes().map(|(id, _)| *id).collect();
    (voters, all)
}

/// Decommissions a node: removes it from the Raft membership and marks it removed.
pub async fn decommission_on_leader(
    node: &crate::cluster::Node,
    id: NodeId,
) -> Result<(), ClusterError> {
    // Whole, against an admission under way (see `admit`) and the health pass.
    let _serial = node.status_writes.lock().await;
    let rec = node
        .state
        .read(|d| d.state.nodes.get(&id).cloned())
        .ok_or_else(|| ClusterError::NotFound(format!("node {id} does not exist")))?;
    if rec.status == NodeStatus::Removed {
        return Err(ClusterError::Conflict(format!(
            "node {id} is already removed"
        )));
    }
    let (voters, all) = membership_sets(node);
    if voters.contains(&id) {
        quorum_without(node, &voters, id)
            .await
            .map_err(|e| ClusterError::Conflict(format!("removing node {id} {e}")))?;
        change_membership(
            node,
            ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            false,
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| ClusterError::Unavailable(format!("removing voter {id}: {e}")))?;
    }
    let (_, all_now) = membership_sets(node);
    if all.contains(&id) && all_now.contains(&id) {
        change_membership(
            node,
            ChangeMembers::RemoveNodes(BTreeSet::from([id])),
            false,
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| ClusterError::Unavailable(format!("removing node {id}: {e}")))?;
    }
    local::write_local(
        node,
        Command::SetNodeStatus {
            id,
            status: NodeStatus::Removed,
            at: now_ms(),
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_voter_may_go_only_when_both_configurations_keep_a_majority_up() {
        let three = set(&[1, 2, 3]);
        assert!(quorum_left(&three, &three, 3).is_ok());
        // One down: losing another voter leaves one of two up.
        assert!(quorum_left(&three, &set(&[1, 2]), 2).is_err());
        // Losing the one that is down leaves two of two up.
        assert!(quorum_left(&three, &set(&[1, 2]), 3).is_ok());
        let two = set(&[1, 2]);
        assert!(quorum_left(&two, &two, 2).is_ok());
        assert!(quorum_left(&two, &set(&[1]), 1).is_err());
        let one = set(&[1]);
        let e = quorum_left(&one, &one, 1).unwrap_err();
        assert!(e.contains("without voters"), "{e}");
        // Five voters, two down: removing an up one leaves two of four up.
        let five = set(&[1, 2, 3, 4, 5]);
        let e = quorum_left(&five, &set(&[1, 2, 3]), 1).unwrap_err();
        assert!(e.contains("2 of the remaining 4"), "{e}");
        assert!(quorum_left(&five, &set(&[1, 2, 3]), 5).is_ok());
    }
}
