//! One running node: the Raft instance, its storage handle, the peer client, and the
//! background tasks that form, join and watch the cluster.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_raft_store::store;
use bcm_raft_store::{BcmNode, NodeId, NodeInfo, Raft, RaftMetrics, StateHandle};
use openraft::{ServerState, SnapshotPolicy};
use tokio::sync::{broadcast, watch};

use crate::config::NodeConfig;
use crate::events::ClusterEvent;
use crate::metrics::Metrics;
use crate::rpc::{self, Hello, JoinReply, JoinRequest, LeaderReply, Peers};

/// Everything a handler or task needs to know about this node.
pub struct Node {
    pub cfg: NodeConfig,
    pub raft: Raft,
    pub state: StateHandle,
    pub peers: Peers,
    pub metrics: Metrics,
    pub events: broadcast::Sender<ClusterEvent>,
    /// Closed while a node with a wiped disk waits to be removed from the membership:
    /// it must not answer Raft RPCs as its old self (openraft 0.9 #898).
    raft_open: AtomicBool,
    /// When this node last became leader (None when it is not the leader).
    leader_since: Mutex<Option<Instant>>,
    /// Nodes the leader is currently adding, so a join is handled once at a time.
    pub(crate) joining: Mutex<BTreeMap<NodeId, Instant>>,
    pub shutdown: watch::Receiver<bool>,
}

pub type SharedNode = Arc<Node>;

/// How long a write or a linearizable read may wait for a leader and a quorum.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Node {
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.cfg.id,
            name: self.cfg.name.clone(),
            api_addr: self.cfg.api_advertise.clone(),
            rpc_addr: self.cfg.rpc_advertise.clone(),
            roles: self.cfg.roles.clone(),
        }
    }

    pub fn raft_metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    pub fn raft_open(&self) -> bool {
        self.raft_open.load(Ordering::SeqCst)
    }

    fn open_raft(&self) {
        if !self.raft_open.swap(true, Ordering::SeqCst) {
            tracing::info!("answering Raft RPCs");
        }
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.cfg.id)
    }

    /// How long this node has been leader (None when it is not).
    pub fn leader_for(&self) -> Option<Duration> {
        self.leader_since
            .lock()
            .expect("leader_since lock")
            .map(|t| t.elapsed())
    }

    /// The current leader's id and rpc address, when known.
    pub fn leader(&self) -> Option<(NodeId, BcmNode)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    pub fn hello(&self) -> Hello {
        let m = self.raft_metrics();
        let initialized = m
            .membership_config
            .membership()
            .voter_ids()
            .next()
            .is_some();
        let leader = self.leader();
        Hello {
            info: self.info(),
            initialized,
            cluster_id: self.state.read(|d| d.state.cluster_id.clone()),
            leader_id: leader.as_ref().map(|l| l.0),
            leader_rpc: leader.map(|l| l.1.rpc_addr),
        }
    }
}

