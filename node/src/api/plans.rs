//! `/api/v1/plans`: what to back up, from which node, how often, how many to keep.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bcm_raft_store::{Command, Plan, PlanSpec, Response as Applied};
use serde::Deserialize;
use serde_json::{json, Value};

use super::users::check_name;
use super::{
    consistent, json, list_page, not_found, path_id, rejection, unexpected, ApiJson, ApiQuery,
    Authed,
};
use crate::problem::Problem;
use crate::runtime::{now_ms, SharedNode};
use crate::service;

pub fn view(p: &Plan) -> Value {
    json!({
        "id": p.id, "name": p.name, "source_node": p.source_node, "paths": p.paths,
        "schedule": p.schedule, "keep_last": p.keep_last, "replicas": p.replicas,
        "enabled": p.enabled, "created_at_ms": p.created_at,
    })
}

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("{field}: {}", detail.into()),
    )
    .with_field(field)
}

/// Absolute paths, 1 to 64 of them, each at most 4096 bytes, no NUL.
pub fn check_paths(field: &str, paths: &[String]) -> Result<(), Problem> {
    if paths.is_empty() || paths.len() > 64 {
        return Err(invalid(field, "1 to 64 absolute paths"));
    }
    if let Some(p) = paths
        .iter()
        .find(|p| !p.starts_with('/') || p.len() > 4096 || p.contains('\0'))
    {
        return Err(invalid(field, format!("{p:?} is not an absolute path")));
    }
    Ok(())
}

fn check_node(node: &SharedNode, field: &str, id: u64) -> Result<(), Problem> {
    if node.state.read(|d| d.state.nodes.contains_key(&id)) {
        Ok(())
    } else {
        Err(invalid(field, format!("node {id} is not registered")))
    }
}

fn check_schedule(schedule: Option<&str>) -> Result<(), Problem> {
    match schedule {
        None => Ok(()),
        Some(s) => s.parse::<croner::Cron>().map(|_| ()).map_err(|e| {
            invalid(
                "schedule",
                format!("{s:?} is not a cron expression ({e}); e.g. \"0 3 * * *\" for 03:00 daily"),
            )
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    name: String,
    source_node: u64,
    paths: Vec<String>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default = "default_keep_last")]
    keep_last: u32,
    #[serde(default = "default_replicas")]
    replicas: u32,
    #[serde(default = "default_enabled")]
    enabled: bool,
}

fn default_keep_last() -> u32 {
    7
}
fn default_replicas() -> u32 {
    1
}
fn default_enabled() -> bool {
    true
}

fn spec(node: &SharedNode, b: PlanBody) -> Result<PlanSpec, Problem> {
    check_name("name", &b.name)?;
    check_node(node, "source_node", b.source_node)?;
    check_paths("paths", &b.paths)?;
    check_schedule(b.schedule.as_deref())?;
    if !(1..=1000).contains(&b.keep_last) {
        return Err(invalid("keep_last", "between 1 and 1000"));
    }
    if !(1..=7).contains(&b.replicas) {
        return Err(invalid("replicas", "between 1 and 7"));
    }
    Ok(PlanSpec {
        name: b.name,
        source_node: b.source_node,
        paths: b.paths,
        schedule: b.schedule,
        keep_last: b.keep_last,
        replicas: b.replicas,
        enabled: b.enabled,
    })
}

fn plan_result(resp: Applied, status: StatusCode) -> Result<Response, Problem> {
    match resp {
        Applied::Plan(p) => Ok(json(status, &view(&p))),
        Applied::Rejected(r) => Err(rejection(r)),
        other => Err(unexpected(&other)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    q: Option<String>,
    node: Option<u64>,
    enabled: Option<bool>,
    limit: Option<usize>,
    offset: Option<usize>,
    consistency: Option<String>,
}

pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, Problem> {
    who.require("plans.read")?;
    consistent(&node, p.consistency.as_deref()).await?;
    let q = p.q.as_deref().map(str::to_lowercase);
    let matching: Vec<Value> = node.state.read(|d| {
        d.state
            .plans
            .values()
            .filter(|x| {
                q.as_ref()
                    .is_none_or(|q| x.name.to_lowercase().contains(q) || x.id.to_string() == *q)
            })
            .filter(|x| p.node.is_none_or(|n| x.source_node == n))
            .filter(|x| p.enabled.is_none_or(|e| x.enabled == e))
            .map(view)
            .collect()
    });
    Ok(list_page(matching.into_iter(), p.limit, p.offset))
}

pub async fn get_one(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require("plans.read")?;
    let id = path_id("plan", &id)?;
    node.state
        .read(|d| d.state.plans.get(&id).map(view))
        .map(|v| json(StatusCode::OK, &v))
        .ok_or_else(|| not_found("plan", id))
}

pub async fn create(
    State(node): State<SharedNode>,
    who: Authed,
    ApiJson(body): ApiJson<PlanBody>,
) -> Result<Response, Problem> {
    who.require("plans.write")?;
    let spec = spec(&node, body)?;
    plan_result(
        service::write(&node, Command::CreatePlan { spec, at: now_ms() }).await?,
        StatusCode::CREATED,
    )
}

/// PATCH takes any subset of the fields; the result is validated as a whole.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanPatch {
    name: Option<String>,
    source_node: Option<u64>,
    paths: Option<Vec<String>>,
    #[serde(default, with = "serde_with_double_option")]
    schedule: Option<Option<String>>,
    keep_last: Option<u32>,
    replicas: Option<u32>,
    enabled: Option<bool>,
}

/// Tells `"schedule": null` (remove the schedule) from an absent field.
mod serde_with_double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

pub async fn update(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<PlanPatch>,
) -> Result<Response, Problem> {
    who.require("plans.write")?;
    let id = path_id("plan", &id)?;
    let current = node
        .state
        .read(|d| d.state.plans.get(&id).cloned())
        .ok_or_else(|| not_found("plan", id))?;
    let body = PlanBody {
        name: patch.name.unwrap_or(current.name),
        source_node: patch.source_node.unwrap_or(current.source_node),
        paths: patch.paths.unwrap_or(current.paths),
        schedule: patch.schedule.unwrap_or(current.schedule),
        keep_last: patch.keep_last.unwrap_or(current.keep_last),
        replicas: patch.replicas.unwrap_or(current.replicas),
        enabled: patch.enabled.unwrap_or(current.enabled),
    };
    let spec = spec(&node, body)?;
    plan_result(
        service::write(&node, Command::UpdatePlan { id, spec }).await?,
        StatusCode::OK,
    )
}

pub async fn remove(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require("plans.write")?;
    let id = path_id("plan", &id)?;
    plan_result(
        service::write(&node, Command::DeletePlan { id }).await?,
        StatusCode::OK,
    )
}
