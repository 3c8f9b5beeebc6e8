//! The audit log: who did what, when, from which address, and how it ended,
//! written through any node, read on every node, kept when the leader is killed
//! (it is replicated state), readable only with `audit.read`, and never holding
//! a password.

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{wait_until, Bcm, Cluster, Reply, ADMIN_PASSWORD};
use reqwest::Method;

use crate::{secs, PASSWORD};

/// A wrong password for admin: it must not appear in any record.
const WRONG: &str = "not-the-admin-password-7781";
/// A password typed into the name field (a common slip): nor may it.
const TYPED_AS_NAME: &str = "Sunshine-in-the-name-field-42";
/// A password refused as too weak: nor may it.
const WEAK: &str = "password1234";

/// `GET /api/v1/audit{query}` through `node` as admin; the items, newest first.
fn records(c: &Cluster, node: u64, query: &str) -> Result<Vec<Value>, String> {
    let v = c.get_json(node, &format!("/api/v1/audit{query}"))?;
    v["items"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("no items in {v}"))
}

/// The newest record of `action` on `target` that `node` shows, waited for.
fn wait_record(c: &Cluster, node: u64, action: &str, target: &str) -> Value {
    wait_until(
        secs(10),
        &format!("node {node} to show {action} on {target}"),
        || {
            let all = records(c, node, &format!("?action={action}"))?;
            all.into_iter()
                .find(|r| r["action"] == action && r["target"] == target)
                .ok_or_else(|| format!("no {action} on {target}"))
        },
    )
}

/// Asserts who did it, from where and how it ended.
fn assert_record(r: &Value, actor: &str, outcome: &str) {
    assert_eq!(r["actor"], actor, "{r}");
    assert_eq!(r["addr"], "127.0.0.1", "the harness's address: {r}");
    assert_eq!(r["outcome"], outcome, "{r}");
    assert!(
        r["at_ms"].as_u64().is_some_and(|t| t > 1_700_000_000_000),
        "{r}"
    );
}

