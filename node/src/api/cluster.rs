use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{consistent, json, ApiQuery, Authed, ReadParams};
use crate::problem::Problem;
use crate::runtime::SharedNode;
use crate::service;

pub async fn get_cluster(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(q): ApiQuery<ReadParams>,
) -> Result<Response, Problem> {
    who.require("cluster.read")?;
    consistent(&node, q.consistency.as_deref()).await?;
    let m = node.raft_metrics();
    let members = super::nodes::member_views(&node).await;
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
        &json!({
            "cluster_id": cluster_id,
            "leader_id": m.current_leader,
            "term": m.current_term,
            "commit_index": commit_index,
            "last_applied": m.last_applied.map(|l| l.index).unwrap_or(0),
            "snapshot_index": m.snapshot.map(|l| l.index),
            "this_node_id": node.cfg.id,
            "backup_manager": bm.map(|b| json!({"node_id": b.node_id, "epoch": b.epoch, "since_ms": b.since})),
            "members": members,
        }),
    ))
}

pub async fn take_snapshot(
    State(node): State<SharedNode>,
    who: Authed,
) -> Result<Response, Problem> {
    who.require("cluster.write")?;
    let index = service::snapshot(&node).await?;
    Ok(json(StatusCode::OK, &json!({"snapshot_index": index})))
}
