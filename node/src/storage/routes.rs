//! The storage node's cluster-internal routes: which chunks it lacks, chunks in
//! (answered once durable) and out, manifests, GC, verify (of the whole store or
//! of one backup) and its numbers.
//!
//! Writes carry the backup manager's epoch and are refused (409) when it is
//! older than the one this node has applied: a manager that lost the role cannot
//! write or delete anything. Store work runs on the blocking pool (hashing,
//! decompressing, fsync), never on the Raft runtime's workers that serve these
//! routes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bcm_chunks::{Manifest, PackStore, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{self, Fence};
use super::Storage;
use crate::cluster::rpc_server::encode;
use crate::cluster::SharedNode;
use crate::net::problem::Problem;

type Answer = Result<Response, Problem>;

/// A route's work: the node's storage, its open store, the call, the body.
type Handler = fn(&Storage, &Arc<PackStore>, &Call, Bytes) -> Answer;

/// One call of a route, as its work (on a blocking thread) sees it.
struct Call {
    node: SharedNode,
    /// Set once nobody waits for the answer any more (the caller went, or the
    /// listener's request timeout answered 408): long work stops.
    abandoned: Arc<AtomicBool>,
}

impl Call {
    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed)
    }
}

/// Sets its flag when dropped: with the request's future, once the request is
/// answered or given up.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The routes, answering 503 on a node that keeps no store, or whose store is
/// not open (an object store that does not answer), saying why.
pub fn router(storage: Option<Arc<Storage>>) -> Router<SharedNode> {
    let on = |path: &'static str, f: Handler| {
        let storage = storage.clone();
        (
            path,
            post(
                move |State(node): State<SharedNode>, body: Bytes| async move {
                    let Some(storage) = storage else {
                        return Err(Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "this node keeps no chunk store (it does not have role storage)",
                        ));
                    };
                    let store = storage
                        .store()
                        .map_err(|why| Problem::new(StatusCode::SERVICE_UNAVAILABLE, why))?
                        .clone();
                    let abandoned = Arc::new(AtomicBool::new(false));
                    let _gone = SetOnDrop(abandoned.clone());
                    let call = Call { node, abandoned };
                    tokio::task::spawn_blocking(move || f(&storage, &store, &call, body))
                        .await
                        .map_err(|e| {
                            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                        })?
                },
            ),
        )
    };
    let routes = [
        on(wire::PATH_MISSING, missing),
        on(wire::PATH_PUT, put),
        on(wire::PATH_GET, get),
        on(wire::PATH_MANIFEST_PUT, manifest_put),
        on(wire::PATH_MANIFEST_GET, manifest_get),
        on(wire::PATH_MANIFEST_DELETE, manifest_delete),
        on(wire::PATH_MANIFEST_LIST, manifest_list),
        on(wire::PATH_GC, gc),
        on(wire::PATH_CHECK, check_backup),
        on(wire::PATH_STATS, stats),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |r, (path, route)| r.route(path, route))
}

pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    bcm_raft_store::codec::decode(body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("undecodable body: {e}")))
}

fn reply<T: Serialize>(value: &T) -> Answer {
    Ok(encode(value))
}

/// Refuses a write made under an epoch older than the one applied here (the
/// jobs' routes use it too).
pub fn check(node: &SharedNode, fence: Fence) -> Result<(), Problem> {
    let current = node
        .state
        .read(|d| d.state.backup_manager.map(|b| b.epoch))
        .unwrap_or(0);
    if fence.epoch < current {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "stale epoch {}: the backup-manager role has moved on (epoch {current})",
                fence.epoch
            ),
        ));
    }
    Ok(())
}

/// The store cannot be used as it should now (a shared place that cannot be
/// looked over): worth trying again.
fn unavailable(why: String) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, why)
}

