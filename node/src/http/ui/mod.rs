//! The web UI: server-rendered pages on the API listener, at the top level (`/`,
//! `/login`, `/users`, ...), with static assets under `/static/`.
//!
//! Handlers are clients of the JSON API, in process: each one sends the request the
//! page stands for through the same `Router` that serves `/api/v1` (no network hop),
//! with the session's token as its bearer token. So every permission check, every
//! validation rule and every forward to the leader is the API's own, written once;
//! the UI only turns the answers into pages and refusals into plain words.
//!
//! One module per area (`users.rs`, `nodes.rs`, ...), and `call.rs` for the calls to
//! the API; templates and view models live in the `bcm-web-ui` crate, which knows
//! nothing of Raft. What the areas' pages share is written once here: a list page is
//! a `ListPage` (`list`, `created`), a page of one item a `DetailPage` (`detail`,
//! `changed`).

mod audit;
mod backups;
mod call;
mod config;
mod dashboard;
mod groups;
mod live;
mod nodes;
mod plans;
mod session;
mod users;

use std::collections::VecDeque;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bcm_web_ui::model::List;
use bcm_web_ui::pages::{
    AuditPage, BackupPage, BackupsPage, ConfigEntryPage, ConfigPage, GroupPage, GroupsPage,
    ListView, Listing, NodePage, NodesPage, PlanPage, PlansPage, RestorePage, RestoresPage,
    UserPage, UsersPage,
};
use bcm_web_ui::{Chrome, Draft, Flash, Pager, Template, Viewer, DEFAULT_PAGE};
use serde::de::DeserializeOwned;

use crate::http::App;
pub use call::{decode, json_of, request, UiError};
use session::Posted;
pub use session::Session;

/// How many events the dashboard keeps to show.
const RECENT_EVENTS: usize = 30;

pub struct Ui {
    node: App,
    /// The JSON API, called in process.
    api: Router,
    /// The last events, newest first, with when they were seen.
    recent: Mutex<VecDeque<(u64, crate::cluster::events::ClusterEvent)>>,
}

pub type UiState = Arc<Ui>;

