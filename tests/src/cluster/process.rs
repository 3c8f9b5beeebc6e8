//! Node processes: spawning, killing, pausing, resuming, restarting and wiping them.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Cluster;
use crate::tail;

impl Cluster {
    pub(super) fn spawn(&self, id: u64) {
        self.spawn_with(id, &[]);
    }

    fn spawn_with(&self, id: u64, extra_args: &[&str]) {
        let node = self.node(id);
        let mut slot = node.child.lock().unwrap();
        assert!(slot.is_none(), "node {id} is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("open node log");
        let start_no = node.starts.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut l = &log;
            let _ = writeln!(
                l,
                "===== harness: start #{start_no} of node {id} at {} =====",
                unix_time()
            );
        }
        let mut cmd = Command::new(&self.bin);
        cmd.arg("node")
            .arg("--config")
            .arg(&node.config_path)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .env("NO_COLOR", "1");
        // Config overrides from the developer's environment would change what we test.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BCM_") {
                cmd.env_remove(k);
            }
        }
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the node
        // if the thread that spawned it (the test) dies without running our Drop.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} for node {id}: {e}", self.bin.display()));
        self.log(format!(
            "started node {id} (pid {}, start #{start_no}, api {}, rpc {})",
            child.id(),
            node.api_url(),
            node.rpc_url()
        ));
        *slot = Some(child);
        node.paused.store(false, Ordering::SeqCst);
        self.api.set_live(id, true);
    }

    /// The process id of `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).child.lock().unwrap().as_ref().map(|c| c.id())
    }

    /// Is the process of `id` running (possibly paused)?
    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).child.lock().unwrap().is_some()
    }

    /// Nodes with a running process (paused ones included).
    pub fn running_nodes(&self) -> Vec<u64> {
        self.nodes
            .keys()
            .copied()
            .filter(|id| self.is_running(*id))
            .collect()
    }

    /// Panics (with the log tail) if a node that should be running has exited.
    pub fn check_processes(&self) {
        for node in self.nodes.values() {
            let mut slot = node.child.lock().unwrap();
            if let Some(child) = slot.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    *slot = None;
                    self.api.set_live(node.id, false);
                    panic!(
                        "node {} exited unexpectedly ({status}); last log lines:\n{}",
                        node.id,
                        tail(&node.log_path, 30)
                    );
                }
            }
        }
    }

    /// `kill -9` the node and reap it.
    pub fn kill(&self, id: u64) {
        let node = self.node(id);
        let mut slot = node.child.lock().unwrap();
        let mut child = slot
            .take()
            .unwrap_or_else(|| panic!("kill: node {id} is not running"));
        signal(&child, libc::SIGKILL);
        let status = child.wait().expect("wait for killed node");
        node.paused.store(false, Ordering::SeqCst);
        self.api.set_live(id, false);
        self.log(format!("killed node {id} with SIGKILL ({status})"));
    }

    /// Stops the node as an operator does (SIGTERM) and waits until it has exited
    /// (up to 20 s, then it panics with the log's tail).
    pub fn stop(&self, id: u64) {
        let node = self.node(id);
        let mut slot = node.child.lock().unwrap();
        let mut child = slot
            .take()
            .unwrap_or_else(|| panic!("stop: node {id} is not running"));
        signal(&child, libc::SIGTERM);
        self.api.set_live(id, false);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the stopping node") {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                signal(&child, libc::SIGKILL);
                let _ = child.wait();
                panic!(
                    "node {id} did not exit within 20 s of SIGTERM; last log lines:\n{}",
                    tail(&node.log_path, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        node.paused.store(false, Ordering::SeqCst);
        self.log(format!("stopped node {id} with SIGTERM ({status})"));
    }

    /// Freezes the node with SIGSTOP: it keeps its sockets but answers nothing.
    pub fn pause(&self, id: u64) {
        self.set_paused(id, true);
    }

    /// Lets a paused node run again (SIGCONT).
    pub fn resume(&self, id: u64) {
        self.set_paused(id, false);
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the running node `id`.
    fn set_paused(&self, id: u64, paused: bool) {
        let (action, done, sig, sig_name) = if paused {
            ("pause", "paused", libc::SIGSTOP, "SIGSTOP")
        } else {
            ("resume", "resumed", libc::SIGCONT, "SIGCONT")
        };
        let node = self.node(id);
        let slot = node.child.lock().unwrap();
        let child = slot
            .as_ref()
            .unwrap_or_else(|| panic!("{action}: node {id} is not running"));
        signal(child, sig);
        node.paused.store(paused, Ordering::SeqCst);
        self.api.set_live(id, !paused);
        self.log(format!("{done} node {id} with {sig_name}"));
    }

    /// Starts a stopped node again with the same config and whatever data it has.
    pub fn restart(&self, id: u64) {
        assert!(!self.is_running(id), "restart: node {id} is still running");
        self.spawn(id);
    }

    /// `kill -9` the node, run `while_down` (say, a wait for the others to go on
    /// without it), then restart it and wait until it is ready again; returns what
    /// `while_down` returned.
    pub fn while_killed<T>(&self, id: u64, while_down: impl FnOnce() -> T) -> T {
        self.kill(id);
        let seen = while_down();
        self.restart(id);
        self.wait_ready(id, Duration::from_secs(30));
        seen
    }

    /// Starts a stopped node again with extra command-line arguments (e.g.
    /// `--restore-from-postgres`).
    pub fn restart_with(&self, id: u64, args: &[&str]) {
        assert!(!self.is_running(id), "restart: node {id} is still running");
        self.log(format!("restarting node {id} with {args:?}"));
        self.spawn_with(id, args);
    }

    /// Deletes the data dir of a stopped node (a lost disk).
    pub fn wipe(&self, id: u64) {
        assert!(!self.is_running(id), "wipe: stop node {id} first");
        let dir = &self.node(id).data_dir;
        if dir.exists() {
            fs::remove_dir_all(dir).expect("remove data dir");
        }
        self.log(format!(
            "wiped the data dir of node {id} ({})",
            dir.display()
        ));
    }

    pub(super) fn kill_all(&self) {
        for node in self.nodes.values() {
            let mut slot = match node.child.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            if let Some(mut child) = slot.take() {
                signal(&child, libc::SIGKILL);
                let _ = child.wait();
            }
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) on a pid we spawned and have not reaped yet.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}) failed: {}",
        std::io::Error::last_os_error()
    );
}

fn unix_time() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}
