//! The backup catalog: backups taken (or under way) and restores. Starting one
//! records it as `pending` for the backup manager.

use bcm_api::{BackupFilter, NewBackup, NewRestore, RestoreFilter};
use bcm_raft_store::{Backup, Command, JobStatus, Restore};

use super::plans::{check_node, check_paths};
use super::{lookup, write, OpError};
use crate::cluster::{now_ms, Node};

/// A job status from a query string (400 naming `status` otherwise).
pub fn parse_status(s: Option<&str>) -> Result<Option<JobStatus>, OpError> {
    match s {
        None => Ok(None),
        Some(s) => JobStatus::parse(s)
            .map(Some)
            .ok_or_else(|| OpError::BadRequest {
                field: Some("status".into()),
                message: format!(
                "status must be one of pending, running, succeeded, failed, cancelled; not {s:?}"
            ),
            }),
    }
}

/// Backups matching `filter`, newest first.
pub fn list(node: &Node, filter: &BackupFilter) -> Result<Vec<Backup>, OpError> {
    let status = parse_status(filter.status.as_deref())?;
    let q = filter.q.as_deref().map(str::to_lowercase);
    Ok(node.state.read(|d| {
        d.state
            .backups
            .values()
            .rev()
            .filter(|b| {
                q.as_ref().is_none_or(|q| {
                    b.id.to_string() == *q
                        || b.plan_name
                            .as_ref()
                            .is_some_and(|n| n.to_lowercase().contains(q))
                        || b.paths.iter().any(|p| p.to_lowercase().contains(q))
                })
            })
            .filter(|b| status.is_none_or(|s| b.status == s))
            .filter(|b| filter.plan.is_none_or(|x| b.plan == Some(x)))
            .filter(|b| {
                filter
                    .node
                    .is_none_or(|n| b.source_node == n || b.storage_nodes.contains(&n))
            })
            .cloned()
            .collect()
    }))
}

pub fn get(node: &Node, id: u64) -> Result<Backup, OpError> {
    lookup(node, "backup", id, |s| s.backups.get(&id))
}

/// Starts a backup now: of a plan, or of `paths` on `source_node`.
pub async fn start(node: &Node, new: NewBackup) -> Result<Backup, OpError> {
    let command = match (new.plan, new.source_node, new.paths) {
        (Some(plan), None, None) => {
            if !node.state.read(|d| d.state.plans.contains_key(&plan)) {
                return Err(OpError::invalid(
                    "plan",
                    format!("plan {plan} does not exist"),
                ));
            }
            Command::CreateBackup {
                plan: Some(plan),
                source_node: None,
                paths: Vec::new(),
                at: now_ms(),
            }
        }
        (None, Some(source_node), Some(paths)) => {
            check_paths("paths", &paths)?;
            check_node(node, "source_node", source_node)?;
            Command::CreateBackup {
                plan: None,
                source_node: Some(source_node),
                paths,
                at: now_ms(),
            }
        }
        _ => {
            return Err(OpError::Invalid {
                field: None,
                message: "give either {\"plan\": ID} or {\"source_node\": ID, \"paths\": [...]}"
                    .into(),
            })
        }
    };
    write(node, command).await
}

/// Deletes a backup (not while it runs or is being restored).
pub async fn delete(node: &Node, id: u64) -> Result<Backup, OpError> {
    write(node, Command::DeleteBackup { id }).await
}

/// Restores a succeeded backup onto a node.
pub async fn restore_to(node: &Node, backup: u64, to: NewRestore) -> Result<Restore, OpError> {
    check_paths("target_path", std::slice::from_ref(&to.target_path))?;
    check_node(node, "target_node", to.target_node)?;
    let command = Command::CreateRestore {
        backup,
        target_node: to.target_node,
        target_path: to.target_path,
        at: now_ms(),
    };
    write(node, command).await
}

/// Restores matching `filter`, newest first.
pub fn restores(node: &Node, filter: &RestoreFilter) -> Result<Vec<Restore>, OpError> {
    let status = parse_status(filter.status.as_deref())?;
    Ok(node.state.read(|d| {
        d.state
            .restores
            .values()
            .rev()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .filter(|r| filter.backup.is_none_or(|b| r.backup == b))
            .filter(|r| filter.node.is_none_or(|n| r.target_node == n))
            .cloned()
            .collect()
    }))
}

pub fn get_restore(node: &Node, id: u64) -> Result<Restore, OpError> {
    lookup(node, "restore", id, |s| s.restores.get(&id))
}
