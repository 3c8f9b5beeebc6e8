//! `bcm audit`: the audit log, newest first.

use bcm_api::{AuditFilter, AuditView, Page, Window};
use clap::Args;

use super::{or_dash, query, Api, Common, Table};

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    common: Common,
    /// Only what this user did.
    #[arg(long)]
    user: Option<String>,
    /// Only actions starting with this (`users.`, `login`, `nodes.drain`).
    #[arg(long)]
    action: Option<String>,
    /// Only records at or after this instant (RFC 3339 or Unix milliseconds).
    #[arg(long)]
    since: Option<String>,
    /// Only records before this instant (RFC 3339 or Unix milliseconds).
    #[arg(long)]
    until: Option<String>,
    /// Only records with a smaller id (the next page: the last id shown).
    #[arg(long)]
    before: Option<u64>,
    /// At most this many records (default 100, at most 1000).
    #[arg(long)]
    limit: Option<usize>,
}

impl Table for AuditView {
    fn header() -> &'static [&'static str] {
        &[
            "ID", "TIME", "ACTOR", "ADDRESS", "ACTION", "TARGET", "OUTCOME", "DETAIL",
        ]
    }

    fn row(&self) -> Vec<String> {
        let outcome = match &self.reason {
            Some(why) => format!("{}: {why}", self.outcome),
            None => self.outcome.clone(),
        };
        vec![
            self.id.to_string(),
            bcm_api::time::utc(self.at_ms),
            self.actor.clone(),
            or_dash(self.addr.as_ref()),
            self.action.clone(),
            self.target.clone(),
            outcome,
            self.detail.clone(),
        ]
    }
}

pub async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.common).await?;
    let filter = AuditFilter {
        user: args.user,
        action: args.action,
        since: args.since,
        until: args.until,
        before: args.before,
    };
    let window = Window {
        limit: args.limit,
        offset: None,
    };
    let page: Page<AuditView> = api
        .get(&format!("/api/v1/audit{}", query(&filter, window)?))
        .await?;
    api.show_page(&page)
}
