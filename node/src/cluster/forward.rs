//! Writes a follower forwards to the leader travel in batches: one cluster-internal
//! request carries every write that arrived while the previous request was being
//! prepared, instead of one HTTP request each. Under load this divides the
//! follower's and the leader's HTTP work per write by the batch size; with one
//! client a batch holds one write and costs what a single forward did.
//!
//! Batches travel on the forward stream (forward_stream/), one connection per
//! leader with several batches under way at once; to a leader of an older
//! version, over HTTP.
//!
//! A batch is delivered whole or not at all: when the request fails before the
//! leader answers, every write in it gets the same error, and the caller decides
//! (as for a single forward) whether it is safe to try again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bcm_raft_store::{codec, limits, Command};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::forward_stream::Links;
use crate::cluster::rpc::{LeaderOp, LeaderReply, OpResult, PeerError, Peers};

/// At most this many writes in one request (and at most `limits::FORWARD_BYTES`).
const MAX_BATCH: usize = 512;
/// Writes (and their bytes) waiting here or on their way to the leader; past
/// either bound a write is answered "busy, retry" at once (503 with Retry-After).
const IN_FLIGHT_WRITES: usize = 16 * 1024;
const IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;

type Answer = Result<LeaderReply<OpResult>, PeerError>;

struct Pending {
    leader_rpc: String,
    command: Command,
    /// The command's encoded length.
    size: usize,
    deadline: Instant,
    reply: oneshot::Sender<Answer>,
    /// The caller's span (its request's), for the log lines about this write.
    span: tracing::Span,
}

/// The sending side, held by the node.
pub struct Forwarder {
    tx: mpsc::UnboundedSender<Pending>,
    in_flight: Arc<InFlight>,
    links: Arc<Links>,
}

/// Writes this node has taken to forward and not yet answered.
#[derive(Default)]
struct InFlight {
    writes: AtomicUsize,
    bytes: AtomicUsize,
}

impl Forwarder {
    /// Starts the batching task; it ends when the node (the last `Forwarder`) goes.
    pub fn start(peers: Peers) -> Forwarder {
        let (tx, rx) = mpsc::unbounded_channel();
        let links = Arc::new(Links::new(peers));
        tokio::spawn(batcher(links.clone(), rx));
        Forwarder {
            tx,
            in_flight: Arc::default(),
            links,
        }
    }

    /// Sends other work than a write (a read-index round, a login slot, ...)
    /// to the leader at `leader_rpc` on the same stream, alone, and waits at
    /// most `timeout` for its answer.
    pub async fn call(&self, leader_rpc: &str, op: &LeaderOp, timeout: Duration) -> Answer {
        self.links.call(leader_rpc, op, timeout).await
    }

    /// Sends `command` to the leader at `leader_rpc` (in a batch with others) and
    /// waits at most `timeout` for its answer.
    pub async fn write(&self, leader_rpc: &str, command: Command, timeout: Duration) -> Answer {
        let size = codec::encoded_len(&command).map_err(|e| PeerError::Decode {
            addr: leader_rpc.to_string(),
            message: e.to_string(),
        })?;
        let writes = self.in_flight.writes.fetch_add(1, Ordering::AcqRel);
        let bytes = self.in_flight.bytes.fetch_add(size, Ordering::AcqRel);
        let _taken = Taken {
            in_flight: &self.in_flight,
            size,
        };
        if writes >= IN_FLIGHT_WRITES || bytes + size > IN_FLIGHT_BYTES {
            return Ok(LeaderReply::Unavailable(format!(
                "this node is busy: {writes} writes ({} MiB) wait for the leader; try again shortly",
                bytes >> 20
            )));
        }
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        let pending = Pending {
            leader_rpc: leader_rpc.to_string(),
            command,
            size,
            deadline,
            reply,
            span: tracing::Span::current(),
        };
        let unreachable = |message: &str| PeerError::Unreachable {
            addr: leader_rpc.to_string(),
            message: message.to_string(),
        };
        if self.tx.send(pending).is_err() {
            return Err(unreachable("this node is shutting down"));
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(a)) => a,
            // Dropped unsent (nothing was delivered): its deadline passed in the
            // queue, or the node stops.
            Ok(Err(_)) if Instant::now() >= deadline => Err(unreachable(
                "the write waited past its deadline in this node's queue; it was not sent",
            )),
            Ok(Err(_)) => Err(unreachable("this node is shutting down")),
            Err(_) => Err(PeerError::Timeout {
                addr: leader_rpc.to_string(),
                timeout,
            }),
        }
    }
}

/// Gives back a write's room in the in-flight bounds when its caller is done.
struct Taken<'a> {
    in_flight: &'a InFlight,
    size: usize,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.in_flight.writes.fetch_sub(1, Ordering::AcqRel);
        self.in_flight.bytes.fetch_sub(self.size, Ordering::AcqRel);
    }
}

async fn batcher(links: Arc<Links>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Everything already waiting goes with the first, up to the batch's bounds.
        // Batches to different addresses (a leader change in between) go separately.
        let mut by_leader: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        let mut n = 1;
        let mut bytes = first.size;
        by_leader
            .entry(first.leader_rpc.clone())
            .or_default()
            .push(first);
        while n < MAX_BATCH {
            let Ok(p) = rx.try_recv() else { break };
            if bytes + p.size + FRAMING > limits::FORWARD_BYTES {
                carried = Some(p);
                break;
            }
            bytes += p.size;
            by_leader.entry(p.leader_rpc.clone()).or_default().push(p);
            n += 1;
        }
        for (addr, batch) in by_leader {
            // Several batches may be in flight at once: a batch never waits for
            // the previous one's commit.
            tokio::spawn(send(links.clone(), addr, batch));
        }
    }
}

/// Room for the framing of one more write in a batch request, counted generously.
const FRAMING: usize = 16;

async fn send(links: Arc<Links>, addr: String, mut batch: Vec<Pending>) {
    let gone = |p: &Pending| p.reply.is_closed();
    let Some(timeout) = super::propose::keep_live(&mut batch, gone, |p| p.deadline) else {
        return;
    };
    let n = batch.len();
    for p in &batch {
        p.span
            .in_scope(|| tracing::debug!(leader = %addr, batch = n, "forwarding to the leader"));
    }
    let (commands, replies): (Vec<Command>, Vec<_>) = batch
        .into_iter()
        .map(|p| (p.command, (p.reply, p.span)))
        .unzip();
    let op = if n == 1 {
        LeaderOp::Write(commands.into_iter().next().expect("one command"))
    } else {
        LeaderOp::WriteBatch(commands)
    };
    let answer = links.call(&addr, &op, timeout).await;
    let give = |(reply, span): (oneshot::Sender<Answer>, tracing::Span), a: Answer| {
        crate::cluster::propose::log_outcome(&span, a.as_ref());
        let _ = reply.send(a);
    };
    match answer {
        Ok(LeaderReply::Ok(OpResult::Batch(each))) if each.len() == n => {
            for (reply, a) in replies.into_iter().zip(each) {
                give(reply, Ok(a));
            }
        }
        Ok(LeaderReply::Ok(OpResult::Batch(each))) => {
            let e = PeerError::Decode {
                addr,
                message: format!("{} answers to a batch of {n} writes", each.len()),
            };
            for reply in replies {
                give(reply, Err(e.clone()));
            }
        }
        other => {
            // One answer (a single write, or a refusal of the whole batch) for all.
            for reply in replies {
                give(reply, other.clone());
            }
        }
    }
}
