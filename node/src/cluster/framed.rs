//! Framed connections between nodes, shared by the append stream and the forward
//! stream: opening one to a peer's internal listener (TCP, then TLS with the
//! stream's ALPN protocol and the node certificate, or in plaintext the
//! stream's preface and the cluster secret), the listener's check of who opened
//! it, and frames: a length (u32, big-endian) and a postcard encoding.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_raft_store::codec;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use crate::cluster::rpc::{PeerError, Peers};
use crate::cluster::rpc_server;
use crate::cluster::Node;
use crate::net::serve::StreamIo;
use crate::tls::PeerNode;

/// How long a connection may take to open (as for HTTP calls).
pub const CONNECT: Duration = Duration::from_millis(500);

pub type IoResult<T> = std::io::Result<T>;

pub fn invalid(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
}

/// How a stream kind begins: its preface in plaintext, its ALPN protocol and
/// client config with cluster TLS.
pub struct Kind<'a> {
    pub name: &'static str,
    pub preface: &'static [u8],
    pub alpn: &'static [u8],
    pub tls: Option<&'a Arc<rustls::ClientConfig>>,
}

/// Why a stream could not be opened. In every case nothing was sent on it
/// but the opening.
#[derive(Debug)]
pub enum OpenError {
    /// No connection could be made (`PeerError::Unreachable`).
    Unreachable(PeerError),
    /// The peer answered, but does not serve this kind of stream: it refused
    /// the ALPN protocol (an older version).
    NotServed(PeerError),
    /// The connection was made, the opening failed (a handshake that did not
    /// finish in time, a reset).
    Failed(PeerError),
}

impl From<OpenError> for PeerError {
    fn from(e: OpenError) -> PeerError {
        match e {
            OpenError::Unreachable(e) | OpenError::NotServed(e) | OpenError::Failed(e) => e,
        }
    }
}

/// Opens a stream of `kind` to the peer at `addr` (its rpc address).
pub async fn open(
    peers: &Peers,
    addr: &str,
    kind: Kind<'_>,
) -> Result<Box<dyn StreamIo>, OpenError> {
    let unreachable = |message: String| {
        OpenError::Unreachable(PeerError::Unreachable {
            addr: addr.to_string(),
            message,
        })
    };
    // Any path does: only the host and port are used.
    let url = peers
        .url(addr, crate::cluster::rpc::PATH_APPEND)
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
    // Past this point something answers: the connection is `Lost` to the
    // caller, `NotServed` when the peer says it does not serve this kind.
    let lost = |message: String| PeerError::Lost {
        addr: addr.to_string(),
        message,
    };
    let not_served = |message: String| OpenError::NotServed(lost(message));
    let failed = |message: String| OpenError::Failed(lost(message));
    match kind.tls {
        Some(config) => {
            let name = name.ok_or_else(|| failed("not a TLS server name".into()))?;
            let connect = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp);
            let tls = tokio::time::timeout(CONNECT, connect)
                .await
                .map_err(|_| failed(format!("no TLS handshake within {CONNECT:?}")))?
                .map_err(|e| {
                    let alpn_refused = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .is_some_and(|inner| {
                            matches!(
                                inner,
                                rustls::Error::AlertReceived(
                                    rustls::AlertDescription::NoApplicationProtocol
                                )
                            )
                        });
                    let message = format!("TLS handshake: {e}");
                    if alpn_refused {
                        not_served(message)
                    } else {
                        failed(message)
                    }
                })?;
            if tls.get_ref().1.alpn_protocol() != Some(kind.alpn) {
                return Err(not_served(format!(
                    "the peer does not serve {} streams",
                    kind.name
                )));
            }
            Ok(Box::new(tls))
        }
        None => {
            let mut tcp = tcp;
            let secret = peers.secret.expose().as_bytes();
            let len = u16::try_from(secret.len())
                .map_err(|_| failed("the cluster secret is too long".into()))?;
            let mut hello = kind.preface.to_vec();
            hello.extend_from_slice(&len.to_be_bytes());
            hello.extend_from_slice(secret);
            tcp.write_all(&hello)
                .await
                .map_err(|e| failed(e.to_string()))?;
            Ok(Box::new(tcp))
        }
    }
}

/// The listener's side of the opening: `Err` with the status and what to tell
/// the caller when it may not use the stream (a plaintext stream without this
/// cluster's secret; with cluster TLS, no node certificate).
pub async fn check_opening<R: AsyncRead + Unpin>(
    node: &Node,
    io: &mut R,
    preface: &[u8],
    peer: Option<PeerNode>,
) -> IoResult<Result<(), (u16, String)>> {
    match (&node.tls, peer) {
        (None, _) => {}
        (Some(_), None) => return Ok(Err((401, "a node certificate is required".into()))),
        (Some(_), Some(_)) => return Ok(Ok(())),
    }
    let within = Duration::from_millis(node.cfg.http.body_timeout_ms);
    let read = async {
        let mut given = vec![0u8; preface.len()];
        io.read_exact(&mut given).await?;
        if given != preface {
            return Err(invalid("not the stream its preface said"));
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
        return Ok(Err((
            401,
            "missing or wrong cluster secret: every member must share cluster.secret".into(),
        )));
    }
    Ok(Ok(()))
}

/// Writes `value` as one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    io: &mut W,
    value: &T,
) -> IoResult<()> {
    let frame = codec::encode_frame(value).map_err(|e| invalid(e.to_string()))?;
    io.write_all(&frame).await?;
    io.flush().await
}

/// Reads the next frame's length, refusing one over `max` bytes.
pub async fn read_len<R: AsyncRead + Unpin>(io: &mut R, max: usize) -> IoResult<usize> {
    let len = io.read_u32().await? as usize;
    if len > max {
        return Err(invalid(format!(
            "a frame of {len} bytes is over the limit of {max}"
        )));
    }
    Ok(len)
}

/// Reads the next `len` bytes into `buf`, replacing what it held. They go
/// straight into its spare capacity: `Vec::resize` would write every byte
/// first, a loop of millions in a debug build for a large AppendEntries.
pub async fn read_frame<R: AsyncRead + Unpin>(
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

/// A buffered reader over a stream, sized for frames.
pub fn reader<R: AsyncRead>(io: R, capacity: usize) -> BufReader<R> {
    BufReader::with_capacity(capacity, io)
}

/// Peers that get HTTP instead of a kind of stream until a moment, by address:
/// a new stream failed where HTTP works (a peer of an older version).
#[derive(Default)]
pub struct HttpUntil(Mutex<HashMap<String, Instant>>);

impl HttpUntil {
    /// `addr` gets HTTP for `how_long`.
    pub fn set(&self, addr: &str, how_long: Duration) {
        self.0
            .lock()
            .expect("http_until lock")
            .insert(addr.to_string(), Instant::now() + how_long);
    }

    /// Does `addr` get HTTP for now?
    pub fn now(&self, addr: &str) -> bool {
        let mut until = self.0.lock().expect("http_until lock");
        match until.get(addr) {
            Some(t) if Instant::now() < *t => true,
            Some(_) => {
                until.remove(addr);
                false
            }
            None => false,
        }
    }
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
