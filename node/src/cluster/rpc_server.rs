//! The cluster-internal HTTP server: Raft RPCs and control messages, authenticated
//! with the shared cluster secret. Bodies are postcard; errors are problem+json.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bcm_raft_store::{codec, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::membership;
use crate::problem::Problem;
use crate::rpc::{self, JoinRequest, LeaderOp};
use crate::runtime::{SharedNode, REQUEST_DEADLINE};
use crate::service;

pub fn router(node: SharedNode) -> Router {
    Router::new()
        .route(rpc::PATH_APPEND, post(append))
        .route(rpc::PATH_VOTE, post(vote))
        .route(rpc::PATH_SNAPSHOT, post(snapshot))
        .route(rpc::PATH_HELLO, post(hello))
        .route(rpc::PATH_LEADER, post(leader))
        .route(rpc::PATH_JOIN, post(join))
        .route(rpc::PATH_PRE_VOTE, post(pre_vote))
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "no such cluster-internal route")
        })
        .layer(DefaultBodyLimit::max(
            bcm_raft_store::limits::RPC_BODY_BYTES,
        ))
        .layer(middleware::from_fn_with_state(node.clone(), require_secret))
        .with_state(node)
}

async fn require_secret(State(node): State<SharedNode>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = node.cfg.secret.expose().as_bytes();
    if given.len() != expected.len() || !bool::from(given.as_bytes().ct_eq(expected)) {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong cluster secret: every member must share cluster.secret",
        )
        .into_response();
    }
    next.run(req).await
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    codec::decode(body).map_err(|e| {
        Box::new(
            Problem::new(StatusCode::BAD_REQUEST, format!("undecodable body: {e}")).into_response(),
        )
    })
}

fn encode<T: Serialize>(value: &T) -> Response {
    match codec::encode(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn closed() -> Response {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "this node is not a member yet (the cluster is forming, or it lost its data and waits to be re-admitted)",
    )
    .into_response()
}

fn raft_failed(e: impl std::fmt::Display) -> Response {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("raft: {e}")).into_response()
}

async fn append(State(node): State<SharedNode>, body: Bytes) -> Response {
    if !node.raft_open() {
        return closed();
    }
    let req: AppendEntriesRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    // The leader this node follows is alive: say so on arrival, not only once the
    // entries are on disk. Under load an append can take longer than an election
    // timeout; the leader sending it is not gone for that.
    let known_leader = {
        let m = node.raft.metrics();
        let m = m.borrow();
        req.vote.is_committed() && req.vote == m.vote
    };
    if known_leader {
        node.heard_from_leader();
    }
    match node.raft.append_entries(req).await {
        Ok(resp) => {
            use openraft::raft::AppendEntriesResponse as R;
            if !matches!(resp, R::HigherVote(_)) {
                node.heard_from_leader();
            }
            if matches!(resp, R::Success | R::PartialSuccess(_)) {
                node.synced_with_leader();
            }
            encode(&resp)
        }
        Err(e) => raft_failed(e),
    }
}

async fn vote(State(node): State<SharedNode>, body: Bytes) -> Response {
    if !node.raft_open() {
        return closed();
    }
    let req: VoteRequest<u64> = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match node.raft.vote(req).await {
        Ok(resp) => {
            if resp.vote_granted {
                node.heard_from_leader();
            }
            encode(&resp)
        }
        Err(e) => raft_failed(e),
    }
}

async fn snapshot(State(node): State<SharedNode>, body: Bytes) -> Response {
    if !node.raft_open() {
        return closed();
    }
    let req: InstallSnapshotRequest<TypeConfig> = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    match node.raft.install_snapshot(req).await {
        Ok(resp) => {
            node.heard_from_leader();
            node.synced_with_leader();
            encode(&resp)
        }
        Err(e) => raft_failed(e),
    }
}

async fn hello(State(node): State<SharedNode>) -> Response {
    encode(&node.hello())
}

async fn leader(State(node): State<SharedNode>, body: Bytes) -> Response {
    let op: LeaderOp = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    encode(&service::execute_locally(&node, op, Instant::now() + REQUEST_DEADLINE).await)
}

async fn join(State(node): State<SharedNode>, body: Bytes) -> Response {
    let req: JoinRequest = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    encode(&membership::handle_join(&node, req).await)
}

async fn pre_vote(State(node): State<SharedNode>, body: Bytes) -> Response {
    if !node.raft_open() {
        return closed();
    }
    let req: rpc::PreVoteRequest = match decode(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    encode(&node.pre_vote(&req).await)
}
