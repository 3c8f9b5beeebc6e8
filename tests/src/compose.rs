//! The compose stack as users run it: the repository's `docker-compose.yml`, with
//! the images `scripts/local-images.sh` builds from local parts swapped in by
//! `docker/compose.local.yml` (nothing can be pulled here), under a unique project
//! name and its own ports, torn down with its volumes when dropped, also when a
//! test fails (its logs are kept then, and their tail printed).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bcm_api::{ConfigValue, ConfigView, LeaderView, Login, Page, Session};
use rand::Rng;
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

use crate::answers::decode;
use crate::command::run_ok;
use crate::{free_port, wait_until, PROBE_TIMEOUT};

/// The workspace root (where `docker-compose.yml` is).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace directory")
}

/// `Err` with the reason when no Docker engine answers here.
pub fn docker_available() -> Result<(), String> {
    match Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`docker info` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run docker: {e}")),
    }
}

/// The Compose command: `docker compose` (v2) where it exists, else `docker-compose`.
pub fn compose_command() -> Result<Vec<String>, String> {
    let ok = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&["docker", "compose", "version"]) {
        Ok(vec!["docker".into(), "compose".into()])
    } else if ok(&["docker-compose", "version"]) {
        Ok(vec!["docker-compose".into()])
    } else {
        Err("neither `docker compose` nor `docker-compose` is installed".into())
    }
}

/// Builds the local images (`scripts/local-images.sh`): the debootstrap base image
/// once (cached by its recipe), then PostgreSQL, HAProxy and bcm from `binary`.
pub fn build_local_images(binary: &Path) {
    let start = Instant::now();
    let status = Command::new(workspace().join("scripts/local-images.sh"))
        .arg(binary)
        .current_dir(workspace())
        .status()
        .expect("running scripts/local-images.sh");
    assert!(status.success(), "scripts/local-images.sh failed: {status}");
    eprintln!(
        "[compose] local images ready in {:.1}s",
        start.elapsed().as_secs_f64()
    );
}

/// Whether the local image `name` exists (scripts/local-images.sh builds some
/// only when their parts are there).
pub fn image_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Variables docker-compose.yml (or Compose itself) reads from the environment.
const COMPOSE_VARIABLES: &[&str] = &[
    "COMPOSE_PROJECT_NAME",
    "COMPOSE_FILE",
    "COMPOSE_PROFILES",
    "BCM_SECRETS",
    "BCM_SUBNET",
    "BCM_PROXY_ADDR",
    "BCM_IMAGE",
    "BCM_PUBLISH_ADDR",
    "BCM_PORT",
    "BCM1_PORT",
    "BCM2_PORT",
    "BCM3_PORT",
    "BCM4_PORT",
    "BCM5_PORT",
    "GARAGE_IMAGE",
    "GARAGE_ACCESS_KEY_ID",
];

/// The named volumes of compose project `project` that exist now.
pub fn project_volumes(project: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "volume",
            "ls",
            "--quiet",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ])
        .output()
        .expect("docker volume ls");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What `scripts/compose-init.sh` wrote into a directory, and the stack's
/// configuration as Compose renders it from there (`compose config`: no engine
/// needed, nothing started).
pub struct RenderedConfig {
    /// The env file (`.env` for users).
    pub env_file: String,
    /// Each secret file by name, with its value (none without the directory).
    pub secrets: BTreeMap<String, String>,
    /// The output of `compose config`, every profile's services included.
    pub config: String,
}

impl RenderedConfig {
    /// Runs `scripts/compose-init.sh` into `dir` (its env file `dir/compose.env`,
    /// its secrets in `dir/secrets`) and renders the configuration.
    pub fn init_and_render(dir: &Path) -> RenderedConfig {
        let env_file = dir.join("compose.env");
        run_ok(
            Command::new(workspace().join("scripts/compose-init.sh")).arg(&env_file),
            "scripts/compose-init.sh",
        );
        RenderedConfig::render(dir)
    }

