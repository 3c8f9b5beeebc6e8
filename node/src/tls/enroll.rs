//! Getting a node certificate: a node without one proves, once, that it holds
//! the cluster secret, and a member issues it a certificate of the cluster CA.
//!
//! The exchange runs over TLS with ALPN `bcm-enroll/1` on the cluster-internal
//! port, where no client certificate is asked for and nothing but this route is
//! served. Neither side can check the other's certificate yet, so both messages
//! carry a MAC keyed by the cluster secret: the request binds the node id, its
//! address and its certificate request (which proves its key) to a fresh nonce,
//! the answer binds the certificate and the CAs to that nonce. The secret itself
//! never crosses the wire, and a replayed request only yields a certificate for
//! a key the replayer does not hold.
//!
//! The first CA is made by one bootstrap member (the lowest `rpc_advertise` of
//! `cluster.bootstrap`) once every other bootstrap member has answered that it
//! has none; the others get their certificates from it, then the cluster forms,
//! and that member writes the CA into the replicated state (sync.rs), from where
//! any member issues.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bcm_raft_store::tls::ClusterCa;
use bcm_raft_store::{codec, NodeId};
use serde::{Deserialize, Serialize};

use super::ca::CaKey;
use super::live::{enroll_client_config, split_pem, write_private};
use crate::cluster::{now_ms, Node, SharedNode};
use crate::config::Secret;
use crate::net::problem::Problem;

pub const PATH_ENROLL: &str = "/internal/enroll";
/// The CA a bootstrap member made, until it is in the replicated state.
const LOCAL_CA_FILE: &str = "local-ca.sealed";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollRequest {
    pub id: NodeId,
    pub rpc_addr: String,
    #[serde(with = "serde_bytes")]
    pub csr: Vec<u8>,
    pub nonce: [u8; 32],
    pub mac: [u8; 32],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EnrollReply {
    Issued {
        chain_pem: String,
        anchors: Vec<String>,
        mac: [u8; 32],
    },
    /// This node has no CA to issue from (yet).
    NotReady,
    Refused(String),
}

fn mac(secret: &Secret, context: &'static str, parts: &impl Serialize) -> [u8; 32] {
    let key = blake3::derive_key(context, secret.expose().as_bytes());
    let bytes = codec::encode(parts).expect("plain data encodes");
    *blake3::keyed_hash(&key, &bytes).as_bytes()
}

fn request_mac(secret: &Secret, r: &EnrollRequest) -> [u8; 32] {
    mac(
        secret,
        "bcm 2026-12 enrollment request",
        &(r.id, &r.rpc_addr, &r.csr, r.nonce),
    )
}

fn reply_mac(secret: &Secret, nonce: &[u8; 32], chain: &str, anchors: &[String]) -> [u8; 32] {
    mac(
        secret,
        "bcm 2026-12 enrollment reply",
        &(nonce, chain, anchors),
    )
}

/// Equal in constant time (the MACs are secrets' functions).
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    blake3::Hash::from(*a) == blake3::Hash::from(*b)
}

/// The host part of an `http(s)://host:port` address.
pub fn host_of(addr: &str) -> Option<String> {
    let url = reqwest::Url::parse(addr).ok()?;
    let host = url.host_str()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
}

/// The CA this node issues from: the replicated state's, or (while the cluster
/// forms) the one it made itself.
pub fn issuing_ca(node: &Node) -> anyhow::Result<Option<(CaKey, Option<String>)>> {
    let from_state = node
        .state
        .read(|d| d.state.tls.as_ref().and_then(|t| t.issuing().cloned()));
    let ca = match from_state {
        Some(ca) => ca,
        None => match local_ca(node)? {
            Some(ca) => ca,
            None => return Ok(None),
        },
    };
    let mut secrets = vec![&node.cfg.secret];
    secrets.extend(node.cfg.previous_secret.as_ref());
    let key = CaKey::unseal_any(&ca, &secrets)?;
    Ok(Some((key, ca.cross_pem)))
}

