//! The public HTTP surface: health endpoints, `/metrics` and the JSON API under
//! `/api/v1`. Handlers are thin: they parse, check, call the service layer and map
//! its errors to problem+json.

mod audit;
mod auth;
mod backups;
mod certs;
mod cluster;
mod config;
mod events;
mod plans;
mod storage;
pub use events::too_many_streams;
mod groups;
mod health;
mod nodes;
mod openapi;
mod users;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::App;
use crate::net::problem::Problem;
use crate::service::OpError;

/// Largest accepted request body (see raft-store's `limits`).
pub const BODY_LIMIT: usize = bcm_raft_store::limits::API_BODY_BYTES;

pub fn router(node: App) -> Router {
    let (api, doc) = documented_routes(&node).split_for_parts();
    let doc = std::sync::Arc::new(openapi::served(openapi::finish(doc)));
    Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(node.clone(), observe))
        .with_state(node)
}

/// Every route with its OpenAPI description: registering a handler here documents
/// it, so the document at `/api/v1/openapi.json` cannot miss a route.
fn documented_routes(node: &App) -> OpenApiRouter<App> {
    let api = OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::me))
        .routes(routes!(auth::logout))
        .routes(routes!(cluster::get_cluster))
        .routes(routes!(cluster::get_digest))
        .routes(routes!(cluster::take_snapshot))
        .routes(routes!(certs::get_ca))
        .routes(routes!(certs::status))
        .routes(routes!(certs::rotate))
        .routes(routes!(storage::list))
        .routes(routes!(nodes::list, nodes::add))
        .routes(routes!(nodes::get_one, nodes::update, nodes::remove))
        .routes(routes!(config::list))
        .routes(routes!(config::get_one, config::put, config::remove))
        .routes(routes!(events::stream))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get_one, users::update, users::remove))
        .routes(routes!(groups::list, groups::create))
        .routes(routes!(groups::get_one, groups::update, groups::remove))
        .routes(routes!(plans::list, plans::create))
        .routes(routes!(plans::get_one, plans::update, plans::remove))
        .routes(routes!(backups::list, backups::create))
        .routes(routes!(backups::get_one, backups::remove))
        .routes(routes!(backups::restore))
        .routes(routes!(backups::files))
        .routes(routes!(backups::verify))
        .routes(routes!(backups::cancel))
        .routes(routes!(backups::cancel_restore))
        .routes(routes!(backups::list_restores))
        .routes(routes!(backups::get_restore))
        .routes(routes!(audit::list))
        .layer(middleware::from_fn_with_state(
            node.clone(),
            refuse_if_excluded,
        ));
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::leader))
        .routes(routes!(health::metrics))
        .nest("/api/v1", api)
}

/// A decommissioned node's state is frozen: it answers no API request. It asks
/// for a token first, as any node does (logging in aside, which takes none):
/// without one, or with one its state shows to be bad, the answer is 401 and
/// says nothing of this node. (A node refused before it applied anything has no
/// key to check a token with: that is 503, as on a node still forming.)
async fn refuse_if_excluded(State(node): State<App>, req: Request, next: Next) -> Response {
    let Some(why) = node.excluded() else {
        return next.run(req).await;
    };
    // Nested under /api/v1, the path seen here may have lost its prefix.
    if !req.uri().path().ends_with("/auth/login") {
        let (mut parts, _) = req.into_parts();
        match Authed::from_request_parts(&mut parts, &node).await {
            Err(p) if p.status == StatusCode::UNAUTHORIZED.as_u16() => return p.into_response(),
            _ => {}
        }
    }
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{why}: this node no longer serves the cluster; use another member"),
    )
    .into_response()
}

/// Records request latency per route for `/metrics`.
/// Records request latency per route for `/metrics`, and runs the request in a
/// `request` span (an id, the method and the route) that the cluster's log lines
/// for it carry: with `BCM_LOG=bcm=debug` one write can be followed from its
/// handler to its commit.
async fn observe(State(node): State<App>, req: Request, next: Next) -> Response {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tracing::Instrument;
    static REQUESTS: AtomicU64 = AtomicU64::new(0);
    let started = Instant::now();
    // Clones of these are cheap (a known method, a shared string).
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", |p| p.as_str());
    let span = tracing::debug_span!(
        "request",
        id = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1,
        method = %method,
        route,
    );
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.in_scope(|| {
        tracing::debug!(
            status,
            ms = started.elapsed().as_millis() as u64,
            "answered"
        )
    });
    node.metrics
        .observe_request(method.as_str(), route, status, started.elapsed());
    resp
}

