//! `/config` and `/config/{key}`: cluster-wide settings; edits are compare-and-set
//! against the version the page showed.

use axum::extract::{Path, State};
use axum::http::{header, Method};
use axum::response::Response;
use bcm_api::ConfigValue;
use bcm_web_ui::model::ConfigEntry;
use bcm_web_ui::pages::{ConfigEntryPage, ConfigPage, Listing};
use bcm_web_ui::{Chrome, Draft};
use serde_json::Value;

use super::session::Posted;
use super::{changed, created, done, json_of, seg, DetailPage, ListPage, Session, Ui, UiState};

/// A key as a path: each segment encoded, the slashes kept.
fn key_path(key: &str) -> String {
    key.split('/').map(seg).collect::<Vec<_>>().join("/")
}

/// The typed value: JSON when it parses, else the text as a string.
fn value_of(text: &str) -> ConfigValue {
    let value =
        serde_json::from_str(text.trim()).unwrap_or_else(|_| Value::String(text.to_string()));
    ConfigValue { value }
}

impl ListPage for ConfigPage {
    type Item = ConfigEntry;
    const API: &'static str = "/api/v1/config";

    async fn build(_: &Ui, _: &Session, chrome: Chrome, listing: Listing<ConfigEntry>) -> Self {
        ConfigPage { chrome, listing }
    }
}

impl DetailPage for ConfigEntryPage {
    type List = ConfigPage;

    fn api_uri(key: &str) -> String {
        format!("{}/{}", ConfigPage::API, key_path(key))
    }

    fn title(entry: &ConfigEntry) -> String {
        entry.key.clone()
    }

    async fn build(
        _: &Ui,
        _: &Session,
        chrome: Chrome,
        entry: ConfigEntry,
        _: Option<Draft>,
    ) -> Self {
        ConfigEntryPage { chrome, entry }
    }
}

pub async fn set(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let key = f.get("key").trim();
    let result = ui
        .send(
            &p.s,
            Method::PUT,
            &ConfigEntryPage::api_uri(key),
            &value_of(f.get("value")),
        )
        .await
        .map(|_| {
            done(
                &format!("/config/{}", key_path(key)),
                format!("{key} saved."),
            )
        });
    created::<ConfigPage>(&ui, &p, result).await
}

pub async fn change(State(ui): State<UiState>, Path(key): Path<String>, p: Posted) -> Response {
    let f = &p.form;
    let uri = ConfigEntryPage::api_uri(&key);
    let if_match = [(header::IF_MATCH, format!("\"{}\"", f.get("version")))];
    let result = if f.get("op") == "delete" {
        ui.call(Some(&p.s), Method::DELETE, &uri, None, &if_match)
            .await
            .map(|_| done("/config", format!("{key} deleted.")))
    } else {
        match json_of(&value_of(f.get("value"))) {
            Ok(body) => ui
                .call(Some(&p.s), Method::PUT, &uri, Some(body), &if_match)
                .await
                .map(|_| {
                    done(
                        &format!("/config/{}", key_path(&key)),
                        format!("{key} saved."),
                    )
                }),
            Err(e) => Err(e),
        }
    };
    changed::<ConfigEntryPage>(&ui, &p, &key, result).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_and_keys() {
        let value = |text| super::value_of(text).value;
        assert_eq!(value("42"), serde_json::json!(42));
        assert_eq!(value("{\"a\": 1}"), serde_json::json!({"a": 1}));
        assert_eq!(value("plain words"), serde_json::json!("plain words"));
        assert_eq!(
            super::key_path("backup/retention days"),
            "backup/retention%20days"
        );
    }
}
