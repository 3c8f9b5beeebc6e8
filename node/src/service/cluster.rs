//! The cluster as a whole: leader, term, indexes, the backup manager and the
//! members; snapshots on demand.

use bcm_api::{BackupManagerView, ClusterView, SnapshotExportView};

use super::auth::Caller;
use super::OpError;
use crate::cluster::export::{self, ExportState};
use crate::cluster::{leader, Node};

/// The Raft group as this node sees it, with the leader's live view of members and
/// of the Postgres export when it answers quickly.
pub async fn view(node: &Node, export: Option<&ExportState>) -> ClusterView {
    let m = node.raft_metrics();
    let members = super::nodes::members(node).await;
    let snapshot_export = match export {
        None => None,
        Some(mine) => export::leader_status(node, mine).await.map(|s| {
            let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
            SnapshotExportView {
                lag: applied.saturating_sub(s.last_index.unwrap_or(0)),
                last_index: s.last_index,
                last_at: s.last_at_ms.map(|ms| bcm_api::time::rfc3339(ms / 1000)),
                last_error: s.last_error,
            }
        }),
    };
    let (cluster_id, bm) = node
        .state
        .read(|d| (d.state.cluster_id.clone(), d.state.backup_manager));
    let commit_index = node
        .raft
        .with_raft_state(|s| s.committed.map(|l| l.index))
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    ClusterView {
        cluster_id,
        leader_id: m.current_leader,
        term: m.current_term,
        commit_index,
        last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        snapshot_index: m.snapshot.map(|l| l.index),
        this_node_id: node.cfg.id,
        backup_manager: bm.map(|b| BackupManagerView {
            node_id: b.node_id,
            epoch: b.epoch,
            since_ms: b.since,
        }),
        members,
        snapshot_export,
    }
}

/// Makes the leader take a snapshot now; its log index.
/// This node's state digest (see [`bcm_api::StateDigest`]): the applied index
/// and the state read in one step.
pub fn digest(node: &Node) -> bcm_api::StateDigest {
    let (applied_index, encoded) = node.state.read(|d| {
        (
            d.last_applied.map(|l| l.index).unwrap_or(0),
            bcm_raft_store::codec::encode(&d.state),
        )
    });
    let digest = match encoded {
        Ok(bytes) => blake3::hash(&bytes).to_hex().to_string(),
        Err(e) => format!("unencodable: {e}"),
    };
    bcm_api::StateDigest {
        node_id: node.cfg.id,
        applied_index,
        digest,
    }
}

pub async fn snapshot(node: &Node, caller: &Caller) -> Result<u64, OpError> {
    let audit = caller.audit("cluster.snapshot", "cluster");
    audit
        .run_alone(node, async { Ok(leader::snapshot(node).await?) })
        .await
}
