//! `/api/v1/auth`: logging in and out, and who the caller is (the rules are the
//! service layer's, service/auth.rs).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bcm_api::{Login, Me, Session, UserView};

use super::{ok, Answer, ApiJson, Authed};
use crate::http::App;
use crate::net::client_addr::ClientAddr;
use crate::net::problem::Problem;
use crate::service::{audit, auth};

/// Log in. An unknown user, a wrong password and a disabled user get the same 401.
#[utoipa::path(post, path = "/auth/login", tag = "auth", security(()),
    request_body = Login,
    responses(
        (status = 200, description = "logged in", body = Session),
        (status = 401, description = "unknown user, wrong password or disabled user", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many failed logins for this name or address (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the cluster is still forming", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(app): State<App>,
    client: ClientAddr,
    ApiJson(body): ApiJson<Login>,
) -> Answer {
    let issued = audit::login(&app, &app.login_limiter, client.0, body).await?;
    let session = Session {
        token: issued.token,
        expires_at: bcm_api::time::rfc3339(issued.expires_at),
        user: UserView::from(&issued.user),
    };
    ok(session)
}

/// The current user.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, description = "the caller", body = Me)))]
pub async fn me(who: Authed) -> Answer {
    ok(Me {
        id: who.user_id,
        name: who.name,
        groups: who.groups,
    })
}

/// Log out: the token of this request is refused from now on, on every node, until
/// it would have expired; the user's other tokens stay valid.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "logged out: this token is refused from now on"),
        (status = 401, description = "no valid token (already logged out, expired, ...)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(State(app): State<App>, who: Authed, headers: HeaderMap) -> Answer {
    // Authed has found and checked the token.
    let token = super::bearer_of(&headers).unwrap_or_default();
    auth::logout(&app, &who, token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
