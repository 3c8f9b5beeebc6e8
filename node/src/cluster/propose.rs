//! The leader's proposal batching. openraft 0.9 appends each `client_write` as its
//! own log write and waits for that write's fsync before it takes the next message,
//! so one proposal per request caps the leader at one fsync per write. Here every
//! write the leader serves (its own clients' and those forwarded by followers)
//! joins a queue; while the previous proposal is on its way, the queue fills, and
//! the next proposal carries everything in it as one
//! [`Command::Batch`] entry: one append, one fsync, one replication round for all.
//! With one client a proposal holds one command and nothing waits.
//!
//! Two writes of the same config key never share a batch (a key's version is the
//! log index of its last write): the second waits for the next proposal.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bcm_raft_store::{codec, limits, Command, Raft, Response};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::cluster::rpc::{LeaderReply, OpResult};

/// Proposals submitted to openraft and not yet answered. One: the queue fills for
/// the whole commit round of the previous proposal, which makes the biggest
/// batches. Measured at 4, 16 and 64 clients, 1 gave more puts per second than 2
/// or 4 (openraft's core is serial anyway: more proposals in flight only split
/// the same appends into smaller ones).
const IN_FLIGHT: usize = 1;
/// At most this many commands in one entry (and at most `limits::ENTRY_BYTES`).
const MAX_BATCH: usize = 1024;
/// The queue holds at most this many writes and bytes; past either, a write is
/// answered "busy, retry" at once (503 with Retry-After) instead of waiting for
/// a deadline it cannot meet, and the leader keeps committing what it took.
const QUEUE_WRITES: usize = 16 * 1024;
const QUEUE_BYTES: usize = 64 * 1024 * 1024;

struct Proposal {
    command: Command,
    /// The command's encoded length.
    size: usize,
    deadline: Instant,
    reply: oneshot::Sender<LeaderReply<OpResult>>,
    /// The caller's span (its request's), for the log lines about this write.
    span: tracing::Span,
}

/// The queue's sending side, held by the node.
pub struct Proposer {
    raft: Raft,
    /// Proposals on their way (at most `IN_FLIGHT`).
    slots: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Proposal>,
    queued: Arc<Queued>,
    counts: Arc<Counts>,
}

/// What waits in the queue, in writes and bytes.
#[derive(Default)]
struct Queued {
    writes: AtomicUsize,
    bytes: AtomicUsize,
}

impl Queued {
    /// Takes room for one write of `size` bytes, unless the queue is full.
    fn reserve(&self, size: usize) -> Result<(), (usize, usize)> {
        let writes = self.writes.fetch_add(1, Ordering::AcqRel);
        let bytes = self.bytes.fetch_add(size, Ordering::AcqRel);
        if writes >= QUEUE_WRITES || bytes + size > QUEUE_BYTES {
            self.release(size);
            return Err((writes, bytes));
        }
        Ok(())
    }

    fn release(&self, size: usize) {
        self.writes.fetch_sub(1, Ordering::AcqRel);
        self.bytes.fetch_sub(size, Ordering::AcqRel);
    }
}

/// Entries proposed and the writes they carried, for `/metrics`.
#[derive(Default)]
struct Counts {
    proposals: AtomicU64,
    writes: AtomicU64,
}

