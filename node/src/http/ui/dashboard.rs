//! `/`: the cluster at a glance, and its live part alone for in-place updates.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bcm_web_ui::model::Cluster;
use bcm_web_ui::pages::{DashboardLive, DashboardPage, DashboardPartial};

use super::{Session, Ui, UiState};

async fn live(ui: &Ui, s: &Session) -> (DashboardLive, StatusCode) {
    // Events are for holders of events.read, here as on the API's stream.
    let recent = s.who.require("events.read").is_ok().then(|| {
        ui.recent
            .lock()
            .expect("recent lock")
            .iter()
            .map(|(at_ms, e)| super::live::recent_event(*at_ms, e))
            .collect()
    });
    match ui.get::<Cluster>(s, "/api/v1/cluster").await {
        Ok(c) => (DashboardLive::new(Some(c), None, recent), StatusCode::OK),
        Err(e) => (DashboardLive::new(None, Some(e.text()), recent), e.status),
    }
}

async fn page_(ui: &Ui, s: &Session) -> Response {
    let (live, status) = live(ui, s).await;
    let t = DashboardPage {
        chrome: ui.chrome(Some(s), "Dashboard", "/"),
        live,
    };
    super::page(Some(s), status, &t)
}

pub async fn page(State(ui): State<UiState>, s: Session) -> Response {
    page_(&ui, &s).await
}

pub async fn partial(State(ui): State<UiState>, parts: axum::http::request::Parts) -> Response {
    let s = match Session::of(&parts, &ui.node).await {
        Ok(s) => s,
        Err(why) => return (StatusCode::UNAUTHORIZED, why).into_response(),
    };
    let (live, status) = live(&ui, &s).await;
    super::page(None, status, &DashboardPartial { live: &live })
}
