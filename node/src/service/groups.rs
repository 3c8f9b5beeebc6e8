//! Groups: the predefined `admin`, `operator`, `viewer`, and custom groups carrying
//! a set of named permissions.

use std::collections::BTreeSet;

use bcm_api::{GroupFilter, NewGroup};
use bcm_raft_store::{Command, Group, PERMISSIONS};

use super::auth::Caller;
use super::{caught_up, check_name, lookup, write, OpError};
use crate::cluster::Node;

/// Only a caller who holds a permission may grant it: `granted` must hold
/// nothing `caller` lacks (an admin holds every permission).
pub fn may_grant(caller: &Caller, granted: &BTreeSet<String>) -> Result<(), OpError> {
    let lacking: Vec<&str> = granted
        .iter()
        .map(String::as_str)
        .filter(|p| !caller.permissions.contains(p))
        .collect();
    if lacking.is_empty() {
        return Ok(());
    }
    Err(OpError::Forbidden(format!(
        "user {:?} does not hold {} and so may not grant it; ask a member of admin",
        caller.name,
        lacking.join(", ")
    )))
}

fn check_permissions(perms: &BTreeSet<String>) -> Result<(), OpError> {
    match perms.iter().find(|p| !PERMISSIONS.contains(&p.as_str())) {
        Some(p) => Err(OpError::invalid(
            "permissions",
            format!(
                "unknown permission {p:?}; known: {}",
                PERMISSIONS.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Groups matching `filter`, by name.
pub fn list(node: &Node, filter: &GroupFilter) -> Vec<Group> {
    node.state.read(|d| {
        d.state
            .groups
            .values()
            .filter(|g| filter.q.as_deref().is_none_or(|q| g.name.contains(q)))
            .cloned()
            .collect()
    })
}

pub fn get(node: &Node, name: &str) -> Result<Group, OpError> {
    lookup(node, "group", format!("{name:?}"), |s| s.groups.get(name))
}

/// Creates a custom group, granting only what `caller` holds (now: see
/// [`Caller::as_now`]).
pub async fn create(node: &Node, caller: &Caller, new: NewGroup) -> Result<Group, OpError> {
    let audit = caller
        .audit("groups.create", &new.name)
        .detail(granting(&new.permissions));
    audit
        .run(node, async {
            check_name("name", &new.name)?;
            check_permissions(&new.permissions)?;
            // What the caller holds now, wherever it last changed.
            caught_up(node).await?;
            may_grant(&caller.as_now(node, "groups.write")?, &new.permissions)?;
            let command = Command::PutGroup {
                name: new.name,
                permissions: new.permissions,
                create: true,
            };
            write(node, &audit, command).await
        })
        .await
}

/// What a group is given, for the audit log.
fn granting(permissions: &BTreeSet<String>) -> String {
    let names: Vec<&str> = permissions.iter().map(String::as_str).collect();
    format!("permissions: {}", names.join(","))
}

/// Replaces a custom group's permissions (a predefined one cannot change: 409);
/// those it adds, `caller` must hold.
pub async fn update(
    node: &Node,
    caller: &Caller,
    name: String,
    permissions: BTreeSet<String>,
) -> Result<Group, OpError> {
    let audit = caller
        .audit("groups.update", &name)
        .detail(granting(&permissions));
    audit
        .run(node, async {
            check_permissions(&permissions)?;
            // What the group grants now, wherever it last changed: a stale copy
            // still holding a permission just taken away would let the caller
            // grant it again without holding it.
            caught_up(node).await?;
            let caller = caller.as_now(node, "groups.write")?;
            let had = get(node, &name)?.permissions;
            may_grant(&caller, &permissions.difference(&had).cloned().collect())?;
            let command = Command::PutGroup {
                name,
                permissions,
                create: false,
            };
            write(node, &audit, command).await
        })
        .await
}

/// Deletes a custom group that no user is in.
pub async fn delete(node: &Node, caller: &Caller, name: String) -> Result<Group, OpError> {
    let audit = caller.audit("groups.delete", &name);
    audit
        .run(node, write(node, &audit, Command::DeleteGroup { name }))
        .await
}
