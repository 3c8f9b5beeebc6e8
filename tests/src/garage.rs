//! A real Garage cluster (the distributed S3 object store) for the tests:
//! three `garage server` processes on loopback ports, replication factor 3
//! (reads and writes need two of them), one access key and the buckets a test
//! asks for; processes killed, stopped and started again at will.
//!
//! The binary comes from `$BCM_GARAGE_BIN`, else `garage` on the `PATH`, else
//! `~/.cargo/bin/garage` (`scripts/test.sh` installs it with `cargo install`
//! when it is missing).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::command::run_ok;
use crate::{free_port, tail, wait_until};

/// The access key every test uses (Garage 2.x's import format: `GK` and 24
/// hex digits, a 64-hex secret).
pub const GARAGE_KEY_ID: &str = "GK0123456789abcdef01234567";
pub const GARAGE_SECRET: &str = "5ec7e7b0c1a2e3d4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2";
const RPC_SECRET: &str = "7f3c1d2e4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const REGION: &str = "garage";

struct GNode {
    config: PathBuf,
    log: PathBuf,
    s3_port: u16,
    rpc_port: u16,
    child: Option<Child>,
}

/// Three Garage processes forming one cluster, their files under one directory.
pub struct Garage {
    dir: PathBuf,
    bin: PathBuf,
    nodes: Vec<GNode>,
}

pub fn garage_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BCM_GARAGE_BIN") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("garage"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/garage"));
    on_path
        .into_iter()
        .chain(home)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no garage binary: install it (scripts/test.sh does: cargo install --locked \
                 --debug garage --version 2.5.0 --no-default-features --features bundled-libs,lmdb) \
                 or set BCM_GARAGE_BIN"
            )
        })
}

impl Garage {
    /// Starts three Garage nodes under `dir`, lays the cluster out, imports
    /// the test key and creates `buckets` (the key may read and write them);
    /// returns once every node says the cluster is healthy.
    pub fn start(dir: &Path, buckets: &[&str]) -> Garage {
        fs::create_dir_all(dir).expect("garage dir");
        let mut g = Garage {
            dir: dir.to_path_buf(),
            bin: garage_bin(),
            nodes: Vec::new(),
        };
        for i in 1..=3 {
            let node = g.define(i);
            g.nodes.push(node);
        }
        for i in 0..3 {
            g.spawn(i);
        }
        let ids: Vec<String> = (0..3).map(|i| g.node_id(i)).collect();
        for id in &ids[1..] {
            g.cli_retrying(0, &["node", "connect", id]);
        }
        let short: Vec<&str> = ids.iter().map(|id| id.split('@').next().unwrap()).collect();
        let mut assign = vec!["layout", "assign", "-z", "dc1", "-c", "1G"];
        assign.extend(short);
        g.cli(0, &assign);
        g.cli(0, &["layout", "apply", "--version", "1"]);
        g.wait_healthy(&[0, 1, 2]);
        g.cli(
            0,
            &[
                "key",
                "import",
                "--yes",
                "-n",
                "bcm-test",
                GARAGE_KEY_ID,
                GARAGE_SECRET,
            ],
        );
        for b in buckets {
            g.create_bucket(b);
        }
        g
    }

    fn define(&self, i: usize) -> GNode {
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let home = self.dir.join(format!("g{i}"));
        let mut toml = String::new();
        let _ = writeln!(
            toml,
            "metadata_dir = {:?}",
            home.join("meta").display().to_string()
        );
        let _ = writeln!(
            toml,
            "data_dir = {:?}",
            home.join("data").display().to_string()
        );
        let _ = writeln!(toml, "db_engine = \"lmdb\"");
        let _ = writeln!(toml, "replication_factor = 3");
        let _ = writeln!(toml, "consistency_mode = \"consistent\"");
        let _ = writeln!(toml, "compression_level = \"none\"");
        let _ = writeln!(toml, "rpc_bind_addr = \"127.0.0.1:{rpc_port}\"");
        let _ = writeln!(toml, "rpc_public_addr = \"127.0.0.1:{rpc_port}\"");
        let _ = writeln!(toml, "rpc_secret = \"{RPC_SECRET}\"");
        let _ = writeln!(toml, "\n[s3_api]\ns3_region = \"{REGION}\"");
        let _ = writeln!(toml, "api_bind_addr = \"127.0.0.1:{s3_port}\"");
        let _ = writeln!(
            toml,
            "\n[admin]\napi_bind_addr = \"127.0.0.1:{admin_port}\""
        );
        let _ = writeln!(toml, "admin_token = \"bcm-test-admin\"");
        let config = self.dir.join(format!("g{i}.toml"));
        fs::write(&config, toml).expect("garage config");
        GNode {
            config,
            log: self.dir.join(format!("g{i}.log")),
            s3_port,
            rpc_port,
            child: None,
        }
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("garage log");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn,netapp=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("garage log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        node.child = Some(child);
    }

    fn command(&self, i: usize, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&self.nodes[i].config).args(args);
        cmd
    }

