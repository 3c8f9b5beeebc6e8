//! `/api/v1/config`: cluster-wide settings (the rules are the service layer's,
//! service/config.rs); versions as `ETag`, compare-and-set with `If-Match`.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use bcm_api::{ConfigFilter, ConfigValue, ConfigView, Page, ReadParams, Window};
use bcm_raft_store::ConfigEntry;
use serde_json::Value;

use super::{ok, Answer, ApiJson, ApiQuery, ConfigRead, ConfigWrite, Ctx, ListQuery};
use crate::net::problem::Problem;
use crate::service::{self, config};

/// 200 with the setting, and its version as `ETag`.
fn entry_response(e: &ConfigEntry) -> Answer {
    let mut r = (StatusCode::OK, axum::Json(ConfigView::from(e))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", e.version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

/// Settings, by key; a page holds at most 4 MiB of keys and values. Permission
/// `config.read`.
#[utoipa::path(get, path = "/config", tag = "config", params(ConfigFilter, Window, ReadParams), responses((status = 200, description = "one page of matching settings", body = Page<ConfigView>)))]
pub async fn list(ctx: Ctx<ConfigRead>, q: ListQuery<ConfigFilter>) -> Answer {
    service::consistent(&ctx, q.consistency.as_deref()).await?;
    let (page, total) = config::list(&ctx, &q.filter, &q.window);
    let items = page.iter().map(ConfigView::from).collect();
    ok(Page { items, total })
}

/// One setting (422 for a key that is not one). Permission `config.read`.
#[utoipa::path(get, path = "/config/{*key}", tag = "config", params(("key" = String, Path, pattern = "^[A-Za-z0-9._/-]{1,256}$", description = "1 to 256 letters, digits and `. _ - /`"), ReadParams), responses((status = 200, description = "the setting", body = ConfigView), (status = 422, description = "the key is not one", body = Problem, content_type = "application/problem+json")))]
pub async fn get_one(
    ctx: Ctx<ConfigRead>,
    Path(key): Path<String>,
    ApiQuery(p): ApiQuery<ReadParams>,
) -> Answer {
    config::check_key(&key)?;
    service::consistent(&ctx, p.consistency.as_deref()).await?;
    entry_response(&config::get(&ctx, &key)?)
}

/// `If-Match: "<version>"` (compare-and-set) or `If-None-Match: *` (create only).
fn precondition(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    // An empty If-None-Match is an empty list of tags (RFC 9110): no condition.
    if let Some(v) = headers
        .get(header::IF_NONE_MATCH)
        .filter(|v| !v.as_bytes().trim_ascii().is_empty())
    {
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

/// The value of a `{"value": ...}` body, naming a stray field in the 422.
fn value_of(body: Value) -> Result<Value, Problem> {
    match body {
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
            })
        }
        _ => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body must be an object {\"value\": <any JSON>}",
        )),
    }
}

/// Set a value. With `If-Match: "<version>"` only if the version matches (0: only
/// if absent; 412 otherwise); with `If-None-Match: *` only if absent. 413 for a value
/// larger than 1 MiB as stored, 507 at a quota (`quota` names it). Permission
/// `config.write`.
#[utoipa::path(put, path = "/config/{*key}", tag = "config", params(("key" = String, Path, pattern = "^[A-Za-z0-9._/-]{1,256}$", description = "1 to 256 letters, digits and `. _ - /`"), ("If-Match" = Option<String>, Header, pattern = "^(W/)?\"?[0-9]{1,19}\"?$", description = "the expected version: a number, quoted or not (an `ETag`)"), ("If-None-Match" = Option<String>, Header, pattern = "^\\*?$", description = "`*`: create only (empty: no condition)")), request_body = ConfigValue, responses((status = 200, description = "the setting as stored", body = ConfigView), (status = 412, description = "`If-Match` names another version, or `If-None-Match: *` and the key exists", body = Problem, content_type = "application/problem+json"), (status = 413, description = "the value as stored is larger than 1 MiB (`field` is `value`)", body = Problem, content_type = "application/problem+json"), (status = 507, description = "a quota on the replicated state is reached (`quota` names it)", body = Problem, content_type = "application/problem+json")))]
pub async fn put(
    ctx: Ctx<ConfigWrite>,
    Path(key): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Answer {
    config::check_key(&key)?;
    let if_version = precondition(&headers)?;
    let value = value_of(body)?;
    entry_response(&config::put(&ctx, &ctx.who, key, &value, if_version).await?)
}

/// Delete a setting (`If-Match` as for `PUT`). Permission `config.write`.
#[utoipa::path(delete, path = "/config/{*key}", tag = "config", params(("key" = String, Path, pattern = "^[A-Za-z0-9._/-]{1,256}$", description = "1 to 256 letters, digits and `. _ - /`"), ("If-Match" = Option<String>, Header, pattern = "^(W/)?\"?[0-9]{1,19}\"?$", description = "the expected version: a number, quoted or not (an `ETag`)")), responses((status = 200, description = "the deleted setting", body = ConfigView), (status = 412, description = "`If-Match` names another version", body = Problem, content_type = "application/problem+json"), (status = 422, description = "the key is not one", body = Problem, content_type = "application/problem+json")))]
pub async fn remove(ctx: Ctx<ConfigWrite>, Path(key): Path<String>, headers: HeaderMap) -> Answer {
    config::check_key(&key)?;
    let if_version = precondition(&headers)?;
    entry_response(&config::delete(&ctx, &ctx.who, key, if_version).await?)
}
