use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use futures_util::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::{Ctx, EventsRead};
use crate::net::problem::Problem;

/// Server-Sent Events: one event per change (leader changes, members up and down,
/// role assignments, user, group, node, config, plan, backup and restore changes),
/// named by its kind, with a JSON body carrying `type`. Permission `events.read`.
/// The stream ends once its token is no longer accepted (logged out, expired, the
/// user disabled, deleted or given a new password, the permission taken away).
#[utoipa::path(get, path = "/events", tag = "events",
    responses((status = 200, description = "an endless event stream", body = String, content_type = "text/event-stream")))]
pub async fn stream(
    ctx: Ctx<EventsRead>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let (node, who) = (ctx.app, ctx.who);
    let max = node.cfg.http.max_event_streams_per_user;
    let slot = node
        .streams
        .open(who.user_id, max)
        .ok_or_else(|| too_many_streams(&who.name, max))?;
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
    // The slot goes back when the stream is dropped (the client left, or it ended).
    let stream = stream.map(move |e| {
        let _held = &slot;
        e
    });
    let stream = stream.take_until(refused);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// 429 for a user at `http.max_event_streams_per_user` on this node.
pub fn too_many_streams(user: &str, max: usize) -> Problem {
    Problem::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        format!(
            "user {user:?} already has {max} event streams open on this node (http.max_event_streams_per_user); close one"
        ),
    )
    .retry_after(5)
}