/// `(id, action, target)` of every record `node` shows: what must be the same everywhere.
fn log_of(c: &Cluster, node: u64) -> Result<Vec<(u64, String, String)>, String> {
    Ok(records(c, node, "?limit=1000")?
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap_or(0),
                r["action"].as_str().unwrap_or("").to_string(),
                r["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

#[test]
fn logins_writes_and_refusals_are_recorded_on_every_node_and_survive_the_leader() {
    let c = Cluster::builder().name("audit").voters(3).start();
    let leader = c.wait_for_leader();
    let followers = c.followers();
    let (f, other) = (followers[0], followers[1]);

    // Through a follower: a wrong password for admin, and a password typed as the
    // name. Through the leader: admin logs in.
    let r = c.login_with(f, "admin", WRONG).unwrap();
    assert_eq!(r.status, 401, "{r}");
    let r = c.login_with(f, TYPED_AS_NAME, "whatever-it-was").unwrap();
    assert_eq!(r.status, 401, "{r}");
    let token = c.login(leader).unwrap();
    assert!(!token.is_empty());

    // A user created through the follower, one refused (weak password), a node
    // drained and undrained through the leader.
    let body = json!({"name": "carol", "password": PASSWORD, "groups": ["viewer"]});
    let r = c.post(f, "/api/v1/users", &body).unwrap();
    assert_eq!(r.status, 201, "{r}");
    let body = json!({"name": "dave", "password": WEAK, "groups": []});
    let r = c.post(f, "/api/v1/users", &body).unwrap();
    assert_eq!(r.status, 422, "{r}");
    let node_path = format!("/api/v1/nodes/{other}");
    let r = c
        .patch(leader, &node_path, &json!({"maintenance": true}))
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    let r = c
        .patch(leader, &node_path, &json!({"maintenance": false}))
        .unwrap();
    assert_eq!(r.status, 200, "{r}");

    // Every node shows each of them, with who, from where, and how it ended.
    for n in c.all_nodes() {
        let failed = wait_record(&c, n, "login.failed", "admin");
        assert_record(&failed, "admin", "refused");
        assert_eq!(failed["reason"], "wrong password", "{failed}");
        let unknown = wait_record(&c, n, "login.failed", "anonymous");
        assert_record(&unknown, "anonymous", "refused");
        assert_eq!(unknown["reason"], "unknown user", "{unknown}");
        assert_record(&wait_record(&c, n, "login", "admin"), "admin", "ok");
        let created = wait_record(&c, n, "users.create", "carol");
        assert_record(&created, "admin", "ok");
        assert_eq!(created["detail"], "groups: viewer", "{created}");
        let refused = wait_record(&c, n, "users.create", "dave");
        assert_record(&refused, "admin", "refused");
        assert!(
            refused["reason"]
                .as_str()
                .is_some_and(|w| w.contains("password")),
            "{refused}"
        );
        let target = format!("node {other}");
        assert_record(&wait_record(&c, n, "nodes.drain", &target), "admin", "ok");
        assert_record(&wait_record(&c, n, "nodes.undrain", &target), "admin", "ok");
    }
    // The cluster manager's own changes are there too, as `node N`.
    for action in ["cluster.init", "cluster.backup_manager", "nodes.register"] {
        let r = wait_until(secs(10), &format!("a record of {action}"), || {
            let own = records(&c, f, &format!("?action={action}"))?;
            own.into_iter().next().ok_or_else(|| format!("no {action}"))
        });
        assert!(r["actor"].as_str().unwrap().starts_with("node "), "{r}");
        assert_eq!(
            (&r["outcome"], &r["addr"]),
            (&json!("ok"), &Value::Null),
            "{r}"
        );
    }

    // The filters: an action prefix, a user in any case, a window in time, paging.
    let users = records(&c, f, "?action=users.").unwrap();
    assert!(!users.is_empty());
    assert!(users
        .iter()
        .all(|r| r["action"].as_str().unwrap().starts_with("users.")));
    let by_admin = records(&c, f, "?user=ADMIN").unwrap();
    assert!(by_admin.iter().all(|r| r["actor"] == "admin"));
    assert!(by_admin.len() >= 6, "{by_admin:?}");
    let newest = &by_admin[0];
    let at = newest["at_ms"].as_u64().unwrap();
    let since = records(&c, f, &format!("?user=admin&since={at}")).unwrap();
    assert!(since.iter().all(|r| r["at_ms"].as_u64().unwrap() >= at));
    let until = records(&c, f, "?until=1970-01-02T00:00:00Z").unwrap();
    assert!(until.is_empty(), "{until:?}");
    let page = records(&c, f, "?limit=2").unwrap();
    assert_eq!(page.len(), 2);
    let before = page[1]["id"].as_u64().unwrap();
    let next = records(&c, f, &format!("?limit=2&before={before}")).unwrap();
    assert_eq!(next[0]["id"].as_u64(), Some(before - 1), "{next:?}");
    let r = c
        .call(f, Method::GET, "/api/v1/audit?since=yesterday", None)
        .unwrap();
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.json()["field"], "since", "{r}");

    // No password, hash or token in any record, on any node.
    for n in c.all_nodes() {
        let body = c
            .call(n, Method::GET, "/api/v1/audit?limit=1000", None)
            .unwrap()
            .body;
        for secret in [
            WRONG,
            TYPED_AS_NAME,
            WEAK,
            PASSWORD,
            ADMIN_PASSWORD,
            "$argon2",
            &token,
        ] {
            assert!(
                !body.contains(secret),
                "node {n}'s audit log holds {secret:?}"
            );
        }
    }

    // The leader is killed: the records are kept by the others, the same on both,
    // and a write through the new leader is recorded after them.
    let before_kill = log_of(&c, leader).unwrap();
    c.kill(leader);
    let new_leader = c.wait_for_new_leader(leader);
    let survivors: Vec<u64> = c.all_nodes().into_iter().filter(|n| *n != leader).collect();
    for n in &survivors {
        wait_until(secs(10), &format!("node {n} to keep the log"), || {
            let now = log_of(&c, *n)?;
            if now.ends_with(&before_kill) || now == before_kill {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        });
    }
    let body = json!({"name": "erin", "password": PASSWORD, "groups": []});
    let r = c.post(new_leader, "/api/v1/users", &body).unwrap();
    assert_eq!(r.status, 201, "{r}");
    for n in &survivors {
        let erin = wait_record(&c, *n, "users.create", "erin");
        assert_record(&erin, "admin", "ok");
        assert!(
            erin["id"].as_u64() > before_kill.first().map(|r| r.0),
            "{erin}"
        );
    }
}

/// `method path` through `node` with `token`.
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
    c.send(req)
        .unwrap_or_else(|e| panic!("{method} {path} via node {node}: {e}"))
}

#[test]
fn only_holders_of_audit_read_see_it_and_a_refused_write_is_recorded() {
    let c = Cluster::builder().name("audit-read").voters(1).start();
    let n = c.wait_for_leader();
    let group = json!({"name": "auditors", "permissions": ["audit.read"]});
    let r = c.post(n, "/api/v1/groups", &group).unwrap();
    assert_eq!(r.status, 201, "{r}");
    for (name, groups) in [
        ("vic", vec!["viewer"]),
        ("olga", vec!["operator"]),
        ("ada", vec!["auditors"]),
    ] {
        let body = json!({"name": name, "password": PASSWORD, "groups": groups});
        let r = c.post(n, "/api/v1/users", &body).unwrap();
        assert_eq!(r.status, 201, "{r}");
    }
    let token = |name: &str| {
        let r = c.login_with(n, name, PASSWORD).unwrap();
        assert_eq!(r.status, 200, "{r}");
        r.json()["token"].as_str().unwrap().to_string()
    };
    let (vic, olga, ada) = (token("vic"), token("olga"), token("ada"));

    for (who, t) in [("vic", &vic), ("olga", &olga)] {
        let r = as_user(&c, n, t, Method::GET, "/api/v1/audit", None);
        assert_eq!(r.status, 403, "{who}: {r}");
        assert!(
            r.json()["detail"].as_str().unwrap().contains("audit.read"),
            "{r}"
        );
    }
    // A viewer trying to create a user: refused, and recorded with the permission
    // as its action.
    let body = json!({"name": "mallory", "password": PASSWORD, "groups": ["admin"]});
    let r = as_user(&c, n, &vic, Method::POST, "/api/v1/users", Some(&body));
    assert_eq!(r.status, 403, "{r}");
    let r = as_user(&c, n, &ada, Method::GET, "/api/v1/audit?user=vic", None);
    assert_eq!(r.status, 200, "{r}");
    let items = r.json()["items"].as_array().cloned().unwrap();
    let denied = items
        .iter()
        .find(|r| r["action"] == "users.write")
        .unwrap_or_else(|| panic!("no denied write in {items:?}"));
    assert_eq!(denied["target"], "POST /api/v1/users", "{denied}");
    assert_eq!(denied["outcome"], "refused", "{denied}");
    assert!(items
        .iter()
        .any(|r| r["action"] == "login" && r["actor"] == "vic"));

    // The CLI shows the same, as a table and as JSON.
    let home = c.dir().join("operator");
    std::fs::create_dir_all(&home).unwrap();
    let server = c.api_url(n);
    let out = Bcm::new(
        &home,
        &[
            "audit", "--user", "admin", "--action", "users.", "--limit", "5", "--server", &server,
        ],
    )
    .env("BCM_PASSWORD", ADMIN_PASSWORD)
    .run(secs(30));
    assert!(out.success(), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("ACTION"),
        "{out}"
    );
    assert!(
        out.stdout.contains("users.create") && out.stdout.contains("ada"),
        "{out}"
    );
    assert!(!out.stdout.contains("login"), "only users.*: {out}");
    let out = Bcm::new(
        &home,
        &[
            "audit",
            "--action",
            "login.failed",
            "--output",
            "json",
            "--server",
            &server,
        ],
    )
    .env("BCM_PASSWORD", ADMIN_PASSWORD)
    .run(secs(30));
    assert!(out.success(), "{out}");
    let page: Value = bcm_tests::serde_json::from_str(&out.stdout).unwrap();
    assert!(page["items"].as_array().is_some(), "{out}");
}
