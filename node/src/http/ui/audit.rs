//! The audit log's page (`/audit`): the API's `/api/v1/audit` with its filters.

use bcm_web_ui::model::AuditRecord;
use bcm_web_ui::pages::{AuditPage, Listing};
use bcm_web_ui::Chrome;

use super::{ListPage, Session, Ui};

impl ListPage for AuditPage {
    type Item = AuditRecord;
    const API: &'static str = "/api/v1/audit";

    async fn build(_: &Ui, _: &Session, chrome: Chrome, listing: Listing<AuditRecord>) -> Self {
        AuditPage { chrome, listing }
    }
}
