use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bcm_raft_store::{Command, ConfigEntry, Response as Applied};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    consistent, list_page, not_found, rejection, unexpected, ApiJson, ApiQuery, Authed, ReadParams,
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

fn view(e: &ConfigEntry) -> Value {
    let value: Value = serde_json::from_str(&e.value_json).unwrap_or(Value::Null);
    json!({"key": e.key, "value": value, "version": e.version})
}

fn entry_response(status: StatusCode, e: &ConfigEntry) -> Response {
    let mut r = (status, axum::Json(view(e))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", e.version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    q: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    consistency: Option<String>,
}

pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, Problem> {
    who.require("config.read")?;
    consistent(&node, p.consistency.as_deref()).await?;
    let matching: Vec<Value> = node.state.read(|d| {
        d.state
            .config
            .values()
            .filter(|e| p.q.as_deref().is_none_or(|q| e.key.contains(q)))
            .map(view)
            .collect()
    });
    Ok(list_page(matching.into_iter(), p.limit, p.offset))
}

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
    let command = Command::PutConfig {
        key,
        value_json: value.to_string(),
        if_version,
        at: now_ms(),
    };
    config_result(service::write(&node, command).await?)
}

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
