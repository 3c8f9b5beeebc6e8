//! The cluster-internal protocol: Raft RPCs and a few control messages between nodes,
//! carried over HTTP with postcard bodies and the shared cluster secret.
//!
//! This module holds the wire types and the client side (`Peers`; openraft's
//! network over them in `network.rs`). The server side is in `rpc_server.rs`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_raft_store::codec;
use bcm_raft_store::{AppendBudget, Command, NodeId, NodeInfo, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cluster::append_stream::AppendStream;
use crate::config::Secret;
use crate::tls::NodeTls;

mod network;

pub const PATH_APPEND: &str = "/raft/append";
pub const PATH_VOTE: &str = "/raft/vote";
pub const PATH_SNAPSHOT: &str = "/raft/snapshot";
pub const PATH_HELLO: &str = "/internal/hello";
pub const PATH_LEADER: &str = "/internal/leader";
pub const PATH_JOIN: &str = "/internal/join";
pub const PATH_PRE_VOTE: &str = "/internal/pre-vote";

/// Would the receiver vote for this candidate now? Asked before a real election so
/// that a node that is behind, or cut off, does not disrupt the cluster (Raft's
/// PreVote, section 9.6 of Ongaro's thesis).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    /// (term, index) of the candidate's last log entry.
    pub last_log: Option<(u64, u64)>,
}

/// What a node says about itself to a peer that asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub info: NodeInfo,
    /// Has this node's Raft state been initialized (is it part of a formed cluster)?
    pub initialized: bool,
    pub cluster_id: Option<String>,
    pub leader_id: Option<NodeId>,
    pub leader_rpc: Option<String>,
    /// This node's certificate, with cluster TLS.
    pub cert: Option<bcm_api::NodeCertView>,
}

/// A node asks the leader to make it a member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub info: NodeInfo,
    /// The node started with an empty data directory.
    pub fresh: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JoinReply {
    /// The node is (now) a member or on its way: answer Raft RPCs.
    Proceed,
    /// The node has Raft data, but the membership of the leader (`leader`, in
    /// `term`) has no such member: its data was superseded (`bcm recover`), and
    /// it must take no part in Raft (fence.rs).
    Superseded { leader: NodeId, term: u64 },
}

/// The leader's live view of one member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberHealth {
    pub id: NodeId,
    pub last_contact_ms: Option<u64>,
    pub matched_index: Option<u64>,
}

/// The answer to a control message that only the leader can serve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderReply<T> {
    Ok(T),
    /// Not the leader; here is who is, when known.
    NotLeader {
        leader_id: Option<NodeId>,
        leader_rpc: Option<String>,
    },
    /// The request was refused for a reason the caller should show.
    Refused(crate::cluster::error::ClusterError),
    /// The leader could not finish in time (no quorum, shutting down, ...).
    Unavailable(String),
}

/// Work only the leader can do; followers forward it over `PATH_LEADER`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderOp {
    Write(Command),
    /// Confirm leadership with a quorum and return the index a linearizable read
    /// must wait for.
    ReadIndex,
    Decommission(NodeId),
    Snapshot,
    Health,
    /// Several writes at once (see forward.rs); answered with `OpResult::Batch`,
    /// one answer per write, in order.
    WriteBatch(Vec<Command>),
    /// The cluster's login limiter (logins.rs); answered with `OpResult::Login`.
    Login(crate::cluster::logins::LoginOp),
}

impl LeaderOp {
    /// Its name, for log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            LeaderOp::Write(_) => "write",
            LeaderOp::ReadIndex => "read-index",
            LeaderOp::Decommission(_) => "decommission",
            LeaderOp::Snapshot => "snapshot",
            LeaderOp::Health => "health",
            LeaderOp::WriteBatch(_) => "write-batch",
            LeaderOp::Login(_) => "login",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum OpResult {
    /// The command's result and the log index it was committed at.
    Written(Response, u64),
    ReadIndex(u64),
    Done,
    Snapshot(u64),
    Health(Vec<MemberHealth>),
    Batch(#[serde(deserialize_with = "codec::nested")] Vec<LeaderReply<OpResult>>),
    Login(crate::cluster::logins::LoginAnswer),
}

/// A failure to talk to a peer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// No connection could be made: nothing was delivered.
    #[error("{addr} is unreachable: {message}")]
    Unreachable { addr: String, message: String },
    /// The connection failed once the request was on its way (the peer died
    /// or reset it): the peer may or may not have acted on it.
    #[error("the connection to {addr} failed while the request was under way ({message}); it may or may not have been acted on")]
    Lost { addr: String, message: String },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} answered HTTP {status}: {body}")]
    Status {
        addr: String,
        status: u16,
        body: String,
    },
    #[error("{addr} sent a body that does not decode: {message}")]
    Decode { addr: String, message: String },
}

