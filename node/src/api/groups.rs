//! `/api/v1/groups`: the predefined `admin`, `operator`, `viewer`, and custom groups
//! carrying a set of named permissions.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bcm_raft_store::{Command, Group, Response as Applied, PERMISSIONS};
use serde::Deserialize;
use serde_json::{json, Value};

use super::users::check_name;
use super::{json, list_page, not_found, rejection, unexpected, ApiJson, ApiQuery, Authed};
use crate::problem::Problem;
use crate::runtime::SharedNode;
use crate::service;

fn view(g: &Group) -> Value {
    json!({"name": g.name, "permissions": g.permissions, "builtin": g.builtin})
}

fn group_result(resp: Applied, status: StatusCode) -> Result<Response, Problem> {
    match resp {
        Applied::Group(g) => Ok(json(status, &view(&g))),
        Applied::Rejected(r) => Err(rejection(r)),
        other => Err(unexpected(&other)),
    }
}

fn check_permissions(perms: &BTreeSet<String>) -> Result<(), Problem> {
    match perms.iter().find(|p| !PERMISSIONS.contains(&p.as_str())) {
        Some(p) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "permissions: unknown permission {p:?}; known: {}",
                PERMISSIONS.join(", ")
            ),
        )
        .with_field("permissions")),
        None => Ok(()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    q: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, Problem> {
    who.require("groups.read")?;
    let matching: Vec<Value> = node.state.read(|d| {
        d.state
            .groups
            .values()
            .filter(|g| p.q.as_deref().is_none_or(|q| g.name.contains(q)))
            .map(view)
            .collect()
    });
    Ok(list_page(matching.into_iter(), p.limit, p.offset))
}

pub async fn get_one(
    State(node): State<SharedNode>,
    who: Authed,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    who.require("groups.read")?;
    node.state
        .read(|d| d.state.groups.get(&name).map(view))
        .map(|v| json(StatusCode::OK, &v))
        .ok_or_else(|| not_found("group", format!("{name:?}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    name: String,
    #[serde(default)]
    permissions: BTreeSet<String>,
}

pub async fn create(
    State(node): State<SharedNode>,
    who: Authed,
    ApiJson(body): ApiJson<NewGroup>,
) -> Result<Response, Problem> {
    who.require("groups.write")?;
    check_name("name", &body.name)?;
    check_permissions(&body.permissions)?;
    let cmd = Command::PutGroup {
        name: body.name,
        permissions: body.permissions,
        create: true,
    };
    group_result(service::write(&node, cmd).await?, StatusCode::CREATED)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    permissions: BTreeSet<String>,
}

pub async fn update(
    State(node): State<SharedNode>,
    who: Authed,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<GroupPatch>,
) -> Result<Response, Problem> {
    who.require("groups.write")?;
    check_permissions(&body.permissions)?;
    let cmd = Command::PutGroup {
        name,
        permissions: body.permissions,
        create: false,
    };
    group_result(service::write(&node, cmd).await?, StatusCode::OK)
}

pub async fn remove(
    State(node): State<SharedNode>,
    who: Authed,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    who.require("groups.write")?;
    group_result(
        service::write(&node, Command::DeleteGroup { name }).await?,
        StatusCode::OK,
    )
}
