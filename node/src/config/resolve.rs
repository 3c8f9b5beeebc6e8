//! Turning the layered configuration into a checked `NodeConfig`: every key
//! validated, defaults derived, secrets and certificates read.

use std::path::{Path, PathBuf};

use super::{
    invalid, parse_roles, Config, ConfigError, NodeConfig, PostgresConfig, S3Config, Secret,
    StorageSection, TOKEN_TTL_SECS,
};
use crate::net::client_addr::TrustedProxies;

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

pub(super) fn resolve(c: Config) -> Result<NodeConfig, ConfigError> {
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
