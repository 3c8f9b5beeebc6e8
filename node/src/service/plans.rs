//! Backup plans: what to back up (a node's paths), when (cron, UTC), how many to
//! keep and on how many storage nodes.

use bcm_api::{PlanBody, PlanFilter, PlanPatch};
use bcm_raft_store::{Command, Plan, PlanSpec};

use super::auth::Caller;
use super::{check_name, lookup, write, OpError, Search};
use crate::cluster::{now_ms, Node};

/// Absolute paths, 1 to 64 of them, each at most 4096 bytes, no NUL.
pub fn check_paths(field: &str, paths: &[String]) -> Result<(), OpError> {
    if paths.is_empty() || paths.len() > 64 {
        return Err(OpError::invalid(field, "1 to 64 absolute paths"));
    }
    if let Some(p) = paths
        .iter()
        .find(|p| !p.starts_with('/') || p.len() > 4096 || p.contains('\0'))
    {
        return Err(OpError::invalid(
            field,
            format!("{p:?} is not an absolute path"),
        ));
    }
    // A path says where it is, with no way around: no `.` or `..` names.
    if let Some(p) = paths
        .iter()
        .find(|p| p.split('/').any(|name| name == "." || name == ".."))
    {
        return Err(OpError::invalid(
            field,
            format!("{p:?} must not contain . or .. (give the path itself)"),
        ));
    }
    Ok(())
}

/// `id` is a registered node (registered through any node: see `referred`).
pub async fn check_node(node: &Node, field: &str, id: u64) -> Result<(), OpError> {
    let known = super::referred(node, |s| s.nodes.contains_key(&id).then_some(())).await?;
    if known.is_some() {
        Ok(())
    } else {
        Err(OpError::invalid(
            field,
            format!("node {id} is not registered"),
        ))
    }
}

fn check_schedule(schedule: Option<&str>) -> Result<(), OpError> {
    match schedule {
        None => Ok(()),
        Some(s) => s.parse::<croner::Cron>().map(|_| ()).map_err(|e| {
            OpError::invalid(
                "schedule",
                format!("{s:?} is not a cron expression ({e}); e.g. \"0 3 * * *\" for 03:00 daily"),
            )
        }),
    }
}

/// A plan as a whole, validated.
async fn spec(node: &Node, b: PlanBody) -> Result<PlanSpec, OpError> {
    check_name("name", &b.name)?;
    check_node(node, "source_node", b.source_node).await?;
    check_paths("paths", &b.paths)?;
    check_schedule(b.schedule.as_deref())?;
    if !(1..=1000).contains(&b.keep_last) {
        return Err(OpError::invalid("keep_last", "between 1 and 1000"));
    }
    if !(1..=7).contains(&b.replicas) {
        return Err(OpError::invalid("replicas", "between 1 and 7"));
    }
    Ok(PlanSpec {
        name: b.name,
        source_node: b.source_node,
        paths: b.paths,
        schedule: b.schedule,
        keep_last: b.keep_last,
        replicas: b.replicas,
        enabled: b.enabled,
    })
}

/// Plans matching `filter`, by id.
pub fn list(node: &Node, filter: &PlanFilter) -> Vec<Plan> {
    let q = Search::new(filter.q.as_deref());
    node.state.read(|d| {
        d.state
            .plans
            .values()
            .filter(|x| q.matches(&x.spec.name, x.id))
            .filter(|x| filter.node.is_none_or(|n| x.spec.source_node == n))
            .filter(|x| filter.enabled.is_none_or(|e| x.spec.enabled == e))
            .cloned()
            .collect()
    })
}

pub fn get(node: &Node, id: u64) -> Result<Plan, OpError> {
    lookup(node, "plan", id, |s| s.plans.get(&id))
}

pub async fn create(node: &Node, caller: &Caller, body: PlanBody) -> Result<Plan, OpError> {
    let audit = caller.audit("plans.create", &body.name).detail(format!(
        "node {}: {}",
        body.source_node,
        body.paths.join(" ")
    ));
    audit
        .run(node, async {
            let spec = spec(node, body).await?;
            write(node, &audit, Command::CreatePlan { spec, at: now_ms() }).await
        })
        .await
}

/// Changes any subset of a plan's fields; the result is validated as a whole.
pub async fn update(
    node: &Node,
    caller: &Caller,
    id: u64,
    patch: PlanPatch,
) -> Result<Plan, OpError> {
    let audit = caller
        .audit("plans.update", format!("plan {id}"))
        .detail(changed_fields(&patch));
    audit
        .run(node, async {
            // The change is made to the plan as it stands now, wherever it was
            // last changed: this node catches up with the leader first.
            super::caught_up(node).await?;
            let current = get(node, id)?.spec;
            let body = PlanBody {
                name: patch.name.unwrap_or(current.name),
                source_node: patch.source_node.unwrap_or(current.source_node),
                paths: patch.paths.unwrap_or(current.paths),
                schedule: patch.schedule.unwrap_or(current.schedule),
                keep_last: patch.keep_last.unwrap_or(current.keep_last),
                replicas: patch.replicas.unwrap_or(current.replicas),
                enabled: patch.enabled.unwrap_or(current.enabled),
            };
            let spec = spec(node, body).await?;
            write(node, &audit, Command::UpdatePlan { id, spec }).await
        })
        .await
}

/// Which fields a change sets, for the audit log.
fn changed_fields(patch: &PlanPatch) -> String {
    let set = [
        ("name", patch.name.is_some()),
        ("source_node", patch.source_node.is_some()),
        ("paths", patch.paths.is_some()),
        ("schedule", patch.schedule.is_some()),
        ("keep_last", patch.keep_last.is_some()),
        ("replicas", patch.replicas.is_some()),
        ("enabled", patch.enabled.is_some()),
    ];
    let names: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    format!("sets {}", names.join(", "))
}

/// Deletes a plan (its backups stay in the catalog).
pub async fn delete(node: &Node, caller: &Caller, id: u64) -> Result<Plan, OpError> {
    let audit = caller.audit("plans.delete", format!("plan {id}"));
    audit
        .run(node, write(node, &audit, Command::DeletePlan { id }))
        .await
}
