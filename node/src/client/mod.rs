//! The operator CLI: talks to any node's public API (which forwards to the leader).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bcm_api::{ClusterView, Login, MemberView, Problem};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use resources::{or_dash, table, Table};

#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// One or more node URLs (comma-separated); the first that answers is used.
    #[arg(
        long,
        global = true,
        env = "BCM_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
}

#[derive(clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long, short, default_value = "admin")]
    pub username: String,
    /// The password; read from standard input when not given.
    #[arg(long, env = "BCM_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// `table` (default) or `json`.
    #[arg(long, short, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

#[derive(Serialize, Deserialize)]
struct StoredToken {
    server: String,
    token: String,
}

fn token_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("bcm").join("token.json")
}

/// The CA certificates `--cacert` named, read once at the start.
static CACERT: std::sync::OnceLock<Vec<reqwest::Certificate>> = std::sync::OnceLock::new();

/// Reads `--cacert` (a PEM file of one or more CA certificates).
pub fn set_cacert(path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let certs = match path {
        None => Vec::new(),
        Some(p) => {
            let pem = std::fs::read(p)
                .with_context(|| format!("cannot read --cacert {}", p.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--cacert {} is not PEM certificates", p.display()))?;
            if certs.is_empty() {
                anyhow::bail!("--cacert {} holds no certificate", p.display());
            }
            certs
        }
    };
    let _ = CACERT.set(certs);
    Ok(())
}

/// A client builder that trusts the `--cacert` CAs for https:// servers.
pub fn http_builder() -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder();
    for c in CACERT.get().into_iter().flatten() {
        b = b.add_root_certificate(c.clone());
    }
    b
}

fn client() -> reqwest::Client {
    http_builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("building the HTTP client")
}

pub fn servers(s: &ServerArgs) -> Vec<String> {
    s.server
        .split(',')
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect()
}

/// A server's refusal: who refused, the status, and the problem's `detail`.
#[derive(Debug, thiserror::Error)]
#[error("{server}: {detail} (HTTP {status})")]
pub struct Refused {
    pub server: String,
    pub status: u16,
    pub detail: String,
}

/// One API request. Its JSON body is encoded once and sent to whichever server
/// answers.
pub struct Request<'a> {
    method: Method,
    path: String,
    token: Option<&'a str>,
    body: Option<Vec<u8>>,
    header: Option<(&'static str, String)>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Request<'a> {
        Request {
            method,
            path: path.into(),
            token: None,
            body: None,
            header: None,
        }
    }

    /// Sent as `Authorization: Bearer <token>`.
    pub fn token(mut self, token: &'a str) -> Request<'a> {
        self.token = Some(token);
        self
    }

    /// A request body (one of bcm-api's request types).
    pub fn json(mut self, body: &impl Serialize) -> Request<'a> {
        let bytes = serde_json::to_vec(body).expect("the API's request types encode as JSON");
        self.body = Some(bytes);
        self
    }

    /// One more header (e.g. `If-Match`).
    pub fn header(mut self, name: &'static str, value: String) -> Request<'a> {
        self.header = Some((name, value));
        self
    }

    /// Sends the request to the first server that answers (a 503 moves on to the
    /// next); returns the body of the first success, or the refusal as [`Refused`].
    pub async fn send(&self, servers: &[String]) -> anyhow::Result<Vec<u8>> {
        let client = client();
        let mut last = anyhow!("no server given");
        for server in servers {
            let mut req = client
                .request(self.method.clone(), format!("{server}{}", self.path))
                .header("x-bcm-client", "cli");
            if let Some((name, value)) = &self.header {
                req = req.header(*name, value);
            }
            if let Some(t) = self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &self.body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = anyhow!("{server} is unreachable: {e}");
                    continue;
                }
            };
            let status = resp.status();
            let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            if status.is_success() {
                return Ok(body);
            }
            let refused = Refused {
                server: server.clone(),
                status: status.as_u16(),
                detail: serde_json::from_slice::<Problem>(&body)
                    .map(|p| p.detail)
                    .unwrap_or_else(|_| "no detail".into()),
            };
            if refused.status == 503 {
                last = refused.into();
                continue;
            }
            return Err(refused.into());
        }
        Err(last)
    }

    /// [`Request::send`], the answer decoded as `T` (one of bcm-api's views).
    pub async fn call<T: DeserializeOwned>(&self, servers: &[String]) -> anyhow::Result<T> {
        let body = self.send(servers).await?;
        serde_json::from_slice(&body).map_err(|e| {
            anyhow!(
                "{} {}: the answer is not what this bcm expects ({e}); is the server another version?",
                self.method,
                self.path
            )
        })
    }
}

