//! Users, groups and permissions: the records of access control. (Their
//! transitions are in `state/access.rs`.)

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::time::Millis;

/// Every permission a route can require. A group holds a subset.
pub const PERMISSIONS: &[&str] = &[
    "cluster.read",
    "cluster.write",
    "nodes.read",
    "nodes.write",
    "config.read",
    "config.write",
    "users.read",
    "users.write",
    "groups.read",
    "groups.write",
    "events.read",
    "plans.read",
    "plans.write",
    "backups.read",
    "backups.write",
    "restores.read",
    "restores.write",
    "audit.read",
];

const _: () = assert!(
    PERMISSIONS.len() <= 32,
    "PermissionSet holds 32 permissions"
);

/// A set of [`PERMISSIONS`] as bits: what every request checks, so it is computed
/// without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermissionSet(u32);

impl PermissionSet {
    fn bit(permission: &str) -> Option<u32> {
        PERMISSIONS
            .iter()
            .position(|p| *p == permission)
            .map(|i| 1 << i)
    }

    /// The set of the named permissions that exist (unknown names are ignored).
    pub(crate) fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> PermissionSet {
        PermissionSet(
            names
                .into_iter()
                .filter_map(PermissionSet::bit)
                .fold(0, |acc, b| acc | b),
        )
    }

    pub fn contains(&self, permission: &str) -> bool {
        Self::bit(permission).is_some_and(|b| self.0 & b != 0)
    }

    /// The permissions by name.
    pub fn names(&self) -> BTreeSet<String> {
        PERMISSIONS
            .iter()
            .filter(|p| self.contains(p))
            .map(|p| p.to_string())
            .collect()
    }
}

/// The predefined groups, which cannot be deleted or changed.
pub const BUILTIN_GROUPS: &[&str] = &["admin", "operator", "viewer"];

/// Permissions only `admin` holds of the predefined groups: the audit log says
/// who logged in from where, which is for those who manage access (a custom
/// group may be given it).
const ADMIN_ONLY: &[&str] = &["audit.read"];

/// What a predefined group may do: `admin` everything; `operator` everything but
/// users, groups, membership and the audit log; `viewer` reads only, but not the
/// audit log.
pub fn builtin_permissions(group: &str) -> BTreeSet<String> {
    let all = PERMISSIONS.iter().map(|p| p.to_string());
    let shared = all.clone().filter(|p| !ADMIN_ONLY.contains(&p.as_str()));
    match group {
        "admin" => all.collect(),
        "operator" => shared
            .filter(|p| !p.starts_with("users.") && !p.starts_with("groups.") && p != "nodes.write")
            .collect(),
        "viewer" => shared.filter(|p| p.ends_with(".read")).collect(),
        _ => BTreeSet::new(),
    }
}

/// A named set of permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub permissions: BTreeSet<String>,
    pub builtin: bool,
}

/// A user account: its name, password hash, groups and token generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    /// argon2id PHC string; never a password.
    pub password_hash: String,
    pub enabled: bool,
    pub groups: Vec<String>,
    pub created_at: Millis,
    /// Tokens carry the generation they were issued in; a new password or
    /// disabling the user moves it on, which ends every older token.
    pub token_generation: u64,
}
