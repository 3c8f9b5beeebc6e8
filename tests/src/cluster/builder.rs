//! Options of a test cluster and starting it: configs written, processes spawned in order.

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use rand::seq::SliceRandom;

use super::disk::{DataDisk, DiskKind};
use super::Cluster;
use crate::logs::Events;
use crate::{bcm_bin, wait_until, Api, ALL_ROLES};

/// In which order the bootstrap nodes are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOrder {
    /// 1, 2, 3, ...
    Ascending,
    /// ..., 3, 2, 1
    Reverse,
    /// A random permutation (printed in the harness log).
    Shuffled,
}

/// Options of a test cluster; see [`Cluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    voters: usize,
    joiners: Vec<Vec<String>>,
    snapshot_every: Option<u64>,
    keep_logs_behind_snapshot: Option<u64>,
    backup_manager_grace_ms: Option<u64>,
    order: StartOrder,
    delay: Duration,
    name: String,
    postgres: Option<(String, u64)>,
    voter_roles: Vec<String>,
    own_addresses: bool,
    disk: Option<DataDisk>,
    tls: bool,
    node_toml: String,
}

impl ClusterBuilder {
    /// The defaults: three voters with every role, started together in ascending order.
    pub(super) fn new() -> Self {
        ClusterBuilder {
            voters: 3,
            joiners: Vec::new(),
            snapshot_every: None,
            keep_logs_behind_snapshot: None,
            backup_manager_grace_ms: None,
            order: StartOrder::Ascending,
            delay: Duration::ZERO,
            name: "cluster".to_string(),
            postgres: None,
            voter_roles: ALL_ROLES.iter().map(|r| r.to_string()).collect(),
            own_addresses: false,
            disk: None,
            tls: false,
            node_toml: String::new(),
        }
    }

    /// Mutual TLS inside (https:// rpc addresses, the cluster's own CA) and
    /// HTTPS for the API (a certificate of a test CA the harness trusts).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Each bootstrap node's data dir on a tmpfs of its own of `size_mb` MiB,
    /// with `node.disk_reserve_mb = reserve_mb`: a disk a test can fill (root only,
    /// see `disk::can_mount`).
    pub fn data_on_tmpfs(mut self, size_mb: u64, reserve_mb: u64) -> Self {
        self.disk = Some(DataDisk {
            kind: DiskKind::Tmpfs,
            size_mb,
            reserve_mb,
        });
        self
    }

    /// Each bootstrap node's data dir on an ext4 file system of its own (a
    /// loop-mounted image of `size_mb` MiB), with `node.disk_reserve_mb =
    /// reserve_mb`: a disk a test can freeze (root only, see `disk::can_freeze`).
    pub fn data_on_ext4(mut self, size_mb: u64, reserve_mb: u64) -> Self {
        self.disk = Some(DataDisk {
            kind: DiskKind::Ext4,
            size_mb,
            reserve_mb,
        });
        self
    }

    /// Each node's internal listener on an address of its own, 127.0.0.(10+id),
    /// its calls to peers leaving from it: traffic between two nodes can then
    /// be cut (see `chaos::Firewall`). The public API stays on 127.0.0.1.
    pub fn own_addresses(mut self) -> Self {
        self.own_addresses = true;
        self
    }

    /// `toml` added to every bootstrap node's config (an `[api]` section, say).
    pub fn node_toml(mut self, toml: &str) -> Self {
        self.node_toml = toml.to_string();
        self
    }

    /// The bootstrap voters' roles (default: all). Without `backup-manager`
    /// nobody runs jobs: backups and restores stay pending.
    pub fn voter_roles(mut self, roles: &[&str]) -> Self {
        self.voter_roles = roles.iter().map(|r| r.to_string()).collect();
        self
    }

    /// `[postgres] url` and `export_interval_secs`: the snapshot export.
    pub fn postgres(mut self, url: &str, export_interval_secs: u64) -> Self {
        self.postgres = Some((url.to_string(), export_interval_secs));
        self
    }

    /// Number of bootstrap voters (default 3).
    pub fn voters(mut self, n: usize) -> Self {
        self.voters = n;
        self
    }

    /// One more node, not in `bootstrap`, that only joins through `join`, with `roles`.
    /// It is started after the bootstrap nodes.
    pub fn joiner(mut self, roles: &[&str]) -> Self {
        self.joiners
            .push(roles.iter().map(|r| r.to_string()).collect());
        self
    }

