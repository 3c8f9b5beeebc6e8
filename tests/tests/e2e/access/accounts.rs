//! What users and groups may be: names, passwords, groups and permissions checked,
//! the predefined groups fixed, the last admin kept; and accounts written through a
//! follower surviving the loss of the leader.

use std::collections::BTreeSet;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{wait_for, Cluster, Reply, ADMIN_PASSWORD};
use reqwest::Method;

use super::{
    admin, admin_id, as_user, assert_refused, create_user, delete_user, get_as, login, me, names,
    patch_user, predefined, user_path, wait_listed, wait_user_on,
};
use crate::{secs, PASSWORD};

#[test]
fn users_and_groups_are_checked_and_the_last_admin_cannot_be_locked_out() {
    let c = Cluster::builder().name("access-rules").voters(3).start();
    let f = c.followers()[0];
    let (alice, longest) = users_are_checked(&c, f);

    // None of the refused accounts exists, anywhere; alice is still an operator.
    for n in c.all_nodes() {
        wait_listed(&c, n, "/api/v1/users", &["admin", "alice", &longest]);
        let r = admin(&c, n, Method::GET, &user_path(alice), None);
        assert_eq!(r.json()["groups"], json!(["operator"]), "node {n}: {r}");
    }
    // The list filters by group and state, and pages.
    wait_listed(&c, f, "/api/v1/users?group=operator", &["alice"]);
    wait_listed(&c, f, "/api/v1/users?group=admin&enabled=true", &["admin"]);
    wait_listed(&c, f, "/api/v1/users?enabled=false", &[]);
    let mut paged = BTreeSet::new();
    for offset in 0..3 {
        let page = c
            .get_json(f, &format!("/api/v1/users?limit=1&offset={offset}"))
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(
            page["total"] == 3 && items.len() == 1,
            "offset {offset}: {page}"
        );
        paged.insert(items[0]["name"].as_str().unwrap().to_string());
    }
    assert_eq!(paged.len(), 3, "three pages of one: {paged:?}");

    groups_are_checked(&c, f);
    the_last_admin_cannot_be_locked_out(&c, f);
}

/// Creating and changing users through `via`: a name used once, bad names and weak
/// passwords refused, unknown groups and fields too. Returns alice's id and the
/// longest name accepted, the two accounts created besides admin.
fn users_are_checked(c: &Cluster, via: u64) -> (u64, String) {
    let user = |name: &str, password: &str, groups: Value| {
        let body = json!({"name": name, "password": password, "groups": groups});
        admin(c, via, Method::POST, "/api/v1/users", Some(&body))
    };

    // A new operator account.
    let r = user("alice", PASSWORD, json!(["operator"]));
    assert_eq!(r.status, 201, "creating alice: {r}");
    let a = r.json();
    let alice = a["id"].as_u64().unwrap_or_else(|| panic!("no id: {r}"));
    assert!(
        a["name"] == "alice"
            && a["enabled"] == true
            && a["groups"] == json!(["operator"])
            && a["created_at_ms"].as_u64().is_some_and(|t| t > 0)
            && a.get("password").is_none(),
        "{r}"
    );
    // The same name again is a conflict.
    let r = user("alice", "Another-Fine-Passphrase", json!(["viewer"]));
    assert_refused(&r, 409, None, "alice again");

    // Bad names.
    let long = "a".repeat(65);
    for name in [
        "",
        "-dash-first",
        ".dot-first",
        "has space",
        "sl/ash",
        "émile",
        &long,
    ] {
        let r = user(name, PASSWORD, json!(["viewer"]));
        assert_refused(&r, 422, Some("name"), &format!("user name {name:?}"));
    }
    let longest = "b".repeat(64);
    let r = user(&longest, PASSWORD, json!(["viewer"]));
    assert_eq!(r.status, 201, "a 64-character name: {r}");

    // Weak passwords, each kind.
    for (password, why) in [
        ("Sh0rt-pass!", "shorter than 12"),
        ("password1234", "well known"),
        ("I-am-bob-the-builder", "contains the user name"),
        ("zzzzzzzzzzzzzzzz", "one repeated character"),
    ] {
        let r = user("bob", password, json!(["viewer"]));
        assert_refused(&r, 422, Some("password"), &format!("password {why}"));
    }
    // ... also when changed later.
    let r = patch_user(c, via, alice, json!({"password": "alice-in-wonderland"}));
    assert_refused(
        &r,
        422,
        Some("password"),
        "alice's new password with her name",
    );

    // Unknown groups and unknown fields.
    let r = user("bob", PASSWORD, json!(["viewer", "wizards"]));
    assert_refused(&r, 422, Some("groups"), "an unknown group");
    let r = patch_user(c, via, alice, json!({"groups": ["wizards"]}));
    assert_refused(&r, 422, Some("groups"), "moving alice to an unknown group");
    let body = json!({"name": "bob", "password": PASSWORD, "groups": [], "is_admin": true});
    let r = admin(c, via, Method::POST, "/api/v1/users", Some(&body));
    assert_refused(&r, 422, None, "an unknown field");
    (alice, longest)
}

