//! The snapshot export to PostgreSQL (`[postgres]`), run on every node.
//!
//! Every node applies the migrations at start-up (in the background: a node serves
//! whether or not Postgres answers). Only the leader exports: after each snapshot,
//! and at least every `export_interval` when something was applied since its last
//! export. A failed export is retried with a doubling backoff (1 s to 30 s) and
//! catches up by itself; the cluster keeps serving meanwhile. `GET /api/v1/cluster`
//! shows the leader's export status and `/metrics` its lag.
//!
//! The status is this feature's own ([`ExportState`], made by main and handed to
//! the exporter task, the `/metrics` page and [`router`], which answers peers that
//! ask for the leader's status).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use bcm_pg::{Exported, PgSink};
use serde::{Deserialize, Serialize};

use crate::cluster::rpc::LeaderReply;
use crate::cluster::{now_ms, Node, SharedNode};
use crate::config::PostgresConfig;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What this node knows of its exports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportStatus {
    /// The log index of the newest state Postgres holds, as far as this node knows.
    pub last_index: Option<u64>,
    /// Unix milliseconds of the last successful export.
    pub last_at_ms: Option<u64>,
    /// Why the last attempt failed; None once an export succeeds.
    pub last_error: Option<String>,
    /// Failed attempts since the process started.
    pub failures: u64,
}

/// The export status shared between the exporter task, the API and `/metrics`.
#[derive(Default)]
pub struct ExportState {
    status: Mutex<ExportStatus>,
}

impl ExportState {
    pub fn get(&self) -> ExportStatus {
        self.status.lock().expect("export status lock").clone()
    }

    fn update(&self, f: impl FnOnce(&mut ExportStatus)) {
        f(&mut self.status.lock().expect("export status lock"))
    }
}

/// Where a node asks the leader for its export status (cluster-internal).
pub const PATH_STATUS: &str = "/internal/export-status";

/// The cluster-internal route for [`PATH_STATUS`]: the leader answers with its
/// status, another node says it is not the leader.
pub fn router(state: Arc<ExportState>) -> Router<SharedNode> {
    Router::new().route(
        PATH_STATUS,
        post(move |State(node): State<SharedNode>, _: Bytes| async move {
            let reply = if node.is_leader() {
                LeaderReply::Ok(state.get())
            } else {
                LeaderReply::NotLeader {
                    leader_id: None,
                    leader_rpc: None,
                }
            };
            crate::cluster::rpc_server::encode(&reply)
        }),
    )
}

/// The leader's export status (this node's own when it leads), or None when no
/// leader answers quickly.
pub async fn leader_status(node: &Node, mine: &ExportState) -> Option<ExportStatus> {
    let (id, leader) = node.leader()?;
    if id == node.cfg.id {
        return Some(mine.get());
    }
    let reply = node
        .peers
        .call::<_, LeaderReply<ExportStatus>>(
            &leader.rpc_addr,
            PATH_STATUS,
            &(),
            Duration::from_millis(1500),
        )
        .await;
    match reply {
        Ok(LeaderReply::Ok(status)) => Some(status),
        _ => None,
    }
}

/// Connects and migrates, retrying with backoff until it works or the node stops.
async fn connect(node: &SharedNode, pg: &PostgresConfig, status: &ExportState) -> Option<PgSink> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            let sink = PgSink::connect(pg.url.expose(), CONNECT_TIMEOUT).await?;
            sink.migrate().await?;
            Ok::<_, bcm_pg::PgError>(sink)
        };
        match attempt.await {
            Ok(sink) => {
                tracing::info!("postgres: connected, schema up to date");
                return Some(sink);
            }
            Err(e) => {
                tracing::warn!("postgres: {e}; retrying in {}s", backoff.as_secs());
                status.update(|s| {
                    s.last_error = Some(e.to_string());
                    s.failures += 1;
                });
            }
        }
        let mut stop = node.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The exporter task.
pub async fn run(node: SharedNode, pg: PostgresConfig, status: Arc<ExportState>) {
    let Some(sink) = connect(&node, &pg, &status).await else {
        return;
    };
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    let mut last_attempt: Option<Instant> = None;
    let mut seen_snapshot = node.raft_metrics().snapshot;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if *node.shutdown.borrow() {
            return;
        }
        if !node.is_leader() {
            continue;
        }
        let m = node.raft_metrics();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let exported = status.get().last_index;
        if exported.is_some_and(|e| e >= applied) {
            seen_snapshot = m.snapshot;
            continue;
        }
        let wait = if failing { backoff } else { pg.export_interval };
        let due = last_attempt.is_none_or(|t| t.elapsed() >= wait);
        let snapshotted = m.snapshot != seen_snapshot && !failing;
        if !(due || snapshotted) {
            continue;
        }
        last_attempt = Some(Instant::now());
        let mut data = node.state.copy();
        let Some(cluster_id) = data.state.cluster_id.clone() else {
            continue;
        };
        // No key material in the clear in PostgreSQL: the token key is sealed
        // under the cluster secret (the CA key is sealed in the state already).
        data.state.token_key =
            crate::tls::seal::seal_token_key(&node.cfg.secret, &data.state.token_key);
        let index = data.last_applied.map(|l| l.index).unwrap_or(0);
        let started = Instant::now();
        match sink
            .export(&cluster_id, node.cfg.id, &data, pg.keep_snapshots)
            .await
        {
            Ok(outcome) => {
                let held = match outcome {
                    Exported::Written { id } => {
                        tracing::info!(
                            index,
                            snapshot_row = id,
                            ms = started.elapsed().as_millis() as u64,
                            "postgres: exported the state"
                        );
                        index
                    }
                    Exported::AlreadyNewer { index: newer } => {
                        tracing::info!(index, newer, "postgres: already holds a newer export");
                        newer
                    }
                };
                status.update(|s| {
                    s.last_index = Some(held.max(s.last_index.unwrap_or(0)));
                    s.last_at_ms = Some(now_ms());
                    s.last_error = None;
                });
                seen_snapshot = m.snapshot;
                failing = false;
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                tracing::warn!(
                    index,
                    "postgres: export failed: {e}; retrying in {}s",
                    backoff.as_secs()
                );
                status.update(|s| {
                    s.last_error = Some(e.to_string());
                    s.failures += 1;
                });
                if failing {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                failing = true;
            }
        }
    }
}

