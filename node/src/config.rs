//! Node configuration: `cluster.toml` < environment (`BCM_SECTION__KEY`) < flags.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bcm_raft_store::Role;

use crate::net::client_addr::TrustedProxies;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// A configuration problem a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("configuration: cannot read {key} from {path}: {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// A secret value: never printed, never logged.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub raft: RaftSection,
    #[serde(default)]
    pub manager: ManagerSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub postgres: Option<PostgresSection>,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub api: ApiSection,
}

/// The public listener (API and web UI): HTTPS, and the proxies it trusts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// PEM certificate chain; with `tls_key` the API serves HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// With `tls_cert`: a plain-HTTP listener (`0.0.0.0:80`) that answers every
    /// request with a 308 redirect to the same path on `node.api_advertise`.
    pub http_redirect_listen: Option<SocketAddr>,
    /// Reverse proxies (networks, `10.0.0.0/8`, or addresses) whose
    /// `X-Forwarded-For` names the client (net/client_addr.rs); from any other
    /// peer the header is ignored. Empty: the client is the socket's peer.
    pub trusted_proxies: Vec<String>,
}

/// Where a storage node keeps backup data.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// The chunk store's directory; `<data_dir>/store` when unset.
    pub dir: Option<PathBuf>,
    /// `local` (the default: pack files under `dir`) or `s3` (an
    /// S3-compatible object store: the keys below).
    pub backend: Option<String>,
    /// The object store's URL, `http://` or `https://` (`s3`).
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    /// The region the store signs for (Garage's default is `garage`).
    pub region: Option<String>,
    /// Keys start with this inside the bucket (several clusters in one bucket).
    pub prefix: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub secret_access_key_file: Option<PathBuf>,
    /// `https://endpoint/bucket/key` (the default, what Garage, MinIO and
    /// Ceph serve without DNS set up) rather than `https://bucket.endpoint/key`.
    pub path_style: Option<bool>,
}

/// The resolved `[storage]` section of a `backend = "s3"` node.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub path_style: bool,
}

/// Bounds on both listeners (public API and cluster-internal), each on its own.
/// See docs/OPERATIONS.md "Limits".
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// A request's headers must arrive within this; a kept-alive connection left
    /// idle this long is closed.
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this (from its headers).
    pub body_timeout_ms: u64,
    /// A request must be answered within this (408 otherwise). Event streams
    /// count only until their first byte.
    pub request_timeout_ms: u64,
    /// Open connections per listener; more are answered 503 and closed.
    pub max_connections: usize,
    /// Event streams (`/api/v1/events`, the UI's live pages) one user may hold
    /// open on a node.
    pub max_event_streams_per_user: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            request_timeout_ms: 60_000,
            max_connections: 1024,
            max_event_streams_per_user: 16,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default = "default_api_listen")]
    pub api_listen: SocketAddr,
    #[serde(default)]
    pub api_advertise: Option<String>,
    #[serde(default = "default_rpc_listen")]
    pub rpc_listen: SocketAddr,
    #[serde(default)]
    pub rpc_advertise: Option<String>,
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
    #[serde(default = "default_disk_reserve_mb")]
    pub disk_reserve_mb: u64,
}

fn default_disk_reserve_mb() -> u64 {
    256
}

fn default_api_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("literal")
}
fn default_rpc_listen() -> SocketAddr {
    "127.0.0.1:9080".parse().expect("literal")
}
fn default_roles() -> Vec<String> {
    Role::ALL.iter().map(|r| r.as_str().to_string()).collect()
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub bootstrap: Vec<String>,
    #[serde(default)]
    pub join: Option<Vec<String>>,
    /// The secret before the last change, while the cluster CA's key is still
    /// sealed under it (docs/SECURITY.md, "Rotating everything").
    #[serde(default)]
    pub previous_secret: Option<Secret>,
    #[serde(default)]
    pub previous_secret_file: Option<PathBuf>,
}

