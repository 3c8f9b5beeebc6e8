//! Starting a node: its storage, its Raft instance and the tasks beside it
//! (the election timer, leader watching, snapshots by writes, entering the cluster).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_raft_store::{store, Raft};
use openraft::SnapshotPolicy;
use tokio::sync::{broadcast, watch};

use super::node::{Node, SharedNode};
use super::rpc::Peers;
use crate::config::NodeConfig;

/// Opens storage, creates the Raft instance and starts the formation task.
pub async fn start(cfg: NodeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<SharedNode> {
    let raft_dir = cfg.data_dir.join("raft");
    std::fs::create_dir_all(&raft_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", raft_dir.display()))?;
    let opened = store::open(&raft_dir)
        .map_err(|e| anyhow::anyhow!("cannot open storage in {}: {e}", raft_dir.display()))?;
    let pristine = opened.pristine;
    let log = opened.log.clone();
    let state = opened.state_machine.handle();
    let disk = Arc::new(crate::cluster::disk::DiskWatch::new(
        opened.space.clone(),
        cfg.disk_reserve_bytes,
    ));

    let raft_config = openraft::Config {
        cluster_name: "bcm".into(),
        heartbeat_interval: cfg.raft.heartbeat_ms,
        election_timeout_min: cfg.raft.election_timeout_min_ms,
        election_timeout_max: cfg.raft.election_timeout_max_ms,
        install_snapshot_timeout: 5_000,
        // Counts cap entries; bytes are capped by the log reader (bcm_model::limits).
        max_payload_entries: 300,
        snapshot_max_chunk_size: bcm_raft_store::limits::SNAPSHOT_CHUNK_BYTES as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.raft.snapshot_every),
        max_in_snapshot_log_to_keep: cfg.raft.keep_logs_behind_snapshot,
        ..Default::default()
    };
    let raft_config = Arc::new(raft_config.validate()?);
    let peers = Peers::new(
        cfg.secret.clone(),
        Duration::from_millis(cfg.http.header_timeout_ms / 2),
        cfg.rpc_listen.ip(),
    );
    // The Raft network's own pool: its connections are opened from, and driven by,
    // the Raft runtime this runs on (see main.rs), whatever the API's load.
    let raft_peers = peers.with_own_pool();
    let raft = Raft::new(
        cfg.id,
        raft_config,
        raft_peers.clone(),
        opened.log,
        opened.state_machine,
    )
    .await?;

    let node = Arc::new(Node {
        cfg,
        raft: raft.clone(),
        state,
        peers: peers.clone(),
        raft_peers,
        leader_changes: Default::default(),
        events: broadcast::channel(1024).0,
        raft_open: AtomicBool::new(!pristine),
        log,
        leader_contact: Mutex::new(Instant::now()),
        synced_with_leader: AtomicBool::new(false),
        refused: Mutex::new(None),
        leader_since: Mutex::new(None),
        joining: Mutex::new(BTreeMap::new()),
        shutdown,
        forwarder: crate::cluster::forward::Forwarder::start(peers.clone()),
        proposer: crate::cluster::propose::Proposer::start(raft.clone()),
        read_rounds: Default::default(),
        leader_read_rounds: Default::default(),
        handing_over: AtomicBool::new(false),
        hand_over_failed: Mutex::new(None),
        disk,
    });
    tracing::info!(
        node_id = node.cfg.id,
        pristine,
        data_dir = %node.cfg.data_dir.display(),
        "storage opened"
    );
    tokio::spawn(super::election::election_timer(node.clone()));
    tokio::spawn(super::disk::watch(node.clone()));
    tokio::spawn(super::tasks::watch_leadership(node.clone()));
    tokio::spawn(super::tasks::forward_state_events(node.clone()));
    tokio::spawn(super::tasks::snapshot_by_writes(node.clone()));
    tokio::spawn(super::entering::enter_cluster(node.clone(), pristine));
    Ok(node)
}
