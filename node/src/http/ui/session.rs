//! Sessions, CSRF and logging in and out.
//!
//! The session is the API's bearer token (an HS256 JWT signed with the replicated
//! token key) in an HttpOnly, SameSite=Strict cookie: every node verifies it, and as
//! cookies are not told apart by port, a page moved to another member keeps it.
//! Every form carries a CSRF token: an HMAC of the session token under the same
//! replicated key, so any node can check it. The login form, before any session,
//! uses a random value in a cookie and in the form (double submit).

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bcm_api::Login;
use bcm_web_ui::pages::LoginPage;
use bcm_web_ui::{Draft, Flash};
use jsonwebtoken::{Algorithm, EncodingKey};
use subtle::ConstantTimeEq;

use super::{decode, json_of, page, request, secure_headers, Ui, UiError, UiState};
use crate::http::api::Authed;
use crate::http::App;
use crate::net::client_addr::ClientAddr;

pub const SESSION_COOKIE: &str = "bcm_session";
const LOGIN_COOKIE: &str = "bcm_login";
const FLASH_COOKIE: &str = "bcm_flash";

/// A logged-in browser.
pub struct Session {
    pub token: String,
    pub csrf: String,
    pub who: Authed,
    /// The browser's address, for the API calls made on its behalf.
    pub client: Option<ClientAddr>,
    /// A message left by the previous request (shown once).
    pub flash: Option<String>,
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(h: &mut HeaderMap, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.append(header::SET_COOKIE, v);
    }
}

pub fn set_flash(h: &mut HeaderMap, text: &str) {
    set_cookie(
        h,
        format!(
            "{FLASH_COOKIE}={}; Path=/; Max-Age=60; HttpOnly; SameSite=Strict",
            bcm_web_ui::enc(text)
        ),
    );
}

pub fn clear_flash(h: &mut HeaderMap) {
    set_cookie(
        h,
        format!("{FLASH_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"),
    );
}

fn read_flash(headers: &HeaderMap) -> Option<String> {
    let raw = cookie(headers, FLASH_COOKIE).filter(|v| !v.is_empty())?;
    let decoded: Vec<(String, String)> = serde_urlencoded::from_str(&format!("m={raw}")).ok()?;
    decoded.into_iter().next().map(|(_, v)| v)
}

/// The CSRF token of a session: HMAC-SHA256 of the session token under the
/// replicated token key (jsonwebtoken's HMAC, the one already used for tokens).
pub fn csrf_for(key: &[u8], token: &str) -> String {
    jsonwebtoken::crypto::sign(
        format!("bcm-ui-csrf:{token}").as_bytes(),
        &EncodingKey::from_secret(key),
        Algorithm::HS256,
    )
    .unwrap_or_default()
}

fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `Secure` when the node is reached over https.
fn secure(node: &App) -> &'static str {
    if node.cfg.api_advertise.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// Where a browser without a valid session is sent: the login page, then back.
fn to_login(parts: &Parts) -> Response {
    let back = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let to = if parts.method == Method::GET && back != "/" {
        format!("/login?next={}", bcm_web_ui::enc(back))
    } else {
        "/login".to_string()
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

impl Session {
    /// The session of a request, checked exactly as the API checks a bearer token.
    pub async fn of(parts: &Parts, node: &App) -> Result<Session, String> {
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|t| !t.is_empty())
            .ok_or("not logged in")?;
        let mut probe = axum::http::Request::builder()
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .map_err(|e| e.to_string())?
            .into_parts()
            .0;
        let who = Authed::from_request_parts(&mut probe, node)
            .await
            .map_err(|p| p.detail.clone())?;
        let key = node.state.read(|d| d.state.token_key.clone());
        Ok(Session {
            csrf: csrf_for(&key, &token),
            token,
            who,
            client: ClientAddr::of(parts),
            flash: read_flash(&parts.headers),
        })
    }
}

impl FromRequestParts<UiState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &UiState) -> Result<Self, Response> {
        Session::of(parts, &ui.node)
            .await
            .map_err(|_| to_login(parts))
    }
}