/// Raft timing and compaction. See docs/OPERATIONS.md for why these defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many writes applied since the last one (a batched
    /// entry counts each write it carries; openraft also snapshots by entries).
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot for followers that lag a little.
    pub keep_logs_behind_snapshot: u64,
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            heartbeat_ms: 100,
            election_timeout_min_ms: 210,
            election_timeout_max_ms: 310,
            snapshot_every: 5000,
            keep_logs_behind_snapshot: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagerSection {
    /// How long the backup-manager holder may be down before the role moves.
    pub backup_manager_grace_ms: u64,
    /// A member not heard from for this long is shown `down`.
    pub member_down_after_ms: u64,
}

impl Default for ManagerSection {
    fn default() -> Self {
        ManagerSection {
            backup_manager_grace_ms: 3000,
            member_down_after_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub admin_password: Option<Secret>,
    pub admin_password_file: Option<PathBuf>,
    pub token_ttl_secs: u64,
}

/// How long a session token may live, in seconds: long enough to use, short
/// enough that a stolen one expires, and never near an overflow of `now + ttl`.
pub const TOKEN_TTL_SECS: std::ops::RangeInclusive<u64> = 60..=30 * 24 * 3600;

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            admin_password: None,
            admin_password_file: None,
            token_ttl_secs: 12 * 3600,
        }
    }
}

/// `[postgres]`: the snapshot export (optional).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// `postgres://user:password@host:5432/database` (or `url_file`).
    #[serde(default)]
    pub url: Option<Secret>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Export at least this often (seconds) when something changed.
    #[serde(default = "default_export_interval", alias = "export_interval")]
    pub export_interval_secs: u64,
    /// How many exported snapshots to keep in the `snapshots` table.
    #[serde(default = "default_keep_snapshots")]
    pub keep_snapshots: u32,
}

fn default_export_interval() -> u64 {
    30
}
fn default_keep_snapshots() -> u32 {
    10
}

/// The resolved `[postgres]` section.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub url: Secret,
    pub export_interval: std::time::Duration,
    pub keep_snapshots: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `human` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `bcm=debug,openraft=info`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: "human".into(),
            level: "info,openraft=warn,sled=warn".into(),
        }
    }
}

/// Values given as command-line flags; they override file and environment.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    pub values: Vec<(&'static str, figment::value::Value)>,
}

impl Overrides {
    /// `--id` and `--data-dir`, as `bcm node` and `bcm recover` take them.
    pub fn node(id: Option<u64>, data_dir: Option<&Path>) -> Overrides {
        let mut overrides = Overrides::default();
        if let Some(id) = id {
            overrides.values.push(("node.id", id.into()));
        }
        if let Some(d) = data_dir {
            overrides
                .values
                .push(("node.data_dir", d.display().to_string().into()));
        }
        overrides
    }
}

/// The configuration after validation, with every default resolved.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: u64,
    pub name: String,
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub api_advertise: String,
    pub rpc_listen: SocketAddr,
    pub rpc_advertise: String,
    pub roles: Vec<Role>,
    pub secret: Secret,
    /// `cluster.previous_secret`: opens a CA key sealed before the secret changed.
    pub previous_secret: Option<Secret>,
    pub bootstrap: Vec<String>,
    pub join: Vec<String>,
    pub raft: RaftSection,
    pub manager: ManagerSection,
    pub admin_password: Option<Secret>,
    pub token_ttl_secs: u64,
    pub log: LogSection,
    pub postgres: Option<PostgresConfig>,
    pub http: HttpSection,
    /// The chunk store's directory (used when the node has role `storage`).
    pub storage_dir: PathBuf,
    /// Below this much free space on the data disk the node refuses writes (507).
    pub disk_reserve_bytes: u64,
    /// With `backend = "s3"`: the object store that keeps the chunk store
    /// instead of `storage_dir`.
    pub storage_s3: Option<S3Config>,
    /// Cluster-internal traffic is mutual TLS (`https://` rpc addresses).
    pub cluster_tls: bool,
    /// The API's certificate and key files, when it serves HTTPS.
    pub api_tls: Option<(PathBuf, PathBuf)>,
    /// `api.http_redirect_listen`: plain HTTP redirected to the HTTPS API.
    pub api_redirect_listen: Option<SocketAddr>,
    /// `api.trusted_proxies`, parsed.
    pub trusted_proxies: TrustedProxies,
}

