//! Groups: the predefined `admin`, `operator`, `viewer`, and custom groups carrying
//! a set of named permissions.

use std::collections::BTreeSet;

use bcm_api::{GroupFilter, NewGroup};
use bcm_raft_store::{Command, Group, PERMISSIONS};

use super::{check_name, lookup, write, OpError};
use crate::cluster::Node;

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

/// Creates a custom group.
pub async fn create(node: &Node, new: NewGroup) -> Result<Group, OpError> {
    check_name("name", &new.name)?;
    check_permissions(&new.permissions)?;
    let command = Command::PutGroup {
        name: new.name,
        permissions: new.permissions,
        create: true,
    };
    write(node, command).await
}

/// Replaces a custom group's permissions (a predefined one cannot change: 409).
pub async fn update(
    node: &Node,
    name: String,
    permissions: BTreeSet<String>,
) -> Result<Group, OpError> {
    check_permissions(&permissions)?;
    let command = Command::PutGroup {
        name,
        permissions,
        create: false,
    };
    write(node, command).await
}

/// Deletes a custom group that no user is in.
pub async fn delete(node: &Node, name: String) -> Result<Group, OpError> {
    write(node, Command::DeleteGroup { name }).await
}
