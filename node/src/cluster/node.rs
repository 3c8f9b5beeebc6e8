//! One running node: the Raft instance, its storage handle, the peer client, and the
//! background tasks that form, join and watch the cluster.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_raft_store::store::LogStore;
use bcm_raft_store::{BcmNode, NodeId, NodeInfo, Raft, RaftMetrics, StateHandle};
use openraft::ServerState;
use tokio::sync::{broadcast, watch};

use crate::cluster::events::ClusterEvent;
use crate::cluster::rpc::{Hello, LeaderReply, Peers};
use crate::config::NodeConfig;

/// Everything a handler or task needs to know about this node.
pub struct Node {
    pub cfg: NodeConfig,
    pub raft: Raft,
    pub state: StateHandle,
    pub peers: Peers,
    /// The Raft network's peers (their own pool): also for pre-votes.
    pub raft_peers: Peers,
    /// Leader changes seen by this node (for `/metrics`).
    pub(super) leader_changes: std::sync::atomic::AtomicU64,
    pub events: broadcast::Sender<ClusterEvent>,
    /// Closed while a node with a wiped disk waits to be removed from the membership:
    /// it must not answer Raft RPCs as its old self (openraft 0.9 #898); and while
    /// a node with Raft data asks whether the cluster went on without it (fence.rs).
    /// While closed it sends none either (`Peers::raft_gated_by`).
    pub(super) raft_open: Arc<AtomicBool>,
    /// Set while that question is out.
    pub(super) asking_members: AtomicBool,
    /// A read handle on the log, for the pre-vote check.
    pub(super) log: LogStore,
    /// Last sign of a live leader (see `election_timer`).
    pub(super) leader_contact: Mutex<Instant>,
    /// Set once a leader's AppendEntries (or snapshot) was taken since this process
    /// started: only then does this node know the commit index (the one it saved
    /// before a crash may be behind what it had applied).
    pub(super) synced_with_leader: AtomicBool,
    /// The highest commit index a leader's AppendEntries (or snapshot) taken since
    /// start has carried. A restarted follower's own commit index only reaches it
    /// entry batch by entry batch: readiness waits for the leader's.
    pub(super) leader_commit: AtomicU64,
    /// Why the cluster manager refused this node, when it did.
    pub(super) refused: Mutex<Option<String>>,
    /// When this node last became leader (None when it is not the leader).
    pub(super) leader_since: Mutex<Option<Instant>>,
    /// Nodes the leader is currently adding, so a join is handled once at a time.
    pub(crate) joining: Mutex<BTreeMap<NodeId, Instant>>,
    pub shutdown: watch::Receiver<bool>,
    /// Batches the writes this node forwards to the leader (see forward.rs).
    pub forwarder: crate::cluster::forward::Forwarder,
    /// Batches the writes this node proposes while it leads (see propose.rs).
    pub proposer: crate::cluster::propose::Proposer,
    /// Linearizable reads on this node share ReadIndex requests (service.rs).
    pub read_rounds:
        crate::cluster::rounds::Rounds<Result<u64, crate::cluster::error::ClusterError>>,
    /// While leading: ReadIndex requests share leadership confirmations.
    pub leader_read_rounds:
        crate::cluster::rounds::Rounds<LeaderReply<crate::cluster::rpc::OpResult>>,
    /// Set while this leader steps aside for another voter (membership.rs
    /// `hand_over`): it then serves nothing as leader.
    pub handing_over: AtomicBool,
    /// When stepping aside last failed (no voter took over): not tried again soon.
    pub hand_over_failed: Mutex<Option<Instant>>,
    /// The data disk's free space (disk.rs).
    pub disk: Arc<crate::cluster::disk::DiskWatch>,
    /// This node's cluster TLS material, when its cluster speaks mutual TLS.
    pub tls: Option<Arc<crate::tls::NodeTls>>,
    /// While leading: the cluster's failed-login limiter (logins.rs).
    pub logins: crate::cluster::logins::LoginLimiter,
    /// Held by the leader's writes of a node's status that depend on what it
    /// read of the registry (the manager's health pass, an admission, a
    /// decommission): a pass that read "joining" must not write "down" over
    /// the "removed" a decommission wrote meanwhile (that un-revoked a removed
    /// node's certificate in a test).
    pub(super) status_writes: tokio::sync::Mutex<()>,
}

pub type SharedNode = Arc<Node>;