/// Loads the layered configuration.
pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<NodeConfig, ConfigError> {
    let mut figment = Figment::new();
    if let Some(file) = file {
        if !file.exists() {
            return Err(invalid(
                "--config",
                format!("{} does not exist", file.display()),
            ));
        }
        figment = figment.merge(Toml::file(file));
    }
    figment = figment.merge(
        Env::prefixed("BCM_")
            // Only BCM_SECTION__KEY variables are configuration (BCM_SERVER is the CLI's).
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    );
    for (key, value) in overrides.values {
        figment = figment.merge(Serialized::global(key, value));
    }
    let config: Config = figment.extract().map_err(Box::new)?;
    resolve(config)
}

/// Roles by name, each once, in the order given; at least one. The problem, in
/// words, otherwise (the caller names the field).
pub fn parse_roles(names: &[String]) -> Result<Vec<Role>, String> {
    let mut roles = Vec::new();
    for r in names {
        let role = Role::parse(r).ok_or_else(|| {
            format!("unknown role {r:?}; known: manager, backup-manager, storage")
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err("at least one role is needed".into());
    }
    Ok(roles)
}

fn normalize_url(key: &'static str, url: &str) -> Result<String, ConfigError> {
    let url = url.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(invalid(
            key,
            format!("{url:?} must start with http:// or https://"),
        ));
    }
    Ok(url.to_string())
}

fn read_secret_file(key: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key,
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Secret::new(text.trim()))
}

/// `[storage]`'s object-store keys, checked: all there with `backend = "s3"`,
/// none without it.
fn resolve_s3(s: &StorageSection) -> Result<Option<S3Config>, ConfigError> {
    match s.backend.as_deref() {
        None | Some("local") => {
            let stray = [
                ("storage.endpoint", s.endpoint.is_some()),
                ("storage.bucket", s.bucket.is_some()),
                ("storage.access_key_id", s.access_key_id.is_some()),
                ("storage.secret_access_key", s.secret_access_key.is_some()),
                (
                    "storage.secret_access_key_file",
                    s.secret_access_key_file.is_some(),
                ),
            ];
            if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    key,
                    "is for backend = \"s3\"; this node's backend is \"local\"",
                ));
            }
            return Ok(None);
        }
        Some("s3") => {}
        Some(other) => {
            return Err(invalid(
                "storage.backend",
                format!("unknown backend {other:?}; known: local, s3"),
            ))
        }
    }
    let required = |key: &'static str, v: &Option<String>| match v.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(invalid(key, "is required with backend = \"s3\"")),
    };
    let endpoint = normalize_url(
        "storage.endpoint",
        &required("storage.endpoint", &s.endpoint)?,
    )?;
    let bucket = required("storage.bucket", &s.bucket)?;
    let secret_access_key = match (&s.secret_access_key, &s.secret_access_key_file) {
        (Some(k), _) if !k.is_empty() => k.clone(),
        (_, Some(path)) => read_secret_file("storage.secret_access_key_file", path)?,
        _ => {
            return Err(invalid(
                "storage.secret_access_key",
                "is required with backend = \"s3\" (or secret_access_key_file)",
            ))
        }
    };
    let prefix = s.prefix.clone().unwrap_or_default();
    if prefix.starts_with('/') || prefix.contains("//") {
        return Err(invalid(
            "storage.prefix",
            "must not start with / or hold an empty part",
        ));
    }
    Ok(Some(S3Config {
        endpoint,
        bucket,
        region: s.region.clone().unwrap_or_else(|| "garage".into()),
        prefix: prefix.trim_end_matches('/').to_string(),
        access_key_id: required("storage.access_key_id", &s.access_key_id)?,
        secret_access_key,
        path_style: s.path_style.unwrap_or(true),
    }))
}

