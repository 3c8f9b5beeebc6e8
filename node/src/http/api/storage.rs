//! `/api/v1/storage`: the storage nodes, each asked for its numbers.

use bcm_api::{Page, StorageView};

use super::{ok, Answer, Ctx, NodesRead};
use crate::service::storage;

/// Every storage node: capacity, free and used bytes, chunks and backups held
/// (null with an `error` for one that does not answer within 2 s). Permission
/// `nodes.read`.
#[utoipa::path(get, path = "/storage", tag = "storage", responses((status = 200, description = "the storage nodes", body = Page<StorageView>)))]
pub async fn list(ctx: Ctx<NodesRead>) -> Answer {
    let items = storage::list(&ctx).await;
    ok(Page {
        total: items.len(),
        items,
    })
}