impl From<OpError> for Problem {
    fn from(e: OpError) -> Problem {
        let (status, field, retry) = match &e {
            OpError::Invalid { field, .. } => (StatusCode::UNPROCESSABLE_ENTITY, field, None),
            OpError::BadRequest { field, .. } => (StatusCode::BAD_REQUEST, field, None),
            OpError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, &None, None),
            OpError::Forbidden(_) => (StatusCode::FORBIDDEN, &None, None),
            OpError::TooManyRequests { retry_after, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, &None, Some(*retry_after))
            }
            OpError::NotFound(_) => (StatusCode::NOT_FOUND, &None, None),
            OpError::Conflict { field, .. } => (StatusCode::CONFLICT, field, None),
            OpError::VersionMismatch(_) => (StatusCode::PRECONDITION_FAILED, &None, None),
            OpError::TooLarge { field, .. } => (StatusCode::PAYLOAD_TOO_LARGE, field, None),
            OpError::Quota { .. } | OpError::DiskFull(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, &None, None)
            }
            OpError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, &None, Some(1)),
            OpError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, &None, None),
        };
        let mut p = Problem::new(status, e.to_string());
        p.field = field.clone();
        p.retry_after = retry;
        if let OpError::Quota { quota, .. } = e {
            p.quota = Some(quota);
        }
        p
    }
}

/// `?limit=&offset=` (the page), `?consistency=` and the resource's own filters
/// `F`, from one query string. An unknown parameter is a 400, as a wrong type is.
pub struct ListQuery<F> {
    pub window: bcm_api::Window,
    pub consistency: Option<String>,
    pub filter: F,
}

impl<S: Send + Sync, F: DeserializeOwned> FromRequestParts<S> for ListQuery<F> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let bad = |e: serde_urlencoded::de::Error| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                format!("Failed to deserialize query string: {e}"),
            )
        };
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).map_err(bad)?;
        let (common, rest): (Vec<_>, Vec<_>) = pairs
            .into_iter()
            .partition(|(k, _)| matches!(k.as_str(), "limit" | "offset" | "consistency"));
        // Not `flatten`: serde_urlencoded then reads numbers as strings.
        #[derive(Deserialize)]
        struct Common {
            limit: Option<usize>,
            offset: Option<usize>,
            consistency: Option<String>,
        }
        let again =
            |pairs: &[(String, String)]| serde_urlencoded::to_string(pairs).unwrap_or_default();
        let common: Common = serde_urlencoded::from_str(&again(&common)).map_err(bad)?;
        let filter: F = serde_urlencoded::from_str(&again(&rest)).map_err(bad)?;
        Ok(ListQuery {
            window: bcm_api::Window {
                limit: common.limit,
                offset: common.offset,
            },
            consistency: common.consistency,
            filter,
        })
    }
}

/// A positive numeric id from the path (400 naming `id` otherwise).
pub fn path_id(what: &str, id: &str) -> Result<u64, Problem> {
    id.parse::<u64>().ok().filter(|i| *i > 0).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("{what} id must be a positive integer, not {id:?}"),
        )
        .with_field("id")
    })
}

/// A JSON body whose errors are problem+json: 400 malformed, 413 too large,
/// 415 wrong content type, 422 wrong shape (naming the field).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match Json::<ObjectBody<T>>::from_request(req, state).await {
            Ok(Json(ObjectBody(v))) => Ok(ApiJson(v)),
            Err(rej) => {
                let status = rej.status();
                let text = rej.body_text();
                let mut p = Problem::new(status, text.clone());
                if status == StatusCode::UNPROCESSABLE_ENTITY {
                    if let Some(field) = field_of(&text) {
                        p = p.with_field(field);
                    }
                }
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    p.detail = format!("the request body is larger than {BODY_LIMIT} bytes");
                }
                Err(p)
            }
        }
    }
}

/// A body that must be a JSON object: serde's derived structs also take an
/// array of their fields in order (`[null, null]` was a valid `PATCH`), which is
/// not the shape the API documents. Anything but an object is a 422.
struct ObjectBody<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectBody<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Object(std::marker::PhantomData))
            .map(ObjectBody)
    }
}

/// A change to one item: its key from the path (`{id}` or `{name}`, as text) and
/// the change, the JSON body (with [`ApiJson`]'s errors).
pub struct Edit<T>(pub String, pub T);

impl<T: DeserializeOwned> FromRequest<App> for Edit<T> {
    type Rejection = Response;

    async fn from_request(req: Request, app: &App) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let axum::extract::Path(key) =
            axum::extract::Path::<String>::from_request_parts(&mut parts, app)
                .await
                .map_err(IntoResponse::into_response)?;
        let ApiJson(change) = ApiJson::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Edit(key, change))
    }
}

/// Pulls the field name out of serde's message ("...: value: invalid type ..." or
/// "unknown field `x`").
fn field_of(text: &str) -> Option<String> {
    if let Some(i) = text.find("unknown field `") {
        let rest = &text[i + 15..];
        return rest.split('`').next().map(str::to_string);
    }
    if let Some(i) = text.find("missing field `") {
        let rest = &text[i + 15..];
        return rest.split('`').next().map(str::to_string);
    }
    let after = text.split("target type: ").nth(1)?;
    let path = after.split(": ").next()?;
    (!path.is_empty() && !path.contains(' ')).then(|| path.to_string())
}