/// Opens storage, creates the Raft instance and starts the formation task.
pub async fn start(cfg: NodeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<SharedNode> {
    let raft_dir = cfg.data_dir.join("raft");
    std::fs::create_dir_all(&raft_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", raft_dir.display()))?;
    let opened = store::open(&raft_dir)
        .map_err(|e| anyhow::anyhow!("cannot open storage in {}: {e}", raft_dir.display()))?;
    let pristine = opened.pristine;
    let state = opened.state_machine.handle();

    let raft_config = openraft::Config {
        cluster_name: "bcm".into(),
        heartbeat_interval: cfg.raft.heartbeat_ms,
        election_timeout_min: cfg.raft.election_timeout_min_ms,
        election_timeout_max: cfg.raft.election_timeout_max_ms,
        install_snapshot_timeout: 5_000,
        max_payload_entries: 300,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.raft.snapshot_every),
        max_in_snapshot_log_to_keep: cfg.raft.keep_logs_behind_snapshot,
        ..Default::default()
    };
    let raft_config = Arc::new(raft_config.validate()?);
    let peers = Peers::new(cfg.secret.clone());
    let raft = Raft::new(
        cfg.id,
        raft_config,
        peers.clone(),
        opened.log,
        opened.state_machine,
    )
    .await?;

    let node = Arc::new(Node {
        cfg,
        raft,
        state,
        peers,
        metrics: Metrics::default(),
        events: broadcast::channel(1024).0,
        raft_open: AtomicBool::new(!pristine),
        leader_since: Mutex::new(None),
        joining: Mutex::new(BTreeMap::new()),
        shutdown,
    });
    tracing::info!(
        node_id = node.cfg.id,
        pristine,
        data_dir = %node.cfg.data_dir.display(),
        "storage opened"
    );
    tokio::spawn(watch_leadership(node.clone()));
    tokio::spawn(forward_state_events(node.clone()));
    tokio::spawn(enter_cluster(node.clone(), pristine));
    Ok(node)
}

/// Turns Raft metrics into leader-change events, the `became leader` log line and
/// the leader-since clock.
async fn watch_leadership(node: SharedNode) {
    let mut rx = node.raft.metrics();
    let mut shutdown = node.shutdown.clone();
    let mut last_leader: Option<NodeId> = None;
    let mut last_term = 0;
    let mut was_leader = false;
    loop {
        let (leader, term, is_leader) = {
            let m = rx.borrow_and_update();
            (
                m.current_leader,
                m.current_term,
                m.state == ServerState::Leader,
            )
        };
        if leader != last_leader || term != last_term {
            if leader != last_leader {
                node.metrics.leader_changes.inc();
                tracing::info!(term, leader_id = ?leader, "leader changed");
                let _ = node.events.send(ClusterEvent::LeaderChanged {
                    leader_id: leader,
                    term,
                });
            }
            last_leader = leader;
            last_term = term;
        }
        if is_leader && !was_leader {
            tracing::info!("became leader term={} node_id={}", term, node.cfg.id);
            *node.leader_since.lock().expect("leader_since lock") = Some(Instant::now());
        } else if !is_leader && was_leader {
            tracing::info!("stepped down term={} node_id={}", term, node.cfg.id);
            *node.leader_since.lock().expect("leader_since lock") = None;
        }
        was_leader = is_leader;
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

async fn forward_state_events(node: SharedNode) {
    let mut rx = node.state.subscribe();
    loop {
        match rx.recv().await {
            Ok(e) => {
                let _ = node.events.send(ClusterEvent::State(e));
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "event stream lagged");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Forms the cluster (bootstrap members with empty data), or joins it, or announces a
/// restarted member, retrying until it succeeds or the node shuts down.
async fn enter_cluster(node: SharedNode, pristine: bool) {
    let me = node.cfg.rpc_advertise.clone();
    let bootstrapping = pristine && node.cfg.bootstrap.contains(&me);
    let mut attempt = 0u32;
    loop {
        if *node.shutdown.borrow() {
            return;
        }
        let result = if bootstrapping && !node.raft_open() {
            try_bootstrap(&node).await
        } else {
            try_join(&node, pristine).await
        };
        match result {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                if attempt.is_multiple_of(10) {
                    tracing::info!("not in the cluster yet: {e:#}");
                }
            }
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ok(true): done; Ok(false): try again; the bootstrap falls through to joining once
/// some member reports an already formed cluster.
async fn try_bootstrap(node: &SharedNode) -> anyhow::Result<bool> {
    let mut members = BTreeMap::new();
    let mut formed_elsewhere = false;
    for addr in &node.cfg.bootstrap {
        if addr == &node.cfg.rpc_advertise {
            members.insert(
                node.cfg.id,
                BcmNode {
                    api_addr: node.cfg.api_advertise.clone(),
                    rpc_addr: node.cfg.rpc_advertise.clone(),
                },
            );
            continue;
        }
        let hello: Hello = node
            .peers
            .call(addr, rpc::PATH_HELLO, &(), Duration::from_secs(2))
            .await
            .map_err(|e| anyhow::anyhow!("waiting for bootstrap member {addr}: {e}"))?;
        if hello.info.rpc_addr != *addr {
            anyhow::bail!(
                "bootstrap member {addr} advertises itself as {}: fix cluster.bootstrap or its node.rpc_advertise",
                hello.info.rpc_addr
            );
        }
        if let Some(prev) = members.insert(
            hello.info.id,
            BcmNode {
                api_addr: hello.info.api_addr.clone(),
                rpc_addr: hello.info.rpc_addr.clone(),
            },
        ) {
            anyhow::bail!(
                "node id {} is used by both {} and {}: ids must be unique",
                hello.info.id,
                prev.rpc_addr,
                addr
            );
        }
        // A peer counts as formed once a leader committed the cluster's identity;
        // a peer that merely called initialize (same membership) is still forming.
        formed_elsewhere |= hello.cluster_id.is_some();
    }
    if formed_elsewhere {
        // The cluster exists and this node has no data: it joins like any new node.
        tracing::info!("the cluster is already formed; joining it");
        return try_join(node, true).await;
    }
    node.open_raft();
    match node.raft.initialize(members.clone()).await {
        Ok(()) => tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "cluster formed"),
        Err(openraft::error::RaftError::APIError(
            openraft::error::InitializeError::NotAllowed(_),
        )) => {
            tracing::info!("cluster already initialized by a peer")
        }
        Err(e) => anyhow::bail!("cannot initialize the cluster: {e}"),
    }
    // Registration follows once a leader is known.
    Ok(false)
}

/// Registers this node with the leader. Returns Ok(true) once the leader has it.
async fn try_join(node: &SharedNode, fresh: bool) -> anyhow::Result<bool> {
    let leader_rpc = match node.leader() {
        Some((_, n)) => n.rpc_addr,
        None => find_leader_via(node, &node.cfg.join).await?,
    };
    let req = JoinRequest {
        info: node.info(),
        fresh: fresh && !node.raft_open(),
    };
    let reply: LeaderReply<JoinReply> = node
        .peers
        .call(&leader_rpc, rpc::PATH_JOIN, &req, Duration::from_secs(10))
        .await?;
    match reply {
        LeaderReply::Ok(JoinReply::Proceed) => {
            node.open_raft();
            tracing::info!(leader = %leader_rpc, "registered with the cluster manager");
            Ok(true)
        }
        LeaderReply::NotLeader { .. } | LeaderReply::Unavailable(_) => Ok(false),
        LeaderReply::Refused(why) => anyhow::bail!("the cluster manager refused this node: {why}"),
    }
}

/// Asks each address for the leader's rpc address.
async fn find_leader_via(node: &Node, addrs: &[String]) -> anyhow::Result<String> {
    for addr in addrs {
        if addr == &node.cfg.rpc_advertise {
            continue;
        }
        if let Ok(hello) = node
            .peers
            .call::<_, Hello>(addr, rpc::PATH_HELLO, &(), Duration::from_secs(2))
            .await
        {
            if let Some(l) = hello.leader_rpc {
                return Ok(l);
            }
        }
    }
    anyhow::bail!("no leader known by any of {addrs:?}")
}
