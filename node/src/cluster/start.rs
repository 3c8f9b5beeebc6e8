//! Starting a node: its storage, its Raft instance and the tasks beside it
//! (the election timer, leader watching, snapshots by writes, entering the cluster).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_raft_store::{store, Raft};
use openraft::SnapshotPolicy;
use tokio::sync::{broadcast, watch};

use super::node::{Node, SharedNode};
use super::rpc::Peers;
use crate::config::NodeConfig;

/// Creates the node's data directory for its own user only (0700), or makes an
/// existing one so, and says when it did: it holds the token signing key (in
/// the snapshot) and password hashes (in the Raft log). Its parents are left
/// as they are.
pub(super) fn private_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let failed = |what: &str, e: std::io::Error| {
        anyhow::anyhow!("cannot {what} the data directory {}: {e}", dir.display())
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| failed("create the parent of", e))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed("create", e)),
    }
    let mode = std::fs::metadata(dir)
        .map_err(|e| failed("read", e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| failed("make private (chmod 700; the node's user must own it)", e))?;
        tracing::warn!(
            data_dir = %dir.display(),
            "the data directory was open to other users (mode {mode:o}); made it 0700"
        );
    }
    Ok(())
}

/// Opens storage, creates the Raft instance and starts the formation task.
pub async fn start(cfg: NodeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<SharedNode> {
    private_data_dir(&cfg.data_dir)?;
    let raft_dir = cfg.data_dir.join("raft");
    std::fs::create_dir_all(&raft_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", raft_dir.display()))?;
    let mut opened = store::open(&raft_dir)
        .map_err(|e| anyhow::anyhow!("cannot open storage in {}: {e}", raft_dir.display()))?;
    let pristine = opened.pristine;
    if let Some(vote) = opened
        .log
        .forget_leadership(cfg.id)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the vote in {}: {e}", raft_dir.display()))?
    {
        tracing::info!(
            %vote,
            "this node led before it stopped: it starts as a follower and leads again only if elected"
        );
    }
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
        // Elections are bcm's own (election.rs), from the start: openraft's timer
        // would campaign before this node may take part in Raft (fence.rs).
        enable_elect: false,
        ..Default::default()
    };
    let raft_config = Arc::new(raft_config.validate()?);
    let tls = if cfg.cluster_tls {
        Some(crate::tls::NodeTls::open(&cfg.data_dir.join("tls"))?)
    } else {
        tracing::warn!(
            rpc = %cfg.rpc_advertise,
            "cluster-internal traffic is plaintext (http:// rpc addresses): use https:// addresses for mutual TLS outside development"
        );
        None
    };
    let peers = Peers::new(
        cfg.secret.clone(),
        Duration::from_millis(cfg.http.header_timeout_ms / 2),
        cfg.rpc_listen.ip(),
        tls.clone(),
    );
    // The Raft network's own pool: its connections are opened from, and driven by,
    // the Raft runtime this runs on (see main.rs), whatever the API's load.
    // Closed until entering.rs opens it: until then this node sends no Raft
    // message either (votes, entries, snapshots), as it takes none.
    let raft_open = Arc::new(AtomicBool::new(false));
    let raft_peers = peers
        .with_own_pool()
        .with_append_budget(opened.log.append_budget())
        .raft_gated_by(raft_open.clone());
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
        // Opened by entering.rs: at once when it joins, after asking the cluster
        // when it has Raft data (fence.rs).
        raft_open,
        asking_members: AtomicBool::new(!pristine),
        log,
        leader_contact: Mutex::new(Instant::now()),
        synced_with_leader: AtomicBool::new(false),
        leader_commit: AtomicU64::new(0),
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
        tls,
        logins: Default::default(),
        status_writes: Default::default(),
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
    tokio::spawn(crate::tls::sync::run(node.clone()));
    Ok(node)
}
