//! The cluster manager's duties, run by whichever node is the Raft leader: forming
//! the cluster's identity, recording member health and assigning the backup-manager
//! role (with a fencing epoch).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bcm_raft_store::{Command, NodeId, NodeRecord, NodeStatus, Response, Role};
use rand::RngCore;

use crate::cluster::error::ClusterError;
use crate::cluster::local;
use crate::cluster::{now_ms, Node, SharedNode};
use crate::crypto;

const TICK: Duration = Duration::from_millis(200);

pub async fn run(node: SharedNode) {
    let mut shutdown = node.shutdown.clone();
    let mut down_since: HashMap<NodeId, Instant> = HashMap::new();
    let mut joint_seen = None;
    // Why a wanted voter change waits, logged when it changes (not every tick).
    let mut voters_waiting: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        if !node.is_leader() {
            down_since.clear();
            voters_waiting = None;
            continue;
        }
        if let Some(why) = node.should_not_lead() {
            // Drained, or its disk is full: another voter should lead (when there
            // is one: a lone voter leads on).
            if crate::cluster::membership::has_other_voters(&node) {
                crate::cluster::membership::hand_over(&node, &why);
            }
        }
        if node.stepping_aside() {
            // The next leader manages.
            continue;
        }
        if let Err(e) =
            crate::cluster::membership::finish_joint_change(&node, &mut joint_seen).await
        {
            tracing::warn!("{e}");
        }
        match crate::cluster::membership::reconcile_voters(&node).await {
            Ok(()) => voters_waiting = None,
            Err(e) => {
                if voters_waiting.as_ref() != Some(&e) {
                    tracing::warn!("{e}");
                }
                voters_waiting = Some(e);
            }
        }
        if let Err(e) = tick(&node, &mut down_since).await {
            tracing::debug!("cluster manager tick: {e}");
        }
    }
}

async fn tick(
    node: &SharedNode,
    down_since: &mut HashMap<NodeId, Instant>,
) -> Result<(), ClusterError> {
    if !node.state.read(|d| d.state.is_initialized()) {
        init_cluster(node).await?;
    }
    record_health(node, down_since).await?;
    assign_backup_manager(node, down_since).await
}

async fn init_cluster(node: &Node) -> Result<(), ClusterError> {
    let (password, generated) = match &node.cfg.admin_password {
        Some(p) => (p.expose().to_string(), false),
        None => (crypto::generate_password(), true),
    };
    let hash = crypto::hash_password(password.clone())
        .await
        .map_err(|e| ClusterError::Internal(e.to_string()))?;
    let mut token_key = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut token_key);
    let mut id = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut id);
    let cluster_id = id.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let init = Command::InitCluster {
        cluster_id: cluster_id.clone(),
        token_key,
        admin_password_hash: hash,
        at: now_ms(),
    };
    let init = super::audit::audited(
        node.cfg.id,
        "cluster.init",
        &cluster_id,
        "user admin".into(),
        init,
    );
    let response = local::write_local(node, init).await?;
    if response == Response::Done {
        tracing::info!(%cluster_id, "cluster initialized");
        if generated {
            // Printed once, here, on the node that formed the cluster; never logged.
            println!("bcm: cluster {cluster_id} formed. Admin user: admin, password: {password}");
            println!("bcm: this password is shown only once: keep it somewhere safe.");
        }
    }
    Ok(())
}

