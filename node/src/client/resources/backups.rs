//! `bcm backups ...`: the catalog: list, start, delete, and restore a backup.

use anyhow::bail;
use bcm_api::time::human_bytes;
use bcm_api::{BackupFilter, BackupView, NewBackup, NewRestore, Page, RestoreView};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::{joined, or_dash, Api, Common, Table};

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

impl Table for BackupView {
    fn header() -> &'static [&'static str] {
        &[
            "ID",
            "STATUS",
            "PLAN_NAME",
            "SOURCE_NODE",
            "SIZE_BYTES",
            "STORAGE_NODES",
            "PATHS",
        ]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.status.as_str().into(),
            or_dash(self.plan_name.as_ref()),
            self.source_node.to_string(),
            or_dash(self.size_bytes.map(human_bytes)),
            joined(&self.storage_nodes),
            joined(&self.paths),
        ]
    }
}

pub async fn backups(args: BackupsArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.common).await?;
    match args.command {
        BackupsCmd::List {
            q,
            status,
            plan,
            node,
        } => {
            let filter = BackupFilter {
                q,
                status,
                plan,
                node,
            };
            let page: Page<BackupView> = api.list("/api/v1/backups", &filter).await?;
            api.show_page(&page)
        }
        BackupsCmd::Get { id } => {
            let backup: BackupView = api.get(&format!("/api/v1/backups/{id}")).await?;
            api.show(&backup)
        }
        BackupsCmd::Start { plan, node, paths } => {
            let new = match (plan, node) {
                (Some(p), _) => NewBackup {
                    plan: Some(p),
                    ..Default::default()
                },
                (None, Some(n)) if !paths.is_empty() => NewBackup {
                    source_node: Some(n),
                    paths: Some(paths),
                    ..Default::default()
                },
                _ => bail!("give --plan ID, or --node ID and at least one --path"),
            };
            let backup: BackupView = api.send(Method::POST, "/api/v1/backups", &new).await?;
            api.show(&backup)
        }
        BackupsCmd::Delete { id } => {
            let req = api.request(Method::DELETE, format!("/api/v1/backups/{id}"));
            api.delete(req, &format!("backup {id}")).await
        }
        BackupsCmd::Restore { id, node, path } => {
            let new = NewRestore {
                target_node: node,
                target_path: path,
            };
            let path = format!("/api/v1/backups/{id}/restore");
            let restore: RestoreView = api.send(Method::POST, &path, &new).await?;
            api.show(&restore)
        }
    }
}
