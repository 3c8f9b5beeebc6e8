//! The cluster-internal HTTP server: Raft RPCs and control messages, authenticated
//! with the shared cluster secret. Bodies are postcard; errors are problem+json.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, Request, State};
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
use tracing::Instrument;

use crate::cluster::admission;
use crate::cluster::leader;
use crate::cluster::peer_ops;
use crate::cluster::rpc::{self, JoinRequest, LeaderOp, LeaderReply, OpResult};
use crate::cluster::{Node, SharedNode, REQUEST_DEADLINE};
use crate::net::problem::Problem;
use crate::tls::PeerNode;

/// The cluster-internal routes, with `extra` ones of other features (they share
/// the secret check and the body limit).
pub fn router(node: SharedNode, extra: Router<SharedNode>) -> Router {
    Router::new()
        .merge(extra)
        .route(rpc::PATH_APPEND, post(append))
        .route(rpc::PATH_VOTE, post(vote))
        .route(rpc::PATH_SNAPSHOT, post(snapshot))
        .route(rpc::PATH_HELLO, post(hello))
        .route(rpc::PATH_LEADER, post(leader))
        .route(rpc::PATH_JOIN, post(join))
        .route(rpc::PATH_PRE_VOTE, post(pre_vote))
        .route(super::fence::PATH_MEMBERS, post(super::fence::members))
        .fallback(|| async {
            Problem::new(StatusCode::NOT_FOUND, "no such cluster-internal route")
        })
        .layer(DefaultBodyLimit::max(
            bcm_raft_store::limits::RPC_BODY_BYTES,
        ))
        .layer(middleware::from_fn_with_state(node.clone(), require_secret))
        .with_state(node)
}

/// Who may call: with cluster TLS, a node whose certificate the handshake
/// checked (and which has not been decommissioned since the connection opened);
/// in plaintext mode, a caller showing the cluster secret.
async fn require_secret(State(node): State<SharedNode>, req: Request, next: Next) -> Response {
    if let Some(tls) = &node.tls {
        let Some(PeerNode(peer)) = req.extensions().get::<PeerNode>().copied() else {
            return Problem::new(StatusCode::UNAUTHORIZED, "a node certificate is required")
                .into_response();
        };
        if tls.is_revoked(peer) {
            return Problem::new(
                StatusCode::FORBIDDEN,
                format!("node {peer} was decommissioned: its certificate is refused"),
            )
            .into_response();
        }
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !shows_the_secret(&node, given.as_bytes()) {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong cluster secret: every member must share cluster.secret",
        )
        .into_response();
    }
    next.run(req).await
}

/// Is `given` this cluster's secret? (Compared in constant time.)
pub(crate) fn shows_the_secret(node: &Node, given: &[u8]) -> bool {
    let expected = node.cfg.secret.expose().as_bytes();
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// A handler's answer: postcard when it worked, problem+json when it did not.
type Answer = Result<Response, Problem>;

/// The request in a postcard body (400 when it does not decode).
pub(super) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    codec::decode(body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("undecodable body: {e}")))
}

/// A Raft request: only while this node answers Raft RPCs (see `Node::raft_open`).
pub(crate) fn raft_request<T: DeserializeOwned>(node: &Node, body: &[u8]) -> Result<T, Problem> {
    if !node.raft_open() {
        return Err(closed());
    }
    decode(body)
}

/// A postcard answer (problem+json when it does not encode).
pub fn encode<T: Serialize>(value: &T) -> Response {
    match codec::encode(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn closed() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "this node is not a member yet (the cluster is forming, or it lost its data and waits to be re-admitted)",
    )
}

fn raft_failed(e: impl std::fmt::Display) -> Problem {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, format!("raft: {e}"))
}

/// With cluster TLS a node speaks only for itself: the id a message claims
/// (a leader's, a candidate's, a joining node's) must be its certificate's.
fn speaks_for_itself(
    node: &Node,
    peer: Option<Extension<PeerNode>>,
    claimed: Option<u64>,
) -> Result<(), Problem> {
    if node.tls.is_none() {
        return Ok(());
    }
    let peer = peer.map(|Extension(PeerNode(p))| p);
    if peer.is_some() && peer == claimed {
        return Ok(());
    }
    Err(Problem::new(
        StatusCode::FORBIDDEN,
        format!(
            "the message speaks for node {} but comes from node {}: a node speaks only for itself",
            claimed.map_or("?".into(), |c| c.to_string()),
            peer.map_or("?".into(), |p| p.to_string()),
        ),
    ))
}