    /// Runs a `garage` command against node `i`; its standard output.
    fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = run_ok(
            &mut self.command(i, args),
            &format!("garage {}", args.join(" ")),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Garage::cli`], tried again for a while (a node just started may not
    /// listen yet).
    fn cli_retrying(&self, i: usize, args: &[&str]) -> String {
        wait_until(
            Duration::from_secs(30),
            &format!("garage {} to succeed", args.join(" ")),
            || {
                let out = self.command(i, args).output().map_err(|e| e.to_string())?;
                if out.status.success() {
                    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            },
        )
    }

    /// Node `i`'s full id, `<hex>@127.0.0.1:<rpc port>`.
    fn node_id(&self, i: usize) -> String {
        self.cli_retrying(i, &["node", "id", "-q"])
            .trim()
            .to_string()
    }

    /// Waits until each of `nodes` says the cluster is healthy.
    fn wait_healthy(&self, nodes: &[usize]) {
        for &i in nodes {
            wait_until(
                Duration::from_secs(60),
                &format!("garage node {} to see a healthy cluster", i + 1),
                || {
                    let out = self
                        .command(i, &["json-api", "GetClusterHealth"])
                        .output()
                        .map_err(|e| e.to_string())?;
                    let v: Value = serde_json::from_slice(&out.stdout)
                        .map_err(|_| String::from_utf8_lossy(&out.stderr).into_owned())?;
                    (v["status"] == "healthy")
                        .then_some(())
                        .ok_or(v.to_string())
                },
            );
        }
    }

    pub fn create_bucket(&self, name: &str) {
        self.cli(0, &["bucket", "create", name]);
        self.cli(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", name, "--key", "bcm-test",
            ],
        );
    }

    /// An S3 client of `bucket` (under `prefix`) through node `i`, to look at or
    /// damage what a storage node keeps there.
    pub fn client(&self, i: usize, bucket: &str, prefix: &str) -> bcm_s3::S3Backend {
        bcm_s3::S3Backend::new(bcm_s3::Settings {
            endpoint: self.endpoint(i),
            bucket: bucket.into(),
            region: REGION.into(),
            prefix: prefix.into(),
            access_key_id: GARAGE_KEY_ID.into(),
            secret_access_key: GARAGE_SECRET.into(),
            path_style: true,
            owner: 0,
        })
        .expect("an S3 client")
    }

    /// Node `i`'s S3 endpoint (0-based).
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// The `[storage]` section of a bcm storage node keeping its chunks in
    /// `bucket` through Garage node `i`, with `extra` lines (`prefix = ...`).
    pub fn storage_toml(&self, i: usize, bucket: &str, extra: &str) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\nendpoint = \"{}\"\nbucket = \"{bucket}\"\n\
             region = \"{REGION}\"\naccess_key_id = \"{GARAGE_KEY_ID}\"\n\
             secret_access_key = \"{GARAGE_SECRET}\"\n{extra}",
            self.endpoint(i)
        )
    }

    /// `kill -9` of Garage node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again and has it rejoin at once (peers retry only every
    /// 30 s by themselves); returns once the live nodes see a healthy cluster.
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "garage node {i} still runs");
        self.spawn(i);
        let id = self.node_id(i);
        let live: Vec<usize> = (0..3).filter(|j| self.nodes[*j].child.is_some()).collect();
        for &j in live.iter().filter(|j| **j != i) {
            self.cli_retrying(j, &["node", "connect", &id]);
        }
        self.wait_healthy(&live);
    }

    /// Kills every node (the whole store down).
    pub fn stop_all(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }

    /// Starts every stopped node again and waits until the cluster is healthy.
    pub fn start_all(&mut self) {
        for i in 0..3 {
            if self.nodes[i].child.is_none() {
                self.spawn(i);
            }
        }
        let ids: Vec<String> = (0..3).map(|i| self.node_id(i)).collect();
        for id in &ids[1..] {
            self.cli_retrying(0, &["node", "connect", id]);
        }
        self.wait_healthy(&[0, 1, 2]);
    }

    /// The last lines of each node's log (for a failing test's message).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let _ = writeln!(out, "--- garage node {} (rpc {}) ---", i + 1, n.rpc_port);
            out.push_str(&tail(&n.log, 20));
        }
        out
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop_all();
    }
}