async fn record_health(
    node: &Node,
    down_since: &mut HashMap<NodeId, Instant>,
) -> Result<(), ClusterError> {
    // From reading the registry to the last write (see `Node::status_writes`).
    let _serial = node.status_writes.lock().await;
    let m = node.raft_metrics();
    let members: BTreeSet<NodeId> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect();
    let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
    let records: Vec<NodeRecord> = node
        .state
        .read(|d| d.state.nodes.values().cloned().collect());
    let joining: BTreeSet<NodeId> = node
        .joining
        .lock()
        .expect("joining lock")
        .keys()
        .copied()
        .collect();
    for rec in records {
        if rec.status == NodeStatus::Removed {
            continue;
        }
        let up = node.observed_up(rec.id);
        match up {
            Some(false) => {
                down_since.entry(rec.id).or_insert_with(Instant::now);
            }
            Some(true) => {
                down_since.remove(&rec.id);
            }
            None => {}
        }
        let wanted = if !members.contains(&rec.id) {
            if joining.contains(&rec.id) {
                NodeStatus::Joining
            } else {
                NodeStatus::Down
            }
        } else {
            let wants_vote = rec.has_role(Role::Manager);
            match up {
                None => continue,
                Some(false) => NodeStatus::Down,
                Some(true) if wants_vote && !voters.contains(&rec.id) => NodeStatus::Joining,
                Some(true) => NodeStatus::Up,
            }
        };
        if wanted != rec.status {
            // Said once it is recorded: a leader without a quorum tries again
            // every round, and used to say so each time.
            local::write_local(
                node,
                Command::SetNodeStatus {
                    id: rec.id,
                    status: wanted,
                    at: now_ms(),
                },
            )
            .await?;
            tracing::info!(
                node_id = rec.id,
                from = rec.status.as_str(),
                to = wanted.as_str(),
                "member status changed"
            );
        }
    }
    Ok(())
}

async fn assign_backup_manager(
    node: &Node,
    down_since: &HashMap<NodeId, Instant>,
) -> Result<(), ClusterError> {
    let grace = Duration::from_millis(node.cfg.manager.backup_manager_grace_ms);
    let members: BTreeSet<NodeId> = node
        .raft_metrics()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect();
    let (current, records, maintenance) = node.state.read(|d| {
        (
            d.state.backup_manager,
            d.state.nodes.clone(),
            d.state.maintenance.clone(),
        )
    });
    let eligible = |r: &NodeRecord| {
        r.enabled
            && !maintenance.contains_key(&r.id)
            && r.has_role(Role::BackupManager)
            && members.contains(&r.id)
            && r.status != NodeStatus::Removed
            && node.observed_up(r.id) == Some(true)
    };
    let keep = match current {
        None => false,
        Some(bm) => match records.get(&bm.node_id) {
            None => false,
            Some(r)
                if !r.enabled
                    || maintenance.contains_key(&r.id)
                    || !r.has_role(Role::BackupManager)
                    || !members.contains(&r.id) =>
            {
                false
            }
            Some(r) => match down_since.get(&r.id) {
                Some(since) => since.elapsed() < grace,
                None => true,
            },
        },
    };
    if keep {
        return Ok(());
    }
    let holder = current.map(|b| b.node_id);
    let candidates: Vec<&NodeRecord> = records
        .values()
        .filter(|r| eligible(r) && Some(r.id) != holder)
        .collect();
    // Prefer a node other than the cluster manager, so losing the leader does not
    // also lose the backup manager.
    let choice = candidates.iter().find(|r| r.id != node.cfg.id).or_else(|| {
        // Give the others a moment to register before taking the role ourselves.
        let settled = node.leader_for().unwrap_or_default() > Duration::from_secs(2);
        candidates
            .iter()
            .find(|r| r.id == node.cfg.id)
            .filter(|_| settled)
    });
    let Some(choice) = choice else {
        return Ok(());
    };
    let epoch = current.map(|b| b.epoch).unwrap_or(0) + 1;
    tracing::info!(node_id = choice.id, epoch, previous = ?holder, "assigning the backup-manager role");
    let previous = holder.map_or("none".into(), |h| format!("node {h}"));
    let assign = Command::AssignBackupManager {
        node_id: choice.id,
        epoch,
        at: now_ms(),
    };
    local::write_local(
        node,
        super::audit::audited(
            node.cfg.id,
            "cluster.backup_manager",
            format!("node {}", choice.id),
            format!("epoch {epoch}; before: {previous}"),
            assign,
        ),
    )
    .await?;
    Ok(())
}
