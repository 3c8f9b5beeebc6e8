//! `/plans` and `/plans/{id}`: what to back up, from where, how often.

use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bcm_web_ui::model::{List, Plan};
use bcm_web_ui::pages::{PlanPage, PlansPage};
use bcm_web_ui::{Draft, Flash};
use serde_json::{json, Value};

use super::session::Posted;
use super::{
    chrome_with, done, error_page, lines, number, page, seg, ListQuery, Session, Ui, UiError,
    UiState,
};

/// The plan a form describes, as the API takes it.
fn body_of(f: &Draft) -> Result<Value, UiError> {
    let schedule = f.get("schedule").trim();
    Ok(json!({
        "name": f.get("name").trim(),
        "source_node": number(f, "source_node")?,
        "paths": lines(f.get("paths")),
        "schedule": if schedule.is_empty() { Value::Null } else { json!(schedule) },
        "keep_last": number(f, "keep_last")?,
        "replicas": number(f, "replicas")?,
        "enabled": f.get("enabled") == "true",
    }))
}

async fn render_list(
    ui: &Ui,
    s: &Session,
    query: Option<&str>,
    mut flash: Option<Flash>,
    form: Draft,
    mut status: StatusCode,
) -> Response {
    let q = ListQuery::parse(query);
    let list: List<Plan> = ui
        .list(s, &q, "/api/v1/plans", &mut status, &mut flash)
        .await;
    let t = PlansPage {
        chrome: chrome_with(ui, s, "Plans", "/plans", flash),
        pager: q.pager("/plans", list.items.len(), list.total),
        list,
        filter: q.filter,
        form,
        nodes: ui.node_choices(s).await,
    };
    page(Some(s), status, &t)
}

pub async fn list(State(ui): State<UiState>, s: Session, RawQuery(q): RawQuery) -> Response {
    render_list(
        &ui,
        &s,
        q.as_deref(),
        None,
        PlansPage::default_form(),
        StatusCode::OK,
    )
    .await
}

pub async fn create(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let result = match body_of(f) {
        Ok(body) => ui.send(&p.s, Method::POST, "/api/v1/plans", body).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => done(
            &format!("/plans/{}", v["id"]),
            format!("Plan {} created.", f.get("name")),
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
    id: &str,
    flash: Option<Flash>,
    form: Option<Draft>,
    status: StatusCode,
) -> Response {
    match ui
        .get::<Plan>(s, &format!("/api/v1/plans/{}", seg(id)))
        .await
    {
        Ok(plan) => {
            let t = PlanPage {
                chrome: chrome_with(ui, s, &format!("Plan {}", plan.name), "/plans", flash),
                form: form.unwrap_or_else(|| PlanPage::form_of(&plan)),
                plan,
                nodes: ui.node_choices(s).await,
            };
            page(Some(s), status, &t)
        }
        Err(e) => error_page(ui, Some(s), &e, "/plans"),
    }
}

pub async fn detail(State(ui): State<UiState>, s: Session, Path(id): Path<String>) -> Response {
    render_one(&ui, &s, &id, None, None, StatusCode::OK).await
}

pub async fn change(State(ui): State<UiState>, Path(id): Path<String>, p: Posted) -> Response {
    let f = &p.form;
    let uri = format!("/api/v1/plans/{}", seg(&id));
    let result = if f.get("op") == "delete" {
        ui.call(Some(&p.s), Method::DELETE, &uri, None, &[])
            .await
            .map(|_| done("/plans", "Plan removed."))
    } else {
        match body_of(f) {
            Ok(body) => ui
                .send(&p.s, Method::PATCH, &uri, body)
                .await
                .map(|_| done(&format!("/plans/{}", seg(&id)), "Plan saved.")),
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            let form = Some(f.without(&["csrf", "op"]));
            render_one(&ui, &p.s, &id, Some(e.flash()), form, e.status).await
        }
    }
}