pub fn read_password() -> anyhow::Result<String> {
    eprint!("password: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn log_in(
    servers: &[String],
    username: String,
    password: String,
) -> anyhow::Result<bcm_api::Session> {
    Request::new(Method::POST, "/api/v1/auth/login")
        .json(&Login { username, password })
        .call(servers)
        .await
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let password = match args.password {
        Some(p) => p,
        None => read_password()?,
    };
    let servers = servers(&args.server);
    let session = log_in(&servers, args.username.clone(), password).await?;
    let path = token_path();
    let stored = StoredToken {
        server: args.server.server.clone(),
        token: session.token,
    };
    write_private(&path, &serde_json::to_vec_pretty(&stored)?)?;
    println!(
        "logged in as {} (token kept in {}, valid until {})",
        args.username,
        path.display(),
        session.expires_at
    );
    Ok(())
}

/// Revokes the token `bcm login` kept (on every node) and forgets it.
pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let path = token_path();
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("not logged in (no token in {})", path.display());
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let stored: StoredToken =
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))?;
    let servers = servers(&args.server);
    let revoked = Request::new(Method::POST, "/api/v1/auth/logout")
        .token(&stored.token)
        .send(&servers)
        .await;
    match revoked {
        Ok(_) => {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            println!(
                "logged out: the token is revoked on every node and removed from {}",
                path.display()
            );
            Ok(())
        }
        // Refused as a token: it was revoked, expired or belongs elsewhere already.
        Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 401) => {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            println!(
                "logged out: the token was no longer valid ({e}); removed it from {}",
                path.display()
            );
            Ok(())
        }
        Err(e) => Err(e.context("the token could not be revoked and is kept; try again")),
    }
}

/// Writes `bytes` to `path` readable by this user only: the file 0600 and its
/// directory 0700, each made so again when it exists with wider permissions,
/// before anything is written.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::fs::Permissions;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.set_permissions(Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private (0600)", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A token from `BCM_TOKEN`, from `bcm login`, or by logging in with `BCM_PASSWORD`.
pub async fn token(servers_list: &[String]) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("BCM_TOKEN") {
        return Ok(t);
    }
    if let Ok(p) = std::env::var("BCM_PASSWORD") {
        let user = std::env::var("BCM_USER").unwrap_or_else(|_| "admin".into());
        return Ok(log_in(servers_list, user, p).await?.token);
    }
    let path = token_path();
    let text = std::fs::read(&path).map_err(|_| {
        anyhow!("not logged in: run `bcm login` (or set BCM_PASSWORD or BCM_TOKEN)")
    })?;
    let stored: StoredToken =
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))?;
    Ok(stored.token)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let servers = servers(&args.server);
    let token = token(&servers).await?;
    let c: ClusterView = Request::new(Method::GET, "/api/v1/cluster")
        .token(&token)
        .call(&servers)
        .await?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(());
    }
    print!("{}", render_status(&c));
    Ok(())
}

/// A member's line in `bcm status`: which of the cluster's roles it holds now.
struct MemberLine<'a> {
    member: &'a MemberView,
    cluster: &'a ClusterView,
}

impl Table for MemberLine<'_> {
    fn header() -> &'static [&'static str] {
        &[
            "ID", "NAME", "ROLE", "STATUS", "VOTER", "ROLES", "API", "CONTACT", "MATCHED",
        ]
    }

    fn row(&self) -> Vec<String> {
        let m = self.member;
        let mut role = Vec::new();
        if self.cluster.leader_id == Some(m.id) {
            role.push("cluster-manager");
        }
        if self.cluster.backup_manager.map(|b| b.node_id) == Some(m.id) {
            role.push("backup-manager");
        }
        vec![
            m.id.to_string(),
            m.name.clone(),
            if role.is_empty() {
                "-".into()
            } else {
                role.join("+")
            },
            m.status.as_str().into(),
            if m.voter { "voter" } else { "learner" }.into(),
            resources::joined(m.roles.iter().map(|r| r.as_str())),
            m.api_addr.clone(),
            or_dash(m.last_contact_ms.map(|ms| format!("{ms}ms"))),
            or_dash(m.matched_index),
        ]
    }
}

