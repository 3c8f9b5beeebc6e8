//! `/nodes` and `/nodes/{id}`: the node registry; add, configure, decommission.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bcm_web_ui::model::{List, Member};
use bcm_web_ui::pages::{NodePage, NodesPage, NODE_STATUSES, ROLES};
use bcm_web_ui::{Draft, Flash};
use serde_json::json;

use super::session::Posted;
use super::{
    chrome_with, done, error_page, number, page, seg, ListQuery, Session, Ui, UiError, UiState,
};

async fn render_list(
    ui: &Ui,
    s: &Session,
    query: Option<&str>,
    mut flash: Option<Flash>,
    draft: Draft,
    mut status: StatusCode,
) -> Response {
    let q = ListQuery::parse(query);
    let list: List<Member> = ui
        .list(s, &q, "/api/v1/nodes", &mut status, &mut flash)
        .await;
    let t = NodesPage {
        chrome: chrome_with(ui, s, "Nodes", "/nodes", flash),
        pager: q.pager("/nodes", list.items.len(), list.total),
        list,
        filter: q.filter,
        draft,
        roles: ROLES,
        statuses: NODE_STATUSES,
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

pub async fn add(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let result = match number(f, "id") {
        Ok(id) => {
            let mut body = json!({
                "id": id, "api_addr": f.get("api_addr"), "rpc_addr": f.get("rpc_addr"),
                "roles": f.all("roles"),
            });
            if !f.get("name").trim().is_empty() {
                body["name"] = json!(f.get("name").trim());
            }
            ui.send(&p.s, Method::POST, "/api/v1/nodes", body)
                .await
                .map(|_| id)
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(id) => done(&format!("/nodes/{id}"), format!("Node {id} registered.")),
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
    id: &str,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    match ui
        .get::<Member>(s, &format!("/api/v1/nodes/{}", seg(id)))
        .await
    {
        Ok(node) => {
            let t = NodePage {
                chrome: chrome_with(ui, s, &format!("Node {}", node.name), "/nodes", flash),
                node,
                roles: ROLES,
            };
            page(Some(s), status, &t)
        }
        Err(e) => error_page(ui, Some(s), &e, "/nodes"),
    }
}

pub async fn detail(State(ui): State<UiState>, s: Session, Path(id): Path<String>) -> Response {
    render_one(&ui, &s, &id, None, StatusCode::OK).await
}

fn labels(text: &str) -> Result<BTreeMap<String, String>, UiError> {
    let mut out = BTreeMap::new();
    for line in super::lines(text) {
        let Some((k, v)) = line.split_once('=') else {
            return Err(UiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail: format!("labels: {line:?} is not key=value"),
                field: Some("labels".into()),
            });
        };
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

pub async fn change(State(ui): State<UiState>, Path(id): Path<String>, p: Posted) -> Response {
    let f = &p.form;
    let uri = format!("/api/v1/nodes/{}", seg(&id));
    let result = match f.get("op") {
        "decommission" => ui
            .call(Some(&p.s), Method::DELETE, &uri, None, &[])
            .await
            .map(|_| done(&format!("/nodes/{}", seg(&id)), format!("Node {id} decommissioned."))),
        _ => match labels(f.get("labels")) {
            Ok(labels) => ui
                .send(
                    &p.s,
                    Method::PATCH,
                    &uri,
                    json!({"roles": f.all("roles"), "enabled": f.get("enabled") == "true", "labels": labels}),
                )
                .await
                .map(|_| done(&format!("/nodes/{}", seg(&id)), "Node configuration saved.")),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(r) => r,
        Err(e) => render_one(&ui, &p.s, &id, Some(e.flash()), e.status).await,
    }
}
