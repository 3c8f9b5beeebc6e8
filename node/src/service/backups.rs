//! The backup catalog: backups taken (or under way) and restores. Starting one
//! records it as `pending`; the backup manager (jobs/manager.rs) runs it.

use bcm_api::{BackupFilter, NewBackup, NewRestore, RestoreFilter};
use bcm_raft_store::{Backup, Command, JobStatus, Restore};

use std::time::Duration;

use super::audit::Audit;
use super::auth::Caller;
use super::plans::{check_node, check_paths};
use super::{lookup, write, OpError};
use crate::cluster::{now_ms, Node};
use crate::jobs::wire::{CheckPaths, PATH_CHECK_PATHS};

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

/// Starts a backup now: of a plan, or of `paths` on `source_node`. The source
/// node is asked whether the paths are there (422 when it says they are not;
/// a source that does not answer is left to the backup manager).
pub async fn start(node: &Node, caller: &Caller, new: NewBackup) -> Result<Backup, OpError> {
    let (target, detail) = match (&new.plan, &new.source_node, &new.paths) {
        (Some(plan), _, _) => (format!("plan {plan}"), String::new()),
        (None, Some(n), paths) => (
            format!("node {n}"),
            paths
                .iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (None, None, _) => (String::new(), String::new()),
    };
    let audit = caller.audit("backups.start", target).detail(detail);
    audit.run(node, start_audited(node, &audit, new)).await
}

async fn start_audited(node: &Node, audit: &Audit, new: NewBackup) -> Result<Backup, OpError> {
    let command = match (new.plan, new.source_node, new.paths) {
        (Some(plan), None, None) => {
            let Some(spec) =
                super::referred(node, |s| s.plans.get(&plan).map(|p| p.spec.clone())).await?
            else {
                return Err(OpError::invalid(
                    "plan",
                    format!("plan {plan} does not exist"),
                ));
            };
            check_on_source(node, spec.source_node, &spec.paths).await?;
            Command::CreateBackup {
                plan: Some(plan),
                source_node: None,
                paths: Vec::new(),
                at: now_ms(),
            }
        }
        (None, Some(source_node), Some(paths)) => {
            check_paths("paths", &paths)?;
            check_node(node, "source_node", source_node).await?;
            check_on_source(node, source_node, &paths).await?;
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
    write(node, audit, command).await
}

/// Asks `source` whether `paths` can be backed up there.
async fn check_on_source(node: &Node, source: u64, paths: &[String]) -> Result<(), OpError> {
    let Some(rpc) = node
        .state
        .read(|d| d.state.nodes.get(&source).map(|n| n.rpc_addr.clone()))
    else {
        return Ok(()); // refused below, naming the field
    };
    let ask = CheckPaths {
        paths: paths.to_vec(),
    };
    let answer: Result<Vec<String>, _> = node
        .peers
        .call(&rpc, PATH_CHECK_PATHS, &ask, Duration::from_secs(5))
        .await;
    match answer {
        Ok(problems) if !problems.is_empty() => Err(OpError::invalid(
            "paths",
            format!("on node {source}: {}", problems.join("; ")),
        )),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::debug!("source node {source} not asked about its paths: {e}");
            Ok(())
        }
    }
}

/// Deletes a backup (not while it runs or is being restored).
pub async fn delete(node: &Node, caller: &Caller, id: u64) -> Result<Backup, OpError> {
    let audit = caller.audit("backups.delete", format!("backup {id}"));
    audit
        .run(node, write(node, &audit, Command::DeleteBackup { id }))
        .await
}

/// Cancels a pending or running backup (409 once it ended); its run stops at
/// its next report, and what it stored goes at the next cleanup.
pub async fn cancel(node: &Node, caller: &Caller, id: u64) -> Result<Backup, OpError> {
    let audit = caller.audit("backups.cancel", format!("backup {id}"));
    let command = Command::SetBackupStatus {
        id,
        status: JobStatus::Cancelled,
        size_bytes: None,
        storage_nodes: None,
        error: Some("cancelled on request".into()),
        at: now_ms(),
    };
    audit.run(node, write(node, &audit, command)).await
}

/// Cancels a pending or running restore (409 once it ended); what it wrote so
/// far stays (under temporary names for a file cut short).
pub async fn cancel_restore(node: &Node, caller: &Caller, id: u64) -> Result<Restore, OpError> {
    let audit = caller.audit("restores.cancel", format!("restore {id}"));
    let command = Command::SetRestoreStatus {
        id,
        status: JobStatus::Cancelled,
        error: Some("cancelled on request".into()),
        at: now_ms(),
    };
    audit.run(node, write(node, &audit, command)).await
}

/// Restores a succeeded backup onto a node.
pub async fn restore_to(
    node: &Node,
    caller: &Caller,
    backup: u64,
    to: NewRestore,
) -> Result<Restore, OpError> {
    let mut detail = format!("onto node {}: {}", to.target_node, to.target_path);
    if to.overwrite {
        detail.push_str(" (overwrite)");
    }
    if let Some(include) = &to.include {
        detail.push_str(&format!(" (only {include})"));
    }
    let audit = caller
        .audit("backups.restore", format!("backup {backup}"))
        .detail(detail);
    audit
        .run(node, async {
            check_paths("target_path", std::slice::from_ref(&to.target_path))?;
            if let Some(include) = &to.include {
                check_paths("include", std::slice::from_ref(include))?;
            }
            check_node(node, "target_node", to.target_node).await?;
            let command = Command::RequestRestore {
                backup,
                target_node: to.target_node,
                target_path: to.target_path,
                overwrite: to.overwrite,
                include: to.include,
                at: now_ms(),
            };
            write(node, &audit, command).await
        })
        .await
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