/// Last successful contact with each peer, as seen by this node's outgoing RPCs.
/// The leader sends heartbeats to every member, so on the leader this is a liveness
/// signal for the whole cluster.
#[derive(Clone, Default)]
pub struct Contacts {
    inner: Arc<Mutex<HashMap<NodeId, Instant>>>,
}

impl Contacts {
    pub fn touch(&self, id: NodeId) {
        self.inner
            .lock()
            .expect("contacts lock")
            .insert(id, Instant::now());
    }

    pub fn last(&self, id: NodeId) -> Option<Instant> {
        self.inner.lock().expect("contacts lock").get(&id).copied()
    }
}

fn client(idle: Duration, source: Option<IpAddr>, tls: Option<&Arc<NodeTls>>) -> reqwest::Client {
    let mut b = reqwest::Client::builder();
    if let Some(tls) = tls {
        b = b.use_preconfigured_tls(tls.client_config());
    }
    b.local_address(source)
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(32)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("building the HTTP client")
}

/// The HTTP client for node-to-node calls: one connection pool, shared by its clones.
#[derive(Clone)]
pub struct Peers {
    client: reqwest::Client,
    idle: Duration,
    /// The address calls leave from: the internal listener's, when it listens
    /// on one address (so that a peer, or a firewall rule, sees a node's calls
    /// come from where it listens).
    pub(super) source: Option<IpAddr>,
    /// `Bearer <cluster secret>`, built once; not sent with mutual TLS, where
    /// the node certificate is the credential.
    auth: Option<reqwest::header::HeaderValue>,
    tls: Option<Arc<NodeTls>>,
    /// The append stream's TLS client config (ALPN `bcm-append/1`), with cluster TLS.
    pub(super) stream_tls: Option<Arc<rustls::ClientConfig>>,
    /// The forward stream's (ALPN `bcm-forward/1`).
    pub(super) forward_tls: Option<Arc<rustls::ClientConfig>>,
    /// The cluster secret: a plaintext append stream shows it once, on opening.
    pub(super) secret: Secret,
    /// Open append streams not in use, by peer address. openraft makes a new
    /// network client for each leadership check (a linearizable read's round),
    /// so streams outlive the client that opened them.
    streams: Arc<Mutex<HashMap<String, Vec<AppendStream>>>>,
    /// Peers whose AppendEntries go over HTTP until then, by address: a new
    /// stream failed where HTTP worked (a peer of an older version).
    http_until: Arc<crate::cluster::framed::HttpUntil>,
    /// Parsed URLs by path and peer address: parsing one (with its IDNA pass) cost
    /// more than the rest of a small call.
    urls: Arc<Mutex<HashMap<&'static str, HashMap<String, reqwest::Url>>>>,
    pub contacts: Contacts,
    /// The log reader's cap on one AppendEntries (see `AppendBudget`): shrunk
    /// here when a call runs out of time, grown when calls finish in time.
    append_budget: AppendBudget,
    /// When set, Raft messages (votes, entries, snapshots) go out only while it
    /// is true: a node that takes no part in Raft yet sends none either.
    raft_gate: Option<Arc<AtomicBool>>,
}

impl Peers {
    /// `idle` is how long a pooled connection may sit unused: shorter than the
    /// peers' own idle limit (`http.header_timeout_ms`), so that this side never
    /// reuses a connection the other is closing.
    pub fn new(secret: Secret, idle: Duration, listen: IpAddr, tls: Option<Arc<NodeTls>>) -> Peers {
        let source = (!listen.is_unspecified()).then_some(listen);
        let auth = tls.is_none().then(|| {
            let mut auth =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
                    .expect("config validation keeps the cluster secret printable");
            auth.set_sensitive(true);
            auth
        });
        Peers {
            client: client(idle, source, tls.as_ref()),
            idle,
            source,
            auth,
            stream_tls: tls
                .as_ref()
                .map(|t| Arc::new(t.stream_client_config(crate::tls::ALPN_APPEND))),
            forward_tls: tls
                .as_ref()
                .map(|t| Arc::new(t.stream_client_config(crate::tls::ALPN_FORWARD))),
            secret,
            streams: Arc::default(),
            http_until: Arc::default(),
            tls,
            urls: Arc::default(),
            contacts: Contacts::default(),
            append_budget: AppendBudget::default(),
            raft_gate: None,
        }
    }

    /// The same peers, adjusting `budget` (the Raft log's) as AppendEntries
    /// calls run out of time or finish in time.
    pub fn with_append_budget(self, budget: AppendBudget) -> Peers {
        Peers {
            append_budget: budget,
            ..self
        }
    }

