//! The node registry joined with the Raft membership: pre-registering, roles,
//! labels, enabling and decommissioning nodes.

use std::collections::{BTreeMap, BTreeSet};

use bcm_api::{MemberView, NewNode, NodeFilter, UpdateNode};
use bcm_raft_store::{Command, NodeInfo, NodePatch, NodeRecord, NodeStatus, Role};

use super::audit::Audit;
use super::auth::Caller;
use super::{caught_up, propose, write, OpError, Search};
use crate::cluster::{leader, membership, now_ms, Node};

fn parse_roles(roles: &[String]) -> Result<Vec<Role>, OpError> {
    crate::config::parse_roles(roles).map_err(|problem| OpError::invalid("roles", problem))
}

fn check_url(field: &str, url: &str) -> Result<String, OpError> {
    let u = url.trim().trim_end_matches('/');
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() > 512 {
        return Err(OpError::invalid(
            field,
            "must be an http:// or https:// URL",
        ));
    }
    Ok(u.to_string())
}

/// Every member: the registry's records joined with the Raft membership (voter or
/// learner) and, when the leader answers quickly, its live view (last contact,
/// matched index).
pub async fn members(node: &Node) -> Vec<MemberView> {
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
                status: NodeStatus::Joining,
                enabled: true,
                labels: BTreeMap::new(),
                last_contact_ms: None,
                matched_index: None,
                maintenance: false,
            },
        );
    }
    let (records, maintenance) = node.state.read(|d| {
        (
            d.state.nodes.values().cloned().collect::<Vec<_>>(),
            d.state.maintenance.clone(),
        )
    });
    for rec in records {
        nodes.insert(
            rec.id,
            MemberView {
                id: rec.id,
                name: rec.name,
                api_addr: rec.api_addr,
                rpc_addr: rec.rpc_addr,
                voter: voters.contains(&rec.id),
                roles: rec.roles,
                status: rec.status,
                enabled: rec.enabled,
                labels: rec.labels,
                last_contact_ms: None,
                matched_index: None,
                maintenance: maintenance.contains_key(&rec.id),
            },
        );
    }
    if let Some(health) = leader::member_health(node).await {
        for h in health {
            if let Some(v) = nodes.get_mut(&h.id) {
                v.last_contact_ms = h.last_contact_ms;
                v.matched_index = h.matched_index;
            }
        }
    }
    nodes.into_values().collect()
}

/// A role from a query string (400 naming `role` otherwise).
fn parse_role_filter(role: Option<&str>) -> Result<Option<Role>, OpError> {
    match role {
        Some(r) => Ok(Some(Role::parse(r).ok_or_else(|| OpError::BadRequest {
            field: Some("role".into()),
            message: format!("unknown role {r:?}"),
        })?)),
        None => Ok(None),
    }
}

/// The members matching `filter`, by id.
pub async fn list(node: &Node, filter: &NodeFilter) -> Result<Vec<MemberView>, OpError> {
    let role = parse_role_filter(filter.role.as_deref())?;
    let q = Search::new(filter.q.as_deref());
    Ok(members(node)
        .await
        .into_iter()
        .filter(|v| q.matches(&v.name, v.id))
        .filter(|v| role.is_none_or(|r| v.roles.contains(&r)))
        .filter(|v| {
            filter
                .status
                .as_deref()
                .is_none_or(|s| v.status.as_str() == s)
        })
        .filter(|v| filter.enabled.is_none_or(|e| v.enabled == e))
        .collect())
}

pub async fn get(node: &Node, id: u64) -> Result<MemberView, OpError> {
    members(node)
        .await
        .into_iter()
        .find(|v| v.id == id)
        .ok_or_else(|| OpError::not_found("node", id))
}

/// Pre-registers a node (or re-admits a decommissioned one, which may then join
/// again with an empty disk).
pub async fn add(node: &Node, caller: &Caller, new: NewNode) -> Result<NodeRecord, OpError> {
    let audit = caller
        .audit("nodes.add", format!("node {}", new.id))
        .detail(format!("{}; roles: {}", new.api_addr, new.roles.join(",")));
    audit.run(node, add_audited(node, &audit, new)).await
}