/// The `cluster.secret` of the example `cluster.toml`: public, so never accepted.
const EXAMPLE_SECRET: &str = "change-me-to-a-long-random-string";

fn resolve(c: Config) -> Result<NodeConfig, ConfigError> {
    let n = c.node;
    if n.id == 0 {
        return Err(invalid(
            "node.id",
            "must be a positive integer (0 is reserved)",
        ));
    }
    let roles = parse_roles(&n.roles).map_err(|problem| invalid("node.roles", problem))?;
    let api_advertise = normalize_url(
        "node.api_advertise",
        &n.api_advertise.unwrap_or_else(|| {
            let scheme = if c.api.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", n.api_listen)
        }),
    )?;
    let rpc_advertise = normalize_url(
        "node.rpc_advertise",
        &n.rpc_advertise.unwrap_or_else(|| {
            // Unset: the scheme of the cluster's other addresses (https:// is
            // mutual TLS), so that a node never speaks plaintext to a TLS cluster.
            let first = c
                .cluster
                .bootstrap
                .iter()
                .chain(c.cluster.join.iter().flatten())
                .next();
            let scheme = if first.is_some_and(|a| a.trim().starts_with("https://")) {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", n.rpc_listen)
        }),
    )?;
    let (secret, secret_key) = match (c.cluster.secret, c.cluster.secret_file) {
        (Some(s), _) if !s.is_empty() => (s, "cluster.secret"),
        (_, Some(path)) => (
            read_secret_file("cluster.secret_file", &path)?,
            "cluster.secret_file",
        ),
        _ => {
            return Err(invalid(
                "cluster.secret",
                "a shared cluster secret is required (cluster.secret or cluster.secret_file)",
            ))
        }
    };
    let previous_secret = match (c.cluster.previous_secret, c.cluster.previous_secret_file) {
        (Some(s), _) if !s.is_empty() => Some(s),
        (_, Some(path)) => Some(read_secret_file("cluster.previous_secret_file", &path)?),
        _ => None,
    };
    if secret.expose() == EXAMPLE_SECRET {
        return Err(invalid(
            secret_key,
            "is the example secret from cluster.toml, which anyone can read: \
             generate one of your own (e.g. `openssl rand -hex 32`), the same on every member",
        ));
    }
    if secret.expose().len() < 16 {
        return Err(invalid("cluster.secret", "must be at least 16 characters"));
    }
    if !secret.expose().bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "cluster.secret",
            "must be printable ASCII without spaces (it travels in an HTTP header)",
        ));
    }
    let bootstrap = c
        .cluster
        .bootstrap
        .iter()
        .map(|u| normalize_url("cluster.bootstrap", u))
        .collect::<Result<Vec<_>, _>>()?;
    let join = match c.cluster.join {
        Some(j) => j
            .iter()
            .map(|u| normalize_url("cluster.join", u))
            .collect::<Result<Vec<_>, _>>()?,
        None => bootstrap.clone(),
    };
    if bootstrap.is_empty() && join.is_empty() {
        return Err(invalid(
            "cluster.bootstrap",
            "set cluster.bootstrap (to form a cluster) or cluster.join (to join one)",
        ));
    }
    // One cluster speaks one way: mutual TLS (https://) or plaintext (http://).
    let cluster_tls = rpc_advertise.starts_with("https://");
    for (key, addrs) in [("cluster.bootstrap", &bootstrap), ("cluster.join", &join)] {
        if let Some(other) = addrs
            .iter()
            .find(|a| a.starts_with("https://") != cluster_tls)
        {
            return Err(invalid(
                key,
                format!(
                    "{other} and node.rpc_advertise {rpc_advertise} differ in scheme: a cluster's internal addresses are all https:// (mutual TLS) or all http:// (plaintext)"
                ),
            ));
        }
    }
    let api_tls = match (c.api.tls_cert, c.api.tls_key) {
        (Some(cert), Some(key)) => {
            if !api_advertise.starts_with("https://") {
                return Err(invalid(
                    "node.api_advertise",
                    format!("{api_advertise} must be https:// when api.tls_cert and api.tls_key are set"),
                ));
            }
            Some((cert, key))
        }
        (None, None) => None,
        (Some(_), None) => return Err(invalid("api.tls_key", "is required with api.tls_cert")),
        (None, Some(_)) => return Err(invalid("api.tls_cert", "is required with api.tls_key")),
    };
    let api_redirect_listen = c.api.http_redirect_listen;
    if let Some(addr) = api_redirect_listen {
        if api_tls.is_none() {
            return Err(invalid(
                "api.http_redirect_listen",
                "applies only with api.tls_cert and api.tls_key (an HTTPS API to redirect to)",
            ));
        }
        if addr == n.api_listen || addr == n.rpc_listen {
            return Err(invalid(
                "api.http_redirect_listen",
                format!("{addr} is node.api_listen or node.rpc_listen: the redirect needs a port of its own"),
            ));
        }
    }
    let r = &c.raft;
    if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms * 2 {
        return Err(invalid(
            "raft.election_timeout_min_ms",
            "must be more than twice raft.heartbeat_ms",
        ));
    }
    if r.election_timeout_max_ms <= r.election_timeout_min_ms {
        return Err(invalid(
            "raft.election_timeout_max_ms",
            "must be greater than raft.election_timeout_min_ms",
        ));
    }
    if r.snapshot_every == 0 {
        return Err(invalid("raft.snapshot_every", "must be positive"));
    }
    let admin_password = match (c.auth.admin_password, c.auth.admin_password_file) {
        (Some(p), _) if !p.is_empty() => Some(p),
        (_, Some(path)) => Some(read_secret_file("auth.admin_password_file", &path)?),
        _ => None,
    };
    if let Some(p) = &admin_password {
        if p.expose().chars().count() < 12 {
            return Err(invalid(
                "auth.admin_password",
                "must be at least 12 characters",
            ));
        }
    }
    if !TOKEN_TTL_SECS.contains(&c.auth.token_ttl_secs) {
        return Err(invalid(
            "auth.token_ttl_secs",
            format!(
                "must be from {} (a minute) to {} (30 days) seconds, not {}",
                TOKEN_TTL_SECS.start(),
                TOKEN_TTL_SECS.end(),
                c.auth.token_ttl_secs
            ),
        ));
    }
    let postgres = match c.postgres {
        None => None,
        Some(pg) => {
            let url = match (pg.url, pg.url_file) {
                (Some(u), _) if !u.is_empty() => u,
                (_, Some(path)) => read_secret_file("postgres.url_file", &path)?,
                _ => {
                    return Err(invalid(
                        "postgres.url",
                        "set postgres.url or postgres.url_file",
                    ))
                }
            };
            let scheme_ok = ["postgres://", "postgresql://"]
                .iter()
                .any(|s| url.expose().starts_with(s));
            if !scheme_ok {
                return Err(invalid(
                    "postgres.url",
                    "must start with postgres:// or postgresql://",
                ));
            }
            if pg.export_interval_secs == 0 {
                return Err(invalid("postgres.export_interval_secs", "must be positive"));
            }
            if pg.keep_snapshots == 0 {
                return Err(invalid("postgres.keep_snapshots", "must be at least 1"));
            }
            Some(PostgresConfig {
                url,
                export_interval: std::time::Duration::from_secs(pg.export_interval_secs),
                keep_snapshots: pg.keep_snapshots,
            })
        }
    };
    let h = &c.http;
    if h.header_timeout_ms < 100 {
        return Err(invalid("http.header_timeout_ms", "must be at least 100"));
    }
    if h.body_timeout_ms < 100 {
        return Err(invalid("http.body_timeout_ms", "must be at least 100"));
    }
    if h.request_timeout_ms < 35_000 {
        // Decommissioning and snapshots may take their full 30 s budget.
        return Err(invalid(
            "http.request_timeout_ms",
            "must be at least 35000 (some operations may take 30 s)",
        ));
    }
    if h.max_connections < 16 {
        return Err(invalid("http.max_connections", "must be at least 16"));
    }
    if h.max_event_streams_per_user == 0 {
        return Err(invalid(
            "http.max_event_streams_per_user",
            "must be at least 1",
        ));
    }
    if c.log.format != "human" && c.log.format != "json" {
        return Err(invalid("log.format", "must be \"human\" or \"json\""));
    }
    let storage_s3 = resolve_s3(&c.storage)?;
    let trusted_proxies = TrustedProxies::parse(&c.api.trusted_proxies)
        .map_err(|problem| invalid("api.trusted_proxies", problem))?;
    let data_dir = n
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("data/node{}", n.id)));
    Ok(NodeConfig {
        id: n.id,
        name: n.name.unwrap_or_else(|| format!("node-{}", n.id)),
        storage_dir: c.storage.dir.unwrap_or_else(|| data_dir.join("store")),
        disk_reserve_bytes: n.disk_reserve_mb.saturating_mul(1024 * 1024),
        storage_s3,
        data_dir,
        api_listen: n.api_listen,
        api_advertise,
        rpc_listen: n.rpc_listen,
        rpc_advertise,
        roles,
        secret,
        previous_secret,
        bootstrap,
        join,
        raft: c.raft,
        manager: c.manager,
        admin_password,
        token_ttl_secs: c.auth.token_ttl_secs,
        log: c.log,
        postgres,
        http: c.http,
        cluster_tls,
        api_tls,
        api_redirect_listen,
        trusted_proxies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("cluster.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const BASE: &str = r#"
[node]
id = 1
[cluster]
secret = "0123456789abcdef"
bootstrap = ["http://127.0.0.1:9080/"]
"#;

    #[test]
    fn defaults_are_resolved() {
        let d = tempfile::tempdir().unwrap();
        let c = load(Some(&write(d.path(), BASE)), Overrides::default()).unwrap();
        assert_eq!(c.name, "node-1");
        assert_eq!(c.api_advertise, "http://127.0.0.1:8080");
        assert_eq!(c.bootstrap, vec!["http://127.0.0.1:9080".to_string()]);
        assert_eq!(c.join, c.bootstrap);
        assert_eq!(c.roles.len(), 3);
        assert_eq!(c.manager.backup_manager_grace_ms, 3000);
    }

    #[test]
    fn flags_override_file() {
        let d = tempfile::tempdir().unwrap();
        let o = Overrides {
            values: vec![("node.id", 7u64.into())],
        };
        let c = load(Some(&write(d.path(), BASE)), o).unwrap();
        assert_eq!(c.id, 7);
    }

    #[test]
    fn clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let bad = BASE.replace("id = 1", "id = 1\nroles = [\"boss\"]");
        let e = load(Some(&write(d.path(), &bad)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("unknown role \"boss\""), "{e}");
        let unknown = BASE.replace("id = 1", "id = 1\nidd = 2");
        let e = load(Some(&write(d.path(), &unknown)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("idd"), "{e}");
        let short = BASE.replace("0123456789abcdef", "short");
        let e = load(Some(&write(d.path(), &short)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("cluster.secret"), "{e}");
        let spaced = BASE.replace("0123456789abcdef", "0123456789 abcdef");
        let e = load(Some(&write(d.path(), &spaced)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("printable ASCII"), "{e}");
    }

    #[test]
    fn trusted_proxies_are_networks() {
        let d = tempfile::tempdir().unwrap();
        let c = load(Some(&write(d.path(), BASE)), Overrides::default()).unwrap();
        assert_eq!(
            c.trusted_proxies,
            TrustedProxies::default(),
            "none by default"
        );
        let with = |list: &str| format!("{BASE}[api]\ntrusted_proxies = {list}\n");
        let c = load(
            Some(&write(d.path(), &with(r#"["10.0.0.0/8", "::1"]"#))),
            Overrides::default(),
        )
        .unwrap();
        assert!(c.trusted_proxies.contains("10.9.8.7".parse().unwrap()));
        assert!(c.trusted_proxies.contains("::1".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
        let e = load(
            Some(&write(d.path(), &with(r#"["10.0.0.0/40"]"#))),
            Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("api.trusted_proxies") && e.to_string().contains("0 to 32"),
            "{e}"
        );
    }

    #[test]
    fn the_http_redirect_needs_an_https_api_and_a_port_of_its_own() {
        let d = tempfile::tempdir().unwrap();
        let plain = format!("{BASE}[api]\nhttp_redirect_listen = \"127.0.0.1:8081\"\n");
        let e = load(Some(&write(d.path(), &plain)), Overrides::default()).unwrap_err();
        assert!(
            e.to_string().contains("api.http_redirect_listen")
                && e.to_string().contains("api.tls_cert"),
            "{e}"
        );
        let https = |listen: &str| {
            format!(
                "{BASE}[api]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nhttp_redirect_listen = \"{listen}\"\n"
            )
        };
        let c = load(
            Some(&write(d.path(), &https("0.0.0.0:8081"))),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.api_redirect_listen, Some("0.0.0.0:8081".parse().unwrap()));
        let e = load(
            Some(&write(d.path(), &https(&c.api_listen.to_string()))),
            Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("a port of its own"), "{e}");
    }

    #[test]
    fn token_lifetime_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let with = |ttl: u64| format!("{BASE}[auth]\ntoken_ttl_secs = {ttl}\n");
        for ttl in [60, 43_200, 30 * 24 * 3600] {
            let c = load(Some(&write(d.path(), &with(ttl))), Overrides::default()).unwrap();
            assert_eq!(c.token_ttl_secs, ttl);
        }
        // 0 would make every token expire as it is issued; a huge one would make
        // tokens live for ever, or overflow when added to the time of issue.
        let names_the_bounds = |ttl: u64, e: ConfigError| {
            let text = e.to_string();
            assert!(
                text.contains("auth.token_ttl_secs")
                    && text.contains("60")
                    && text.contains("2592000"),
                "{ttl}: {text}"
            );
        };
        for ttl in [0, 59, 30 * 24 * 3600 + 1, i64::MAX as u64] {
            let e = load(Some(&write(d.path(), &with(ttl))), Overrides::default()).unwrap_err();
            names_the_bounds(ttl, e);
        }
        let o = Overrides {
            values: vec![("auth.token_ttl_secs", u64::MAX.into())],
        };
        names_the_bounds(u64::MAX, load(Some(&write(d.path(), BASE)), o).unwrap_err());
    }

    #[test]
    fn postgres_section() {
        let d = tempfile::tempdir().unwrap();
        let c = load(Some(&write(d.path(), BASE)), Overrides::default()).unwrap();
        assert!(c.postgres.is_none());
        let pg = format!("{BASE}[postgres]\nurl = \"postgres://u:p@h/db\"\n");
        let c = load(Some(&write(d.path(), &pg)), Overrides::default()).unwrap();
        let p = c.postgres.unwrap();
        assert_eq!(p.export_interval.as_secs(), 30);
        assert_eq!(p.keep_snapshots, 10);
        let alias = format!("{pg}export_interval = 5\n");
        let c = load(Some(&write(d.path(), &alias)), Overrides::default()).unwrap();
        assert_eq!(c.postgres.unwrap().export_interval.as_secs(), 5);
        let bad = format!("{BASE}[postgres]\nurl = \"mysql://h/db\"\n");
        let e = load(Some(&write(d.path(), &bad)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("postgres.url"), "{e}");
        let none = format!("{BASE}[postgres]\nkeep_snapshots = 3\n");
        let e = load(Some(&write(d.path(), &none)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("postgres.url"), "{e}");
    }

    #[test]
    fn storage_s3_section() {
        let d = tempfile::tempdir().unwrap();
        let key_file = d.path().join("s3.key");
        std::fs::write(&key_file, "very-secret-key\n").unwrap();
        let s3 = format!(
            "{BASE}[storage]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:3900/\"\n\
             bucket = \"bcm\"\naccess_key_id = \"GK1\"\nsecret_access_key_file = {:?}\n",
            key_file.display().to_string()
        );
        let c = load(Some(&write(d.path(), &s3)), Overrides::default()).unwrap();
        let s = c.storage_s3.unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.bucket.as_str(), s.region.as_str()),
            ("http://127.0.0.1:3900", "bcm", "garage")
        );
        assert_eq!(s.secret_access_key.expose(), "very-secret-key");
        assert!(s.path_style && s.prefix.is_empty());
        assert!(!format!("{s:?}").contains("very-secret-key"));
        let no_bucket = s3.replace("bucket = \"bcm\"\n", "");
        let e = load(Some(&write(d.path(), &no_bucket)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("storage.bucket: is required"), "{e}");
        let no_key = s3.replace("secret_access_key_file", "other_file");
        let e = load(Some(&write(d.path(), &no_key)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("other_file"), "{e}");
        let ftp = s3.replace("http://127.0.0.1:3900/", "ftp://h");
        let e = load(Some(&write(d.path(), &ftp)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("storage.endpoint"), "{e}");
        let local = format!("{BASE}[storage]\nbucket = \"bcm\"\n");
        let e = load(Some(&write(d.path(), &local)), Overrides::default()).unwrap_err();
        assert!(
            e.to_string().contains("storage.bucket: is for backend"),
            "{e}"
        );
        let odd = format!("{BASE}[storage]\nbackend = \"tape\"\n");
        let e = load(Some(&write(d.path(), &odd)), Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("known: local, s3"), "{e}");
    }

    #[test]
    fn the_example_cluster_toml_is_valid_once_given_a_secret_of_its_own() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster.toml");
        // Started as it is, with the secret everyone can read in it, a node
        // refuses and says which key to change.
        let e = load(Some(&example), Overrides::default()).unwrap_err();
        assert!(
            e.to_string().contains("cluster.secret: is the example"),
            "{e}"
        );
        let own = Overrides {
            values: vec![("cluster.secret", "a-secret-of-our-own-1234".into())],
        };
        let c = load(Some(&example), own).unwrap();
        assert_eq!(c.id, 1);
        assert_eq!(c.bootstrap.len(), 3);
        assert_eq!(c.raft.heartbeat_ms, RaftSection::default().heartbeat_ms);
    }

    #[test]
    fn the_example_secret_is_refused_from_a_file_too() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("secret");
        std::fs::write(&file, "change-me-to-a-long-random-string\n").unwrap();
        let text = BASE.replace(
            "secret = \"0123456789abcdef\"",
            &format!("secret_file = {:?}", file.display().to_string()),
        );
        let e = load(Some(&write(d.path(), &text)), Overrides::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("cluster.secret_file: is the example"),
            "{e}"
        );
        std::fs::write(&file, "a-secret-of-our-own-1234\n").unwrap();
        let c = load(Some(&write(d.path(), &text)), Overrides::default()).unwrap();
        assert_eq!(c.secret.expose(), "a-secret-of-our-own-1234");
    }

    #[test]
    fn secret_never_prints() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
