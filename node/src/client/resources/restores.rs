//! `bcm restores ...`: restores of backups and their status.

use bcm_api::{NewRestore, Page, RestoreFilter, RestoreView};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::{Api, Common, Table};

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
    /// Cancel a pending or running restore.
    Cancel {
        id: u64,
    },
    /// Restore backup --backup onto --node into --path (also `bcm backups restore`).
    Start {
        #[arg(long)]
        backup: u64,
        #[command(flatten)]
        to: RestoreTo,
    },
}

/// Where a restore goes, and how (shared with `bcm backups restore`).
#[derive(clap::Args)]
pub struct RestoreTo {
    /// The node to write on.
    #[arg(long)]
    node: u64,
    /// An absolute directory on that node, empty or absent (see --overwrite).
    #[arg(long)]
    path: String,
    /// Write into a non-empty directory.
    #[arg(long)]
    overwrite: bool,
    /// Only this path of the backup (as it was backed up) and what is below.
    #[arg(long)]
    include: Option<String>,
    /// Follow it to its end with a progress bar and a summary line (the command
    /// fails when the restore does).
    #[arg(long)]
    wait: bool,
}

/// Starts a restore of `backup` as `to` says; follows it with `--wait`.
pub(super) async fn start(api: &Api, backup: u64, to: RestoreTo) -> anyhow::Result<()> {
    let new = NewRestore {
        target_node: to.node,
        target_path: to.path,
        overwrite: to.overwrite,
        include: to.include,
    };
    let path = format!("/api/v1/backups/{backup}/restore");
    let restore: RestoreView = api.send(Method::POST, &path, &new).await?;
    if to.wait {
        return super::follow::restore(api, restore.id).await;
    }
    api.show(&restore)
}

impl Table for RestoreView {
    fn header() -> &'static [&'static str] {
        &["ID", "STATUS", "BACKUP", "TARGET_NODE", "TARGET_PATH"]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.status.as_str().into(),
            self.backup.to_string(),
            self.target_node.to_string(),
            self.target_path.clone(),
        ]
    }
}

pub async fn restores(args: RestoresArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.common).await?;
    match args.command {
        RestoresCmd::List {
            status,
            backup,
            node,
        } => {
            let filter = RestoreFilter {
                status,
                backup,
                node,
            };
            let page: Page<RestoreView> = api.list("/api/v1/restores", &filter).await?;
            api.show_page(&page)
        }
        RestoresCmd::Get { id } => {
            let restore: RestoreView = api.get(&format!("/api/v1/restores/{id}")).await?;
            api.show(&restore)
        }
        RestoresCmd::Cancel { id } => {
            let path = format!("/api/v1/restores/{id}/cancel");
            let restore: RestoreView = api.send(Method::POST, &path, &()).await?;
            api.show(&restore)
        }
        RestoresCmd::Start { backup, to } => start(&api, backup, to).await,
    }
}