    /// The same peers, sending Raft messages only while `open` is true (see
    /// `Node::raft_open`).
    pub fn raft_gated_by(self, open: Arc<AtomicBool>) -> Peers {
        Peers {
            raft_gate: Some(open),
            ..self
        }
    }

    /// Whether Raft messages may go out (see [`Peers::raft_gated_by`]).
    pub(super) fn raft_may_send(&self) -> bool {
        self.raft_gate
            .as_ref()
            .is_none_or(|open| open.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// The same peers over a connection pool of its own. A pooled connection is
    /// driven by the runtime that opened it: the Raft network uses its own pool so
    /// that its connections never depend on the runtime serving clients.
    pub fn with_own_pool(&self) -> Peers {
        Peers {
            client: client(self.idle, self.source, self.tls.as_ref()),
            ..self.clone()
        }
    }

    /// An idle append stream to `addr`, if one is open.
    fn take_stream(&self, addr: &str) -> Option<AppendStream> {
        self.streams
            .lock()
            .expect("streams lock")
            .get_mut(addr)
            .and_then(Vec::pop)
    }

    /// Keeps `stream` for the next call to `addr` (at most `STREAMS_KEPT`).
    fn keep_stream(&self, addr: &str, stream: AppendStream) {
        let mut streams = self.streams.lock().expect("streams lock");
        if let Some(kept) = streams.get_mut(addr) {
            if kept.len() < STREAMS_KEPT {
                kept.push(stream);
            }
        } else {
            if streams.len() >= 64 {
                // Addresses of members long gone.
                streams.clear();
            }
            streams.insert(addr.to_string(), vec![stream]);
        }
    }

    /// Forgets the idle streams to `addr` (one was found closed: the peer
    /// restarted, so the others are closed too).
    fn drop_streams(&self, addr: &str) {
        self.streams.lock().expect("streams lock").remove(addr);
    }

    pub(super) fn url(&self, addr: &str, path: &'static str) -> Result<reqwest::Url, String> {
        let mut urls = self.urls.lock().expect("urls lock");
        let by_addr = urls.entry(path).or_default();
        if let Some(url) = by_addr.get(addr) {
            return Ok(url.clone());
        }
        let url = reqwest::Url::parse(&format!("{addr}{path}")).map_err(|e| e.to_string())?;
        if by_addr.len() >= 64 {
            // Addresses of members long gone; rebuilt on demand.
            by_addr.clear();
        }
        by_addr.insert(addr.to_string(), url.clone());
        Ok(url)
    }

    /// POSTs `req` to `addr + path` and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &'static str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let body = codec::encode(req).map_err(|e| PeerError::Decode {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
        let url = self
            .url(addr, path)
            .map_err(|message| PeerError::Unreachable {
                addr: addr.to_string(),
                message: format!("not a valid address: {message}"),
            })?;
        let mut post = self.client.post(url);
        if let Some(auth) = &self.auth {
            post = post.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        let sent = post
            .header("content-type", "application/octet-stream")
            .body(body)
            .timeout(timeout)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return Err(transport_error(addr, timeout, &e)),
        };
        let status = resp.status();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(transport_error(addr, timeout, &e)),
        };
        if !status.is_success() {
            return Err(PeerError::Status {
                addr: addr.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(4000).collect(),
            });
        }
        codec::decode(&bytes).map_err(|e| PeerError::Decode {
            addr: addr.to_string(),
            message: e.to_string(),
        })
    }
}

/// A transport failure as a [`PeerError`]: only a failure to connect says
/// that nothing was delivered; a connection that failed after that (reset,
/// closed mid-answer) leaves it open whether the peer acted.
fn transport_error(addr: &str, timeout: Duration, e: &reqwest::Error) -> PeerError {
    let addr = addr.to_string();
    if e.is_timeout() {
        PeerError::Timeout { addr, timeout }
    } else if e.is_connect() {
        PeerError::Unreachable {
            addr,
            message: error_chain(e),
        }
    } else {
        PeerError::Lost {
            addr,
            message: error_chain(e),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Idle append streams kept per peer: one for replication, the rest for
/// leadership checks that overlap it.
const STREAMS_KEPT: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    /// `LeaderOp::Write(c)` is variant 0 followed by `c`: the TLS e2e test forges
    /// such a body with a member's certificate, and relies on this layout.
    #[test]
    fn a_forwarded_write_is_variant_zero_then_the_command() {
        let c = Command::DeleteBackup { id: 7 };
        let mut expected = vec![0u8];
        expected.extend(codec::encode(&c).unwrap());
        assert_eq!(codec::encode(&LeaderOp::Write(c)).unwrap(), expected);
    }
}
