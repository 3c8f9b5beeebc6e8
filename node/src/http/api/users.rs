//! `/api/v1/users`: accounts. Passwords are hashed (argon2id) here, before the
//! command is proposed: no plaintext reaches the log, a snapshot or a log line.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bcm_raft_store::{Command, Response as Applied, User};
use serde::{Deserialize, Serialize};

use super::{
    consistent, json, list_page, not_found, path_id, rejection, unexpected, ApiJson, ApiQuery,
    Authed, Page,
};
use crate::problem::Problem;
use crate::runtime::{now_ms, SharedNode};
use crate::service;

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_LEN: usize = 12;

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("{field}: {}", detail.into()),
    )
    .with_field(field)
}

/// Names (users and groups): 1 to 64 characters of letters, digits and `. _ -`,
/// starting with a letter or digit.
pub fn check_name(field: &str, name: &str) -> Result<(), Problem> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            "1 to 64 characters of letters, digits and . _ -, starting with a letter or digit",
        ))
    }
}

/// At least 12 characters, not a well-known weak password, not the user name, not
/// one repeated character.
pub fn check_password(name: &str, password: &str) -> Result<(), Problem> {
    const WEAK: &[&str] = &[
        "password1234",
        "123456789012",
        "qwertyuiopas",
        "adminadmin12",
        "passwordpassword",
        "changeme1234",
        "letmein12345",
        "iloveyou1234",
        "welcome12345",
        "qwerty123456",
        "abcdefghijkl",
        "111111111111",
        "000000000000",
        "administrator",
    ];
    let lower = password.to_lowercase();
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(invalid(
            "password",
            format!("at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(invalid("password", "at most 1024 bytes"));
    }
    let first = lower.chars().next();
    if WEAK.contains(&lower.as_str())
        || lower.contains(&name.to_lowercase())
        || lower.chars().all(|c| Some(c) == first)
    {
        return Err(invalid(
            "password",
            "too easy to guess: choose a longer, less common one",
        ));
    }
    Ok(())
}

/// A user as the API shows it (never its password hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: u64,
    pub name: String,
    pub enabled: bool,
    pub groups: Vec<String>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
}

impl UserView {
    pub fn of(u: &User) -> UserView {
        UserView {
            id: u.id,
            name: u.name.clone(),
            enabled: u.enabled,
            groups: u.groups.clone(),
            created_at_ms: u.created_at,
        }
    }
}

pub fn view(u: &User) -> UserView {
    UserView::of(u)
}

fn user_result(resp: Applied, status: StatusCode) -> Result<Response, Problem> {
    match resp {
        Applied::User(u) => Ok(json(status, &view(&u))),
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
    enabled: Option<bool>,
    /// Only members of this group.
    group: Option<String>,
    /// At most this many items (default 100, at most 1000).
    limit: Option<usize>,
    /// Skip this many items.
    offset: Option<usize>,
    /// `local` (default) or `linearizable` (ask the leader first).
    consistency: Option<String>,
}

/// Users, searched and filtered. Permission `users.read`.
#[utoipa::path(get, path = "/users", tag = "users", params(ListParams),
    responses((status = 200, description = "one page of matching users", body = Page<UserView>)))]
pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, Problem> {
    who.require("users.read")?;
    consistent(&node, p.consistency.as_deref()).await?;
    let q = p.q.as_deref().map(str::to_lowercase);
    let matching: Vec<UserView> = node.state.read(|d| {
        d.state
            .users
            .values()
            .filter(|u| {
                q.as_ref()
                    .is_none_or(|q| u.name.to_lowercase().contains(q) || u.id.to_string() == *q)
            })
            .filter(|u| p.enabled.is_none_or(|e| u.enabled == e))
            .filter(|u| p.group.as_ref().is_none_or(|g| u.groups.contains(g)))
            .map(view)
            .collect()
    });
    Ok(list_page(matching.into_iter(), p.limit, p.offset))
}

