//! Where a backup's replicas go: storage nodes that are enabled, up and answer;
//! first those holding the previous backup of the same plan (so that what did
//! not change is not stored again), then fewest running backups, most free
//! space, fewest backups held: plans spread over the storage nodes, each plan's
//! backups stay together. Never two replicas on one node.

use std::time::Duration;

use bcm_raft_store::{JobStatus, NodeStatus, Role};

use crate::cluster::Node;
use crate::storage::client::StorageNode;
use crate::storage::wire;

const ASK: Duration = Duration::from_secs(2);

/// `replicas` storage nodes for a new backup, `sticky` ones first (those of the
/// plan's previous backup), none of `avoid` (those holding a replica already),
/// or why there are not enough.
pub async fn choose(
    node: &Node,
    replicas: u32,
    sticky: &[u64],
    avoid: &[u64],
) -> Result<Vec<StorageNode>, String> {
    let candidates: Vec<(StorageNode, usize)> = node.state.read(|d| {
        let s = &d.state;
        s.nodes
            .values()
            .filter(|n| n.has_role(Role::Storage) && n.enabled && n.status == NodeStatus::Up)
            .filter(|n| !avoid.contains(&n.id))
            .map(|n| {
                let load = s
                    .backups
                    .values()
                    .filter(|b| b.status == JobStatus::Running && b.storage_nodes.contains(&n.id))
                    .count();
                let target = StorageNode {
                    id: n.id,
                    rpc: n.rpc_addr.clone(),
                };
                (target, load)
            })
            .collect()
    });
    let asks = candidates.into_iter().map(|(target, load)| async move {
        let stats = node
            .peers
            .call::<_, wire::Stats>(&target.rpc, wire::PATH_STATS, &(), ASK)
            .await;
        (target, load, stats)
    });
    let mut ranked = Vec::new();
    let mut unreachable = Vec::new();
    for (target, load, stats) in futures_util::future::join_all(asks).await {
        match stats {
            Ok(s) => {
                let away = !sticky.contains(&target.id);
                ranked.push((
                    away,
                    load,
                    u64::MAX - s.free_bytes,
                    s.store.manifests,
                    target,
                ))
            }
            Err(e) => unreachable.push(format!("{} ({e})", target.id)),
        }
    }
    ranked.sort_by_key(|(away, load, taken, held, t)| (*away, *load, *taken, *held, t.id));
    if ranked.len() < replicas as usize {
        let mut why = format!(
            "{replicas} replica(s) need as many storage nodes that are enabled, up and answer; {} are",
            ranked.len()
        );
        if !unreachable.is_empty() {
            why.push_str(&format!(" (not answering: {})", unreachable.join(", ")));
        }
        return Err(why);
    }
    Ok(ranked
        .into_iter()
        .take(replicas as usize)
        .map(|(.., t)| t)
        .collect())
}

/// The storage nodes of the registry with these ids, as the jobs address them.
pub fn addressed(node: &Node, ids: &[u64]) -> Vec<StorageNode> {
    node.state.read(|d| {
        ids.iter()
            .filter_map(|id| d.state.nodes.get(id))
            .map(|n| StorageNode {
                id: n.id,
                rpc: n.rpc_addr.clone(),
            })
            .collect()
    })
}

/// The storage nodes of the newest succeeded backup like `b` (the same plan; or,
/// on demand, the same source and paths).
pub fn previous_home(node: &Node, b: &bcm_raft_store::Backup) -> Vec<u64> {
    previous(node, b)
        .map(|(_, nodes)| nodes)
        .unwrap_or_default()
}

/// The latest succeeded backup before `b` of the same plan (of the same source
/// and paths for a backup without a plan): its id and its storage nodes.
pub fn previous(node: &Node, b: &bcm_raft_store::Backup) -> Option<(u64, Vec<u64>)> {
    node.state.read(|d| {
        d.state
            .backups
            .values()
            .rev()
            .filter(|o| o.id != b.id && o.status == JobStatus::Succeeded)
            .find(|o| match b.plan {
                Some(p) => o.plan == Some(p),
                None => o.plan.is_none() && o.source_node == b.source_node && o.paths == b.paths,
            })
            .map(|o| (o.id, o.storage_nodes.clone()))
    })
}
