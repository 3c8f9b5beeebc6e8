//! Events a client can follow on `GET /api/v1/events`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bcm_raft_store::{NodeId, StateEvent};
use serde::Serialize;

/// Event streams open on this node, per user: each holds a connection and a
/// subscription, so one user may hold at most `http.max_event_streams_per_user`.
#[derive(Default)]
pub struct StreamCounts {
    open: Mutex<HashMap<u64, usize>>,
}

impl StreamCounts {
    /// A slot for one more stream of `user`, or None at `max`.
    pub fn open(self: &Arc<Self>, user: u64, max: usize) -> Option<StreamSlot> {
        let mut open = self.open.lock().expect("stream counts lock");
        let n = open.entry(user).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            counts: self.clone(),
            user,
        })
    }

    #[cfg(test)]
    fn of(&self, user: u64) -> usize {
        let open = self.open.lock().expect("stream counts lock");
        open.get(&user).copied().unwrap_or(0)
    }
}

/// Held by an open stream; gives its slot back when the stream ends.
pub struct StreamSlot {
    counts: Arc<StreamCounts>,
    user: u64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().expect("stream counts lock");
        if let Some(n) = open.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ClusterEvent {
    /// Seen by this node's Raft instance.
    LeaderChanged {
        leader_id: Option<NodeId>,
        term: u64,
    },
    /// Applied to the replicated state.
    State(StateEvent),
}

impl ClusterEvent {
    /// The SSE `event:` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterEvent::LeaderChanged { .. } => "leader_changed",
            ClusterEvent::State(s) => match s {
                StateEvent::ClusterInitialized { .. } => "cluster_initialized",
                StateEvent::NodeRegistered { .. } => "node_registered",
                StateEvent::NodeUpdated { .. } => "node_updated",
                StateEvent::NodeStatusChanged { .. } => "node_status_changed",
                StateEvent::BackupManagerAssigned { .. } => "backup_manager_assigned",
                StateEvent::ConfigChanged { .. } => "config_changed",
                StateEvent::ConfigDeleted { .. } => "config_deleted",
                StateEvent::UserChanged { .. } => "user_changed",
                StateEvent::UserDeleted { .. } => "user_deleted",
                StateEvent::GroupChanged { .. } => "group_changed",
                StateEvent::PlanChanged { .. } => "plan_changed",
                StateEvent::BackupChanged { .. } => "backup_changed",
                StateEvent::BackupDeleted { .. } => "backup_deleted",
                StateEvent::RestoreChanged { .. } => "restore_changed",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_max_streams_and_gets_them_back() {
        let counts = Arc::new(StreamCounts::default());
        let held: Vec<_> = (0..3).map(|_| counts.open(7, 3).unwrap()).collect();
        assert!(counts.open(7, 3).is_none());
        assert!(counts.open(8, 3).is_some(), "another user is not affected");
        drop(held);
        assert_eq!(counts.of(7), 0);
        assert!(counts.open(7, 3).is_some());
    }
}
