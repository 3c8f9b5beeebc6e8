//! The Raft append stream: AppendEntries from a leader to one follower over one
//! persistent connection, as length-prefixed postcard frames, instead of an HTTP
//! request per call: no headers to build and parse, and no client connection task
//! between openraft's replication task and the socket.
//!
//! It is a connection to the internal listener: with cluster TLS the client asks
//! for ALPN `bcm-append/1` and shows its node certificate, as for HTTP; in
//! plaintext it begins with [`PREFACE`] and the cluster secret. Then, strictly in
//! turn, a request frame (`AppendEntriesRequest`) and a reply frame ([`Reply`]);
//! a frame is its length (u32, big-endian) and its postcard encoding. Votes,
//! snapshots and control messages stay on HTTP.

use std::sync::Arc;
use std::time::Duration;

use bcm_raft_store::limits::RPC_BODY_BYTES;
use bcm_raft_store::{codec, NodeId};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use crate::cluster::framed::{self, invalid, IoResult};
use crate::cluster::rpc::{PeerError, Peers};
use crate::cluster::rpc_server;
use crate::cluster::{Node, SharedNode};
use crate::net::serve::{StreamIo, Streams};
use crate::tls::{PeerNode, ALPN_APPEND};

/// How a plaintext append stream begins (no HTTP request does).
pub const PREFACE: &[u8] = b"BCM-APPEND/1\n";

/// A stream that carries nothing this long is closed (a leader sends at least a
/// heartbeat every `raft.heartbeat_ms`).
const IDLE: Duration = Duration::from_secs(60);

/// The answer to one AppendEntries.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Appended(AppendEntriesResponse<NodeId>),
    /// Not done, with the HTTP status the same refusal gets over HTTP
    /// (401, 403, 413, 503, 500, ...) and why.
    Refused {
        status: u16,
        detail: String,
    },
}

// ---------------------------------------------------------------- the follower's side

/// The internal listener's hook for append streams.
pub fn streams(node: SharedNode) -> Streams {
    Streams {
        alpn: ALPN_APPEND,
        preface: PREFACE,
        serve: Arc::new(move |io, peer| Box::pin(serve(node.clone(), io, peer))),
    }
}

async fn serve(node: SharedNode, io: Box<dyn StreamIo>, peer: Option<PeerNode>) {
    if let Err(e) = answer(&node, io, peer).await {
        tracing::debug!(peer = ?peer.map(|p| p.0), "append stream ended: {e}");
    }
}

async fn answer(node: &Node, io: Box<dyn StreamIo>, peer: Option<PeerNode>) -> IoResult<()> {
    let mut io = BufReader::with_capacity(64 * 1024, io);
    let within = Duration::from_millis(node.cfg.http.body_timeout_ms);
    if let Err((status, detail)) = framed::check_opening(node, &mut io, PREFACE, peer).await? {
        return refuse(&mut io, status, detail).await;
    }
    let mut stop = node.shutdown.clone();
    let mut body = Vec::new();
    loop {
        let len = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Ok(()),
            len = tokio::time::timeout(IDLE, io.read_u32()) => match len {
                Err(_) => return Ok(()),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(len) => len? as usize,
            },
        };
        if len > RPC_BODY_BYTES {
            let detail = format!("a frame of {len} bytes is over the limit of {RPC_BODY_BYTES}");
            return refuse(&mut io, 413, detail).await;
        }
        tokio::time::timeout(within, framed::read_frame(&mut io, &mut body, len))
            .await
            .map_err(|_| invalid("a frame did not arrive within http.body_timeout_ms"))??;
        if let (Some(tls), Some(PeerNode(p))) = (&node.tls, peer) {
            // Decommissioned since the connection opened.
            if tls.is_revoked(p) {
                let detail = format!("node {p} was decommissioned: its certificate is refused");
                return refuse(&mut io, 403, detail).await;
            }
        }
        let reply = match rpc_server::raft_request::<AppendEntriesRequest<_>>(node, &body) {
            Ok(req) => rpc_server::append_entries(node, peer, req).await,
            Err(problem) => Err(problem),
        };
        let reply = match reply {
            Ok(resp) => Reply::Appended(resp),
            Err(p) => Reply::Refused {
                status: p.status,
                detail: p.detail.clone(),
            },
        };
        write_reply(&mut io, &reply).await?;
    }
}

async fn write_reply(io: &mut BufReader<Box<dyn StreamIo>>, reply: &Reply) -> IoResult<()> {
    framed::write_frame(io.get_mut(), reply).await
}

/// Answers with a refusal and ends the stream.
async fn refuse(
    io: &mut BufReader<Box<dyn StreamIo>>,
    status: u16,
    detail: String,
) -> IoResult<()> {
    write_reply(io, &Reply::Refused { status, detail }).await?;
    io.get_mut().shutdown().await
}

// ---------------------------------------------------------------- the leader's side

/// One open append stream to a peer.
pub struct AppendStream {
    io: BufReader<Box<dyn StreamIo>>,
    reply: Vec<u8>,
}

impl AppendStream {
    /// Opens a stream to the peer at `addr` (its rpc address): `Unreachable`
    /// when no connection could be made, `Lost` when one was but it is not an
    /// append stream.
    pub async fn connect(peers: &Peers, addr: &str) -> Result<AppendStream, PeerError> {
        let kind = framed::Kind {
            name: "append",
            preface: PREFACE,
            alpn: ALPN_APPEND,
            tls: peers.stream_tls.as_ref(),
        };
        let io = framed::open(peers, addr, kind)
            .await
            .map_err(PeerError::from)?;
        Ok(AppendStream {
            io: BufReader::with_capacity(16 * 1024, io),
            reply: Vec::new(),
        })
    }

    /// Sends one request frame (from `codec::encode_frame`) and reads its reply.
    pub async fn exchange(&mut self, frame: &[u8]) -> IoResult<Reply> {
        let io = self.io.get_mut();
        io.write_all(frame).await?;
        io.flush().await?;
        let len = self.io.read_u32().await? as usize;
        if len > RPC_BODY_BYTES {
            return Err(invalid(format!(
                "a reply of {len} bytes: the peer does not speak the append stream"
            )));
        }
        framed::read_frame(&mut self.io, &mut self.reply, len).await?;
        codec::decode(&self.reply).map_err(|e| invalid(e.to_string()))
    }
}
