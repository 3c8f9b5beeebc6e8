//! Who the caller is: logging in (password check, the failed-login limiter, a
//! signed token), logging out (a replicated revocation), and checking a bearer token
//! on every request, with the permissions its user's groups grant.

use std::net::IpAddr;
use std::time::Duration;

use bcm_api::Login;
use bcm_raft_store::{Command, PermissionSet, User};

use super::{write, OpError};
use crate::cluster::leader;
use crate::cluster::logins::{Attempt, LoginAnswer, LoginLimiter, LoginOp, Outcome};
use crate::cluster::rpc::{LeaderOp, OpResult};
use crate::cluster::{now_ms, Node};
use crate::crypto::{self, Claims, TokenCache};

const BAD_LOGIN: &str = "unknown user, wrong password or disabled user";

/// A signed token for a user who gave the right password.
pub struct Issued {
    pub token: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub user: User,
}

/// Logs in: an unknown user, a wrong password and a disabled user are refused alike
/// (and take the same time: an unknown user's password is checked against a dummy
/// hash), and counted by the limiters (see [`Slot`]).
pub async fn login(
    node: &Node,
    own: &LoginLimiter,
    from: IpAddr,
    login: Login,
) -> Result<Issued, OpError> {
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
    let attempt = Attempt::new(from, &login.username);
    let slot = Slot::take(node, own, attempt).await?;
    // A name longer than any user's is not looked up.
    if slot.attempt.name.is_none() {
        return Err(OpError::Unauthorized(BAD_LOGIN.into()));
    }
    let checked = crypto::verify_password(
        login.password,
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    let ok = match checked {
        Ok(ok) => ok,
        Err(e) => {
            slot.give_back(node, own, Outcome::NotChecked).await;
            return Err(e.into());
        }
    };
    let user = match user {
        Some(u) if ok && u.enabled => u,
        // The slot stays taken: it counts as the failure it is.
        _ => return Err(OpError::Unauthorized(BAD_LOGIN.into())),
    };
    slot.give_back(node, own, Outcome::Succeeded).await;
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

/// How long a node waits for the leader's limiter before its own decides alone.
const LEADER_BUDGET: Duration = Duration::from_secs(2);

/// The slots one login holds: in this node's own limiter, and in the leader's
/// (cluster/logins.rs). Both count it as a failure until it is given back.
struct Slot {
    attempt: Attempt,
    own: u64,
    /// None when no leader answered in time: this node's limiter decided alone.
    leader: Option<u64>,
}

impl Slot {
    /// Takes a slot in this node's limiter, then in the leader's; 429 with the
    /// seconds to wait when either refuses.
    async fn take(node: &Node, own: &LoginLimiter, attempt: Attempt) -> Result<Slot, OpError> {
        let own_ticket = granted(own.begin(&attempt))?;
        let asked = leader::leader_op(
            node,
            LeaderOp::Login(LoginOp::Begin(attempt.clone())),
            LEADER_BUDGET,
        )
        .await;
        let leader = match asked {
            Ok(OpResult::Login(answer)) => match granted(answer) {
                Ok(ticket) => Some(ticket),
                Err(e) => {
                    own.settle(&attempt, own_ticket, Outcome::NotChecked);
                    return Err(e);
                }
            },
            Ok(other) => {
                own.settle(&attempt, own_ticket, Outcome::NotChecked);
                return Err(OpError::Internal(format!("unexpected result {other:?}")));
            }
            Err(e) => {
                tracing::warn!(
                    "the leader's login limiter did not answer ({e}); this node's own decides"
                );
                None
            }
        };
        Ok(Slot {
            attempt,
            own: own_ticket,
            leader,
        })
    }

    /// Gives the slots back: the password was right, or was never checked.
    async fn give_back(self, node: &Node, own: &LoginLimiter, outcome: Outcome) {
        own.settle(&self.attempt, self.own, outcome);
        let Some(ticket) = self.leader else { return };
        let op = LoginOp::Settle {
            attempt: self.attempt,
            ticket,
            outcome,
        };
        // When this is lost (the leader changed meanwhile), the slot stays counted
        // until it leaves the window: erring towards the limit.
        if let Err(e) = leader::leader_op(node, LeaderOp::Login(op), LEADER_BUDGET).await {
            tracing::debug!("giving a login slot back to the leader: {e}");
        }
    }
}

/// The ticket of a granted slot, or the refusal as the caller sees it.
fn granted(answer: LoginAnswer) -> Result<u64, OpError> {
    match answer {
        LoginAnswer::Granted { ticket } => Ok(ticket),
        LoginAnswer::Limited { retry_after } => Err(OpError::TooManyRequests {
            message: format!("too many failed logins; try again in {retry_after} s"),
            retry_after,
        }),
        LoginAnswer::Full => Err(OpError::Unavailable(
            "too many failed logins are being counted; try again in a minute".into(),
        )),
        LoginAnswer::Settled => Err(OpError::Internal(
            "the login limiter answered a request for a slot with `settled`".into(),
        )),
    }
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
    /// The user's token generation the token was issued in.
    generation: u64,
    /// The client's address, when the request came over the network (the audit
    /// log's; set by the HTTP layer).
    pub addr: Option<IpAddr>,
}

impl Caller {
    /// The caller as this node's state has it now: a write that checks what the
    /// caller may grant calls this after [`super::caught_up`], so that a group or
    /// permission taken from the caller a moment ago, through any node, counts.
    /// 401 when the user was disabled or deleted meanwhile, or its password
    /// changed; `permission` (the operation's) is checked again.
    pub fn as_now(&self, node: &Node, permission: &str) -> Result<Caller, OpError> {
        let user = node
            .state
            .read(|d| enabled_user(&d.state, self.user_id))
            .filter(|(generation, ..)| *generation == self.generation);
        let Some((_, _, groups, permissions)) = user else {
            return Err(OpError::Unauthorized(
                "the user of this token was disabled, deleted or given a new password; log in again"
                    .into(),
            ));
        };
        let now = Caller {
            user_id: self.user_id,
            name: self.name.clone(),
            groups,
            permissions,
            expires_at: self.expires_at,
            generation: self.generation,
            addr: self.addr,
        };
        now.require(permission)?;
        Ok(now)
    }

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

/// User `id` if it exists and is enabled: its token generation, name, groups and
/// the permissions they grant.
fn enabled_user(
    state: &bcm_raft_store::ClusterState,
    id: u64,
) -> Option<(u64, String, Vec<String>, PermissionSet)> {
    state.users.get(&id).filter(|u| u.enabled).map(|u| {
        (
            u.token_generation,
            u.name.clone(),
            u.groups.clone(),
            state.permissions_of(u),
        )
    })
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
        (
            d.state.is_revoked(crypto::token_id(token)),
            enabled_user(&d.state, token_of.user_id),
        )
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
        generation,
        addr: None,
    })
}