fn store_problem(e: StoreError) -> Problem {
    let status = match &e {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Mismatch(_) | StoreError::MissingChunks(_) => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::Io(io) if io.raw_os_error() == Some(28) => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Problem::new(status, e.to_string())
}

fn missing(s: &Storage, store: &Arc<PackStore>, call: &Call, body: Bytes) -> Answer {
    let req: wire::Missing = decode(&body)?;
    check(&call.node, req.fence)?;
    let missing = s
        .with_session(store, req.backup, |session| session.missing(&req.ids))
        .map_err(unavailable)?;
    reply(&missing)
}

fn put(s: &Storage, store: &Arc<PackStore>, call: &Call, body: Bytes) -> Answer {
    let req: wire::Put = decode(&body)?;
    check(&call.node, req.fence)?;
    s.renew(store, req.backup).map_err(unavailable)?;
    let mut out = wire::PutReply::default();
    for blob in &req.blobs {
        if store.put(blob).map_err(store_problem)? {
            out.new_chunks += 1;
            out.new_bytes += blob.stored.len() as u64;
        }
    }
    store.flush().map_err(store_problem)?;
    reply(&out)
}

fn get(_: &Storage, store: &Arc<PackStore>, _: &Call, body: Bytes) -> Answer {
    let req: wire::Get = decode(&body)?;
    let blobs = store
        .read_many(&req.ids, wire::GET_REPLY_BYTES)
        .map_err(store_problem)?;
    // The blobs' bytes go out as they were read, not copied into one body.
    let pieces = wire::encode_blobs(blobs)
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let body = Body::from_stream(futures_util::stream::iter(
        pieces.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

fn manifest_put(s: &Storage, store: &Arc<PackStore>, call: &Call, body: Bytes) -> Answer {
    let req: wire::ManifestPut = decode(&body)?;
    check(&call.node, req.fence)?;
    let manifest = Manifest::decode(&req.manifest)
        .map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    store
        .put_manifest(req.backup, &manifest)
        .map_err(store_problem)?;
    s.release(store, req.backup);
    reply(&())
}

fn manifest_get(_: &Storage, store: &Arc<PackStore>, _: &Call, body: Bytes) -> Answer {
    let req: wire::ManifestGet = decode(&body)?;
    let manifest = store.manifest(req.backup).map_err(store_problem)?;
    reply(&manifest.map(|m| serde_bytes::ByteBuf::from(m.encode())))
}

fn manifest_delete(s: &Storage, store: &Arc<PackStore>, call: &Call, body: Bytes) -> Answer {
    let req: wire::ManifestDelete = decode(&body)?;
    check(&call.node, req.fence)?;
    s.release(store, req.backup);
    reply(&store.delete_manifest(req.backup).map_err(store_problem)?)
}

fn manifest_list(_: &Storage, store: &Arc<PackStore>, _: &Call, _: Bytes) -> Answer {
    reply(&store.backups().map_err(store_problem)?)
}

/// A GC stops before its next deletion once the role it was asked under has
/// moved on (a new backup manager may already be writing to a place this
/// store shares with others), or once nobody waits for its answer (the
/// listener's request timeout): a manager never has two GCs of one place run
/// at once. What is left goes at the next cleanup.
fn gc(_: &Storage, store: &Arc<PackStore>, call: &Call, body: Bytes) -> Answer {
    let fence: Fence = decode(&body)?;
    check(&call.node, fence)?;
    let current = || !call.abandoned() && check(&call.node, fence).is_ok();
    reply(&store.gc_while(&current).map_err(store_problem)?)
}

fn check_backup(_: &Storage, store: &Arc<PackStore>, _: &Call, body: Bytes) -> Answer {
    let req: wire::Check = decode(&body)?;
    reply(&store.check_backup(req.backup).map_err(store_problem)?)
}

fn stats(s: &Storage, store: &Arc<PackStore>, _: &Call, _: Bytes) -> Answer {
    let capacity = store
        .backend()
        .capacity()
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    reply(&wire::Stats {
        store: store.stats().map_err(store_problem)?,
        capacity_bytes: capacity.map(|(size, _)| size),
        free_bytes: capacity.map(|(_, free)| free),
        backend: s.backend.to_string(),
        place: s.place.clone(),
        place_key: s.place_key.clone(),
        shared: store.backend().shared(),
    })
}
