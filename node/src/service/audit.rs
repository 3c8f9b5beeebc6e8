//! The audit log: who did what, when, from which address, and how it ended.
//!
//! Every write a user asks for goes through [`super::write`] with an [`Audit`]
//! (made by [`Caller::audit`]): the command is proposed as
//! `Command::Audited`, so its record is in the same log entry as the write and
//! carries the outcome of applying it. A request refused by the service's rules
//! before anything was proposed (403, 404, 409, 422, ...) is recorded too, by
//! [`Audit::run`]; an operation that is no write of its own (decommissioning,
//! a snapshot, a verify) is recorded when it ends, by [`Audit::run_alone`].
//! Logins and failed logins are records of their own ([`login`]). What a node
//! does by itself (the backup manager's jobs) is not recorded; the cluster
//! manager's role and membership changes are (`cluster/audit.rs`).
//!
//! An entry holds names, keys, ids and the groups or roles given, never a
//! password, a hash, a token or a config value.

use std::fmt::Display;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use bcm_api::{AuditFilter, Login};
use bcm_raft_store::{AuditEntry, AuditOutcome, AuditRecord, Command};

use super::auth::{self, Caller, Issued};
use super::OpError;
use crate::cluster::logins::LoginLimiter;
use crate::cluster::{leader, now_ms, Node};

/// The actor of a record whose user is not known.
pub const ANONYMOUS: &str = "anonymous";

/// One request's write, as the audit log will record it.
pub struct Audit {
    entry: AuditEntry,
    /// Whether its command went to the leader (and so records itself).
    proposed: AtomicBool,
}

impl Caller {
    /// The record of `action` (`users.create`, ...) on `target`, asked by this caller.
    pub fn audit(&self, action: &str, target: impl Display) -> Audit {
        Audit {
            entry: AuditEntry {
                at: now_ms(),
                actor: self.name.clone(),
                addr: self.addr.map(|a| a.to_string()),
                action: action.to_string(),
                target: target.to_string(),
                detail: String::new(),
            }
            .bounded(),
            proposed: AtomicBool::new(false),
        }
    }
}

impl Audit {
    /// What was asked, in short (`groups: operator`); never a secret.
    pub fn detail(mut self, detail: impl Into<String>) -> Audit {
        self.entry.detail = detail.into();
        self.entry = self.entry.bounded();
        self
    }

    /// `command`, to be proposed with this record.
    pub(super) fn wrap(&self, command: Command) -> Command {
        self.proposed.store(true, Ordering::Relaxed);
        Command::Audited {
            entry: self.entry.clone(),
            inner: Box::new(command),
        }
    }

    /// Runs `op`, which proposes its write with this record ([`super::write`]);
    /// a refusal before it proposed anything is recorded on its own.
    pub async fn run<T>(
        &self,
        node: &Node,
        op: impl Future<Output = Result<T, OpError>>,
    ) -> Result<T, OpError> {
        let result = op.await;
        if let Err(e) = &result {
            if !self.proposed.load(Ordering::Relaxed) && is_refusal(e) {
                record(node, self.entry.clone(), refused(e)).await;
            }
        }
        result
    }

    /// Runs `op`, an operation that is no write of its own (the leader runs it),
    /// and records how it ended.
    pub async fn run_alone<T>(
        &self,
        node: &Node,
        op: impl Future<Output = Result<T, OpError>>,
    ) -> Result<T, OpError> {
        let result = op.await;
        match &result {
            Ok(_) => record(node, self.entry.clone(), AuditOutcome::Ok).await,
            Err(e) if is_refusal(e) => record(node, self.entry.clone(), refused(e)).await,
            Err(_) => {}
        }
        result
    }
}

/// The errors that say the request was refused (and why). Not: a bad token or
/// too many logins (nobody to name, and recording them would let anyone fill the
/// log), nor the cluster being unable to take a write just then (recording would
/// fail alike).
fn is_refusal(e: &OpError) -> bool {
    !matches!(
        e,
        OpError::Unauthorized(_)
            | OpError::TooManyRequests { .. }
            | OpError::Unavailable(_)
            | OpError::DiskFull(_)
            | OpError::Internal(_)
    )
}