async fn append(
    State(node): State<SharedNode>,
    peer: Option<Extension<PeerNode>>,
    body: Bytes,
) -> Answer {
    let req: AppendEntriesRequest<TypeConfig> = raft_request(&node, &body)?;
    let resp = append_entries(&node, peer.map(|Extension(p)| p), req).await?;
    Ok(encode(&resp))
}

/// An AppendEntries from `peer`, over HTTP or the append stream.
pub(crate) async fn append_entries(
    node: &Node,
    peer: Option<PeerNode>,
    req: AppendEntriesRequest<TypeConfig>,
) -> Result<openraft::raft::AppendEntriesResponse<bcm_raft_store::NodeId>, Problem> {
    speaks_for_itself(node, peer.map(Extension), req.vote.leader_id().voted_for())?;
    let leader_commit = req.leader_commit.map(|l| l.index);
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
    let resp = node.raft.append_entries(req).await.map_err(raft_failed)?;
    use openraft::raft::AppendEntriesResponse as R;
    if !matches!(resp, R::HigherVote(_)) {
        node.heard_from_leader();
    }
    if matches!(resp, R::Success | R::PartialSuccess(_)) {
        node.synced_with_leader(leader_commit);
    }
    Ok(resp)
}

async fn vote(
    State(node): State<SharedNode>,
    peer: Option<Extension<PeerNode>>,
    body: Bytes,
) -> Answer {
    let req: VoteRequest<u64> = raft_request(&node, &body)?;
    speaks_for_itself(&node, peer, req.vote.leader_id().voted_for())?;
    let resp = node.raft.vote(req).await.map_err(raft_failed)?;
    if resp.vote_granted {
        node.heard_from_leader();
    }
    Ok(encode(&resp))
}

async fn snapshot(
    State(node): State<SharedNode>,
    peer: Option<Extension<PeerNode>>,
    body: Bytes,
) -> Answer {
    let req: InstallSnapshotRequest<TypeConfig> = raft_request(&node, &body)?;
    speaks_for_itself(&node, peer, req.vote.leader_id().voted_for())?;
    // Only the last chunk installs it: until then this node has nothing new.
    let installed = req.done.then(|| req.meta.last_log_id.map(|l| l.index));
    let resp = node.raft.install_snapshot(req).await.map_err(raft_failed)?;
    node.heard_from_leader();
    if let Some(last) = installed {
        node.synced_with_leader(last);
    }
    Ok(encode(&resp))
}

async fn hello(State(node): State<SharedNode>) -> Response {
    encode(&node.hello())
}

async fn leader(
    State(node): State<SharedNode>,
    peer: Option<Extension<PeerNode>>,
    body: Bytes,
) -> Answer {
    let op: LeaderOp = decode(&body)?;
    let reply = forwarded(&node, peer.map(|Extension(p)| p), op).await?;
    Ok(encode(&reply))
}

/// Work a member forwarded to this node as the leader (over HTTP or the forward
/// stream): refused when it is not what a member may forward, else run here.
pub(crate) async fn forwarded(
    node: &Node,
    peer: Option<PeerNode>,
    op: LeaderOp,
) -> Result<LeaderReply<OpResult>, Problem> {
    let writes: &[bcm_raft_store::Command] = match &op {
        LeaderOp::Write(c) => std::slice::from_ref(c),
        LeaderOp::WriteBatch(cs) => cs,
        _ => &[],
    };
    let removed = |id| node.state.read(|d| d.state.is_removed(id));
    for command in writes {
        // Only what members need to forward (peer_ops.rs) ...
        if let Some(why) = peer_ops::refusal(command, removed) {
            return Err(Problem::new(StatusCode::FORBIDDEN, why));
        }
        // ... and a node registers itself only.
        if let bcm_raft_store::Command::RegisterNode { info, .. } = command {
            speaks_for_itself(node, peer.map(Extension), Some(info.id))?;
        }
    }
    // Forwarded work runs in a span naming it, as a local request's does.
    let span = tracing::debug_span!("forwarded", op = op.kind());
    Ok(
        leader::execute_locally(node, op, Instant::now() + REQUEST_DEADLINE)
            .instrument(span)
            .await,
    )
}

async fn join(
    State(node): State<SharedNode>,
    peer: Option<Extension<PeerNode>>,
    body: Bytes,
) -> Answer {
    let req: JoinRequest = decode(&body)?;
    speaks_for_itself(&node, peer, Some(req.info.id))?;
    Ok(encode(&admission::handle_join(&node, req).await))
}

async fn pre_vote(
    State(node): State<SharedNode>,
    peer: Option<Extension<PeerNode>>,
    body: Bytes,
) -> Answer {
    let req: rpc::PreVoteRequest = raft_request(&node, &body)?;
    speaks_for_itself(&node, peer, Some(req.candidate))?;
    Ok(encode(&node.pre_vote(&req).await))
}
