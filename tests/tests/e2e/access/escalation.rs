//! Managing users and groups does not make one an admin: only a caller who holds a
//! permission may grant it, and only a member of `admin` may put a user into
//! `admin` or into a group that grants what the caller lacks, or change or delete
//! a user who holds more than the caller may grant.

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{Cluster, ADMIN_PASSWORD};
use reqwest::Method;

use super::{admin, admin_id, as_user, create_user, login};
use crate::PASSWORD;

fn refused(r: &bcm_tests::Reply, words: &[&str], what: &str) {
    assert_eq!(r.status, 403, "{what}: {r}");
    let detail = r.json()["detail"].as_str().unwrap_or("").to_string();
    for w in words {
        assert!(detail.contains(w), "{what}: the refusal names {w}: {r}");
    }
}

#[test]
fn a_user_manager_cannot_grant_what_it_does_not_hold() {
    let c = Cluster::builder()
        .name("access-escalation")
        .voters(1)
        .start();
    let n = c.wait_for_leader();
    let managers = json!({"name": "usermgr", "permissions":
        ["users.read", "users.write", "groups.read", "groups.write"]});
    let r = admin(&c, n, Method::POST, "/api/v1/groups", Some(&managers));
    assert_eq!(r.status, 201, "{r}");
    let uma_id = create_user(&c, n, "uma", &["usermgr"]);
    let uma = login(&c, n, "uma", PASSWORD);
    let call =
        |method: Method, path: &str, body: Value| as_user(&c, n, &uma, method, path, Some(&body));

    // Into admin: neither a new user nor itself.
    let r = call(
        Method::POST,
        "/api/v1/users",
        json!({"name": "mallory", "password": PASSWORD, "groups": ["admin"]}),
    );
    refused(&r, &["admin"], "a new user in admin");
    let r = call(
        Method::PATCH,
        &format!("/api/v1/users/{uma_id}"),
        json!({"groups": ["usermgr", "admin"]}),
    );
    refused(&r, &["admin"], "itself into admin");
    // Nor into a group granting what it lacks (operator writes config).
    let r = call(
        Method::POST,
        "/api/v1/users",
        json!({"name": "mallory", "password": PASSWORD, "groups": ["operator"]}),
    );
    refused(&r, &["operator", "config.write"], "a new user in operator");
    // A group may not be given what it lacks either, its own or a new one.
    let r = call(
        Method::PATCH,
        "/api/v1/groups/usermgr",
        json!({"permissions": ["users.read", "users.write", "groups.read", "groups.write", "nodes.write"]}),
    );
    refused(&r, &["nodes.write"], "its own group given nodes.write");
    let r = call(
        Method::POST,
        "/api/v1/groups",
        json!({"name": "everything", "permissions": ["config.write", "users.write"]}),
    );
    refused(&r, &["config.write"], "a new group with config.write");

    // What it holds, it may give.
    let r = call(
        Method::POST,
        "/api/v1/groups",
        json!({"name": "readers", "permissions": ["users.read"]}),
    );
    assert_eq!(r.status, 201, "a group of what it holds: {r}");
    let r = call(
        Method::POST,
        "/api/v1/users",
        json!({"name": "rita", "password": PASSWORD, "groups": ["readers", "usermgr"]}),
    );
    assert_eq!(r.status, 201, "a user in groups of what it holds: {r}");

    // Nor change or delete a user holding more than it may grant: setting an
    // admin's password would make it one.
    let admin_path = format!("/api/v1/users/{}", admin_id(&c, n));
    let r = call(
        Method::PATCH,
        &admin_path,
        json!({"password": "Zr4-quartz-meadow-Pilot-58"}),
    );
    refused(&r, &["admin"], "the admin's password set");
    let r = call(Method::PATCH, &admin_path, json!({"enabled": false}));
    refused(&r, &["admin"], "the admin disabled");
    let r = as_user(&c, n, &uma, Method::DELETE, &admin_path, None);
    refused(&r, &["admin"], "the admin deleted");
    let op_id = create_user(&c, n, "oscar", &["operator"]);
    let r = call(
        Method::PATCH,
        &format!("/api/v1/users/{op_id}"),
        json!({"password": "Zr4-quartz-meadow-Pilot-58"}),
    );
    refused(
        &r,
        &["operator", "config.write"],
        "an operator's password set",
    );
    // Its own password, and users of groups it could grant, it may change.
    let r = call(
        Method::PATCH,
        &format!("/api/v1/users/{uma_id}"),
        json!({"password": "Vq7-kettle-orbit-Lumen-93"}),
    );
    assert_eq!(r.status, 200, "its own password: {r}");
    let uma = login(&c, n, "uma", "Vq7-kettle-orbit-Lumen-93");
    let rita = admin(&c, n, Method::GET, "/api/v1/users?q=rita", None).json()["items"][0]["id"]
        .as_u64()
        .expect("rita's id");
    let r = as_user(
        &c,
        n,
        &uma,
        Method::DELETE,
        &format!("/api/v1/users/{rita}"),
        None,
    );
    assert_eq!(r.status, 200, "a user of groups it holds deleted: {r}");
    let again = c.login_with(n, "admin", ADMIN_PASSWORD).unwrap();
    assert_eq!(again.status, 200, "the admin still logs in: {again}");

    // Nothing it was refused happened.
    let me = admin(&c, n, Method::GET, &format!("/api/v1/users/{uma_id}"), None);
    assert_eq!(me.json()["groups"], json!(["usermgr"]), "{me}");
    let g = admin(&c, n, Method::GET, "/api/v1/groups/usermgr", None);
    assert!(!g.body.contains("nodes.write"), "{g}");
    let users = admin(&c, n, Method::GET, "/api/v1/users?q=mallory", None);
    assert_eq!(users.json()["total"], 0, "{users}");

    // An admin still may.
    let r = admin(
        &c,
        n,
        Method::PATCH,
        &format!("/api/v1/users/{uma_id}"),
        Some(&json!({"groups": ["usermgr", "admin"]})),
    );
    assert_eq!(r.status, 200, "an admin puts uma into admin: {r}");
}