fn refused(e: &OpError) -> AuditOutcome {
    AuditOutcome::Refused(e.to_string())
}

/// Proposes a record alone and waits for it. A record that cannot be written
/// (no leader within the write timeout) is logged and given up: the request it
/// describes is answered regardless.
async fn record(node: &Node, entry: AuditEntry, outcome: AuditOutcome) {
    let action = entry.action.clone();
    let command = Command::Audit { entry, outcome };
    if let Err(e) = leader::write(node, command).await {
        tracing::warn!(action, "audit record not written: {e}");
    }
}

/// Logs in ([`auth::login`]) and records it: `login` with the user's name, or
/// `login.failed` with the name when such a user exists (`anonymous` when not: a
/// password typed into the name field must not end up in the log) and why it
/// failed. Logins refused by the limiter (429) are not recorded: the failures
/// that led to it are. The record is written before the token is handed out.
pub async fn login(
    node: &Node,
    limiter: &LoginLimiter,
    from: IpAddr,
    login: Login,
) -> Result<Issued, OpError> {
    let name = login.username.clone();
    let result = auth::login(node, limiter, from, login).await;
    let (action, actor, outcome) = match &result {
        Ok(issued) => ("login", issued.user.name.clone(), AuditOutcome::Ok),
        Err(OpError::Unauthorized(_)) => {
            let (actor, why) = node.state.read(|d| match d.state.user_by_name(&name) {
                Some(u) if !u.enabled => (u.name.clone(), "disabled user"),
                Some(u) => (u.name.clone(), "wrong password"),
                None => (ANONYMOUS.to_string(), "unknown user"),
            });
            ("login.failed", actor, AuditOutcome::Refused(why.into()))
        }
        Err(_) => return result,
    };
    let entry = AuditEntry {
        at: now_ms(),
        target: actor.clone(),
        actor,
        addr: Some(from.to_string()),
        action: action.into(),
        detail: String::new(),
    };
    record(node, entry, outcome).await;
    result
}

/// Records a write refused because the caller lacks `permission` (the route's):
/// the action is the permission, the target the request's method and path.
pub async fn denied(node: &Node, who: &Caller, method: &str, path: &str, permission: &str) {
    let audit = who.audit(permission, format!("{method} {path}"));
    let why = format!("lacks the permission {permission:?}");
    record(node, audit.entry, AuditOutcome::Refused(why)).await;
}

/// The records matching `filter`, newest first.
pub fn list(node: &Node, filter: &AuditFilter) -> Result<Vec<AuditRecord>, OpError> {
    let instant = |field: &str, v: &Option<String>| -> Result<Option<u64>, OpError> {
        // Empty is no bound, as an absent parameter.
        v.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                bcm_api::time::parse_instant(s).ok_or_else(|| OpError::BadRequest {
                    field: Some(field.into()),
                    message: format!(
                        "{field}: an instant is RFC 3339 (2026-11-18T11:06:40Z) or Unix \
                         milliseconds, not {s:?}"
                    ),
                })
            })
            .transpose()
    };
    let since = instant("since", &filter.since)?;
    let until = instant("until", &filter.until)?;
    let user = filter.user.as_deref();
    let action = filter.action.as_deref().unwrap_or("");
    Ok(node.state.read(|d| {
        d.state
            .audit
            .newest_first()
            .filter(|r| filter.before.is_none_or(|b| r.id < b))
            .filter(|r| user.is_none_or(|u| r.entry.actor.eq_ignore_ascii_case(u)))
            .filter(|r| r.entry.action.starts_with(action))
            .filter(|r| since.is_none_or(|s| r.entry.at >= s))
            .filter(|r| until.is_none_or(|u| r.entry.at < u))
            .cloned()
            .collect()
    }))
}
