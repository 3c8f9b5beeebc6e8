//! The public HTTP surface: health endpoints, `/metrics` and the JSON API under
//! `/api/v1`. Handlers are thin: they parse, check, call the service layer and map
//! its errors to problem+json.

mod auth;
mod backups;
mod plans;
pub use auth::LoginLimiter;
mod cluster;
mod config;
mod events;
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
use bcm_raft_store::Rejection;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::Problem;
use crate::runtime::SharedNode;
use crate::service::ServiceError;

/// Largest accepted request body (see raft-store's `limits`).
pub const BODY_LIMIT: usize = bcm_raft_store::limits::API_BODY_BYTES;

pub fn router(node: SharedNode) -> Router {
    let (api, doc) = documented_routes(&node).split_for_parts();
    let doc = std::sync::Arc::new(openapi::finish(doc));
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
fn documented_routes(node: &SharedNode) -> OpenApiRouter<SharedNode> {
    let api = OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::me))
        .routes(routes!(auth::logout))
        .routes(routes!(cluster::get_cluster))
        .routes(routes!(cluster::take_snapshot))
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
        .routes(routes!(backups::list_restores))
        .routes(routes!(backups::get_restore))
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

/// A decommissioned node's state is frozen: it answers no API request.
async fn refuse_if_excluded(State(node): State<SharedNode>, req: Request, next: Next) -> Response {
    match node.excluded() {
        Some(why) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{why}: this node no longer serves the cluster; use another member"),
        )
        .into_response(),
        None => next.run(req).await,
    }
}

/// Records request latency per route for `/metrics`.
async fn observe(State(node): State<SharedNode>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // Clones of these are cheap (a known method, a shared string).
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    node.metrics.observe_request(
        method.as_str(),
        route.as_ref().map_or("unmatched", |p| p.as_str()),
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

impl From<ServiceError> for Problem {
    fn from(e: ServiceError) -> Problem {
        match e {
            ServiceError::NoLeader(m) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, m).retry_after(1)
            }
            ServiceError::Unavailable(m) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, m).retry_after(1)
            }
            ServiceError::NotFound(m) => Problem::new(StatusCode::NOT_FOUND, m),
            ServiceError::Conflict(m) => Problem::new(StatusCode::CONFLICT, m),
            ServiceError::Internal(m) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, m),
            ServiceError::TooLarge(m) => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, m),
        }
    }
}

impl From<crate::auth::HashError> for Problem {
    fn from(e: crate::auth::HashError) -> Problem {
        match e {
            crate::auth::HashError::Busy(_) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(1)
            }
            crate::auth::HashError::Failed(m) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
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

/// 404 for `what id`.
pub fn not_found(what: &str, id: impl std::fmt::Display) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, format!("{what} {id} does not exist"))
}

/// A command result the handler did not expect: a bug, reported as such.
pub fn unexpected(other: &bcm_raft_store::Response) -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unexpected result {other:?}"),
    )
}

/// A rejected command, mapped to the status a client expects.
pub fn rejection(r: Rejection) -> Problem {
    let status = match &r {
        Rejection::NotFound { .. } => StatusCode::NOT_FOUND,
        Rejection::AlreadyExists { .. }
        | Rejection::AlreadyInitialized
        | Rejection::StaleEpoch { .. } => StatusCode::CONFLICT,
        Rejection::VersionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
        Rejection::NotInitialized => StatusCode::SERVICE_UNAVAILABLE,
        Rejection::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Rejection::Conflict(_) => StatusCode::CONFLICT,
        Rejection::QuotaExceeded { quota, .. } => {
            let mut p = Problem::new(StatusCode::INSUFFICIENT_STORAGE, r.to_string());
            p.quota = Some(quota.as_str().into());
            return p;
        }
    };
    Problem::new(status, r.to_string())
}

/// A JSON body whose errors are problem+json: 400 malformed, 413 too large,
/// 415 wrong content type, 422 wrong shape (naming the field).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
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

/// The authenticated caller, with the permissions its groups grant.
pub struct Authed {
    pub user_id: u64,
    pub name: String,
    pub groups: Vec<String>,
    pub permissions: bcm_raft_store::PermissionSet,
    /// When the token expires (Unix seconds).
    pub expires_at: u64,
}

