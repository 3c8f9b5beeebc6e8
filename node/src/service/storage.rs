//! The storage nodes: each one's room and use, asked of it now.

use std::time::Duration;

use bcm_api::StorageView;
use bcm_raft_store::{NodeStatus, Role};

use crate::cluster::Node;
use crate::storage::wire;

/// How long a storage node has to say its numbers.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Every registered node with role `storage` (removed ones aside), asked in
/// parallel; one that does not answer is listed unreachable, with why.
pub async fn list(node: &Node) -> Vec<StorageView> {
    let targets: Vec<(u64, String, String)> = node.state.read(|d| {
        d.state
            .nodes
            .values()
            .filter(|n| n.has_role(Role::Storage) && n.status != NodeStatus::Removed)
            .map(|n| (n.id, n.name.clone(), n.rpc_addr.clone()))
            .collect()
    });
    let asks = targets.into_iter().map(|(node_id, name, rpc)| async move {
        let answer = node
            .peers
            .call::<_, wire::Stats>(&rpc, wire::PATH_STATS, &(), ASK_TIMEOUT)
            .await;
        let mut view = StorageView {
            node_id,
            name,
            reachable: answer.is_ok(),
            capacity_bytes: None,
            free_bytes: None,
            used_bytes: None,
            chunks: None,
            backups: None,
            backend: None,
            place: None,
            error: None,
        };
        match answer {
            Ok(s) => {
                view.capacity_bytes = s.capacity_bytes;
                view.free_bytes = s.free_bytes;
                view.backend = Some(s.backend);
                view.place = Some(s.place);
                view.used_bytes = Some(s.store.stored_bytes);
                view.chunks = Some(s.store.chunks);
                view.backups = Some(s.store.manifests);
            }
            Err(e) => view.error = Some(e.to_string()),
        }
        view
    });
    futures_util::future::join_all(asks).await
}
