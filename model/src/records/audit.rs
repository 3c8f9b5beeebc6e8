//! The audit log: who did what, when, from which address, and how it ended.
//! (Its transitions are in `state/audit.rs`.)
//!
//! A record is written by applying a command, so every node holds the same
//! records with the same ids: the proposer says who asked and what (an
//! [`AuditEntry`]), applying adds the id and, for a write, its outcome. Only the
//! newest [`crate::limits::AUDIT_RECORDS`] are kept; the Postgres export keeps
//! every record it saw.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::time::Millis;
use crate::limits;

/// Who asked for what, from where, as the proposer saw it.
///
/// Never a password, a password hash, a token or a config value: the service
/// layer writes what a person needs to follow what happened (a name, a key, a
/// node, the groups given) and nothing a secret could hide in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it was asked: the proposer's clock (Unix milliseconds).
    pub at: Millis,
    /// A user name, `node N` for what a node does by itself, or `anonymous`.
    pub actor: String,
    /// The client's address, when there is one.
    pub addr: Option<String>,
    /// What was done, `<resource>.<verb>`: `users.create`, `nodes.drain`,
    /// `login`, `login.failed`, ...
    pub action: String,
    /// What it was done to: a user or group name, `node 3`, a config key, ...
    pub target: String,
    /// What was asked, in short (`groups: operator`, `roles: storage`); may be empty.
    pub detail: String,
}

impl AuditEntry {
    /// This entry with its texts cut to their bounds (as a record keeps it).
    pub fn bounded(&self) -> AuditEntry {
        AuditEntry {
            at: self.at,
            actor: cut(&self.actor, AUDIT_NAME_BYTES),
            addr: self.addr.as_deref().map(|a| cut(a, AUDIT_NAME_BYTES)),
            action: cut(&self.action, AUDIT_NAME_BYTES),
            target: cut(&self.target, AUDIT_TARGET_BYTES),
            detail: cut(&self.detail, AUDIT_TEXT_BYTES),
        }
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditOutcome {
    Ok,
    /// Refused, and why (nothing changed).
    Refused(String),
}

impl AuditOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Refused(_) => "refused",
        }
    }

    /// Why it was refused.
    pub fn reason(&self) -> Option<&str> {
        match self {
            AuditOutcome::Ok => None,
            AuditOutcome::Refused(why) => Some(why),
        }
    }
}

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Grows by one with every record (ids start at 1), on every node alike.
    pub id: u64,
    pub entry: AuditEntry,
    pub outcome: AuditOutcome,
}

/// The longest actor, address and action kept (bytes; longer ones are cut).
pub const AUDIT_NAME_BYTES: usize = 64;
/// The longest target kept (a config key is at most 256).
pub const AUDIT_TARGET_BYTES: usize = 256;
/// The longest detail and refusal reason kept.
pub const AUDIT_TEXT_BYTES: usize = 300;

/// The newest audit records, oldest first, and the id the next one gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    next_id: u64,
    records: VecDeque<AuditRecord>,
}

impl AuditLog {
    /// Appends a record of `entry` with `outcome`, its texts cut to their bounds,
    /// and forgets the oldest beyond [`limits::AUDIT_RECORDS`]. Returns its id.
    pub(crate) fn push(&mut self, entry: &AuditEntry, outcome: AuditOutcome) -> u64 {
        let id = self.next_id.max(1);
        self.next_id = id + 1;
        let entry = entry.bounded();
        let outcome = match outcome {
            AuditOutcome::Refused(why) => AuditOutcome::Refused(cut(&why, AUDIT_TEXT_BYTES)),
            ok => ok,
        };
        self.records.push_back(AuditRecord { id, entry, outcome });
        while self.records.len() > limits::AUDIT_RECORDS {
            self.records.pop_front();
        }
        id
    }

    /// The records kept, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &AuditRecord> {
        self.records.iter().rev()
    }

    /// The records kept with an id above `id`, oldest first.
    pub fn after(&self, id: u64) -> impl Iterator<Item = &AuditRecord> {
        // Ids grow along the deque: skip the older ones without looking at each.
        let start = self.records.partition_point(|r| r.id <= id);
        self.records.range(start..)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            at: 5,
            actor: "alice".into(),
            addr: Some("10.0.0.7".into()),
            action: action.into(),
            target: "bob".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn ids_grow_and_only_the_newest_are_kept() {
        let mut log = AuditLog::default();
        for i in 0..limits::AUDIT_RECORDS + 5 {
            assert_eq!(
                log.push(&entry("users.create"), AuditOutcome::Ok),
                i as u64 + 1
            );
        }
        assert_eq!(log.len(), limits::AUDIT_RECORDS);
        let newest: Vec<u64> = log.newest_first().take(2).map(|r| r.id).collect();
        let last = limits::AUDIT_RECORDS as u64 + 5;
        assert_eq!(newest, vec![last, last - 1]);
        assert_eq!(log.newest_first().last().unwrap().id, 6);
        let after: Vec<u64> = log.after(last - 2).map(|r| r.id).collect();
        assert_eq!(after, vec![last - 1, last]);
        assert_eq!(log.after(0).count(), limits::AUDIT_RECORDS);
    }

    #[test]
    fn texts_are_cut_at_a_character_boundary() {
        let mut log = AuditLog::default();
        let long = AuditEntry {
            target: "é".repeat(AUDIT_TARGET_BYTES),
            actor: "a".repeat(1000),
            ..entry("config.set")
        };
        log.push(&long, AuditOutcome::Refused("x".repeat(5000)));
        let r = log.newest_first().next().unwrap();
        assert_eq!(r.entry.target, "é".repeat(AUDIT_TARGET_BYTES / 2));
        assert_eq!(r.entry.actor.len(), AUDIT_NAME_BYTES);
        assert_eq!(r.outcome.reason().unwrap().len(), AUDIT_TEXT_BYTES);
        assert_eq!(cut("aé", 2), "a");
    }
}
