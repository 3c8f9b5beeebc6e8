//! Prometheus text metrics: Raft gauges read from openraft's metrics at scrape time,
//! plus counters and request-latency histograms kept here.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::AppState;
use crate::net::serve::ListenerStats;

/// Bucket upper bounds in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Latency histograms of one route, by (method, status class: 2 for 2xx).
type RouteHistograms = Vec<(&'static str, u16, Histogram)>;

/// What the HTTP side counts: request latency per route, and both listeners'
/// connections (the cluster-internal one's handed over by main).
pub struct HttpMetrics {
    api_listener: Arc<ListenerStats>,
    rpc_listener: Arc<ListenerStats>,
    /// By route. Looked up by borrowed strings: observing a request allocates only
    /// the first time its route, method and class are seen.
    requests: Mutex<BTreeMap<String, RouteHistograms>>,
}

/// The methods `/metrics` tells apart; any other is counted as `other`, so that
/// made-up methods cannot grow the metrics (routes are a closed set already: the
/// router's own patterns, or `unmatched`).
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT",
];

fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other")
}

impl HttpMetrics {
    pub fn new(api_listener: Arc<ListenerStats>, rpc_listener: Arc<ListenerStats>) -> HttpMetrics {
        HttpMetrics {
            api_listener,
            rpc_listener,
            requests: Mutex::default(),
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let method = method_label(method);
        let class = status / 100;
        let mut requests = self.requests.lock().expect("metrics lock");
        if !requests.contains_key(route) {
            requests.insert(route.to_string(), Vec::new());
        }
        let by_route = requests.get_mut(route).expect("inserted");
        let at = match by_route
            .iter()
            .position(|(m, c, _)| *c == class && *m == method)
        {
            Some(i) => i,
            None => {
                by_route.push((method, class, Histogram::default()));
                by_route.len() - 1
            }
        };
        by_route[at].2.observe(took.as_secs_f64());
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders all metrics of this node in the Prometheus text format.
pub fn render(app: &AppState) -> String {
    let node = &app.node;
    let m = node.raft_metrics();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge("bcm_raft_term", "Current Raft term.", m.current_term as f64);
    if let Some(export) = &app.export {
        let ex = export.get();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        gauge(
            "bcm_snapshot_export_lag_entries",
            "On the leader: applied entries not yet exported to PostgreSQL (0 elsewhere).",
            if node.is_leader() {
                applied.saturating_sub(ex.last_index.unwrap_or(0)) as f64
            } else {
                0.0
            },
        );
        gauge(
            "bcm_snapshot_export_last_success_seconds",
            "Unix time of this node's last successful export (0: none).",
            ex.last_at_ms.unwrap_or(0) as f64 / 1000.0,
        );
        gauge(
            "bcm_snapshot_export_failures",
            "Failed export attempts by this node since it started.",
            ex.failures as f64,
        );
        gauge(
            "bcm_snapshot_export_healthy",
            "0 while this node's last export attempt failed, else 1.",
            if ex.last_error.is_some() { 0.0 } else { 1.0 },
        );
    }
    gauge(
        "bcm_raft_leader_id",
        "Id of the current leader (0 when none is known).",
        m.current_leader.unwrap_or(0) as f64,
    );
    gauge(
        "bcm_raft_is_leader",
        "1 when this node is the leader (the cluster manager).",
        if node.is_leader() { 1.0 } else { 0.0 },
    );
    gauge(
        "bcm_raft_last_log_index",
        "Index of the last entry in this node's log.",
        m.last_log_index.unwrap_or(0) as f64,
    );
    gauge(
        "bcm_raft_applied_index",
        "Index of the last entry applied to the state machine.",
        m.last_applied.map(|l| l.index).unwrap_or(0) as f64,
    );
    gauge(
        "bcm_raft_snapshot_index",
        "Last log index included in the latest snapshot.",
        m.snapshot.map(|l| l.index).unwrap_or(0) as f64,
    );
    gauge(
        "bcm_raft_purged_index",
        "Log entries up to this index have been purged.",
        m.purged.map(|l| l.index).unwrap_or(0) as f64,
    );
    if let Some(ms) = m.millis_since_quorum_ack {
        gauge(
            "bcm_raft_millis_since_quorum_ack",
            "On the leader: milliseconds since a majority last acknowledged it.",
            ms as f64,
        );
    }
    // The timing elections run on (the speed issue tunes it against the
    // heartbeat jitter seen under load): the configured values, and how long
    // ago this node last heard from a leader.
    let raft = &node.cfg.raft;
    gauge(
        "bcm_raft_heartbeat_seconds",
        "How often the leader sends heartbeats (raft.heartbeat_ms).",
        raft.heartbeat_ms as f64 / 1000.0,
    );
    gauge(
        "bcm_raft_election_timeout_min_seconds",
        "Shortest election timeout a follower draws (raft.election_timeout_min_ms).",
        raft.election_timeout_min_ms as f64 / 1000.0,
    );
    gauge(
        "bcm_raft_election_timeout_max_seconds",
        "Longest election timeout a follower draws (raft.election_timeout_max_ms).",
        raft.election_timeout_max_ms as f64 / 1000.0,
    );
    gauge(
        "bcm_raft_leader_lease_seconds",
        "How long after hearing from a leader a node refuses to pre-vote for a candidate.",
        raft.election_timeout_max_ms as f64 / 1000.0,
    );
    gauge(
        "bcm_raft_seconds_since_leader_contact",
        "On a follower: seconds since it last heard from a leader (0 on the leader).",
        if node.is_leader() {
            0.0
        } else {
            node.since_leader_contact().as_secs_f64()
        },
    );
    let commit = node.state.applied_index();
    gauge(
        "bcm_raft_commit_index",
        "Highest index known committed and applied on this node.",
        commit as f64,
    );
    gauge(
        "bcm_disk_available_bytes",
        "Free space on this node's data disk, as last measured.",
        node.disk.available() as f64,
    );
    gauge(
        "bcm_disk_full",
        "1 while this node refuses writes because its data disk is (nearly) full.",
        if node.disk.is_low() { 1.0 } else { 0.0 },
    );
    let _ = writeln!(
        out,
        "# HELP bcm_raft_leader_changes_total Leader changes seen by this node.\n# TYPE bcm_raft_leader_changes_total counter\nbcm_raft_leader_changes_total {}",
        node.leader_changes()
    );
    let (proposals, writes) = node.proposer.counts();
    let _ = writeln!(
        out,
        "# HELP bcm_raft_proposals_total Log entries this node proposed as leader for client writes (a batch is one).\n# TYPE bcm_raft_proposals_total counter\nbcm_raft_proposals_total {proposals}"
    );
    let _ = writeln!(
        out,
        "# HELP bcm_raft_proposed_writes_total Client writes in those entries (divided by bcm_raft_proposals_total: the mean batch size).\n# TYPE bcm_raft_proposed_writes_total counter\nbcm_raft_proposed_writes_total {writes}"
    );
    data_metrics(&mut out, app);
    let listeners = [
        ("api", &app.metrics.api_listener),
        ("rpc", &app.metrics.rpc_listener),
    ];
    for (name, kind, help, value) in [
        (
            "bcm_http_open_connections",
            "gauge",
            "Connections open on a listener (api: the public API and UI; rpc: cluster-internal).",
            ListenerStats::open as fn(&ListenerStats) -> u64,
        ),
        (
            "bcm_http_refused_connections_total",
            "counter",
            "Connections turned away at http.max_connections.",
            ListenerStats::refused,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (listener, stats) in listeners {
            let _ = writeln!(out, "{name}{{listener=\"{listener}\"}} {}", value(stats));
        }
    }
    let _ = writeln!(
        out,
        "# HELP bcm_http_request_duration_seconds HTTP request latency by route.\n# TYPE bcm_http_request_duration_seconds histogram"
    );
    let mut requests: Vec<(&str, String, u16, Histogram)> = Vec::new();
    for (route, by_route) in app.metrics.requests.lock().expect("metrics lock").iter() {
        for (method, class, h) in by_route {
            requests.push((method, route.clone(), *class, h.clone()));
        }
    }
    requests.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    for (method, route, class, h) in requests {
        let labels = format!(
            "method=\"{}\",route=\"{}\",status=\"{class}xx\"",
            escape(method),
            escape(&route),
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "bcm_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                h.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "bcm_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "bcm_http_request_duration_seconds_sum{{{labels}}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "bcm_http_request_duration_seconds_count{{{labels}}} {}",
            h.count
        );
    }
    out
}

/// The data plane: what this node's jobs moved, and the catalog's backups by
/// status (the replicated state's, the same on every node).
fn data_metrics(out: &mut String, app: &AppState) {
    use crate::jobs::{DataCounters, DATA};
    for (name, help, counter) in [
        (
            "bcm_backup_read_bytes_total",
            "Bytes of files read by backups that succeeded with this node as their source.",
            &DATA.backed_up_bytes,
        ),
        (
            "bcm_backup_unchanged_bytes_total",
            "Bytes of files those backups found unchanged since their plan's previous \
             backup (size, mtime, inode, ctime) and kept without reading them.",
            &DATA.unchanged_bytes,
        ),
        (
            "bcm_backup_stored_bytes_total",
            "Bytes those backups added to their first replica (compressed, after dedup).",
            &DATA.stored_bytes,
        ),
        (
            "bcm_backup_deduplicated_bytes_total",
            "Bytes those backups read and did not send: chunks already held.",
            &DATA.deduplicated_bytes,
        ),
        (
            "bcm_restore_written_bytes_total",
            "Bytes written by restores that succeeded with this node as their target.",
            &DATA.restored_bytes,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            DataCounters::get(counter)
        );
    }
    for (name, help, ok, failed) in [
        (
            "bcm_backup_runs_total",
            "Backup runs this node ended as their source, by outcome.",
            &DATA.backups_succeeded,
            &DATA.backups_failed,
        ),
        (
            "bcm_restore_runs_total",
            "Restore runs this node ended as their target, by outcome.",
            &DATA.restores_succeeded,
            &DATA.restores_failed,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{outcome=\"succeeded\"}} {}\n{name}{{outcome=\"failed\"}} {}",
            DataCounters::get(ok),
            DataCounters::get(failed)
        );
    }
    let by_status = app.node.state.read(|d| {
        let mut n = [0u64; 5];
        for b in d.state.backups.values() {
            n[b.status as usize] += 1;
        }
        n
    });
    let _ = writeln!(
        out,
        "# HELP bcm_catalog_backups Backups in the catalog, by status.\n# TYPE bcm_catalog_backups gauge"
    );
    for status in bcm_raft_store::JobStatus::ALL {
        let _ = writeln!(
            out,
            "bcm_catalog_backups{{status=\"{}\"}} {}",
            status.as_str(),
            by_status[status as usize]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_kept_by_method_route_and_status_class() {
        let m = HttpMetrics::new(Arc::default(), Arc::default());
        let ms = Duration::from_millis;
        m.observe_request("PUT", "/api/v1/config/{*key}", 200, ms(3));
        m.observe_request("PUT", "/api/v1/config/{*key}", 201, ms(300));
        m.observe_request("PUT", "/api/v1/config/{*key}", 412, ms(1));
        m.observe_request("GET", "/api/v1/config/{*key}", 200, ms(1));
        let r = m.requests.lock().unwrap();
        let by_route = &r["/api/v1/config/{*key}"];
        let count = |method: &str, class: u16| {
            by_route
                .iter()
                .find(|(m, c, _)| *m == method && *c == class)
                .map(|(_, _, h)| h.count)
        };
        assert_eq!(count("PUT", 2), Some(2));
        assert_eq!(count("PUT", 4), Some(1));
        assert_eq!(count("GET", 2), Some(1));
        assert_eq!(count("GET", 4), None);
    }

    #[test]
    fn made_up_methods_share_one_label() {
        let m = HttpMetrics::new(Arc::default(), Arc::default());
        for i in 0..100 {
            m.observe_request(&format!("FOO{i}"), "unmatched", 405, Duration::ZERO);
        }
        m.observe_request("GET", "unmatched", 404, Duration::ZERO);
        let r = m.requests.lock().unwrap();
        let methods: Vec<&str> = r["unmatched"].iter().map(|(m, _, _)| *m).collect();
        assert_eq!(methods, ["other", "GET"]);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(0.003);
        h.observe(0.2);
        assert_eq!(h.counts[0], 0);
        assert_eq!(h.counts[3], 1); // <= 5 ms
        assert_eq!(h.counts[8], 2); // <= 250 ms
        assert_eq!(h.count, 2);
    }
}
