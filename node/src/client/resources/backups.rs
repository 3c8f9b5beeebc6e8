//! `bcm backups ...`: the catalog: list, start, delete, and restore a backup; a
//! backup's files, and the verify of its replicas.

use anyhow::bail;
use bcm_api::time::human_bytes;
use bcm_api::time::utc;
use bcm_api::{
    BackupFilter, BackupView, FileView, FilesQuery, NewBackup, Page, ReplicaView, VerifyView,
    Window,
};
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
        /// Follow it to its end with a progress bar and a summary line (the
        /// command fails when the backup does).
        #[arg(long)]
        wait: bool,
    },
    /// Delete a backup and its data.
    Delete {
        id: u64,
    },
    /// Cancel a pending or running backup.
    Cancel {
        id: u64,
    },
    /// Restore a backup to a node and path (as `bcm restores start`).
    Restore {
        id: u64,
        #[command(flatten)]
        to: super::restores::RestoreTo,
    },
    /// List what a backup holds: what is directly in --path (the backup's own
    /// paths without it), or everything below it with --recursive.
    Files {
        id: u64,
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        recursive: bool,
    },
    /// Check every replica of a backup (each chunk read back and hashed),
    /// repairing a replica that is not whole from one that is; fails unless
    /// every replica is whole in the end.
    Verify {
        id: u64,
    },
}

impl Table for FileView {
    fn header() -> &'static [&'static str] {
        &["MODE", "SIZE", "MTIME", "PATH"]
    }

    fn row(&self) -> Vec<String> {
        let kind = match self.kind.as_str() {
            "dir" => 'd',
            "symlink" => 'l',
            _ => '-',
        };
        let path = match &self.target {
            Some(t) => format!("{} -> {t}", self.path),
            None => self.path.clone(),
        };
        vec![
            format!("{kind}{}", self.mode),
            or_dash(self.size.map(human_bytes)),
            utc(u64::try_from(self.mtime_ms).unwrap_or(0)),
            path,
        ]
    }
}

impl Table for ReplicaView {
    fn header() -> &'static [&'static str] {
        &[
            "NODE", "STATE", "CHUNKS", "MISSING", "REPAIRED", "MOVED_TO", "ERROR",
        ]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.node_id.to_string(),
            self.state.clone(),
            or_dash(self.chunks),
            self.missing_chunks.to_string(),
            self.repaired_chunks.to_string(),
            or_dash(self.moved_to),
            or_dash(self.error.as_ref()),
        ]
    }
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
        BackupsCmd::Start {
            plan,
            node,
            paths,
            wait,
        } => {
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
            if wait {
                return super::follow::backup(&api, backup.id).await;
            }
            api.show(&backup)
        }
        BackupsCmd::Cancel { id } => {
            let path = format!("/api/v1/backups/{id}/cancel");
            let backup: BackupView = api.send(Method::POST, &path, &()).await?;
            api.show(&backup)
        }
        BackupsCmd::Delete { id } => {
            let req = api.request(Method::DELETE, format!("/api/v1/backups/{id}"));
            api.delete(req, &format!("backup {id}")).await
        }
        BackupsCmd::Restore { id, to } => super::restores::start(&api, id, to).await,
        BackupsCmd::Files {
            id,
            path,
            recursive,
        } => {
            let filter = FilesQuery {
                path,
                recursive: recursive.then_some(true),
            };
            let page = all_files(&api, id, &filter).await?;
            api.show_page(&page)
        }
        BackupsCmd::Verify { id } => {
            let path = format!("/api/v1/backups/{id}/verify");
            let v: VerifyView = api.send(Method::POST, &path, &()).await?;
            if api.json {
                super::print_json(&v)?;
            } else {
                print!("{}", super::table(&v.replicas));
            }
            if !v.ok {
                bail!("backup {id}: not every replica is whole (see above)");
            }
            if !api.json {
                println!("backup {id}: every replica is whole");
            }
            Ok(())
        }
    }
}

/// Every entry `filter` names, page after page.
async fn all_files(api: &Api, id: u64, filter: &FilesQuery) -> anyhow::Result<Page<FileView>> {
    let mut all = Page::default();
    loop {
        let window = Window {
            limit: Some(Window::MAX_LIMIT),
            offset: Some(all.items.len()),
        };
        let qs = super::query(filter, window)?;
        let page: Page<FileView> = api.get(&format!("/api/v1/backups/{id}/files{qs}")).await?;
        all.total = page.total;
        let got = page.items.len();
        all.items.extend(page.items);
        if got == 0 || all.items.len() >= all.total {
            return Ok(all);
        }
    }
}
