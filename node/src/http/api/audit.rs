//! `/api/v1/audit`: the audit log, who did what, when, from where (the records are
//! written by the service layer, service/audit.rs).

use bcm_api::{AuditFilter, AuditView, Page, ReadParams, Window};

use super::{ok, Answer, AuditRead, Ctx, ListQuery};
use crate::service::{self, audit};

/// Audit records, newest first: logins and failed logins, every write asked for
/// (with its outcome), and the cluster manager's role and membership changes
/// (400 naming `since` or `until` when it is not an instant). Permission
/// `audit.read`.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditFilter, Window, ReadParams), responses((status = 200, description = "one page of matching records, newest first", body = Page<AuditView>)))]
pub async fn list(ctx: Ctx<AuditRead>, q: ListQuery<AuditFilter>) -> Answer {
    service::consistent(&ctx, q.consistency.as_deref()).await?;
    let records = audit::list(&ctx, &q.filter)?;
    ok(q.window.page(records.iter().map(AuditView::from)))
}
