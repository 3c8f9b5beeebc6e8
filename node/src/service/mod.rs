//! The service layer: every operation of the API, the UI and the CLI, one typed
//! function each (`users::create(node, NewUser) -> Result<User, OpError>`), holding
//! the business rules (names, passwords, paths, hashing). HTTP handlers only parse,
//! authorise, call one of these and map [`OpError`] to a status. Writes go through
//! the cluster (`cluster::leader`), which routes them to the leader.

pub mod audit;
pub mod auth;
pub mod backup_data;
pub mod backups;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod groups;
pub mod nodes;
pub mod plans;
pub mod storage;
pub mod users;

use bcm_raft_store::{Command, Rejection, Response};

use crate::cluster::error::ClusterError;
use crate::cluster::leader;
use crate::cluster::Node;

/// Why an operation did nothing. Each maps to one HTTP status (http/api/mod.rs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// Bad input (422); `field` names the request field at fault.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// A malformed request parameter (400).
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    /// No valid credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts: wait `retry_after` seconds (429).
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    #[error("{0}")]
    NotFound(String),
    /// In the way of something (409); `field` names the request field, if one.
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    /// A compare-and-set whose version did not match (412).
    #[error("{0}")]
    VersionMismatch(String),
    /// Larger than accepted (413).
    #[error("{message}")]
    TooLarge {
        field: Option<String>,
        message: String,
    },
    /// A quota on the replicated state (507).
    #[error("{message}")]
    Quota { quota: String, message: String },
    /// The data disk of the node that took the request is (nearly) full (507).
    #[error("{0}")]
    DiskFull(String),
    /// No leader, no quorum, or too busy now: try again shortly (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug.
    #[error("{0}")]
    Internal(String),
}

impl OpError {
    /// 422 naming `field`: "`field`: detail".
    pub fn invalid(field: &str, detail: impl std::fmt::Display) -> OpError {
        OpError::Invalid {
            field: Some(field.to_string()),
            message: format!("{field}: {detail}"),
        }
    }

    /// 409 with no field.
    pub fn conflict(message: impl Into<String>) -> OpError {
        OpError::Conflict {
            field: None,
            message: message.into(),
        }
    }

    /// 404: "`what` `id` does not exist".
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> OpError {
        OpError::NotFound(format!("{what} {id} does not exist"))
    }

    /// A command result the caller did not expect: a bug, reported as such.
    pub fn unexpected(other: &Response) -> OpError {
        OpError::Internal(format!("unexpected result {other:?}"))
    }
}

impl From<ClusterError> for OpError {
    fn from(e: ClusterError) -> OpError {
        match e {
            ClusterError::NoLeader(m) | ClusterError::Unavailable(m) => OpError::Unavailable(m),
            ClusterError::NotFound(m) => OpError::NotFound(m),
            ClusterError::Conflict(m) => OpError::conflict(m),
            ClusterError::Internal(m) => OpError::Internal(m),
            ClusterError::TooLarge(m) => OpError::TooLarge {
                field: None,
                message: m,
            },
        }
    }
}

impl From<Rejection> for OpError {
    fn from(r: Rejection) -> OpError {
        let message = r.to_string();
        match r {
            Rejection::NotFound { .. } => OpError::NotFound(message),
            Rejection::AlreadyExists { .. }
            | Rejection::AlreadyInitialized
            | Rejection::StaleEpoch { .. }
            | Rejection::Conflict(_) => OpError::conflict(message),
            Rejection::VersionMismatch { .. } => OpError::VersionMismatch(message),
            Rejection::NotInitialized => OpError::Unavailable(message),
            Rejection::Invalid(_) => OpError::Invalid {
                field: None,
                message,
            },
            Rejection::QuotaExceeded { quota, .. } => OpError::Quota { quota, message },
        }
    }
}

impl From<crate::crypto::HashError> for OpError {
    fn from(e: crate::crypto::HashError) -> OpError {
        match e {
            crate::crypto::HashError::Busy(_) => OpError::Unavailable(e.to_string()),
            crate::crypto::HashError::Failed(m) => OpError::Internal(m),
        }
    }
}

/// A record a write answers with (`Response::User` for a user, ...).
pub trait Answer: Sized {
    /// The record, or the answer back when it is not one.
    fn of(r: Response) -> Result<Self, Box<Response>>;
}

/// `Variant => Record`; `as Box` when the response holds the record boxed.
macro_rules! answers {
    ($($variant:ident => $record:ty $(as $boxed:ident)?),* $(,)?) => {$(
        impl Answer for $record {
            fn of(r: Response) -> Result<$record, Box<Response>> {
                match r {
                    Response::$variant(x) => Ok($(*$boxed::from)?(x)),
                    other => Err(Box::new(other)),
                }
            }
        }
    )*};
}

