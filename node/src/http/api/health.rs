use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bcm_api::{Health, LeaderView};

use crate::http::App;
use crate::net::problem::Problem;

/// 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, description = "the process serves", body = Health)))]
pub async fn healthz() -> Response {
    (
        StatusCode::OK,
        axum::Json(Health {
            status: "ok".into(),
        }),
    )
        .into_response()
}

/// 200 when the node knows the leader and has applied up to the leader's commit at
/// last contact, and (on a storage node) its chunk store is open.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "ready to serve reads and forward writes", body = Health),
        (status = 503, description = "not ready, and why", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(node): State<App>) -> Response {
    let storage = || match node.storage.as_ref().and_then(|s| s.problem()) {
        Some(why) => Err(why),
        None => Ok(()),
    };
    match node.readiness().await.and_then(|()| storage()) {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(Health {
                status: "ready".into(),
            }),
        )
            .into_response(),
        Err(why) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}"))
            .into_response(),
    }
}

/// 200 on the leader, 503 elsewhere (for HAProxy `httpchk`).
#[utoipa::path(get, path = "/leader", tag = "health", security(()),
    responses(
        (status = 200, description = "this node leads", body = LeaderView),
        (status = 503, description = "this node does not lead", body = LeaderView),
    ))]
pub async fn leader(State(node): State<App>) -> Response {
    let m = node.raft_metrics();
    let body = LeaderView {
        leader_id: m.current_leader,
        term: m.current_term,
        node_id: node.cfg.id,
    };
    let status = if node.is_leader() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health", security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(node): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::http::metrics::render(&node),
    )
        .into_response()
}
