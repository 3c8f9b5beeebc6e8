//! Admitting nodes on the leader: a join's answer (a new node, a restarted
//! member, a member back with an empty disk, one whose Raft data was superseded)
//! and the admission it starts (learner, caught up, then voter).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bcm_raft_store::{BcmNode, Command, NodeId, NodeStatus, Response, Role};
use openraft::ChangeMembers;

use super::membership::{change_membership, membership_sets};
use crate::cluster::error::ClusterError;
use crate::cluster::local;
use crate::cluster::rpc::{JoinReply, JoinRequest, LeaderReply};
use crate::cluster::{now_ms, SharedNode};

/// Handles a join request on the leader.
pub async fn handle_join(node: &SharedNode, req: JoinRequest) -> LeaderReply<JoinReply> {
    if !node.is_leader() {
        let leader = node.leader();
        return LeaderReply::NotLeader {
            leader_id: leader.as_ref().map(|l| l.0),
            leader_rpc: leader.map(|l| l.1.rpc_addr),
        };
    }
    let id = req.info.id;
    let existing = node.state.read(|d| d.state.nodes.get(&id).cloned());
    if let Some(rec) = &existing {
        if rec.status == NodeStatus::Removed {
            return LeaderReply::Refused(ClusterError::Conflict(format!(
                "node {id} was decommissioned; re-add it with POST /api/v1/nodes and start it with an empty data directory"
            )));
        }
    }
    if !req.fresh && !membership_sets(node).1.contains(&id) {
        // Raft data of a membership the cluster no longer has: re-formed
        // without it (`bcm recover`). Admitted, its log would meet this one's
        // committed entries with its own. (Its own question, fence.rs, finds
        // this when a leader answers it in time; this answer always does.)
        // Said only by a leader a majority acknowledges: one cut off from the
        // others may not know of a membership that has the node.
        if !node.acknowledged_by_majority() {
            return LeaderReply::Unavailable(format!(
                "node {id} has Raft data and is not in this leader's membership, and a majority \
                 of voters has not acknowledged this leader lately: ask again"
            ));
        }
        tracing::warn!(
            node_id = id,
            "the node has Raft data but is not in the membership: refused (superseded)"
        );
        return LeaderReply::Ok(JoinReply::Superseded {
            leader: node.cfg.id,
            term: node.raft_metrics().current_term,
        });
    }
    if let Some(conflict) = node.state.read(|d| {
        d.state
            .nodes
            .values()
            .find(|n| {
                n.id != id && n.rpc_addr == req.info.rpc_addr && n.status != NodeStatus::Removed
            })
            .map(|n| n.id)
    }) {
        return LeaderReply::Refused(ClusterError::Conflict(format!(
            "address {} is already registered for node {conflict}",
            req.info.rpc_addr
        )));
    }

    let (voters, all) = membership_sets(node);
    if req.fresh && all.contains(&id) {
        // Lost disk: the old member must leave before the empty node may answer RPCs,
        // or the 0.9 leader would see its log go backwards.
        tracing::warn!(node_id = id, "node came back with an empty data directory; removing its old membership before re-adding it");
        if voters.contains(&id) && voters.len() <= 1 {
            return LeaderReply::Refused(ClusterError::Conflict(
                "cannot remove the only voter".into(),
            ));
        }
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        if let Err(e) = node.raft.change_membership(change, false).await {
            return LeaderReply::Unavailable(format!(
                "removing the old membership of node {id}: {e}"
            ));
        }
        // A voter removed with retain=false may still be a learner in a joint step.
        let (_, all) = membership_sets(node);
        if all.contains(&id) {
            if let Err(e) = change_membership(
                node,
                ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                false,
                Duration::from_secs(8),
            )
            .await
            {
                return LeaderReply::Unavailable(format!("removing node {id}: {e}"));
            }
        }
    }

    // Keep the registry in step with what the node says about itself, except its
    // roles: the config file's seed them at the first registration, and after that
    // the registry's stay, so that roles changed through the API survive restarts
    // (as kubelet's --node-labels only seed a node's labels).
    let mut info = req.info.clone();
    if let Some(rec) = &existing {
        if rec.roles != info.roles {
            tracing::info!(
                node_id = id,
                config = ?info.roles,
                registry = ?rec.roles,
                "node announces other roles than the registry's; the registry's stay"
            );
            info.roles = rec.roles.clone();
        }
    }
    let needs_update = existing.as_ref().is_none_or(|r| {
        r.name != info.name || r.api_addr != info.api_addr || r.rpc_addr != info.rpc_addr
    });
    if needs_update {
        let cmd = Command::RegisterNode {
            info: info.clone(),
            at: now_ms(),
        };
        let roles: Vec<&str> = info.roles.iter().map(|r| r.as_str()).collect();
        let detail = format!(
            "{} at {}; roles: {}",
            info.name,
            info.api_addr,
            roles.join(",")
        );
        let cmd = super::audit::audited(id, "nodes.register", format!("node {id}"), detail, cmd);
        match local::write_local(node, cmd).await {
            Ok(Response::Rejected(r)) => {
                return LeaderReply::Refused(ClusterError::Conflict(r.to_string()))
            }
            Ok(_) => {}
            Err(e) => return LeaderReply::Unavailable(e.to_string()),
        }
    }

    let (voters, all) = membership_sets(node);
    let wants_vote = info.roles.contains(&Role::Manager);
    let admitted = if wants_vote {
        voters.contains(&id)
    } else {
        all.contains(&id)
    };
    if !admitted {
        spawn_admission(node.clone(), id, info.api_addr, info.rpc_addr, wants_vote);
    }
    LeaderReply::Ok(JoinReply::Proceed)
}

