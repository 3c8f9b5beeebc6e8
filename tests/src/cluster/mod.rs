//! A test cluster: real `bcm node` processes on loopback, their files in one temp dir.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::{free_port, tail, wait_for, wait_until, Api};

mod builder;
mod config;
pub mod disk;
mod leader;
mod process;

pub use builder::{ClusterBuilder, StartOrder};

struct Node {
    id: u64,
    roles: Vec<String>,
    api_port: u16,
    rpc_port: u16,
    /// The address its internal listener binds and its calls to peers leave
    /// from: 127.0.0.1, or one of its own (see `ClusterBuilder::own_addresses`).
    rpc_host: String,
    config_path: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Mutex<Option<Child>>,
    paused: AtomicBool,
    starts: AtomicU64,
    /// HTTPS for the API and mutual TLS inside (see `ClusterBuilder::tls`).
    tls: bool,
}

impl Node {
    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
    fn api_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.api_port)
    }
    fn rpc_url(&self) -> String {
        format!("{}://{}:{}", self.scheme(), self.rpc_host, self.rpc_port)
    }
}

/// A set of real `bcm node` processes on loopback, with their configs, data and logs in
/// one temp dir. Dereferences to [`Api`] for talking to them.
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    bin: PathBuf,
    nodes: BTreeMap<u64, Node>,
    bootstrap: Vec<String>,
    snapshot_every: Option<u64>,
    keep_logs: Option<u64>,
    grace_ms: Option<u64>,
    postgres: Option<(String, u64)>,
    /// Per node, lines added to its config (a `[storage]` section, say).
    extra_toml: BTreeMap<u64, String>,
    /// Per node, lines added to its `[api]` section.
    api_toml: BTreeMap<u64, String>,
    /// Each node's internal traffic on an address of its own.
    own_addresses: bool,
    /// Keep the directory when dropped, whatever happened.
    keep: AtomicBool,
    /// Each node's data dir on a file system of its own (a tmpfs or an ext4
    /// image), with its `node.disk_reserve_mb`.
    disk: Option<disk::DataDisk>,
    /// With TLS: the API's certificate and key files (made by `tls::TestCa`).
    api_tls: Option<crate::tls::ApiFiles>,
    api: Api,
}

impl std::ops::Deref for Cluster {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// Node `id`'s own loopback address: 127.0.0.(10 + id).
pub fn own_address(id: u64) -> String {
    assert!(id < 240, "node ids stay below 240 with own addresses");
    format!("127.0.0.{}", 10 + id)
}

impl Cluster {
    /// Options: number of voters, joiners, snapshot interval, start order, ...
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::new()
    }

    /// `n` bootstrap voters with every role, started together; returns once all are ready.
    pub fn start(n: usize) -> Cluster {
        Cluster::builder().voters(n).start()
    }

    /// A clone of the API handle, for other threads.
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// The directory holding configs, data dirs and logs.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The log file of `node`.
    pub fn log_path(&self, node: u64) -> PathBuf {
        self.node(node).log_path.clone()
    }

    /// The data dir of `node`.
    pub fn data_dir(&self, node: u64) -> PathBuf {
        self.node(node).data_dir.clone()
    }

    /// Keeps the cluster's directory (logs, data) when it is dropped, as a
    /// failing test does.
    pub fn keep(&self) {
        self.keep.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The address node `id`'s internal listener binds and its calls to its
    /// peers leave from.
    pub fn rpc_host(&self, id: u64) -> String {
        self.node(id).rpc_host.clone()
    }

    /// The API's certificate files, in a TLS cluster.
    pub fn api_tls(&self) -> Option<&crate::tls::ApiFiles> {
        self.api_tls.as_ref()
    }

    /// The path of a node's configuration file.
    pub fn config_path(&self, id: u64) -> PathBuf {
        self.node(id).config_path.clone()
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster"))
    }

    fn define_node(&mut self, id: u64, roles: Vec<String>) {
        let node = Node {
            id,
            roles,
            api_port: free_port(),
            rpc_port: free_port(),
            rpc_host: if self.own_addresses {
                own_address(id)
            } else {
                "127.0.0.1".into()
            },
            config_path: self.path.join(format!("node{id}.toml")),
            data_dir: self.path.join(format!("node{id}")),
            log_path: self.path.join(format!("node{id}.log")),
            child: Mutex::new(None),
            paused: AtomicBool::new(false),
            starts: AtomicU64::new(0),
            tls: self.api_tls.is_some(),
        };
        self.api.add_node(id, node.api_url(), node.rpc_url());
        self.nodes.insert(id, node);
    }

    /// Starts a new node that is not in `bootstrap` and only registers through `join`
    /// (the bootstrap members). Returns its id. Does not wait.
    pub fn start_extra(&mut self, roles: &[&str]) -> u64 {
        self.start_extra_with(roles, "")
    }

    /// [`Cluster::start_extra`] with `toml` added to the node's config (a
    /// `[storage]` section for an object store, say).
    pub fn start_extra_with(&mut self, roles: &[&str], toml: &str) -> u64 {
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        self.extra_toml.insert(id, toml.to_string());
        self.define_node(id, roles.iter().map(|r| r.to_string()).collect());
        self.write_config(id);
        self.log(format!("node {id} joins with roles {roles:?}"));
        self.spawn(id);
        id
    }

    /// Replaces the lines added to node `id`'s config (see
    /// [`Cluster::start_extra_with`]); they take effect at its next start.
    pub fn set_extra_toml(&mut self, id: u64, toml: &str) {
        self.extra_toml.insert(id, toml.to_string());
        self.write_config(id);
    }

    /// Replaces the lines added to node `id`'s `[api]` section (after the
    /// harness's own TLS lines); they take effect at its next start.
    pub fn set_api_toml(&mut self, id: u64, toml: &str) {
        self.api_toml.insert(id, toml.to_string());
        self.write_config(id);
    }

    /// Waits until `/readyz` on `id` answers 200.
    pub fn wait_ready(&self, id: u64, timeout: Duration) {
        wait_for(
            timeout,
            &format!("node {id} to be ready (/readyz 200)"),
            || {
                self.check_processes();
                self.readyz(id)
            },
            |r| r.status == 200,
        );
    }

    /// Waits until `node`'s log (of all its runs) contains `text`.
    pub fn wait_for_log(&self, node: u64, text: &str, timeout: Duration) {
        let path = self.log_path(node);
        wait_until(timeout, &format!("node {node} to log {text:?}"), || {
            if std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains(text)
            {
                Ok(())
            } else {
                Err(self.log_tail(node, 5))
            }
        });
    }

    /// The last `n` lines of `node`'s log.
    pub fn log_tail(&self, node: u64, n: usize) -> String {
        tail(&self.node(node).log_path, n)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        self.unmount_all();
        let keep = thread::panicking()
            || self.keep.load(std::sync::atomic::Ordering::Relaxed)
            || std::env::var_os("BCM_KEEP_LOGS").is_some();
        if !keep {
            return;
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            let mut report = format!("\n===== bcm e2e: logs kept in {} =====\n", path.display());
            for node in self.nodes.values() {
                let _ = writeln!(
                    report,
                    "----- {} (last 40 lines) -----\n{}",
                    node.log_path.display(),
                    tail(&node.log_path, 40)
                );
            }
            eprintln!("{report}");
        }
    }
}
