//! The cluster's HTTP API as tests use it: requests ([`Req`]), answers ([`Reply`]), [`Api`].
//!
//! What the harness reads itself (a session, who leads, the cluster, a setting) it
//! decodes into `bcm_api`'s types, the ones the server sends, and the bodies it
//! builds are `bcm_api`'s request types: a field renamed there fails to compile here.
//! The JSON helpers tests use (`cluster`, `leader_status`, `config_value`, ...) sit
//! beside the typed ones and share their requests. By resource: `auth` (logging in,
//! the admin token), `cluster` (the Raft group, who leads, health), `config`
//! (settings written and awaited); `http` holds one request and its answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use reqwest::blocking::Client;
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::logs::Events;
use crate::REQUEST_TIMEOUT;

mod auth;
mod cluster;
mod config;
mod http;
mod jobs;

pub use http::{Reply, Req};

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

/// How the harness's HTTP clients are made.
fn client_builder() -> reqwest::blocking::ClientBuilder {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        // A fresh connection per request: nodes are killed and restarted under us,
        // and a stale pooled connection would turn into a spurious error.
        .pool_max_idle_per_host(0)
        .no_proxy()
}

impl Api {
    /// `ca_pem`: the CA that certifies the nodes' API (HTTPS), if they serve it.
    pub(crate) fn new(events: Events, ca_pem: Option<String>) -> Self {
        let mut builder = client_builder();
        if let Some(pem) = ca_pem {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes()).expect("the test CA");
            builder = builder.add_root_certificate(ca);
        }
        let client = builder.build().expect("build the HTTP client");
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

    /// Makes `node` known: its public API and cluster-internal base URLs.
    pub(crate) fn add_node(&self, node: u64, api_url: String, rpc_url: String) {
        self.inner.api_urls.write().unwrap().insert(node, api_url);
        self.inner.rpc_urls.write().unwrap().insert(node, rpc_url);
    }

    /// The public API base URL of `node`, e.g. `http://127.0.0.1:23456`.
    pub fn api_url(&self, node: u64) -> String {
        url_of(&self.inner.api_urls, node)
    }

    /// The cluster-internal (Raft RPC) base URL of `node`.
    pub fn rpc_url(&self, node: u64) -> String {
        url_of(&self.inner.rpc_urls, node)
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

    /// Marks `node` as worth talking to (running, not paused) or not.
    pub(crate) fn set_live(&self, node: u64, live: bool) {
        let mut set = self.inner.live.write().unwrap();
        if live {
            set.insert(node);
        } else {
            set.remove(&node);
        }
    }

    /// Starts building a request to `path` on `node`'s public API.
    pub fn request(&self, node: u64, method: Method, path: &str) -> Req {
        Req::new(method, format!("{}{}", self.api_url(node), path))
    }

    /// Starts building a request to `path` on `node`'s cluster-internal RPC listener.
    pub fn rpc_request(&self, node: u64, method: Method, path: &str) -> Req {
        Req::new(method, format!("{}{}", self.rpc_url(node), path))
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
        let from_elsewhere;
        let client = match req.source {
            None => &self.inner.client,
            Some(addr) => {
                from_elsewhere = client_builder()
                    .local_address(addr)
                    .build()
                    .map_err(|e| format!("a client sending from {addr}: {e}"))?;
                &from_elsewhere
            }
        };
        let mut rb = client
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

    /// `GET path` on `node` without credentials (the one shorthand here that sends
    /// no token: for probes, `/metrics`, and asking what a stranger gets).
    pub fn get(&self, node: u64, path: &str) -> Result<Reply, String> {
        self.send(self.request(node, Method::GET, path))
    }

    /// `POST path` on `node` with an admin token and the JSON `body`.
    pub fn post(&self, node: u64, path: &str, body: &Value) -> Result<Reply, String> {
        self.call(node, Method::POST, path, Some(body))
    }

    /// `PATCH path` on `node` with an admin token and the JSON `body`.
    pub fn patch(&self, node: u64, path: &str, body: &Value) -> Result<Reply, String> {
        self.call(node, Method::PATCH, path, Some(body))
    }

    /// `DELETE path` on `node` with an admin token.
    pub fn delete(&self, node: u64, path: &str) -> Result<Reply, String> {
        self.call(node, Method::DELETE, path, None)
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
        Ok(self.get_ok(node, path)?.json())
    }

    /// `GET path` on `node` with an admin token, decoded as a `T` (e.g.
    /// `bcm_api::Page<bcm_api::NodeView>`); `Err` unless 200 and a `T`.
    pub fn get_as<T: DeserializeOwned>(&self, node: u64, path: &str) -> Result<T, String> {
        self.get_ok(node, path)?
            .parse()
            .map_err(|e| format!("GET {path} on node {node}: {e}"))
    }

    /// `GET path` on `node` with an admin token; `Err` unless 200.
    fn get_ok(&self, node: u64, path: &str) -> Result<Reply, String> {
        let reply = self.call(node, Method::GET, path, None)?;
        if reply.status != 200 {
            return Err(format!("GET {path} on node {node}: {reply}"));
        }
        Ok(reply)
    }
}

/// The base URL of `node` in `urls`; panics when the cluster has no such node.
fn url_of(urls: &RwLock<BTreeMap<u64, String>>, node: u64) -> String {
    urls.read()
        .unwrap()
        .get(&node)
        .cloned()
        .unwrap_or_else(|| panic!("no node {node} in this cluster"))
}

/// An error and its sources, in words (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}
