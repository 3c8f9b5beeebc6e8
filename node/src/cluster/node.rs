//! One running node: the Raft instance, its storage handle, the peer client, and the
//! background tasks that form, join and watch the cluster.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_raft_store::store::{self, LogStore};
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
    /// The Raft network's peers (their own pool): also for pre-votes.
    pub raft_peers: Peers,
    pub metrics: Metrics,
    pub events: broadcast::Sender<ClusterEvent>,
    /// Event streams open per user (api/events.rs, ui/live.rs).
    pub streams: Arc<crate::events::StreamCounts>,
    /// Closed while a node with a wiped disk waits to be removed from the membership:
    /// it must not answer Raft RPCs as its old self (openraft 0.9 #898).
    raft_open: AtomicBool,
    /// A read handle on the log, for the pre-vote check.
    log: LogStore,
    /// Last sign of a live leader (see `election_timer`).
    leader_contact: Mutex<Instant>,
    /// Set once a leader's AppendEntries (or snapshot) was taken since this process
    /// started: only then does this node know the commit index (the one it saved
    /// before a crash may be behind what it had applied).
    synced_with_leader: AtomicBool,
    /// Failed logins on this node (per user name and client address).
    pub login_limiter: crate::api::LoginLimiter,
    /// Bearer tokens this node has verified (see auth.rs).
    pub tokens: crate::auth::TokenCache,
    /// Why the cluster manager refused this node, when it did.
    refused: Mutex<Option<String>>,
    /// When this node last became leader (None when it is not the leader).
    leader_since: Mutex<Option<Instant>>,
    /// Nodes the leader is currently adding, so a join is handled once at a time.
    pub(crate) joining: Mutex<BTreeMap<NodeId, Instant>>,
    /// The Postgres snapshot export's status (see export.rs).
    pub export: crate::export::ExportState,
    pub shutdown: watch::Receiver<bool>,
    /// Batches the writes this node forwards to the leader (see forward.rs).
    pub forwarder: crate::forward::Forwarder,
    /// Batches the writes this node proposes while it leads (see propose.rs).
    pub proposer: crate::propose::Proposer,
    /// Linearizable reads on this node share ReadIndex requests (service.rs).
    pub read_rounds: crate::rounds::Rounds<Result<u64, crate::service::ServiceError>>,
    /// While leading: ReadIndex requests share leadership confirmations.
    pub leader_read_rounds: crate::rounds::Rounds<LeaderReply<crate::rpc::OpResult>>,
    /// Set while this leader steps aside for another voter (membership.rs
    /// `hand_over`): it then serves nothing as leader.
    pub handing_over: AtomicBool,
    /// When stepping aside last failed (no voter took over): not tried again soon.
    pub hand_over_failed: Mutex<Option<Instant>>,
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

    /// Set when this node was decommissioned (or refused): it must not serve as if it
    /// were a member, its state no longer follows the cluster.
    pub fn excluded(&self) -> Option<String> {
        if let Some(why) = self.refused.lock().expect("refused lock").clone() {
            return Some(why);
        }
        let removed = self.state.read(|d| {
            d.state
                .nodes
                .get(&self.cfg.id)
                .is_some_and(|n| n.status == bcm_raft_store::NodeStatus::Removed)
        });
        removed.then(|| format!("node {} was decommissioned", self.cfg.id))
    }

    /// (term, index) of the last entry in this node's log.
    pub async fn last_log(&self) -> Option<(u64, u64)> {
        use openraft::storage::RaftLogStorage;
        let mut log = self.log.clone();
        let state = log.get_log_state().await.ok()?;
        state.last_log_id.map(|l| (l.leader_id.term, l.index))
    }

    /// Answers a pre-vote: grant when this node is not the leader (or is a leader
    /// stepping aside), has not heard from a leader for the leader lease, and the
    /// candidate's log is at least as new.
    pub async fn pre_vote(&self, req: &crate::rpc::PreVoteRequest) -> bool {
        if self.is_leader() && !self.stepping_aside() {
            return false;
        }
        let lease = Duration::from_millis(self.cfg.raft.election_timeout_max_ms);
        if self.since_leader_contact() < lease {
            return false;
        }
        req.last_log >= self.last_log().await
    }

    /// Whether this leader is stepping aside for another voter (membership.rs
    /// `hand_over`): it then serves nothing as leader.
    pub fn stepping_aside(&self) -> bool {
        self.handing_over.load(Ordering::SeqCst)
    }

    /// Records a sign of a live leader (or of an election in progress).
    pub fn heard_from_leader(&self) {
        *self.leader_contact.lock().expect("leader_contact lock") = Instant::now();
    }

    /// Records that a leader's entries or snapshot were taken (see `synced_with_leader`).
    pub fn synced_with_leader(&self) {
        self.synced_with_leader.store(true, Ordering::Relaxed);
    }

    /// Whether a leader's entries or snapshot were taken since this process started.
    pub fn has_synced_with_leader(&self) -> bool {
        self.synced_with_leader.load(Ordering::Relaxed)
    }

    fn since_leader_contact(&self) -> Duration {
        self.leader_contact
            .lock()
            .expect("leader_contact lock")
            .elapsed()
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
    let log = opened.log.clone();
    let state = opened.state_machine.handle();

    let raft_config = openraft::Config {
        cluster_name: "bcm".into(),
        heartbeat_interval: cfg.raft.heartbeat_ms,
        election_timeout_min: cfg.raft.election_timeout_min_ms,
        election_timeout_max: cfg.raft.election_timeout_max_ms,
        install_snapshot_timeout: 5_000,
        // Counts cap entries; bytes are capped by the log reader (limits.rs).
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
        metrics: Metrics::default(),
        events: broadcast::channel(1024).0,
        streams: Arc::default(),
        raft_open: AtomicBool::new(!pristine),
        log,
        leader_contact: Mutex::new(Instant::now()),
        synced_with_leader: AtomicBool::new(false),
        login_limiter: crate::api::LoginLimiter::new(),
        tokens: crate::auth::TokenCache::default(),
        refused: Mutex::new(None),
        leader_since: Mutex::new(None),
        joining: Mutex::new(BTreeMap::new()),
        export: Default::default(),
        shutdown,
        forwarder: crate::forward::Forwarder::start(peers.clone()),
        proposer: crate::propose::Proposer::start(raft.clone()),
        read_rounds: Default::default(),
        leader_read_rounds: Default::default(),
        handing_over: AtomicBool::new(false),
        hand_over_failed: Mutex::new(None),
    });
    tracing::info!(
        node_id = node.cfg.id,
        pristine,
        data_dir = %node.cfg.data_dir.display(),
        "storage opened"
    );
    tokio::spawn(election_timer(node.clone()));
    tokio::spawn(watch_leadership(node.clone()));
    tokio::spawn(forward_state_events(node.clone()));
    tokio::spawn(snapshot_by_writes(node.clone()));
    tokio::spawn(enter_cluster(node.clone(), pristine));
    Ok(node)
}

