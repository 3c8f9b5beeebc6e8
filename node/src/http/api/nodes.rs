use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use bcm_raft_store::{Command, NodeInfo, NodePatch, NodeStatus, Response as Applied, Role};
use serde::{Deserialize, Serialize};

use super::{
    consistent, json, list_page, not_found, path_id, rejection, unexpected, ApiJson, ApiQuery,
    Authed, Page,
};
use crate::problem::Problem;
use crate::runtime::{now_ms, SharedNode};
use crate::service;

/// One member as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub id: u64,
    pub name: String,
    /// Where clients reach its HTTP API.
    pub api_addr: String,
    /// Where peers reach it (Raft).
    pub rpc_addr: String,
    /// A Raft voter (role `manager`) or a learner.
    pub voter: bool,
    /// Any of `manager`, `backup-manager`, `storage`.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    /// `up`, `down`, `joining` or `removed`.
    pub status: &'static str,
    pub enabled: bool,
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since the leader last heard from it (null unless asked of the
    /// leader, or never heard).
    pub last_contact_ms: Option<u64>,
    /// The last log index the leader knows it holds.
    pub matched_index: Option<u64>,
}

/// A node registry record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: u64,
    pub name: String,
    pub api_addr: String,
    pub rpc_addr: String,
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    pub enabled: bool,
    pub labels: BTreeMap<String, String>,
    /// `up`, `down`, `joining` or `removed`.
    pub status: &'static str,
}

/// A decommissioned node.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Removed {
    pub id: u64,
    /// Always `removed`.
    pub status: &'static str,
}

/// Registry records joined with the Raft membership and the leader's live view.
pub async fn member_views(node: &SharedNode) -> Vec<MemberView> {
    let m = node.raft_metrics();
    let mem = m.membership_config.membership();
    let voters: BTreeSet<u64> = mem.voter_ids().collect();
    let mut nodes: BTreeMap<u64, MemberView> = BTreeMap::new();
    for (id, bn) in mem.nodes() {
        nodes.insert(
            *id,
            MemberView {
                id: *id,
                name: format!("node-{id}"),
                api_addr: bn.api_addr.clone(),
                rpc_addr: bn.rpc_addr.clone(),
                voter: voters.contains(id),
                roles: Vec::new(),
                status: NodeStatus::Joining.as_str(),
                enabled: true,
                labels: BTreeMap::new(),
                last_contact_ms: None,
                matched_index: None,
            },
        );
    }
    for rec in node
        .state
        .read(|d| d.state.nodes.values().cloned().collect::<Vec<_>>())
    {
        nodes.insert(
            rec.id,
            MemberView {
                id: rec.id,
                name: rec.name,
                api_addr: rec.api_addr,
                rpc_addr: rec.rpc_addr,
                voter: voters.contains(&rec.id),
                roles: rec.roles,
                status: rec.status.as_str(),
                enabled: rec.enabled,
                labels: rec.labels,
                last_contact_ms: None,
                matched_index: None,
            },
        );
    }
    if let Some(health) = service::member_health(node).await {
        for h in health {
            if let Some(v) = nodes.get_mut(&h.id) {
                v.last_contact_ms = h.last_contact_ms;
                v.matched_index = h.matched_index;
            }
        }
    }
    nodes.into_values().collect()
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Part of the name (any case), or the exact id.
    q: Option<String>,
    /// `manager`, `backup-manager` or `storage`.
    role: Option<String>,
    /// `up`, `down`, `joining` or `removed`.
    status: Option<String>,
    enabled: Option<bool>,
    /// At most this many items (default 100, at most 1000).
    limit: Option<usize>,
    /// Skip this many items.
    offset: Option<usize>,
    /// `local` (default) or `linearizable`.
    consistency: Option<String>,
}

