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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bcm_raft_store::{Command, Raft, Response};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::rpc::{LeaderReply, OpResult};

/// Proposals submitted to openraft and not yet answered. One: the queue fills for
/// the whole commit round of the previous proposal, which makes the biggest
/// batches. Measured at 4, 16 and 64 clients, 1 gave more puts per second than 2
/// or 4 (openraft's core is serial anyway: more proposals in flight only split
/// the same appends into smaller ones).
const IN_FLIGHT: usize = 1;
/// At most this many commands in one entry.
const MAX_BATCH: usize = 1024;

struct Proposal {
    command: Command,
    deadline: Instant,
    reply: oneshot::Sender<LeaderReply<OpResult>>,
}

/// The queue's sending side, held by the node.
pub struct Proposer {
    tx: mpsc::UnboundedSender<Proposal>,
    counts: Arc<Counts>,
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
        tokio::spawn(run(raft, rx, counts.clone()));
        Proposer { tx, counts }
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
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + left;
        let proposal = Proposal {
            command,
            deadline,
            reply,
        };
        if self.tx.send(proposal).is_err() {
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

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Proposal>, counts: Arc<Counts>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<Proposal> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut keys: BTreeSet<String> = first
            .command
            .config_key()
            .map(String::from)
            .into_iter()
            .collect();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(p) = rx.try_recv() else { break };
            if let Some(k) = p.command.config_key() {
                if !keys.insert(k.to_string()) {
                    carried = Some(p);
                    break;
                }
            }
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

async fn submit(raft: &Raft, mut batch: Vec<Proposal>, counts: &Counts) {
    let now = Instant::now();
    // A caller that gave up is not proposed for.
    batch.retain(|p| !p.reply.is_closed() && p.deadline > now);
    if batch.is_empty() {
        return;
    }
    let left = batch
        .iter()
        .map(|p| p.deadline.saturating_duration_since(now))
        .max()
        .unwrap_or_default();
    let (mut commands, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let n = commands.len();
    counts.proposals.fetch_add(1, Ordering::Relaxed);
    counts.writes.fetch_add(n as u64, Ordering::Relaxed);
    let command = if n == 1 {
        commands.pop().expect("one command")
    } else {
        Command::Batch(commands)
    };
    let all = |replies: Vec<oneshot::Sender<_>>, a: LeaderReply<OpResult>| {
        for reply in replies {
            let _ = reply.send(a.clone());
        }
    };
    match tokio::time::timeout(left, raft.client_write(command)).await {
        Ok(Ok(resp)) => {
            let index = resp.log_id.index;
            match resp.data {
                Response::Batch(each) if n > 1 && each.len() == n => {
                    for (reply, r) in replies.into_iter().zip(each) {
                        let _ = reply.send(LeaderReply::Ok(OpResult::Written(r, index)));
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
