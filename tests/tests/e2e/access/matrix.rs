//! Who may call which route: every group on every route, and every route refusing
//! a request without a valid token.

use std::collections::BTreeSet;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{forged_token, wait_until, Cluster, Reply, Req};
use reqwest::Method;

use super::{admin, admin_id, create_user, login, names, predefined, wait_listed, wait_user_on};
use crate::{assert_no_failures, secs, PASSWORD};

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

    /// The request to this route through `node`, with its body, without a token.
    fn request(&self, c: &Cluster, node: u64) -> Req {
        let req = c.request(node, self.method.clone(), &self.path);
        match &self.body {
            Some(b) => req.json(b),
            None => req,
        }
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
    let (node_path, user_path, group_path) = (
        format!("/api/v1/nodes/{member}"),
        format!("/api/v1/users/{user}"),
        format!("/api/v1/groups/{group}"),
    );
    vec![
        Route::new(M::GET, "/api/v1/auth/me", None),
        Route::new(M::GET, "/api/v1/cluster", Some("cluster.read")),
        Route::new(M::GET, "/api/v1/cluster/digest", Some("cluster.read")),
        Route::new(M::POST, "/api/v1/cluster/snapshot", Some("cluster.write")),
        Route::new(M::GET, "/api/v1/cluster/certs", Some("cluster.read")),
        Route::new(
            M::POST,
            "/api/v1/cluster/certs/rotate",
            Some("cluster.write"),
        )
        .body(json!({})),
        Route::new(M::GET, "/api/v1/nodes", Some("nodes.read")),
        Route::new(M::GET, "/api/v1/storage", Some("nodes.read")),
        Route::new(M::GET, &node_path, Some("nodes.read")),
        Route::new(M::POST, "/api/v1/nodes", Some("nodes.write")).body(json!({
            "id": fresh_node,
            "name": format!("node-{fresh_node}"),
            "api_addr": "http://127.0.0.1:9",
            "rpc_addr": "http://127.0.0.1:10",
            "roles": ["storage"],
        })),
        Route::new(M::PATCH, &node_path, Some("nodes.write"))
            .body(json!({"labels": {"patched-by": tag}})),
        Route::new(M::DELETE, "/api/v1/nodes/4242", Some("nodes.write")),
        Route::new(M::GET, "/api/v1/config", Some("config.read")),
        Route::new(M::PUT, "/api/v1/config/matrix", Some("config.write"))
            .body(json!({"value": tag})),
        Route::new(M::GET, "/api/v1/config/matrix", Some("config.read")),
        Route::new(M::DELETE, "/api/v1/config/matrix", Some("config.write")),
        Route::new(M::GET, "/api/v1/users", Some("users.read")),
        Route::new(M::GET, &user_path, Some("users.read")),
        Route::new(M::POST, "/api/v1/users", Some("users.write")).body(json!({
            "name": format!("matrix-{tag}"),
            "password": PASSWORD,
            "groups": ["viewer"],
        })),
        Route::new(M::PATCH, &user_path, Some("users.write")).body(json!({"groups": ["viewer"]})),
        Route::new(M::DELETE, "/api/v1/users/4242", Some("users.write")),
        Route::new(M::GET, "/api/v1/groups", Some("groups.read")),
        Route::new(M::GET, &group_path, Some("groups.read")),
        Route::new(M::POST, "/api/v1/groups", Some("groups.write")).body(json!({
            "name": format!("matrix-{tag}"),
            "permissions": ["config.read"],
        })),
        Route::new(M::PATCH, &group_path, Some("groups.write"))
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
        Route::new(M::GET, "/api/v1/backups/4242/files", Some("backups.read")),
        Route::new(
            M::POST,
            "/api/v1/backups/4242/verify",
            Some("backups.write"),
        ),
        Route::new(
            M::POST,
            "/api/v1/backups/4242/cancel",
            Some("backups.write"),
        ),
        Route::new(
            M::POST,
            "/api/v1/restores/4242/cancel",
            Some("restores.write"),
        ),
        Route::new(M::GET, "/api/v1/restores", Some("restores.read")),
        Route::new(M::GET, "/api/v1/restores/4242", Some("restores.read")),
        Route::new(M::GET, "/api/v1/audit", Some("audit.read")),
        // Last: it ends the caller's token.
        Route::new(M::POST, "/api/v1/auth/logout", None),
    ]
}

