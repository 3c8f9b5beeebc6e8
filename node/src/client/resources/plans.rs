//! `bcm plans ...`: backup plans: what to back up, from which node, when, how many.

use anyhow::bail;
use bcm_api::{Page, PlanBody, PlanFilter, PlanPatch, PlanView};
use clap::{Args, Subcommand};
use reqwest::Method;

use super::{joined, or_dash, Api, Common, Table};

/// The API's defaults for a new plan (`PlanBody` fills them in on the server but
/// does not name them).
const DEFAULT_KEEP_LAST: u32 = 7;
const DEFAULT_REPLICAS: u32 = 1;

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

impl Table for PlanView {
    fn header() -> &'static [&'static str] {
        &[
            "ID",
            "NAME",
            "SOURCE_NODE",
            "SCHEDULE",
            "KEEP_LAST",
            "REPLICAS",
            "ENABLED",
            "PATHS",
        ]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.name.clone(),
            self.source_node.to_string(),
            or_dash(self.schedule.as_ref()),
            self.keep_last.to_string(),
            self.replicas.to_string(),
            self.enabled.to_string(),
            joined(&self.paths),
        ]
    }
}

/// Does the patch leave the plan as it is?
fn changes_nothing(patch: &PlanPatch) -> bool {
    let PlanPatch {
        name,
        source_node,
        paths,
        schedule,
        keep_last,
        replicas,
        enabled,
    } = patch;
    name.is_none()
        && source_node.is_none()
        && paths.is_none()
        && schedule.is_none()
        && keep_last.is_none()
        && replicas.is_none()
        && enabled.is_none()
}

pub async fn plans(args: PlansArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.common).await?;
    match args.command {
        PlansCmd::List { q, node } => {
            let filter = PlanFilter {
                q,
                node,
                enabled: None,
            };
            let page: Page<PlanView> = api.list("/api/v1/plans", &filter).await?;
            api.show_page(&page)
        }
        PlansCmd::Get { id } => {
            let plan: PlanView = api.get(&format!("/api/v1/plans/{id}")).await?;
            api.show(&plan)
        }
        PlansCmd::Create {
            name,
            node,
            paths,
            schedule,
            keep_last,
            replicas,
            disabled,
        } => {
            let body = PlanBody {
                name,
                source_node: node,
                paths,
                schedule,
                keep_last: keep_last.unwrap_or(DEFAULT_KEEP_LAST),
                replicas: replicas.unwrap_or(DEFAULT_REPLICAS),
                enabled: !disabled,
            };
            let plan: PlanView = api.send(Method::POST, "/api/v1/plans", &body).await?;
            api.show(&plan)
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
            let patch = PlanPatch {
                name,
                source_node: node,
                paths: (!paths.is_empty()).then_some(paths),
                // `Some(None)`: `"schedule": null`, which removes it.
                schedule: if no_schedule {
                    Some(None)
                } else {
                    schedule.map(Some)
                },
                keep_last,
                replicas,
                enabled: (enable || disable).then_some(enable),
            };
            if changes_nothing(&patch) {
                bail!("nothing to change");
            }
            let path = format!("/api/v1/plans/{id}");
            let plan: PlanView = api.send(Method::PATCH, &path, &patch).await?;
            api.show(&plan)
        }
        PlansCmd::Delete { id } => {
            let req = api.request(Method::DELETE, format!("/api/v1/plans/{id}"));
            api.delete(req, &format!("plan {id}")).await
        }
    }
}

#[cfg(test)]
mod tests {
    use bcm_api::PlanPatch;

    #[test]
    fn a_patch_removing_the_schedule_sends_null() {
        let patch = PlanPatch {
            schedule: Some(None),
            enabled: Some(false),
            ..Default::default()
        };
        assert!(!super::changes_nothing(&patch));
        assert_eq!(
            serde_json::to_string(&patch).unwrap(),
            r#"{"schedule":null,"enabled":false}"#
        );
        assert!(super::changes_nothing(&PlanPatch::default()));
    }
}
