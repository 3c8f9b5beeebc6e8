//! `/api/v1/backups` and `/api/v1/restores`: the catalog of backups taken (or under
//! way) and of restores. Starting one records it as `pending`; the backup manager
//! (a later release) runs it and reports its progress.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bcm_raft_store::{Backup, Command, JobStatus, Response as Applied, Restore};
use serde::{Deserialize, Serialize};

use super::plans::check_paths;
use super::{
    consistent, json, list_page, not_found, path_id, rejection, unexpected, ApiJson, ApiQuery,
    Authed, Page,
};
use crate::problem::Problem;
use crate::runtime::{now_ms, SharedNode};
use crate::service;

/// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<JobStatus> for JobState {
    fn from(s: JobStatus) -> JobState {
        match s {
            JobStatus::Pending => JobState::Pending,
            JobStatus::Running => JobState::Running,
            JobStatus::Succeeded => JobState::Succeeded,
            JobStatus::Failed => JobState::Failed,
            JobStatus::Cancelled => JobState::Cancelled,
        }
    }
}

/// A backup, taken or under way.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupView {
    pub id: u64,
    /// The plan it was taken for, or null for an ad hoc backup.
    pub plan: Option<u64>,
    pub plan_name: Option<String>,
    pub source_node: u64,
    pub paths: Vec<String>,
    pub status: JobState,
    pub size_bytes: Option<u64>,
    /// The storage nodes holding it.
    pub storage_nodes: Vec<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Unix milliseconds.
    pub updated_at_ms: u64,
}

pub fn backup_view(b: &Backup) -> BackupView {
    BackupView {
        id: b.id,
        plan: b.plan,
        plan_name: b.plan_name.clone(),
        source_node: b.source_node,
        paths: b.paths.clone(),
        status: b.status.into(),
        size_bytes: b.size_bytes,
        storage_nodes: b.storage_nodes.clone(),
        error: b.error.clone(),
        created_at_ms: b.created_at,
        updated_at_ms: b.updated_at,
    }
}

/// A restore of a backup onto a node.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestoreView {
    pub id: u64,
    /// The backup restored.
    pub backup: u64,
    pub target_node: u64,
    pub target_path: String,
    pub status: JobState,
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Unix milliseconds.
    pub updated_at_ms: u64,
}

pub fn restore_view(r: &Restore) -> RestoreView {
    RestoreView {
        id: r.id,
        backup: r.backup,
        target_node: r.target_node,
        target_path: r.target_path.clone(),
        status: r.status.into(),
        error: r.error.clone(),
        created_at_ms: r.created_at,
        updated_at_ms: r.updated_at,
    }
}

fn result(resp: Applied, status: StatusCode) -> Result<Response, Problem> {
    match resp {
        Applied::Backup(b) => Ok(json(status, &backup_view(&b))),
        Applied::Restore(r) => Ok(json(status, &restore_view(&r))),
        Applied::Rejected(r) => Err(rejection(r)),
        other => Err(unexpected(&other)),
    }
}

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("{field}: {}", detail.into()),
    )
    .with_field(field)
}

fn parse_status(s: Option<&str>) -> Result<Option<JobStatus>, Problem> {
    match s {
        None => Ok(None),
        Some(s) => JobStatus::parse(s).map(Some).ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("status must be one of pending, running, succeeded, failed, cancelled; not {s:?}"),
            )
            .with_field("status")
        }),
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BackupListParams {
    /// The exact id, or part of the plan name or of a path (any case).
    q: Option<String>,
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    status: Option<String>,
    /// Only backups of this plan.
    plan: Option<u64>,
    /// Only backups from, or stored on, this node.
    node: Option<u64>,
    /// At most this many items (default 100, at most 1000).
    limit: Option<usize>,
    /// Skip this many items.
    offset: Option<usize>,
    /// `local` (default) or `linearizable`.
    consistency: Option<String>,
}

