//! `/api/v1/backups` and `/api/v1/restores`: the catalog of backups taken (or under
//! way) and of restores. Starting one records it as `pending`; the backup manager
//! (a later release) runs it and reports its progress.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bcm_raft_store::{Backup, Command, JobStatus, Response as Applied, Restore};
use serde::Deserialize;
use serde_json::{json, Value};

use super::plans::check_paths;
use super::{
    consistent, json, list_page, not_found, path_id, rejection, unexpected, ApiJson, ApiQuery,
    Authed,
};
use crate::problem::Problem;
use crate::runtime::{now_ms, SharedNode};
use crate::service;

fn backup_view(b: &Backup) -> Value {
    json!({
        "id": b.id, "plan": b.plan, "plan_name": b.plan_name, "source_node": b.source_node,
        "paths": b.paths, "status": b.status.as_str(), "size_bytes": b.size_bytes,
        "storage_nodes": b.storage_nodes, "error": b.error,
        "created_at_ms": b.created_at, "updated_at_ms": b.updated_at,
    })
}

fn restore_view(r: &Restore) -> Value {
    json!({
        "id": r.id, "backup": r.backup, "target_node": r.target_node, "target_path": r.target_path,
        "status": r.status.as_str(), "error": r.error,
        "created_at_ms": r.created_at, "updated_at_ms": r.updated_at,
    })
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupListParams {
    q: Option<String>,
    status: Option<String>,
    plan: Option<u64>,
    node: Option<u64>,
    limit: Option<usize>,
    offset: Option<usize>,
    consistency: Option<String>,
}

pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<BackupListParams>,
) -> Result<Response, Problem> {
    who.require("backups.read")?;
    let status = parse_status(p.status.as_deref())?;
    consistent(&node, p.consistency.as_deref()).await?;
    let q = p.q.as_deref().map(str::to_lowercase);
    let matching: Vec<Value> = node.state.read(|d| {
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBackup {
    plan: Option<u64>,
    source_node: Option<u64>,
    paths: Option<Vec<String>>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRestore {
    target_node: u64,
    target_path: String,
}

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreListParams {
    status: Option<String>,
    backup: Option<u64>,
    node: Option<u64>,
    limit: Option<usize>,
    offset: Option<usize>,
    consistency: Option<String>,
}

pub async fn list_restores(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<RestoreListParams>,
) -> Result<Response, Problem> {
    who.require("restores.read")?;
    let status = parse_status(p.status.as_deref())?;
    consistent(&node, p.consistency.as_deref()).await?;
    let matching: Vec<Value> = node.state.read(|d| {
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
