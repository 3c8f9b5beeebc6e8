//! The backup manager's cleanup: on every storage node that is up, the
//! manifests of backups the catalog does not keep there go (deleted, failed, or
//! an attempt's leftover on a node it did not end on), and each place that lost
//! any (a node's disk, or a bucket storage nodes share) then has its garbage
//! collected by one of its nodes (the lowest id that answers): two GCs of one
//! bucket at once could each take the other's copy of a chunk for the dead one.
//!
//! A shared place is collected only while no backup writes to it: a storage
//! node keeps the chunks its own backups were told exist (its sessions' claims),
//! but knows nothing of what the others sharing the bucket were told. Here the
//! catalog's running backups are the first guard; the store's own (the marks
//! of backups being written through other nodes, `Backend::foreign_claims`)
//! the second. The manager's loop dispatches nothing while this runs, and a GC
//! stops by itself once the role moves on (a new manager may start backups at
//! once) or its request is given up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bcm_raft_store::{JobStatus, NodeStatus, Role};

use crate::cluster::Node;
use crate::storage::client::StorageNode;
use crate::storage::wire::{self, Fence};

const ASK: Duration = Duration::from_secs(5);

/// One cleanup (see the module's doc). `owed` carries the places whose GC had
/// to wait (a backup was writing there, or it failed) to the next one.
pub async fn run(node: &Node, epoch: u64, owed: &mut BTreeSet<String>) {
    let fence = Fence { epoch };
    let targets: Vec<StorageNode> = node.state.read(|d| {
        d.state
            .nodes
            .values()
            .filter(|n| n.has_role(Role::Storage) && n.status == NodeStatus::Up)
            .map(|n| StorageNode {
                id: n.id,
                rpc: n.rpc_addr.clone(),
            })
            .collect()
    });
    // Each answering node's place, and the node of each place that collects it
    // (the first in id order), with whether the place is shared.
    let mut place_of: HashMap<u64, String> = HashMap::new();
    let mut collector: BTreeMap<String, (StorageNode, bool)> = BTreeMap::new();
    for target in targets {
        let stats = node
            .peers
            .call::<_, wire::Stats>(&target.rpc, wire::PATH_STATS, &(), ASK)
            .await;
        let Ok(stats) = stats else {
            continue;
        };
        let removed = remove_stale(node, &target, fence).await;
        if removed > 0 {
            owed.insert(stats.place_key.clone());
        }
        place_of.insert(target.id, stats.place_key.clone());
        collector
            .entry(stats.place_key)
            .or_insert((target, stats.shared));
    }
    for (place, (target, shared)) in collector {
        if !owed.contains(&place) {
            continue;
        }
        if shared {
            if let Some(why) = busy(node, &place, &place_of) {
                tracing::debug!(%place, "garbage collection waits: {why}");
                continue;
            }
        }
        match target.gc(&node.peers, fence).await {
            Ok(r) => {
                tracing::info!(
                    storage_node = target.id,
                    %place,
                    chunks = r.chunks_deleted,
                    freed = r.bytes_freed,
                    "removed deleted backups' data"
                );
                match r.stopped {
                    Some(why) => {
                        tracing::info!(%place, "garbage collection stopped: {why}; it goes on at the next cleanup")
                    }
                    None => {
                        owed.remove(&place);
                    }
                }
            }
            Err(e) => tracing::warn!("garbage collection: {e}"),
        }
    }
}

/// Deletes from `target` the manifests no backup in the catalog keeps there;
/// how many went.
async fn remove_stale(node: &Node, target: &StorageNode, fence: Fence) -> usize {
    let held = match target.backups(&node.peers).await {
        Ok(held) => held,
        Err(e) => {
            tracing::debug!("cleanup skips {e}");
            return 0;
        }
    };
    let stale: Vec<u64> = node.state.read(|d| {
        let s = &d.state;
        held.into_iter()
            .filter(|id| *id < s.next_backup_id)
            .filter(|id| match s.backups.get(id) {
                None => true,
                Some(b) => match b.status {
                    JobStatus::Pending | JobStatus::Running => false,
                    JobStatus::Succeeded => !b.storage_nodes.contains(&target.id),
                    JobStatus::Failed | JobStatus::Cancelled => true,
                },
            })
            .collect()
    });
    let mut removed = 0;
    for id in &stale {
        match target.delete_manifest(&node.peers, fence, *id).await {
            Ok(_) => removed += 1,
            Err(e) => tracing::debug!(backup = id, "manifest not removed: {e}"),
        }
    }
    removed
}

/// Why shared `place` must not be collected now, if it must not: a running
/// backup writes to a storage node in it (or to one whose place is not known).
/// (A node's own disk is never busy: its store keeps what its backups use.)
fn busy(node: &Node, place: &str, place_of: &HashMap<u64, String>) -> Option<String> {
    node.state.read(|d| {
        d.state
            .backups
            .values()
            .filter(|b| b.status == JobStatus::Running)
            .find_map(|b| {
                b.storage_nodes.iter().find_map(|n| match place_of.get(n) {
                    Some(p) if p != place => None,
                    Some(_) => Some(format!("backup {} writes there (node {n})", b.id)),
                    None => Some(format!(
                        "backup {} writes to node {n}, whose place is not known",
                        b.id
                    )),
                })
            })
    })
}