/// Backups, newest first. Permission `backups.read`.
#[utoipa::path(get, path = "/backups", tag = "backups", params(BackupListParams),
    responses(
        (status = 200, description = "one page of matching backups", body = Page<BackupView>),
        (status = 400, description = "unknown status", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<BackupListParams>,
) -> Result<Response, Problem> {
    who.require("backups.read")?;
    let status = parse_status(p.status.as_deref())?;
    consistent(&node, p.consistency.as_deref()).await?;
    let q = p.q.as_deref().map(str::to_lowercase);
    let matching: Vec<BackupView> = node.state.read(|d| {
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
            .filter(|b| p.plan.is_none_or(|x| b.plan == Some(x)))
            .filter(|b| {
                p.node
                    .is_none_or(|n| b.source_node == n || b.storage_nodes.contains(&n))
            })
            .map(backup_view)
            .collect()
    });
    Ok(list_page(matching.into_iter(), p.limit, p.offset))
}

/// One backup. Permission `backups.read`.
#[utoipa::path(get, path = "/backups/{id}", tag = "backups",
    params(("id" = u64, Path, description = "backup id")),
    responses(
        (status = 200, description = "the backup", body = BackupView),
        (status = 400, description = "the id is not a positive integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such backup", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require("backups.read")?;
    let id = path_id("backup", &id)?;
    node.state
        .read(|d| d.state.backups.get(&id).map(backup_view))
        .map(|v| json(StatusCode::OK, &v))
        .ok_or_else(|| not_found("backup", id))
}

/// Either `{"plan": ID}` or `{"source_node": ID, "paths": [...]}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBackup {
    plan: Option<u64>,
    source_node: Option<u64>,
    paths: Option<Vec<String>>,
}

/// Start a backup now: recorded as `pending` for the backup manager. Permission
/// `backups.write`.
#[utoipa::path(post, path = "/backups", tag = "backups", request_body = NewBackup,
    responses(
        (status = 202, description = "recorded, pending", body = BackupView),
        (status = 422, description = "unknown plan or node, bad paths, or neither form", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(node): State<SharedNode>,
    who: Authed,
    ApiJson(b): ApiJson<NewBackup>,
) -> Result<Response, Problem> {
    who.require("backups.write")?;
    let cmd = match (b.plan, b.source_node, b.paths) {
        (Some(plan), None, None) => {
            if !node.state.read(|d| d.state.plans.contains_key(&plan)) {
                return Err(invalid("plan", format!("plan {plan} does not exist")));
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
            if !node
                .state
                .read(|d| d.state.nodes.contains_key(&source_node))
            {
                return Err(invalid(
                    "source_node",
                    format!("node {source_node} is not registered"),
                ));
            }
            Command::CreateBackup {
                plan: None,
                source_node: Some(source_node),
                paths,
                at: now_ms(),
            }
        }
        _ => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give either {\"plan\": ID} or {\"source_node\": ID, \"paths\": [...]}",
            ))
        }
    };
    result(service::write(&node, cmd).await?, StatusCode::ACCEPTED)
}

/// Delete a backup (and, once the backup manager runs, its data). Permission
/// `backups.write`.
#[utoipa::path(delete, path = "/backups/{id}", tag = "backups",
    params(("id" = u64, Path, description = "backup id")),
    responses(
        (status = 200, description = "the deleted backup", body = BackupView),
        (status = 404, description = "no such backup", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the backup is running or being restored", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require("backups.write")?;
    let id = path_id("backup", &id)?;
    result(
        service::write(&node, Command::DeleteBackup { id }).await?,
        StatusCode::OK,
    )
}

/// Where to restore to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRestore {
    target_node: u64,
    target_path: String,
}

/// Restore a succeeded backup onto a node. Permission `restores.write`.
#[utoipa::path(post, path = "/backups/{id}/restore", tag = "backups",
    params(("id" = u64, Path, description = "backup id")), request_body = NewRestore,
    responses(
        (status = 202, description = "recorded, pending", body = RestoreView),
        (status = 404, description = "no such backup", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the backup has not succeeded", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn restore(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewRestore>,
) -> Result<Response, Problem> {
    who.require("restores.write")?;
    let backup = path_id("backup", &id)?;
    check_paths("target_path", std::slice::from_ref(&body.target_path))?;
    if !node
        .state
        .read(|d| d.state.nodes.contains_key(&body.target_node))
    {
        return Err(invalid(
            "target_node",
            format!("node {} is not registered", body.target_node),
        ));
    }
    let cmd = Command::CreateRestore {
        backup,
        target_node: body.target_node,
        target_path: body.target_path,
        at: now_ms(),
    };
    result(service::write(&node, cmd).await?, StatusCode::ACCEPTED)
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RestoreListParams {
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    status: Option<String>,
    /// Only restores of this backup.
    backup: Option<u64>,
    /// Only restores onto this node.
    node: Option<u64>,
    /// At most this many items (default 100, at most 1000).
    limit: Option<usize>,
    /// Skip this many items.
    offset: Option<usize>,
    /// `local` (default) or `linearizable`.
    consistency: Option<String>,
}

/// Restores, newest first. Permission `restores.read`.
#[utoipa::path(get, path = "/restores", tag = "backups", params(RestoreListParams),
    responses(
        (status = 200, description = "one page of matching restores", body = Page<RestoreView>),
        (status = 400, description = "unknown status", body = Problem, content_type = "application/problem+json"),
    ))]

pub async fn list_restores(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<RestoreListParams>,
) -> Result<Response, Problem> {
    who.require("restores.read")?;
    let status = parse_status(p.status.as_deref())?;
    consistent(&node, p.consistency.as_deref()).await?;
    let matching: Vec<RestoreView> = node.state.read(|d| {
        d.state
            .restores
            .values()
            .rev()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .filter(|r| p.backup.is_none_or(|b| r.backup == b))
            .filter(|r| p.node.is_none_or(|n| r.target_node == n))
            .map(restore_view)
            .collect()
    });
    Ok(list_page(matching.into_iter(), p.limit, p.offset))
}

/// One restore. Permission `restores.read`.
#[utoipa::path(get, path = "/restores/{id}", tag = "backups",
    params(("id" = u64, Path, description = "restore id")),
    responses(
        (status = 200, description = "the restore", body = RestoreView),
        (status = 400, description = "the id is not a positive integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such restore", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_restore(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require("restores.read")?;
    let id = path_id("restore", &id)?;
    node.state
        .read(|d| d.state.restores.get(&id).map(restore_view))
        .map(|v| json(StatusCode::OK, &v))
        .ok_or_else(|| not_found("restore", id))
}
