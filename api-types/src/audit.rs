//! The audit log: who did what, when, from which address, and how it ended.

use serde::{Deserialize, Serialize};

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditView {
    /// Grows by one with every record, the same on every node.
    pub id: u64,
    /// When it was asked (Unix milliseconds, the clock of the node that took the request).
    pub at_ms: u64,
    /// A user name, `node N` for what a node does by itself, or `anonymous`.
    pub actor: String,
    /// The client's address, when there is one.
    pub addr: Option<String>,
    /// What was done: `login`, `login.failed`, `users.create`, `nodes.drain`, ...
    pub action: String,
    /// What it was done to: a user or group name, `node 3`, a config key, ...
    pub target: String,
    /// What was asked, in short; never a password, token or config value.
    pub detail: String,
    /// `ok` or `refused`.
    pub outcome: String,
    /// Why it was refused.
    pub reason: Option<String>,
}

crate::filters! {
    /// `GET /audit` filters; the newest records first.
    AuditFilter {
        /// Only what this user did (the actor, any case).
        user: String,
        /// Only actions starting with this (`users.` or `login`).
        action: String,
        /// Only records at or after this instant: RFC 3339 or Unix milliseconds.
        since: String,
        /// Only records before this instant: RFC 3339 or Unix milliseconds.
        until: String,
        /// Only records with a smaller id: the next page starts before the last id seen.
        before: u64,
    }
}
