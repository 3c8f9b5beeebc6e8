//! End-to-end harness: starts real `bcm node` processes on loopback and lets a test
//! kill, pause, restart and wipe them while it talks to their HTTP API.
//! It also runs the binary as an operator does ([`Bcm`] for `bcm status` and
//! `bcm login`, [`DevCluster`] for `bcm dev`) and follows a node's event stream
//! ([`EventStream`]).
//!
//! Everything here is blocking on purpose: a test reads top to bottom like an
//! operator's story ("kill the leader, write through a survivor, ...").
//!
//! What the harness relies on from the binary is written down in
//! `docs/TESTING-CONTRACT.md`.
//!
//! Rules the harness follows:
//! - every HTTP request has a timeout, so a hung node fails a test instead of hanging it;
//! - every wait polls a condition with a deadline ([`wait_until`]) and, when it gives up,
//!   says what it last saw;
//! - each node's stdout and stderr go to `<dir>/nodeN.log`; harness events go to
//!   `<dir>/harness.log`. When a test fails the directory is kept, its path and the tail
//!   of every log are printed (set `BCM_KEEP_LOGS=1` to keep it always).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::seq::SliceRandom;
use rand::Rng;
use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};

pub use serde_json;

mod browser;
mod cli;
pub mod compose;
mod pg;
mod sse;

pub use browser::{screenshot_dir, Browser};
pub use cli::{Bcm, CliOutput, DevCluster};
pub use pg::Postgres;
pub use sse::{EventStream, SseEvent};

/// Default timeout of one HTTP request made by the harness.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a health probe (`/leader`, `/readyz`): these must answer at once.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The cluster secret written into every node's config.
pub const CLUSTER_SECRET: &str = "e2e-cluster-secret-0123456789abcdef";
/// The admin password written into every node's config.
pub const ADMIN_PASSWORD: &str = "e2e-admin-password-123";
/// The roles a bootstrap node gets unless told otherwise.
pub const ALL_ROLES: &[&str] = &["manager", "backup-manager", "storage"];

// ---------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------

/// Polls `probe` every 50 ms until it returns `Ok`, and returns that value.
///
/// On timeout it panics with `what` and the last `Err` the probe returned, so a failing
/// test says what it was waiting for and what it saw instead.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {:.1}s waiting for {what}; last seen: {last}",
                start.elapsed().as_secs_f64()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------

/// Hands out loopback ports that are free now and were never handed out before in this
/// process, so two tests (or two nodes) never share one.
///
/// Ports are taken *below* the kernel's ephemeral range: the harness's own outgoing
/// connections (and the nodes' connections to each other) take their local port from
/// that range, and could otherwise grab a node's port while it is down for a restart.
/// If the ephemeral range leaves no room below it, we fall back to binding port 0.
pub fn free_port() -> u16 {
    let mut used = used_ports().lock().unwrap();
    let (lo, hi) = (12000u16, ephemeral_low().saturating_sub(1));
    let mut rng = rand::thread_rng();
    if hi > lo + 1000 {
        for _ in 0..10_000 {
            let port = rng.gen_range(lo..=hi);
            if used.contains(&port) {
                continue;
            }
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                used.insert(port);
                return port;
            }
        }
    }
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("bind a loopback port")
            .port();
        if used.insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port");
}

/// A base port `P` such that every `P + offset` is free on loopback and was never
/// handed out before, for programs that derive their ports from one number (like
/// `bcm dev --base-port P`). Taken below the ephemeral range, as [`free_port`] does.
pub fn free_base_port(offsets: &[u16]) -> u16 {
    let mut used = used_ports().lock().unwrap();
    let span = offsets.iter().copied().max().unwrap_or(0);
    let (lo, hi) = (12000u16, ephemeral_low().saturating_sub(1 + span));
    assert!(
        hi > lo,
        "no room below the ephemeral port range for a block of {span} ports"
    );
    let mut rng = rand::thread_rng();
    for _ in 0..10_000 {
        let base = rng.gen_range(lo..=hi);
        let ports: Vec<u16> = offsets.iter().map(|o| base + o).collect();
        if ports.iter().any(|p| used.contains(p)) {
            continue;
        }
        if ports
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            used.extend(ports);
            return base;
        }
    }
    panic!("could not find free loopback ports at offsets {offsets:?} from one base");
}

fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(HashSet::new()))
}

fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768)
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