/// A submitted form of a logged-in session whose CSRF token is right.
pub struct Posted {
    pub s: Session,
    pub form: Draft,
}

fn parse_form(bytes: &[u8]) -> Draft {
    Draft(serde_urlencoded::from_bytes(bytes).unwrap_or_default())
}

const CSRF_REFUSED: &str = "This form was refused: it did not carry this session's \
    security token (CSRF). Reload the page and submit the form again.";

impl FromRequest<UiState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, ui: &UiState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let s = Session::of(&parts, &ui.node)
            .await
            .map_err(|_| to_login(&parts))?;
        let bytes = axum::body::to_bytes(body, 64 * 1024).await.map_err(|_| {
            (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response()
        })?;
        let form = parse_form(&bytes);
        if !same(form.get("csrf"), &s.csrf) {
            tracing::warn!(user = %s.who.name, path = %parts.uri.path(), "form refused: CSRF token missing or wrong");
            let t = bcm_web_ui::pages::ErrorPage {
                chrome: ui.chrome(Some(&s), "Form refused", ""),
                heading: "Form refused".into(),
                text: CSRF_REFUSED.into(),
                back: parts.uri.path().to_string(),
            };
            return Err(page(Some(&s), StatusCode::FORBIDDEN, &t));
        }
        Ok(Posted { s, form })
    }
}

fn login_form(
    ui: &Ui,
    next: &str,
    username: &str,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let nonce = crate::crypto::generate_password();
    let mut chrome = ui.chrome(None, "Log in", "/login");
    chrome.flash = flash;
    let t = LoginPage {
        chrome,
        nonce: nonce.clone(),
        next: next.to_string(),
        username: username.to_string(),
    };
    let mut resp = page(None, status, &t);
    set_cookie(
        resp.headers_mut(),
        format!(
            "{LOGIN_COOKIE}={nonce}; Path=/login; Max-Age=1800; HttpOnly; SameSite=Strict{}",
            secure(&ui.node)
        ),
    );
    resp
}

/// A local path to return to after logging in (never another site), or `/`.
///
/// Only a path that starts with exactly one `/` and holds nothing but printable
/// ASCII other than `\` is kept: browsers read `\` as `/` and drop tabs and
/// newlines from a URL, so `/\evil.example` or `/<tab>/evil.example` would
/// become `//evil.example`, another site. Anything a browser would percent-encode
/// arrives encoded when it came from our own pages.
fn safe_next(next: &str) -> String {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if local {
        next.to_string()
    } else {
        "/".to_string()
    }
}

pub async fn login_page(State(ui): State<UiState>, parts: Parts) -> Response {
    let q: Vec<(String, String)> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let next = q
        .iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| safe_next(v))
        .unwrap_or_else(|| "/".into());
    login_form(&ui, &next, "", None, StatusCode::OK)
}

/// A new session token from the API, asked for from the browser's address.
async fn log_in_as(ui: &Ui, parts: &Parts, login: &Login) -> Result<bcm_api::Session, UiError> {
    let uri = "/api/v1/auth/login";
    let mut req = request(Method::POST, uri, None, Some(json_of(login)?), &[])?;
    if let Some(client) = ClientAddr::of(parts) {
        req.extensions_mut().insert(client);
    }
    decode(uri, ui.answer(req).await?)
}

