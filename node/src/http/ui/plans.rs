//! `/plans` and `/plans/{id}`: what to back up, from where, how often.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use bcm_api::{PlanBody, PlanPatch};
use bcm_web_ui::model::Plan;
use bcm_web_ui::pages::{Listing, PlanPage, PlansPage};
use bcm_web_ui::{Chrome, Draft};

use super::session::Posted;
use super::{
    changed, created, done, lines, number, seg, DetailPage, ListPage, Session, Ui, UiError, UiState,
};

/// The plan a form describes, as the API takes it.
fn plan_of(f: &Draft) -> Result<PlanBody, UiError> {
    let schedule = f.get("schedule").trim();
    Ok(PlanBody {
        name: f.get("name").trim().into(),
        source_node: number(f, "source_node")?,
        paths: lines(f.get("paths")),
        schedule: (!schedule.is_empty()).then(|| schedule.into()),
        keep_last: number(f, "keep_last")?,
        replicas: number(f, "replicas")?,
        enabled: f.get("enabled") == "true",
    })
}

/// The edit form sends every field: all of them change.
fn patch_of(p: PlanBody) -> PlanPatch {
    PlanPatch {
        name: Some(p.name),
        source_node: Some(p.source_node),
        paths: Some(p.paths),
        schedule: Some(p.schedule),
        keep_last: Some(p.keep_last),
        replicas: Some(p.replicas),
        enabled: Some(p.enabled),
    }
}

impl ListPage for PlansPage {
    type Item = Plan;
    const API: &'static str = "/api/v1/plans";

    fn fresh_draft() -> Draft {
        PlansPage::default_form()
    }

    async fn build(ui: &Ui, s: &Session, chrome: Chrome, listing: Listing<Plan>) -> Self {
        PlansPage {
            chrome,
            listing,
            nodes: ui.node_choices(s).await,
        }
    }
}

impl DetailPage for PlanPage {
    type List = PlansPage;

    fn title(plan: &Plan) -> String {
        format!("Plan {}", plan.name)
    }

    async fn build(ui: &Ui, s: &Session, chrome: Chrome, plan: Plan, draft: Option<Draft>) -> Self {
        PlanPage {
            chrome,
            form: draft.unwrap_or_else(|| PlanPage::form_of(&plan)),
            plan,
            nodes: ui.node_choices(s).await,
        }
    }
}

pub async fn create(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let result = match plan_of(f) {
        Ok(plan) => ui.send(&p.s, Method::POST, PlansPage::API, &plan).await,
        Err(e) => Err(e),
    };
    let result = result.map(|v| {
        done(
            &format!("/plans/{}", v["id"]),
            format!("Plan {} created.", f.get("name")),
        )
    });
    created::<PlansPage>(&ui, &p, result).await
}

pub async fn change(State(ui): State<UiState>, Path(id): Path<String>, p: Posted) -> Response {
    let uri = PlanPage::api_uri(&id);
    let result = if p.form.get("op") == "delete" {
        ui.delete(&p.s, &uri)
            .await
            .map(|_| done("/plans", "Plan removed."))
    } else {
        match plan_of(&p.form) {
            Ok(plan) => ui
                .send(&p.s, Method::PATCH, &uri, &patch_of(plan))
                .await
                .map(|_| done(&format!("/plans/{}", seg(&id)), "Plan saved.")),
            Err(e) => Err(e),
        }
    };
    changed::<PlanPage>(&ui, &p, &id, result).await
}
