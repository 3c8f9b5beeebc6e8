//! `bcm users|groups|nodes|config ...`: the resources of the API from the command
//! line. Tables for people, `--output json` for scripts; errors exit non-zero with
//! the server's explanation.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::cli::{call, read_password, servers, token, ServerArgs};

#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    pub server: ServerArgs,
    /// `table` (default) or `json`.
    #[arg(long, short, global = true, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

#[derive(Args)]
pub struct UsersArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: UsersCmd,
}

#[derive(Subcommand)]
enum UsersCmd {
    /// List users (`--q` searches names and ids).
    List {
        #[arg(long)]
        q: Option<String>,
        #[arg(long)]
        enabled: Option<bool>,
        #[arg(long)]
        group: Option<String>,
    },
    /// Show one user.
    Get { id: u64 },
    /// Create a user; the password is read from standard input unless given.
    Create {
        name: String,
        #[arg(long, env = "BCM_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// A group to add the user to (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Change a user.
    Update {
        id: u64,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        /// Set a new password (read from standard input when the value is `-`).
        #[arg(long)]
        password: Option<String>,
        /// Replace the user's groups (comma-separated; empty for none).
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<String>>,
    },
    /// Delete a user.
    Delete { id: u64 },
}

#[derive(Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: GroupsCmd,
}

#[derive(Subcommand)]
enum GroupsCmd {
    List,
    Get {
        name: String,
    },
    /// Create a custom group with permissions (repeat --permission).
    Create {
        name: String,
        #[arg(long = "permission")]
        permissions: Vec<String>,
    },
    /// Replace a custom group's permissions.
    Update {
        name: String,
        #[arg(long = "permission")]
        permissions: Vec<String>,
    },
    Delete {
        name: String,
    },
}

#[derive(Args)]
pub struct NodesArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: NodesCmd,
}

#[derive(Subcommand)]
enum NodesCmd {
    List {
        #[arg(long)]
        q: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        status: Option<String>,
    },
    Get {
        id: u64,
    },
    /// Pre-register a node that will join later.
    Add {
        id: u64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        api: String,
        #[arg(long)]
        rpc: String,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Configure roles, enablement or labels (`--label k=v`, repeatable, replaces all).
    Update {
        id: u64,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Decommission a node (removes it from the Raft membership).
    Remove {
        id: u64,
    },
}

#[derive(Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: ConfigCmd,
}

#[derive(Subcommand)]
enum ConfigCmd {
    List {
        #[arg(long)]
        q: Option<String>,
    },
    Get {
        key: String,
    },
    /// Set KEY to VALUE (JSON; a bare word is taken as a string).
    Set {
        key: String,
        value: String,
        /// Only if the current version is this (compare-and-set; 0: only if absent).
        #[arg(long)]
        if_version: Option<u64>,
    },
    Delete {
        key: String,
        #[arg(long)]
        if_version: Option<u64>,
    },
}

#[derive(Args)]
pub struct PlansArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: PlansCmd,
}

#[derive(Subcommand)]
enum PlansCmd {
    List {
        #[arg(long)]
        q: Option<String>,
        /// Plans of this source node.
        #[arg(long)]
        node: Option<u64>,
    },
    Get {
        id: u64,
    },
    /// Create a plan: what to back up (--path, repeatable), from which node, when.
    Create {
        name: String,
        #[arg(long)]
        node: u64,
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
        /// A cron expression, e.g. "0 3 * * *"; none: on demand only.
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long)]
        keep_last: Option<u32>,
        #[arg(long)]
        replicas: Option<u32>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    Update {
        id: u64,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        node: Option<u64>,
        #[arg(long = "path")]
        paths: Vec<String>,
        #[arg(long, conflicts_with = "no_schedule")]
        schedule: Option<String>,
        /// Remove the schedule (on demand only).
        #[arg(long)]
        no_schedule: bool,
        #[arg(long)]
        keep_last: Option<u32>,
        #[arg(long)]
        replicas: Option<u32>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    Delete {
        id: u64,
    },
}

#[derive(Args)]
pub struct BackupsArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: BackupsCmd,
}