/// The CA this node made while forming the cluster, if it made one.
pub fn local_ca(node: &Node) -> anyhow::Result<Option<ClusterCa>> {
    let path = node.cfg.data_dir.join("tls").join(LOCAL_CA_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(codec::decode(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// A certificate chain for `id` at `rpc_addr` from `ca` (with its cross
/// certificate, during a rotation).
pub fn issue(
    ca: &CaKey,
    cross: Option<&str>,
    id: NodeId,
    rpc_addr: &str,
    csr: &[u8],
) -> anyhow::Result<String> {
    let host = host_of(rpc_addr).ok_or_else(|| anyhow::anyhow!("{rpc_addr:?} has no host"))?;
    let mut chain = ca.issue_node(id, &[host], csr)?;
    if let Some(cross) = cross {
        chain.push_str(cross);
    }
    Ok(chain)
}

/// The route served on enrollment connections only.
pub fn router(node: SharedNode) -> Router {
    Router::new()
        .route(PATH_ENROLL, post(handle))
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "only enrollment is served without a node certificate",
            )
        })
        .with_state(node)
}

async fn handle(State(node): State<SharedNode>, body: Bytes) -> Response {
    let answer = match codec::decode::<EnrollRequest>(&body) {
        Ok(req) => answer(&node, req),
        Err(e) => {
            return Problem::new(StatusCode::BAD_REQUEST, format!("undecodable body: {e}"))
                .into_response()
        }
    };
    match codec::encode(&answer) {
        Ok(bytes) => bytes.into_response(),
        Err(e) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn answer(node: &Node, req: EnrollRequest) -> EnrollReply {
    if !same(&req.mac, &request_mac(&node.cfg.secret, &req)) {
        tracing::warn!(
            node_id = req.id,
            rpc = %req.rpc_addr,
            "refused an enrollment that does not prove the cluster secret"
        );
        return EnrollReply::Refused("the request does not prove the cluster secret".into());
    }
    let removed = node.state.read(|d| d.state.is_removed(req.id));
    if removed {
        return EnrollReply::Refused(format!(
            "node {} was decommissioned; a new node needs a new id",
            req.id
        ));
    }
    let Some(tls) = node.tls.as_ref() else {
        return EnrollReply::Refused("this node runs without cluster TLS".into());
    };
    let (ca, cross) = match issuing_ca(node) {
        Ok(Some(ca)) => ca,
        Ok(None) => return EnrollReply::NotReady,
        Err(e) => {
            tracing::error!("cannot issue a node certificate: {e:#}");
            return EnrollReply::Refused(format!("cannot issue: {e}"));
        }
    };
    let chain = match issue(&ca, cross.as_deref(), req.id, &req.rpc_addr, &req.csr) {
        Ok(c) => c,
        Err(e) => return EnrollReply::Refused(format!("{e:#}")),
    };
    let anchors = tls.anchors();
    tracing::info!(node_id = req.id, rpc = %req.rpc_addr, "issued a node certificate");
    EnrollReply::Issued {
        mac: reply_mac(&node.cfg.secret, &req.nonce, &chain, &anchors),
        chain_pem: chain,
        anchors,
    }
}

/// One attempt to get this node a certificate. Ok(true) once it has one.
pub async fn obtain(node: &SharedNode, pristine: bool) -> anyhow::Result<bool> {
    let Some(tls) = node.tls.clone() else {
        return Ok(true);
    };
    if tls.certified() {
        return Ok(true);
    }
    let cfg = &node.cfg;
    let me = &cfg.rpc_advertise;
    let mut asked: Vec<&String> = cfg.join.iter().chain(&cfg.bootstrap).collect();
    asked.dedup();
    let mut bootstrap_unanswered = false;
    let mut last_error = None;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(enroll_client_config())
        .connect_timeout(Duration::from_millis(500))
        .build()?;
    let csr = tls.csr()?;
    for addr in asked.into_iter().filter(|a| *a != me) {
        let mut req = EnrollRequest {
            id: cfg.id,
            rpc_addr: me.clone(),
            csr: csr.clone(),
            nonce: rand::random(),
            mac: [0; 32],
        };
        req.mac = request_mac(&cfg.secret, &req);
        let reply = async {
            let resp = client
                .post(format!("{addr}{PATH_ENROLL}"))
                .body(codec::encode(&req)?)
                .timeout(Duration::from_secs(5))
                .send()
                .await?
                .error_for_status()?;
            Ok::<_, anyhow::Error>(codec::decode::<EnrollReply>(&resp.bytes().await?)?)
        }
        .await;
        match reply {
            Ok(EnrollReply::Issued {
                chain_pem,
                anchors,
                mac,
            }) => {
                if !same(
                    &mac,
                    &reply_mac(&cfg.secret, &req.nonce, &chain_pem, &anchors),
                ) {
                    last_error = Some(format!(
                        "{addr} answered with a certificate not sealed by the cluster secret; ignored"
                    ));
                    continue;
                }
                tls.install(&chain_pem, anchors)?;
                tracing::info!(from = %addr, "got this node's certificate of the cluster CA");
                return Ok(true);
            }
            Ok(EnrollReply::NotReady) => {}
            Ok(EnrollReply::Refused(why)) => {
                anyhow::bail!("{addr} refused to issue this node a certificate: {why}")
            }
            Err(e) => {
                bootstrap_unanswered |= cfg.bootstrap.contains(addr);
                last_error = Some(format!("{addr}: {e:#}"));
            }
        }
    }
    let creator = pristine
        && cfg.bootstrap.contains(me)
        && cfg.bootstrap.iter().min() == Some(me)
        && !bootstrap_unanswered;
    if creator {
        make_first_ca(node)?;
        return Ok(true);
    }
    match last_error {
        Some(e) => anyhow::bail!("no certificate yet: {e}"),
        None => anyhow::bail!("no certificate yet: no member has a cluster CA yet"),
    }
}

/// The first bootstrap member makes the cluster CA and certifies itself.
fn make_first_ca(node: &Node) -> anyhow::Result<()> {
    let tls = node.tls.as_ref().expect("called with TLS");
    let ca = CaKey::generate()?;
    let sealed = ca.sealed(&node.cfg.secret, None, now_ms());
    write_private(
        &node.cfg.data_dir.join("tls").join(LOCAL_CA_FILE),
        &codec::encode(&sealed)?,
    )?;
    let chain = issue(&ca, None, node.cfg.id, &node.cfg.rpc_advertise, &tls.csr()?)?;
    tls.install(&chain, split_pem(&ca.cert_pem))?;
    tracing::info!("made the cluster CA ({})", super::ca::ca_name(&ca.cert_pem));
    Ok(())
}
