//! The web UI: server-rendered pages on the API listener, at the top level (`/`,
//! `/login`, `/users`, ...), with static assets under `/static/`.
//!
//! Handlers are clients of the JSON API, in process: each one sends the request the
//! page stands for through the same `Router` that serves `/api/v1` (no network hop),
//! with the session's token as its bearer token. So every permission check, every
//! validation rule and every forward to the leader is the API's own, written once;
//! the UI only turns the answers into pages and refusals into plain words.
//!
//! One module per area (`users.rs`, `nodes.rs`, ...); templates and view models live in
//! the `bcm-web-ui` crate, which knows nothing of Raft.

mod backups;
mod config;
mod dashboard;
mod groups;
mod live;
mod nodes;
mod plans;
mod session;
mod users;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path};
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bcm_web_ui::{Chrome, Draft, Flash, Pager, Template, Viewer, DEFAULT_PAGE};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

use crate::runtime::SharedNode;
pub use session::Session;

/// How many events the dashboard keeps to show.
const RECENT_EVENTS: usize = 30;

pub struct Ui {
    node: SharedNode,
    /// The JSON API, called in process.
    api: Router,
    /// The last events, newest first, with when they were seen.
    recent: Mutex<VecDeque<(u64, crate::events::ClusterEvent)>>,
}

pub type UiState = Arc<Ui>;