    /// Renders the configuration from what is in `dir` now.
    pub fn render(dir: &Path) -> RenderedConfig {
        let env_file = dir.join("compose.env");
        let compose = compose_command().expect("a Compose command");
        let mut cmd = Command::new(&compose[0]);
        cmd.args(&compose[1..])
            .arg("--env-file")
            .arg(&env_file)
            .arg("--file")
            .arg(workspace().join("docker-compose.yml"))
            .args(["--profile", "scale", "--profile", "s3", "config"])
            .current_dir(workspace())
            .stdin(Stdio::null());
        for var in COMPOSE_VARIABLES {
            cmd.env_remove(var);
        }
        let out = run_ok(&mut cmd, "compose config");
        let mut secrets = BTreeMap::new();
        let files = fs::read_dir(dir.join("secrets")).into_iter().flatten();
        for entry in files {
            let path = entry.expect("a secret file").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            secrets.insert(name, fs::read_to_string(&path).expect("a secret"));
        }
        RenderedConfig {
            env_file: fs::read_to_string(&env_file).expect("the env file"),
            secrets,
            config: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }

    /// Every service's environment as rendered: (service, variable, value).
    pub fn environments(&self) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        let (mut in_services, mut service, mut in_env) = (false, String::new(), false);
        for line in self.config.lines() {
            let indent = line.len() - line.trim_start().len();
            let text = line.trim();
            match indent {
                0 => {
                    in_services = text == "services:";
                    in_env = false;
                }
                2 if in_services => {
                    service = text.trim_end_matches(':').to_string();
                    in_env = false;
                }
                4 if in_services => in_env = text == "environment:",
                6 if in_env => {
                    if let Some((k, v)) = text.split_once(':') {
                        let v = v.trim().trim_matches(|c| c == '\'' || c == '"');
                        found.push((service.clone(), k.to_string(), v.to_string()));
                    }
                }
                _ => {}
            }
        }
        found
    }
}

/// One running compose project.
pub struct ComposeStack {
    compose: Vec<String>,
    project: String,
    dir: PathBuf,
    env_file: PathBuf,
    /// HAProxy's published port: the cluster, as users reach it.
    pub proxy_port: u16,
    /// Each node's own published port, by node id (1..=5).
    pub node_ports: BTreeMap<u64, u16>,
    admin_password: String,
    client: Client,
    token: Mutex<Option<String>>,
    start: Instant,
}

impl ComposeStack {
    /// Prepares a project (secrets from `scripts/compose-init.sh`, free ports);
    /// starts nothing yet.
    pub fn prepare() -> ComposeStack {
        let compose = compose_command().expect("a Compose command");
        let project = format!(
            "bcmtest{}x{:04x}",
            std::process::id(),
            rand::thread_rng().gen::<u16>()
        );
        let dir = std::env::temp_dir().join(&project);
        fs::create_dir_all(&dir).expect("the test's directory");
        let env_file = dir.join("compose.env");
        run_ok(
            Command::new(workspace().join("scripts/compose-init.sh")).arg(&env_file),
            "scripts/compose-init.sh",
        );
        let text = fs::read_to_string(&env_file).expect("the generated env file");
        let admin_password = fs::read_to_string(dir.join("secrets/admin_password"))
            .expect("the generated admin password");
        let proxy_port = free_port();
        let node_ports: BTreeMap<u64, u16> = (1..=5).map(|n| (n, free_port())).collect();
        // A network of its own, apart from a stack the user may be running.
        let net = rand::thread_rng().gen_range(100..200);
        let mut extra = format!(
            "COMPOSE_PROJECT_NAME={project}\nBCM_PUBLISH_ADDR=127.0.0.1\nBCM_PORT={proxy_port}\n\
             BCM_SUBNET=10.213.{net}.0/24\nBCM_PROXY_ADDR=10.213.{net}.250\n"
        );
        for (n, p) in &node_ports {
            extra.push_str(&format!("BCM{n}_PORT={p}\n"));
        }
        fs::write(&env_file, format!("{text}{extra}")).expect("writing the env file");
        // The API is HTTPS with the stack's own CA (compose-init.sh makes it).
        let ca = fs::read(dir.join("secrets/api_ca_cert")).expect("the stack's API CA");
        let client = Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM CA"))
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .expect("the HTTP client");
        let stack = ComposeStack {
            compose,
            project,
            dir,
            env_file,
            proxy_port,
            node_ports,
            admin_password,
            client,
            token: Mutex::new(None),
            start: Instant::now(),
        };
        stack.log(format!(
            "project {} (HAProxy on 127.0.0.1:{}, logs in {})",
            stack.project,
            stack.proxy_port,
            stack.dir.display()
        ));
        stack
    }