/// The node registry joined with the Raft membership. Permission `nodes.read`.
#[utoipa::path(get, path = "/nodes", tag = "nodes", params(ListParams),
    responses(
        (status = 200, description = "one page of matching nodes", body = Page<MemberView>),
        (status = 400, description = "unknown role", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(node): State<SharedNode>,
    who: Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Response, Problem> {
    who.require("nodes.read")?;
    consistent(&node, p.consistency.as_deref()).await?;
    let role = match p.role.as_deref() {
        Some(r) => Some(Role::parse(r).ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST, format!("unknown role {r:?}")).with_field("role")
        })?),
        None => None,
    };
    let q = p.q.as_deref().map(str::to_lowercase);
    let all: Vec<MemberView> = member_views(&node)
        .await
        .into_iter()
        .filter(|v| {
            q.as_ref()
                .is_none_or(|q| v.name.to_lowercase().contains(q) || v.id.to_string() == *q)
        })
        .filter(|v| role.is_none_or(|r| v.roles.contains(&r)))
        .filter(|v| p.status.as_deref().is_none_or(|s| v.status == s))
        .filter(|v| p.enabled.is_none_or(|e| v.enabled == e))
        .collect();
    Ok(list_page(all.into_iter(), p.limit, p.offset))
}

/// One node. Permission `nodes.read`.
#[utoipa::path(get, path = "/nodes/{id}", tag = "nodes",
    params(("id" = u64, Path, description = "node id")),
    responses(
        (status = 200, description = "the node", body = MemberView),
        (status = 400, description = "the id is not a positive integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such node", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_one(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require("nodes.read")?;
    let id = path_id("node", &id)?;
    member_views(&node)
        .await
        .into_iter()
        .find(|v| v.id == id)
        .map(|v| json(StatusCode::OK, &v))
        .ok_or_else(|| not_found("node", id))
}

/// A node to pre-register; it joins when it starts with this id.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    /// Unique, positive.
    id: u64,
    /// Defaults to `node-<id>`.
    name: Option<String>,
    /// An http(s) URL.
    api_addr: String,
    /// An http(s) URL.
    rpc_addr: String,
    /// At least one of `manager`, `backup-manager`, `storage`.
    #[serde(default)]
    roles: Vec<String>,
}

fn parse_roles(roles: &[String]) -> Result<Vec<Role>, Problem> {
    let mut out = Vec::new();
    for r in roles {
        let role = Role::parse(r).ok_or_else(|| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("roles: unknown role {r:?} (known: manager, backup-manager, storage)"),
            )
            .with_field("roles")
        })?;
        if !out.contains(&role) {
            out.push(role);
        }
    }
    if out.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "roles: at least one role is needed",
        )
        .with_field("roles"));
    }
    Ok(out)
}

fn check_url(field: &str, url: &str) -> Result<String, Problem> {
    let u = url.trim().trim_end_matches('/');
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() > 512 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: must be an http:// or https:// URL"),
        )
        .with_field(field));
    }
    Ok(u.to_string())
}

fn applied(resp: Applied) -> Result<Response, Problem> {
    match resp {
        Applied::Node(rec) => Ok(json(
            StatusCode::OK,
            &NodeView {
                id: rec.id,
                name: rec.name,
                api_addr: rec.api_addr,
                rpc_addr: rec.rpc_addr,
                roles: rec.roles,
                enabled: rec.enabled,
                labels: rec.labels,
                status: rec.status.as_str(),
            },
        )),
        Applied::Rejected(r) => Err(rejection(r)),
        other => Err(unexpected(&other)),
    }
}