#[derive(Subcommand)]
enum BackupsCmd {
    List {
        #[arg(long)]
        q: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        plan: Option<u64>,
        #[arg(long)]
        node: Option<u64>,
    },
    Get {
        id: u64,
    },
    /// Start a backup now: of a plan (--plan) or ad hoc (--node and --path).
    Start {
        #[arg(long, conflicts_with_all = ["node", "paths"])]
        plan: Option<u64>,
        #[arg(long)]
        node: Option<u64>,
        #[arg(long = "path")]
        paths: Vec<String>,
    },
    /// Delete a backup and its data.
    Delete {
        id: u64,
    },
    /// Restore a backup to a node and path.
    Restore {
        id: u64,
        #[arg(long)]
        node: u64,
        #[arg(long)]
        path: String,
    },
}

#[derive(Args)]
pub struct RestoresArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: RestoresCmd,
}

#[derive(Subcommand)]
enum RestoresCmd {
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        backup: Option<u64>,
        #[arg(long)]
        node: Option<u64>,
    },
    Get {
        id: u64,
    },
}

struct Session {
    servers: Vec<String>,
    token: String,
    json: bool,
}

impl Session {
    async fn new(common: &Common) -> anyhow::Result<Session> {
        let servers = servers(&common.server);
        let token = token(&servers).await?;
        Ok(Session {
            servers,
            token,
            json: common.output == "json",
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        call(&self.servers, method, path, Some(&self.token), body).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_version: Option<u64>,
    ) -> anyhow::Result<Value> {
        match if_version {
            None => self.call(method, path, body).await,
            Some(v) => {
                let header = if v == 0 {
                    ("if-none-match", "*".to_string())
                } else {
                    ("if-match", format!("\"{v}\""))
                };
                crate::cli::call_with_header(
                    &self.servers,
                    method,
                    path,
                    Some(&self.token),
                    body,
                    header,
                )
                .await
            }
        }
    }

    /// Deletes `path`; says what went, unless the output is JSON.
    async fn delete(&self, path: &str, what: &str, if_version: Option<u64>) -> anyhow::Result<()> {
        self.call_with(Method::DELETE, path, None, if_version)
            .await?;
        if !self.json {
            println!("{what} deleted");
        }
        Ok(())
    }

    /// Prints one object, or a list as a table with `columns`.
    fn show(&self, value: &Value, columns: &[&str]) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
            return;
        }
        let items: Vec<Value> = match value.get("items").and_then(Value::as_array) {
            Some(items) => items.clone(),
            None => vec![value.clone()],
        };
        print!("{}", table(&items, columns));
        if let Some(total) = value.get("total") {
            if total.as_u64().unwrap_or(0) as usize > items.len() {
                println!(
                    "({} of {} shown; use --output json with limit/offset for more)",
                    items.len(),
                    total
                );
            }
        }
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// A plain text table: one header line, then one line per item.
pub fn table(items: &[Value], columns: &[&str]) -> String {
    let mut rows: Vec<Vec<String>> = vec![columns.iter().map(|c| c.to_uppercase()).collect()];
    for item in items {
        rows.push(columns.iter().map(|c| cell(&item[*c])).collect());
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const USER_COLUMNS: &[&str] = &["id", "name", "enabled", "groups"];
const GROUP_COLUMNS: &[&str] = &["name", "builtin", "permissions"];
const NODE_COLUMNS: &[&str] = &[
    "id", "name", "status", "voter", "roles", "enabled", "api_addr", "labels",
];
const CONFIG_COLUMNS: &[&str] = &["key", "version", "value"];
const PLAN_COLUMNS: &[&str] = &[
    "id",
    "name",
    "source_node",
    "schedule",
    "keep_last",
    "replicas",
    "enabled",
    "paths",
];
const BACKUP_COLUMNS: &[&str] = &[
    "id",
    "status",
    "plan_name",
    "source_node",
    "size_bytes",
    "storage_nodes",
    "paths",
];
const RESTORE_COLUMNS: &[&str] = &["id", "status", "backup", "target_node", "target_path"];

pub async fn plans(args: PlansArgs) -> anyhow::Result<()> {
    let s = Session::new(&args.common).await?;
    match args.command {
        PlansCmd::List { q, node } => {
            let qs = query(&[("q", q), ("node", node.map(|n| n.to_string()))]);
            s.show(
                &s.call(Method::GET, &format!("/api/v1/plans{qs}"), None)
                    .await?,
                PLAN_COLUMNS,
            );
        }
        PlansCmd::Get { id } => s.show(
            &s.call(Method::GET, &format!("/api/v1/plans/{id}"), None)
                .await?,
            PLAN_COLUMNS,
        ),
        PlansCmd::Create {
            name,
            node,
            paths,
            schedule,
            keep_last,
            replicas,
            disabled,
        } => {
            let mut body = json!({"name": name, "source_node": node, "paths": paths, "schedule": schedule, "enabled": !disabled});
            if let Some(k) = keep_last {
                body["keep_last"] = json!(k);
            }
            if let Some(r) = replicas {
                body["replicas"] = json!(r);
            }
            s.show(
                &s.call(Method::POST, "/api/v1/plans", Some(&body)).await?,
                PLAN_COLUMNS,
            );
        }
        PlansCmd::Update {
            id,
            name,
            node,
            paths,
            schedule,
            no_schedule,
            keep_last,
            replicas,
            enable,
            disable,
        } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(n) = node {
                body.insert("source_node".into(), json!(n));
            }
            if !paths.is_empty() {
                body.insert("paths".into(), json!(paths));
            }
            if let Some(c) = schedule {
                body.insert("schedule".into(), json!(c));
            }
            if no_schedule {
                body.insert("schedule".into(), Value::Null);
            }
            if let Some(k) = keep_last {
                body.insert("keep_last".into(), json!(k));
            }
            if let Some(r) = replicas {
                body.insert("replicas".into(), json!(r));
            }
            if enable || disable {
                body.insert("enabled".into(), json!(enable));
            }
            if body.is_empty() {
                bail!("nothing to change");
            }
            let v = s
                .call(
                    Method::PATCH,
                    &format!("/api/v1/plans/{id}"),
                    Some(&Value::Object(body)),
                )
                .await?;
            s.show(&v, PLAN_COLUMNS);
        }
        PlansCmd::Delete { id } => {
            s.delete(&format!("/api/v1/plans/{id}"), &format!("plan {id}"), None)
                .await?;
        }
    }
    Ok(())
}

pub async fn backups(args: BackupsArgs) -> anyhow::Result<()> {
    let s = Session::new(&args.common).await?;
    match args.command {
        BackupsCmd::List {
            q,
            status,
            plan,
            node,
        } => {
            let qs = query(&[
                ("q", q),
                ("status", status),
                ("plan", plan.map(|p| p.to_string())),
                ("node", node.map(|n| n.to_string())),
            ]);
            s.show(
                &s.call(Method::GET, &format!("/api/v1/backups{qs}"), None)
                    .await?,
                BACKUP_COLUMNS,
            );
        }
        BackupsCmd::Get { id } => s.show(
            &s.call(Method::GET, &format!("/api/v1/backups/{id}"), None)
                .await?,
            BACKUP_COLUMNS,
        ),
        BackupsCmd::Start { plan, node, paths } => {
            let body = match (plan, node) {
                (Some(p), _) => json!({ "plan": p }),
                (None, Some(n)) if !paths.is_empty() => json!({"source_node": n, "paths": paths}),
                _ => bail!("give --plan ID, or --node ID and at least one --path"),
            };
            s.show(
                &s.call(Method::POST, "/api/v1/backups", Some(&body)).await?,
                BACKUP_COLUMNS,
            );
        }
        BackupsCmd::Delete { id } => {
            s.delete(
                &format!("/api/v1/backups/{id}"),
                &format!("backup {id}"),
                None,
            )
            .await?;
        }
        BackupsCmd::Restore { id, node, path } => {
            let body = json!({"target_node": node, "target_path": path});
            let v = s
                .call(
                    Method::POST,
                    &format!("/api/v1/backups/{id}/restore"),
                    Some(&body),
                )
                .await?;
            s.show(&v, RESTORE_COLUMNS);
        }
    }
    Ok(())
}

pub async fn restores(args: RestoresArgs) -> anyhow::Result<()> {
    let s = Session::new(&args.common).await?;
    match args.command {
        RestoresCmd::List {
            status,
            backup,
            node,
        } => {
            let qs = query(&[
                ("status", status),
                ("backup", backup.map(|b| b.to_string())),
                ("node", node.map(|n| n.to_string())),
            ]);
            s.show(
                &s.call(Method::GET, &format!("/api/v1/restores{qs}"), None)
                    .await?,
                RESTORE_COLUMNS,
            );
        }
        RestoresCmd::Get { id } => s.show(
            &s.call(Method::GET, &format!("/api/v1/restores/{id}"), None)
                .await?,
            RESTORE_COLUMNS,
        ),
    }
    Ok(())
}

pub async fn users(args: UsersArgs) -> anyhow::Result<()> {
    let s = Session::new(&args.common).await?;
    match args.command {
        UsersCmd::List { q, enabled, group } => {
            let qs = query(&[
                ("q", q),
                ("enabled", enabled.map(|e| e.to_string())),
                ("group", group),
            ]);
            s.show(
                &s.call(Method::GET, &format!("/api/v1/users{qs}"), None)
                    .await?,
                USER_COLUMNS,
            );
        }
        UsersCmd::Get { id } => s.show(
            &s.call(Method::GET, &format!("/api/v1/users/{id}"), None)
                .await?,
            USER_COLUMNS,
        ),
        UsersCmd::Create {
            name,
            password,
            groups,
        } => {
            let password = match password {
                Some(p) => p,
                None => read_password()?,
            };
            let body = json!({"name": name, "password": password, "groups": groups});
            s.show(
                &s.call(Method::POST, "/api/v1/users", Some(&body)).await?,
                USER_COLUMNS,
            );
        }
        UsersCmd::Update {
            id,
            enable,
            disable,
            password,
            groups,
        } => {
            let mut body = Map::new();
            if enable || disable {
                body.insert("enabled".into(), json!(enable));
            }
            if let Some(p) = password {
                let p = if p == "-" { read_password()? } else { p };
                body.insert("password".into(), json!(p));
            }
            if let Some(g) = groups {
                let g: Vec<String> = g.into_iter().filter(|g| !g.is_empty()).collect();
                body.insert("groups".into(), json!(g));
            }
            if body.is_empty() {
                bail!("nothing to change: give --enable, --disable, --password or --groups");
            }
            let v = s
                .call(
                    Method::PATCH,
                    &format!("/api/v1/users/{id}"),
                    Some(&Value::Object(body)),
                )
                .await?;
            s.show(&v, USER_COLUMNS);
        }
        UsersCmd::Delete { id } => {
            s.delete(&format!("/api/v1/users/{id}"), &format!("user {id}"), None)
                .await?;
        }
    }
    Ok(())
}

pub async fn groups(args: GroupsArgs) -> anyhow::Result<()> {
    let s = Session::new(&args.common).await?;
    match args.command {
        GroupsCmd::List => s.show(
            &s.call(Method::GET, "/api/v1/groups", None).await?,
            GROUP_COLUMNS,
        ),
        GroupsCmd::Get { name } => s.show(
            &s.call(
                Method::GET,
                &format!("/api/v1/groups/{}", urlencode(&name)),
                None,
            )
            .await?,
            GROUP_COLUMNS,
        ),
        GroupsCmd::Create { name, permissions } => {
            let body = json!({"name": name, "permissions": permissions});
            s.show(
                &s.call(Method::POST, "/api/v1/groups", Some(&body)).await?,
                GROUP_COLUMNS,
            );
        }
        GroupsCmd::Update { name, permissions } => {
            let body = json!({"permissions": permissions});
            let v = s
                .call(
                    Method::PATCH,
                    &format!("/api/v1/groups/{}", urlencode(&name)),
                    Some(&body),
                )
                .await?;
            s.show(&v, GROUP_COLUMNS);
        }
        GroupsCmd::Delete { name } => {
            s.delete(
                &format!("/api/v1/groups/{}", urlencode(&name)),
                &format!("group {name}"),
                None,
            )
            .await?;
        }
    }
    Ok(())
}

pub async fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    let s = Session::new(&args.common).await?;
    match args.command {
        NodesCmd::List { q, role, status } => {
            let qs = query(&[("q", q), ("role", role), ("status", status)]);
            s.show(
                &s.call(Method::GET, &format!("/api/v1/nodes{qs}"), None)
                    .await?,
                NODE_COLUMNS,
            );
        }
        NodesCmd::Get { id } => s.show(
            &s.call(Method::GET, &format!("/api/v1/nodes/{id}"), None)
                .await?,
            NODE_COLUMNS,
        ),
        NodesCmd::Add {
            id,
            name,
            api,
            rpc,
            roles,
        } => {
            let mut body = json!({"id": id, "api_addr": api, "rpc_addr": rpc, "roles": roles});
            if let Some(n) = name {
                body["name"] = json!(n);
            }
            s.show(
                &s.call(Method::POST, "/api/v1/nodes", Some(&body)).await?,
                NODE_COLUMNS,
            );
        }
        NodesCmd::Update {
            id,
            enable,
            disable,
            roles,
            labels,
        } => {
            let mut body = Map::new();
            if enable || disable {
                body.insert("enabled".into(), json!(enable));
            }
            if !roles.is_empty() {
                body.insert("roles".into(), json!(roles));
            }
            if !labels.is_empty() {
                let mut map = Map::new();
                for l in labels {
                    let (k, v) = l
                        .split_once('=')
                        .ok_or_else(|| anyhow!("--label takes key=value, not {l:?}"))?;
                    map.insert(k.to_string(), json!(v));
                }
                body.insert("labels".into(), Value::Object(map));
            }
            if body.is_empty() {
                bail!("nothing to change: give --enable, --disable, --role or --label");
            }
            let v = s
                .call(
                    Method::PATCH,
                    &format!("/api/v1/nodes/{id}"),
                    Some(&Value::Object(body)),
                )
                .await?;
            s.show(&v, NODE_COLUMNS);
        }
        NodesCmd::Remove { id } => {
            let v = s
                .call(Method::DELETE, &format!("/api/v1/nodes/{id}"), None)
                .await?;
            if s.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("node {id} decommissioned");
            }
        }
    }
    Ok(())
}

pub async fn config(args: ConfigArgs) -> anyhow::Result<()> {
    let s = Session::new(&args.common).await?;
    let path = |key: &str| {
        format!(
            "/api/v1/config/{}",
            key.split('/').map(urlencode).collect::<Vec<_>>().join("/")
        )
    };
    match args.command {
        ConfigCmd::List { q } => {
            let qs = query(&[("q", q)]);
            s.show(
                &s.call(Method::GET, &format!("/api/v1/config{qs}"), None)
                    .await?,
                CONFIG_COLUMNS,
            );
        }
        ConfigCmd::Get { key } => s.show(
            &s.call(Method::GET, &path(&key), None).await?,
            CONFIG_COLUMNS,
        ),
        ConfigCmd::Set {
            key,
            value,
            if_version,
        } => {
            let value: Value = serde_json::from_str(&value).unwrap_or(Value::String(value));
            let body = json!({ "value": value });
            let v = s
                .call_with(Method::PUT, &path(&key), Some(&body), if_version)
                .await?;
            s.show(&v, CONFIG_COLUMNS);
        }
        ConfigCmd::Delete { key, if_version } => {
            s.delete(&path(&key), &key, if_version).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_flatten() {
        let items = vec![
            json!({"id": 1, "name": "admin", "enabled": true, "groups": ["admin"]}),
            json!({"id": 12, "name": "al", "enabled": false, "groups": ["viewer", "ops"]}),
        ];
        let t = table(&items, USER_COLUMNS);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID  NAME   ENABLED  GROUPS");
        assert_eq!(lines[2], "12  al     false    viewer,ops");
    }

    #[test]
    fn query_strings_are_encoded() {
        assert_eq!(
            query(&[("q", Some("a b&c".into())), ("x", None)]),
            "?q=a%20b%26c"
        );
        assert_eq!(query(&[("q", None)]), "");
    }
}
