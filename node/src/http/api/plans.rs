//! `/api/v1/plans`: what to back up, from which node, how often, how many to keep.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bcm_raft_store::{Command, Plan, PlanSpec, Response as Applied};
use serde::{Deserialize, Serialize};

use super::users::check_name;
use super::{
    consistent, json, list_page, not_found, path_id, rejection, unexpected, ApiJson, ApiQuery,
    Authed, Page,
};
use crate::problem::Problem;
use crate::runtime::{now_ms, SharedNode};
use crate::service;

/// A backup plan.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlanView {
    pub id: u64,
    pub name: String,
    /// The node whose paths are backed up.
    pub source_node: u64,
    pub paths: Vec<String>,
    /// A cron expression, or null for on demand only.
    pub schedule: Option<String>,
    /// How many backups to keep.
    pub keep_last: u32,
    /// On how many storage nodes each backup is kept.
    pub replicas: u32,
    pub enabled: bool,
    /// Unix milliseconds.
    pub created_at_ms: u64,
}

pub fn view(p: &Plan) -> PlanView {
    PlanView {
        id: p.id,
        name: p.name.clone(),
        source_node: p.source_node,
        paths: p.paths.clone(),
        schedule: p.schedule.clone(),
        keep_last: p.keep_last,
        replicas: p.replicas,
        enabled: p.enabled,
        created_at_ms: p.created_at,
    }
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

/// A new plan.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// 1 to 64 letters, digits and `. _ -`.
    name: String,
    /// A registered node.
    source_node: u64,
    /// 1 to 64 absolute paths.
    paths: Vec<String>,
    /// A cron expression (e.g. `0 3 * * *`), or null for on demand only.
    #[serde(default)]
    schedule: Option<String>,
    /// 1 to 1000 (default 7).
    #[serde(default = "default_keep_last")]
    #[schema(default = 7)]
    keep_last: u32,
    /// 1 to 7 (default 1).
    #[serde(default = "default_replicas")]
    #[schema(default = 1)]
    replicas: u32,
    #[serde(default = "default_enabled")]
    #[schema(default = true)]
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

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Part of the name (any case), or the exact id.
    q: Option<String>,
    /// Only plans backing up this node.
    node: Option<u64>,
    enabled: Option<bool>,
    /// At most this many items (default 100, at most 1000).
    limit: Option<usize>,
    /// Skip this many items.
    offset: Option<usize>,
    /// `local` (default) or `linearizable`.
    consistency: Option<String>,
}

/// Plans, searched and filtered. Permission `plans.read`.
#[utoipa::path(get, path = "/plans", tag = "plans", params(ListParams),
    responses((status = 200, description = "one page of matching plans", body = Page<PlanView>)))]
pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, Problem> {
    who.require("plans.read")?;
    consistent(&node, p.consistency.as_deref()).await?;
    let q = p.q.as_deref().map(str::to_lowercase);
    let matching: Vec<PlanView> = node.state.read(|d| {
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

/// One plan. Permission `plans.read`.
#[utoipa::path(get, path = "/plans/{id}", tag = "plans",
    params(("id" = u64, Path, description = "plan id")),
    responses(
        (status = 200, description = "the plan", body = PlanView),
        (status = 400, description = "the id is not a positive integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such plan", body = Problem, content_type = "application/problem+json"),
    ))]
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

/// Create a plan. Permission `plans.write`.
#[utoipa::path(post, path = "/plans", tag = "plans", request_body = PlanBody,
    responses(
        (status = 201, description = "created", body = PlanView),
        (status = 409, description = "a plan of that name exists", body = Problem, content_type = "application/problem+json"),
    ))]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPatch {
    name: Option<String>,
    source_node: Option<u64>,
    paths: Option<Vec<String>>,
    /// A cron expression; null removes the schedule.
    #[serde(default, with = "serde_with_double_option")]
    #[schema(value_type = Option<String>)]
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

/// Change a plan. Permission `plans.write`.
#[utoipa::path(patch, path = "/plans/{id}", tag = "plans",
    params(("id" = u64, Path, description = "plan id")), request_body = PlanPatch,
    responses(
        (status = 200, description = "the plan as changed", body = PlanView),
        (status = 404, description = "no such plan", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "another plan has that name", body = Problem, content_type = "application/problem+json"),
    ))]
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

/// Delete a plan (its backups stay in the catalog). Permission `plans.write`.
#[utoipa::path(delete, path = "/plans/{id}", tag = "plans",
    params(("id" = u64, Path, description = "plan id")),
    responses(
        (status = 200, description = "the deleted plan", body = PlanView),
        (status = 404, description = "no such plan", body = Problem, content_type = "application/problem+json"),
    ))]
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