/// Checks the answer `r` that `who`, holding the permissions `perms` with a valid
/// token, got from `route`: a 403 problem naming the permission when it is not
/// held, an answer that is neither 403 nor 5xx when it is, and never a 401.
fn check_answer(
    who: &str,
    route: &Route,
    perms: &BTreeSet<String>,
    r: &Reply,
) -> Result<(), String> {
    let allowed = route.needs.is_none_or(|p| perms.contains(p));
    if r.status == 401 {
        return Err(format!("{who}: {route}: a valid token was refused: {r}"));
    }
    if !allowed {
        let needed = route.needs.unwrap();
        if r.status != 403 {
            return Err(format!("{who}: {route}: expected 403 ({needed}), got {r}"));
        }
        r.check_problem()
            .map_err(|e| format!("{who}: {route}: {e}"))?;
        if !r.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains(needed))
        {
            return Err(format!(
                "{who}: {route}: the 403 does not name {needed}: {r}"
            ));
        }
    } else if r.status == 403 || r.status >= 500 {
        return Err(format!("{who}: {route}: allowed, but got {r}"));
    } else if route.path == "/api/v1/auth/me" && r.json()["name"] != who {
        return Err(format!("{who}: {route}: not about {who}: {r}"));
    }
    Ok(())
}

#[test]
fn each_group_gets_exactly_its_permissions_on_every_route_through_a_follower() {
    let c = Cluster::builder().name("access-matrix").voters(3).start();
    let f = c.followers()[0];
    let member = c.all_nodes().into_iter().find(|n| *n != f).unwrap();

    // The operator sets up a custom group that may only look at config and nodes,
    // one user per group, and a bystander whose account the others try to edit.
    let group = "config-nodes-readers";
    let custom = json!({"name": group, "permissions": ["config.read", "nodes.read"]});
    let r = admin(&c, f, Method::POST, "/api/v1/groups", Some(&custom));
    assert_eq!(r.status, 201, "creating group {group}: {r}");
    let bystander = create_user(&c, f, "bystander", &["viewer"]);
    // Each caller logs in for the matrix: its last route logs that token out.
    let admin_token = c.login(f).unwrap();
    let mut callers = vec![("admin".to_string(), admin_token, predefined("admin"))];
    for (name, grp) in [("op", "operator"), ("view", "viewer"), ("cust", group)] {
        let id = create_user(&c, f, name, &[grp]);
        wait_user_on(&c, f, id, "created", |r| r.status == 200);
        let perms = if grp == group {
            names(&custom["permissions"])
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
            let r = c
                .send_no_stream(route.request(&c, f).bearer(token))
                .unwrap_or_else(|e| panic!("{route} via node {f}: {e}"));
            c.log(format!("{who}: {route}: {r}"));
            if let Err(e) = check_answer(who, &route, perms, &r) {
                failures.push(e);
            }
        }
    }
    assert_no_failures(&failures, "answers broke the permission matrix");

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

    let admin_id = admin_id(&c, 1);
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
                let mut req = route.request(&c, n);
                if let Some(t) = token {
                    req = req.bearer(t);
                }
                let refused = match c.send_no_stream(req) {
                    Ok(r) if r.status == 401 => r.check_problem(),
                    Ok(r) => Err(r.to_string()),
                    Err(e) => Err(e),
                };
                if let Err(e) = refused {
                    failures.push(format!("node {n}: {route} with {what}: {e}"));
                }
            }
        }
    }
    assert_no_failures(
        &failures,
        "requests without a valid token were not refused with 401",
    );

    // Nothing they asked for happened.
    for n in c.all_nodes() {
        assert_eq!(c.config_value(n, "matrix").unwrap(), None, "node {n}");
        wait_listed(&c, n, "/api/v1/users?q=matrix-", &[]);
        wait_listed(&c, n, "/api/v1/groups?q=matrix-", &[]);
        let r = admin(&c, n, Method::GET, "/api/v1/nodes/99", None);
        assert_eq!(r.status, 404, "node 99 on node {n}: {r}");
        let me = admin(&c, n, Method::GET, &super::user_path(admin_id), None);
        assert_eq!(me.json()["groups"], json!(["admin"]), "{me}");
    }
}
