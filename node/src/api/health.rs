use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::problem::Problem;
use crate::runtime::SharedNode;
use crate::service;

pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

pub async fn readyz(State(node): State<SharedNode>) -> Response {
    match service::is_ready(&node).await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response(),
        Err(why) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}"))
            .into_response(),
    }
}

/// 200 on the leader, 503 elsewhere (HAProxy `httpchk`).
pub async fn leader(State(node): State<SharedNode>) -> Response {
    let m = node.raft_metrics();
    let body =
        json!({"leader_id": m.current_leader, "term": m.current_term, "node_id": node.cfg.id});
    let status = if node.is_leader() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

pub async fn metrics(State(node): State<SharedNode>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(&node),
    )
        .into_response()
}
