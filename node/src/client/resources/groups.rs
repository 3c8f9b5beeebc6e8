//! `bcm groups ...`: the predefined groups and custom ones with their permissions.

use bcm_api::{GroupFilter, GroupPatch, GroupView, NewGroup, Page};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::{joined, path_segment, Api, Common, Table};

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

impl Table for GroupView {
    fn header() -> &'static [&'static str] {
        &["NAME", "BUILTIN", "PERMISSIONS"]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.builtin.to_string(),
            joined(&self.permissions),
        ]
    }
}

pub async fn groups(args: GroupsArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.common).await?;
    let path = |name: &str| format!("/api/v1/groups/{}", path_segment(name));
    match args.command {
        GroupsCmd::List => {
            let page: Page<GroupView> = api.list("/api/v1/groups", &GroupFilter::default()).await?;
            api.show_page(&page)
        }
        GroupsCmd::Get { name } => {
            let group: GroupView = api.get(&path(&name)).await?;
            api.show(&group)
        }
        GroupsCmd::Create { name, permissions } => {
            let new = NewGroup {
                name,
                permissions: permissions.into_iter().collect(),
            };
            let group: GroupView = api.send(Method::POST, "/api/v1/groups", &new).await?;
            api.show(&group)
        }
        GroupsCmd::Update { name, permissions } => {
            let patch = GroupPatch {
                permissions: permissions.into_iter().collect(),
            };
            let group: GroupView = api.send(Method::PATCH, &path(&name), &patch).await?;
            api.show(&group)
        }
        GroupsCmd::Delete { name } => {
            let req = api.request(Method::DELETE, path(&name));
            api.delete(req, &format!("group {name}")).await
        }
    }
}