/// Groups through `via`: the predefined ones grant what they say and cannot be
/// changed or deleted; a custom one takes known permissions only, a name used once,
/// and is not deleted while it has members.
fn groups_are_checked(c: &Cluster, via: u64) {
    let group = |method: Method, name: &str, body: Option<Value>| {
        admin(
            c,
            via,
            method,
            &format!("/api/v1/groups/{name}"),
            body.as_ref(),
        )
    };
    let create = |body: Value| admin(c, via, Method::POST, "/api/v1/groups", Some(&body));

    for g in ["admin", "operator", "viewer"] {
        let r = group(Method::GET, g, None);
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(
            names(&r.json()["permissions"]),
            predefined(g),
            "group {g}: {r}"
        );
        let r = group(Method::DELETE, g, None);
        assert_refused(&r, 409, None, &format!("deleting group {g}"));
        let r = group(
            Method::PATCH,
            g,
            Some(json!({"permissions": ["cluster.read"]})),
        );
        assert_refused(&r, 409, None, &format!("changing group {g}"));
    }

    let r = create(json!({"name": "auditors", "permissions": ["events.read", "users.read"]}));
    assert_eq!(r.status, 201, "creating auditors: {r}");
    assert_eq!(
        names(&r.json()["permissions"]),
        names(&json!(["events.read", "users.read"])),
        "{r}"
    );
    let r = create(json!({"name": "auditors", "permissions": []}));
    assert_refused(&r, 409, None, "auditors again");
    let r = create(json!({"name": "wizards", "permissions": ["cluster.read", "cluster.destroy"]}));
    assert_refused(&r, 422, Some("permissions"), "an unknown permission");
    let r = group(
        Method::PATCH,
        "auditors",
        Some(json!({"permissions": ["users.fly"]})),
    );
    assert_refused(
        &r,
        422,
        Some("permissions"),
        "changing to an unknown permission",
    );
    let audrey = create_user(c, via, "audrey", &["auditors"]);
    let r = group(Method::DELETE, "auditors", None);
    assert_refused(&r, 409, None, "deleting auditors while audrey is in it");
    let r = delete_user(c, via, audrey);
    assert!(r.is_success(), "deleting audrey: {r}");
    let r = group(Method::DELETE, "auditors", None);
    assert!(r.is_success(), "deleting the now empty auditors: {r}");
    for n in c.all_nodes() {
        wait_listed(c, n, "/api/v1/groups", &["admin", "operator", "viewer"]);
    }
}

