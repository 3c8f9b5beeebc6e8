//! Event streams open on this node, per user: each holds a connection and a
//! subscription, so one user may hold at most `http.max_event_streams_per_user`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open streams by user id.
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
