//! Access control: users, groups and the permissions they grant, checked on every
//! route and on every node, and kept when the leader is lost.

use std::collections::BTreeSet;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{forged_token, wait_until, Cluster, Reply, ADMIN_PASSWORD};
use reqwest::Method;

use crate::secs;

/// A password every check accepts: long, uncommon, and containing none of the user
/// names below.
const PASSWORD: &str = "Tr0ub4dor&3-gazelle-kiwi";

/// Every permission a route can ask for.
const PERMISSIONS: &[&str] = &[
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

/// What the predefined groups grant.
fn predefined(group: &str) -> BTreeSet<&'static str> {
    let all = PERMISSIONS.iter().copied();
    match group {
        "admin" => all.collect(),
        "operator" => all
            .filter(|p| {
                !p.starts_with("users.") && !p.starts_with("groups.") && *p != "nodes.write"
            })
            .collect(),
        "viewer" => all.filter(|p| p.ends_with(".read")).collect(),
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

/// `method path` through `node` as admin.
fn admin(c: &Cluster, node: u64, method: Method, path: &str, body: Option<&Value>) -> Reply {
    c.call(node, method.clone(), path, body)
        .unwrap_or_else(|e| panic!("{method} {path} via node {node} as admin: {e}"))
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

/// Waits until `node`, read locally by admin, shows user `id` the way `ok` wants
/// (`GET /api/v1/users/{id}`: a 404 once deleted).
fn wait_user_on(c: &Cluster, node: u64, id: u64, what: &str, ok: impl Fn(&Reply) -> bool) {
    wait_until(
        secs(10),
        &format!("node {node} to show user {id} {what}"),
        || {
            let r = c.call(node, Method::GET, &format!("/api/v1/users/{id}"), None)?;
            if ok(&r) {
                Ok(())
            } else {
                Err(r.to_string())
            }
        },
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

/// One `/api/v1` route, the permission it checks (`None`: any valid token will do)
/// and a harmless request to it.
pub struct Route {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
    pub needs: Option<&'static str>,
}

impl Route {
    fn new(method: Method, path: impl Into<String>, needs: Option<&'static str>) -> Route {
        Route {
            method,
            path: path.into(),
            body: None,
            needs,
        }
    }

    fn body(mut self, body: Value) -> Route {
        self.body = Some(body);
        self
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Every `/api/v1` route but login, aimed at harmless targets: `member` is a running
/// node, `user` a bystander user id, `group` a custom group that keeps its
/// permissions. `tag` and `fresh_node` make what a request creates unique to one
/// caller. Deleting ids nobody has is fine: the permission is checked first.
pub fn routes(member: u64, user: u64, group: &str, tag: &str, fresh_node: u64) -> Vec<Route> {
    use Method as M;
    vec![
        Route::new(M::GET, "/api/v1/auth/me", None),
        Route::new(M::GET, "/api/v1/cluster", Some("cluster.read")),
        Route::new(M::POST, "/api/v1/cluster/snapshot", Some("cluster.write")),
        Route::new(M::GET, "/api/v1/nodes", Some("nodes.read")),
        Route::new(
            M::GET,
            format!("/api/v1/nodes/{member}"),
            Some("nodes.read"),
        ),
        Route::new(M::POST, "/api/v1/nodes", Some("nodes.write")).body(json!({
            "id": fresh_node,
            "name": format!("node-{fresh_node}"),
            "api_addr": "http://127.0.0.1:9",
            "rpc_addr": "http://127.0.0.1:10",
            "roles": ["storage"],
        })),
        Route::new(
            M::PATCH,
            format!("/api/v1/nodes/{member}"),
            Some("nodes.write"),
        )
        .body(json!({"labels": {"patched-by": tag}})),
        Route::new(M::DELETE, "/api/v1/nodes/4242", Some("nodes.write")),
        Route::new(M::GET, "/api/v1/config", Some("config.read")),
        Route::new(M::PUT, "/api/v1/config/matrix", Some("config.write"))
            .body(json!({"value": tag})),
        Route::new(M::GET, "/api/v1/config/matrix", Some("config.read")),
        Route::new(M::DELETE, "/api/v1/config/matrix", Some("config.write")),
        Route::new(M::GET, "/api/v1/users", Some("users.read")),
        Route::new(M::GET, format!("/api/v1/users/{user}"), Some("users.read")),
        Route::new(M::POST, "/api/v1/users", Some("users.write")).body(json!({
            "name": format!("matrix-{tag}"),
            "password": PASSWORD,
            "groups": ["viewer"],
        })),
        Route::new(
            M::PATCH,
            format!("/api/v1/users/{user}"),
            Some("users.write"),
        )
        .body(json!({"groups": ["viewer"]})),
        Route::new(M::DELETE, "/api/v1/users/4242", Some("users.write")),
        Route::new(M::GET, "/api/v1/groups", Some("groups.read")),
        Route::new(
            M::GET,
            format!("/api/v1/groups/{group}"),
            Some("groups.read"),
        ),
        Route::new(M::POST, "/api/v1/groups", Some("groups.write")).body(json!({
            "name": format!("matrix-{tag}"),
            "permissions": ["config.read"],
        })),
        Route::new(
            M::PATCH,
            format!("/api/v1/groups/{group}"),
            Some("groups.write"),
        )
        .body(json!({"permissions": ["config.read", "nodes.read"]})),
        Route::new(
            M::DELETE,
            "/api/v1/groups/no-such-group",
            Some("groups.write"),
        ),
        Route::new(M::GET, "/api/v1/events", Some("events.read")),
        // The catalog; bodies that would change something are invalid on purpose,
        // so allowed callers get a 4xx other than 401/403 and nothing changes.
        Route::new(M::GET, "/api/v1/plans", Some("plans.read")),
        Route::new(M::POST, "/api/v1/plans", Some("plans.write"))
            .body(json!({"name": "matrix", "source_node": 4242, "paths": ["/x"]})),
        Route::new(M::GET, "/api/v1/plans/4242", Some("plans.read")),
        Route::new(M::PATCH, "/api/v1/plans/4242", Some("plans.write"))
            .body(json!({"keep_last": 2})),
        Route::new(M::DELETE, "/api/v1/plans/4242", Some("plans.write")),
        Route::new(M::GET, "/api/v1/backups", Some("backups.read")),
        Route::new(M::POST, "/api/v1/backups", Some("backups.write")).body(json!({"plan": 4242})),
        Route::new(M::GET, "/api/v1/backups/4242", Some("backups.read")),
        Route::new(M::DELETE, "/api/v1/backups/4242", Some("backups.write")),
        Route::new(
            M::POST,
            "/api/v1/backups/4242/restore",
            Some("restores.write"),
        )
        .body(json!({"target_node": 1, "target_path": "/restore"})),
        Route::new(M::GET, "/api/v1/restores", Some("restores.read")),
        Route::new(M::GET, "/api/v1/restores/4242", Some("restores.read")),
        // Last: it ends the caller's token.
        Route::new(M::POST, "/api/v1/auth/logout", None),
    ]
}

/// Waits until `node` lists exactly `expected` (by name) for `GET {list}`, a path
/// with its query.
fn wait_listed(c: &Cluster, node: u64, list: &str, expected: &[&str]) {
    let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    wait_until(
        secs(10),
        &format!("node {node} to list {expected:?} for {list}"),
        || {
            let v = c.get_json(node, list)?;
            let got: BTreeSet<String> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect();
            if got == expected && v["total"] == expected.len() {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    );
}

#[test]
fn each_group_gets_exactly_its_permissions_on_every_route_through_a_follower() {
    let c = Cluster::builder().name("access-matrix").voters(3).start();
    let f = c.followers()[0];
    let member = c.all_nodes().into_iter().find(|n| *n != f).unwrap();

    // The operator sets up a custom group that may only look at config and nodes,
    // one user per group, and a bystander whose account the others try to edit.
    let group = "config-nodes-readers";
    let r = admin(
        &c,
        f,
        Method::POST,
        "/api/v1/groups",
        Some(&json!({"name": group, "permissions": ["config.read", "nodes.read"]})),
    );
    assert_eq!(r.status, 201, "creating group {group}: {r}");
    let bystander = create_user(&c, f, "bystander", &["viewer"]);
    // Each caller logs in for the matrix: its last route logs that token out.
    let admin_token = c.login(f).unwrap();
    let mut callers = vec![("admin".to_string(), admin_token, predefined("admin"))];
    for (name, grp) in [("op", "operator"), ("view", "viewer"), ("cust", group)] {
        let id = create_user(&c, f, name, &[grp]);
        wait_user_on(&c, f, id, "created", |r| r.status == 200);
        let perms = if grp == group {
            BTreeSet::from(["config.read", "nodes.read"])
        } else {
            predefined(grp)
        };
        callers.push((name.to_string(), login(&c, f, name, PASSWORD), perms));
    }
    wait_user_on(&c, f, bystander, "created", |r| r.status == 200);

    // Each of them tries every route through the follower.
    let mut failures = Vec::new();
    for (i, (who, token, perms)) in callers.iter().enumerate() {
        for route in routes(member, bystander, group, who, 100 + i as u64) {
            let r = as_user(
                &c,
                f,
                token,
                route.method.clone(),
                &route.path,
                route.body.as_ref(),
            );
            c.log(format!("{who}: {route}: {r}"));
            let allowed = route.needs.is_none_or(|p| perms.contains(p));
            if r.status == 401 {
                failures.push(format!("{who}: {route}: a valid token was refused: {r}"));
            } else if !allowed {
                let needed = route.needs.unwrap();
                if r.status != 403 {
                    failures.push(format!("{who}: {route}: expected 403 ({needed}), got {r}"));
                } else if let Err(e) = r.check_problem() {
                    failures.push(format!("{who}: {route}: {e}"));
                } else if !r.json()["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(needed))
                {
                    failures.push(format!(
                        "{who}: {route}: the 403 does not name {needed}: {r}"
                    ));
                }
            } else if r.status == 403 || r.status >= 500 {
                failures.push(format!("{who}: {route}: allowed, but got {r}"));
            } else if route.path == "/api/v1/auth/me" && r.json()["name"] != who.as_str() {
                failures.push(format!("{who}: {route}: not about {who}: {r}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} answers broke the permission matrix:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // What was refused did not happen: only admin's user, group, node and label exist,
    // on every node.
    for n in c.all_nodes() {
        wait_listed(&c, n, "/api/v1/users?q=matrix-", &["matrix-admin"]);
        wait_listed(&c, n, "/api/v1/groups?q=matrix-", &["matrix-admin"]);
        wait_until(
            secs(10),
            &format!("node {n} to show only admin's node and label"),
            || {
                let m = c.get_json(n, &format!("/api/v1/nodes/{member}"))?;
                let registered = c.call(n, Method::GET, "/api/v1/nodes/100", None)?;
                if m["labels"] == json!({"patched-by": "admin"}) && registered.status == 200 {
                    Ok(())
                } else {
                    Err(format!("node {member}: {m}; node 100: {registered}"))
                }
            },
        );
        for refused in [101, 102, 103] {
            let r = admin(
                &c,
                n,
                Method::GET,
                &format!("/api/v1/nodes/{refused}"),
                None,
            );
            assert_eq!(
                r.status, 404,
                "node {refused} was registered on node {n}: {r}"
            );
        }
    }
}

#[test]
fn every_route_refuses_a_missing_forged_or_foreign_token() {
    let c = Cluster::builder().name("access-no-token").voters(3).start();
    // A second cluster (say staging) shares the admin password and even the cluster
    // secret; its real admin token must not open production.
    let staging = Cluster::builder().name("access-staging").voters(1).start();
    let foreign = staging.token(1).unwrap();
    drop(staging);

    let admin_id = c.login_with(1, "admin", ADMIN_PASSWORD).unwrap().json()["user"]["id"]
        .as_u64()
        .expect("login answers with the user");
    let tokens: [(&str, Option<String>); 4] = [
        ("no token", None),
        ("a forged token", Some(forged_token(4_000_000_000))),
        ("a garbage token", Some("not-a-token".to_string())),
        ("staging's admin token", Some(foreign)),
    ];
    let mut failures = Vec::new();
    for n in c.all_nodes() {
        for route in routes(n, admin_id, "viewer", "intruder", 99) {
            for (what, token) in &tokens {
                let mut req = c.request(n, route.method.clone(), &route.path);
                if let Some(b) = &route.body {
                    req = req.json(b);
                }
                if let Some(t) = token {
                    req = req.bearer(t);
                }
                let r = match c.send_no_stream(req) {
                    Ok(r) => r,
                    Err(e) => {
                        failures.push(format!("node {n}: {route} with {what}: {e}"));
                        continue;
                    }
                };
                if r.status != 401 {
                    failures.push(format!("node {n}: {route} with {what}: {r}"));
                } else if let Err(e) = r.check_problem() {
                    failures.push(format!("node {n}: {route} with {what}: {e}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} requests without a valid token were not refused with 401:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing they asked for happened.
    for n in c.all_nodes() {
        assert_eq!(c.config_value(n, "matrix").unwrap(), None, "node {n}");
        wait_listed(&c, n, "/api/v1/users?q=matrix-", &[]);
        wait_listed(&c, n, "/api/v1/groups?q=matrix-", &[]);
        let r = admin(&c, n, Method::GET, "/api/v1/nodes/99", None);
        assert_eq!(r.status, 404, "node 99 on node {n}: {r}");
        let me = admin(
            &c,
            n,
            Method::GET,
            &format!("/api/v1/users/{admin_id}"),
            None,
        );
        assert_eq!(me.json()["groups"], json!(["admin"]), "{me}");
    }
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

#[test]
fn users_and_groups_are_checked_and_the_last_admin_cannot_be_locked_out() {
    let c = Cluster::builder().name("access-rules").voters(3).start();
    let f = c.followers()[0];
    let post = |path: &str, body: Value| admin(&c, f, Method::POST, path, Some(&body));
    let user = |name: &str, password: &str, groups: Value| {
        post(
            "/api/v1/users",
            json!({"name": name, "password": password, "groups": groups}),
        )
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
    let r = admin(
        &c,
        f,
        Method::PATCH,
        &format!("/api/v1/users/{alice}"),
        Some(&json!({"password": "alice-in-wonderland"})),
    );
    assert_refused(
        &r,
        422,
        Some("password"),
        "alice's new password with her name",
    );

    // Unknown groups and unknown fields.
    let r = user("bob", PASSWORD, json!(["viewer", "wizards"]));
    assert_refused(&r, 422, Some("groups"), "an unknown group");
    let r = admin(
        &c,
        f,
        Method::PATCH,
        &format!("/api/v1/users/{alice}"),
        Some(&json!({"groups": ["wizards"]})),
    );
    assert_refused(&r, 422, Some("groups"), "moving alice to an unknown group");
    let r = post(
        "/api/v1/users",
        json!({"name": "bob", "password": PASSWORD, "groups": [], "is_admin": true}),
    );
    assert_refused(&r, 422, None, "an unknown field");

    // None of the refused accounts exists, anywhere; alice is still an operator.
    for n in c.all_nodes() {
        wait_listed(&c, n, "/api/v1/users", &["admin", "alice", &longest]);
        let r = admin(&c, n, Method::GET, &format!("/api/v1/users/{alice}"), None);
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

    // Groups: the predefined ones grant what they say, and cannot be changed or
    // deleted.
    for g in ["admin", "operator", "viewer"] {
        let r = admin(&c, f, Method::GET, &format!("/api/v1/groups/{g}"), None);
        assert_eq!(r.status, 200, "{r}");
        let want: BTreeSet<String> = predefined(g).into_iter().map(String::from).collect();
        assert_eq!(names(&r.json()["permissions"]), want, "group {g}: {r}");
        let r = admin(&c, f, Method::DELETE, &format!("/api/v1/groups/{g}"), None);
        assert_refused(&r, 409, None, &format!("deleting group {g}"));
        let r = admin(
            &c,
            f,
            Method::PATCH,
            &format!("/api/v1/groups/{g}"),
            Some(&json!({"permissions": ["cluster.read"]})),
        );
        assert_refused(&r, 409, None, &format!("changing group {g}"));
    }
    // A custom group: known permissions only, a name used once, not deleted while it
    // has members.
    let r = post(
        "/api/v1/groups",
        json!({"name": "auditors", "permissions": ["events.read", "users.read"]}),
    );
    assert_eq!(r.status, 201, "creating auditors: {r}");
    assert_eq!(
        names(&r.json()["permissions"]),
        names(&json!(["events.read", "users.read"])),
        "{r}"
    );
    let r = post(
        "/api/v1/groups",
        json!({"name": "auditors", "permissions": []}),
    );
    assert_refused(&r, 409, None, "auditors again");
    let r = post(
        "/api/v1/groups",
        json!({"name": "wizards", "permissions": ["cluster.read", "cluster.destroy"]}),
    );
    assert_refused(&r, 422, Some("permissions"), "an unknown permission");
    let r = admin(
        &c,
        f,
        Method::PATCH,
        "/api/v1/groups/auditors",
        Some(&json!({"permissions": ["users.fly"]})),
    );
    assert_refused(
        &r,
        422,
        Some("permissions"),
        "changing to an unknown permission",
    );
    let audrey = create_user(&c, f, "audrey", &["auditors"]);
    let r = admin(&c, f, Method::DELETE, "/api/v1/groups/auditors", None);
    assert_refused(&r, 409, None, "deleting auditors while audrey is in it");
    let r = admin(
        &c,
        f,
        Method::DELETE,
        &format!("/api/v1/users/{audrey}"),
        None,
    );
    assert!(r.is_success(), "deleting audrey: {r}");
    let r = admin(&c, f, Method::DELETE, "/api/v1/groups/auditors", None);
    assert!(r.is_success(), "deleting the now empty auditors: {r}");
    for n in c.all_nodes() {
        wait_listed(&c, n, "/api/v1/groups", &["admin", "operator", "viewer"]);
    }

    // The only admin cannot be disabled, demoted or deleted...
    let admin_id = c.login_with(f, "admin", ADMIN_PASSWORD).unwrap().json()["user"]["id"]
        .as_u64()
        .expect("login answers with the user");
    let me = format!("/api/v1/users/{admin_id}");
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
        let r = admin(&c, f, method.clone(), &me, body.as_ref());
        assert_refused(&r, 409, None, &format!("{what} the last admin"));
    }
    for n in c.all_nodes() {
        let r = c.login_with(n, "admin", ADMIN_PASSWORD).unwrap();
        assert_eq!(r.status, 200, "admin login on node {n}: {r}");
    }

    // ...but with a second admin, the first can be disabled, and then the second is
    // the one that cannot.
    let root = create_user(&c, f, "root", &["admin"]);
    wait_user_on(&c, f, root, "created", |r| r.status == 200);
    let root_token = login(&c, f, "root", PASSWORD);
    let r = as_user(
        &c,
        f,
        &root_token,
        Method::PATCH,
        &me,
        Some(&json!({"enabled": false})),
    );
    assert_eq!(r.status, 200, "root disables admin: {r}");
    let root_path = format!("/api/v1/users/{root}");
    for (method, body, what) in &lockouts {
        let r = as_user(
            &c,
            f,
            &root_token,
            method.clone(),
            &root_path,
            body.as_ref(),
        );
        assert_refused(
            &r,
            409,
            None,
            &format!("{what} root, now the last enabled admin"),
        );
    }
    let r = as_user(
        &c,
        f,
        &root_token,
        Method::PATCH,
        &me,
        Some(&json!({"enabled": true})),
    );
    assert_eq!(r.status, 200, "root enables admin again: {r}");
    wait_until(secs(10), &format!("node {f} to show admin enabled"), || {
        let r = as_user(&c, f, &root_token, Method::GET, &me, None);
        if r.json()["enabled"] == true {
            Ok(())
        } else {
            Err(r.to_string())
        }
    });

    // Two admins disabling each other at the same moment, through two nodes, cannot
    // lock everybody out: exactly one of them wins.
    let other = c.all_nodes().into_iter().find(|n| *n != f).unwrap();
    let admin_token = login(&c, f, "admin", ADMIN_PASSWORD);
    let api = c.api();
    let barrier = std::sync::Barrier::new(2);
    let disable = |node: u64, token: &str, path: &str| {
        barrier.wait();
        let req = api
            .request(node, Method::PATCH, path)
            .bearer(token)
            .json(&json!({"enabled": false}));
        api.send(req)
            .unwrap_or_else(|e| panic!("PATCH {path} via node {node}: {e}"))
    };
    let (by_admin, by_root) = std::thread::scope(|s| {
        let a = s.spawn(|| disable(f, &admin_token, &root_path));
        let b = s.spawn(|| disable(other, &root_token, &me));
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
        wait_until(
            secs(10),
            &format!("node {n} to show {winner} as the one enabled admin"),
            || {
                let r = as_user(
                    &c,
                    n,
                    &winner_token,
                    Method::GET,
                    "/api/v1/users?group=admin&enabled=true",
                    None,
                );
                let items = r.json()["items"].as_array().cloned().unwrap_or_default();
                if items.len() == 1 && items[0]["name"] == winner {
                    Ok(())
                } else {
                    Err(r.to_string())
                }
            },
        );
    }
    if winner == "root" {
        let r = as_user(
            &c,
            f,
            &root_token,
            Method::PATCH,
            &me,
            Some(&json!({"enabled": true})),
        );
        assert_eq!(r.status, 200, "root enables admin again: {r}");
        wait_until(secs(10), &format!("node {f} to show admin enabled"), || {
            let r = as_user(&c, f, &root_token, Method::GET, &me, None);
            if r.json()["enabled"] == true {
                Ok(())
            } else {
                Err(r.to_string())
            }
        });
    }
    let r = admin(&c, f, Method::DELETE, &root_path, None);
    assert!(r.is_success(), "admin deletes root: {r}");
}

#[test]
fn a_disabled_deleted_or_repassworded_users_old_token_is_refused_on_every_node() {
    let c = Cluster::builder().name("access-tokens").voters(3).start();
    let followers = c.followers();
    let (f, g) = (followers[0], followers[1]);
    let nodes = c.all_nodes();
    let carol = create_user(&c, f, "carol", &["operator"]);
    let dave = create_user(&c, f, "dave", &["operator"]);
    let erin = create_user(&c, f, "erin", &["viewer"]);
    for &n in &nodes {
        for id in [carol, dave, erin] {
            wait_user_on(&c, n, id, "created", |r| r.status == 200);
        }
    }
    let me = |n: u64, token: &str| as_user(&c, n, token, Method::GET, "/api/v1/auth/me", None);
    let refused = |n: u64, token: &str, what: &str| {
        for path in ["/api/v1/auth/me", "/api/v1/config"] {
            let r = as_user(&c, n, token, Method::GET, path, None);
            assert_eq!(r.status, 401, "{what}: GET {path} on node {n}: {r}");
            r.check_problem().unwrap();
        }
    };

    // Carol logs in on one node; her token works on every node.
    let carols = login(&c, g, "carol", PASSWORD);
    for &n in &nodes {
        let r = me(n, &carols);
        assert!(
            r.status == 200 && r.json()["name"] == "carol",
            "node {n}: {r}"
        );
    }
    // The admin disables her: each node refuses her token as soon as it has applied
    // the change, and she cannot log in.
    let path = format!("/api/v1/users/{carol}");
    let r = admin(
        &c,
        f,
        Method::PATCH,
        &path,
        Some(&json!({"enabled": false})),
    );
    assert!(
        r.status == 200 && r.json()["enabled"] == false,
        "disabling carol: {r}"
    );
    for &n in &nodes {
        wait_user_on(&c, n, carol, "disabled", |r| r.json()["enabled"] == false);
        refused(n, &carols, "carol, disabled");
        let r = c.login_with(n, "carol", PASSWORD).unwrap();
        assert_eq!(r.status, 401, "carol, disabled, logs in on node {n}: {r}");
    }
    // Enabled again, she logs in afresh; the token from before stays refused.
    let r = admin(&c, f, Method::PATCH, &path, Some(&json!({"enabled": true})));
    assert_eq!(r.status, 200, "enabling carol: {r}");
    for &n in &nodes {
        wait_user_on(&c, n, carol, "enabled", |r| r.json()["enabled"] == true);
        let fresh = login(&c, n, "carol", PASSWORD);
        assert_eq!(me(n, &fresh).status, 200, "carol's fresh token on node {n}");
        refused(n, &carols, "carol's token from before she was disabled");
    }

    // Dave has tokens from two nodes; his password is changed (say it leaked).
    let daves = [
        login(&c, g, "dave", PASSWORD),
        login(&c, f, "dave", PASSWORD),
    ];
    let new_password = "Second-Passphrase-Of-2025!";
    let r = admin(
        &c,
        f,
        Method::PATCH,
        &format!("/api/v1/users/{dave}"),
        Some(&json!({"password": new_password})),
    );
    assert_eq!(r.status, 200, "changing dave's password: {r}");
    for &n in &nodes {
        wait_until(
            secs(10),
            &format!("node {n} to refuse dave's old token"),
            || match me(n, &daves[0]) {
                r if r.status == 401 => Ok(()),
                r => Err(r.to_string()),
            },
        );
        refused(n, &daves[0], "dave's token from before the change");
        refused(n, &daves[1], "dave's other token from before the change");
        let r = c.login_with(n, "dave", PASSWORD).unwrap();
        assert_eq!(r.status, 401, "dave's old password on node {n}: {r}");
        let fresh = login(&c, n, "dave", new_password);
        for &m in &nodes {
            let r = me(m, &fresh);
            assert_eq!(
                r.status, 200,
                "dave's new token from node {n} on node {m}: {r}"
            );
        }
    }

    // Dave moves to the viewers: his token keeps working, but each node refuses him
    // config writes as soon as it has applied the change.
    let daves = login(&c, g, "dave", new_password);
    let r = admin(
        &c,
        f,
        Method::PATCH,
        &format!("/api/v1/users/{dave}"),
        Some(&json!({"groups": ["viewer"]})),
    );
    assert_eq!(r.status, 200, "moving dave to viewer: {r}");
    for &n in &nodes {
        wait_user_on(&c, n, dave, "a viewer", |r| {
            r.json()["groups"] == json!(["viewer"])
        });
        let body = json!({"value": "dave was here"});
        let r = as_user(
            &c,
            n,
            &daves,
            Method::PUT,
            "/api/v1/config/dave",
            Some(&body),
        );
        assert_eq!(
            r.status, 403,
            "dave, now a viewer, writes config on node {n}: {r}"
        );
        let r = as_user(&c, n, &daves, Method::GET, "/api/v1/config", None);
        assert_eq!(
            r.status, 200,
            "dave, now a viewer, reads config on node {n}: {r}"
        );
    }

    // Erin leaves: her account is deleted, and her token dies with it, even when a
    // new account takes her name.
    let erins = login(&c, g, "erin", PASSWORD);
    let r = admin(
        &c,
        f,
        Method::DELETE,
        &format!("/api/v1/users/{erin}"),
        None,
    );
    assert!(r.is_success(), "deleting erin: {r}");
    for &n in &nodes {
        wait_user_on(&c, n, erin, "deleted", |r| r.status == 404);
        refused(n, &erins, "erin, deleted");
        let r = c.login_with(n, "erin", PASSWORD).unwrap();
        assert_eq!(r.status, 401, "erin, deleted, logs in on node {n}: {r}");
    }
    let new_erin = create_user(&c, f, "erin", &["admin"]);
    assert_ne!(new_erin, erin, "the new erin got the deleted erin's id");
    for &n in &nodes {
        wait_user_on(&c, n, new_erin, "created", |r| r.status == 200);
        refused(n, &erins, "the deleted erin's token, with a new erin");
    }
}

#[test]
fn failed_logins_are_rate_limited_and_all_look_the_same() {
    let c = Cluster::builder()
        .name("access-login-limit")
        .voters(3)
        .start();
    let n = c.followers()[0];
    let frank = create_user(&c, n, "frank", &["viewer"]);
    let grace = create_user(&c, n, "grace", &["viewer"]);
    let heidi = create_user(&c, n, "heidi", &["viewer"]);
    let r = admin(
        &c,
        n,
        Method::PATCH,
        &format!("/api/v1/users/{heidi}"),
        Some(&json!({"enabled": false})),
    );
    assert_eq!(r.status, 200, "disabling heidi: {r}");
    for id in [frank, grace] {
        wait_user_on(&c, n, id, "created", |r| r.status == 200);
    }
    wait_user_on(&c, n, heidi, "disabled", |r| r.json()["enabled"] == false);

    // Somebody guesses frank's password 30 times: after at most 10 failures every
    // further try is refused with 429 and a Retry-After, without being checked.
    let mut statuses = Vec::new();
    for i in 1..=30 {
        let r = c
            .login_with(n, "frank", &format!("guess-number-{i:02}"))
            .unwrap();
        statuses.push(r.status);
        match r.status {
            401 => {
                assert!(
                    !statuses[..i - 1].contains(&429),
                    "try {i} was checked again after a 429: {statuses:?}"
                );
            }
            429 => {
                r.check_problem().unwrap();
                let retry = r
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("try {i}: 429 without a Retry-After: {r:?}"));
                assert!((1..=60).contains(&retry), "try {i}: Retry-After {retry}");
            }
            _ => panic!("try {i}: {r}"),
        }
    }
    c.log(format!("30 wrong passwords for frank: {statuses:?}"));
    let first = statuses.iter().position(|s| *s == 429).map(|i| i + 1);
    assert!(
        first.is_some_and(|i| (2..=11).contains(&i)),
        "the first 429 came at try {first:?}: {statuses:?}"
    );
    // Frank himself must now wait too.
    let r = c.login_with(n, "frank", PASSWORD).unwrap();
    assert_eq!(
        r.status, 429,
        "frank's right password while locked out: {r}"
    );

    // An unknown user, a wrong password and a disabled user get the very same answer.
    let unknown = c.login_with(n, "nobody-here", PASSWORD).unwrap();
    let wrong = c.login_with(n, "grace", "not-graces-password").unwrap();
    let disabled = c.login_with(n, "heidi", PASSWORD).unwrap();
    for (what, r) in [
        ("unknown", &unknown),
        ("wrong", &wrong),
        ("disabled", &disabled),
    ] {
        assert_eq!(r.status, 401, "{what}: {r}");
        r.check_problem().unwrap();
    }
    assert!(
        unknown.body == wrong.body && wrong.body == disabled.body,
        "the answers tell the cases apart:\nunknown user: {}\nwrong password: {}\n\
         disabled user: {}",
        unknown.body,
        wrong.body,
        disabled.body
    );

    // Spreading the guesses over many names does not help: 30 failures from one
    // address on a node (13 so far) and it answers 429 to any name.
    let mut statuses = Vec::new();
    for i in 1..=20 {
        let r = c
            .login_with(n, &format!("stranger-{i}"), "some-long-guess-here")
            .unwrap();
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"), "{r:?}");
            break;
        }
        assert_eq!(r.status, 401, "stranger {i}: {r}");
    }
    c.log(format!("guesses over many names: {statuses:?}"));
    assert!(
        statuses.len() <= 18 && statuses.last() == Some(&429),
        "30 failures from one address were not limited: {statuses:?}"
    );
}

#[test]
fn users_and_groups_written_through_a_follower_survive_losing_the_leader() {
    let c = Cluster::builder().name("access-failover").voters(3).start();
    let leader = c.wait_for_leader();
    let f = c.followers()[0];

    // Through a follower, the operator creates a group of auditors and one auditor.
    let perms = json!(["events.read", "users.read"]);
    let r = admin(
        &c,
        f,
        Method::POST,
        "/api/v1/groups",
        Some(&json!({"name": "auditors", "permissions": perms})),
    );
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
            let r = as_user(
                &c,
                n,
                &token,
                Method::GET,
                &format!("/api/v1/users?q={q}"),
                None,
            );
            let found = r.json()["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|u| u["id"] == ivan && u["name"] == "ivan"));
            assert!(
                r.status == 200 && found,
                "ivan searches ?q={q} on node {n}: {r}"
            );
        }
        let r = as_user(&c, n, &token, Method::GET, "/api/v1/config", None);
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
        let r = as_user(&c, leader, &token, Method::GET, "/api/v1/auth/me", None);
        assert_eq!(r.json()["name"], name, "{r}");
    }
}

#[test]
fn logging_out_ends_that_token_on_every_node_and_no_other() {
    let c = Cluster::builder().name("access-logout").voters(3).start();
    let leader = c.wait_for_leader();
    let f = c.followers()[0];
    let id = create_user(&c, leader, "leaving", &["operator"]);
    wait_user_on(&c, f, id, "created", |r| r.status == 200);
    let laptop = login(&c, f, "leaving", PASSWORD);
    let desktop = login(&c, leader, "leaving", PASSWORD);
    let me = |n: u64, token: &str| as_user(&c, n, token, Method::GET, "/api/v1/auth/me", None);

    // Logging out through a follower.
    let r = as_user(&c, f, &laptop, Method::POST, "/api/v1/auth/logout", None);
    assert_eq!(r.status, 204, "{r}");
    for n in c.all_nodes() {
        wait_until(
            secs(10),
            &format!("node {n} to refuse the logged-out token"),
            || {
                let r = me(n, &laptop);
                if r.status == 401
                    && r.json()["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("logged out"))
                {
                    Ok(())
                } else {
                    Err(r.to_string())
                }
            },
        );
        let r = me(n, &desktop);
        assert_eq!(
            r.status, 200,
            "the user's other token still works on node {n}: {r}"
        );
    }
    // An event stream opened with the desktop token ends when that token is logged out.
    let mut stream = bcm_tests::EventStream::connect_as(&c.api(), f, &desktop).unwrap();
    let r = as_user(
        &c,
        leader,
        &desktop,
        Method::POST,
        "/api/v1/auth/logout",
        None,
    );
    assert_eq!(r.status, 204, "{r}");
    stream.wait_closed(secs(10)).unwrap();
    let desktop = login(&c, leader, "leaving", PASSWORD);

    // Twice is refused like any invalid token, and changes nothing.
    let r = as_user(
        &c,
        leader,
        &laptop,
        Method::POST,
        "/api/v1/auth/logout",
        None,
    );
    assert_eq!(r.status, 401, "{r}");
    r.check_problem().unwrap();

    // It survives a snapshot and a restart: a node rebuilt from its snapshot and log
    // still refuses it.
    let r = admin(&c, leader, Method::POST, "/api/v1/cluster/snapshot", None);
    assert!(r.is_success(), "{r}");
    c.kill(f);
    c.restart(f);
    c.wait_ready(f, secs(30));
    let r = me(f, &laptop);
    assert_eq!(r.status, 401, "{r}");
    let r = me(f, &desktop);
    assert_eq!(r.status, 200, "{r}");
}
