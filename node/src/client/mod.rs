//! The operator CLI: talks to any node's public API (which forwards to the leader).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

fn client() -> reqwest::Client {
    reqwest::Client::builder()
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

/// Sends a request to the first server that answers; returns the JSON body or a
/// readable error built from the problem+json answer.
pub async fn call(
    servers: &[String],
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<Value> {
    call_with_header(
        servers,
        method,
        path,
        token,
        body,
        ("x-bcm-client", "cli".into()),
    )
    .await
}

/// [`call`] with one extra request header (e.g. `If-Match`).
pub async fn call_with_header(
    servers: &[String],
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    header: (&str, String),
) -> anyhow::Result<Value> {
    let client = client();
    let mut last = anyhow!("no server given");
    for server in servers {
        let mut req = client
            .request(method.clone(), format!("{server}{path}"))
            .header(header.0, &header.1);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                last = anyhow!("{server} is unreachable: {e}");
                continue;
            }
        };
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let detail = value
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("no detail");
        if status.as_u16() == 503 {
            last = anyhow!("{server}: {detail} (HTTP 503)");
            continue;
        }
        bail!("{server}: {detail} (HTTP {})", status.as_u16());
    }
    Err(last)
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

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let password = match args.password {
        Some(p) => p,
        None => read_password()?,
    };
    let servers = servers(&args.server);
    let body = serde_json::json!({"username": args.username, "password": password});
    let resp = call(
        &servers,
        reqwest::Method::POST,
        "/api/v1/auth/login",
        None,
        Some(&body),
    )
    .await?;
    let token = resp
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the server answered without a token"))?;
    let path = token_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let stored = StoredToken {
        server: args.server.server.clone(),
        token: token.to_string(),
    };
    write_private(&path, &serde_json::to_vec_pretty(&stored)?)?;
    println!(
        "logged in as {} (token kept in {}, valid until {})",
        args.username,
        path.display(),
        resp.get("expires_at")
            .and_then(Value::as_str)
            .unwrap_or("?")
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
    let revoked = call(
        &servers,
        reqwest::Method::POST,
        "/api/v1/auth/logout",
        Some(&stored.token),
        None,
    )
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
        Err(e) if e.to_string().contains("(HTTP 401)") => {
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

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// A token from `BCM_TOKEN`, from `bcm login`, or by logging in with `BCM_PASSWORD`.
pub async fn token(servers_list: &[String]) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("BCM_TOKEN") {
        return Ok(t);
    }
    if let Ok(p) = std::env::var("BCM_PASSWORD") {
        let user = std::env::var("BCM_USER").unwrap_or_else(|_| "admin".into());
        let body = serde_json::json!({"username": user, "password": p});
        let resp = call(
            servers_list,
            reqwest::Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&body),
        )
        .await?;
        return resp
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the server answered without a token"));
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
    let c = call(
        &servers,
        reqwest::Method::GET,
        "/api/v1/cluster",
        Some(&token),
        None,
    )
    .await?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(());
    }
    print!("{}", render_status(&c));
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The cluster as a table.
pub fn render_status(c: &Value) -> String {
    let leader = c["leader_id"].as_u64();
    let bm = &c["backup_manager"];
    let mut out = format!(
        "cluster {}  term {}  leader {}  commit {}  backup-manager {}\n\n",
        s(&c["cluster_id"]),
        s(&c["term"]),
        s(&c["leader_id"]),
        s(&c["commit_index"]),
        if bm.is_null() {
            "-".to_string()
        } else {
            format!("node {} (epoch {})", s(&bm["node_id"]), s(&bm["epoch"]))
        }
    );
    let header = [
        "ID", "NAME", "ROLE", "STATUS", "VOTER", "ROLES", "API", "CONTACT", "MATCHED",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for m in c["members"].as_array().cloned().unwrap_or_default() {
        let id = m["id"].as_u64();
        let mut role = Vec::new();
        if id.is_some() && id == leader {
            role.push("cluster-manager");
        }
        if id.is_some() && id == bm["node_id"].as_u64() {
            role.push("backup-manager");
        }
        let roles = m["roles"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        rows.push(vec![
            s(&m["id"]),
            s(&m["name"]),
            if role.is_empty() {
                "-".into()
            } else {
                role.join("+")
            },
            s(&m["status"]),
            if m["voter"].as_bool() == Some(true) {
                "voter".into()
            } else {
                "learner".into()
            },
            roles,
            s(&m["api_addr"]),
            m["last_contact_ms"]
                .as_u64()
                .map(|ms| format!("{ms}ms"))
                .unwrap_or("-".into()),
            s(&m["matched_index"]),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let ex = &c["snapshot_export"];
    if ex.is_object() {
        out.push_str(&format!(
            "\npostgres export: index {} at {}, {} entries behind",
            s(&ex["last_index"]),
            s(&ex["last_at"]),
            s(&ex["lag"])
        ));
        if !ex["last_error"].is_null() {
            out.push_str(&format!("; FAILING: {}", s(&ex["last_error"])));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_table_marks_roles() {
        let c = serde_json::json!({
            "cluster_id": "abc", "term": 3, "leader_id": 1, "commit_index": 10,
            "backup_manager": {"node_id": 2, "epoch": 1},
            "members": [
                {"id": 1, "name": "node-1", "status": "up", "voter": true, "roles": ["manager"], "api_addr": "http://a", "last_contact_ms": 0, "matched_index": 10},
                {"id": 2, "name": "node-2", "status": "down", "voter": false, "roles": ["storage"], "api_addr": "http://b", "last_contact_ms": null, "matched_index": null}
            ]
        });
        let t = super::render_status(&c);
        assert!(t.contains("backup-manager node 2 (epoch 1)"), "{t}");
        let line1 = t.lines().find(|l| l.starts_with("1 ")).unwrap();
        assert!(
            line1.contains("cluster-manager") && line1.contains("voter"),
            "{line1}"
        );
        assert!(!t.contains("postgres export"), "{t}");
        let line2 = t.lines().find(|l| l.starts_with("2 ")).unwrap();
        assert!(
            line2.contains("backup-manager") && line2.contains("learner") && line2.contains("down"),
            "{line2}"
        );
        let mut c = c;
        c["snapshot_export"] = serde_json::json!({"last_index": 9, "last_at": "2026-11-25T10:00:00Z", "last_error": "cannot reach PostgreSQL", "lag": 1});
        let t = super::render_status(&c);
        assert!(
            t.contains("postgres export: index 9 at 2026-11-25T10:00:00Z, 1 entries behind; FAILING: cannot reach PostgreSQL"),
            "{t}"
        );
    }
}
