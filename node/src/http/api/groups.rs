//! `/api/v1/groups`: the predefined `admin`, `operator`, `viewer`, and custom
//! groups (the rules are the service layer's, service/groups.rs).

use axum::extract::Path;
use bcm_api::{GroupFilter, GroupPatch, GroupView, NewGroup, Page, ReadParams, Window};

use super::{created, ok, Answer, ApiJson, Ctx, Edit, GroupsRead, GroupsWrite, ListQuery};
use crate::service::{self, groups};

/// Groups. Permission `groups.read`.
#[utoipa::path(get, path = "/groups", tag = "groups", params(GroupFilter, Window, ReadParams), responses((status = 200, description = "one page of matching groups", body = Page<GroupView>)))]
pub async fn list(ctx: Ctx<GroupsRead>, q: ListQuery<GroupFilter>) -> Answer {
    service::consistent(&ctx, q.consistency.as_deref()).await?;
    let groups = groups::list(&ctx, &q.filter);
    ok(q.window.page(groups.iter().map(GroupView::from)))
}

/// One group. Permission `groups.read`.
#[utoipa::path(get, path = "/groups/{name}", tag = "groups", params(("name" = String, Path, description = "group name")), responses((status = 200, description = "the group", body = GroupView)))]
pub async fn get_one(ctx: Ctx<GroupsRead>, Path(name): Path<String>) -> Answer {
    ok(GroupView::from(&groups::get(&ctx, &name)?))
}

/// Create a custom group (409 when a group of that name exists; 422 for a bad name
/// or an unknown permission). Permission `groups.write`.
#[utoipa::path(post, path = "/groups", tag = "groups", request_body = NewGroup, responses((status = 201, description = "created", body = GroupView)))]
pub async fn create(ctx: Ctx<GroupsWrite>, ApiJson(body): ApiJson<NewGroup>) -> Answer {
    created(GroupView::from(
        &groups::create(&ctx, &ctx.who, body).await?,
    ))
}

/// Replace a group's permissions (409: a predefined group cannot change).
/// Permission `groups.write`.
#[utoipa::path(patch, path = "/groups/{name}", tag = "groups", params(("name" = String, Path, description = "group name")), request_body = GroupPatch, responses((status = 200, description = "the group as changed", body = GroupView)))]
pub async fn update(ctx: Ctx<GroupsWrite>, Edit(name, body): Edit<GroupPatch>) -> Answer {
    ok(GroupView::from(
        &groups::update(&ctx, &ctx.who, name, body.permissions).await?,
    ))
}

/// Delete a custom group (409 for a predefined one, or one that is still some
/// user's group). Permission `groups.write`.
#[utoipa::path(delete, path = "/groups/{name}", tag = "groups", params(("name" = String, Path, description = "group name")), responses((status = 200, description = "the deleted group", body = GroupView)))]
pub async fn remove(ctx: Ctx<GroupsWrite>, Path(name): Path<String>) -> Answer {
    ok(GroupView::from(
        &groups::delete(&ctx, &ctx.who, name).await?,
    ))
}
