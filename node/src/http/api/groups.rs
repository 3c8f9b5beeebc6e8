//! `/api/v1/groups`: the predefined `admin`, `operator`, `viewer`, and custom groups
//! carrying a set of named permissions.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bcm_raft_store::{Command, Group, Response as Applied, PERMISSIONS};
use serde::{Deserialize, Serialize};

use super::users::check_name;
use super::{json, list_page, not_found, rejection, unexpected, ApiJson, ApiQuery, Authed, Page};
use crate::problem::Problem;
use crate::runtime::SharedNode;
use crate::service;

/// A group and the permissions it grants.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub name: String,
    pub permissions: BTreeSet<String>,
    /// `admin`, `operator` and `viewer`: cannot be deleted.
    pub builtin: bool,
}

fn view(g: &Group) -> GroupView {
    GroupView {
        name: g.name.clone(),
        permissions: g.permissions.clone(),
        builtin: g.builtin,
    }
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

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Part of the name.
    q: Option<String>,
    /// At most this many items (default 100, at most 1000).
    limit: Option<usize>,
    /// Skip this many items.
    offset: Option<usize>,
}

/// Groups. Permission `groups.read`.
#[utoipa::path(get, path = "/groups", tag = "groups", params(ListParams),
    responses((status = 200, description = "one page of matching groups", body = Page<GroupView>)))]
pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, Problem> {
    who.require("groups.read")?;
    let matching: Vec<GroupView> = node.state.read(|d| {
        d.state
            .groups
            .values()
            .filter(|g| p.q.as_deref().is_none_or(|q| g.name.contains(q)))
            .map(view)
            .collect()
    });
    Ok(list_page(matching.into_iter(), p.limit, p.offset))
}

/// One group. Permission `groups.read`.
#[utoipa::path(get, path = "/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "group name")),
    responses(
        (status = 200, description = "the group", body = GroupView),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
    ))]
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

/// A custom group.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// 1 to 64 letters, digits and `. _ -`.
    name: String,
    /// Named permissions, e.g. `users.read`, `backups.write`.
    #[serde(default)]
    permissions: BTreeSet<String>,
}

/// Create a custom group. Permission `groups.write`.
#[utoipa::path(post, path = "/groups", tag = "groups", request_body = NewGroup,
    responses(
        (status = 201, description = "created", body = GroupView),
        (status = 409, description = "a group of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "bad name or unknown permission", body = Problem, content_type = "application/problem+json"),
    ))]
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

/// The group's new set of permissions.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    permissions: BTreeSet<String>,
}

/// Replace a group's permissions. Permission `groups.write`.
#[utoipa::path(patch, path = "/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "group name")), request_body = GroupPatch,
    responses(
        (status = 200, description = "the group as changed", body = GroupView),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "a predefined group cannot change", body = Problem, content_type = "application/problem+json"),
    ))]
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

/// Delete a custom group. Permission `groups.write`.
#[utoipa::path(delete, path = "/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "group name")),
    responses(
        (status = 200, description = "the deleted group", body = GroupView),
        (status = 404, description = "no such group", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "predefined, or still some user's group", body = Problem, content_type = "application/problem+json"),
    ))]
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