/// Where the `bcm` binary is: `$BCM_BIN`, else `<workspace>/target/debug/bcm`
/// (honouring `$CARGO_TARGET_DIR`).
pub fn bcm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BCM_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BCM_BIN={} does not exist; unset it or point it at a built bcm binary",
            p.display()
        );
        return p;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => workspace.join(t),
        None => workspace.join("target"),
    };
    let p = target.join("debug").join("bcm");
    assert!(
        p.is_file(),
        "the bcm binary is missing at {}: run `cargo build --bin bcm` first \
         (or set BCM_BIN to a built binary)",
        p.display()
    );
    p
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// One HTTP answer: status, headers and the raw body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    /// How long the request took, from sending to the last body byte.
    pub elapsed: Duration,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// Checks the RFC 9457 shape of an error answer: a 4xx, `application/problem+json`,
    /// and a JSON body whose `status` equals the HTTP status and which has a `title`.
    pub fn check_problem(&self) -> Result<(), String> {
        if !(400..500).contains(&self.status) {
            return Err(format!("expected a 4xx, got {self}"));
        }
        if !self.content_type().starts_with("application/problem+json") {
            return Err(format!(
                "expected content-type application/problem+json, got {:?} in {self}",
                self.content_type()
            ));
        }
        let body = self.json();
        if body.get("status").and_then(Value::as_u64) != Some(u64::from(self.status)) {
            return Err(format!("problem body has no matching `status`: {self}"));
        }
        if !body.get("title").is_some_and(Value::is_string) {
            return Err(format!("problem body has no `title`: {self}"));
        }
        Ok(())
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = self.body.clone();
        if body.len() > 400 {
            let mut cut = 400;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        write!(
            f,
            "HTTP {} ({}, {:.2}s) {body}",
            self.status,
            self.content_type(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// A request the harness can send; built with [`Api::request`].
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(serde_json::to_vec(body).unwrap());
        self.header("content-type", "application/json")
    }

    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

struct ApiInner {
    client: Client,
    api_urls: RwLock<BTreeMap<u64, String>>,
    rpc_urls: RwLock<BTreeMap<u64, String>>,
    /// Nodes that are running and not paused: the ones worth talking to.
    live: RwLock<BTreeSet<u64>>,
    token: Mutex<Option<String>>,
    events: Events,
}

/// A cheap-to-clone handle on the cluster's HTTP API, usable from other threads
/// (a writer thread, a request sent to a paused node, ...).
#[derive(Clone)]
pub struct Api {
    inner: Arc<ApiInner>,
}

impl Api {
    fn new(events: Events) -> Self {
        let client = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            // A fresh connection per request: nodes are killed and restarted under us,
            // and a stale pooled connection would turn into a spurious error.
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .expect("build the HTTP client");
        Api {
            inner: Arc::new(ApiInner {
                client,
                api_urls: RwLock::new(BTreeMap::new()),
                rpc_urls: RwLock::new(BTreeMap::new()),
                live: RwLock::new(BTreeSet::new()),
                token: Mutex::new(None),
                events,
            }),
        }
    }

    /// Logs a line to stderr and to `<dir>/harness.log`.
    pub fn log(&self, msg: impl AsRef<str>) {
        self.inner.events.log(msg.as_ref());
    }

    /// The public API base URL of `node`, e.g. `http://127.0.0.1:23456`.
    pub fn api_url(&self, node: u64) -> String {
        self.inner
            .api_urls
            .read()
            .unwrap()
            .get(&node)
            .cloned()
            .unwrap_or_else(|| panic!("no node {node} in this cluster"))
    }

    /// The cluster-internal (Raft RPC) base URL of `node`.
    pub fn rpc_url(&self, node: u64) -> String {
        self.inner
            .rpc_urls
            .read()
            .unwrap()
            .get(&node)
            .cloned()
            .unwrap_or_else(|| panic!("no node {node} in this cluster"))
    }

    /// Every node id the harness knows, running or not.
    pub fn all_nodes(&self) -> Vec<u64> {
        self.inner
            .api_urls
            .read()
            .unwrap()
            .keys()
            .copied()
            .collect()
    }

    /// Nodes that are running and not paused.
    pub fn live_nodes(&self) -> Vec<u64> {
        self.inner.live.read().unwrap().iter().copied().collect()
    }

    /// A random running, not paused node.
    pub fn random_live_node(&self) -> Option<u64> {
        self.live_nodes().choose(&mut rand::thread_rng()).copied()
    }

    fn set_live(&self, node: u64, live: bool) {
        let mut set = self.inner.live.write().unwrap();
        if live {
            set.insert(node);
        } else {
            set.remove(&node);
        }
    }

    /// Starts building a request to `path` on `node`'s public API.
    pub fn request(&self, node: u64, method: Method, path: &str) -> Req {
        Req {
            method,
            url: format!("{}{}", self.api_url(node), path),
            headers: Vec::new(),
            body: None,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// Starts building a request to `path` on `node`'s cluster-internal RPC listener.
    pub fn rpc_request(&self, node: u64, method: Method, path: &str) -> Req {
        Req {
            method,
            url: format!("{}{}", self.rpc_url(node), path),
            headers: Vec::new(),
            body: None,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// Sends a request. `Err` means no HTTP answer at all (refused, reset, timed out).
    pub fn send(&self, req: Req) -> Result<Reply, String> {
        self.send_inner(req, true)
    }

    /// Like [`Api::send`], but when the answer is an event stream (which never ends)
    /// its body is left unread and empty: for asking who may open `/api/v1/events`
    /// among other routes.
    pub fn send_no_stream(&self, req: Req) -> Result<Reply, String> {
        self.send_inner(req, false)
    }

    fn send_inner(&self, req: Req, read_streams: bool) -> Result<Reply, String> {
        let start = Instant::now();
        let mut rb = self
            .inner
            .client
            .request(req.method.clone(), &req.url)
            .timeout(req.timeout);
        for (k, v) in &req.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some(body) = req.body {
            rb = rb.body(body);
        }
        let resp = rb
            .send()
            .map_err(|e| format!("{} {}: {}", req.method, req.url, error_chain(&e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let is_stream = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_stream && !read_streams {
            return Ok(Reply {
                status,
                headers,
                body: String::new(),
                elapsed: start.elapsed(),
            });
        }
        let body = resp.text().map_err(|e| {
            format!(
                "{} {}: reading body: {}",
                req.method,
                req.url,
                error_chain(&e)
            )
        })?;
        Ok(Reply {
            status,
            headers,
            body,
            elapsed: start.elapsed(),
        })
    }

    /// `GET path` on `node` without credentials.
    pub fn get(&self, node: u64, path: &str) -> Result<Reply, String> {
        self.send(self.request(node, Method::GET, path))
    }

    /// `POST /api/v1/auth/login` as admin; returns the token.
    pub fn login(&self, node: u64) -> Result<String, String> {
        let reply = self.login_with(node, "admin", ADMIN_PASSWORD)?;
        if reply.status != 200 {
            return Err(format!("login on node {node}: {reply}"));
        }
        reply
            .json()
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("login on node {node}: no token in {reply}"))
    }

    /// `POST /api/v1/auth/login` with the given credentials; returns the raw answer.
    pub fn login_with(&self, node: u64, user: &str, password: &str) -> Result<Reply, String> {
        self.send(
            self.request(node, Method::POST, "/api/v1/auth/login")
                .json(&json!({"username": user, "password": password})),
        )
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

    /// `PUT /api/v1/config/{key}` with `{"value": value}` through `node`.
    pub fn put_config(&self, node: u64, key: &str, value: &Value) -> Result<Reply, String> {
        self.put_config_timeout(node, key, value, REQUEST_TIMEOUT)
    }

    /// Like [`Api::put_config`] with a client-side timeout of `timeout`.
    pub fn put_config_timeout(
        &self,
        node: u64,
        key: &str,
        value: &Value,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let req = self
            .request(node, Method::PUT, &format!("/api/v1/config/{key}"))
            .json(&json!({ "value": value }))
            .timeout(timeout);
        self.send_authed(node, req)
    }

    /// `GET /api/v1/config/{key}` on `node` (a local read).
    pub fn get_config(&self, node: u64, key: &str) -> Result<Reply, String> {
        self.send_authed(
            node,
            self.request(node, Method::GET, &format!("/api/v1/config/{key}")),
        )
    }

    /// The `value` stored under `key` as `node` sees it: `Ok(None)` on 404.
    pub fn config_value(&self, node: u64, key: &str) -> Result<Option<Value>, String> {
        let reply = self.get_config(node, key)?;
        match reply.status {
            200 => Ok(Some(
                reply.json().get("value").cloned().unwrap_or(Value::Null),
            )),
            404 => Ok(None),
            _ => Err(format!("GET config {key} on node {node}: {reply}")),
        }
    }

    /// `GET /api/v1/cluster` on `node`, parsed.
    pub fn cluster(&self, node: u64) -> Result<Value, String> {
        let reply = self.send_authed(node, self.request(node, Method::GET, "/api/v1/cluster"))?;
        if reply.status != 200 {
            return Err(format!("GET /api/v1/cluster on node {node}: {reply}"));
        }
        Ok(reply.json())
    }

    /// `method path` on `node` with an admin token and, when given, a JSON body.
    pub fn call(
        &self,
        node: u64,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, String> {
        let mut req = self.request(node, method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send_authed(node, req)
    }

    /// `GET path` on `node` with an admin token; the parsed body, `Err` unless 200.
    pub fn get_json(&self, node: u64, path: &str) -> Result<Value, String> {
        let reply = self.call(node, Method::GET, path, None)?;
        if reply.status != 200 {
            return Err(format!("GET {path} on node {node}: {reply}"));
        }
        Ok(reply.json())
    }

    /// `GET /metrics` on `node`: the Prometheus text, `Err` unless 200.
    pub fn metrics(&self, node: u64) -> Result<String, String> {
        let reply = self.get(node, "/metrics")?;
        if reply.status != 200 {
            return Err(format!("GET /metrics on node {node}: {reply}"));
        }
        Ok(reply.body)
    }

    /// `GET /leader` on `node`: `(http status, body)`.
    pub fn leader_status(&self, node: u64) -> Result<(u16, Value), String> {
        let reply = self.send(
            self.request(node, Method::GET, "/leader")
                .timeout(PROBE_TIMEOUT),
        )?;
        Ok((reply.status, reply.json()))
    }

    /// `GET /readyz` on `node` answers 200.
    pub fn is_ready(&self, node: u64) -> bool {
        let req = self
            .request(node, Method::GET, "/readyz")
            .timeout(PROBE_TIMEOUT);
        matches!(self.send(req), Ok(r) if r.status == 200)
    }

    /// The leader, asking `/leader` on every live node: the node that answers 200
    /// (if two do, say a resumed old leader has not stepped down yet, the one with the
    /// higher term).
    pub fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None; // (term, id)
        for n in self.live_nodes() {
            if let Ok((200, body)) = self.leader_status(n) {
                let term = body.get("term").and_then(Value::as_u64).unwrap_or(0);
                let id = body.get("node_id").and_then(Value::as_u64).unwrap_or(n);
                if best.is_none_or(|(t, _)| term > t) {
                    best = Some((term, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// Writes `value` under `key` through live nodes until one write is acknowledged
    /// (2xx), for at most `timeout`. Returns the node that acknowledged it.
    pub fn write_eventually(&self, key: &str, value: &Value, timeout: Duration) -> u64 {
        let mut rr = 0usize;
        wait_until(
            timeout,
            &format!("a write of {key} to be acknowledged"),
            || {
                let nodes = self.live_nodes();
                if nodes.is_empty() {
                    return Err("no live node".into());
                }
                rr += 1;
                let n = nodes[rr % nodes.len()];
                match self.put_config(n, key, value) {
                    Ok(r) if r.is_success() => Ok(n),
                    Ok(r) => Err(format!("node {n}: {r}")),
                    Err(e) => Err(format!("node {n}: {e}")),
                }
            },
        )
    }

    /// Waits until every node in `nodes` serves every `(key, value)` of `expected`
    /// (local reads). Keys are written once, so a key seen right on a node stays right.
    pub fn wait_all_present(
        &self,
        nodes: &[u64],
        expected: &BTreeMap<String, Value>,
        timeout: Duration,
    ) {
        let keys: Vec<(&String, &Value)> = expected.iter().collect();
        for &n in nodes {
            let mut next = 0usize;
            wait_until(
                timeout,
                &format!("node {n} to serve all {} acknowledged writes", keys.len()),
                || {
                    while next < keys.len() {
                        let (k, v) = keys[next];
                        match self.config_value(n, k) {
                            Ok(Some(got)) if &got == v => next += 1,
                            Ok(got) => {
                                return Err(format!(
                                    "{} of {} checked; {k}: expected {v}, node {n} has {got:?}",
                                    next,
                                    keys.len()
                                ))
                            }
                            Err(e) => return Err(format!("{next} of {} checked; {e}", keys.len())),
                        }
                    }
                    Ok(())
                },
            );
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

/// The member with `id` in a `/api/v1/cluster` answer.
pub fn member(cluster: &Value, id: u64) -> Option<&Value> {
    cluster
        .get("members")?
        .as_array()?
        .iter()
        .find(|m| m.get("id").and_then(Value::as_u64) == Some(id))
}

/// The ids of the items of a `{items: [{id, ...}], total}` answer, in order.
pub fn item_ids(list: &Value) -> Vec<u64> {
    list.get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("id").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

// ---------------------------------------------------------------------------------------
// Events (a timeline of what the harness did)
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
struct Events {
    start: Instant,
    file: Arc<Mutex<Option<File>>>,
}

impl Events {
    fn log(&self, msg: &str) {
        let line = format!(
            "[harness +{:7.3}s] {msg}",
            self.start.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        if let Some(f) = self.file.lock().unwrap().as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------

/// In which order the bootstrap nodes are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOrder {
    /// 1, 2, 3, ...
    Ascending,
    /// ..., 3, 2, 1
    Reverse,
    /// A random permutation (printed in the harness log).
    Shuffled,
}

/// Options of a test cluster; see [`Cluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    voters: usize,
    joiners: Vec<Vec<String>>,
    snapshot_every: Option<u64>,
    keep_logs_behind_snapshot: Option<u64>,
    backup_manager_grace_ms: Option<u64>,
    order: StartOrder,
    delay: Duration,
    name: String,
    postgres: Option<(String, u64)>,
}

impl ClusterBuilder {
    /// `[postgres] url` and `export_interval_secs`: the snapshot export.
    pub fn postgres(mut self, url: &str, export_interval_secs: u64) -> Self {
        self.postgres = Some((url.to_string(), export_interval_secs));
        self
    }

    /// Number of bootstrap voters (default 3).
    pub fn voters(mut self, n: usize) -> Self {
        self.voters = n;
        self
    }

    /// One more node, not in `bootstrap`, that only joins through `join`, with `roles`.
    /// It is started after the bootstrap nodes.
    pub fn joiner(mut self, roles: &[&str]) -> Self {
        self.joiners
            .push(roles.iter().map(|r| r.to_string()).collect());
        self
    }

    /// `[raft] snapshot_every`.
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = Some(n);
        self
    }

    /// `[raft] keep_logs_behind_snapshot`: how many log entries a snapshot leaves
    /// behind when it purges the log (the node's default is 1000).
    pub fn keep_logs_behind_snapshot(mut self, n: u64) -> Self {
        self.keep_logs_behind_snapshot = Some(n);
        self
    }

    /// `[manager] backup_manager_grace_ms`.
    pub fn backup_manager_grace_ms(mut self, ms: u64) -> Self {
        self.backup_manager_grace_ms = Some(ms);
        self
    }

    /// Order in which bootstrap nodes are started, and the pause between two starts.
    pub fn start_order(mut self, order: StartOrder, delay: Duration) -> Self {
        self.order = order;
        self.delay = delay;
        self
    }

    /// A label used in the temp dir name and the harness log.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Writes the configs, starts the processes and waits until every started node
    /// answers `/readyz` 200 (it knows the leader and has caught up).
    pub fn start(self) -> Cluster {
        let c = self.start_no_wait();
        for id in c.running_nodes() {
            c.wait_ready(id, Duration::from_secs(45));
        }
        let leader = c.wait_for_leader();
        // The admin user is created by a write once the cluster has formed; `/readyz`
        // can say 200 a moment before that write is applied.
        wait_until(Duration::from_secs(30), "admin login to work", || {
            c.check_processes();
            c.token(leader)
        });
        c.log(format!("cluster ready; leader is node {leader}"));
        c
    }

    /// Writes the configs and starts the processes; does not wait for anything.
    pub fn start_no_wait(self) -> Cluster {
        let bin = bcm_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("bcm-e2e-{}-", self.name))
            .tempdir()
            .expect("create a temp dir");
        let path = dir.path().to_path_buf();
        let events = Events {
            start: Instant::now(),
            file: Arc::new(Mutex::new(File::create(path.join("harness.log")).ok())),
        };
        let api = Api::new(events);
        let mut cluster = Cluster {
            dir: Some(dir),
            path,
            bin,
            nodes: BTreeMap::new(),
            bootstrap: Vec::new(),
            snapshot_every: self.snapshot_every,
            keep_logs: self.keep_logs_behind_snapshot,
            grace_ms: self.backup_manager_grace_ms,
            postgres: self.postgres.clone(),
            api,
        };
        cluster.log(format!(
            "cluster {:?} in {} using {}",
            self.name,
            cluster.path.display(),
            cluster.bin.display()
        ));

        let all_roles: Vec<String> = ALL_ROLES.iter().map(|r| r.to_string()).collect();
        for id in 1..=self.voters as u64 {
            cluster.define_node(id, all_roles.clone());
        }
        cluster.bootstrap = (1..=self.voters as u64)
            .map(|id| cluster.nodes[&id].rpc_url())
            .collect();
        for id in 1..=self.voters as u64 {
            cluster.write_config(id);
        }

        let mut order: Vec<u64> = (1..=self.voters as u64).collect();
        match self.order {
            StartOrder::Ascending => {}
            StartOrder::Reverse => order.reverse(),
            StartOrder::Shuffled => order.shuffle(&mut rand::thread_rng()),
        }
        cluster.log(format!("starting bootstrap nodes in order {order:?}"));
        for (i, id) in order.iter().enumerate() {
            if i > 0 && !self.delay.is_zero() {
                // Deliberate spacing between starts (the point of the option), not a wait
                // for a condition.
                thread::sleep(self.delay);
            }
            cluster.spawn(*id);
        }
        for roles in self.joiners {
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            cluster.start_extra(&roles);
        }
        cluster
    }
}

struct Node {
    id: u64,
    roles: Vec<String>,
    api_port: u16,
    rpc_port: u16,
    config_path: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Mutex<Option<Child>>,
    paused: AtomicBool,
    starts: AtomicU64,
}

impl Node {
    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
    fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }
}

/// A set of real `bcm node` processes on loopback, with their configs, data and logs in
/// one temp dir. Dereferences to [`Api`] for talking to them.
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    bin: PathBuf,
    nodes: BTreeMap<u64, Node>,
    bootstrap: Vec<String>,
    snapshot_every: Option<u64>,
    keep_logs: Option<u64>,
    grace_ms: Option<u64>,
    postgres: Option<(String, u64)>,
    api: Api,
}

impl std::ops::Deref for Cluster {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Cluster {
    /// Options: number of voters, joiners, snapshot interval, start order, ...
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            voters: 3,
            joiners: Vec::new(),
            snapshot_every: None,
            keep_logs_behind_snapshot: None,
            backup_manager_grace_ms: None,
            order: StartOrder::Ascending,
            delay: Duration::ZERO,
            name: "cluster".to_string(),
            postgres: None,
        }
    }

    /// `n` bootstrap voters with every role, started together; returns once all are ready.
    pub fn start(n: usize) -> Cluster {
        Cluster::builder().voters(n).start()
    }

    /// A clone of the API handle, for other threads.
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// The directory holding configs, data dirs and logs.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The log file of `node`.
    pub fn log_path(&self, node: u64) -> PathBuf {
        self.node(node).log_path.clone()
    }

    /// The data dir of `node`.
    pub fn data_dir(&self, node: u64) -> PathBuf {
        self.node(node).data_dir.clone()
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn define_node(&mut self, id: u64, roles: Vec<String>) {
        let node = Node {
            id,
            roles,
            api_port: free_port(),
            rpc_port: free_port(),
            config_path: self.path.join(format!("node{id}.toml")),
            data_dir: self.path.join(format!("node{id}")),
            log_path: self.path.join(format!("node{id}.log")),
            child: Mutex::new(None),
            paused: AtomicBool::new(false),
            starts: AtomicU64::new(0),
        };
        self.api
            .inner
            .api_urls
            .write()
            .unwrap()
            .insert(id, node.api_url());
        self.api
            .inner
            .rpc_urls
            .write()
            .unwrap()
            .insert(id, node.rpc_url());
        self.nodes.insert(id, node);
    }

    fn write_config(&self, id: u64) {
        let node = self.node(id);
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| toml_str(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut toml = String::new();
        let _ = writeln!(toml, "[node]");
        let _ = writeln!(toml, "id = {id}");
        let _ = writeln!(toml, "name = {}", toml_str(&format!("node-{id}")));
        let _ = writeln!(
            toml,
            "data_dir = {}",
            toml_str(&node.data_dir.to_string_lossy())
        );
        let _ = writeln!(toml, "api_listen = \"127.0.0.1:{}\"", node.api_port);
        let _ = writeln!(toml, "api_advertise = {}", toml_str(&node.api_url()));
        let _ = writeln!(toml, "rpc_listen = \"127.0.0.1:{}\"", node.rpc_port);
        let _ = writeln!(toml, "rpc_advertise = {}", toml_str(&node.rpc_url()));
        let _ = writeln!(toml, "roles = {}", list(&node.roles));
        let _ = writeln!(toml);
        let _ = writeln!(toml, "[cluster]");
        let _ = writeln!(toml, "secret = {}", toml_str(CLUSTER_SECRET));
        let _ = writeln!(toml, "bootstrap = {}", list(&self.bootstrap));
        // Bootstrap nodes leave `join` to its default (= bootstrap); the others only
        // know the bootstrap members to register with.
        let _ = writeln!(toml, "join = {}", list(&self.bootstrap));
        if self.snapshot_every.is_some() || self.keep_logs.is_some() {
            let _ = writeln!(toml);
            let _ = writeln!(toml, "[raft]");
        }
        if let Some(n) = self.snapshot_every {
            let _ = writeln!(toml, "snapshot_every = {n}");
        }
        if let Some(n) = self.keep_logs {
            let _ = writeln!(toml, "keep_logs_behind_snapshot = {n}");
        }
        if let Some(ms) = self.grace_ms {
            let _ = writeln!(toml);
            let _ = writeln!(toml, "[manager]");
            let _ = writeln!(toml, "backup_manager_grace_ms = {ms}");
        }
        if let Some((url, interval)) = &self.postgres {
            let _ = writeln!(toml);
            let _ = writeln!(toml, "[postgres]");
            let _ = writeln!(toml, "url = {}", toml_str(url));
            let _ = writeln!(toml, "export_interval_secs = {interval}");
        }
        let _ = writeln!(toml);
        let _ = writeln!(toml, "[auth]");
        let _ = writeln!(toml, "admin_password = {}", toml_str(ADMIN_PASSWORD));
        fs::write(&node.config_path, toml).expect("write node config");
    }

    fn spawn(&self, id: u64) {
        self.spawn_with(id, &[]);
    }

    fn spawn_with(&self, id: u64, extra_args: &[&str]) {
        let node = self.node(id);
        let mut slot = node.child.lock().unwrap();
        assert!(slot.is_none(), "node {id} is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open node log");
        let start_no = node.starts.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut l = &log;
            let _ = writeln!(
                l,
                "===== harness: start #{start_no} of node {id} at {} =====",
                unix_time()
            );
        }
        let mut cmd = Command::new(&self.bin);
        cmd.arg("node")
            .arg("--config")
            .arg(&node.config_path)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .env("NO_COLOR", "1");
        // Config overrides from the developer's environment would change what we test.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BCM_") {
                cmd.env_remove(k);
            }
        }
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the node
        // if the thread that spawned it (the test) dies without running our Drop.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} for node {id}: {e}", self.bin.display()));
        self.log(format!(
            "started node {id} (pid {}, start #{start_no}, api {}, rpc {})",
            child.id(),
            node.api_url(),
            node.rpc_url()
        ));
        *slot = Some(child);
        node.paused.store(false, Ordering::SeqCst);
        self.api.set_live(id, true);
    }

    /// Starts a new node that is not in `bootstrap` and only registers through `join`
    /// (the bootstrap members). Returns its id. Does not wait.
    pub fn start_extra(&mut self, roles: &[&str]) -> u64 {
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        self.define_node(id, roles.iter().map(|r| r.to_string()).collect());
        self.write_config(id);
        self.log(format!("node {id} joins with roles {roles:?}"));
        self.spawn(id);
        id
    }

    /// The process id of `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).child.lock().unwrap().as_ref().map(|c| c.id())
    }

    /// Is the process of `id` running (possibly paused)?
    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).child.lock().unwrap().is_some()
    }

    /// Nodes with a running process (paused ones included).
    pub fn running_nodes(&self) -> Vec<u64> {
        self.nodes
            .keys()
            .copied()
            .filter(|id| self.is_running(*id))
            .collect()
    }

    /// Panics (with the log tail) if a node that should be running has exited.
    pub fn check_processes(&self) {
        for node in self.nodes.values() {
            let mut slot = node.child.lock().unwrap();
            if let Some(child) = slot.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    *slot = None;
                    self.api.set_live(node.id, false);
                    panic!(
                        "node {} exited unexpectedly ({status}); last log lines:\n{}",
                        node.id,
                        tail(&node.log_path, 30)
                    );
                }
            }
        }
    }

    /// `kill -9` the node and reap it.
    pub fn kill(&self, id: u64) {
        let node = self.node(id);
        let mut slot = node.child.lock().unwrap();
        let mut child = slot
            .take()
            .unwrap_or_else(|| panic!("kill: node {id} is not running"));
        signal(&child, libc::SIGKILL);
        let status = child.wait().expect("wait for killed node");
        node.paused.store(false, Ordering::SeqCst);
        self.api.set_live(id, false);
        self.log(format!("killed node {id} with SIGKILL ({status})"));
    }

    /// Freezes the node with SIGSTOP: it keeps its sockets but answers nothing.
    pub fn pause(&self, id: u64) {
        let node = self.node(id);
        let slot = node.child.lock().unwrap();
        let child = slot
            .as_ref()
            .unwrap_or_else(|| panic!("pause: node {id} is not running"));
        signal(child, libc::SIGSTOP);
        node.paused.store(true, Ordering::SeqCst);
        self.api.set_live(id, false);
        self.log(format!("paused node {id} with SIGSTOP"));
    }

    /// Lets a paused node run again (SIGCONT).
    pub fn resume(&self, id: u64) {
        let node = self.node(id);
        let slot = node.child.lock().unwrap();
        let child = slot
            .as_ref()
            .unwrap_or_else(|| panic!("resume: node {id} is not running"));
        signal(child, libc::SIGCONT);
        node.paused.store(false, Ordering::SeqCst);
        self.api.set_live(id, true);
        self.log(format!("resumed node {id} with SIGCONT"));
    }

    /// Starts a stopped node again with the same config and whatever data it has.
    pub fn restart(&self, id: u64) {
        assert!(!self.is_running(id), "restart: node {id} is still running");
        self.spawn(id);
    }

    /// Starts a stopped node again with extra command-line arguments (e.g.
    /// `--restore-from-postgres`).
    pub fn restart_with(&self, id: u64, args: &[&str]) {
        assert!(!self.is_running(id), "restart: node {id} is still running");
        self.log(format!("restarting node {id} with {args:?}"));
        self.spawn_with(id, args);
    }

    /// The path of a node's configuration file.
    pub fn config_path(&self, id: u64) -> PathBuf {
        self.node(id).config_path.clone()
    }

    /// Deletes the data dir of a stopped node (a lost disk).
    pub fn wipe(&self, id: u64) {
        assert!(!self.is_running(id), "wipe: stop node {id} first");
        let dir = &self.node(id).data_dir;
        if dir.exists() {
            fs::remove_dir_all(dir).expect("remove data dir");
        }
        self.log(format!(
            "wiped the data dir of node {id} ({})",
            dir.display()
        ));
    }

    /// Waits until `/readyz` on `id` answers 200.
    pub fn wait_ready(&self, id: u64, timeout: Duration) {
        wait_until(
            timeout,
            &format!("node {id} to be ready (/readyz 200)"),
            || {
                self.check_processes();
                let r = self.send(
                    self.request(id, Method::GET, "/readyz")
                        .timeout(PROBE_TIMEOUT),
                )?;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(r.to_string())
                }
            },
        );
    }

    /// Waits (up to 30 s) until some live node says it is the leader; returns it.
    pub fn wait_for_leader(&self) -> u64 {
        wait_until(Duration::from_secs(30), "a leader", || {
            self.check_processes();
            self.leader().ok_or_else(|| self.leader_views())
        })
    }

    /// Waits (up to 30 s) until a live node other than `old` is the leader.
    pub fn wait_for_new_leader(&self, old: u64) -> u64 {
        let l = wait_until(
            Duration::from_secs(30),
            &format!("a leader other than node {old}"),
            || {
                self.check_processes();
                match self.leader() {
                    Some(l) if l != old => Ok(l),
                    _ => Err(self.leader_views()),
                }
            },
        );
        self.log(format!("new leader: node {l} (was {old})"));
        l
    }

    /// Waits until every live node's `/leader` names the same leader and that leader
    /// answers 200; returns it.
    pub fn wait_for_agreed_leader(&self, timeout: Duration) -> u64 {
        wait_until(timeout, "every live node to agree on one leader", || {
            self.check_processes();
            let leader = self.leader().ok_or_else(|| self.leader_views())?;
            for n in self.live_nodes() {
                let (_, body) = self.leader_status(n)?;
                if body.get("leader_id").and_then(Value::as_u64) != Some(leader) {
                    return Err(self.leader_views());
                }
            }
            Ok(leader)
        })
    }

    /// What every live node's `/leader` says, for failure messages.
    pub fn leader_views(&self) -> String {
        let mut s = String::new();
        for n in self.live_nodes() {
            match self.leader_status(n) {
                Ok((st, body)) => {
                    let _ = write!(s, "[node {n}: {st} {body}] ");
                }
                Err(e) => {
                    let _ = write!(s, "[node {n}: {e}] ");
                }
            }
        }
        if s.is_empty() {
            s.push_str("no live node");
        }
        s
    }

    /// Live nodes other than the current leader.
    pub fn followers(&self) -> Vec<u64> {
        let leader = self.wait_for_leader();
        self.live_nodes()
            .into_iter()
            .filter(|n| *n != leader)
            .collect()
    }

    /// Every `became leader ... term=T ... node_id=N` line in all node logs, as
    /// term -> set of node ids that claimed leadership in that term.
    pub fn leaders_by_term(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        let mut map: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for node in self.nodes.values() {
            let text = fs::read_to_string(&node.log_path).unwrap_or_default();
            for (term, id) in parse_became_leader(&text) {
                map.entry(term).or_default().insert(id);
            }
        }
        map
    }

    /// Asserts, from the logs, that no term had two leaders, and returns the map.
    pub fn assert_at_most_one_leader_per_term(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        let leaders = self.leaders_by_term();
        self.log(format!("leaders by term (from the logs): {leaders:?}"));
        let split: BTreeMap<_, _> = leaders.iter().filter(|(_, ids)| ids.len() > 1).collect();
        assert!(
            split.is_empty(),
            "terms with more than one leader (term -> leaders): {split:?}; \
             all terms: {leaders:?}"
        );
        leaders
    }

    /// Waits until `node`'s log (of all its runs) contains `text`.
    pub fn wait_for_log(&self, node: u64, text: &str, timeout: Duration) {
        let path = self.log_path(node);
        wait_until(timeout, &format!("node {node} to log {text:?}"), || {
            if std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains(text)
            {
                Ok(())
            } else {
                Err(self.log_tail(node, 5))
            }
        });
    }

    /// The last `n` lines of `node`'s log.
    pub fn log_tail(&self, node: u64, n: usize) -> String {
        tail(&self.node(node).log_path, n)
    }

    fn kill_all(&self) {
        for node in self.nodes.values() {
            let mut slot = match node.child.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            if let Some(mut child) = slot.take() {
                signal(&child, libc::SIGKILL);
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        let keep = thread::panicking() || std::env::var_os("BCM_KEEP_LOGS").is_some();
        if !keep {
            return;
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            let mut report = format!("\n===== bcm e2e: logs kept in {} =====\n", path.display());
            for node in self.nodes.values() {
                let _ = writeln!(
                    report,
                    "----- {} (last 40 lines) -----\n{}",
                    node.log_path.display(),
                    tail(&node.log_path, 40)
                );
            }
            eprintln!("{report}");
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) on a pid we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}) failed: {}",
        std::io::Error::last_os_error()
    );
}

fn unix_time() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The last `n` lines of a file (ANSI colour codes removed).
pub fn tail(path: &Path, n: usize) -> String {
    let text = match fs::read(path) {
        Ok(b) => strip_ansi(&String::from_utf8_lossy(&b)),
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), which tracing adds for colours.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `(term, node_id)` of every line containing `became leader`, `term=T` and `node_id=N`.
pub fn parse_became_leader(log: &str) -> Vec<(u64, u64)> {
    let log = strip_ansi(log);
    log.lines()
        .filter(|l| l.contains("became leader"))
        .filter_map(|l| Some((field_u64(l, "term")?, field_u64(l, "node_id")?)))
        .collect()
}

/// The number after `name=` in `line`, where `name` is a whole word (so `term` does not
/// match `leader_term=`).
fn field_u64(line: &str, name: &str) -> Option<u64> {
    let pat = format!("{name}=");
    let mut from = 0;
    while let Some(pos) = line[from..].find(&pat) {
        let at = from + pos;
        let word_start = at == 0 || {
            let prev = line[..at].chars().next_back().unwrap();
            !(prev.is_alphanumeric() || prev == '_' || prev == '.')
        };
        if word_start {
            let digits: String = line[at + pat.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(v) = digits.parse() {
                return Some(v);
            }
        }
        from = at + pat.len();
    }
    None
}

// ---------------------------------------------------------------------------------------
// A steady writer
// ---------------------------------------------------------------------------------------

/// What a [`Writer`] saw.
#[derive(Debug, Default, Clone)]
pub struct WriteLog {
    /// Every write acknowledged with 2xx: key -> value.
    pub acked: BTreeMap<String, Value>,
    /// Writes that got an answer other than 2xx, or no answer.
    pub failed: u64,
    /// The last few failures, for messages.
    pub last_errors: Vec<String>,
}

/// A background thread writing `PUT /api/v1/config/<prefix>-<n>` through random live
/// nodes, one write at a time, and recording every acknowledged write.
pub struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriteLog>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(api: &Api, prefix: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let (api, prefix) = (api.clone(), prefix.to_string());
        let (stop2, log2) = (stop.clone(), log.clone());
        let handle = thread::Builder::new()
            .name(format!("writer-{prefix}"))
            .spawn(move || {
                let mut n = 0u64;
                let tag: u32 = rand::thread_rng().gen();
                while !stop2.load(Ordering::SeqCst) {
                    let Some(node) = api.random_live_node() else {
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    n += 1;
                    let key = format!("{prefix}-{n}");
                    let value = json!(format!("v{n}-{tag:08x}"));
                    let res = api.put_config(node, &key, &value);
                    let mut log = log2.lock().unwrap();
                    match res {
                        Ok(r) if r.is_success() => {
                            log.acked.insert(key, value);
                        }
                        other => {
                            log.failed += 1;
                            let msg = match other {
                                Ok(r) => format!("{key} via node {node}: {r}"),
                                Err(e) => format!("{key} via node {node}: {e}"),
                            };
                            if log.last_errors.len() >= 5 {
                                log.last_errors.remove(0);
                            }
                            log.last_errors.push(msg);
                            drop(log);
                            // Do not spin while the cluster has no leader.
                            thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    }
                    drop(log);
                    thread::sleep(Duration::from_millis(10));
                }
            })
            .expect("spawn writer thread");
        Writer {
            stop,
            log,
            handle: Some(handle),
        }
    }

    /// How many writes have been acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.log.lock().unwrap().acked.len()
    }

    /// A copy of what the writer has seen so far.
    pub fn snapshot(&self) -> WriteLog {
        self.log.lock().unwrap().clone()
    }

    /// Waits until at least `more` further writes are acknowledged.
    pub fn wait_for_progress(&self, more: usize, timeout: Duration) {
        let target = self.acked_count() + more;
        wait_until(
            timeout,
            &format!("the writer to reach {target} acknowledged writes"),
            || {
                let log = self.snapshot();
                if log.acked.len() >= target {
                    Ok(())
                } else {
                    Err(format!(
                        "{} acknowledged, {} failed; last errors: {:?}",
                        log.acked.len(),
                        log.failed,
                        log.last_errors
                    ))
                }
            },
        );
    }

    /// Stops the writer and returns everything it saw.
    pub fn stop(mut self) -> WriteLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("writer thread panicked");
        }
        self.snapshot()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tokens that must be refused
// ---------------------------------------------------------------------------------------

/// base64url without padding (as in JWTs).
pub fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A JWT-shaped HS256 token for `admin` with the given `exp`, signed with a key the
/// cluster does not know.
pub fn forged_token(exp: u64) -> String {
    let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let payload = base64url(
        json!({"sub": "admin", "name": "admin", "iat": now.min(exp), "exp": exp, "groups": ["admin"]})
            .to_string()
            .as_bytes(),
    );
    let sig: [u8; 32] = rand::thread_rng().gen();
    format!("{header}.{payload}.{}", base64url(&sig))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_leader_lines_with_and_without_colours() {
        let log = "2025-01-01T00:00:00Z  INFO bcm::raft: became leader term=3 node_id=2\n\
                   \u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m bcm::raft: became leader \u{1b}[3mterm\u{1b}[0m\u{1b}[2m=\u{1b}[0m4 \u{1b}[3mnode_id\u{1b}[0m\u{1b}[2m=\u{1b}[0m1\n\
                   INFO bcm::raft: became leader leader_term=9 term=5 node_id=3\n\
                   INFO vote granted term=7 node_id=1\n";
        assert_eq!(parse_became_leader(log), vec![(3, 2), (4, 1), (5, 3)]);
    }

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn metric_samples_are_read_by_exact_name() {
        let text = "# HELP bcm_raft_term Current Raft term.\n# TYPE bcm_raft_term gauge\n\
                    bcm_raft_term 3\nbcm_raft_term_x 9\n\
                    bcm_http_request_duration_seconds_count{route=\"/x\"} 2\n";
        assert_eq!(metric(text, "bcm_raft_term"), Some(3.0));
        assert_eq!(metric(text, "bcm_raft_leader_id"), None);
        assert_eq!(
            metric(text, "bcm_http_request_duration_seconds_count"),
            None
        );
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
    }
}
