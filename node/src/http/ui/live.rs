//! What keeps pages live: the event stream for the browser (session cookie instead
//! of a bearer token), the recent events the dashboard lists, and the readiness probe
//! a page uses to find another member when its node dies.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bcm_web_ui::events::{describe, RecentEvent};
use futures_util::StreamExt;
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;

use super::{Session, UiState, RECENT_EVENTS};
use crate::cluster::events::ClusterEvent;
use crate::cluster::now_ms;

fn body_of(event: &ClusterEvent) -> serde_json::Value {
    let mut data = serde_json::to_value(event).unwrap_or_default();
    if let Some(obj) = data.as_object_mut() {
        obj.insert("type".into(), event.kind().into());
    }
    data
}

/// The dashboard's line for an event seen at `at_ms`.
pub fn recent_event(at_ms: u64, event: &ClusterEvent) -> RecentEvent {
    let kind = event.kind();
    RecentEvent {
        at_ms,
        kind: kind.to_string(),
        text: describe(kind, &body_of(event)),
    }
}

/// Keeps the last events this node saw, for the dashboard: as they are (every
/// write is an event: they are described only when a dashboard is drawn).
pub async fn keep_recent(ui: UiState) {
    let mut rx = ui.node.events.subscribe();
    let mut stop = ui.node.shutdown.clone();
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = stop.wait_for(|s| *s) => return,
        };
        let event = match event {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        let mut recent = ui.recent.lock().expect("recent lock");
        recent.push_front((now_ms(), event));
        recent.truncate(RECENT_EVENTS);
    }
}

/// `GET /ui/events`: the API's event stream for a browser session. 401 (not a
/// redirect) without a session: an EventSource cannot follow one to a login page.
/// It ends when the session does (logout, the user disabled, ...).
pub async fn events(State(ui): State<UiState>, parts: axum::http::request::Parts) -> Response {
    let s = match Session::of(&parts, &ui.node).await {
        Ok(s) => s,
        Err(why) => return (StatusCode::UNAUTHORIZED, why).into_response(),
    };
    if let Err(p) = s.who.require("events.read") {
        return (StatusCode::FORBIDDEN, p.to_string()).into_response();
    }
    let max = ui.node.cfg.http.max_event_streams_per_user;
    let Some(slot) = ui.node.streams.open(s.who.user_id, max) else {
        let p = crate::http::api::too_many_streams(&s.who.name, max);
        return (StatusCode::TOO_MANY_REQUESTS, p.detail.clone()).into_response();
    };
    let hello = Event::default()
        .event("hello")
        .retry(Duration::from_millis(1000))
        .data(json!({"node_id": ui.node.cfg.id}).to_string());
    let rx = ui.node.events.subscribe();
    let stream = BroadcastStream::new(rx).filter_map(|item| async move {
        let event = item.ok()?;
        Some(Ok::<_, Infallible>(
            Event::default()
                .event(event.kind())
                .data(body_of(&event).to_string()),
        ))
    });
    let stream = futures_util::stream::once(async move { Ok(hello) })
        .chain(stream)
        .take_until(crate::http::api::until_refused(
            ui.node.clone(),
            s.token.clone(),
            "events.read",
        ));
    let stream = stream.map(move |e| {
        let _held = &slot;
        e
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

/// `GET /ui/ready`: may a page move here? Readable from the other members' pages
/// (CORS), and says nothing secret.
pub async fn ready(State(ui): State<UiState>) -> Response {
    let ok = ui.node.readiness().await;
    let status = if ok.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::Json(json!({"node_id": ui.node.cfg.id, "ready": ok.is_ok()})),
    )
        .into_response()
}
