//! `bcm restores ...`: restores of backups and their status.

use bcm_api::{Page, RestoreFilter, RestoreView};
use clap::{Args, Subcommand};

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
    }
}
