//! The follower's side of the forward stream: one stream per leader address
//! (`Links`), opened on first use, retired when it goes quiet or idle, and HTTP
//! to a leader that does not take it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_raft_store::codec;
use bcm_raft_store::limits::RPC_BODY_BYTES;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

use super::{write_frames, Reply, RequestRef, CLIENT_IDLE, HTTP_FOR, IDLE, PREFACE, STALE};
use crate::cluster::framed::{self, invalid, HttpUntil};
use crate::cluster::rpc::{self, LeaderOp, LeaderReply, OpResult, PeerError, Peers};
use crate::net::serve::StreamIo;
use crate::tls::ALPN_FORWARD;

type Answer = Result<LeaderReply<OpResult>, PeerError>;

/// This node's forward streams, one per leader address, and the peers that get
/// HTTP instead.
pub struct Links {
    peers: Peers,
    /// One slot per address: whoever opens a stream to it holds that slot
    /// only, and the callers after it wait at most until their deadline.
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    http_until: HttpUntil,
}

/// The stream to one address, and its last failed opening.
#[derive(Default)]
struct Slot {
    stream: Option<Arc<ForwardStream>>,
    failed: Option<(Instant, Opening)>,
}

/// Why a stream could not be opened. Either way no work was sent on it.
#[derive(Debug, Clone)]
enum Opening {
    /// The peer answered, but not as a forward stream (an older version, or a
    /// listener turning connections away): HTTP for a while.
    NotServed(String),
    /// It refused this node (a wrong secret, a certificate refused).
    Refused(PeerError),
    /// No connection, or no answer in time: try again later.
    Failed(String),
}

impl Links {
    pub fn new(peers: Peers) -> Links {
        Links {
            peers,
            slots: Default::default(),
            http_until: Default::default(),
        }
    }