/// The cluster as a table.
pub fn render_status(c: &ClusterView) -> String {
    let mut out = format!(
        "cluster {}  term {}  leader {}  commit {}  backup-manager {}\n\n",
        or_dash(c.cluster_id.as_ref()),
        c.term,
        or_dash(c.leader_id),
        c.commit_index,
        match c.backup_manager {
            None => "-".to_string(),
            Some(bm) => format!("node {} (epoch {})", bm.node_id, bm.epoch),
        }
    );
    let lines: Vec<MemberLine> = c
        .members
        .iter()
        .map(|member| MemberLine { member, cluster: c })
        .collect();
    out.push_str(&table(&lines));
    if let Some(ex) = &c.snapshot_export {
        out.push_str(&format!(
            "\npostgres export: index {} at {}, {} entries behind",
            or_dash(ex.last_index),
            or_dash(ex.last_at.as_ref()),
            ex.lag
        ));
        if let Some(err) = &ex.last_error {
            out.push_str(&format!("; FAILING: {err}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use bcm_api::{
        BackupManagerView, ClusterView, MemberView, NodeStatus, Role, SnapshotExportView,
    };

    fn member(id: u64, status: NodeStatus, voter: bool, role: Role) -> MemberView {
        MemberView {
            id,
            name: format!("node-{id}"),
            api_addr: format!("http://a{id}"),
            rpc_addr: format!("http://r{id}"),
            voter,
            roles: vec![role],
            status,
            enabled: true,
            labels: Default::default(),
            last_contact_ms: voter.then_some(0),
            matched_index: voter.then_some(10),
            maintenance: false,
        }
    }

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_kept_token_is_readable_by_its_owner_only() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("bcm");
        let path = dir.join("token.json");
        super::write_private(&path, b"first").unwrap();
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
        // A file and directory left open to others (by an older bcm, or by hand)
        // are closed again when the token is written.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::write_private(&path, b"second").unwrap();
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
    }

    #[test]
    fn status_table_marks_roles() {
        let mut c = ClusterView {
            cluster_id: Some("abc".into()),
            leader_id: Some(1),
            term: 3,
            commit_index: 10,
            last_applied: 10,
            snapshot_index: None,
            this_node_id: 1,
            backup_manager: Some(BackupManagerView {
                node_id: 2,
                epoch: 1,
                since_ms: 0,
            }),
            members: vec![
                member(1, NodeStatus::Up, true, Role::Manager),
                member(2, NodeStatus::Down, false, Role::Storage),
            ],
            snapshot_export: None,
        };
        let t = super::render_status(&c);
        assert!(
            t.starts_with(
                "cluster abc  term 3  leader 1  commit 10  backup-manager node 2 (epoch 1)\n"
            ),
            "{t}"
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[2],
            "ID  NAME    ROLE             STATUS  VOTER    ROLES    API        CONTACT  MATCHED"
        );
        assert_eq!(
            lines[3],
            "1   node-1  cluster-manager  up      voter    manager  http://a1  0ms      10"
        );
        assert_eq!(
            lines[4],
            "2   node-2  backup-manager   down    learner  storage  http://a2  -        -"
        );
        assert!(!t.contains("postgres export"), "{t}");
        c.snapshot_export = Some(SnapshotExportView {
            last_index: Some(9),
            last_at: Some("2026-11-25T10:00:00Z".into()),
            last_error: Some("cannot reach PostgreSQL".into()),
            lag: 1,
        });
        let t = super::render_status(&c);
        assert!(
            t.contains("postgres export: index 9 at 2026-11-25T10:00:00Z, 1 entries behind; FAILING: cannot reach PostgreSQL"),
            "{t}"
        );
    }
}

pub mod bench;
pub mod certs;
mod demo;
pub mod dev;
pub mod healthcheck;
pub mod resources;
