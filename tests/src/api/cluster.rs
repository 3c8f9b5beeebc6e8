//! The Raft group and who leads it: `/api/v1/cluster`, `/leader`, `/readyz`, `/metrics`.

use bcm_api::{ClusterView, LeaderView};
use reqwest::Method;
use serde_json::Value;

use super::{Api, Reply};
use crate::PROBE_TIMEOUT;

const CLUSTER: &str = "/api/v1/cluster";

impl Api {
    /// `GET /api/v1/cluster` on `node`, decoded; `Err` unless 200.
    pub fn cluster_view(&self, node: u64) -> Result<ClusterView, String> {
        self.get_as(node, CLUSTER)
    }

    /// `GET /api/v1/cluster` on `node`, parsed as it came (every field the node sent).
    pub fn cluster(&self, node: u64) -> Result<Value, String> {
        self.get_json(node, CLUSTER)
    }

    /// `GET /leader` on `node`: `(http status, who leads as it knows)`. 200 on the
    /// leader, 503 elsewhere; `Err` when there is no answer or it is no `LeaderView`.
    pub fn leader_view(&self, node: u64) -> Result<(u16, LeaderView), String> {
        let reply = self.leader_reply(node)?;
        let view = reply
            .parse()
            .map_err(|e| format!("GET /leader on node {node}: {e}"))?;
        Ok((reply.status, view))
    }

    /// `GET /leader` on `node`: `(http status, body)`.
    pub fn leader_status(&self, node: u64) -> Result<(u16, Value), String> {
        let reply = self.leader_reply(node)?;
        Ok((reply.status, reply.json()))
    }

    fn leader_reply(&self, node: u64) -> Result<Reply, String> {
        self.send(
            self.request(node, Method::GET, "/leader")
                .timeout(PROBE_TIMEOUT),
        )
    }

    /// The leader, asking `/leader` on every live node: the node that answers 200
    /// (if two do, say a leader cut off from the others has not stepped down yet,
    /// the one with the higher term).
    pub fn leader(&self) -> Option<u64> {
        let mut best: Option<LeaderView> = None;
        for n in self.live_nodes() {
            if let Ok((200, view)) = self.leader_view(n) {
                if best.is_none_or(|b| view.term > b.term) {
                    best = Some(view);
                }
            }
        }
        best.map(|v| v.node_id)
    }

    /// `GET /readyz` on `node`, with a probe's short timeout.
    pub fn readyz(&self, node: u64) -> Result<Reply, String> {
        self.send(
            self.request(node, Method::GET, "/readyz")
                .timeout(PROBE_TIMEOUT),
        )
    }

    /// `GET /readyz` on `node` answers 200.
    pub fn is_ready(&self, node: u64) -> bool {
        matches!(self.readyz(node), Ok(r) if r.status == 200)
    }

    /// `GET /metrics` on `node`: the Prometheus text, `Err` unless 200.
    pub fn metrics(&self, node: u64) -> Result<String, String> {
        let reply = self.get(node, "/metrics")?;
        if reply.status != 200 {
            return Err(format!("GET /metrics on node {node}: {reply}"));
        }
        Ok(reply.body)
    }
}
