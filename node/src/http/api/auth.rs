use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bcm_raft_store::{Command, Response as Applied};
use serde::{Deserialize, Serialize};

use super::users::UserView;
use super::{json, ApiJson, Authed};
use crate::auth::{self, Claims};
use crate::problem::Problem;
use crate::runtime::SharedNode;
use crate::service;

/// Credentials.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

const BAD_LOGIN: &str = "unknown user, wrong password or disabled user";

/// Failed logins counted per user name and per client address over a sliding
/// window, on each node. A login is refused with 429 before the password is even
/// checked when its name or address has, in the window, as many failures plus
/// attempts still being checked as its limit allows: so a burst of concurrent
/// wrong passwords from one address gets at most its limit of argon2 checks.
///
/// Memory: a key is kept only while it has a failure in the window or an attempt
/// in flight (pruned every window), and each failure costs an argon2 check, which
/// runs one per core (auth.rs): a node records a few thousand keys a minute at most.
pub struct LoginLimiter {
    inner: Mutex<LimiterState>,
}

#[derive(Default)]
struct LimiterState {
    failures: HashMap<String, VecDeque<Instant>>,
    in_flight: HashMap<String, usize>,
    pruned: Option<Instant>,
}

const WINDOW: Duration = Duration::from_secs(60);
const PER_USER: usize = 10;
const PER_ADDRESS: usize = 30;
/// Longer names cannot exist (users.rs `check_name`).
const MAX_NAME: usize = 64;

impl LimiterState {
    /// Failures in the window plus attempts in flight for `key`, and the seconds
    /// until the oldest failure leaves the window.
    fn load(&mut self, key: &str) -> (usize, u64) {
        let mut wait = 1;
        let mut failures = 0;
        if let Some(q) = self.failures.get_mut(key) {
            while q.front().is_some_and(|t| t.elapsed() > WINDOW) {
                q.pop_front();
            }
            failures = q.len();
            if let Some(oldest) = q.front() {
                wait = WINDOW.saturating_sub(oldest.elapsed()).as_secs().max(1);
            }
        }
        (
            failures + self.in_flight.get(key).copied().unwrap_or(0),
            wait,
        )
    }

    fn prune(&mut self) {
        if self.pruned.is_some_and(|t| t.elapsed() < WINDOW) {
            return;
        }
        self.pruned = Some(Instant::now());
        self.failures
            .retain(|_, q| q.back().is_some_and(|t| t.elapsed() <= WINDOW));
        self.in_flight.retain(|_, n| *n > 0);
    }
}

impl LoginLimiter {
    pub fn new() -> LoginLimiter {
        LoginLimiter {
            inner: Mutex::new(LimiterState::default()),
        }
    }

    /// Starts an attempt for these keys, or says how many seconds to wait.
    fn begin(&self, keys: Vec<(String, usize)>) -> Result<Attempt<'_>, u64> {
        let mut st = self.inner.lock().expect("limiter lock");
        st.prune();
        for (key, limit) in &keys {
            let (load, wait) = st.load(key);
            if load >= *limit {
                return Err(wait);
            }
        }
        for (key, _) in &keys {
            *st.in_flight.entry(key.clone()).or_default() += 1;
        }
        Ok(Attempt {
            limiter: self,
            keys: keys.into_iter().map(|(k, _)| k).collect(),
        })
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        let st = self.inner.lock().expect("limiter lock");
        st.failures.len() + st.in_flight.len()
    }
}

/// One login being checked; counted against its keys until it ends.
struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    keys: Vec<String>,
}

impl Attempt<'_> {
    /// Counts a failure against every key.
    fn failed(self) {
        let mut st = self.limiter.inner.lock().expect("limiter lock");
        for key in &self.keys {
            st.failures
                .entry(key.clone())
                .or_default()
                .push_back(Instant::now());
        }
    }

    /// Forgets the failures of `key` (a correct password for that name).
    fn succeeded(self, key: &str) {
        self.limiter
            .inner
            .lock()
            .expect("limiter lock")
            .failures
            .remove(key);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut st = self.limiter.inner.lock().expect("limiter lock");
        for key in &self.keys {
            if let Some(n) = st.in_flight.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    st.in_flight.remove(key);
                }
            }
        }
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}

/// A session token and who it belongs to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Session {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    /// RFC 3339 UTC.
    expires_at: String,
    user: UserView,
}

