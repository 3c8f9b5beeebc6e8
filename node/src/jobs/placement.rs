//! Where a backup's replicas go: storage nodes that are enabled, up and answer;
//! first those holding the previous backup of the same plan (so that what did
//! not change is not stored again), then fewest running backups, most free
//! space, fewest backups held: plans spread over the storage nodes, each plan's
//! backups stay together. Never two replicas on one node, nor in one place
//! (storage nodes that share a bucket hold one copy between them: the object
//! store's own redundancy is what keeps it).

use std::collections::HashSet;
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
    let (candidates, holders): (Vec<(StorageNode, usize)>, Vec<StorageNode>) =
        node.state.read(|d| {
            let s = &d.state;
            let addressed = |n: &bcm_raft_store::NodeRecord| StorageNode {
                id: n.id,
                rpc: n.rpc_addr.clone(),
            };
            let candidates = s
                .nodes
                .values()
                .filter(|n| n.has_role(Role::Storage) && n.enabled && n.status == NodeStatus::Up)
                .filter(|n| !avoid.contains(&n.id))
                .map(|n| {
                    let load = s
                        .backups
                        .values()
                        .filter(|b| {
                            b.status == JobStatus::Running && b.storage_nodes.contains(&n.id)
                        })
                        .count();
                    (addressed(n), load)
                })
                .collect();
            let holders = avoid
                .iter()
                .filter_map(|id| s.nodes.get(id))
                .map(addressed)
                .collect();
            (candidates, holders)
        });
    let ask = |target: StorageNode| async move {
        let stats = node
            .peers
            .call::<_, wire::Stats>(&target.rpc, wire::PATH_STATS, &(), ASK)
            .await;
        (target, stats)
    };
    // The places the holders' replicas are in (a holder that does not answer
    // is taken to be in a place of its own).
    let taken: HashSet<String> = futures_util::future::join_all(holders.into_iter().map(ask))
        .await
        .into_iter()
        .filter_map(|(_, stats)| stats.ok().map(|s| s.place_key))
        .collect();
    let loads: std::collections::HashMap<u64, usize> =
        candidates.iter().map(|(t, load)| (t.id, *load)).collect();
    let mut ranked = Vec::new();
    let mut unreachable = Vec::new();
    for (target, stats) in
        futures_util::future::join_all(candidates.into_iter().map(|(t, _)| ask(t))).await
    {
        match stats {
            Ok(s) if taken.contains(&s.place_key) => {}
            Ok(s) => {
                let away = !sticky.contains(&target.id);
                // An object store says nothing of its room: taken as roomy.
                let free = s.free_bytes.unwrap_or(u64::MAX);
                ranked.push((
                    (
                        away,
                        loads[&target.id],
                        u64::MAX - free,
                        s.store.manifests,
                        target.id,
                    ),
                    s.place_key,
                    target,
                ))
            }
            Err(e) => unreachable.push(format!("{} ({e})", target.id)),
        }
    }
    ranked.sort_by_key(|a| a.0);
    let mut places = HashSet::new();
    let chosen: Vec<StorageNode> = ranked
        .into_iter()
        .filter(|(_, place, _)| places.insert(place.clone()))
        .map(|(.., t)| t)
        .take(replicas as usize)
        .collect();
    if chosen.len() < replicas as usize {
        let mut why = format!(
            "{replicas} replica(s) need as many storage nodes that are enabled, up and answer, \
             each keeping its data in a place of its own (storage nodes sharing a bucket count once); {} are",
            chosen.len()
        );
        if !unreachable.is_empty() {
            why.push_str(&format!(" (not answering: {})", unreachable.join(", ")));
        }
        return Err(why);
    }
    Ok(chosen)
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