impl Authed {
    /// Every route checks exactly one permission.
    pub fn require(&self, permission: &str) -> Result<(), Problem> {
        if self.permissions.contains(permission) {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("user {:?} lacks the permission {permission:?}", self.name),
            ))
        }
    }
}

impl FromRequestParts<SharedNode> for Authed {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, node: &SharedNode) -> Result<Self, Problem> {
        let token = bearer_of(&parts.headers).ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: log in with POST /api/v1/auth/login",
            )
        })?;
        Authed::of_token(node, token)
    }
}

/// Resolves once `token` no longer opens `permission`: logged out, expired, its user
/// disabled, deleted or given a new password, or its groups changed. Ends a stream
/// opened with it (checked every second; a check is a read of the local state).
pub async fn until_refused(node: SharedNode, token: String, permission: &'static str) {
    let mut stop = node.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match Authed::of_token(&node, &token) {
            Ok(who) if who.require(permission).is_ok() => {}
            _ => return,
        }
    }
}

impl Authed {
    /// Checks a bearer token as every request's is checked.
    pub fn of_token(node: &SharedNode, token: &str) -> Result<Authed, Problem> {
        let forming = || {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the cluster is still forming",
            )
            .retry_after(1)
        };
        // A token verified before (same key, same cluster) is not verified again:
        // only its expiry is checked. Everything that can revoke it (the user's
        // state and token generation) is checked below on every request.
        let cached = node.state.read(|d| {
            let cluster_id = d.state.cluster_id.as_deref()?;
            Some(node.tokens.get(&d.state.token_key, cluster_id, token))
        });
        let token_of = match cached {
            None => return Err(forming()),
            Some(Some(t)) => t,
            Some(None) => {
                let (key, cluster_id) = node
                    .state
                    .read(|d| (d.state.token_key.clone(), d.state.cluster_id.clone()));
                let cluster_id = cluster_id.ok_or_else(forming)?;
                let claims = crate::auth::verify(&key, &cluster_id, token)
                    .map_err(|m| Problem::new(StatusCode::UNAUTHORIZED, m))?;
                node.tokens.insert(&key, &cluster_id, token, &claims)
            }
        };
        let (revoked, user) = node.state.read(|d| {
            let user = d
                .state
                .users
                .get(&token_of.user_id)
                .filter(|u| u.enabled)
                .map(|u| {
                    (
                        u.token_generation,
                        u.name.clone(),
                        u.groups.clone(),
                        d.state.permissions_of(u),
                    )
                });
            (d.state.is_revoked(crate::auth::token_id(token)), user)
        });
        if revoked {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "this token was logged out; log in again",
            ));
        }
        let Some((generation, name, groups, permissions)) = user else {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "the user of this token is disabled or deleted",
            ));
        };
        if generation != token_of.generation {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "this token was issued before the password changed or the user was disabled; log in again",
            ));
        }
        Ok(Authed {
            user_id: token_of.user_id,
            name,
            groups,
            permissions,
            expires_at: token_of.exp,
        })
    }
}

/// `?consistency=linearizable` on reads.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// `local` (default: this node's state) or `linearizable` (ask the leader first).
    #[serde(default)]
    pub consistency: Option<String>,
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

/// Makes the read linearizable when asked.
pub async fn consistent(node: &SharedNode, consistency: Option<&str>) -> Result<(), Problem> {
    match consistency {
        None | Some("local") => Ok(()),
        Some("linearizable") => crate::service::read_barrier(node)
            .await
            .map_err(Problem::from),
        Some(other) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            format!("consistency must be \"local\" or \"linearizable\", not {other:?}"),
        )
        .with_field("consistency")),
    }
}

/// One page of a list.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many match, over all pages.
    pub total: usize,
}

/// One page of a list: `{items, total}`, `offset` items skipped, at most `limit`
/// (default 100, capped at 1000) returned; `total` counts every match.
pub fn list_page<T: serde::Serialize>(
    matching: impl ExactSizeIterator<Item = T>,
    limit: Option<usize>,
    offset: Option<usize>,
) -> Response {
    let total = matching.len();
    let items: Vec<T> = matching
        .skip(offset.unwrap_or(0))
        .take(limit.unwrap_or(100).min(1000))
        .collect();
    json(StatusCode::OK, &Page { items, total })
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
