use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{json, ApiJson, Authed};
use crate::auth::{self, Claims};
use crate::problem::Problem;
use crate::runtime::SharedNode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

const BAD_LOGIN: &str = "unknown user, wrong password or disabled user";

pub async fn login(
    State(node): State<SharedNode>,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, Problem> {
    let (user, key, cluster_id) = node.state.read(|d| {
        (
            d.state.user_by_name(&body.username).cloned(),
            d.state.token_key.clone(),
            d.state.cluster_id.clone(),
        )
    });
    let Some(cluster_id) = cluster_id else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the cluster is still forming",
        )
        .retry_after(1));
    };
    // Verify even for unknown users so every failure takes the same time.
    let ok = auth::verify_password(
        body.password,
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    let user = match user {
        Some(u) if ok && u.enabled => u,
        _ => return Err(Problem::new(StatusCode::UNAUTHORIZED, BAD_LOGIN)),
    };
    let now = crate::runtime::now_ms() / 1000;
    let claims = Claims {
        sub: user.id.to_string(),
        name: user.name.clone(),
        cid: cluster_id,
        iat: now,
        exp: now + node.cfg.token_ttl_secs,
    };
    let token = auth::issue(&key, &claims)
        .map_err(|m| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, m))?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "token": token,
            "expires_at": rfc3339(claims.exp),
            "user": {"id": user.id, "name": user.name, "groups": user.groups, "enabled": user.enabled},
        }),
    ))
}

pub async fn me(who: Authed) -> Response {
    json(
        StatusCode::OK,
        &json!({"id": who.user_id, "name": who.name, "groups": who.groups}),
    )
}

/// Unix seconds as an RFC 3339 UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