pub async fn login(State(ui): State<UiState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response();
    };
    let form = parse_form(&bytes);
    let next = safe_next(form.get("next"));
    let username = form.get("username").to_string();
    let nonce = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default();
    if !same(form.get("csrf"), &nonce) {
        return login_form(
            &ui,
            &next,
            &username,
            Some(Flash::error(
                "The login form had expired or did not come from this site (CSRF). Please log in again.",
                None,
            )),
            StatusCode::FORBIDDEN,
        );
    }
    let login = Login {
        username: username.clone(),
        password: form.get("password").into(),
    };
    let token = match log_in_as(&ui, &parts, &login).await {
        Ok(session) => session.token,
        Err(e) => {
            let text = match e.status {
                StatusCode::UNAUTHORIZED => "Unknown user, wrong password or disabled user.".into(),
                _ => e.text(),
            };
            let flash = Some(Flash::error(text, None));
            return login_form(&ui, &next, &username, flash, e.status);
        }
    };
    let mut out = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
    let h = out.headers_mut();
    set_cookie(
        h,
        format!(
            "{SESSION_COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            ui.node.cfg.token_ttl_secs,
            secure(&ui.node)
        ),
    );
    set_cookie(
        h,
        format!("{LOGIN_COOKIE}=; Path=/login; Max-Age=0; HttpOnly; SameSite=Strict"),
    );
    secure_headers(h);
    out
}

/// Ends the session: its token is revoked on every node (`POST /api/v1/auth/logout`),
/// and the cookie goes. When the cluster cannot take the revocation now, the cookie
/// still goes and the login page says the token lives until it expires.
pub async fn logout(State(ui): State<UiState>, p: Posted) -> Response {
    let revoked = ui
        .call(Some(&p.s), Method::POST, "/api/v1/auth/logout", None, &[])
        .await;
    let mut out = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    if let Err(e) = revoked {
        tracing::warn!(
            "logging out: the session's token was not revoked: {}",
            e.detail
        );
        set_flash(
            out.headers_mut(),
            &format!(
                "Logged out of this browser, but the session could not be ended on the cluster ({}); it ends when it expires.",
                e.detail
            ),
        );
    }
    set_cookie(
        out.headers_mut(),
        format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; bcm_session=tok; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn csrf_tokens_depend_on_key_and_session() {
        let a = csrf_for(&[1; 32], "t1");
        assert_eq!(a, csrf_for(&[1; 32], "t1"));
        assert_ne!(a, csrf_for(&[2; 32], "t1"));
        assert_ne!(a, csrf_for(&[1; 32], "t2"));
        assert!(same(&a, &a.clone()));
        assert!(!same("", ""));
        assert!(!same(&a, "x"));
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/users?q=a"), "/users?q=a");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("https://evil.example"), "/");
        assert_eq!(safe_next("/\\evil"), "/");
        assert_eq!(safe_next("/nodes/2"), "/nodes/2");
        assert_eq!(safe_next("/plans?q=a%2Fb#x"), "/plans?q=a%2Fb#x");
        // Browsers drop tabs and newlines from a URL and read \ as /: each of these
        // would send the browser to evil.example.
        for hostile in [
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "\t//evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "///evil.example",
            "/ /evil.example",
            "/\u{0}/evil.example",
            "/\u{7f}/evil.example",
            "/\u{a0}/evil.example",
            "/\u{3000}/evil.example",
            " /evil",
            "evil.example",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_next(hostile), "/", "{hostile:?}");
        }
        // Percent-encoded, a tab or a slash stays part of a path on this site.
        assert_eq!(safe_next("/%09/evil.example"), "/%09/evil.example");
        assert_eq!(safe_next("/%2F/evil.example"), "/%2F/evil.example");
    }

    #[test]
    fn flash_round_trips_through_its_cookie() {
        let mut out = HeaderMap::new();
        set_flash(&mut out, "User al-ice created; ok?");
        let set = out.get(header::SET_COOKIE).unwrap().to_str().unwrap();
        let pair = set.split(';').next().unwrap();
        let mut req = HeaderMap::new();
        req.insert(header::COOKIE, HeaderValue::from_str(pair).unwrap());
        assert_eq!(
            read_flash(&req).as_deref(),
            Some("User al-ice created; ok?")
        );
    }
}
