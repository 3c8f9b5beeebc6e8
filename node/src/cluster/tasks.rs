//! What runs beside Raft on every node: leader-change events and log lines, state
//! events for the event streams, and snapshots by applied writes.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bcm_raft_store::NodeId;
use openraft::ServerState;
use tokio::sync::broadcast;

use super::events::ClusterEvent;
use super::node::SharedNode;

/// Snapshots after `raft.snapshot_every` applied writes. openraft's own policy counts
/// log entries, and a batched entry carries many writes: counted by entries, a
/// busy node would keep a log many times longer than `snapshot_every` writes
/// (on disk, and replayed at restart).
pub(super) async fn snapshot_by_writes(node: SharedNode) {
    let every = node.cfg.raft.snapshot_every;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_snapshot = node.raft.metrics().borrow().snapshot;
    let mut baseline = node.state.writes_applied();
    loop {
        tick.tick().await;
        if *node.shutdown.borrow() {
            return;
        }
        let snapshot = node.raft.metrics().borrow().snapshot;
        let writes = node.state.writes_applied();
        if snapshot != last_snapshot {
            // A snapshot was taken (by openraft's policy, an operator or us).
            last_snapshot = snapshot;
            baseline = writes;
            continue;
        }
        if writes.saturating_sub(baseline) >= every {
            baseline = writes;
            if let Err(e) = node.raft.trigger().snapshot().await {
                tracing::warn!("cannot start a snapshot: {e}");
            }
        }
    }
}

/// Turns Raft metrics into leader-change events, the `became leader` log line and
/// the leader-since clock.
pub(super) async fn watch_leadership(node: SharedNode) {
    let mut rx = node.raft.metrics();
    let mut shutdown = node.shutdown.clone();
    let mut last_leader: Option<NodeId> = None;
    let mut last_term = 0;
    let mut was_leader = false;
    loop {
        let (leader, term, is_leader) = {
            let m = rx.borrow_and_update();
            (
                m.current_leader,
                m.current_term,
                m.state == ServerState::Leader,
            )
        };
        if leader != last_leader || term != last_term {
            if leader != last_leader {
                node.leader_changes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(term, leader_id = ?leader, "leader changed");
                let _ = node.events.send(ClusterEvent::LeaderChanged {
                    leader_id: leader,
                    term,
                });
            }
            last_leader = leader;
            last_term = term;
        }
        if is_leader && !was_leader {
            tracing::info!("became leader term={} node_id={}", term, node.cfg.id);
            *node.leader_since.lock().expect("leader_since lock") = Some(Instant::now());
        } else if !is_leader && was_leader {
            tracing::info!("stepped down term={} node_id={}", term, node.cfg.id);
            *node.leader_since.lock().expect("leader_since lock") = None;
        }
        was_leader = is_leader;
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

pub(super) async fn forward_state_events(node: SharedNode) {
    let mut rx = node.state.subscribe();
    loop {
        match rx.recv().await {
            Ok(e) => {
                let _ = node.events.send(ClusterEvent::State(e));
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "event stream lagged");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