pub fn router(node: SharedNode) -> Router {
    let ui = Arc::new(Ui {
        node: node.clone(),
        api: crate::api::router(node.clone()),
        recent: Mutex::new(VecDeque::new()),
    });
    tokio::spawn(live::keep_recent(ui.clone()));
    Router::new()
        .route("/", get(dashboard::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/nodes", get(nodes::list).post(nodes::add))
        .route("/nodes/{id}", get(nodes::detail).post(nodes::change))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", get(users::detail).post(users::change))
        .route("/groups", get(groups::list).post(groups::create))
        .route("/groups/{name}", get(groups::detail).post(groups::change))
        .route("/config", get(config::list).post(config::set))
        .route("/config/{*key}", get(config::detail).post(config::change))
        .route("/plans", get(plans::list).post(plans::create))
        .route("/plans/{id}", get(plans::detail).post(plans::change))
        .route("/backups", get(backups::list).post(backups::start))
        .route("/backups/{id}", get(backups::detail).post(backups::change))
        .route("/restores", get(backups::restores))
        .route("/restores/{id}", get(backups::restore_detail))
        .route("/ui/events", get(live::events))
        .route("/ui/live/dashboard", get(dashboard::partial))
        .route("/ui/ready", get(live::ready))
        .route("/static/{file}", get(static_file))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(ui)
}

async fn static_file(Path(file): Path<String>) -> Response {
    match bcm_web_ui::assets::get(&file) {
        Some((content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=300"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// A refused API call, as the page shows it.
#[derive(Debug, Clone)]
pub struct UiError {
    pub status: StatusCode,
    pub detail: String,
    pub field: Option<String>,
}

impl UiError {
    /// The refusal in plain words, saying what to do about it.
    pub fn text(&self) -> String {
        let d = &self.detail;
        match self.status.as_u16() {
            400 | 422 => format!("Please correct this: {d}."),
            401 => format!("Your session has ended: {d}."),
            403 => format!("You are not allowed to do that: {d}."),
            404 => format!("Not found: {d}."),
            409 => format!("Refused: {d}."),
            412 => format!(
                "Someone changed this meanwhile ({d}); reload the page to see the new value."
            ),
            429 => format!("Too many attempts: {d}."),
            503 => format!(
                "The cluster cannot do this right now: {d}. It usually recovers within \
                 seconds (a new leader is being elected); try again."
            ),
            _ => format!("Something went wrong on the server: {d}."),
        }
    }

    pub fn flash(&self) -> Flash {
        Flash::error(self.text(), self.field.clone())
    }
}

impl Ui {
    /// Sends one request to the JSON API in process, as the session's user.
    pub async fn call(
        &self,
        s: Option<&Session>,
        method: Method,
        uri: &str,
        body: Option<Value>,
        extra: &[(header::HeaderName, String)],
    ) -> Result<Value, UiError> {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(s) = s {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", s.token));
        }
        for (k, v) in extra {
            req = req.header(k, v);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).map_err(|e| UiError {
            status: StatusCode::BAD_REQUEST,
            detail: format!("bad request: {e}"),
            field: None,
        })?;
        if let Some(peer) = s.and_then(|s| s.peer) {
            req.extensions_mut().insert(peer);
        }
        let resp = self
            .api
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|never| match never {});
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024)
            .await
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(v);
        }
        Err(UiError {
            status,
            detail: v
                .get("detail")
                .and_then(Value::as_str)
                .unwrap_or(status.canonical_reason().unwrap_or("error"))
                .to_string(),
            field: v.get("field").and_then(Value::as_str).map(str::to_string),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, s: &Session, uri: &str) -> Result<T, UiError> {
        let v = self.call(Some(s), Method::GET, uri, None, &[]).await?;
        serde_json::from_value(v).map_err(|e| UiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: format!("the API answered {uri} in an unexpected shape: {e}"),
            field: None,
        })
    }

    /// One page of the API list at `path` with the page's query. On an error the
    /// page shows an empty list, the error's status and its message.
    pub async fn list<T>(
        &self,
        s: &Session,
        q: &ListQuery,
        path: &str,
        status: &mut StatusCode,
        flash: &mut Option<bcm_web_ui::Flash>,
    ) -> bcm_web_ui::model::List<T>
    where
        bcm_web_ui::model::List<T>: DeserializeOwned + Default,
    {
        match self.get(s, &q.api_uri(path)).await {
            Ok(l) => l,
            Err(e) => {
                *status = e.status;
                *flash = Some(e.flash());
                Default::default()
            }
        }
    }

    pub async fn send(
        &self,
        s: &Session,
        method: Method,
        uri: &str,
        body: Value,
    ) -> Result<Value, UiError> {
        self.call(Some(s), method, uri, Some(body), &[]).await
    }

    /// The frame of every page: who looks, which node serves, which leads.
    pub fn chrome(&self, s: Option<&Session>, title: &str, section: &str) -> Chrome {
        let node = &self.node;
        let m = node.raft_metrics();
        let mut members: Vec<String> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(_, n)| n.api_addr.clone())
            .collect();
        if !members.contains(&node.cfg.api_advertise) {
            members.insert(0, node.cfg.api_advertise.clone());
        }
        Chrome {
            title: title.to_string(),
            section: section.to_string(),
            viewer: s.map(|s| Viewer {
                name: s.who.name.clone(),
                groups: s.who.groups.clone(),
                permissions: s.who.permissions.names(),
            }),
            csrf: s.map(|s| s.csrf.clone()).unwrap_or_default(),
            serving_id: node.cfg.id,
            serving_addr: node.cfg.api_advertise.clone(),
            leader_id: m.current_leader,
            term: m.current_term,
            members,
            flash: s.and_then(|s| s.flash.clone()).map(Flash::ok),
        }
    }

    /// Node ids and names, for the selects of plans, backups and restores.
    pub async fn node_choices(&self, s: &Session) -> Vec<bcm_web_ui::pages::Choice> {
        self.get::<bcm_web_ui::model::List<bcm_web_ui::model::Member>>(
            s,
            "/api/v1/nodes?limit=1000",
        )
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|m| m.status != "removed")
                .map(|m| bcm_web_ui::pages::Choice::new(m.id, format!("{} (#{})", m.name, m.id)))
                .collect()
        })
        .unwrap_or_default()
    }
}

/// A rendered page with the headers every page carries.
pub fn page(s: Option<&Session>, status: StatusCode, t: &impl Template) -> Response {
    let html = match t.render() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("rendering a page: {e}");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the node's log",
            )
                .into_response();
        }
    };
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    if s.is_some_and(|s| s.flash.is_some()) {
        session::clear_flash(h);
    }
    resp
}

