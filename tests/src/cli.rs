//! Running the `bcm` binary the way an operator does: as a CLI (`bcm status`,
//! `bcm login`) and as a local dev cluster (`bcm dev`).
//!
//! Every run has a deadline, and every process started here is gone when its handle
//! is dropped, also when the test fails.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{bcm_bin, free_base_port, tail, wait_until};

/// Environment variables that would change what a CLI run does behind the test's back.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// A `bcm` command with a controlled environment: no `BCM_*` variable or proxy setting
/// inherited from the developer, `HOME` set to a directory of the test's and
/// `XDG_CONFIG_HOME` to `HOME/.config` (so a stored token lands in
/// `HOME/.config/bcm/token.json` whichever of the two the CLI honours).
fn bcm_command(home: &Path) -> Command {
    let mut cmd = Command::new(bcm_bin());
    for (k, _) in std::env::vars_os() {
        let k_str = k.to_string_lossy();
        if k_str.starts_with("BCM_") || PROXY_VARS.contains(&k_str.as_ref()) {
            cmd.env_remove(&k);
        }
    }
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the
    // process if the test thread that started it dies without cleaning up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// What a finished CLI run printed, and how it ended.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` ended with {} after {:.2}s\n--- stdout ---\n{}--- stderr ---\n{}",
            self.command,
            self.status,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// One CLI invocation: `Bcm::new(home, &["status", ...]).env(..).run(timeout)`.
pub struct Bcm {
    cmd: Command,
    shown: String,
    /// What the run reads on standard input (nothing: /dev/null).
    input: Option<String>,
}

impl Bcm {
    /// `bcm <args>` with a controlled environment: no inherited `BCM_*` or proxy
    /// variable, `HOME` = `home`, `XDG_CONFIG_HOME` = `home/.config`.
    pub fn new(home: &Path, args: &[&str]) -> Bcm {
        let mut cmd = bcm_command(home);
        cmd.args(args);
        Bcm {
            cmd,
            shown: format!("bcm {}", args.join(" ")),
            input: None,
        }
    }

    /// Sets an environment variable for this run (shown in messages, except values
    /// of variables whose name says they are secret).
    pub fn env(mut self, key: &str, value: &str) -> Bcm {
        self.cmd.env(key, value);
        let secret = key.contains("PASSWORD") || key.contains("TOKEN");
        let shown = if secret { "***" } else { value };
        self.shown = format!("{key}={shown} {}", self.shown);
        self
    }

    /// Gives the run `text` on standard input (as an operator typing it).
    pub fn stdin(mut self, text: &str) -> Bcm {
        self.shown = format!("echo {text:?} | {}", self.shown);
        self.input = Some(text.to_string());
        self
    }

    /// Runs the command to its end; panics (with what it printed) if it takes longer
    /// than `timeout`.
    pub fn run(mut self, timeout: Duration) -> CliOutput {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if self.input.is_some() {
            self.cmd.stdin(Stdio::piped());
        }
        let start = Instant::now();
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{}`: {e}", self.shown));
        if let (Some(text), Some(mut pipe)) = (self.input.take(), child.stdin.take()) {
            // A command that exits without reading it closes the pipe: not an error.
            thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut pipe, text.as_bytes());
            });
        }
        let out = read_all(child.stdout.take());
        let err = read_all(child.stderr.take());
        let deadline = start + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the CLI") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(10));
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        let elapsed = start.elapsed();
        match status {
            Some(status) => CliOutput {
                command: self.shown,
                status,
                stdout,
                stderr,
                elapsed,
            },
            None => panic!(
                "`{}` did not finish within {timeout:?}; it printed:\n--- stdout ---\n{stdout}\
                 --- stderr ---\n{stderr}",
                self.shown
            ),
        }
    }
}

fn read_all<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Appends everything `pipe` produces to `sink`, as it comes.
fn copy_into<R: Read + Send + 'static>(pipe: R, sink: Arc<Mutex<String>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut pipe = pipe;
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    })
}

// ---------------------------------------------------------------------------------------
// bcm dev
// ---------------------------------------------------------------------------------------

/// A running `bcm dev --nodes N --base-port P --data-dir <temp dir>`.
///
/// `bcm dev` and the nodes it starts share a process group of their own; dropping the
/// handle SIGKILLs that whole group, so nothing survives a failing test. When the test
/// fails (or `BCM_KEEP_LOGS` is set) the data dir is kept and the tail of what
/// `bcm dev` printed and of each node log is shown.
pub struct DevCluster {
    child: Option<Child>,
    pgid: libc::pid_t,
    nodes: u16,
    base_port: u16,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

impl DevCluster {
    /// Starts `bcm dev` with `nodes` nodes on a base port whose API ports
    /// (`P..P+nodes`) and Raft ports (`P+1000..`) are all free. Does not wait.
    pub fn start(nodes: u16) -> DevCluster {
        let offsets: Vec<u16> = (0..nodes).flat_map(|i| [i, 1000 + i]).collect();
        let base_port = free_base_port(&offsets);
        let dir = tempfile::Builder::new()
            .prefix("bcm-e2e-dev-")
            .tempdir()
            .expect("create a temp dir");
        let path = dir.path().to_path_buf();
        let data_dir = path.join("data");
        let home = path.join("home");
        fs::create_dir_all(&home).expect("create the dev home dir");
        let mut cmd = bcm_command(&home);
        cmd.arg("dev")
            .arg("--nodes")
            .arg(nodes.to_string())
            .arg("--base-port")
            .arg(base_port.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, inherited by the nodes it starts: one kill reaches
            // them all, and a Ctrl-C in the terminal running the tests does not.
            .process_group(0);
        let mut child = cmd.spawn().expect("spawn bcm dev");
        let pgid = child.id() as libc::pid_t;
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            copy_into::<ChildStdout>(child.stdout.take().unwrap(), stdout.clone()),
            copy_into::<ChildStderr>(child.stderr.take().unwrap(), stderr.clone()),
        ];
        eprintln!(
            "[dev] started `bcm dev --nodes {nodes} --base-port {base_port} --data-dir {}` \
             (pid {pgid})",
            data_dir.display()
        );
        DevCluster {
            child: Some(child),
            pgid,
            nodes,
            base_port,
            dir: Some(dir),
            path,
            stdout,
            stderr,
            readers,
            started: Instant::now(),
        }
    }

    /// The base port given to `--base-port`.
    pub fn base_port(&self) -> u16 {
        self.base_port
    }

    /// Node `i`'s API URL (`i` from 1), by `bcm dev`'s port rule.
    pub fn api_url(&self, i: u16) -> String {
        format!("http://127.0.0.1:{}", self.base_port + i - 1)
    }

    /// Node `i`'s API and Raft RPC ports.
    pub fn ports(&self, i: u16) -> [u16; 2] {
        [self.base_port + i - 1, self.base_port + 1000 + i - 1]
    }

    /// The process group of `bcm dev` and its nodes.
    pub fn pgid(&self) -> libc::pid_t {
        self.pgid
    }

    /// The `--data-dir` it was given: its secrets, node configs, data and logs.
    pub fn data_dir(&self) -> PathBuf {
        self.path.join("data")
    }

    /// A directory inside the test's temp dir, for `HOME` of CLI runs.
    pub fn home(&self) -> PathBuf {
        self.path.join("home")
    }

    /// Everything `bcm dev` printed on standard output so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until `probe`, given `bcm dev`'s standard output so far, returns `Ok`.
    /// Panics early if `bcm dev` exits.
    pub fn wait_for_stdout<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut(&str) -> Result<T, String>,
    ) -> T {
        wait_until(timeout, what, || {
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "bcm dev exited ({status}) while waiting for {what}; it printed:\n{}",
                    self.output()
                );
            }
            probe(&self.stdout())
        })
    }

    /// Sends SIGINT (what Ctrl-C sends) to the `bcm dev` process only.
    pub fn interrupt(&self) {
        let pid = self.child.as_ref().expect("bcm dev is running").id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which has not been reaped.
        let rc = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(
            rc,
            0,
            "kill -INT {pid}: {}",
            std::io::Error::last_os_error()
        );
        eprintln!(
            "[dev +{:.3}s] sent SIGINT to bcm dev (pid {pid})",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Waits for `bcm dev` to exit; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let status = wait_until(timeout, "bcm dev to exit", || {
            self.try_exit_status()
                .ok_or_else(|| format!("still running; it printed:\n{}", self.output()))
        });
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        status
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().expect("wait for bcm dev")?;
        self.child = None;
        Some(status)
    }

    /// Is any process of `bcm dev`'s group (it or a node it started) still there?
    pub fn group_alive(&self) -> bool {
        // SAFETY: signal 0 only checks that the group exists.
        unsafe { libc::kill(-self.pgid, 0) == 0 }
    }

    /// What `bcm dev` printed on both outputs, for messages.
    pub fn output(&self) -> String {
        format!(
            "--- bcm dev stdout ---\n{}--- bcm dev stderr ---\n{}",
            self.stdout(),
            self.stderr.lock().unwrap()
        )
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        // SAFETY: SIGKILL to the process group we created for bcm dev and its nodes.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        let keep = thread::panicking() || std::env::var_os("BCM_KEEP_LOGS").is_some();
        if !keep {
            return;
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            let mut report = format!(
                "\n===== bcm e2e: bcm dev data kept in {} =====\n{}",
                path.display(),
                self.output()
            );
            for i in 1..=self.nodes {
                let log = path.join("data").join(format!("node{i}.log"));
                let _ = writeln!(
                    report,
                    "----- {} (last 30 lines) -----\n{}",
                    log.display(),
                    tail(&log, 30)
                );
            }
            eprintln!("{report}");
        }
    }
}