    /// Sends `op` to the leader at `addr` and waits at most `timeout` for the answer.
    pub async fn call(&self, addr: &str, op: &LeaderOp, timeout: Duration) -> Answer {
        let deadline = Instant::now() + timeout;
        let unsent = |message: String| PeerError::Unreachable {
            addr: addr.to_string(),
            message,
        };
        // Twice at most: a stream retired by another caller between this one
        // taking it and sending on it sent nothing, and the next one will do.
        for _ in 0..2 {
            if self.http_until.now(addr) {
                break;
            }
            let stream = match self.stream(addr, deadline).await {
                Ok(stream) => stream,
                Err(Opening::NotServed(message)) => {
                    tracing::info!(
                        leader = addr,
                        "the leader does not take forward streams ({message}); forwarding over HTTP for {HTTP_FOR:?}"
                    );
                    self.http_until.set(addr, HTTP_FOR);
                    break;
                }
                Err(Opening::Refused(e)) => return Err(e),
                Err(Opening::Failed(message)) => return Err(unsent(message)),
            };
            if Instant::now() >= deadline {
                return Err(unsent("no time was left to send it".into()));
            }
            let answer = match stream.send(op) {
                Ok(answer) => answer,
                Err(Unsent(why)) => {
                    tracing::debug!(leader = addr, "{why}; on a new stream");
                    continue;
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            return match tokio::time::timeout(left, answer).await {
                Ok(Ok(a)) => a,
                Ok(Err(_)) => Err(PeerError::Lost {
                    addr: addr.to_string(),
                    message: "the forward stream went away".into(),
                }),
                Err(_) => Err(PeerError::Timeout {
                    addr: addr.to_string(),
                    timeout,
                }),
            };
        }
        if !self.http_until.now(addr) {
            return Err(unsent(
                "its forward stream was retired twice before it was sent".into(),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.peers
            .call::<_, LeaderReply<OpResult>>(addr, rpc::PATH_LEADER, op, left)
            .await
    }

    /// The stream to `addr` that takes new work: the open one while it is
    /// usable, else a new one. A caller that waited for another's opening,
    /// which failed, gets that failure instead of trying again at once.
    async fn stream(&self, addr: &str, deadline: Instant) -> Result<Arc<ForwardStream>, Opening> {
        let asked = Instant::now();
        let slot = {
            let mut slots = self.slots.lock().expect("forward slots lock");
            if let Some(slot) = slots.get(addr) {
                slot.clone()
            } else {
                if slots.len() >= 16 {
                    // Addresses of leaders long gone.
                    for (_, slot) in slots.drain() {
                        if let Ok(mut s) = slot.try_lock() {
                            if let Some(old) = s.stream.take() {
                                old.retire();
                            }
                        }
                    }
                }
                slots.entry(addr.to_string()).or_default().clone()
            }
        };
        let mut slot = tokio::time::timeout_at(deadline.into(), slot.lock())
            .await
            .map_err(|_| Opening::Failed("no time was left to open a stream to it".into()))?;
        if let Some(s) = &slot.stream {
            if s.usable() {
                return Ok(s.clone());
            }
        }
        if let Some(old) = slot.stream.take() {
            old.retire();
        }
        if let Some((at, why)) = &slot.failed {
            if *at >= asked {
                return Err(why.clone());
            }
        }
        match ForwardStream::open(&self.peers, addr).await {
            Ok(stream) => {
                slot.stream = Some(stream.clone());
                slot.failed = None;
                Ok(stream)
            }
            Err(why) => {
                slot.failed = Some((Instant::now(), why.clone()));
                Err(why)
            }
        }
    }
}

/// A request that was not sent: the stream had ended or was retired.
struct Unsent(String);

/// One open forward stream to a leader. Requests go out through its writer
/// task, so a caller never waits on the socket; answers come back through its
/// reader task.
pub struct ForwardStream {
    addr: String,
    /// To the writer task; taken when the stream is retired.
    frames: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

/// What the stream's tasks share.
struct Shared {
    owed: Mutex<Owed>,
    /// Turns true when the stream ends: its writer stops.
    ended: watch::Sender<bool>,
}

/// What a stream owes this side.
struct Owed {
    answers: HashMap<u64, oneshot::Sender<Answer>>,
    /// Since when it has owed answers and said nothing: the first request
    /// sent while it owed none, or its last answer.
    quiet_since: Instant,
    last_used: Instant,
    /// Why it ended, once it has: nothing more is sent on it.
    ended: Option<String>,
    /// No new work goes on it (see `STALE`).
    retired: bool,
}

impl ForwardStream {
    async fn open(peers: &Peers, addr: &str) -> Result<Arc<ForwardStream>, Opening> {
        let kind = framed::Kind {
            name: "forward",
            preface: PREFACE,
            alpn: ALPN_FORWARD,
            tls: peers.forward_tls.as_ref(),
        };
        let io = framed::open(peers, addr, kind).await.map_err(|e| match e {
            framed::OpenError::Unreachable(e) => Opening::Failed(e.to_string()),
            framed::OpenError::NotServed(e) => Opening::NotServed(e.to_string()),
            framed::OpenError::Failed(e) => Opening::Failed(e.to_string()),
        })?;
        let (rd, wr) = tokio::io::split(io);
        let mut rd = framed::reader(rd, 64 * 1024);
        // The listener's first frame says whether it took the stream.
        let first = async {
            let len = framed::read_len(&mut rd, 64 * 1024).await?;
            let mut buf = Vec::new();
            framed::read_frame(&mut rd, &mut buf, len).await?;
            codec::decode::<Reply>(&buf).map_err(|e| invalid(e.to_string()))
        };
        match tokio::time::timeout(framed::CONNECT, first).await {
            Ok(Ok(Reply::Open)) => {}
            Ok(Ok(Reply::Refused { status, detail, .. })) => {
                return Err(Opening::Refused(PeerError::Status {
                    addr: addr.to_string(),
                    status,
                    body: detail,
                }))
            }
            Ok(Ok(other)) => return Err(Opening::NotServed(format!("a first frame of {other:?}"))),
            // Bytes that are no frame (an HTTP answer), or closed without a word.
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Err(Opening::NotServed(format!("no forward stream: {e}")))
            }
            Ok(Err(e)) => return Err(Opening::Failed(format!("the opening failed: {e}"))),
            Err(_) => {
                return Err(Opening::Failed(format!(
                    "no answer to the forward stream's opening within {:?}",
                    framed::CONNECT
                )))
            }
        }
        let now = Instant::now();
        let shared = Arc::new(Shared {
            owed: Mutex::new(Owed {
                answers: HashMap::new(),
                quiet_since: now,
                last_used: now,
                ended: None,
                retired: false,
            }),
            ended: watch::Sender::new(false),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_requests(addr.to_string(), wr, rx, shared.clone()));
        tokio::spawn(read_answers(addr.to_string(), rd, shared.clone()));
        Ok(Arc::new(ForwardStream {
            addr: addr.to_string(),
            frames: Mutex::new(Some(tx)),
            shared,
            next_id: AtomicU64::new(1),
        }))
    }

    /// May new work go on this stream?
    fn usable(&self) -> bool {
        let s = self.shared.owed.lock().expect("forward stream lock");
        let quiet = !s.answers.is_empty() && s.quiet_since.elapsed() > STALE;
        let idle = s.answers.is_empty() && s.last_used.elapsed() > CLIENT_IDLE;
        s.ended.is_none() && !s.retired && !quiet && !idle
    }

    /// Sends `op`; the receiver gets its answer. `Err` when it was not sent
    /// (the stream had ended or was retired: nothing was delivered).
    fn send(&self, op: &LeaderOp) -> Result<oneshot::Receiver<Answer>, Unsent> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let frame = match codec::encode_frame(&RequestRef { id, op }) {
            Ok(frame) => frame,
            Err(e) => {
                // Answered at once: it cannot go anywhere.
                let _ = tx.send(Err(PeerError::Decode {
                    addr: self.addr.clone(),
                    message: e.to_string(),
                }));
                return Ok(rx);
            }
        };
        {
            let mut s = self.shared.owed.lock().expect("forward stream lock");
            if let Some(why) = &s.ended {
                return Err(Unsent(format!("the forward stream had ended ({why})")));
            }
            let now = Instant::now();
            if s.answers.is_empty() {
                s.quiet_since = now;
            }
            s.last_used = now;
            s.answers.insert(id, tx);
        }
        let frames = self.frames.lock().expect("forward stream lock");
        let sent = frames.as_ref().is_some_and(|f| f.send(frame).is_ok());
        if !sent {
            self.shared
                .owed
                .lock()
                .expect("forward stream lock")
                .answers
                .remove(&id);
            return Err(Unsent("the forward stream was retired".into()));
        }
        Ok(rx)
    }

    /// Takes no new work: the writer sends what it has and closes its side
    /// (the listener answers what it took, then closes too), and the answers
    /// still owed are delivered.
    fn retire(&self) {
        self.shared
            .owed
            .lock()
            .expect("forward stream lock")
            .retired = true;
        self.frames.lock().expect("forward stream lock").take();
    }
}

/// Writes requests as they come, everything ready in one flush, until the
/// stream is retired (then it closes its side) or ends.
async fn write_requests(
    addr: String,
    wr: WriteHalf<Box<dyn StreamIo>>,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let mut ended = shared.ended.subscribe();
    tokio::select! {
        r = write_frames(wr, rx) => if let Err(e) = r {
            end(&shared, &addr, &format!("the forward stream failed while sending: {e}"));
        },
        _ = ended.wait_for(|e| *e) => {}
    }
}

/// Delivers the answers of a stream until it ends, or until it is retired and
/// owes nothing anyone still waits for.
async fn read_answers(
    addr: String,
    mut rd: tokio::io::BufReader<ReadHalf<Box<dyn StreamIo>>>,
    shared: Arc<Shared>,
) {
    let owed = &shared.owed;
    let read = async {
        let mut buf = Vec::new();
        loop {
            let len = framed::read_len(&mut rd, RPC_BODY_BYTES).await?;
            framed::read_frame(&mut rd, &mut buf, len).await?;
            let reply: Reply = codec::decode(&buf).map_err(|e| invalid(e.to_string()))?;
            let (id, answer) = match reply {
                Reply::Answered { id, reply } => (id, Ok(reply)),
                Reply::Refused {
                    id: Some(id),
                    status,
                    detail,
                } => (
                    id,
                    Err(PeerError::Status {
                        addr: addr.clone(),
                        status,
                        body: detail,
                    }),
                ),
                Reply::Refused {
                    id: None,
                    status,
                    detail,
                } => return Ok(format!("the leader closed the stream: {status} {detail}")),
                Reply::Open => return Err(invalid("a second opening frame")),
            };
            let waiting = {
                let mut s = owed.lock().expect("forward stream lock");
                s.quiet_since = Instant::now();
                s.answers.remove(&id)
            };
            if let Some(tx) = waiting {
                let _ = tx.send(answer);
            }
        }
    };
    let abandoned = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let s = owed.lock().expect("forward stream lock");
            let nobody_waits = s.answers.values().all(|tx| tx.is_closed());
            // Retired; or owing answers only to callers that gave up, and
            // silent (a cut link); or unused past the listener's idle limit.
            let quiet = !s.answers.is_empty() && s.quiet_since.elapsed() > STALE;
            let idle = s.answers.is_empty() && s.last_used.elapsed() > IDLE;
            if (s.retired || quiet) && nobody_waits || idle {
                return;
            }
        }
    };
    let why = tokio::select! {
        r = read => match r {
            Ok(why) => why,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                "the leader closed the forward stream".to_string()
            }
            Err(e) => format!("the forward stream failed: {e}"),
        },
        () = abandoned => "retired".to_string(),
    };
    end(&shared, &addr, &why);
}

/// Ends a stream: nothing more is sent on it, its writer stops, and whoever
/// still waits for an answer is told it may or may not have been acted on.
fn end(shared: &Shared, addr: &str, why: &str) {
    let owed = {
        let mut s = shared.owed.lock().expect("forward stream lock");
        s.ended.get_or_insert_with(|| why.to_string());
        std::mem::take(&mut s.answers)
    };
    shared.ended.send_replace(true);
    if !owed.is_empty() {
        tracing::debug!(
            leader = addr,
            owed = owed.len(),
            "forward stream ended: {why}"
        );
    }
    for (_, tx) in owed {
        let _ = tx.send(Err(PeerError::Lost {
            addr: addr.to_string(),
            message: why.to_string(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::super::Request;
    use super::*;
    use crate::config::Secret;

    fn peers() -> Peers {
        Peers::new(
            Secret::new("a-cluster-secret-0123"),
            Duration::from_secs(5),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            None,
        )
    }

    /// A peer of an older version answers the preface as a bad HTTP request:
    /// told apart (`NotServed`, which sends the work over HTTP) before any
    /// work was sent.
    #[tokio::test]
    async fn an_older_peer_that_answers_in_http_is_told_apart_before_any_work_is_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let older = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = vec![0u8; 256];
            let n = s.read(&mut got).await.unwrap();
            s.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
            s.shutdown().await.unwrap();
            got.truncate(n);
            got
        });
        let e = ForwardStream::open(&peers(), &addr).await.err().unwrap();
        assert!(matches!(e, Opening::NotServed(_)), "{e:?}");
        let got = older.await.unwrap();
        assert!(got.starts_with(PREFACE), "{got:?}");
        // The preface, the secret's length and the secret: no request frame.
        assert_eq!(got.len(), PREFACE.len() + 2 + "a-cluster-secret-0123".len());
    }

    /// A peer that takes connections and says nothing (a paused process) is
    /// not waited on past the opening's time, is not taken for an older
    /// version, and is asked once, not once per caller: callers that waited
    /// for that opening get its failure, "unreachable" (nothing was sent).
    #[tokio::test]
    async fn a_silent_peer_is_asked_once_and_every_caller_is_told_nothing_was_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU64::new(0));
        let counted = accepted.clone();
        let _silent = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        let links = Arc::new(Links::new(peers()));
        let started = Instant::now();
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let (links, addr) = (links.clone(), addr.clone());
                tokio::spawn(async move {
                    links
                        .call(&addr, &LeaderOp::ReadIndex, Duration::from_secs(10))
                        .await
                })
            })
            .collect();
        for call in calls {
            let e = call.await.unwrap().err().unwrap();
            assert!(matches!(e, PeerError::Unreachable { .. }), "{e}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert!(
            !links.http_until.now(&addr),
            "a silent peer is no older version"
        );
    }

    /// Nothing listens: nothing was delivered, so the caller may try again.
    #[tokio::test]
    async fn no_listener_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let e = Links::new(peers())
            .call(&addr, &LeaderOp::Health, Duration::from_secs(2))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, PeerError::Unreachable { .. }), "{e}");
    }

    /// The request's borrowed form encodes as the owned form decodes.
    #[test]
    fn a_request_decodes_as_it_was_sent() {
        let op = LeaderOp::WriteBatch(vec![bcm_raft_store::Command::DeleteBackup { id: 3 }]);
        let bytes = codec::encode(&RequestRef { id: 300, op: &op }).unwrap();
        let back: Request = codec::decode(&bytes).unwrap();
        assert_eq!(back.id, 300);
        assert!(matches!(back.op, LeaderOp::WriteBatch(ref c) if c.len() == 1));
    }
}