pub fn router(node: App) -> Router {
    let ui = Arc::new(Ui {
        node: node.clone(),
        api: crate::http::api::router(node.clone()),
        recent: Mutex::new(VecDeque::new()),
    });
    tokio::spawn(live::keep_recent(ui.clone()));
    Router::new()
        .route("/", get(dashboard::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/nodes", get(list::<NodesPage>).post(nodes::add))
        .route("/nodes/{id}", get(detail::<NodePage>).post(nodes::change))
        .route("/users", get(list::<UsersPage>).post(users::create))
        .route("/users/{id}", get(detail::<UserPage>).post(users::change))
        .route("/groups", get(list::<GroupsPage>).post(groups::create))
        .route(
            "/groups/{name}",
            get(detail::<GroupPage>).post(groups::change),
        )
        .route("/config", get(list::<ConfigPage>).post(config::set))
        .route(
            "/config/{*key}",
            get(detail::<ConfigEntryPage>).post(config::change),
        )
        .route("/plans", get(list::<PlansPage>).post(plans::create))
        .route("/plans/{id}", get(detail::<PlanPage>).post(plans::change))
        .route("/backups", get(list::<BackupsPage>).post(backups::start))
        .route(
            "/backups/{id}",
            get(detail::<BackupPage>).post(backups::change),
        )
        .route("/restores", get(list::<RestoresPage>))
        .route("/restores/{id}", get(detail::<RestorePage>))
        .route("/audit", get(list::<AuditPage>))
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

impl Ui {
    /// The frame of every page: who looks, which node serves, which leads.
    /// The frame of a page. Without a session (the login page) it names no
    /// member's address, this node's included: that is for logged-in users.
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
        let mut serving_addr = node.cfg.api_advertise.clone();
        if s.is_none() {
            members.clear();
            serving_addr.clear();
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
            serving_addr,
            leader_id: m.current_leader,
            term: m.current_term,
            members,
            flash: s.and_then(|s| s.flash.clone()).map(Flash::ok),
        }
    }

    /// Node ids and names, for the selects of plans, backups and restores.
    pub async fn node_choices(&self, s: &Session) -> Vec<bcm_web_ui::pages::Choice> {
        self.get::<List<bcm_web_ui::model::Member>>(s, "/api/v1/nodes?limit=1000")
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter(|m| m.status != bcm_api::NodeStatus::Removed)
                    .map(|m| {
                        bcm_web_ui::pages::Choice::new(m.id, format!("{} (#{})", m.name, m.id))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A list area (`/users`, `/nodes`, ...): the API list its page shows and what the
/// page draws around it. Its path, title and table are the page's `ListView`.
pub trait ListPage: ListView + Template + Sized {
    /// An item of the list, as the API answers it.
    type Item: DeserializeOwned + Send;
    /// The API's list (`/api/v1/users`); an item is at `{API}/{id}`.
    const API: &'static str;

    /// The create form's values on a fresh page.
    fn fresh_draft() -> Draft {
        Draft::default()
    }

    /// The page around one page of the list, with what else it shows (the choices
    /// of its selects).
    fn build(
        ui: &Ui,
        s: &Session,
        chrome: Chrome,
        listing: Listing<Self::Item>,
    ) -> impl Future<Output = Self> + Send;
}

/// A list page: one page of `P::API` with the query's filters. A refused read shows
/// an empty list, the refusal's status and its words.
async fn render_list<P: ListPage>(
    ui: &Ui,
    s: &Session,
    query: Option<&str>,
    mut flash: Option<Flash>,
    draft: Draft,
    mut status: StatusCode,
) -> Response {
    let q = ListQuery::parse(query);
    let list = match ui.get::<List<P::Item>>(s, &q.api_uri(P::API)).await {
        Ok(l) => l,
        Err(e) => {
            status = e.status;
            flash = Some(e.flash());
            List::default()
        }
    };
    let listing = Listing {
        pager: q.pager(P::PATH, list.items.len(), list.total),
        list,
        filter: q.filter,
        draft,
    };
    let chrome = chrome_with(ui, s, P::TITLE, P::PATH, flash);
    page(Some(s), status, &P::build(ui, s, chrome, listing).await)
}

/// `GET` of a list page.
pub async fn list<P: ListPage>(
    State(ui): State<UiState>,
    s: Session,
    RawQuery(q): RawQuery,
) -> Response {
    render_list::<P>(
        &ui,
        &s,
        q.as_deref(),
        None,
        P::fresh_draft(),
        StatusCode::OK,
    )
    .await
}

/// Form fields never drawn back into a page: the CSRF token, the button pressed and
/// passwords.
const NOT_REDRAWN: &[&str] = &["csrf", "op", "password"];

/// The answer to list `P`'s create form: `result` when it went through, else the
/// list again with the refusal and the form as it was typed.
pub async fn created<P: ListPage>(
    ui: &Ui,
    p: &Posted,
    result: Result<Response, UiError>,
) -> Response {
    match result {
        Ok(r) => r,
        Err(e) => {
            let draft = p.form.without(NOT_REDRAWN);
            render_list::<P>(ui, &p.s, None, Some(e.flash()), draft, e.status).await
        }
    }
}

/// A page of one item (`/users/{id}`, ...): the list it belongs to and how it is
/// drawn.
pub trait DetailPage: Template + Sized {
    /// The item's list: the page's navigation entry, its way back from an error and
    /// where the API has the item.
    type List: ListPage;

    /// The item's API path.
    fn api_uri(id: &str) -> String {
        format!("{}/{}", <Self::List as ListPage>::API, seg(id))
    }

    fn title(item: &<Self::List as ListPage>::Item) -> String;

    /// The page; `draft` holds a refused form's values, to draw back.
    fn build(
        ui: &Ui,
        s: &Session,
        chrome: Chrome,
        item: <Self::List as ListPage>::Item,
        draft: Option<Draft>,
    ) -> impl Future<Output = Self> + Send;
}

/// The page of item `id`, with an action's outcome (`flash`, `draft`, `status`).
async fn render_one<D: DetailPage>(
    ui: &Ui,
    s: &Session,
    id: &str,
    flash: Option<Flash>,
    draft: Option<Draft>,
    status: StatusCode,
) -> Response {
    let section = <D::List as ListView>::PATH;
    match ui.get(s, &D::api_uri(id)).await {
        Ok(item) => {
            let chrome = chrome_with(ui, s, &D::title(&item), section, flash);
            page(Some(s), status, &D::build(ui, s, chrome, item, draft).await)
        }
        Err(e) => error_page(ui, Some(s), &e, section),
    }
}

/// `GET` of an item's page.
pub async fn detail<D: DetailPage>(
    State(ui): State<UiState>,
    s: Session,
    Path(id): Path<String>,
) -> Response {
    render_one::<D>(&ui, &s, &id, None, None, StatusCode::OK).await
}

/// The answer to a form of item `id`'s page: `result` when it went through, else the
/// page again with the refusal and the form as it was typed.
pub async fn changed<D: DetailPage>(
    ui: &Ui,
    p: &Posted,
    id: &str,
    result: Result<Response, UiError>,
) -> Response {
    match result {
        Ok(r) => r,
        Err(e) => {
            let draft = Some(p.form.without(NOT_REDRAWN));
            render_one::<D>(ui, &p.s, id, Some(e.flash()), draft, e.status).await
        }
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
pub fn number<N: FromStr>(form: &Draft, field: &str) -> Result<N, UiError> {
    form.get(field)
        .trim()
        .parse()
        .map_err(|_| UiError::of_field(field, format!("{field}: a whole number is needed")))
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
}