/// Pre-register a node (or re-admit a decommissioned one). Permission `nodes.write`.
#[utoipa::path(post, path = "/nodes", tag = "nodes", request_body = NewNode,
    responses(
        (status = 201, description = "registered", body = NodeView),
        (status = 409, description = "the id is taken", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add(
    State(node): State<SharedNode>,
    who: Authed,
    ApiJson(body): ApiJson<NewNode>,
) -> Result<Response, Problem> {
    who.require("nodes.write")?;
    if body.id == 0 {
        return Err(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "id: must be positive").with_field("id"),
        );
    }
    let name = body.name.unwrap_or_else(|| format!("node-{}", body.id));
    if name.is_empty() || name.len() > 64 {
        return Err(
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "name: 1 to 64 characters")
                .with_field("name"),
        );
    }
    let info = NodeInfo {
        id: body.id,
        name,
        api_addr: check_url("api_addr", &body.api_addr)?,
        rpc_addr: check_url("rpc_addr", &body.rpc_addr)?,
        roles: parse_roles(&body.roles)?,
    };
    let removed = node
        .state
        .read(|d| {
            d.state
                .nodes
                .get(&info.id)
                .map(|n| n.status == NodeStatus::Removed)
        })
        .unwrap_or(false);
    let resp = if removed {
        // Re-adding a decommissioned node: it may join again (with an empty disk).
        service::write(
            &node,
            Command::SetNodeStatus {
                id: info.id,
                status: NodeStatus::Down,
                at: now_ms(),
            },
        )
        .await?;
        service::write(&node, Command::RegisterNode { info, at: now_ms() }).await?
    } else {
        service::write(&node, Command::AddNode { info, at: now_ms() }).await?
    };
    let mut r = applied(resp)?;
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

/// Changes to a node; absent fields stay as they are.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNode {
    /// At least one of `manager`, `backup-manager`, `storage`.
    roles: Option<Vec<String>>,
    enabled: Option<bool>,
    /// Replaces all labels: at most 64, keys 1 to 64 characters, values up to 256.
    labels: Option<BTreeMap<String, String>>,
}

/// Configure a node. Permission `nodes.write`. Raft voters follow role `manager`:
/// the cluster manager promotes a learner that gains it once it has caught up, and
/// demotes a voter that loses it to learner once the voters left can form a majority.
#[utoipa::path(patch, path = "/nodes/{id}", tag = "nodes",
    params(("id" = u64, Path, description = "node id")), request_body = UpdateNode,
    responses(
        (status = 200, description = "the node as changed", body = NodeView),
        (status = 404, description = "no such node", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "it would take role manager from the last node that has it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateNode>,
) -> Result<Response, Problem> {
    who.require("nodes.write")?;
    let id = path_id("node", &id)?;
    let roles = match &body.roles {
        Some(r) => Some(parse_roles(r)?),
        None => None,
    };
    if roles.as_ref().is_some_and(|r| !r.contains(&Role::Manager)) {
        // Voters follow role `manager`: the cluster must keep a node that may vote.
        if crate::membership::is_last_manager(&node, id) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "roles: node {id} is the last node with role manager, and the voters follow that role; give another node role manager first"
                ),
            )
            .with_field("roles"));
        }
    }
    if let Some(labels) = &body.labels {
        if labels.len() > 64
            || labels
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
        {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "labels: at most 64 labels, keys of 1 to 64 characters, values up to 256",
            )
            .with_field("labels"));
        }
    }
    let patch = NodePatch {
        roles,
        enabled: body.enabled,
        labels: body.labels,
    };
    applied(service::write(&node, Command::UpdateNode { id, patch }).await?)
}

/// Decommission a node: it leaves the Raft membership and stops serving. Permission
/// `nodes.write`.
#[utoipa::path(delete, path = "/nodes/{id}", tag = "nodes",
    params(("id" = u64, Path, description = "node id")),
    responses(
        (status = 200, description = "removed", body = Removed),
        (status = 404, description = "no such node", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "removing it would leave no quorum", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove(
    State(node): State<SharedNode>,
    who: Authed,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    who.require("nodes.write")?;
    let id = path_id("node", &id)?;
    service::decommission(&node, id).await?;
    Ok(json(
        StatusCode::OK,
        &Removed {
            id,
            status: "removed",
        },
    ))
}