/// The only admin cannot be disabled, demoted or deleted through `via`; with a
/// second admin the first can be, and then the second cannot; and two admins
/// disabling each other at once leave exactly one.
fn the_last_admin_cannot_be_locked_out(c: &Cluster, via: u64) {
    let f = via;
    let admin_user = user_path(admin_id(c, f));
    let lockouts = [
        (Method::PATCH, Some(json!({"enabled": false})), "disabling"),
        (
            Method::PATCH,
            Some(json!({"groups": ["operator"]})),
            "demoting",
        ),
        (Method::DELETE, None, "deleting"),
    ];
    for (method, body, what) in &lockouts {
        let r = admin(c, f, method.clone(), &admin_user, body.as_ref());
        assert_refused(&r, 409, None, &format!("{what} the last admin"));
    }
    for n in c.all_nodes() {
        let r = c.login_with(n, "admin", ADMIN_PASSWORD).unwrap();
        assert_eq!(r.status, 200, "admin login on node {n}: {r}");
    }

    // ...but with a second admin, the first can be disabled, and then the second is
    // the one that cannot.
    let root = create_user(c, f, "root", &["admin"]);
    wait_user_on(c, f, root, "created", |r| r.status == 200);
    let root_token = login(c, f, "root", PASSWORD);
    let enabled = |on: bool| json!({ "enabled": on });
    let root_sets_admin_enabled = |on: bool| {
        let body = enabled(on);
        as_user(c, f, &root_token, Method::PATCH, &admin_user, Some(&body))
    };
    let r = root_sets_admin_enabled(false);
    assert_eq!(r.status, 200, "root disables admin: {r}");
    let root_user = user_path(root);
    for (method, body, what) in &lockouts {
        let r = as_user(c, f, &root_token, method.clone(), &root_user, body.as_ref());
        assert_refused(
            &r,
            409,
            None,
            &format!("{what} root, now the last enabled admin"),
        );
    }
    // Root enables admin again, and `f` shows it.
    let enable_admin_again = || {
        let r = root_sets_admin_enabled(true);
        assert_eq!(r.status, 200, "root enables admin again: {r}");
        wait_for(
            secs(10),
            &format!("node {f} to show admin enabled"),
            || Ok(get_as(c, f, &root_token, &admin_user)),
            |r| r.json()["enabled"] == true,
        );
    };
    enable_admin_again();

    // Two admins disabling each other at the same moment, through two nodes, cannot
    // lock everybody out: exactly one of them wins.
    let other = c.all_nodes().into_iter().find(|n| *n != f).unwrap();
    let admin_token = login(c, f, "admin", ADMIN_PASSWORD);
    let api = c.api();
    let barrier = std::sync::Barrier::new(2);
    let disable = |node: u64, token: &str, path: &str| {
        barrier.wait();
        let req = api
            .request(node, Method::PATCH, path)
            .bearer(token)
            .json(&enabled(false));
        api.send(req)
            .unwrap_or_else(|e| panic!("PATCH {path} via node {node}: {e}"))
    };
    let (by_admin, by_root) = std::thread::scope(|s| {
        let a = s.spawn(|| disable(f, &admin_token, &root_user));
        let b = s.spawn(|| disable(other, &root_token, &admin_user));
        (a.join().unwrap(), b.join().unwrap())
    });
    c.log(format!(
        "admin disables root: {by_admin}; root disables admin: {by_root}"
    ));
    let lost = |r: &Reply| r.status == 409 || r.status == 401;
    let (winner, winner_token) = match (by_admin.status, by_root.status) {
        (200, _) if lost(&by_root) => ("admin", admin_token.clone()),
        (_, 200) if lost(&by_admin) => ("root", root_token.clone()),
        _ => panic!(
            "exactly one of the two must win:\nadmin disables root: {by_admin}\n\
             root disables admin: {by_root}"
        ),
    };
    for n in c.all_nodes() {
        wait_for(
            secs(10),
            &format!("node {n} to show {winner} as the one enabled admin"),
            || {
                let enabled_admins = "/api/v1/users?group=admin&enabled=true";
                Ok(get_as(c, n, &winner_token, enabled_admins))
            },
            |r| {
                let items = r.json()["items"].as_array().cloned().unwrap_or_default();
                items.len() == 1 && items[0]["name"] == winner
            },
        );
    }
    if winner == "root" {
        enable_admin_again();
    }
    let r = admin(c, f, Method::DELETE, &root_user, None);
    assert!(r.is_success(), "admin deletes root: {r}");
}

#[test]
fn users_and_groups_written_through_a_follower_survive_losing_the_leader() {
    let c = Cluster::builder().name("access-failover").voters(3).start();
    let leader = c.wait_for_leader();
    let f = c.followers()[0];

    // Through a follower, the operator creates a group of auditors and one auditor.
    let perms = json!(["events.read", "users.read"]);
    let auditors = json!({"name": "auditors", "permissions": perms});
    let r = admin(&c, f, Method::POST, "/api/v1/groups", Some(&auditors));
    assert_eq!(r.status, 201, "creating auditors via node {f}: {r}");
    let ivan = create_user(&c, f, "ivan", &["auditors"]);
    for n in c.all_nodes() {
        wait_user_on(&c, n, ivan, "created", |r| r.status == 200);
        let g = admin(&c, n, Method::GET, "/api/v1/groups/auditors", None);
        assert_eq!(
            names(&g.json()["permissions"]),
            names(&perms),
            "node {n}: {g}"
        );
    }

    // The leader dies.
    c.kill(leader);
    let new_leader = c.wait_for_new_leader(leader);
    let survivors = c.live_nodes();

    // Ivan logs in on every survivor, finds himself by name and by id, and still
    // may not touch config.
    for &n in &survivors {
        let token = login(&c, n, "ivan", PASSWORD);
        for q in ["iva".to_string(), ivan.to_string()] {
            let r = get_as(&c, n, &token, &format!("/api/v1/users?q={q}"));
            let found = r.json()["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|u| u["id"] == ivan && u["name"] == "ivan"));
            assert!(
                r.status == 200 && found,
                "ivan searches ?q={q} on node {n}: {r}"
            );
        }
        let r = get_as(&c, n, &token, "/api/v1/config");
        assert_eq!(r.status, 403, "ivan reads config on node {n}: {r}");
    }

    // Accounts can still be managed: a new auditor through the surviving follower.
    let other = survivors
        .iter()
        .copied()
        .find(|n| *n != new_leader)
        .unwrap();
    c.wait_for_agreed_leader(secs(10));
    let judy = create_user(&c, other, "judy", &["auditors"]);

    // The old leader comes back and knows both of them.
    c.restart(leader);
    c.wait_ready(leader, secs(30));
    for id in [ivan, judy] {
        wait_user_on(&c, leader, id, "caught up", |r| r.status == 200);
    }
    for name in ["ivan", "judy"] {
        let token = login(&c, leader, name, PASSWORD);
        let r = me(&c, leader, &token);
        assert_eq!(r.json()["name"], name, "{r}");
    }
}
