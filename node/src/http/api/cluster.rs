//! `/api/v1/cluster`: the Raft group, its members and snapshots.

use bcm_api::{ClusterView, ReadParams, SnapshotTaken, StateDigest};

use super::{ok, Answer, ApiQuery, ClusterRead, ClusterWrite, Ctx};
use crate::service::{self, cluster};

/// Leader, term, commit index, the backup manager and every member. Permission
/// `cluster.read`.
#[utoipa::path(get, path = "/cluster", tag = "cluster", params(ReadParams), responses((status = 200, description = "the cluster", body = ClusterView)))]
pub async fn get_cluster(ctx: Ctx<ClusterRead>, ApiQuery(q): ApiQuery<ReadParams>) -> Answer {
    service::consistent(&ctx, q.consistency.as_deref()).await?;
    ok(cluster::view(&ctx, ctx.export.as_deref()).await)
}

/// This node's applied index and a digest of its replicated state: nodes at
/// the same index must show the same digest (the chaos checks compare them).
/// Permission `cluster.read`.
#[utoipa::path(get, path = "/cluster/digest", tag = "cluster", responses((status = 200, description = "this node's state digest", body = StateDigest)))]
pub async fn get_digest(ctx: Ctx<ClusterRead>) -> Answer {
    ok(cluster::digest(&ctx))
}

/// Take a snapshot on the leader now. Permission `cluster.write`.
#[utoipa::path(post, path = "/cluster/snapshot", tag = "cluster", responses((status = 200, description = "taken", body = SnapshotTaken)))]
pub async fn take_snapshot(ctx: Ctx<ClusterWrite>) -> Answer {
    let snapshot_index = cluster::snapshot(&ctx, &ctx.who).await?;
    ok(SnapshotTaken { snapshot_index })
}
