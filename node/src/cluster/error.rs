//! The cluster's refusals: what can go wrong when the leader is asked to do
//! something, typed on the wire between nodes.

use serde::{Deserialize, Serialize};

/// What can go wrong when the leader is asked to do something. It travels typed
/// between nodes (a follower gets the leader's refusal as it was), and the service
/// layer maps each to one of its errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ClusterError {
    #[error("{0}")]
    NoLeader(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
    /// The write is larger than one command may be (413).
    #[error("{0}")]
    TooLarge(String),
}