    pub fn log(&self, msg: impl AsRef<str>) {
        eprintln!(
            "[compose {:>6.1}s] {}",
            self.start.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }

    fn compose_cmd(&self, args: &[&str]) -> Command {
        let ws = workspace();
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("--project-name")
            .arg(&self.project)
            .arg("--env-file")
            .arg(&self.env_file)
            .arg("--file")
            .arg(ws.join("docker-compose.yml"))
            .arg("--file")
            .arg(ws.join("docker/compose.local.yml"))
            .args(args)
            .current_dir(&ws)
            .stdin(Stdio::null());
        // The shell's environment would win over the env file: keep only ours.
        for var in COMPOSE_VARIABLES {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `compose ARGS`; its output.
    pub fn compose(&self, args: &[&str]) -> Output {
        self.compose_cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("running compose {args:?}: {e}"))
    }

    /// Runs `compose ARGS` and panics (with its output) unless it succeeds.
    pub fn compose_ok(&self, args: &[&str]) -> String {
        let out = run_ok(&mut self.compose_cmd(args), &format!("compose {args:?}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `compose up -d` with the prebuilt local images, plus `extra` (a profile,
    /// services).
    pub fn up(&self, extra: &[&str]) {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["up", "-d", "--no-build"]);
        self.compose_ok(&args);
    }

    /// The project's name (unique to this stack).
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The container id of `service`, running or stopped (empty while it has none).
    pub fn container(&self, service: &str) -> String {
        self.compose_ok(&["ps", "--all", "-q", service])
            .trim()
            .to_string()
    }

    /// `healthy`, `starting`, `unhealthy`, or the container's state (`exited`, ...).
    pub fn health(&self, service: &str) -> String {
        let id = self.container(service);
        if id.is_empty() {
            return "no container".into();
        }
        let out = Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{if .State.Running}}{{if .State.Health}}{{.State.Health.Status}}{{else}}running{{end}}{{else}}{{.State.Status}}{{end}}",
                &id,
            ])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits until every one of `services` is running and healthy.
    pub fn wait_healthy(&self, services: &[&str], timeout: Duration) {
        let start = Instant::now();
        wait_until(timeout, &format!("{services:?} to be healthy"), || {
            let states: Vec<String> = services
                .iter()
                .map(|s| format!("{s}: {}", self.health(s)))
                .collect();
            if states.iter().all(|s| s.ends_with(": healthy")) {
                Ok(())
            } else {
                thread::sleep(Duration::from_millis(200));
                Err(states.join(", "))
            }
        });
        self.log(format!(
            "{} healthy after {:.1}s",
            services.join(", "),
            start.elapsed().as_secs_f64()
        ));
    }

    /// `docker kill` on `service`'s container (SIGKILL: no clean shutdown).
    pub fn kill(&self, service: &str) {
        let id = self.container(service);
        assert!(!id.is_empty(), "{service} has no container");
        run_ok(
            Command::new("docker").args(["kill", &id]),
            &format!("docker kill {service}"),
        );
    }

    /// `docker start` on `service`'s (stopped) container.
    pub fn start_container(&self, service: &str) {
        let id = self.container(service);
        run_ok(
            Command::new("docker").args(["start", &id]),
            &format!("docker start {service}"),
        );
    }

    /// The project's named volumes that exist now.
    pub fn volumes(&self) -> Vec<String> {
        project_volumes(&self.project)
    }

    /// HAProxy's URL: the cluster as users reach it.
    pub fn proxy_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.proxy_port)
    }

    /// Node `n`'s own published URL.
    pub fn node_url(&self, n: u64) -> String {
        format!("https://127.0.0.1:{}", self.node_ports[&n])
    }

    /// One request; `Err` when there was no HTTP answer.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), String> {
        let mut rb = self.client.request(method.clone(), url).timeout(timeout);
        if let Some(t) = self.token.lock().unwrap().as_deref() {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().map_err(|e| format!("{method} {url}: {e}"))?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Logs in as admin through HAProxy and keeps the token (valid on every node).
    pub fn login(&self) {
        let url = format!("{}/api/v1/auth/login", self.proxy_url());
        let body = json!(Login {
            username: "admin".into(),
            password: self.admin_password.clone(),
        });
        let token = wait_until(
            Duration::from_secs(30),
            "logging in through HAProxy",
            || match self.send(Method::POST, &url, Some(&body), Duration::from_secs(5))? {
                (200, v) => decode::<Session>(v).map(|s| s.token),
                (s, v) => Err(format!("HTTP {s} {v}")),
            },
        );
        *self.token.lock().unwrap() = Some(token);
    }

    /// A login as `username` at `base` (HAProxy or a node), with
    /// `X-Forwarded-For: xff` when given; the status.
    pub fn login_attempt(
        &self,
        base: &str,
        username: &str,
        password: &str,
        xff: Option<&str>,
    ) -> Result<u16, String> {
        let url = format!("{base}/api/v1/auth/login");
        let mut rb = self
            .client
            .post(&url)
            .json(&json!({"username": username, "password": password}));
        if let Some(xff) = xff {
            rb = rb.header("x-forwarded-for", xff);
        }
        rb.send()
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("POST {url}: {e}"))
    }

    /// `PUT /api/v1/config/{key}` at `base`: `Ok` only when acknowledged (2xx).
    pub fn put(
        &self,
        base: &str,
        key: &str,
        value: &Value,
        timeout: Duration,
    ) -> Result<(), String> {
        let url = format!("{base}/api/v1/config/{key}");
        let body = json!(ConfigValue {
            value: value.clone()
        });
        match self.send(Method::PUT, &url, Some(&body), timeout)? {
            (200..=299, _) => Ok(()),
            (s, v) => Err(format!("PUT {url}: HTTP {s} {v}")),
        }
    }