/// The election timer. openraft 0.9 draws one election timeout per process, so two
/// followers that drew close values split the vote election after election (seen
/// in tests: a dozen failed terms in a row). This timer draws a new timeout in
/// [min, max) before every attempt and starts elections through openraft's trigger.
///
/// A follower campaigns when it has not heard from a leader (an accepted append,
/// a snapshot chunk, or a vote it granted) for the leader lease (max, while the
/// vote it holds is committed: peers refuse to vote before their lease runs out)
/// plus the drawn timeout. A node that just started counts its start as contact,
/// so it first gives an existing leader the chance to reach it.
async fn election_timer(node: SharedNode) {
    use rand::Rng;
    node.raft.runtime_config().elect(false);
    let min = node.cfg.raft.election_timeout_min_ms;
    let max = node.cfg.raft.election_timeout_max_ms;
    let draw = || Duration::from_millis(rand::thread_rng().gen_range(min..max));
    let mut timeout = draw();
    // Attempts are spaced by a fresh random timeout; the leader-contact clock is only
    // reset by real signs of a leader, so peers judge our silence correctly.
    let mut last_attempt: Option<Instant> = None;
    let mut shutdown = node.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = shutdown.changed() => return,
        }
        let m = node.raft_metrics();
        let is_voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == node.cfg.id);
        if m.state == ServerState::Leader || !is_voter || !node.raft_open() {
            continue;
        }
        let lease = if m.vote.is_committed() {
            Duration::from_millis(max)
        } else {
            Duration::ZERO
        };
        if node.since_leader_contact() < lease + timeout {
            continue;
        }
        if last_attempt.is_some_and(|t| t.elapsed() < timeout) {
            continue;
        }
        timeout = draw();
        last_attempt = Some(Instant::now());
        let voters: Vec<(NodeId, String)> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != node.cfg.id)
            .filter_map(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| (id, n.rpc_addr.clone()))
            })
            .collect();
        if !pre_vote_granted(&node, &voters).await {
            tracing::debug!(
                term = m.current_term,
                "pre-vote not granted by a majority; not campaigning"
            );
            continue;
        }
        tracing::info!(
            term = m.current_term,
            "no leader heard from and a majority would vote; starting an election"
        );
        if node.raft.trigger().elect().await.is_err() {
            return;
        }
    }
}

