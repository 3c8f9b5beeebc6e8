use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::nodes::MemberView;
use super::{consistent, json, ApiQuery, Authed, ReadParams};
use crate::problem::Problem;
use crate::runtime::SharedNode;
use crate::service;

/// The Raft group as this node sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// Set once when the cluster is formed; null while forming.
    cluster_id: Option<String>,
    leader_id: Option<u64>,
    term: u64,
    commit_index: u64,
    last_applied: u64,
    /// The last log index in this node's latest snapshot.
    snapshot_index: Option<u64>,
    /// The node that answered.
    this_node_id: u64,
    backup_manager: Option<BackupManagerView>,
    members: Vec<MemberView>,
    /// The leader's snapshot export to PostgreSQL; null when `[postgres]` is not
    /// configured (or no leader answered).
    snapshot_export: Option<SnapshotExportView>,
}

/// The leader's export to PostgreSQL.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SnapshotExportView {
    /// The log index of the newest state Postgres holds (null: none exported yet).
    last_index: Option<u64>,
    /// When the last export succeeded (RFC 3339 UTC).
    last_at: Option<String>,
    /// Why the last attempt failed; null once an export succeeds.
    last_error: Option<String>,
    /// This node's applied index minus `last_index`.
    lag: u64,
}

/// Which node holds the backup-manager role, and its fencing epoch.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BackupManagerView {
    node_id: u64,
    /// Grows every time the role moves.
    epoch: u64,
    /// Unix milliseconds.
    since_ms: u64,
}

/// The index of the snapshot taken.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SnapshotTaken {
    snapshot_index: u64,
}

/// Leader, term, commit index, the backup manager and every member. Permission
/// `cluster.read`.
#[utoipa::path(get, path = "/cluster", tag = "cluster", params(ReadParams),
    responses((status = 200, description = "the cluster", body = ClusterView)))]
pub async fn get_cluster(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> Result<Response, Problem> {
    who.require("cluster.read")?;
    consistent(&node, q.consistency.as_deref()).await?;
    let m = node.raft_metrics();
    let members = super::nodes::member_views(&node).await;
    let snapshot_export = match node.cfg.postgres {
        None => None,
        Some(_) => service::export_status(&node).await.map(|s| {
            let commit = m.last_applied.map(|l| l.index).unwrap_or(0);
            SnapshotExportView {
                lag: commit.saturating_sub(s.last_index.unwrap_or(0)),
                last_index: s.last_index,
                last_at: s.last_at_ms.map(|ms| super::auth::rfc3339(ms / 1000)),
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
    Ok(json(
        StatusCode::OK,
        &ClusterView {
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
        },
    ))
}

/// Take a snapshot on the leader now. Permission `cluster.write`.
#[utoipa::path(post, path = "/cluster/snapshot", tag = "cluster",
    responses((status = 200, description = "taken", body = SnapshotTaken)))]
pub async fn take_snapshot(
    State(node): State<SharedNode>,
    who: Authed,
) -> Result<Response, Problem> {
    who.require("cluster.write")?;
    let index = service::snapshot(&node).await?;
    Ok(json(
        StatusCode::OK,
        &SnapshotTaken {
            snapshot_index: index,
        },
    ))
}
