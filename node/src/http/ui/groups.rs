//! `/groups` and `/groups/{name}`: predefined and custom groups and their permissions.

use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bcm_raft_store::PERMISSIONS;
use bcm_web_ui::model::{Group, List};
use bcm_web_ui::pages::{GroupPage, GroupsPage};
use bcm_web_ui::{Draft, Flash};
use serde_json::json;

use super::session::Posted;
use super::{chrome_with, done, error_page, page, seg, ListQuery, Session, Ui, UiState};

fn permissions() -> Vec<String> {
    PERMISSIONS.iter().map(|p| p.to_string()).collect()
}

async fn render_list(
    ui: &Ui,
    s: &Session,
    query: Option<&str>,
    mut flash: Option<Flash>,
    draft: Draft,
    mut status: StatusCode,
) -> Response {
    let q = ListQuery::parse(query);
    let list: List<Group> = ui
        .list(s, &q, "/api/v1/groups", &mut status, &mut flash)
        .await;
    let t = GroupsPage {
        chrome: chrome_with(ui, s, "Groups", "/groups", flash),
        pager: q.pager("/groups", list.items.len(), list.total),
        list,
        filter: q.filter,
        draft,
        permissions: permissions(),
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
    let body = json!({"name": f.get("name"), "permissions": f.all("permissions")});
    match ui.send(&p.s, Method::POST, "/api/v1/groups", body).await {
        Ok(_) => done(
            &format!("/groups/{}", seg(f.get("name"))),
            format!("Group {} created.", f.get("name")),
        ),
        Err(e) => {
            render_list(
                &ui,
                &p.s,
                None,
                Some(e.flash()),
                f.without(&["csrf"]),
                e.status,
            )
            .await
        }
    }
}

async fn render_one(
    ui: &Ui,
    s: &Session,
    name: &str,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    match ui
        .get::<Group>(s, &format!("/api/v1/groups/{}", seg(name)))
        .await
    {
        Ok(group) => {
            let t = GroupPage {
                chrome: chrome_with(ui, s, &format!("Group {}", group.name), "/groups", flash),
                group,
                permissions: permissions(),
            };
            page(Some(s), status, &t)
        }
        Err(e) => error_page(ui, Some(s), &e, "/groups"),
    }
}

pub async fn detail(State(ui): State<UiState>, s: Session, Path(name): Path<String>) -> Response {
    render_one(&ui, &s, &name, None, StatusCode::OK).await
}

pub async fn change(State(ui): State<UiState>, Path(name): Path<String>, p: Posted) -> Response {
    let uri = format!("/api/v1/groups/{}", seg(&name));
    let result = if p.form.get("op") == "delete" {
        ui.call(Some(&p.s), Method::DELETE, &uri, None, &[])
            .await
            .map(|_| done("/groups", format!("Group {name} removed.")))
    } else {
        ui.send(
            &p.s,
            Method::PATCH,
            &uri,
            json!({"permissions": p.form.all("permissions")}),
        )
        .await
        .map(|_| done(&format!("/groups/{}", seg(&name)), "Permissions saved."))
    };
    match result {
        Ok(r) => r,
        Err(e) => render_one(&ui, &p.s, &name, Some(e.flash()), e.status).await,
    }
}
