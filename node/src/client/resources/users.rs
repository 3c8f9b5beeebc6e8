//! `bcm users ...`: list, show, create, change and delete users.

use anyhow::bail;
use bcm_api::{NewUser, Page, UserFilter, UserPatch, UserView};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::{joined, Api, Common, Table};
use crate::client::read_password;

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

impl Table for UserView {
    fn header() -> &'static [&'static str] {
        &["ID", "NAME", "ENABLED", "GROUPS"]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.name.clone(),
            self.enabled.to_string(),
            joined(&self.groups),
        ]
    }
}

pub async fn users(args: UsersArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.common).await?;
    match args.command {
        UsersCmd::List { q, enabled, group } => {
            let filter = UserFilter { q, enabled, group };
            let page: Page<UserView> = api.list("/api/v1/users", &filter).await?;
            api.show_page(&page)
        }
        UsersCmd::Get { id } => {
            let user: UserView = api.get(&format!("/api/v1/users/{id}")).await?;
            api.show(&user)
        }
        UsersCmd::Create {
            name,
            password,
            groups,
        } => {
            let password = match password {
                Some(p) => p,
                None => read_password()?,
            };
            let new = NewUser {
                name,
                password,
                groups,
            };
            let user: UserView = api.send(Method::POST, "/api/v1/users", &new).await?;
            api.show(&user)
        }
        UsersCmd::Update {
            id,
            enable,
            disable,
            password,
            groups,
        } => {
            let password = match password {
                Some(p) if p == "-" => Some(read_password()?),
                other => other,
            };
            let patch = UserPatch {
                enabled: (enable || disable).then_some(enable),
                password,
                groups: groups.map(|g| g.into_iter().filter(|g| !g.is_empty()).collect()),
            };
            let UserPatch {
                enabled,
                password,
                groups,
            } = &patch;
            if enabled.is_none() && password.is_none() && groups.is_none() {
                bail!("nothing to change: give --enable, --disable, --password or --groups");
            }
            let path = format!("/api/v1/users/{id}");
            let user: UserView = api.send(Method::PATCH, &path, &patch).await?;
            api.show(&user)
        }
        UsersCmd::Delete { id } => {
            let req = api.request(Method::DELETE, format!("/api/v1/users/{id}"));
            api.delete(req, &format!("user {id}")).await
        }
    }
}