impl Proposer {
    pub fn start(raft: Raft) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        let queued = Arc::new(Queued::default());
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(run(
            raft.clone(),
            rx,
            slots.clone(),
            queued.clone(),
            counts.clone(),
        ));
        Proposer {
            raft,
            slots,
            tx,
            queued,
            counts,
        }
    }

    /// (entries proposed, writes they carried) since the process started.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.proposals.load(Ordering::Relaxed),
            self.counts.writes.load(Ordering::Relaxed),
        )
    }

    /// Proposes `command` (with whatever else is waiting) and waits up to `left`
    /// for it to be committed and applied here.
    pub async fn propose(&self, command: Command, left: Duration) -> LeaderReply<OpResult> {
        let size = match codec::encoded_len(&command) {
            Ok(n) => n,
            Err(e) => return LeaderReply::Unavailable(format!("the write does not encode: {e}")),
        };
        if let Err((writes, bytes)) = self.queued.reserve(size) {
            return LeaderReply::Unavailable(format!(
                "the leader is busy: {writes} writes ({} MiB) wait to be proposed; try again shortly",
                bytes >> 20
            ));
        }
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + left;
        let proposal = Proposal {
            command,
            size,
            deadline,
            reply,
            span: tracing::Span::current(),
        };
        // Alone (nothing queued before it, nothing on its way): propose from here.
        if self.queued.writes.load(Ordering::Acquire) == 1 {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                self.queued.release(size);
                submit(&self.raft, vec![proposal], &self.counts).await;
                drop(slot);
                return match answer.await {
                    Ok(a) => a,
                    Err(_) => not_committed(left),
                };
            }
        }
        if let Err(mpsc::error::SendError(p)) = self.tx.send(proposal) {
            self.queued.release(p.size);
            return LeaderReply::Unavailable("this node is shutting down".into());
        }
        match tokio::time::timeout(left, answer).await {
            Ok(Ok(a)) => a,
            // Dropped unproposed: its deadline passed in the queue, or the node stops.
            Ok(Err(_)) if Instant::now() >= deadline => not_committed(left),
            Ok(Err(_)) => LeaderReply::Unavailable("this node is shutting down".into()),
            Err(_) => not_committed(left),
        }
    }
}

fn not_committed(left: Duration) -> LeaderReply<OpResult> {
    LeaderReply::Unavailable(format!(
        "the write was not committed within {left:?} (is a majority of voters up?); it may still be applied later"
    ))
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Proposal>,
    slots: Arc<Semaphore>,
    queued: Arc<Queued>,
    counts: Arc<Counts>,
) {
    let mut carried: Option<Proposal> = None;
    loop {
        // The first write, then a free slot: while waiting for the slot more
        // writes queue up and join the batch. (Holding no slot while the queue is
        // empty leaves it to a lone write's own task.)
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => {
                    queued.release(p.size);
                    p
                }
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut keys: BTreeSet<String> = first
            .command
            .config_key()
            .map(String::from)
            .into_iter()
            .collect();
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(p) = rx.try_recv() else { break };
            queued.release(p.size);
            let same_key = p
                .command
                .config_key()
                .is_some_and(|k| !keys.insert(k.to_string()));
            if same_key || !fits(bytes, p.size) {
                carried = Some(p);
                break;
            }
            bytes += p.size;
            batch.push(p);
        }
        let raft = raft.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            submit(&raft, batch, &counts).await;
            drop(slot);
        });
    }
}

/// Says in the write's own span (its request's) whether it was committed, and at
/// which index: with `BCM_LOG=bcm=debug` a write can be followed in the log.
pub fn log_outcome<E: std::fmt::Debug>(
    span: &tracing::Span,
    answer: Result<&LeaderReply<OpResult>, E>,
) {
    span.in_scope(|| match answer {
        Ok(LeaderReply::Ok(OpResult::Written(_, index))) => {
            tracing::debug!(index, "committed")
        }
        other => tracing::debug!(answer = ?other, "not committed"),
    });
}

/// Whether a command of `size` bytes still fits an entry that holds `bytes` of
/// commands (with the batch's framing: a length per command).
fn fits(bytes: usize, size: usize) -> bool {
    bytes + size + 2 * BATCH_FRAMING <= limits::ENTRY_BYTES
}

/// Room for the framing postcard adds around each command in a batch, and the
/// batch's own tag and length: a few bytes, counted generously.
const BATCH_FRAMING: usize = 16;

