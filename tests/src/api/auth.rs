//! Logging in: sessions, the cached admin token, and requests sent with it.

use bcm_api::{Login, Session};
use reqwest::Method;

use super::{Api, Reply, Req};
use crate::ADMIN_PASSWORD;

impl Api {
    /// `POST /api/v1/auth/login` with the given credentials; returns the raw answer.
    pub fn login_with(&self, node: u64, user: &str, password: &str) -> Result<Reply, String> {
        let body = Login {
            username: user.to_string(),
            password: password.to_string(),
        };
        self.send(
            self.request(node, Method::POST, "/api/v1/auth/login")
                .json(&body),
        )
    }

    /// Logs in as `user` through `node`: the session, `Err` unless 200.
    pub fn login_session(&self, node: u64, user: &str, password: &str) -> Result<Session, String> {
        let reply = self.login_with(node, user, password)?;
        if reply.status != 200 {
            return Err(format!("login as {user} on node {node}: {reply}"));
        }
        reply
            .parse()
            .map_err(|e| format!("login as {user} on node {node}: {e}"))
    }

    /// `POST /api/v1/auth/login` as admin; returns the token.
    pub fn login(&self, node: u64) -> Result<String, String> {
        Ok(self.login_session(node, "admin", ADMIN_PASSWORD)?.token)
    }

    /// A valid admin token (cached; tokens are valid on every node). Logs in through
    /// `node` first, then through any live node.
    pub fn token(&self, node: u64) -> Result<String, String> {
        if let Some(t) = self.inner.token.lock().unwrap().clone() {
            return Ok(t);
        }
        let mut candidates = vec![node];
        candidates.extend(self.live_nodes().into_iter().filter(|n| *n != node));
        let mut errors = Vec::new();
        for n in candidates {
            match self.login(n) {
                Ok(t) => {
                    *self.inner.token.lock().unwrap() = Some(t.clone());
                    return Ok(t);
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!("could not log in: {}", errors.join("; ")))
    }

    fn forget_token(&self) {
        *self.inner.token.lock().unwrap() = None;
    }

    /// Sends `req` with an admin token; if the answer is 401 (say the token was issued
    /// before a restart changed something) logs in again and retries once.
    pub fn send_authed(&self, node: u64, req: Req) -> Result<Reply, String> {
        let token = self.token(node)?;
        let reply = self.send(req.clone().bearer(&token))?;
        if reply.status != 401 {
            return Ok(reply);
        }
        self.forget_token();
        let token = self.token(node)?;
        self.send(req.bearer(&token))
    }
}