/// The bearer token of a request's `Authorization` header.
pub(crate) fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, RFC 9110).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The authenticated caller (service/auth.rs), taken from the bearer token.
pub use crate::service::auth::Caller as Authed;

/// A permission a route requires, as a type: `Ctx<UsersWrite>` in a handler's
/// signature says what it needs, and the request is refused (401, 403) before
/// anything else of it is read.
pub trait Permission {
    const NAME: &'static str;
}

macro_rules! permissions {
    ($($marker:ident = $name:literal),* $(,)?) => {$(
        #[doc = concat!("Permission `", $name, "`.")]
        pub struct $marker;
        impl Permission for $marker {
            const NAME: &'static str = $name;
        }
    )*};
}

permissions!(
    ClusterRead = "cluster.read",
    ClusterWrite = "cluster.write",
    NodesRead = "nodes.read",
    NodesWrite = "nodes.write",
    ConfigRead = "config.read",
    ConfigWrite = "config.write",
    UsersRead = "users.read",
    UsersWrite = "users.write",
    GroupsRead = "groups.read",
    GroupsWrite = "groups.write",
    EventsRead = "events.read",
    PlansRead = "plans.read",
    PlansWrite = "plans.write",
    BackupsRead = "backups.read",
    BackupsWrite = "backups.write",
    RestoresRead = "restores.read",
    RestoresWrite = "restores.write",
    AuditRead = "audit.read",
);

/// What a handler works with: the app, and a caller who holds permission `P`.
/// Derefs to the app (and through it to the cluster node).
pub struct Ctx<P> {
    pub app: App,
    pub who: Authed,
    permission: std::marker::PhantomData<P>,
}

impl<P: Permission> FromRequestParts<App> for Ctx<P> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Problem> {
        let who = Authed::from_request_parts(parts, app).await?;
        if let Err(e) = who.require(P::NAME) {
            // A write refused for want of the permission is in the audit log.
            if !parts.method.is_safe() {
                let path = parts
                    .extensions
                    .get::<axum::extract::OriginalUri>()
                    .map_or(parts.uri.path(), |u| u.path());
                let method = parts.method.as_str();
                crate::service::audit::denied(app, &who, method, path, P::NAME).await;
            }
            return Err(e.into());
        }
        Ok(Ctx {
            app: app.clone(),
            who,
            permission: std::marker::PhantomData,
        })
    }
}

impl<P> std::ops::Deref for Ctx<P> {
    type Target = crate::http::AppState;
    fn deref(&self) -> &crate::http::AppState {
        &self.app
    }
}

/// What every handler returns.
pub type Answer = Result<Response, Problem>;

/// 200 with `body` as JSON.
pub fn ok(body: impl serde::Serialize) -> Answer {
    Ok(json(StatusCode::OK, &body))
}

/// 201 with `body` as JSON.
pub fn created(body: impl serde::Serialize) -> Answer {
    Ok(json(StatusCode::CREATED, &body))
}

/// 202 with `body` as JSON: recorded, to be done.
pub fn accepted(body: impl serde::Serialize) -> Answer {
    Ok(json(StatusCode::ACCEPTED, &body))
}

impl FromRequestParts<App> for Authed {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, node: &App) -> Result<Self, Problem> {
        let token = bearer_of(&parts.headers).ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: log in with POST /api/v1/auth/login",
            )
        })?;
        let mut who = crate::service::auth::authenticate(node, &node.tokens, token)?;
        who.addr = client_addr(parts);
        Ok(who)
    }
}

/// The address of the client that sent the request, for the audit log: the
/// one net/client_addr.rs worked out (behind a trusted proxy, the one
/// X-Forwarded-For names; the UI's in-process calls carry the browser's).
pub(crate) fn client_addr(parts: &Parts) -> Option<std::net::IpAddr> {
    crate::net::client_addr::ClientAddr::of(parts).map(|c| c.0)
}

/// Resolves once `token` no longer opens `permission`: logged out, expired, its user
/// disabled, deleted or given a new password, or its groups changed. Ends a stream
/// opened with it (checked every second; a check is a read of the local state).
pub async fn until_refused(node: App, token: String, permission: &'static str) {
    let mut stop = node.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match crate::service::auth::authenticate(&node, &node.tokens, &token) {
            Ok(who) if who.require(permission).is_ok() => {}
            _ => return,
        }
    }
}

/// Query string errors are problem+json too.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

pub fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(super::bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(super::bearer_token("bearer abc"), Some("abc"));
        assert_eq!(super::bearer_token("Basic abc"), None);
        assert_eq!(super::bearer_token("Bearer "), None);
        assert_eq!(super::bearer_token("Bearer"), None);
    }
}
