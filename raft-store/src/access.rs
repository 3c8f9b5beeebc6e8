//! Users, groups and permissions: the access-control part of the replicated state.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::command::{Millis, Rejection, Response};
use crate::state::{Applied, ClusterState, StateEvent, User};

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

/// What a predefined group may do: `admin` everything; `operator` everything but
/// users, groups and membership; `viewer` reads only.
pub fn builtin_permissions(group: &str) -> BTreeSet<String> {
    let all = PERMISSIONS.iter().map(|p| p.to_string());
    match group {
        "admin" => all.collect(),
        "operator" => all
            .filter(|p| !p.starts_with("users.") && !p.starts_with("groups.") && p != "nodes.write")
            .collect(),
        "viewer" => all.filter(|p| p.ends_with(".read")).collect(),
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

fn conflict(msg: impl Into<String>) -> Applied {
    Applied::rejected(Rejection::Conflict(msg.into()))
}

fn not_found(what: &str, id: impl ToString) -> Applied {
    Applied::rejected(Rejection::NotFound {
        what: what.into(),
        id: id.to_string(),
    })
}

impl ClusterState {
    pub(crate) fn create_builtin_groups(&mut self) {
        for name in BUILTIN_GROUPS {
            self.groups.insert(
                name.to_string(),
                Group {
                    name: name.to_string(),
                    permissions: builtin_permissions(name),
                    builtin: true,
                },
            );
        }
    }

    /// The permissions a user holds through its groups.
    pub fn permissions_of(&self, user: &User) -> PermissionSet {
        let bits = user
            .groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .flat_map(|g| g.permissions.iter())
            .filter_map(|p| PermissionSet::bit(p))
            .fold(0, |acc, b| acc | b);
        PermissionSet(bits)
    }

    fn enabled_admins(&self) -> usize {
        self.users
            .values()
            .filter(|u| u.enabled && u.groups.iter().any(|g| g == "admin"))
            .count()
    }

    fn unknown_group(&self, groups: &[String]) -> Option<String> {
        groups
            .iter()
            .find(|g| !self.groups.contains_key(*g))
            .cloned()
    }

    pub(crate) fn create_user(
        &mut self,
        name: &str,
        password_hash: &str,
        groups: &[String],
        at: Millis,
    ) -> Applied {
        // Names differing only in case would confuse people: one of them is enough.
        if self
            .users
            .values()
            .any(|u| u.name.eq_ignore_ascii_case(name))
        {
            return Applied::rejected(Rejection::AlreadyExists {
                what: "user".into(),
                id: name.into(),
            });
        }
        if let Some(g) = self.unknown_group(groups) {
            return Applied::rejected(Rejection::Invalid(format!("unknown group {g:?}")));
        }
        let id = self.next_user_id.max(1);
        self.next_user_id = id + 1;
        let user = User {
            id,
            name: name.into(),
            password_hash: password_hash.into(),
            enabled: true,
            groups: dedup(groups),
            created_at: at,
            token_generation: 0,
        };
        self.users.insert(id, user.clone());
        Applied::ok(
            Response::User(user),
            vec![StateEvent::UserChanged { user_id: id }],
        )
    }

    pub(crate) fn update_user(
        &mut self,
        id: u64,
        enabled: Option<bool>,
        password_hash: Option<&str>,
        groups: Option<&[String]>,
    ) -> Applied {
        let Some(before) = self.users.get(&id).cloned() else {
            return not_found("user", id);
        };
        if let Some(g) = groups.and_then(|g| self.unknown_group(g)) {
            return Applied::rejected(Rejection::Invalid(format!("unknown group {g:?}")));
        }
        let mut after = before.clone();
        if let Some(e) = enabled {
            after.enabled = e;
        }
        if let Some(g) = groups {
            after.groups = dedup(g);
        }
        if let Some(h) = password_hash {
            after.password_hash = h.into();
        }
        // Disabling or a new password ends every token issued before.
        if password_hash.is_some() || (before.enabled && !after.enabled) {
            after.token_generation += 1;
        }
        let was_admin = before.enabled && before.groups.iter().any(|g| g == "admin");
        let is_admin = after.enabled && after.groups.iter().any(|g| g == "admin");
        if was_admin && !is_admin && self.enabled_admins() == 1 {
            return conflict(format!(
                "user {:?} is the last enabled admin: it cannot be disabled or leave the admin group",
                before.name
            ));
        }
        self.users.insert(id, after.clone());
        Applied::ok(
            Response::User(after),
            vec![StateEvent::UserChanged { user_id: id }],
        )
    }

    pub(crate) fn delete_user(&mut self, id: u64) -> Applied {
        let Some(user) = self.users.get(&id).cloned() else {
            return not_found("user", id);
        };
        if user.enabled && user.groups.iter().any(|g| g == "admin") && self.enabled_admins() == 1 {
            return conflict(format!(
                "user {:?} is the last enabled admin: it cannot be deleted",
                user.name
            ));
        }
        self.users.remove(&id);
        Applied::ok(
            Response::User(user),
            vec![StateEvent::UserDeleted { user_id: id }],
        )
    }

    pub(crate) fn put_group(
        &mut self,
        name: &str,
        permissions: &BTreeSet<String>,
        create: bool,
    ) -> Applied {
        if let Some(p) = permissions
            .iter()
            .find(|p| !PERMISSIONS.contains(&p.as_str()))
        {
            return Applied::rejected(Rejection::Invalid(format!("unknown permission {p:?}")));
        }
        if create
            && self
                .groups
                .keys()
                .any(|g| g != name && g.eq_ignore_ascii_case(name))
        {
            return Applied::rejected(Rejection::AlreadyExists {
                what: "group".into(),
                id: name.into(),
            });
        }
        match (self.groups.get(name), create) {
            (Some(_), true) => {
                return Applied::rejected(Rejection::AlreadyExists {
                    what: "group".into(),
                    id: name.into(),
                })
            }
            (None, false) => return not_found("group", name),
            (Some(g), false) if g.builtin => {
                return conflict(format!(
                    "group {name:?} is predefined and cannot be changed"
                ))
            }
            _ => {}
        }
        let group = Group {
            name: name.into(),
            permissions: permissions.clone(),
            builtin: false,
        };
        self.groups.insert(name.into(), group.clone());
        Applied::ok(
            Response::Group(group),
            vec![StateEvent::GroupChanged { name: name.into() }],
        )
    }

    pub(crate) fn delete_group(&mut self, name: &str) -> Applied {
        let Some(group) = self.groups.get(name).cloned() else {
            return not_found("group", name);
        };
        if group.builtin {
            return conflict(format!(
                "group {name:?} is predefined and cannot be deleted"
            ));
        }
        let members = self
            .users
            .values()
            .filter(|u| u.groups.iter().any(|g| g == name))
            .count();
        if members > 0 {
            return conflict(format!("group {name:?} still has {members} member(s)"));
        }
        self.groups.remove(name);
        Applied::ok(
            Response::Group(group),
            vec![StateEvent::GroupChanged { name: name.into() }],
        )
    }
}

fn dedup(groups: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in groups {
        if !out.contains(g) {
            out.push(g.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, Rejection, Response};
    use crate::state::ClusterState;

    #[test]
    fn names_differing_only_in_case_are_duplicates() {
        let mut s = ClusterState::default();
        s.apply(
            1,
            &Command::InitCluster {
                cluster_id: "c".into(),
                token_key: vec![1; 32],
                admin_password_hash: "h".into(),
                at: 0,
            },
        );
        let user = |name: &str| Command::CreateUser {
            name: name.into(),
            password_hash: "h".into(),
            groups: vec![],
            at: 0,
        };
        assert!(matches!(
            s.apply(2, &user("alice")).response,
            Response::User(_)
        ));
        assert!(matches!(
            s.apply(3, &user("Alice")).response,
            Response::Rejected(Rejection::AlreadyExists { .. })
        ));
        let group = Command::PutGroup {
            name: "Admin".into(),
            permissions: Default::default(),
            create: true,
        };
        assert!(matches!(
            s.apply(4, &group).response,
            Response::Rejected(Rejection::AlreadyExists { .. })
        ));
    }
}
