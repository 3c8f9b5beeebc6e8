//! `bcm nodes ...`: the node registry: list, pre-register, configure, decommission.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use bcm_api::{MemberView, NewNode, NodeFilter, NodeView, Page, Removed, UpdateNode};
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
}

/// The columns of a node, as a member (list, get) or as a registry record (add,
/// update: no voter column of its own, shown as `-`).
const NODE_HEADER: &[&str] = &[
    "ID", "NAME", "STATUS", "VOTER", "ROLES", "ENABLED", "API_ADDR", "LABELS",
];

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
            self.status.as_str().into(),
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
            self.status.as_str().into(),
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
            };
            let UpdateNode {
                roles,
                enabled,
                labels,
            } = &patch;
            if roles.is_none() && enabled.is_none() && labels.is_none() {
                bail!("nothing to change: give --enable, --disable, --role or --label");
            }
            let path = format!("/api/v1/nodes/{id}");
            let node: NodeView = api.send(Method::PATCH, &path, &patch).await?;
            api.show(&node)
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
