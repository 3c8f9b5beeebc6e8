//! `/config` and `/config/{key}`: cluster-wide settings; edits are compare-and-set
//! against the version the page showed.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use bcm_web_ui::model::{ConfigEntry, List};
use bcm_web_ui::pages::{ConfigEntryPage, ConfigPage};
use bcm_web_ui::{Draft, Flash};
use serde_json::{json, Value};

use super::session::Posted;
use super::{chrome_with, done, error_page, page, seg, ListQuery, Session, Ui, UiState};

/// A key as a path: each segment encoded, the slashes kept.
fn key_path(key: &str) -> String {
    key.split('/').map(seg).collect::<Vec<_>>().join("/")
}

/// The typed value: JSON when it parses, else the text as a string.
fn value_of(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|_| Value::String(text.to_string()))
}

async fn render_list(
    ui: &Ui,
    s: &Session,
    query: Option<&str>,
    mut flash: Option<Flash>,
    draft: Draft,
    mut status: StatusCode,
) -> Response {
    let q = ListQuery::parse(query);
    let list: List<ConfigEntry> = ui
        .list(s, &q, "/api/v1/config", &mut status, &mut flash)
        .await;
    let t = ConfigPage {
        chrome: chrome_with(ui, s, "Configuration", "/config", flash),
        pager: q.pager("/config", list.items.len(), list.total),
        list,
        filter: q.filter,
        draft,
    };
    page(Some(s), status, &t)
}

pub async fn list(State(ui): State<UiState>, s: Session, RawQuery(q): RawQuery) -> Response {
    render_list(
        &ui,
        &s,
        q.as_deref(),
        None,
        Draft::default(),
        StatusCode::OK,
    )
    .await
}

pub async fn set(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let key = f.get("key").trim();
    let uri = format!("/api/v1/config/{}", key_path(key));
    match ui
        .send(
            &p.s,
            Method::PUT,
            &uri,
            json!({"value": value_of(f.get("value"))}),
        )
        .await
    {
        Ok(_) => done(
            &format!("/config/{}", key_path(key)),
            format!("{key} saved."),
        ),
        Err(e) => {
            render_list(
                &ui,
                &p.s,
                None,
                Some(e.flash()),
                f.without(&["csrf"]),
                e.status,
            )
            .await
        }
    }
}

async fn render_one(
    ui: &Ui,
    s: &Session,
    key: &str,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    match ui
        .get::<ConfigEntry>(s, &format!("/api/v1/config/{}", key_path(key)))
        .await
    {
        Ok(entry) => {
            let t = ConfigEntryPage {
                chrome: chrome_with(ui, s, &entry.key, "/config", flash),
                entry,
            };
            page(Some(s), status, &t)
        }
        Err(e) => error_page(ui, Some(s), &e, "/config"),
    }
}

pub async fn detail(State(ui): State<UiState>, s: Session, Path(key): Path<String>) -> Response {
    render_one(&ui, &s, &key, None, StatusCode::OK).await
}

pub async fn change(State(ui): State<UiState>, Path(key): Path<String>, p: Posted) -> Response {
    let f = &p.form;
    let uri = format!("/api/v1/config/{}", key_path(&key));
    let if_match = [(header::IF_MATCH, format!("\"{}\"", f.get("version")))];
    let result = if f.get("op") == "delete" {
        ui.call(Some(&p.s), Method::DELETE, &uri, None, &if_match)
            .await
            .map(|_| done("/config", format!("{key} deleted.")))
    } else {
        ui.call(
            Some(&p.s),
            Method::PUT,
            &uri,
            Some(json!({"value": value_of(f.get("value"))})),
            &if_match,
        )
        .await
        .map(|_| {
            done(
                &format!("/config/{}", key_path(&key)),
                format!("{key} saved."),
            )
        })
    };
    match result {
        Ok(r) => r,
        Err(e) => render_one(&ui, &p.s, &key, Some(e.flash()), e.status).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_and_keys() {
        assert_eq!(super::value_of("42"), serde_json::json!(42));
        assert_eq!(super::value_of("{\"a\": 1}"), serde_json::json!({"a": 1}));
        assert_eq!(
            super::value_of("plain words"),
            serde_json::json!("plain words")
        );
        assert_eq!(
            super::key_path("backup/retention days"),
            "backup/retention%20days"
        );
    }
}
