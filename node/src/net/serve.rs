//! Serving a router on a listener, bounded: at most `max_connections` at once,
//! request headers within `header_timeout` (which also ends a kept-alive
//! connection left idle that long), a body within `body_timeout`, an answer within
//! `request_timeout`. `axum::serve` sets none of these (hyper's header timeout
//! needs a timer it does not give), so one slow client per connection could hold
//! both listeners.
//!
//! The internal listener also takes connections that are not HTTP: the Raft
//! append stream and the forward stream ([`Streams`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::config::HttpSection;
use crate::net::problem::Problem;
use crate::tls::{NodeTls, PeerNode, ALPN_ENROLL};

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn of(http: &HttpSection) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(http.header_timeout_ms),
            body_timeout: Duration::from_millis(http.body_timeout_ms),
            request_timeout: Duration::from_millis(http.request_timeout_ms),
            max_connections: http.max_connections,
        }
    }
}

/// A listener's connections, for `/metrics`.
#[derive(Default)]
pub struct ListenerStats {
    /// Open now.
    open: AtomicU64,
    /// Turned away at `max_connections` since the start.
    refused: AtomicU64,
}

impl ListenerStats {
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// A connection handed over whole, for a protocol of its own.
pub trait StreamIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin> StreamIo for T {}

/// What serves one such connection: the connection, and the node its
/// certificate proved (with cluster TLS).
pub type StreamServe = Arc<
    dyn Fn(Box<dyn StreamIo>, Option<PeerNode>) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Connections of a listener that speak a framed protocol instead of HTTP (the
/// Raft append stream, cluster/append_stream.rs; the forward stream,
/// cluster/forward_stream/). With cluster TLS they are the
/// ones that negotiated `alpn`; in plaintext, the ones that begin with
/// `preface` (which no HTTP request does). They count toward the listener's
/// connections like any other.
#[derive(Clone)]
pub struct Streams {
    pub alpn: &'static [u8],
    pub preface: &'static [u8],
    pub serve: StreamServe,
}

/// What a listener speaks: HTTP (plain or over TLS), and maybe streams.
pub struct Speaks {
    pub tls: Tls,
    pub streams: Vec<Streams>,
}

impl From<Tls> for Speaks {
    /// HTTP only.
    fn from(tls: Tls) -> Speaks {
        Speaks {
            tls,
            streams: Vec::new(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets the open
/// connections finish their requests (up to 5 s). Each request carries the
/// client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<ListenerStats>,
    speaks: Speaks,
    mut shutdown: watch::Receiver<bool>,
) {
    let Speaks { tls, streams } = speaks;
    let streams: Arc<[Streams]> = streams.into();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!(listener = name, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            turn_away(name, &stream, &stats, limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            http: http.clone(),
            remote,
            limits,
            watcher: graceful.watcher(),
        };
        let (app, tls, stats, streams) = (app.clone(), tls.clone(), stats.clone(), streams.clone());
        stats.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // Errors here are a client's: a reset, a header timeout, bad framing,
            // a failed handshake.
            if let Err(e) = conn.run(stream, app, tls, streams).await {
                tracing::debug!(listener = name, %remote, "connection ended: {e}");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(listener = name, "closing connections still busy after 5 s");
    }
}

/// What a listener speaks.
#[derive(Clone)]
pub enum Tls {
    /// Plain HTTP.
    Off,
    /// HTTPS with this config (the API with the operator's certificate).
    Server(Arc<rustls::ServerConfig>),
    /// The cluster-internal listener with mutual TLS: a peer must show a node
    /// certificate of the cluster CA; a connection asking for ALPN
    /// `bcm-enroll/1` gets no such check and only `enroll_app`.
    Cluster {
        node: Arc<NodeTls>,
        mutual: Arc<rustls::ServerConfig>,
        enroll: Arc<rustls::ServerConfig>,
        enroll_app: Router,
    },
}

/// One accepted connection.
struct Conn {
    http: hyper::server::conn::http1::Builder,
    remote: SocketAddr,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Conn {
    async fn run(
        self,
        stream: TcpStream,
        app: Router,
        tls: Tls,
        streams: Arc<[Streams]>,
    ) -> Result<(), BoxError> {
        let handshake_within = self.limits.header_timeout;
        match tls {
            Tls::Off => {
                if !streams.is_empty() {
                    let prefaces: Vec<&[u8]> = streams.iter().map(|s| s.preface).collect();
                    if let Some(i) = begins_with(&stream, &prefaces, handshake_within).await? {
                        (streams[i].serve)(Box::new(stream), None).await;
                        return Ok(());
                    }
                }
                self.serve(stream, app, None).await
            }
            Tls::Server(config) => {
                let accept = tokio_rustls::TlsAcceptor::from(config).accept(stream);
                let stream = tokio::time::timeout(handshake_within, accept).await??;
                self.serve_with(stream, app, None, true).await
            }
            Tls::Cluster {
                node,
                mutual,
                enroll,
                enroll_app,
            } => {
                let hello = tokio_rustls::LazyConfigAcceptor::new(
                    rustls::server::Acceptor::default(),
                    stream,
                );
                let start = tokio::time::timeout(handshake_within, hello).await??;
                let enrolling = start
                    .client_hello()
                    .alpn()
                    .is_some_and(|mut protocols| protocols.any(|p| p == ALPN_ENROLL));
                if enrolling {
                    let stream =
                        tokio::time::timeout(handshake_within, start.into_stream(enroll)).await??;
                    return self.serve(stream, enroll_app, None).await;
                }
                let stream =
                    tokio::time::timeout(handshake_within, start.into_stream(mutual)).await??;
                // The verifier let only a welcome node's certificate through.
                let peer = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| node.check_peer(c).ok())
                    .ok_or("a peer without a node certificate got through the handshake")?;
                let alpn = stream.get_ref().1.alpn_protocol();
                if let Some(s) = streams.iter().find(|s| alpn == Some(s.alpn)) {
                    (s.serve)(Box::new(stream), Some(PeerNode(peer))).await;
                    return Ok(());
                }
                self.serve(stream, app, Some(PeerNode(peer))).await
            }
        }
    }

    async fn serve<IO>(self, io: IO, app: Router, peer: Option<PeerNode>) -> Result<(), BoxError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_with(io, app, peer, false).await
    }

    /// `hsts`: the answers tell browsers to come back over HTTPS only.
    async fn serve_with<IO>(
        self,
        io: IO,
        app: Router,
        peer: Option<PeerNode>,
        hsts: bool,
    ) -> Result<(), BoxError>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (remote, limits) = (self.remote, self.limits);
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let answer = handle(app.clone(), req, remote, limits, peer);
            async move {
                let mut resp = answer.await?;
                if hsts {
                    resp.headers_mut().insert(
                        header::STRICT_TRANSPORT_SECURITY,
                        HeaderValue::from_static("max-age=31536000"),
                    );
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = self.http.serve_connection(TokioIo::new(io), service);
        self.watcher.watch(conn).await?;
        Ok(())
    }
}

/// Which of `prefaces` does what the client sent first begin with? Looks
/// without taking: an HTTP request is then read from the start. A client that
/// has not sent enough to tell within `within` (the header timeout) is an
/// error: the connection closes, as HTTP would close it then.
async fn begins_with(
    stream: &TcpStream,
    prefaces: &[&[u8]],
    within: Duration,
) -> std::io::Result<Option<usize>> {
    let longest = prefaces.iter().map(|p| p.len()).max().unwrap_or(0);
    let mut first = vec![0u8; longest];
    let look = async {
        loop {
            let n = stream.peek(&mut first).await?;
            let seen = &first[..n];
            // Prefaces that what came so far could still begin.
            let open: Vec<usize> = (0..prefaces.len())
                .filter(|&i| {
                    let p = prefaces[i];
                    seen[..n.min(p.len())] == p[..n.min(p.len())]
                })
                .collect();
            if n == 0 || open.is_empty() {
                return Ok(None);
            }
            if let Some(&i) = open.iter().find(|&&i| n >= prefaces[i].len()) {
                return Ok(Some(i));
            }
            // Only part of a preface is here (it is sent in one write, so
            // this is rare): look again shortly.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(within, look)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "nothing to tell the protocol by within the header timeout",
            ))
        })
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Answers a connection over the cap with a 503 (if its socket takes the bytes at
/// once) and closes it.
fn turn_away(name: &str, stream: &TcpStream, stats: &ListenerStats, max: usize) {
    let n = stats.refused.fetch_add(1, Ordering::Relaxed);
    if n.is_power_of_two() {
        tracing::warn!(
            listener = name,
            max_connections = max,
            refused = n + 1,
            "at the connection limit: turning new connections away"
        );
    }
    let _ = stream.try_write(
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
}

async fn handle(
    app: Router,
    req: Request<Incoming>,
    remote: SocketAddr,
    limits: Limits,
    peer: Option<PeerNode>,
) -> Result<Response, Infallible> {
    let mut req = req.map(|body| Body::new(DeadlineBody::new(body, limits.body_timeout)));
    req.extensions_mut().insert(ConnectInfo(remote));
    if let Some(peer) = peer {
        req.extensions_mut().insert(peer);
    }
    match tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await {
        Ok(answer) => answer,
        Err(_) => {
            let mut resp = Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request was not answered within {} s",
                    limits.request_timeout.as_secs()
                ),
            )
            .into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Ok(resp)
        }
    }
}

/// A request body that fails once its deadline passes: the whole body must arrive
/// within `body_timeout` of the request's headers, however it trickles in.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

/// The error a body past its deadline gives its reader.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(Duration);

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimedOut(self.timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Sends `first` on a new connection and asks `begins_with` which preface it is.
    async fn which(first: &'static [u8]) -> std::io::Result<Option<usize>> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(first).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        let (stream, _) = listener.accept().await.unwrap();
        let prefaces: [&[u8]; 2] = [b"BCM-APPEND/1\n", b"BCM-FORWARD/1\n"];
        let r = begins_with(&stream, &prefaces, Duration::from_millis(200)).await;
        client.abort();
        r
    }

    #[tokio::test]
    async fn each_stream_is_told_by_its_preface_and_http_by_none() {
        assert_eq!(which(b"BCM-APPEND/1\n\x00\x05").await.unwrap(), Some(0));
        assert_eq!(which(b"BCM-FORWARD/1\n\x00\x05").await.unwrap(), Some(1));
        assert_eq!(which(b"POST /raft/vote HTTP/1.1\r\n").await.unwrap(), None);
        // "BCM-" could still be either: no answer within the time is an error.
        assert!(which(b"BCM-").await.is_err());
    }
}
