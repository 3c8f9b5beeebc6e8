//! `/backups`, `/backups/{id}`, `/restores`, `/restores/{id}`: start, follow, delete
//! and restore backups.

use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bcm_web_ui::model::{Backup, List, Plan, Restore};
use bcm_web_ui::pages::{BackupPage, BackupsPage, Choice, RestorePage, RestoresPage, JOB_STATUSES};
use bcm_web_ui::{Draft, Flash};
use serde_json::json;

use super::session::Posted;
use super::{
    chrome_with, done, error_page, lines, number, page, seg, ListQuery, Session, Ui, UiState,
};

async fn plan_choices(ui: &Ui, s: &Session) -> Vec<Choice> {
    ui.get::<List<Plan>>(s, "/api/v1/plans?limit=1000")
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|p| Choice::new(p.id, format!("{} (#{})", p.name, p.id)))
                .collect()
        })
        .unwrap_or_default()
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
    let list: List<Backup> = ui
        .list(s, &q, "/api/v1/backups", &mut status, &mut flash)
        .await;
    let t = BackupsPage {
        chrome: chrome_with(ui, s, "Backups", "/backups", flash),
        pager: q.pager("/backups", list.items.len(), list.total),
        list,
        filter: q.filter,
        draft,
        plans: plan_choices(ui, s).await,
        nodes: ui.node_choices(s).await,
        statuses: JOB_STATUSES,
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

/// From a plan (`plan`) or ad hoc (`source_node` and `paths`).
pub async fn start(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let body = if !f.get("plan").is_empty() {
        number(f, "plan").map(|plan| json!({"plan": plan}))
    } else {
        number(f, "source_node").map(|n| json!({"source_node": n, "paths": lines(f.get("paths"))}))
    };
    let result = match body {
        Ok(b) => ui.send(&p.s, Method::POST, "/api/v1/backups", b).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => done(
            &format!("/backups/{}", v["id"]),
            format!("Backup #{} started.", v["id"]),
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
    draft: Draft,
    status: StatusCode,
) -> Response {
    match ui
        .get::<Backup>(s, &format!("/api/v1/backups/{}", seg(id)))
        .await
    {
        Ok(backup) => {
            let restores = ui
                .get::<List<Restore>>(
                    s,
                    &format!("/api/v1/restores?backup={}&limit=100", backup.id),
                )
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let t = BackupPage {
                chrome: chrome_with(ui, s, &format!("Backup #{}", backup.id), "/backups", flash),
                backup,
                restores,
                nodes: ui.node_choices(s).await,
                draft,
            };
            page(Some(s), status, &t)
        }
        Err(e) => error_page(ui, Some(s), &e, "/backups"),
    }
}

pub async fn detail(State(ui): State<UiState>, s: Session, Path(id): Path<String>) -> Response {
    render_one(&ui, &s, &id, None, Draft::default(), StatusCode::OK).await
}

pub async fn change(State(ui): State<UiState>, Path(id): Path<String>, p: Posted) -> Response {
    let f = &p.form;
    let uri = format!("/api/v1/backups/{}", seg(&id));
    let result = if f.get("op") == "delete" {
        ui.call(Some(&p.s), Method::DELETE, &uri, None, &[])
            .await
            .map(|_| done("/backups", format!("Backup #{id} deleted.")))
    } else {
        match number(f, "target_node") {
            Ok(target) => ui
                .send(
                    &p.s,
                    Method::POST,
                    &format!("{uri}/restore"),
                    json!({"target_node": target, "target_path": f.get("target_path").trim()}),
                )
                .await
                .map(|v| {
                    done(
                        &format!("/restores/{}", v["id"]),
                        format!("Restore #{} started.", v["id"]),
                    )
                }),
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            render_one(
                &ui,
                &p.s,
                &id,
                Some(e.flash()),
                f.without(&["csrf"]),
                e.status,
            )
            .await
        }
    }
}

pub async fn restores(State(ui): State<UiState>, s: Session, RawQuery(raw): RawQuery) -> Response {
    let q = ListQuery::parse(raw.as_deref());
    let mut status = StatusCode::OK;
    let mut flash = None;
    let list: List<Restore> = ui
        .list(&s, &q, "/api/v1/restores", &mut status, &mut flash)
        .await;
    let t = RestoresPage {
        chrome: chrome_with(&ui, &s, "Restores", "/restores", flash),
        pager: q.pager("/restores", list.items.len(), list.total),
        list,
        filter: q.filter,
        nodes: ui.node_choices(&s).await,
        statuses: JOB_STATUSES,
    };
    page(Some(&s), status, &t)
}

pub async fn restore_detail(
    State(ui): State<UiState>,
    s: Session,
    Path(id): Path<String>,
) -> Response {
    match ui
        .get::<Restore>(&s, &format!("/api/v1/restores/{}", seg(&id)))
        .await
    {
        Ok(restore) => {
            let t = RestorePage {
                chrome: ui.chrome(Some(&s), &format!("Restore #{}", restore.id), "/restores"),
                restore,
            };
            page(Some(&s), StatusCode::OK, &t)
        }
        Err(e) => error_page(&ui, Some(&s), &e, "/restores"),
    }
}
