//! `/backups`, `/backups/{id}`, `/restores`, `/restores/{id}`: start, follow, delete
//! and restore backups.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use bcm_api::{NewBackup, NewRestore};
use bcm_web_ui::model::{Backup, List, Plan, Restore};
use bcm_web_ui::pages::{BackupPage, BackupsPage, Choice, Listing, RestorePage, RestoresPage};
use bcm_web_ui::{Chrome, Draft};

use super::session::Posted;
use super::{changed, created, done, lines, number, DetailPage, ListPage, Session, Ui, UiState};

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

impl ListPage for BackupsPage {
    type Item = Backup;
    const API: &'static str = "/api/v1/backups";

    async fn build(ui: &Ui, s: &Session, chrome: Chrome, listing: Listing<Backup>) -> Self {
        BackupsPage {
            chrome,
            listing,
            plans: plan_choices(ui, s).await,
            nodes: ui.node_choices(s).await,
        }
    }
}

impl DetailPage for BackupPage {
    type List = BackupsPage;

    fn title(backup: &Backup) -> String {
        format!("Backup #{}", backup.id)
    }

    async fn build(
        ui: &Ui,
        s: &Session,
        chrome: Chrome,
        backup: Backup,
        draft: Option<Draft>,
    ) -> Self {
        let restores = format!("/api/v1/restores?backup={}&limit=100", backup.id);
        BackupPage {
            chrome,
            restores: ui
                .get::<List<Restore>>(s, &restores)
                .await
                .map(|l| l.items)
                .unwrap_or_default(),
            backup,
            nodes: ui.node_choices(s).await,
            draft: draft.unwrap_or_default(),
        }
    }
}

impl ListPage for RestoresPage {
    type Item = Restore;
    const API: &'static str = "/api/v1/restores";

    async fn build(ui: &Ui, s: &Session, chrome: Chrome, listing: Listing<Restore>) -> Self {
        RestoresPage {
            chrome,
            listing,
            nodes: ui.node_choices(s).await,
        }
    }
}

impl DetailPage for RestorePage {
    type List = RestoresPage;

    fn title(restore: &Restore) -> String {
        format!("Restore #{}", restore.id)
    }

    async fn build(
        _: &Ui,
        _: &Session,
        chrome: Chrome,
        restore: Restore,
        _: Option<Draft>,
    ) -> Self {
        RestorePage { chrome, restore }
    }
}

/// From a plan (`plan`) or ad hoc (`source_node` and `paths`).
pub async fn start(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let backup = if !f.get("plan").is_empty() {
        number(f, "plan").map(|plan| NewBackup {
            plan: Some(plan),
            ..NewBackup::default()
        })
    } else {
        number(f, "source_node").map(|n| NewBackup {
            source_node: Some(n),
            paths: Some(lines(f.get("paths"))),
            ..NewBackup::default()
        })
    };
    let result = match backup {
        Ok(b) => ui.send(&p.s, Method::POST, BackupsPage::API, &b).await,
        Err(e) => Err(e),
    };
    let result = result.map(|v| {
        done(
            &format!("/backups/{}", v["id"]),
            format!("Backup #{} started.", v["id"]),
        )
    });
    created::<BackupsPage>(&ui, &p, result).await
}

pub async fn change(State(ui): State<UiState>, Path(id): Path<String>, p: Posted) -> Response {
    let f = &p.form;
    let uri = BackupPage::api_uri(&id);
    let result = if f.get("op") == "delete" {
        ui.delete(&p.s, &uri)
            .await
            .map(|_| done("/backups", format!("Backup #{id} deleted.")))
    } else {
        match number(f, "target_node") {
            Ok(target_node) => {
                let include = f.get("include").trim();
                let restore = NewRestore {
                    target_node,
                    target_path: f.get("target_path").trim().into(),
                    overwrite: f.get("overwrite") == "on",
                    include: (!include.is_empty()).then(|| include.to_string()),
                };
                ui.send(&p.s, Method::POST, &format!("{uri}/restore"), &restore)
                    .await
                    .map(|v| {
                        done(
                            &format!("/restores/{}", v["id"]),
                            format!("Restore #{} started.", v["id"]),
                        )
                    })
            }
            Err(e) => Err(e),
        }
    };
    changed::<BackupPage>(&ui, &p, &id, result).await
}
