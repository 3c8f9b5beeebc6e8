//! The byte cap on one AppendEntries, which the Raft network adjusts as calls run out of time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bcm_model::limits;

/// The smallest [`AppendBudget`]: a call still carries at least one entry.
pub const MIN_APPEND_BYTES: usize = 64 * 1024;

/// How many bytes of entries one AppendEntries carries at most (the log
/// reader's cap, shared by every replication task of a node): starts at
/// [`limits::APPEND_BYTES`], is halved each time a call with entries did not
/// finish in time (openraft gives each call one heartbeat interval), and grows
/// back by an eighth after each call that did. Without it a follower far enough
/// behind that every call is a full one, which a slow disk or a loaded machine
/// cannot finish within the interval, would be sent the same call forever, with
/// no heartbeat between them: its leader loses its lease and writes stop.
#[derive(Clone, Debug)]
pub struct AppendBudget(Arc<AtomicUsize>);

impl Default for AppendBudget {
    fn default() -> AppendBudget {
        AppendBudget(Arc::new(limits::APPEND_BYTES.into()))
    }
}

impl AppendBudget {
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// A call with entries ran out of time: the next ones carry half as much.
    /// Returns the new budget.
    pub fn too_slow(&self) -> usize {
        let half = (self.bytes() / 2).max(MIN_APPEND_BYTES);
        self.0.store(half, Ordering::Relaxed);
        half
    }

    /// A call with entries finished in time.
    pub fn in_time(&self) {
        let now = self.bytes();
        if now < limits::APPEND_BYTES {
            let more = (now + now / 8).min(limits::APPEND_BYTES);
            self.0.store(more, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AppendBudget, MIN_APPEND_BYTES};
    use bcm_model::limits::APPEND_BYTES;

    #[test]
    fn an_append_budget_halves_on_each_slow_call_and_grows_back_on_calls_in_time() {
        let b = AppendBudget::default();
        assert_eq!(b.bytes(), APPEND_BYTES);
        assert_eq!(b.too_slow(), APPEND_BYTES / 2);
        assert_eq!(
            b.clone().too_slow(),
            APPEND_BYTES / 4,
            "clones share one budget"
        );
        for _ in 0..100 {
            b.too_slow();
        }
        assert_eq!(b.bytes(), MIN_APPEND_BYTES, "never below the floor");
        let mut calls = 0;
        while b.bytes() < APPEND_BYTES {
            let before = b.bytes();
            b.in_time();
            assert!(b.bytes() > before);
            calls += 1;
        }
        assert_eq!(b.bytes(), APPEND_BYTES, "never above the limit");
        assert!(
            (30..60).contains(&calls),
            "{calls} calls in time to grow back"
        );
    }
}
