//! `/api/v1/users`: accounts (the rules are the service layer's, service/users.rs).

use axum::extract::Path;
use bcm_api::{NewUser, Page, ReadParams, UserFilter, UserPatch, UserView, Window};

use super::{created, ok, path_id, Answer, ApiJson, Ctx, Edit, ListQuery, UsersRead, UsersWrite};
use crate::service::{self, users};

/// Users, searched and filtered. Permission `users.read`.
#[utoipa::path(get, path = "/users", tag = "users", params(UserFilter, Window, ReadParams), responses((status = 200, description = "one page of matching users", body = Page<UserView>)))]
pub async fn list(ctx: Ctx<UsersRead>, q: ListQuery<UserFilter>) -> Answer {
    service::consistent(&ctx, q.consistency.as_deref()).await?;
    let users = users::list(&ctx, &q.filter);
    ok(q.window.page(users.iter().map(UserView::from)))
}

/// One user. Permission `users.read`.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = u64, Path, minimum = 1, description = "user id")), responses((status = 200, description = "the user", body = UserView)))]
pub async fn get_one(ctx: Ctx<UsersRead>, Path(id): Path<String>) -> Answer {
    ok(UserView::from(&users::get(&ctx, path_id("user", &id)?)?))
}

/// Create a user (409 when one of that name exists, in any case; 422 for a bad
/// name, a weak password or an unknown group). Permission `users.write`.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser, responses((status = 201, description = "created", body = UserView)))]
pub async fn create(ctx: Ctx<UsersWrite>, ApiJson(body): ApiJson<NewUser>) -> Answer {
    created(UserView::from(&users::create(&ctx, &ctx.who, body).await?))
}

/// Enable, disable, set the password or the groups. Disabling or a new password ends
/// the user's existing tokens on every node (409 when it would leave no enabled
/// admin). Permission `users.write`.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = u64, Path, minimum = 1, description = "user id")), request_body = UserPatch, responses((status = 200, description = "the user as changed", body = UserView)))]
pub async fn update(ctx: Ctx<UsersWrite>, Edit(id, body): Edit<UserPatch>) -> Answer {
    ok(UserView::from(
        &users::update(&ctx, &ctx.who, path_id("user", &id)?, body).await?,
    ))
}

/// Delete a user; its tokens stop working on every node (409 for the last enabled
/// admin). Permission `users.write`.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = u64, Path, minimum = 1, description = "user id")), responses((status = 200, description = "the deleted user", body = UserView)))]
pub async fn remove(ctx: Ctx<UsersWrite>, Path(id): Path<String>) -> Answer {
    ok(UserView::from(
        &users::delete(&ctx, &ctx.who, path_id("user", &id)?).await?,
    ))
}
