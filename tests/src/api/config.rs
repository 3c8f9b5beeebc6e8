//! Settings: written through any node, read locally, awaited on every node.

use std::collections::BTreeMap;
use std::time::Duration;

use bcm_api::{ConfigValue, ConfigView};
use reqwest::Method;
use serde_json::Value;

use super::{Api, Reply};
use crate::{wait_until, REQUEST_TIMEOUT};

impl Api {
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
        let body = ConfigValue {
            value: value.clone(),
        };
        let req = self
            .request(node, Method::PUT, &format!("/api/v1/config/{key}"))
            .json(&body)
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

    /// The setting `key` as `node` sees it (value and version): `Ok(None)` on 404.
    pub fn config_entry(&self, node: u64, key: &str) -> Result<Option<ConfigView>, String> {
        let reply = self.get_config(node, key)?;
        match reply.status {
            200 => reply
                .parse()
                .map(Some)
                .map_err(|e| format!("GET config {key} on node {node}: {e}")),
            404 => Ok(None),
            _ => Err(format!("GET config {key} on node {node}: {reply}")),
        }
    }

    /// The `value` stored under `key` as `node` sees it: `Ok(None)` on 404.
    pub fn config_value(&self, node: u64, key: &str) -> Result<Option<Value>, String> {
        Ok(self.config_entry(node, key)?.map(|entry| entry.value))
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
