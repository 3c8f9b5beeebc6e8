//! Who the caller is: logging in (password check, the failed-login limiter, a
//! signed token), logging out (a replicated revocation), and checking a bearer token
//! on every request, with the permissions its user's groups grant.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bcm_api::Login;
use bcm_raft_store::{Command, PermissionSet, User};

use super::{write, OpError};
use crate::cluster::{now_ms, Node};
use crate::crypto::{self, Claims, TokenCache};

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

/// A signed token for a user who gave the right password.
pub struct Issued {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub user: User,
}

/// Logs in: an unknown user, a wrong password and a disabled user are refused alike
/// (and take the same time: an unknown user's password is checked against a dummy
/// hash), and counted by the limiter.
pub async fn login(
    node: &Node,
    limiter: &LoginLimiter,
    from: IpAddr,
    login: Login,
) -> Result<Issued, OpError> {
    let mut keys = vec![(format!("addr:{from}"), PER_ADDRESS)];
    // A name longer than any user's is not looked up (nor kept as a key).
    let user_key = (login.username.len() <= MAX_NAME).then(|| format!("user:{}", login.username));
    if let Some(k) = &user_key {
        keys.push((k.clone(), PER_USER));
    }
    let attempt = limiter
        .begin(keys)
        .map_err(|wait| OpError::TooManyRequests {
            message: format!("too many failed logins; try again in {wait} s"),
            retry_after: wait,
        })?;
    let Some(user_key) = user_key else {
        attempt.failed();
        return Err(OpError::Unauthorized(BAD_LOGIN.into()));
    };
    let (user, key, cluster_id) = node.state.read(|d| {
        (
            d.state.user_by_name(&login.username).cloned(),
            d.state.token_key.clone(),
            d.state.cluster_id.clone(),
        )
    });
    let Some(cluster_id) = cluster_id else {
        return Err(OpError::Unavailable("the cluster is still forming".into()));
    };
    let ok = crypto::verify_password(
        login.password,
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await?;
    let user = match user {
        Some(u) if ok && u.enabled => u,
        _ => {
            attempt.failed();
            return Err(OpError::Unauthorized(BAD_LOGIN.into()));
        }
    };
    attempt.succeeded(&user_key);
    let now = now_ms() / 1000;
    let claims = Claims {
        sub: user.id.to_string(),
        name: user.name.clone(),
        cid: cluster_id,
        gen: user.token_generation,
        iat: now,
        exp: now + node.cfg.token_ttl_secs,
        jti: crypto::new_token_id(),
    };
    let token = crypto::issue(&key, &claims).map_err(OpError::Internal)?;
    Ok(Issued {
        token,
        expires_at: claims.exp,
        user,
    })
}

/// Logs `token`, `caller`'s, out: refused from now on, on every node, until it
/// would have expired; the user's other tokens stay valid.
pub async fn logout(node: &Node, caller: &Caller, token: &str) -> Result<(), OpError> {
    let command = Command::RevokeToken {
        token_id: crypto::token_id(token).to_string(),
        expires_at: caller.expires_at,
        at: now_ms(),
    };
    let audit = caller.audit("logout", &caller.name);
    audit.run(node, write(node, &audit, command)).await
}

/// The caller of a request, with the permissions its groups grant.
pub struct Caller {
    pub user_id: u64,
    pub name: String,
    pub groups: Vec<String>,
    pub permissions: PermissionSet,
    /// When the token expires (Unix seconds).
    pub expires_at: u64,
    /// The client's address, when the request came over the network (the audit
    /// log's; set by the HTTP layer).
    pub addr: Option<IpAddr>,
}

impl Caller {
    /// Every operation checks exactly one permission.
    pub fn require(&self, permission: &str) -> Result<(), OpError> {
        if self.permissions.contains(permission) {
            Ok(())
        } else {
            Err(OpError::Forbidden(format!(
                "user {:?} lacks the permission {permission:?}",
                self.name
            )))
        }
    }
}

/// Checks a bearer token as every request's is checked: signed by this cluster's
/// key, not expired, not logged out, its user enabled and of the same token
/// generation (a new password or disabling ends older tokens).
pub fn authenticate(node: &Node, tokens: &TokenCache, token: &str) -> Result<Caller, OpError> {
    let forming = || OpError::Unavailable("the cluster is still forming".into());
    // A token verified before (same key, same cluster) is not verified again: only
    // its expiry is checked. Everything that can revoke it (the user's state and
    // token generation) is checked below on every request.
    let cached = node.state.read(|d| {
        let cluster_id = d.state.cluster_id.as_deref()?;
        Some(tokens.get(&d.state.token_key, cluster_id, token))
    });
    let token_of = match cached {
        None => return Err(forming()),
        Some(Some(t)) => t,
        Some(None) => {
            let (key, cluster_id) = node
                .state
                .read(|d| (d.state.token_key.clone(), d.state.cluster_id.clone()));
            let cluster_id = cluster_id.ok_or_else(forming)?;
            let claims = crypto::verify(&key, &cluster_id, token).map_err(OpError::Unauthorized)?;
            tokens.insert(&key, &cluster_id, token, &claims)
        }
    };
    let (revoked, user) = node.state.read(|d| {
        let user = d
            .state
            .users
            .get(&token_of.user_id)
            .filter(|u| u.enabled)
            .map(|u| {
                (
                    u.token_generation,
                    u.name.clone(),
                    u.groups.clone(),
                    d.state.permissions_of(u),
                )
            });
        (d.state.is_revoked(crypto::token_id(token)), user)
    });
    if revoked {
        return Err(OpError::Unauthorized(
            "this token was logged out; log in again".into(),
        ));
    }
    let Some((generation, name, groups, permissions)) = user else {
        return Err(OpError::Unauthorized(
            "the user of this token is disabled or deleted".into(),
        ));
    };
    if generation != token_of.generation {
        return Err(OpError::Unauthorized(
            "this token was issued before the password changed or the user was disabled; log in again".into(),
        ));
    }
    Ok(Caller {
        user_id: token_of.user_id,
        name,
        groups,
        permissions,
        expires_at: token_of.exp,
        addr: None,
    })
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
}