pub fn secure_headers(h: &mut axum::http::HeaderMap) {
    // connect-src allows the other members: the page probes them when its node dies.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self' http: https:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A page that could not be shown at all (a missing resource, a refused read).
pub fn error_page(ui: &Ui, s: Option<&Session>, e: &UiError, back: &str) -> Response {
    let heading = match e.status.as_u16() {
        403 => "Not allowed",
        404 => "Not found",
        503 => "Cluster busy",
        _ => "Cannot show this page",
    };
    let t = bcm_web_ui::pages::ErrorPage {
        chrome: ui.chrome(s, heading, ""),
        heading: heading.into(),
        text: e.text(),
        back: back.into(),
    };
    page(s, e.status, &t)
}

/// The chrome of a page answering a form: the outcome replaces any older flash.
pub fn chrome_with(
    ui: &Ui,
    s: &Session,
    title: &str,
    section: &str,
    flash: Option<Flash>,
) -> Chrome {
    let mut c = ui.chrome(Some(s), title, section);
    if flash.is_some() {
        c.flash = flash;
    }
    c
}

/// After a form succeeded: 303 to `to`, with a message shown once there.
pub fn done(to: &str, message: impl Into<String>) -> Response {
    let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    session::set_flash(resp.headers_mut(), &message.into());
    resp
}

/// A list's query: the filters as given (empty values dropped, so an untouched
/// `<select>` means "any"), and the page wanted.
pub struct ListQuery {
    pub filter: Draft,
    pub offset: usize,
    pub limit: usize,
}

impl ListQuery {
    pub fn parse(raw: Option<&str>) -> ListQuery {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default();
        let mut offset = 0;
        let mut limit = DEFAULT_PAGE;
        let mut filter = Vec::new();
        for (k, v) in pairs {
            if v.is_empty() {
                continue;
            }
            match k.as_str() {
                "offset" => offset = v.parse().unwrap_or(0),
                "limit" => limit = v.parse().unwrap_or(DEFAULT_PAGE).clamp(1, 1000),
                _ => filter.push((k, v)),
            }
        }
        ListQuery {
            filter: Draft(filter),
            offset,
            limit,
        }
    }

    /// The API path with the same filters.
    pub fn api_uri(&self, path: &str) -> String {
        let mut pairs = self.filter.0.clone();
        pairs.push(("limit".into(), self.limit.to_string()));
        pairs.push(("offset".into(), self.offset.to_string()));
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(&pairs).unwrap_or_default()
        )
    }

    pub fn pager(&self, base: &str, shown: usize, total: usize) -> Pager {
        Pager::new(base, &self.filter.0, self.offset, self.limit, shown, total)
    }
}

/// A path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    bcm_web_ui::enc(s)
}

/// `a\nb` -> `["a", "b"]`, blank lines dropped.
pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A numeric form field, or a 422-like refusal naming it.
pub fn number(form: &Draft, field: &str) -> Result<u64, UiError> {
    form.get(field).trim().parse::<u64>().map_err(|_| UiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        detail: format!("{field}: a whole number is needed"),
        field: Some(field.into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_drops_empty_filters_and_keeps_the_page() {
        let q = ListQuery::parse(Some("q=al&enabled=&group=viewer&offset=25&limit=10"));
        assert_eq!(
            q.filter.0,
            vec![
                ("q".to_string(), "al".to_string()),
                ("group".to_string(), "viewer".to_string())
            ]
        );
        assert_eq!(
            q.api_uri("/api/v1/users"),
            "/api/v1/users?q=al&group=viewer&limit=10&offset=25"
        );
        let d = ListQuery::parse(None);
        assert_eq!(d.limit, DEFAULT_PAGE);
        assert_eq!(d.api_uri("/x"), "/x?limit=25&offset=0");
    }

    #[test]
    fn refusals_read_as_plain_words() {
        let e = UiError {
            status: StatusCode::FORBIDDEN,
            detail: "user \"v\" lacks the permission \"users.write\"".into(),
            field: None,
        };
        assert!(e.text().starts_with("You are not allowed to do that"));
        let e = UiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            detail: "no leader".into(),
            field: None,
        };
        assert!(e.text().contains("try again"));
    }
}