answers!(
    User => bcm_raft_store::User,
    Group => bcm_raft_store::Group,
    Config => bcm_raft_store::ConfigEntry,
    Node => bcm_raft_store::NodeRecord,
    Plan => bcm_raft_store::Plan,
    Backup => bcm_raft_store::Backup as Box,
    Restore => bcm_raft_store::Restore as Box,
);

/// A write that answers with nothing (`Response::Done`).
impl Answer for () {
    fn of(r: Response) -> Result<(), Box<Response>> {
        match r {
            Response::Done => Ok(()),
            other => Err(Box::new(other)),
        }
    }
}

/// Proposes `command` through the leader, with its audit record (`audit`), and
/// returns the record it answers with: a refusal becomes its [`OpError`], any
/// other answer is a bug. Refused (507) while this node's data disk is full: it
/// could not take the write into its own log, and a client reads its own writes
/// from the node it wrote through.
pub async fn write<T: Answer>(
    node: &Node,
    audit: &audit::Audit,
    command: Command,
) -> Result<T, OpError> {
    propose(node, audit.wrap(command)).await
}

/// [`write`] without a record of its own: for a step that prepares the audited
/// write of the same request.
async fn propose<T: Answer>(node: &Node, command: Command) -> Result<T, OpError> {
    if let Some(why) = node.disk.refusal(node.cfg.id) {
        return Err(OpError::DiskFull(why));
    }
    match leader::write(node, command).await? {
        Response::Rejected(r) => Err(r.into()),
        r => T::of(r).map_err(|other| OpError::unexpected(&other)),
    }
}

/// A record of the state, found by `find` (404 naming `what` `id` otherwise).
pub fn lookup<T: Clone>(
    node: &Node,
    what: &str,
    id: impl std::fmt::Display,
    find: impl FnOnce(&bcm_raft_store::ClusterState) -> Option<&T>,
) -> Result<T, OpError> {
    node.state
        .read(|d| find(&d.state).cloned())
        .ok_or_else(|| OpError::not_found(what, id))
}

/// Brings this node's state up to everything committed before the call (a read
/// barrier: a 503 when no leader can confirm). A write that checks or builds on
/// records (a user's groups, a group's permissions, a node's roles) calls it
/// first, so that it never decides on a state older than a write its client
/// already saw acknowledged through another node: a stale copy could refuse a
/// fresh record as unknown, or let a caller grant again what was just taken
/// away.
pub async fn caught_up(node: &Node) -> Result<(), OpError> {
    Ok(leader::read_barrier(node).await?)
}

/// Something a write refers to, read from this node's state by `find`. When it
/// is not there, this node may only lag the write that made it (through
/// another node a moment ago): it is read again once this node has applied
/// everything committed before the call (a read barrier), so that no write is
/// refused for a lag. A 503 when no leader can confirm.
pub async fn referred<T>(
    node: &Node,
    find: impl Fn(&bcm_raft_store::ClusterState) -> Option<T>,
) -> Result<Option<T>, OpError> {
    if let Some(found) = node.state.read(|d| find(&d.state)) {
        return Ok(Some(found));
    }
    caught_up(node).await?;
    Ok(node.state.read(|d| find(&d.state)))
}

/// Makes a read linearizable when asked (`?consistency=linearizable`).
pub async fn consistent(node: &Node, consistency: Option<&str>) -> Result<(), OpError> {
    match consistency {
        None | Some("local") => Ok(()),
        Some("linearizable") => Ok(leader::read_barrier(node).await?),
        Some(other) => Err(OpError::BadRequest {
            field: Some("consistency".into()),
            message: format!("consistency must be \"local\" or \"linearizable\", not {other:?}"),
        }),
    }
}

/// A list's `q`: part of a name (any case), or the exact id.
pub struct Search(Option<String>);

impl Search {
    pub fn new(q: Option<&str>) -> Search {
        Search(q.map(str::to_lowercase))
    }

    /// Whether an item with this name and id matches (everything does without `q`).
    pub fn matches(&self, name: &str, id: u64) -> bool {
        self.0
            .as_ref()
            .is_none_or(|q| name.to_lowercase().contains(q) || id.to_string() == *q)
    }
}

/// Names (users and groups): 1 to 64 characters of letters, digits and `. _ -`,
/// starting with a letter or digit.
pub fn check_name(field: &str, name: &str) -> Result<(), OpError> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(OpError::invalid(
            field,
            "1 to 64 characters of letters, digits and . _ -, starting with a letter or digit",
        ))
    }
}