/// How long a write or a linearizable read may wait for a leader and a quorum.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long `/readyz` waits for entries this node knows committed to be
/// applied before it says the node is behind.
const APPLY_GRACE: Duration = Duration::from_millis(500);

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

    /// Leader changes seen by this node since it started.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    pub fn raft_metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    pub fn raft_open(&self) -> bool {
        self.raft_open.load(Ordering::SeqCst)
    }

    pub(super) fn open_raft(&self) {
        if !self.raft_open.swap(true, Ordering::SeqCst) {
            tracing::info!("answering Raft RPCs");
        }
    }

    /// Takes this node out of Raft again: it answers and sends no Raft RPC.
    pub(super) fn close_raft(&self) {
        if self.raft_open.swap(false, Ordering::SeqCst) {
            tracing::warn!("no longer answering Raft RPCs");
        }
    }

    /// Set when this node was decommissioned (or refused): it must not serve as if it
    /// were a member, its state no longer follows the cluster.
    pub fn excluded(&self) -> Option<String> {
        if let Some(why) = self.refused.lock().expect("refused lock").clone() {
            return Some(why);
        }
        let removed = self.state.read(|d| d.state.is_removed(self.cfg.id));
        removed.then(|| format!("node {} was decommissioned", self.cfg.id))
    }

    /// Why this node should not lead now, when it should not: it then hands
    /// leadership over and campaigns only when no other voter does.
    pub fn should_not_lead(&self) -> Option<String> {
        if self
            .state
            .read(|d| d.state.maintenance.contains_key(&self.cfg.id))
        {
            return Some("it is in maintenance (drained)".into());
        }
        self.disk
            .is_low()
            .then(|| "its data disk is full".to_string())
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
    pub async fn pre_vote(&self, req: &crate::cluster::rpc::PreVoteRequest) -> bool {
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

    /// Records that a leader's entries or snapshot were taken (see `synced_with_leader`),
    /// and the commit index they carried.
    pub fn synced_with_leader(&self, leader_commit: Option<u64>) {
        if let Some(index) = leader_commit {
            self.leader_commit.fetch_max(index, Ordering::SeqCst);
        }
        self.synced_with_leader.store(true, Ordering::SeqCst);
    }

    /// Whether a leader's entries or snapshot were taken since this process started.
    pub fn has_synced_with_leader(&self) -> bool {
        self.synced_with_leader.load(Ordering::SeqCst)
    }

    pub fn since_leader_contact(&self) -> Duration {
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

    /// How long a leader may go without a majority's acknowledgement before it
    /// counts as cut off: it then refuses writes (`local::write_here`) and is not
    /// ready.
    pub fn cut_off_after_ms(&self) -> u64 {
        self.cfg.raft.election_timeout_max_ms * 2
    }

    /// Whether this leader heard from a majority of voters within
    /// [`Node::cut_off_after_ms`] (a leader cut off from them may not know what
    /// they decided since).
    pub fn acknowledged_by_majority(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .millis_since_quorum_ack
            .is_some_and(|ms| ms <= self.cut_off_after_ms())
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

    /// Is `id` alive as far as this leader can tell? (None: too early to say.)
    pub fn observed_up(&self, id: NodeId) -> Option<bool> {
        let node = self;
        if id == node.cfg.id {
            return Some(true);
        }
        let down_after = Duration::from_millis(node.cfg.manager.member_down_after_ms);
        match node.peers.contacts.last(id) {
            Some(t) if t.elapsed() < down_after => Some(true),
            _ if node.leader_for().unwrap_or_default() < down_after => None,
            _ => Some(false),
        }
    }

    /// Readiness: the node knows a leader and has applied what it knows to be
    /// committed, and at least up to the commit index the leader's last entries
    /// carried.
    pub async fn readiness(&self) -> Result<(), String> {
        let node = self;
        let m = node.raft_metrics();
        if m.running_state.is_err() {
            return Err("raft stopped".into());
        }
        if let Some(why) = node.excluded() {
            return Err(why);
        }
        if !node.raft_open() {
            if node.asking_members.load(Ordering::SeqCst) {
                return Err(
                    "asking the other members whether the cluster still has this node".into(),
                );
            }
            return Err("waiting to be admitted to the cluster".into());
        }
        let is_member = m
            .membership_config
            .membership()
            .nodes()
            .any(|(id, _)| *id == node.cfg.id);
        if !is_member {
            return Err("not a member of the cluster (yet)".into());
        }
        let Some(_leader) = m.current_leader else {
            return Err("no leader known".into());
        };
        if !node.state.read(|d| d.state.is_initialized()) {
            return Err("the cluster is still forming".into());
        }
        if m.state != ServerState::Leader
            && m.state != ServerState::Follower
            && m.state != ServerState::Learner
        {
            return Err(format!("raft state {:?}", m.state));
        }
        if m.state == ServerState::Leader {
            // A leader cut off from the others may not know yet that they went on
            // without it: it leads only once a majority has acknowledged it (and
            // not when none has for a while: see `cut_off_after_ms`).
            match m.millis_since_quorum_ack {
                Some(ms) if ms <= node.cut_off_after_ms() => {}
                Some(ms) => {
                    return Err(format!(
                    "leading, but no majority of voters has acknowledged this leader for {ms} ms"
                ))
                }
                None => {
                    return Err(
                        "leading, but no majority of voters has acknowledged this leader yet"
                            .into(),
                    )
                }
            }
        }
        if m.state != ServerState::Leader && !node.has_synced_with_leader() {
            // The commit index saved before a restart can be behind what this node had
            // applied and served: wait for the leader's, which comes with its entries.
            return Err("waiting for the leader's first entries since start".into());
        }
        let committed = node
            .raft
            .with_raft_state(|s| s.committed.map(|l| l.index))
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(0)
            .max(node.leader_commit.load(Ordering::SeqCst));
        // An entry learnt committed a moment ago is normally applied within
        // milliseconds: a node that is merely between the two is ready, one
        // still behind after a short wait is not.
        let caught_up = tokio::time::timeout(APPLY_GRACE, node.state.wait_applied(committed));
        if caught_up.await.is_err() {
            let applied = node
                .state
                .read(|d| d.last_applied.map(|l| l.index).unwrap_or(0));
            return Err(format!(
                "applied {applied} of {committed} committed entries"
            ));
        }
        Ok(())
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
            cert: self
                .tls
                .as_ref()
                .and_then(|t| t.own_facts())
                .map(|f| bcm_api::NodeCertView {
                    node_id: self.cfg.id,
                    issuer: Some(f.issuer),
                    serial: Some(f.serial),
                    not_before: Some(f.not_before),
                    not_after: Some(f.not_after),
                    error: None,
                }),
        }
    }
}
