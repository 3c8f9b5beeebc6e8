use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bcm_raft_store::{limits, Command, ConfigEntry, Response as Applied};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    consistent, json, not_found, rejection, unexpected, ApiJson, ApiQuery, Authed, Page, ReadParams,
};
use crate::problem::Problem;
use crate::runtime::{now_ms, SharedNode};
use crate::service;

/// Keys: 1 to 256 characters of letters, digits and `. _ - /`.
fn check_key(key: &str) -> Result<(), Problem> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "key: 1 to 256 characters of letters, digits and . _ - /",
        )
        .with_field("key"))
    }
}

fn config_result(resp: Applied) -> Result<Response, Problem> {
    match resp {
        Applied::Config(e) => Ok(entry_response(StatusCode::OK, &e)),
        Applied::Rejected(r) => Err(rejection(r)),
        other => Err(unexpected(&other)),
    }
}

/// One setting.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConfigView {
    pub key: String,
    /// Any JSON value.
    pub value: Value,
    /// Changes with every write; use it with `If-Match`. Also sent as `ETag`.
    pub version: u64,
}

/// The body of a `PUT`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // parsed by hand in `put`, to name a stray field in the 422
pub struct ConfigValue {
    /// Any JSON value.
    value: Value,
}

fn view(e: &ConfigEntry) -> ConfigView {
    ConfigView {
        key: e.key.clone(),
        value: serde_json::from_str(&e.value_json).unwrap_or(Value::Null),
        version: e.version,
    }
}

fn entry_response(status: StatusCode, e: &ConfigEntry) -> Response {
    let mut r = (status, axum::Json(view(e))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", e.version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Part of the key.
    q: Option<String>,
    /// At most this many items (default 100, at most 1000).
    limit: Option<usize>,
    /// Skip this many items.
    offset: Option<usize>,
    /// `local` (default) or `linearizable`.
    consistency: Option<String>,
}

/// Settings, by key. Permission `config.read`.
#[utoipa::path(get, path = "/config", tag = "config", params(ListParams),
    responses((status = 200, description = "one page of matching settings", body = Page<ConfigView>)))]
pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, Problem> {
    who.require("config.read")?;
    consistent(&node, p.consistency.as_deref()).await?;
    let limit = p.limit.unwrap_or(100).min(1000);
    let offset = p.offset.unwrap_or(0);
    // The page's entries are copied out under the read lock and decoded after.
    let (page, total) = node.state.read(|d| {
        let matches = |e: &&ConfigEntry| p.q.as_deref().is_none_or(|q| e.key.contains(q));
        let total = d.state.config.values().filter(matches).count();
        let mut page = Vec::new();
        let mut bytes = 0usize;
        for e in d
            .state
            .config
            .values()
            .filter(matches)
            .skip(offset)
            .take(limit)
        {
            bytes += e.key.len() + e.value_json.len();
            if !page.is_empty() && bytes > PAGE_BYTES {
                break;
            }
            page.push(e.clone());
        }
        (page, total)
    });
    let items: Vec<ConfigView> = page.iter().map(view).collect();
    Ok(json(StatusCode::OK, &Page { items, total }))
}

/// A page of `GET /config` stops growing past this many bytes of keys and values
/// (at least one entry is always sent): `total` still counts every match, and the
/// next page starts at `offset + items.len()`.
const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// One setting. Permission `config.read`.
#[utoipa::path(get, path = "/config/{*key}", tag = "config",
    params(
        ("key" = String, Path, description = "1 to 256 letters, digits and `. _ - /`"),
        ReadParams,
    ),
    responses(
        (status = 200, description = "the setting", body = ConfigView),
        (status = 404, description = "no such key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not a valid key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(node): State<SharedNode>,
    who: Authed,
    Path(key): Path<String>,
    ApiQuery(p): ApiQuery<ReadParams>,
) -> Result<Response, Problem> {
    who.require("config.read")?;
    check_key(&key)?;
    consistent(&node, p.consistency.as_deref()).await?;
    node.state
        .read(|d| d.state.config.get(&key).cloned())
        .map(|e| entry_response(StatusCode::OK, &e))
        .ok_or_else(|| not_found("config key", format!("{key:?}")))
}

/// `If-Match: "<version>"` (compare-and-set) or `If-None-Match: *` (create only).
fn precondition(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        return if v.as_bytes() == b"*" {
            Ok(Some(0))
        } else {
            Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "If-None-Match only supports *",
            ))
        };
    }
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .unwrap_or("")
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"');
    text.parse::<u64>().map(Some).map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("If-Match must be a version number, not {text:?}"),
        )
    })
}

/// Set a value. With `If-Match: "<version>"` only if the version matches (0: only
/// if absent); with `If-None-Match: *` only if absent. Permission `config.write`.
#[utoipa::path(put, path = "/config/{*key}", tag = "config",
    params(
        ("key" = String, Path, description = "1 to 256 letters, digits and `. _ - /`"),
        ("If-Match" = Option<String>, Header, description = "the expected version"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only"),
    ),
    request_body = ConfigValue,
    responses(
        (status = 200, description = "the setting as stored", body = ConfigView),
        (status = 412, description = "the version did not match", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(node): State<SharedNode>,
    who: Authed,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, Problem> {
    who.require("config.write")?;
    check_key(&key)?;
    let if_version = precondition(&headers)?;
    let value = match body {
        Value::Object(mut map) => {
            if let Some(extra) = map.keys().find(|k| *k != "value") {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("unknown field `{extra}`: the body is {{\"value\": <any JSON>}}"),
                )
                .with_field(extra.clone()));
            }
            map.remove("value").ok_or_else(|| {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "missing field `value`")
                    .with_field("value")
            })?
        }
        _ => {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the body must be an object {\"value\": <any JSON>}",
            ))
        }
    };
    let value_json = value.to_string();
    if value_json.len() > limits::CONFIG_VALUE_BYTES {
        // JSON written back can be longer than it came (`1e15` is 1000000000000000.0).
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the value is {} bytes as stored; at most {} are accepted",
                value_json.len(),
                limits::CONFIG_VALUE_BYTES
            ),
        )
        .with_field("value"));
    }
    let command = Command::PutConfig {
        key,
        value_json,
        if_version,
        at: now_ms(),
    };
    config_result(service::write(&node, command).await?)
}

/// Delete a setting (`If-Match` as for `PUT`). Permission `config.write`.
#[utoipa::path(delete, path = "/config/{*key}", tag = "config",
    params(
        ("key" = String, Path, description = "the key"),
        ("If-Match" = Option<String>, Header, description = "the expected version"),
    ),
    responses(
        (status = 200, description = "the deleted setting", body = ConfigView),
        (status = 404, description = "no such key", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "the version did not match", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(node): State<SharedNode>,
    who: Authed,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    who.require("config.write")?;
    check_key(&key)?;
    let if_version = precondition(&headers)?;
    config_result(service::write(&node, Command::DeleteConfig { key, if_version }).await?)
}
