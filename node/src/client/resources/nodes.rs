//! `bcm nodes ...`: the node registry: list, pre-register, configure, decommission.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use bcm_api::{ClusterView, MemberView, NewNode, NodeFilter, NodeView, Page, Removed, UpdateNode};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::{joined, print_json, Api, Common, Table};

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
    /// Put a node into maintenance: leadership and the backup-manager role move to
    /// other nodes (waits until they have, unless --no-wait).
    Drain {
        id: u64,
        /// Return once the change is recorded, without waiting for the moves.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the moves, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Take a node out of maintenance: it may lead and hold the backup-manager
    /// role again.
    Undrain {
        id: u64,
    },
}

/// The columns of a node, as a member (list, get) or as a registry record (add,
/// update: no voter column of its own, shown as `-`).
const NODE_HEADER: &[&str] = &[
    "ID", "NAME", "STATUS", "VOTER", "ROLES", "ENABLED", "API_ADDR", "LABELS",
];

/// The status, with `(maintenance)` after it while the node is drained.
fn status_cell(status: &str, maintenance: bool) -> String {
    if maintenance {
        format!("{status} (maintenance)")
    } else {
        status.to_string()
    }
}

fn labels_cell(labels: &BTreeMap<String, String>) -> String {
    joined(labels.iter().map(|(k, v)| format!("{k}={v}")))
}

impl Table for MemberView {
    fn header() -> &'static [&'static str] {
        NODE_HEADER
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.name.clone(),
            status_cell(self.status.as_str(), self.maintenance),
            self.voter.to_string(),
            joined(self.roles.iter().map(|r| r.as_str())),
            self.enabled.to_string(),
            self.api_addr.clone(),
            labels_cell(&self.labels),
        ]
    }
}

impl Table for NodeView {
    fn header() -> &'static [&'static str] {
        NODE_HEADER
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.name.clone(),
            status_cell(self.status.as_str(), self.maintenance),
            "-".into(),
            joined(self.roles.iter().map(|r| r.as_str())),
            self.enabled.to_string(),
            self.api_addr.clone(),
            labels_cell(&self.labels),
        ]
    }
}

/// `--label k=v`, repeated: all of the node's labels.
fn parse_labels(labels: Vec<String>) -> anyhow::Result<BTreeMap<String, String>> {
    labels
        .into_iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("--label takes key=value, not {l:?}"))
        })
        .collect()
}

pub async fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.common).await?;
    match args.command {
        NodesCmd::List { q, role, status } => {
            let filter = NodeFilter {
                q,
                role,
                status,
                enabled: None,
            };
            let page: Page<MemberView> = api.list("/api/v1/nodes", &filter).await?;
            api.show_page(&page)
        }
        NodesCmd::Get { id } => {
            let node: MemberView = api.get(&format!("/api/v1/nodes/{id}")).await?;
            api.show(&node)
        }
        NodesCmd::Add {
            id,
            name,
            api: api_addr,
            rpc: rpc_addr,
            roles,
        } => {
            let new = NewNode {
                id,
                name,
                api_addr,
                rpc_addr,
                roles,
            };
            let node: NodeView = api.send(Method::POST, "/api/v1/nodes", &new).await?;
            api.show(&node)
        }
        NodesCmd::Update {
            id,
            enable,
            disable,
            roles,
            labels,
        } => {
            let patch = UpdateNode {
                roles: (!roles.is_empty()).then_some(roles),
                enabled: (enable || disable).then_some(enable),
                labels: if labels.is_empty() {
                    None
                } else {
                    Some(parse_labels(labels)?)
                },
                maintenance: None,
            };
            let UpdateNode {
                roles,
                enabled,
                labels,
                ..
            } = &patch;
            if roles.is_none() && enabled.is_none() && labels.is_none() {
                bail!("nothing to change: give --enable, --disable, --role or --label");
            }
            let path = format!("/api/v1/nodes/{id}");
            let node: NodeView = api.send(Method::PATCH, &path, &patch).await?;
            api.show(&node)
        }
        NodesCmd::Drain {
            id,
            no_wait,
            timeout,
        } => {
            set_maintenance(&api, id, true).await?;
            if no_wait {
                println!("node {id} is in maintenance");
                return Ok(());
            }
            wait_drained(&api, id, std::time::Duration::from_secs(timeout)).await
        }
        NodesCmd::Undrain { id } => {
            set_maintenance(&api, id, false).await?;
            println!("node {id} is out of maintenance: it may lead and hold the backup-manager role again");
            Ok(())
        }
        NodesCmd::Remove { id } => {
            let req = api.request(Method::DELETE, format!("/api/v1/nodes/{id}"));
            let removed: Removed = api.call(req).await?;
            if api.json {
                print_json(&removed)
            } else {
                println!("node {id} decommissioned");
                Ok(())
            }
        }
    }
}

async fn set_maintenance(api: &Api, id: u64, on: bool) -> anyhow::Result<NodeView> {
    let patch = UpdateNode {
        roles: None,
        enabled: None,
        labels: None,
        maintenance: Some(on),
    };
    api.send(Method::PATCH, &format!("/api/v1/nodes/{id}"), &patch)
        .await
}

/// Waits until neither leadership nor the backup-manager role is on node `id`,
/// saying what still waits.
async fn wait_drained(api: &Api, id: u64, timeout: std::time::Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let mut said = String::new();
    loop {
        let view: ClusterView = api.get("/api/v1/cluster").await?;
        let mut waiting = Vec::new();
        match view.leader_id {
            Some(l) if l == id => waiting.push("leadership".to_string()),
            None => waiting.push("an elected leader".to_string()),
            Some(_) => {}
        }
        if view.backup_manager.is_some_and(|b| b.node_id == id) {
            waiting.push("the backup-manager role".to_string());
        }
        if waiting.is_empty() {
            println!(
                "node {id} is drained: node {} leads{}",
                view.leader_id.unwrap_or_default(),
                view.backup_manager
                    .map(|b| format!(
                        ", node {} is the backup manager (epoch {})",
                        b.node_id, b.epoch
                    ))
                    .unwrap_or_default()
            );
            return Ok(());
        }
        let now = format!(
            "waiting for {} to move off node {id}",
            waiting.join(" and ")
        );
        if now != said {
            eprintln!("{now}");
            said = now;
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "node {id} is in maintenance, but after {}s still {}; no other node can take it \
                 (are the other voters up, does another node have role backup-manager?)",
                timeout.as_secs(),
                said.trim_start_matches("waiting for ")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
