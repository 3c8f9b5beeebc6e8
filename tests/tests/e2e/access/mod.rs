//! Access control: users, groups and the permissions they grant, checked on every
//! route and on every node, and kept when the leader is lost.
//!
//! By concern: `matrix` (who may call which route), `accounts` (what users and
//! groups may be, and that they survive losing the leader), `logins` (logging in,
//! its rate limit, and when a token stops working), `limiter` (the failed-login
//! limits across the cluster and behind a proxy), `lagging` (writes through a node
//! that lags build on the latest state). The steps they share are here.

use std::collections::BTreeSet;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{wait_for, Cluster, Reply, ADMIN_PASSWORD};
use reqwest::Method;

use crate::{secs, PASSWORD};

mod accounts;
mod escalation;
mod lagging;
mod limiter;
mod logins;
mod matrix;
mod pages;

pub use matrix::routes;

/// Every permission a route can ask for: reading and writing each resource, and
/// reading events and the audit log. Written out here, not read from the
/// product, so that a permission the product adds or drops shows up as a
/// difference.
fn permissions() -> BTreeSet<String> {
    let resources = [
        "cluster", "nodes", "config", "users", "groups", "plans", "backups", "restores",
    ];
    resources
        .iter()
        .flat_map(|r| [format!("{r}.read"), format!("{r}.write")])
        .chain(["events.read".to_string(), "audit.read".to_string()])
        .collect()
}

/// What the predefined groups grant: an admin everything, an operator all but
/// managing users and groups, registering nodes and the audit log, a viewer
/// reading all but the audit log.
fn predefined(group: &str) -> BTreeSet<String> {
    let all = permissions();
    let operators_lack = [
        "users.read",
        "users.write",
        "groups.read",
        "groups.write",
        "nodes.write",
        "audit.read",
    ];
    match group {
        "admin" => all,
        "operator" => all
            .into_iter()
            .filter(|p| !operators_lack.contains(&p.as_str()))
            .collect(),
        "viewer" => all
            .into_iter()
            .filter(|p| p.ends_with(".read") && p != "audit.read")
            .collect(),
        other => panic!("no predefined group {other}"),
    }
}

/// The names in a JSON array of strings.
fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// `method path` through `node` as the holder of `token`, with a JSON body when
/// given. An event stream's body is left unread.
fn as_user(
    c: &Cluster,
    node: u64,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Reply {
    let mut req = c.request(node, method.clone(), path).bearer(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    c.send_no_stream(req)
        .unwrap_or_else(|e| panic!("{method} {path} via node {node}: {e}"))
}

/// `GET path` through `node` as the holder of `token`.
fn get_as(c: &Cluster, node: u64, token: &str, path: &str) -> Reply {
    as_user(c, node, token, Method::GET, path, None)
}

/// `GET /api/v1/auth/me` through `node` as the holder of `token`: who it says they are.
fn me(c: &Cluster, node: u64, token: &str) -> Reply {
    get_as(c, node, token, "/api/v1/auth/me")
}

/// `POST /api/v1/auth/logout` through `node` with `token`.
fn logout(c: &Cluster, node: u64, token: &str) -> Reply {
    as_user(c, node, token, Method::POST, "/api/v1/auth/logout", None)
}

/// `method path` through `node` as admin.
fn admin(c: &Cluster, node: u64, method: Method, path: &str, body: Option<&Value>) -> Reply {
    c.call(node, method.clone(), path, body)
        .unwrap_or_else(|e| panic!("{method} {path} via node {node} as admin: {e}"))
}

/// `PATCH /api/v1/users/{id}` with `body` through `via` as admin.
fn patch_user(c: &Cluster, via: u64, id: u64, body: Value) -> Reply {
    admin(c, via, Method::PATCH, &user_path(id), Some(&body))
}

/// `DELETE /api/v1/users/{id}` through `via` as admin.
fn delete_user(c: &Cluster, via: u64, id: u64) -> Reply {
    admin(c, via, Method::DELETE, &user_path(id), None)
}

fn user_path(id: u64) -> String {
    format!("/api/v1/users/{id}")
}

/// Creates a user with [`PASSWORD`] through `via` as admin; returns its id.
fn create_user(c: &Cluster, via: u64, name: &str, groups: &[&str]) -> u64 {
    let body = json!({"name": name, "password": PASSWORD, "groups": groups});
    let r = admin(c, via, Method::POST, "/api/v1/users", Some(&body));
    assert_eq!(r.status, 201, "creating user {name} via node {via}: {r}");
    r.json()["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no id in {r}"))
}

/// The admin's own user id, from what logging in through `node` answers.
fn admin_id(c: &Cluster, node: u64) -> u64 {
    c.login_with(node, "admin", ADMIN_PASSWORD).unwrap().json()["user"]["id"]
        .as_u64()
        .expect("login answers with the user")
}

/// Waits until `node`, read locally by admin, shows user `id` the way `ok` wants
/// (`GET /api/v1/users/{id}`: a 404 once deleted).
fn wait_user_on(c: &Cluster, node: u64, id: u64, what: &str, ok: impl Fn(&Reply) -> bool) {
    wait_for(
        secs(10),
        &format!("node {node} to show user {id} {what}"),
        || c.call(node, Method::GET, &user_path(id), None),
        ok,
    );
}

/// Logs `name` in on `node`, which must already know the user: one attempt, so
/// that no failure counts against the login rate limit.
fn login(c: &Cluster, node: u64, name: &str, password: &str) -> String {
    let r = c
        .login_with(node, name, password)
        .unwrap_or_else(|e| panic!("login as {name} on node {node}: {e}"));
    assert_eq!(r.status, 200, "login as {name} on node {node}: {r}");
    r.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {r}"))
        .to_string()
}

/// Waits until `node` lists exactly `expected` (by name) for `GET {list}`, a path
/// with its query.
fn wait_listed(c: &Cluster, node: u64, list: &str, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    wait_for(
        secs(10),
        &format!("node {node} to list {expected:?} for {list}"),
        || c.get_json(node, list),
        |v| names_listed(v) == expected && v["total"] == expected.len(),
    );
}

/// The names of the items of a list answer.
fn names_listed(list: &Value) -> BTreeSet<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

/// Asserts a 4xx `status` problem naming `field` (when given).
fn assert_refused(r: &Reply, status: u16, field: Option<&str>, what: &str) {
    assert_eq!(r.status, status, "{what}: {r}");
    r.check_problem().unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Some(field) = field {
        assert_eq!(
            r.json()["field"],
            field,
            "{what}: the problem names {field}: {r}"
        );
    }
}