/// One user. Permission `users.read`.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = u64, Path, description = "user id")),
    responses(
        (status = 200, description = "the user", body = UserView),
        (status = 400, description = "the id is not a positive integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such user", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require("users.read")?;
    let id = path_id("user", &id)?;
    node.state
        .read(|d| d.state.users.get(&id).map(view))
        .map(|v| json(StatusCode::OK, &v))
        .ok_or_else(|| not_found("user", id))
}

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1 to 64 letters, digits and `. _ -`, starting with a letter or digit;
    /// unique regardless of case.
    name: String,
    /// At least 12 characters, not a well-known weak one, not containing the name.
    password: String,
    /// Existing groups (`admin`, `operator`, `viewer` or custom).
    #[serde(default)]
    groups: Vec<String>,
}

fn check_groups(node: &SharedNode, groups: &[String]) -> Result<(), Problem> {
    let unknown = node.state.read(|d| {
        groups
            .iter()
            .find(|g| !d.state.groups.contains_key(*g))
            .cloned()
    });
    match unknown {
        Some(g) => Err(invalid("groups", format!("unknown group {g:?}"))),
        None => Ok(()),
    }
}

/// Create a user. Permission `users.write`.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses(
        (status = 201, description = "created", body = UserView),
        (status = 409, description = "a user of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "bad name, weak password or unknown group (`field` names it)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(node): State<SharedNode>,
    who: Authed,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Response, Problem> {
    who.require("users.write")?;
    check_name("name", &body.name)?;
    check_password(&body.name, &body.password)?;
    check_groups(&node, &body.groups)?;
    if node.state.read(|d| {
        d.state
            .users
            .values()
            .any(|u| u.name.eq_ignore_ascii_case(&body.name))
    }) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("user {:?} already exists", body.name),
        ));
    }
    let hash = crate::auth::hash_password(body.password)
        .await
        .map_err(Problem::from)?;
    let cmd = Command::CreateUser {
        name: body.name,
        password_hash: hash,
        groups: body.groups,
        at: now_ms(),
    };
    user_result(service::write(&node, cmd).await?, StatusCode::CREATED)
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    enabled: Option<bool>,
    password: Option<String>,
    groups: Option<Vec<String>>,
}

/// Enable, disable, set the password or the groups. Disabling or a new password ends
/// the user's existing tokens on every node. Permission `users.write`.
#[utoipa::path(patch, path = "/users/{id}", tag = "users",
    params(("id" = u64, Path, description = "user id")), request_body = UserPatch,
    responses(
        (status = 200, description = "the user as changed", body = UserView),
        (status = 404, description = "no such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "it would leave no enabled admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "weak password or unknown group", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserPatch>,
) -> Result<Response, Problem> {
    who.require("users.write")?;
    let id = path_id("user", &id)?;
    let name = node
        .state
        .read(|d| d.state.users.get(&id).map(|u| u.name.clone()))
        .ok_or_else(|| not_found("user", id))?;
    if let Some(g) = &body.groups {
        check_groups(&node, g)?;
    }
    let password_hash = match body.password {
        Some(p) => {
            check_password(&name, &p)?;
            Some(crate::auth::hash_password(p).await.map_err(Problem::from)?)
        }
        None => None,
    };
    let cmd = Command::UpdateUser {
        id,
        enabled: body.enabled,
        password_hash,
        groups: body.groups,
    };
    user_result(service::write(&node, cmd).await?, StatusCode::OK)
}

/// Delete a user; its tokens stop working on every node. Permission `users.write`.
#[utoipa::path(delete, path = "/users/{id}", tag = "users",
    params(("id" = u64, Path, description = "user id")),
    responses(
        (status = 200, description = "the deleted user", body = UserView),
        (status = 404, description = "no such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "it is the last enabled admin", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require("users.write")?;
    let id = path_id("user", &id)?;
    user_result(
        service::write(&node, Command::DeleteUser { id }).await?,
        StatusCode::OK,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords() {
        assert!(check_name("name", "alice").is_ok());
        assert!(check_name("name", "backup.ops-2").is_ok());
        for bad in ["", "-x", "a b", "ü", &"a".repeat(65)] {
            assert!(check_name("name", bad).is_err(), "{bad:?}");
        }
        assert!(check_password("alice", "correct horse battery").is_ok());
        for bad in [
            "short",
            "password1234",
            "aaaaaaaaaaaaaaa",
            "my-alice-password",
        ] {
            let e = check_password("alice", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("password"), "{bad:?}");
            assert_eq!(e.status, 422);
        }
    }
}