/// Drops the writes whose callers gave up or whose deadline passed, and returns
/// the longest wait any of the others allows (None when none is left): each caller
/// still stops at its own deadline.
pub(super) fn keep_live<T>(
    batch: &mut Vec<T>,
    gone: impl Fn(&T) -> bool,
    deadline: impl Fn(&T) -> Instant,
) -> Option<Duration> {
    let now = Instant::now();
    batch.retain(|p| !gone(p) && deadline(p) > now);
    batch
        .iter()
        .map(|p| deadline(p).saturating_duration_since(now))
        .max()
}

async fn submit(raft: &Raft, mut batch: Vec<Proposal>, counts: &Counts) {
    let Some(left) = keep_live(&mut batch, |p| p.reply.is_closed(), |p| p.deadline) else {
        return;
    };
    let n = batch.len();
    for p in &batch {
        p.span
            .in_scope(|| tracing::debug!(batch = n, bytes = p.size, "proposing"));
    }
    let (mut commands, replies): (Vec<Command>, Vec<_>) = batch
        .into_iter()
        .map(|p| (p.command, (p.reply, p.span)))
        .unzip();
    counts.proposals.fetch_add(1, Ordering::Relaxed);
    counts.writes.fetch_add(n as u64, Ordering::Relaxed);
    let command = if n == 1 {
        commands.pop().expect("one command")
    } else {
        Command::Batch(commands)
    };
    let answer = |(reply, span): (oneshot::Sender<_>, tracing::Span), a: LeaderReply<OpResult>| {
        log_outcome::<()>(&span, Ok(&a));
        let _ = reply.send(a);
    };
    let all = |replies: Vec<_>, a: LeaderReply<OpResult>| {
        for reply in replies {
            answer(reply, a.clone());
        }
    };
    match tokio::time::timeout(left, raft.client_write(command)).await {
        Ok(Ok(resp)) => {
            let index = resp.log_id.index;
            match resp.data {
                Response::Batch(each) if n > 1 && each.len() == n => {
                    for (reply, r) in replies.into_iter().zip(each) {
                        answer(reply, LeaderReply::Ok(OpResult::Written(r, index)));
                    }
                }
                r if n == 1 => all(replies, LeaderReply::Ok(OpResult::Written(r, index))),
                r => all(
                    replies,
                    LeaderReply::Unavailable(format!(
                        "a batch of {n} writes was answered with {r:?}"
                    )),
                ),
            }
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => all(
            replies,
            LeaderReply::NotLeader {
                leader_id: f.leader_id,
                leader_rpc: f.leader_node.map(|n| n.rpc_addr),
            },
        ),
        Ok(Err(e)) => all(
            replies,
            LeaderReply::Unavailable(format!("the write failed: {e}")),
        ),
        Err(_) => all(replies, not_committed(left)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_command_always_fits_an_entry_and_a_batch_stops_at_the_entry_limit() {
        // The largest command alone, with the batch's framing, fits.
        assert!(fits(0, limits::COMMAND_BYTES));
        // Two of them do not.
        assert!(!fits(limits::COMMAND_BYTES, limits::COMMAND_BYTES));
        // A batch of small commands grows to just under the limit.
        let small = 1000;
        let mut bytes = 0;
        let mut n = 0;
        while fits(bytes, small) {
            bytes += small;
            n += 1;
        }
        assert!(
            bytes <= limits::ENTRY_BYTES && bytes + small + 2 * BATCH_FRAMING > limits::ENTRY_BYTES
        );
        assert!(n > 1000);
    }

    #[test]
    fn the_queue_refuses_past_its_bytes_and_gives_room_back() {
        let q = Queued::default();
        let mib = 1 << 20;
        for _ in 0..QUEUE_BYTES / mib {
            q.reserve(mib).unwrap();
        }
        assert!(q.reserve(mib).is_err());
        assert!(q.reserve(1).is_err(), "full is full, whatever the size");
        q.release(mib);
        q.reserve(mib).unwrap();
        assert_eq!(q.bytes.load(Ordering::SeqCst), QUEUE_BYTES);
    }
}