/// Adds a node as learner, waits until it caught up, then promotes it when it may vote.
fn spawn_admission(node: SharedNode, id: NodeId, api_addr: String, rpc_addr: String, voter: bool) {
    {
        let mut joining = node.joining.lock().expect("joining lock");
        if let Some(since) = joining.get(&id) {
            if since.elapsed() < Duration::from_secs(60) {
                return;
            }
        }
        joining.insert(id, Instant::now());
    }
    tokio::spawn(async move {
        // The node was told to proceed and does not ask again: keep trying while
        // this node leads (another change in progress, e.g. two nodes joining at
        // once, refuses a membership change for a moment).
        let bn = BcmNode { api_addr, rpc_addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match admit(&node, id, bn.clone(), voter).await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline && node.is_leader() => {
                    tracing::info!(node_id = id, "admitting node: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => {
                    tracing::warn!(
                        node_id = id,
                        "admitting node failed: {e}; it is admitted when it registers again"
                    );
                    break;
                }
            }
        }
        node.joining.lock().expect("joining lock").remove(&id);
    });
}

async fn admit(node: &SharedNode, id: NodeId, bn: BcmNode, voter: bool) -> Result<(), String> {
    let (_, all) = membership_sets(node);
    if !all.contains(&id) {
        tracing::info!(node_id = id, "adding node as learner");
        let serial = node.status_writes.lock().await;
        if node.state.read(|d| d.state.is_removed(id)) {
            tracing::info!(
                node_id = id,
                "not adding the node: it was decommissioned meanwhile"
            );
            return Ok(());
        }
        let _ = local::write_local(
            node,
            Command::SetNodeStatus {
                id,
                status: NodeStatus::Joining,
                at: now_ms(),
            },
        )
        .await;
        drop(serial);
        // Blocking: returns once the learner has caught up (snapshot install included).
        let added = tokio::time::timeout(
            Duration::from_secs(120),
            node.raft.add_learner(id, bn, true),
        )
        .await;
        // A decommission that ran meanwhile may have found the node in no
        // membership yet: it must not stay a learner.
        let serial = node.status_writes.lock().await;
        if node.state.read(|d| d.state.is_removed(id)) {
            if membership_sets(node).1.contains(&id) {
                tracing::info!(
                    node_id = id,
                    "the node was decommissioned while it was being added: removing it again"
                );
                change_membership(
                    node,
                    ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                    false,
                    Duration::from_secs(5),
                )
                .await?;
            }
            return Ok(());
        }
        drop(serial);
        added
            .map_err(|_| "the learner did not catch up within 120 s".to_string())?
            .map_err(|e| e.to_string())?;
    }
    if voter {
        let (voters, _) = membership_sets(node);
        if !voters.contains(&id) {
            tracing::info!(node_id = id, "promoting node to voter");
            change_membership(
                node,
                ChangeMembers::AddVoterIds(BTreeSet::from([id])),
                false,
                Duration::from_secs(30),
            )
            .await?;
            let why = "to voter: it joined with role manager".to_string();
            super::audit::record(node, "nodes.promote", format!("node {id}"), why).await;
        }
    }
    Ok(())
}