/// `bcm node --restore-from-postgres`: seeds this node's empty data directory with
/// the newest snapshot in Postgres, so it starts as a one-voter cluster with the
/// same cluster id, users, config, nodes and catalog; the other members, started
/// empty, join it and catch up.
/// The exported state with its token key opened (it is sealed in PostgreSQL).
fn open_exported_state(cfg: &crate::config::NodeConfig, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut state = bcm_raft_store::ClusterState::decode(data)
        .map_err(|e| anyhow::anyhow!("the exported state does not decode: {e}"))?;
    let mut secrets = vec![&cfg.secret];
    secrets.extend(cfg.previous_secret.as_ref());
    state.token_key =
        crate::tls::seal::open_token_key(&secrets, &state.token_key).map_err(|_| {
            anyhow::anyhow!(
            "the snapshot's token key is sealed under another cluster secret: restore with the \
             cluster's secret (or set it as cluster.previous_secret)"
        )
        })?;
    Ok(bcm_raft_store::codec::encode(&state)?)
}

/// `cluster_id`: which cluster's snapshot; needed when PostgreSQL holds
/// snapshots of more than one cluster.
pub async fn restore_from_postgres(
    cfg: &crate::config::NodeConfig,
    cluster_id: Option<&str>,
) -> anyhow::Result<()> {
    let pg = cfg.postgres.as_ref().ok_or_else(|| {
        anyhow::anyhow!("--restore-from-postgres needs [postgres] url in the configuration")
    })?;
    if let Ok(mut entries) = std::fs::read_dir(&cfg.data_dir) {
        if entries.next().is_some() {
            anyhow::bail!(
                "refusing to restore: the data directory {} is not empty. A restore only \
                 fills an empty data directory; move the old one away first",
                cfg.data_dir.display()
            );
        }
    }
    let sink = PgSink::connect(pg.url.expose(), Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("restore: {e}"))?;
    sink.migrate()
        .await
        .map_err(|e| anyhow::anyhow!("restore: {e}"))?;
    let clusters = sink
        .cluster_ids()
        .await
        .map_err(|e| anyhow::anyhow!("restore: {e}"))?;
    match cluster_id {
        Some(id) if !clusters.iter().any(|c| c == id) => anyhow::bail!(
            "refusing to restore: PostgreSQL holds no snapshot of cluster {id} (it holds: {})",
            if clusters.is_empty() {
                "none".to_string()
            } else {
                clusters.join(", ")
            }
        ),
        None if clusters.len() > 1 => anyhow::bail!(
            "refusing to restore: PostgreSQL holds snapshots of several clusters ({}); name \
             the one to restore with --cluster-id",
            clusters.join(", ")
        ),
        _ => {}
    }
    let snap = sink
        .latest(cluster_id)
        .await
        .map_err(|e| anyhow::anyhow!("restore: {e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "refusing to restore: PostgreSQL holds no bcm snapshot (the snapshots table \
                 is empty); nothing to restore from"
            )
        })?;
    super::start::private_data_dir(&cfg.data_dir)?;
    let raft_dir = cfg.data_dir.join("raft");
    std::fs::create_dir_all(&raft_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", raft_dir.display()))?;
    let me = bcm_raft_store::BcmNode {
        api_addr: cfg.api_advertise.clone(),
        rpc_addr: cfg.rpc_advertise.clone(),
    };
    let data = match open_exported_state(cfg, &snap.data) {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&cfg.data_dir);
            anyhow::bail!("restore: {e}");
        }
    };
    if let Err(e) = bcm_raft_store::seed_from_export(
        &raft_dir,
        data,
        // Above the exported term: a member that kept its disk after all must
        // never look newer than the restored cluster.
        bcm_raft_store::reseeded_term(snap.term),
        snap.last_log_index,
        cfg.id,
        me,
    )
    .await
    {
        // Leave nothing half-written behind: the directory was empty.
        let _ = std::fs::remove_dir_all(&cfg.data_dir);
        anyhow::bail!("restore: {e}");
    }
    tracing::info!(
        cluster_id = %snap.cluster_id,
        index = snap.last_log_index,
        term = snap.term,
        exported_by = snap.node_id,
        exported_at = %snap.created_at,
        "restored the cluster from PostgreSQL; this node is its only voter until the \
         other members, started with empty data directories, join"
    );
    Ok(())
}
