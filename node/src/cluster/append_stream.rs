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

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bcm_raft_store::limits::RPC_BODY_BYTES;
use bcm_raft_store::{codec, NodeId};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use crate::cluster::rpc::{PeerError, Peers, PATH_APPEND};
use crate::cluster::rpc_server;
use crate::cluster::{Node, SharedNode};
use crate::net::serve::{StreamIo, Streams};
use crate::tls::{PeerNode, ALPN_APPEND};

/// How a plaintext append stream begins (no HTTP request does).
pub const PREFACE: &[u8] = b"BCM-APPEND/1\n";

/// A stream that carries nothing this long is closed (a leader sends at least a
/// heartbeat every `raft.heartbeat_ms`).
const IDLE: Duration = Duration::from_secs(60);

/// How long a connection may take to open (as for HTTP calls).
const CONNECT: Duration = Duration::from_millis(500);

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

type IoResult<T> = std::io::Result<T>;

fn invalid(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
}

async fn answer(node: &Node, io: Box<dyn StreamIo>, peer: Option<PeerNode>) -> IoResult<()> {
    let mut io = BufReader::with_capacity(64 * 1024, io);
    let within = Duration::from_millis(node.cfg.http.body_timeout_ms);
    match (&node.tls, peer) {
        (None, _) => {
            if let Err(detail) = plaintext_hello(node, &mut io, within).await? {
                return refuse(&mut io, 401, detail).await;
            }
        }
        (Some(_), None) => {
            return refuse(&mut io, 401, "a node certificate is required".into()).await;
        }
        (Some(_), Some(_)) => {}
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
        tokio::time::timeout(within, read_frame(&mut io, &mut body, len))
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

/// Reads the preface and the cluster secret of a plaintext stream: `Err` with
/// what to tell the caller when the secret is not this cluster's.
async fn plaintext_hello(
    node: &Node,
    io: &mut BufReader<Box<dyn StreamIo>>,
    within: Duration,
) -> IoResult<Result<(), String>> {
    let read = async {
        let mut preface = [0u8; PREFACE.len()];
        io.read_exact(&mut preface).await?;
        if preface != PREFACE {
            return Err(invalid("not an append stream"));
        }
        let len = io.read_u16().await? as usize;
        let mut given = vec![0u8; len];
        io.read_exact(&mut given).await?;
        Ok(given)
    };
    let given = tokio::time::timeout(within, read)
        .await
        .map_err(|_| invalid("no preface within http.body_timeout_ms"))??;
    if !rpc_server::shows_the_secret(node, &given) {
        return Ok(Err(
            "missing or wrong cluster secret: every member must share cluster.secret".into(),
        ));
    }
    Ok(Ok(()))
}

async fn write_reply(io: &mut BufReader<Box<dyn StreamIo>>, reply: &Reply) -> IoResult<()> {
    let frame = codec::encode_frame(reply).map_err(|e| invalid(e.to_string()))?;
    let io = io.get_mut();
    io.write_all(&frame).await?;
    io.flush().await
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
        let unreachable = |message: String| PeerError::Unreachable {
            addr: addr.to_string(),
            message,
        };
        let url = peers
            .url(addr, PATH_APPEND)
            .map_err(|m| unreachable(format!("not a valid address: {m}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| unreachable("the address names no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| unreachable("the address names no port".into()))?;
        // An IPv6 address comes in brackets.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => Some(ServerName::from(ip)),
            Err(_) => ServerName::try_from(host.clone()).ok(),
        };
        let tcp = tokio::time::timeout(CONNECT, dial(&host, port, peers.source))
            .await
            .map_err(|_| unreachable(format!("no connection within {CONNECT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        // Past this point something answers: a failure says the peer does not
        // serve append streams (an older version), not that it is down.
        let refused = |message: String| PeerError::Lost {
            addr: addr.to_string(),
            message,
        };
        let io: Box<dyn StreamIo> = match &peers.stream_tls {
            Some(config) => {
                let name = name.ok_or_else(|| refused("not a TLS server name".into()))?;
                let connect = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp);
                let tls = tokio::time::timeout(CONNECT, connect)
                    .await
                    .map_err(|_| refused(format!("no TLS handshake within {CONNECT:?}")))?
                    .map_err(|e| refused(format!("TLS handshake: {e}")))?;
                if tls.get_ref().1.alpn_protocol() != Some(ALPN_APPEND) {
                    return Err(refused("the peer does not serve append streams".into()));
                }
                Box::new(tls)
            }
            None => {
                let mut tcp = tcp;
                let secret = peers.secret.expose().as_bytes();
                let len = u16::try_from(secret.len())
                    .map_err(|_| unreachable("the cluster secret is too long".into()))?;
                let mut hello = PREFACE.to_vec();
                hello.extend_from_slice(&len.to_be_bytes());
                hello.extend_from_slice(secret);
                tcp.write_all(&hello)
                    .await
                    .map_err(|e| refused(e.to_string()))?;
                Box::new(tcp)
            }
        };
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
        read_frame(&mut self.io, &mut self.reply, len).await?;
        codec::decode(&self.reply).map_err(|e| invalid(e.to_string()))
    }
}

/// Reads the next `len` bytes into `buf`, replacing what it held. They go
/// straight into its spare capacity: `Vec::resize` would write every byte
/// first, a loop of millions in a debug build for a large AppendEntries.
async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    len: usize,
) -> IoResult<()> {
    buf.clear();
    // (Room past `len` too: `read_to_end` grows a full buffer before its last,
    // empty read, and would copy the frame to do so.)
    buf.reserve(len + 64);
    let got = io.take(len as u64).read_to_end(buf).await?;
    if got < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the stream ended {got} bytes into a frame of {len}"),
        ));
    }
    Ok(())
}

/// A TCP connection to `host:port`, leaving from `source` when it is set.
async fn dial(host: &str, port: u16, source: Option<IpAddr>) -> IoResult<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{host} resolves to no address"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_one_after_another_and_a_short_one_is_an_error() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut rx = BufReader::with_capacity(64, rx);
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let writer = tokio::spawn(async move {
            tx.write_all(&big[..70_000]).await.unwrap();
            tx.write_all(b"abc").await.unwrap();
            tx.write_all(&big[70_000..]).await.unwrap();
            tx.write_all(b"short").await.unwrap();
            big
        });
        let mut buf = Vec::new();
        read_frame(&mut rx, &mut buf, 70_000).await.unwrap();
        assert_eq!(buf.len(), 70_000);
        read_frame(&mut rx, &mut buf, 3).await.unwrap();
        assert_eq!(buf, b"abc");
        read_frame(&mut rx, &mut buf, 30_000).await.unwrap();
        let big = writer.await.unwrap();
        assert_eq!(buf, big[70_000..]);
        let e = read_frame(&mut rx, &mut buf, 10).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
}
