//! Time as the replicated state carries it.

/// Milliseconds since the Unix epoch, as measured by the proposer.
pub type Millis = u64;
