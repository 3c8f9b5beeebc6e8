//! Users: accounts with their groups. Passwords are checked for strength and
//! hashed (argon2id) here, before a command is proposed: no plaintext reaches the
//! log, a snapshot or a log line.

use bcm_api::{NewUser, UserFilter, UserPatch};
use bcm_raft_store::{Command, User};

use super::auth::Caller;
use super::{caught_up, check_name, lookup, write, OpError, Search};
use crate::cluster::{now_ms, Node};

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_LEN: usize = 12;

/// At least 12 characters, not a well-known weak password, not the user name, not
/// one repeated character.
pub fn check_password(name: &str, password: &str) -> Result<(), OpError> {
    const WEAK: &[&str] = &[
        "password1234",
        "123456789012",
        "qwertyuiopas",
        "adminadmin12",
        "passwordpassword",
        "changeme1234",
        "letmein12345",
        "iloveyou1234",
        "welcome12345",
        "qwerty123456",
        "abcdefghijkl",
        "111111111111",
        "000000000000",
        "administrator",
    ];
    let lower = password.to_lowercase();
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(OpError::invalid(
            "password",
            format!("at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(OpError::invalid("password", "at most 1024 bytes"));
    }
    let first = lower.chars().next();
    if WEAK.contains(&lower.as_str())
        || lower.contains(&name.to_lowercase())
        || lower.chars().all(|c| Some(c) == first)
    {
        return Err(OpError::invalid(
            "password",
            "too easy to guess: choose a longer, less common one",
        ));
    }
    Ok(())
}

fn check_groups(node: &Node, groups: &[String]) -> Result<(), OpError> {
    let unknown = node.state.read(|d| {
        groups
            .iter()
            .find(|g| !d.state.groups.contains_key(*g))
            .cloned()
    });
    match unknown {
        Some(g) => Err(OpError::invalid("groups", format!("unknown group {g:?}"))),
        None => Ok(()),
    }
}

/// The group whose members may put users into it, or into any group.
const ADMIN: &str = "admin";

/// May `caller` put a user into `added` groups? A member of admin may; anyone
/// else not into admin, nor into a group granting a permission they lack.
fn may_add_to(node: &Node, caller: &Caller, added: &[String]) -> Result<(), OpError> {
    if caller.groups.iter().any(|g| g == ADMIN) {
        return Ok(());
    }
    if added.iter().any(|g| g == ADMIN) {
        return Err(OpError::Forbidden(format!(
            "only a member of admin may put a user into admin; user {:?} is not one",
            caller.name
        )));
    }
    for g in added {
        let grants = node
            .state
            .read(|d| d.state.groups.get(g).map(|g| g.permissions.clone()))
            .unwrap_or_default();
        super::groups::may_grant(caller, &grants).map_err(|e| match e {
            OpError::Forbidden(why) => {
                OpError::Forbidden(format!("group {g:?} grants more: {why}"))
            }
            other => other,
        })?;
    }
    Ok(())
}

/// Users matching `filter`, by id.
pub fn list(node: &Node, filter: &UserFilter) -> Vec<User> {
    let q = Search::new(filter.q.as_deref());
    node.state.read(|d| {
        d.state
            .users
            .values()
            .filter(|u| q.matches(&u.name, u.id))
            .filter(|u| filter.enabled.is_none_or(|e| u.enabled == e))
            .filter(|u| filter.group.as_ref().is_none_or(|g| u.groups.contains(g)))
            .cloned()
            .collect()
    })
}

pub fn get(node: &Node, id: u64) -> Result<User, OpError> {
    lookup(node, "user", id, |s| s.users.get(&id))
}

/// Creates a user; its name is unique regardless of case. Its groups must be
/// ones `caller` may put users into.
pub async fn create(node: &Node, caller: &Caller, new: NewUser) -> Result<User, OpError> {
    let audit = caller
        .audit("users.create", &new.name)
        .detail(format!("groups: {}", new.groups.join(",")));
    audit
        .run(node, async {
            check_name("name", &new.name)?;
            check_password(&new.name, &new.password)?;
            caught_up(node).await?;
            let caller = &caller.as_now(node, "users.write")?;
            check_groups(node, &new.groups)?;
            may_add_to(node, caller, &new.groups)?;
            if node.state.read(|d| {
                d.state
                    .users
                    .values()
                    .any(|u| u.name.eq_ignore_ascii_case(&new.name))
            }) {
                return Err(OpError::conflict(format!(
                    "user {:?} already exists",
                    new.name
                )));
            }
            let password_hash = crate::crypto::hash_password(new.password).await?;
            let command = Command::CreateUser {
                name: new.name,
                password_hash,
                groups: new.groups,
                at: now_ms(),
            };
            write(node, &audit, command).await
        })
        .await
}

/// How users are named in the audit log: by name, or by id when there is none.
fn target(node: &Node, id: u64) -> String {
    node.state
        .read(|d| d.state.users.get(&id).map(|u| u.name.clone()))
        .unwrap_or_else(|| format!("user {id}"))
}

/// A change to a user, in short: never the password, only that it changes.
fn describe(patch: &UserPatch) -> String {
    let mut parts = Vec::new();
    if let Some(e) = patch.enabled {
        parts.push(if e { "enable" } else { "disable" }.to_string());
    }
    if patch.password.is_some() {
        parts.push("new password".into());
    }
    if let Some(g) = &patch.groups {
        parts.push(format!("groups: {}", g.join(",")));
    }
    parts.join("; ")
}

/// Changes a user; disabling it or a new password ends its tokens on every node.
/// Groups it is put into must be ones `caller` may put users into.
pub async fn update(
    node: &Node,
    caller: &Caller,
    id: u64,
    patch: UserPatch,
) -> Result<User, OpError> {
    // The change is checked against the user and its groups as they stand now.
    caught_up(node).await?;
    let audit = caller
        .audit("users.update", target(node, id))
        .detail(describe(&patch));
    audit
        .run(node, async {
            let caller = &caller.as_now(node, "users.write")?;
            let user = get(node, id)?;
            may_manage(node, caller, &user)?;
            let name = user.name;
            if let Some(g) = &patch.groups {
                check_groups(node, g)?;
                let added: Vec<String> = g
                    .iter()
                    .filter(|g| !user.groups.contains(g))
                    .cloned()
                    .collect();
                may_add_to(node, caller, &added)?;
            }
            let password_hash = match patch.password {
                Some(p) => {
                    check_password(&name, &p)?;
                    Some(crate::crypto::hash_password(p).await?)
                }
                None => None,
            };
            let command = Command::UpdateUser {
                id,
                enabled: patch.enabled,
                password_hash,
                groups: patch.groups,
            };
            write(node, &audit, command).await
        })
        .await
}

/// Deletes a user; its tokens stop working on every node.
pub async fn delete(node: &Node, caller: &Caller, id: u64) -> Result<User, OpError> {
    caught_up(node).await?;
    let audit = caller.audit("users.delete", target(node, id));
    audit
        .run(node, async {
            let caller = &caller.as_now(node, "users.write")?;
            may_manage(node, caller, &get(node, id)?)?;
            write(node, &audit, Command::DeleteUser { id }).await
        })
        .await
}

/// May `caller` change or delete `user`? Only if it could have put the user into
/// every group it is in: setting an admin's password (or an operator's) would
/// otherwise be a way to become one.
fn may_manage(node: &Node, caller: &Caller, user: &User) -> Result<(), OpError> {
    match may_add_to(node, caller, &user.groups) {
        Err(OpError::Forbidden(why)) => Err(OpError::Forbidden(format!(
            "user {:?} can be changed or deleted only by someone who could grant all it \
             holds: {why}",
            user.name
        ))),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords() {
        assert!(check_name("name", "alice").is_ok());
        assert!(check_name("name", "backup.ops-2").is_ok());
        for bad in ["", "-x", "a b", "ü", &"a".repeat(65)] {
            assert!(check_name("name", bad).is_err(), "{bad:?}");
        }
        assert!(check_password("alice", "correct horse battery").is_ok());
        for bad in [
            "short",
            "password1234",
            "aaaaaaaaaaaaaaa",
            "my-alice-password",
        ] {
            let e = check_password("alice", bad).unwrap_err();
            assert!(
                matches!(&e, OpError::Invalid { field: Some(f), .. } if f == "password"),
                "{bad:?}: {e:?}"
            );
        }
    }
}
