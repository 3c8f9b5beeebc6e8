use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use futures_util::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::Authed;
use crate::problem::Problem;
use crate::runtime::SharedNode;

/// Server-Sent Events: one event per change (leader changes, members up and down,
/// role assignments, user, group, node, config, plan, backup and restore changes),
/// named by its kind, with a JSON body carrying `type`. Permission `events.read`.
/// The stream ends once its token is no longer accepted (logged out, expired, the
/// user disabled, deleted or given a new password, the permission taken away).
#[utoipa::path(get, path = "/events", tag = "events",
    responses((status = 200, description = "an endless event stream", body = String, content_type = "text/event-stream")))]
pub async fn stream(
    State(node): State<SharedNode>,
    who: Authed,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    who.require("events.read")?;
    let token = super::bearer_of(&headers).unwrap_or_default().to_string();
    // The stream ends when its token would no longer be let in.
    let refused = super::until_refused(node.clone(), token, "events.read");
    let rx = node.events.subscribe();
    let stream = BroadcastStream::new(rx).filter_map(|item| async move {
        let event = item.ok()?;
        let mut data = serde_json::to_value(&event).ok()?;
        if let Some(obj) = data.as_object_mut() {
            obj.insert("type".into(), event.kind().into());
        }
        Some(Ok(Event::default()
            .event(event.kind())
            .data(data.to_string())))
    });
    let stream = stream.take_until(refused);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