async fn add_audited(node: &Node, audit: &Audit, new: NewNode) -> Result<NodeRecord, OpError> {
    if new.id == 0 {
        return Err(OpError::invalid("id", "must be positive"));
    }
    let name = new.name.unwrap_or_else(|| format!("node-{}", new.id));
    if name.is_empty() || name.len() > 64 {
        return Err(OpError::invalid("name", "1 to 64 characters"));
    }
    let info = NodeInfo {
        id: new.id,
        name,
        api_addr: check_url("api_addr", &new.api_addr)?,
        rpc_addr: check_url("rpc_addr", &new.rpc_addr)?,
        roles: parse_roles(&new.roles)?,
    };
    // Whether the node was decommissioned, as the leader has it now.
    caught_up(node).await?;
    let removed = node.state.read(|d| d.state.is_removed(info.id));
    if removed {
        let down = Command::SetNodeStatus {
            id: info.id,
            status: NodeStatus::Down,
            at: now_ms(),
        };
        propose::<NodeRecord>(node, down).await?;
        write(node, audit, Command::RegisterNode { info, at: now_ms() }).await
    } else {
        write(node, audit, Command::AddNode { info, at: now_ms() }).await
    }
}

/// Changes a node's roles, labels or enablement. The Raft voters follow role
/// `manager`, so the last node with it keeps it (409).
///
/// Audited as `nodes.update`, and maintenance as `nodes.drain` or `nodes.undrain`
/// (a request with both leaves two records).
pub async fn update(
    node: &Node,
    caller: &Caller,
    id: u64,
    change: UpdateNode,
) -> Result<NodeRecord, OpError> {
    let target = format!("node {id}");
    let update = caller
        .audit("nodes.update", &target)
        .detail(describe(&change));
    let drain = match change.maintenance {
        Some(true) => Some(caller.audit("nodes.drain", &target)),
        Some(false) => Some(caller.audit("nodes.undrain", &target)),
        None => None,
    };
    let patches = change.roles.is_some() || change.enabled.is_some() || change.labels.is_some();
    // A refusal before anything was written is recorded as the request's main action.
    let main = match &drain {
        Some(d) if !patches => d,
        _ => &update,
    };
    main.run(
        node,
        update_audited(node, id, change, &update, drain.as_ref()),
    )
    .await
}

/// A change to a node, in short, for the audit log.
fn describe(change: &UpdateNode) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &change.roles {
        parts.push(format!("roles: {}", r.join(",")));
    }
    if let Some(e) = change.enabled {
        parts.push(if e { "enable" } else { "disable" }.to_string());
    }
    if let Some(l) = &change.labels {
        let labels: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("labels: {}", labels.join(",")));
    }
    parts.join("; ")
}

async fn update_audited(
    node: &Node,
    id: u64,
    change: UpdateNode,
    update: &Audit,
    drain: Option<&Audit>,
) -> Result<NodeRecord, OpError> {
    let roles = match &change.roles {
        Some(r) => Some(parse_roles(r)?),
        None => None,
    };
    let drops_manager = roles.as_ref().is_some_and(|r| !r.contains(&Role::Manager));
    if drops_manager {
        // Which other nodes hold role manager, as the leader has it now.
        caught_up(node).await?;
    }
    if drops_manager && membership::is_last_manager(node, id) {
        return Err(OpError::Conflict {
            field: Some("roles".into()),
            message: format!(
                "roles: node {id} is the last node with role manager, and the voters follow that role; give another node role manager first"
            ),
        });
    }
    if let Some(labels) = &change.labels {
        if labels.len() > 64
            || labels
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
        {
            return Err(OpError::invalid(
                "labels",
                "at most 64 labels, keys of 1 to 64 characters, values up to 256",
            ));
        }
    }
    let patch = NodePatch {
        roles,
        enabled: change.enabled,
        labels: change.labels,
    };
    let record = if patch.roles.is_none() && patch.enabled.is_none() && patch.labels.is_none() {
        super::lookup(node, "node", id, |s| s.nodes.get(&id))?
    } else {
        write(node, update, Command::UpdateNode { id, patch }).await?
    };
    let (Some(on), Some(drain)) = (change.maintenance, drain) else {
        return Ok(record);
    };
    write(
        node,
        drain,
        Command::SetMaintenance {
            node: record.id,
            on,
            at: now_ms(),
        },
    )
    .await
}

/// Whether node `id` is in maintenance.
pub fn in_maintenance(node: &Node, id: u64) -> bool {
    node.state.read(|d| d.state.maintenance.contains_key(&id))
}

/// Decommissions a node: it leaves the Raft membership and stops serving (409
/// when that would leave no quorum).
pub async fn decommission(node: &Node, caller: &Caller, id: u64) -> Result<(), OpError> {
    let audit = caller.audit("nodes.remove", format!("node {id}"));
    audit
        .run_alone(node, async { Ok(leader::decommission(node, id).await?) })
        .await
}
