//! Users and groups: the access-control transitions, and the permissions a user
//! holds through its groups.

use std::collections::BTreeSet;

use super::{conflict, not_found, take_id, Applied, ClusterState};
use crate::command::{Rejection, Response};
use crate::records::{
    builtin_permissions, Group, Millis, PermissionSet, StateEvent, User, BUILTIN_GROUPS,
    PERMISSIONS,
};

impl ClusterState {
    pub(super) fn create_builtin_groups(&mut self) {
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
        PermissionSet::from_names(
            user.groups
                .iter()
                .filter_map(|g| self.groups.get(g))
                .flat_map(|g| g.permissions.iter())
                .map(String::as_str),
        )
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

    pub(super) fn create_user(
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
        let id = take_id(&mut self.next_user_id);
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

    pub(super) fn update_user(
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

    pub(super) fn delete_user(&mut self, id: u64) -> Applied {
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

    pub(super) fn put_group(
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

    pub(super) fn delete_group(&mut self, name: &str) -> Applied {
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
    use crate::state::fixtures::initialized;
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

    #[test]
    fn a_new_password_or_disabling_ends_older_tokens() {
        let mut s = initialized();
        let create = Command::CreateUser {
            name: "alice".into(),
            password_hash: "h1".into(),
            groups: vec!["viewer".into()],
            at: 2,
        };
        let Response::User(alice) = s.apply(2, &create).response else {
            panic!("not created")
        };
        assert_eq!(alice.token_generation, 0);
        let pw = Command::UpdateUser {
            id: alice.id,
            enabled: None,
            password_hash: Some("h2".into()),
            groups: None,
        };
        s.apply(3, &pw);
        assert_eq!(s.users[&alice.id].token_generation, 1);
        let groups_only = Command::UpdateUser {
            id: alice.id,
            enabled: None,
            password_hash: None,
            groups: Some(vec!["operator".into()]),
        };
        s.apply(4, &groups_only);
        assert_eq!(
            s.users[&alice.id].token_generation, 1,
            "a group change keeps tokens"
        );
        let disable = Command::UpdateUser {
            id: alice.id,
            enabled: Some(false),
            password_hash: None,
            groups: None,
        };
        s.apply(5, &disable);
        assert_eq!(s.users[&alice.id].token_generation, 2);
        // The last enabled admin cannot go.
        let demote = Command::UpdateUser {
            id: 1,
            enabled: None,
            password_hash: None,
            groups: Some(vec!["viewer".into()]),
        };
        assert!(matches!(
            s.apply(6, &demote).response,
            Response::Rejected(Rejection::Conflict(_))
        ));
        assert!(matches!(
            s.apply(7, &Command::DeleteUser { id: 1 }).response,
            Response::Rejected(Rejection::Conflict(_))
        ));
        assert!(matches!(
            s.apply(
                8,
                &Command::DeleteGroup {
                    name: "viewer".into()
                }
            )
            .response,
            Response::Rejected(Rejection::Conflict(_))
        ));
    }
}