    /// `[raft] snapshot_every`.
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = Some(n);
        self
    }

    /// `[raft] keep_logs_behind_snapshot`: how many log entries a snapshot leaves
    /// behind when it purges the log (the node's default is 1000).
    pub fn keep_logs_behind_snapshot(mut self, n: u64) -> Self {
        self.keep_logs_behind_snapshot = Some(n);
        self
    }

    /// `[manager] backup_manager_grace_ms`.
    pub fn backup_manager_grace_ms(mut self, ms: u64) -> Self {
        self.backup_manager_grace_ms = Some(ms);
        self
    }

    /// Order in which bootstrap nodes are started, and the pause between two starts.
    pub fn start_order(mut self, order: StartOrder, delay: Duration) -> Self {
        self.order = order;
        self.delay = delay;
        self
    }

    /// A label used in the temp dir name and the harness log.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Writes the configs, starts the processes and waits until every started node
    /// answers `/readyz` 200 (it knows the leader and has caught up).
    pub fn start(self) -> Cluster {
        let c = self.start_no_wait();
        for id in c.running_nodes() {
            c.wait_ready(id, Duration::from_secs(45));
        }
        let leader = c.wait_for_leader();
        // The admin user is created by a write once the cluster has formed; `/readyz`
        // can say 200 a moment before that write is applied.
        wait_until(Duration::from_secs(30), "admin login to work", || {
            c.check_processes();
            c.token(leader)
        });
        c.log(format!("cluster ready; leader is node {leader}"));
        c
    }

    /// Writes the configs and starts the processes; does not wait for anything.
    pub fn start_no_wait(self) -> Cluster {
        let bin = bcm_bin();
        let dir = tempfile::Builder::new()
            .prefix(&format!("bcm-e2e-{}-", self.name))
            .tempdir()
            .expect("create a temp dir");
        let path = dir.path().to_path_buf();
        let api_tls = self
            .tls
            .then(|| crate::tls::ApiFiles::make(&path.join("api-tls")));
        let api = Api::new(
            Events::new(&path.join("harness.log")),
            api_tls.as_ref().map(|t| t.ca_pem.clone()),
        );
        let mut cluster = Cluster {
            dir: Some(dir),
            path,
            bin,
            nodes: BTreeMap::new(),
            extra_toml: BTreeMap::new(),
            api_toml: BTreeMap::new(),
            own_addresses: self.own_addresses,
            keep: Default::default(),
            disk: self.disk,
            api_tls,
            bootstrap: Vec::new(),
            snapshot_every: self.snapshot_every,
            keep_logs: self.keep_logs_behind_snapshot,
            grace_ms: self.backup_manager_grace_ms,
            postgres: self.postgres.clone(),
            api,
        };
        cluster.log(format!(
            "cluster {:?} in {} using {}",
            self.name,
            cluster.path.display(),
            cluster.bin.display()
        ));

        for id in 1..=self.voters as u64 {
            cluster.define_node(id, self.voter_roles.clone());
        }
        cluster.bootstrap = (1..=self.voters as u64)
            .map(|id| cluster.nodes[&id].rpc_url())
            .collect();
        for id in 1..=self.voters as u64 {
            if !self.node_toml.is_empty() {
                cluster.extra_toml.insert(id, self.node_toml.clone());
            }
            cluster.write_config(id);
            if let Some(disk) = self.disk {
                disk.mount(&cluster.data_dir(id));
            }
        }

        let mut order: Vec<u64> = (1..=self.voters as u64).collect();
        match self.order {
            StartOrder::Ascending => {}
            StartOrder::Reverse => order.reverse(),
            StartOrder::Shuffled => order.shuffle(&mut rand::thread_rng()),
        }
        cluster.log(format!("starting bootstrap nodes in order {order:?}"));
        for (i, id) in order.iter().enumerate() {
            if i > 0 && !self.delay.is_zero() {
                // Deliberate spacing between starts (the point of the option), not a wait
                // for a condition.
                thread::sleep(self.delay);
            }
            cluster.spawn(*id);
        }
        for roles in self.joiners {
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            cluster.start_extra(&roles);
        }
        cluster
    }
}