/// The caller.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    id: u64,
    name: String,
    groups: Vec<String>,
}

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
    State(node): State<SharedNode>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, Problem> {
    let addr_key = format!("addr:{}", peer.ip());
    let mut keys = vec![(addr_key, PER_ADDRESS)];
    // A name longer than any user's is not looked up (nor kept as a key).
    let user_key = (body.username.len() <= MAX_NAME).then(|| format!("user:{}", body.username));
    if let Some(k) = &user_key {
        keys.push((k.clone(), PER_USER));
    }
    let attempt = node.login_limiter.begin(keys).map_err(|wait| {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins; try again in {wait} s"),
        )
        .retry_after(wait)
    })?;
    let Some(user_key) = user_key else {
        attempt.failed();
        return Err(Problem::new(StatusCode::UNAUTHORIZED, BAD_LOGIN));
    };
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
    .await?;
    let user = match user {
        Some(u) if ok && u.enabled => u,
        _ => {
            attempt.failed();
            return Err(Problem::new(StatusCode::UNAUTHORIZED, BAD_LOGIN));
        }
    };
    attempt.succeeded(&user_key);
    let now = crate::runtime::now_ms() / 1000;
    let claims = Claims {
        sub: user.id.to_string(),
        name: user.name.clone(),
        cid: cluster_id,
        gen: user.token_generation,
        iat: now,
        exp: now + node.cfg.token_ttl_secs,
        jti: auth::new_token_id(),
    };
    let token = auth::issue(&key, &claims)
        .map_err(|m| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, m))?;
    Ok(json(
        StatusCode::OK,
        &Session {
            token,
            expires_at: rfc3339(claims.exp),
            user: UserView::of(&user),
        },
    ))
}

/// The current user.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, description = "the caller", body = Me)))]
pub async fn me(who: Authed) -> Response {
    json(
        StatusCode::OK,
        &Me {
            id: who.user_id,
            name: who.name,
            groups: who.groups,
        },
    )
}

/// Log out: the token of this request is refused from now on, on every node, until
/// it would have expired; the user's other tokens stay valid.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "logged out: this token is refused from now on"),
        (status = 401, description = "no valid token (already logged out, expired, ...)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    State(node): State<SharedNode>,
    who: Authed,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    // Authed has found and checked the token.
    let token = super::bearer_of(&headers).unwrap_or_default();
    let command = Command::RevokeToken {
        token_id: auth::token_id(token).to_string(),
        expires_at: who.expires_at,
        at: crate::runtime::now_ms(),
    };
    match service::write(&node, command).await? {
        Applied::Done => Ok(StatusCode::NO_CONTENT.into_response()),
        Applied::Rejected(r) => Err(super::rejection(r)),
        other => Err(super::unexpected(&other)),
    }
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
    use super::*;

    fn keys(addr: &str, user: &str) -> Vec<(String, usize)> {
        vec![
            (format!("addr:{addr}"), PER_ADDRESS),
            (format!("user:{user}"), PER_USER),
        ]
    }

    #[test]
    fn attempts_in_flight_count_like_failures() {
        let l = LoginLimiter::new();
        // PER_USER concurrent attempts for one name: the next is refused at once.
        let held: Vec<_> = (0..PER_USER)
            .map(|i| l.begin(keys(&format!("10.0.0.{i}"), "alice")).unwrap())
            .collect();
        assert!(l.begin(keys("10.0.0.99", "alice")).is_err());
        // They end without failing: room again.
        drop(held);
        let a = l.begin(keys("10.0.0.99", "alice")).unwrap();
        a.failed();
        assert_eq!(l.keys(), 2, "only the keys with a failure are kept");
        // Failures of one address stop every name from it.
        for i in 0..PER_ADDRESS - 1 {
            l.begin(keys("10.0.0.1", &format!("u{i}")))
                .unwrap()
                .failed();
        }
        let a = l.begin(keys("10.0.0.1", "bob")).unwrap();
        a.failed();
        assert!(l.begin(keys("10.0.0.1", "carol")).is_err());
        assert!(l.begin(keys("10.0.0.2", "carol")).is_ok());
    }

    #[test]
    fn a_success_clears_the_names_failures() {
        let l = LoginLimiter::new();
        for _ in 0..PER_USER - 1 {
            l.begin(keys("10.0.0.1", "alice")).unwrap().failed();
        }
        l.begin(keys("10.0.0.1", "alice"))
            .unwrap()
            .succeeded("user:alice");
        for _ in 0..PER_USER - 1 {
            l.begin(keys("10.0.0.2", "alice")).unwrap().failed();
        }
        assert!(l.begin(keys("10.0.0.3", "alice")).is_ok());
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