/// Asks the other voters whether they would vote for this node now. Unreachable
/// voters count as "no".
async fn pre_vote_granted(node: &SharedNode, others: &[(NodeId, String)]) -> bool {
    let req = crate::rpc::PreVoteRequest {
        candidate: node.cfg.id,
        last_log: node.last_log().await,
    };
    let timeout = Duration::from_millis(node.cfg.raft.heartbeat_ms.max(100));
    let asks = others.iter().map(|(_, addr)| {
        let req = &req;
        async move {
            node.raft_peers
                .call::<_, bool>(addr, rpc::PATH_PRE_VOTE, req, timeout)
                .await
                .unwrap_or(false)
        }
    });
    let yes = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .filter(|granted| *granted)
        .count();
    let voters = others.len() + 1;
    yes + 1 > voters / 2
}

/// Turns Raft metrics into leader-change events, the `became leader` log line and
/// the leader-since clock.
/// Snapshots after `raft.snapshot_every` applied writes. openraft's own policy counts
/// log entries, and a batched entry carries many writes: counted by entries, a
/// busy node would keep a log many times longer than `snapshot_every` writes
/// (on disk, and replayed at restart).
async fn snapshot_by_writes(node: SharedNode) {
    let every = node.cfg.raft.snapshot_every;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_snapshot = node.raft.metrics().borrow().snapshot;
    let mut baseline = node.state.writes_applied();
    loop {
        tick.tick().await;
        if *node.shutdown.borrow() {
            return;
        }
        let snapshot = node.raft.metrics().borrow().snapshot;
        let writes = node.state.writes_applied();
        if snapshot != last_snapshot {
            // A snapshot was taken (by openraft's policy, an operator or us).
            last_snapshot = snapshot;
            baseline = writes;
            continue;
        }
        if writes.saturating_sub(baseline) >= every {
            baseline = writes;
            if let Err(e) = node.raft.trigger().snapshot().await {
                tracing::warn!("cannot start a snapshot: {e}");
            }
        }
    }
}

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
            *node.refused.lock().expect("refused lock") = None;
            node.open_raft();
            tracing::info!(leader = %leader_rpc, "registered with the cluster manager");
            warn_if_roles_differ(node.clone());
            Ok(true)
        }
        LeaderReply::NotLeader { .. } | LeaderReply::Unavailable(_) => Ok(false),
        LeaderReply::Refused(why) => {
            *node.refused.lock().expect("refused lock") = Some(why.clone());
            anyhow::bail!("the cluster manager refused this node: {why}")
        }
    }
}

/// Once this node is ready and has its own registry record, says so when the roles
/// in its config file are not the registry's: the registry's apply (they seed the
/// record at the first registration only; see membership.rs `handle_join`).
fn warn_if_roles_differ(node: SharedNode) {
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut shutdown = node.shutdown.clone();
        while Instant::now() < deadline {
            // Ready: it has applied what the leader had committed, its own record
            // as it is now included (before, a restarted node may replay older roles).
            let registered = match crate::service::is_ready(&node).await {
                Ok(()) => node
                    .state
                    .read(|d| d.state.nodes.get(&node.cfg.id).map(|r| r.roles.clone())),
                Err(_) => None,
            };
            if let Some(roles) = registered {
                if roles != node.cfg.roles {
                    let names = |rs: &[bcm_raft_store::Role]| {
                        rs.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
                    };
                    let flags: String = node
                        .cfg
                        .roles
                        .iter()
                        .map(|r| format!(" --role {}", r.as_str()))
                        .collect();
                    tracing::warn!(
                        "node.roles in the config file ({}) are not the cluster registry's ({}), which apply: the config file's only seed them when a node first registers; to apply the config file's, run `bcm nodes update {}{flags}`",
                        names(&node.cfg.roles),
                        names(&roles),
                        node.cfg.id,
                    );
                }
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
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
