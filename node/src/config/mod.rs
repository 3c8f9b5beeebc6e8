//! Node configuration: `cluster.toml` < environment (`BCM_SECTION__KEY`) < flags.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bcm_raft_store::Role;

use crate::net::client_addr::TrustedProxies;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod resolve;
#[cfg(test)]
mod tests;

use resolve::resolve;

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
