//! `/users` and `/users/{id}`: list, search and filter, create, enable, disable,
//! change groups and password, remove.

use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bcm_web_ui::model::{Group, List, User};
use bcm_web_ui::pages::{UserPage, UsersPage};
use bcm_web_ui::{Draft, Flash};
use serde_json::json;

use super::session::Posted;
use super::{chrome_with, done, error_page, page, seg, ListQuery, Session, Ui, UiState};

async fn group_names(ui: &Ui, s: &Session) -> Vec<String> {
    ui.get::<List<Group>>(s, "/api/v1/groups?limit=1000")
        .await
        .map(|l| l.items.into_iter().map(|g| g.name).collect())
        .unwrap_or_default()
}

async fn render_list(
    ui: &Ui,
    s: &Session,
    query: Option<&str>,
    flash: Option<Flash>,
    draft: Draft,
    mut status: StatusCode,
) -> Response {
    let q = ListQuery::parse(query);
    let mut flash = flash;
    let list: List<User> = ui
        .list(s, &q, "/api/v1/users", &mut status, &mut flash)
        .await;
    let t = UsersPage {
        chrome: chrome_with(ui, s, "Users", "/users", flash),
        pager: q.pager("/users", list.items.len(), list.total),
        list,
        filter: q.filter,
        draft,
        groups: group_names(ui, s).await,
    };
    page(Some(s), status, &t)
}

pub async fn list(State(ui): State<UiState>, s: Session, RawQuery(q): RawQuery) -> Response {
    render_list(
        &ui,
        &s,
        q.as_deref(),
        None,
        Draft::default(),
        StatusCode::OK,
    )
    .await
}

pub async fn create(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let body =
        json!({"name": f.get("name"), "password": f.get("password"), "groups": f.all("groups")});
    match ui.send(&p.s, Method::POST, "/api/v1/users", body).await {
        Ok(v) => done(
            &format!("/users/{}", v["id"]),
            format!("User {} created.", f.get("name")),
        ),
        Err(e) => {
            let draft = f.without(&["password", "csrf"]);
            render_list(&ui, &p.s, None, Some(e.flash()), draft, e.status).await
        }
    }
}

async fn render_one(
    ui: &Ui,
    s: &Session,
    id: &str,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    match ui
        .get::<User>(s, &format!("/api/v1/users/{}", seg(id)))
        .await
    {
        Ok(user) => {
            let t = UserPage {
                chrome: chrome_with(ui, s, &format!("User {}", user.name), "/users", flash),
                user,
                groups: group_names(ui, s).await,
            };
            page(Some(s), status, &t)
        }
        Err(e) => error_page(ui, Some(s), &e, "/users"),
    }
}

pub async fn detail(State(ui): State<UiState>, s: Session, Path(id): Path<String>) -> Response {
    render_one(&ui, &s, &id, None, StatusCode::OK).await
}

pub async fn change(State(ui): State<UiState>, Path(id): Path<String>, p: Posted) -> Response {
    let f = &p.form;
    let uri = format!("/api/v1/users/{}", seg(&id));
    let (result, message) = match f.get("op") {
        "enable" => (
            ui.send(&p.s, Method::PATCH, &uri, json!({"enabled": true}))
                .await,
            "User enabled.",
        ),
        "disable" => (
            ui.send(&p.s, Method::PATCH, &uri, json!({"enabled": false}))
                .await,
            "User disabled: its sessions have ended.",
        ),
        "groups" => (
            ui.send(
                &p.s,
                Method::PATCH,
                &uri,
                json!({"groups": f.all("groups")}),
            )
            .await,
            "Groups saved.",
        ),
        "password" => (
            ui.send(
                &p.s,
                Method::PATCH,
                &uri,
                json!({"password": f.get("password")}),
            )
            .await,
            "Password set.",
        ),
        "delete" => {
            return match ui.call(Some(&p.s), Method::DELETE, &uri, None, &[]).await {
                Ok(_) => done("/users", "User removed."),
                Err(e) => render_one(&ui, &p.s, &id, Some(e.flash()), e.status).await,
            }
        }
        other => {
            let e = super::UiError {
                status: StatusCode::BAD_REQUEST,
                detail: format!("unknown action {other:?}"),
                field: None,
            };
            return render_one(&ui, &p.s, &id, Some(e.flash()), e.status).await;
        }
    };
    match result {
        Ok(_) => done(&format!("/users/{}", seg(&id)), message),
        Err(e) => render_one(&ui, &p.s, &id, Some(e.flash()), e.status).await,
    }
}
