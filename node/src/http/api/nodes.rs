//! `/api/v1/nodes`: the node registry joined with the Raft membership (the rules
//! are the service layer's, service/nodes.rs).

use axum::extract::Path;
use bcm_api::{
    MemberView, NewNode, NodeFilter, NodeStatus, NodeView, Page, ReadParams, Removed, UpdateNode,
    Window,
};

use super::{created, ok, path_id, Answer, ApiJson, Ctx, Edit, ListQuery, NodesRead, NodesWrite};
use crate::service::{self, nodes};

/// The node registry joined with the Raft membership (400 for an unknown `role`).
/// Permission `nodes.read`.
#[utoipa::path(get, path = "/nodes", tag = "nodes", params(NodeFilter, Window, ReadParams), responses((status = 200, description = "one page of matching nodes", body = Page<MemberView>)))]
pub async fn list(ctx: Ctx<NodesRead>, q: ListQuery<NodeFilter>) -> Answer {
    service::consistent(&ctx, q.consistency.as_deref()).await?;
    let members = nodes::list(&ctx, &q.filter).await?;
    ok(q.window.page(members.into_iter()))
}

/// One node. Permission `nodes.read`.
#[utoipa::path(get, path = "/nodes/{id}", tag = "nodes", params(("id" = u64, Path, minimum = 1, description = "node id")), responses((status = 200, description = "the node", body = MemberView)))]
pub async fn get_one(ctx: Ctx<NodesRead>, Path(id): Path<String>) -> Answer {
    ok(nodes::get(&ctx, path_id("node", &id)?).await?)
}

/// Pre-register a node, or re-admit a decommissioned one (409 when the id is
/// taken). Permission `nodes.write`.
#[utoipa::path(post, path = "/nodes", tag = "nodes", request_body = NewNode, responses((status = 201, description = "registered", body = NodeView)))]
pub async fn add(ctx: Ctx<NodesWrite>, ApiJson(body): ApiJson<NewNode>) -> Answer {
    created(NodeView::from(&nodes::add(&ctx, &ctx.who, body).await?))
}

/// Configure a node. Raft voters follow role `manager`: the cluster manager
/// promotes a learner that gains it once it has caught up, and demotes a voter that
/// loses it to learner once the voters left can form a majority (409 when it would
/// take role manager from the last node that has it). `maintenance: true` drains
/// the node: a leader hands leadership to another voter, the backup-manager role
/// moves away from it, and it takes neither until `maintenance: false`.
/// Permission `nodes.write`.
#[utoipa::path(patch, path = "/nodes/{id}", tag = "nodes", params(("id" = u64, Path, minimum = 1, description = "node id")), request_body = UpdateNode, responses((status = 200, description = "the node as changed", body = NodeView)))]
pub async fn update(ctx: Ctx<NodesWrite>, Edit(id, body): Edit<UpdateNode>) -> Answer {
    let record = nodes::update(&ctx, &ctx.who, path_id("node", &id)?, body).await?;
    let mut view = NodeView::from(&record);
    view.maintenance = nodes::in_maintenance(&ctx, record.id);
    ok(view)
}

/// Decommission a node: it leaves the Raft membership and stops serving (409 when
/// removing it would leave no quorum). Permission `nodes.write`.
#[utoipa::path(delete, path = "/nodes/{id}", tag = "nodes", params(("id" = u64, Path, minimum = 1, description = "node id")), responses((status = 200, description = "removed", body = Removed)))]
pub async fn remove(ctx: Ctx<NodesWrite>, Path(id): Path<String>) -> Answer {
    let id = path_id("node", &id)?;
    nodes::decommission(&ctx, &ctx.who, id).await?;
    ok(Removed {
        id,
        status: NodeStatus::Removed,
    })
}