    /// Every setting whose key contains `q`, as `base` serves it (`linearizable`
    /// asks the leader to confirm; otherwise the node's local state).
    pub fn settings(
        &self,
        base: &str,
        q: &str,
        linearizable: bool,
    ) -> Result<BTreeMap<String, Value>, String> {
        let mut all = BTreeMap::new();
        loop {
            let mut url = format!("{base}/api/v1/config?q={q}&limit=1000&offset={}", all.len());
            if linearizable {
                url.push_str("&consistency=linearizable");
            }
            let (status, page) = self.send(Method::GET, &url, None, Duration::from_secs(10))?;
            if status != 200 {
                return Err(format!("GET {url}: HTTP {status} {page}"));
            }
            let page = decode::<Page<ConfigView>>(page)?;
            let fetched = page.items.len();
            all.extend(page.items.into_iter().map(|e| (e.key, e.value)));
            if fetched == 0 || all.len() >= page.total {
                return Ok(all);
            }
        }
    }

    /// The leader's id as HAProxy routes to it (`GET /leader` answers 200 only on
    /// the leader).
    pub fn leader_via_proxy(&self) -> Result<u64, String> {
        let url = format!("{}/leader", self.proxy_url());
        match self.send(Method::GET, &url, None, PROBE_TIMEOUT)? {
            (200, v) => decode::<LeaderView>(v).map(|l| l.node_id),
            (s, v) => Err(format!("GET {url}: HTTP {s} {v}")),
        }
    }

    /// `GET /api/v1/cluster` at `base`.
    pub fn cluster(&self, base: &str) -> Result<Value, String> {
        let url = format!("{base}/api/v1/cluster");
        match self.send(Method::GET, &url, None, Duration::from_secs(5))? {
            (200, v) => Ok(v),
            (s, v) => Err(format!("GET {url}: HTTP {s} {v}")),
        }
    }

    /// Keeps the project's logs in its directory and prints their tail.
    fn keep_logs(&self) {
        let out = self.compose(&[
            "--profile",
            "scale",
            "--profile",
            "s3",
            "logs",
            "--no-color",
            "--timestamps",
        ]);
        let path = self.dir.join("compose.log");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let _ = fs::write(&path, &text);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(120)..].join("\n");
        eprintln!(
            "[compose] the test failed; logs kept in {}; their last lines:\n{tail}",
            path.display()
        );
    }
}

impl Drop for ComposeStack {
    fn drop(&mut self) {
        let failed = thread::panicking();
        if failed {
            self.keep_logs();
        }
        let out = self.compose(&[
            "--profile",
            "scale",
            "--profile",
            "s3",
            "down",
            "--volumes",
            "--remove-orphans",
            "--timeout",
            "5",
        ]);
        if !out.status.success() {
            eprintln!(
                "[compose] tearing down {} failed: {}",
                self.project,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if !failed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// One acknowledged write: what was written, when it was sent and acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    pub key: String,
    pub value: Value,
    pub sent: Instant,
    pub acked: Instant,
}

/// Writes `w-<i>` = i through HAProxy, one after the other, until stopped; keeps
/// every acknowledged write. A write that fails is not retried (it may or may not
/// have been applied: only acknowledged writes are promised).
pub struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    handle: Option<JoinHandle<u64>>,
}

impl Writer {
    pub fn start(stack: &Arc<ComposeStack>, prefix: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (s, a, st, prefix) = (
            stop.clone(),
            acks.clone(),
            stack.clone(),
            prefix.to_string(),
        );
        let handle = thread::spawn(move || {
            let base = st.proxy_url();
            let mut attempts = 0u64;
            while !s.load(Ordering::SeqCst) {
                let key = format!("{prefix}{attempts}");
                let value = json!(attempts);
                attempts += 1;
                let sent = Instant::now();
                match st.put(&base, &key, &value, Duration::from_secs(3)) {
                    Ok(()) => {
                        a.lock().unwrap().push(Ack {
                            key,
                            value,
                            sent,
                            acked: Instant::now(),
                        });
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            }
            attempts
        });
        Writer {
            stop,
            acks,
            handle: Some(handle),
        }
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// Stops the writer; returns (attempted, acknowledged writes).
    pub fn stop(mut self) -> (u64, Vec<Ack>) {
        self.stop.store(true, Ordering::SeqCst);
        let attempts = self
            .handle
            .take()
            .map(|h| h.join().expect("the writer thread"))
            .unwrap_or(0);
        (attempts, self.acks())
    }
}

impl Drop for Writer {
    /// Joins the thread, so that its handle on the stack is gone before the stack's
    /// own drop (which tears it down) runs on the test's thread.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
