//! The backup catalog through the API: plans, backups started now, restores, the
//! filters operators use, and the rules that keep the catalog honest.

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{wait_until, Cluster};
use reqwest::Method;

use crate::secs;

fn ok(
    c: &Cluster,
    node: u64,
    method: Method,
    path: &str,
    body: Option<&Value>,
    status: u16,
) -> Value {
    let r = c.call(node, method.clone(), path, body).unwrap();
    assert_eq!(r.status, status, "{method} {path} {body:?}: {r}");
    r.json()
}

fn refused(
    c: &Cluster,
    node: u64,
    method: Method,
    path: &str,
    body: &Value,
    status: u16,
    field: Option<&str>,
) {
    let r = c.call(node, method.clone(), path, Some(body)).unwrap();
    assert_eq!(r.status, status, "{method} {path} {body}: {r}");
    r.check_problem().unwrap();
    if let Some(f) = field {
        assert_eq!(r.json()["field"], f, "{method} {path} {body}: {r}");
    }
}

#[test]
fn plans_backups_and_restores_are_recorded_filtered_and_checked() {
    // No backup manager: backups and restores stay pending, so the catalog's
    // rules show without any data moving.
    let c = Cluster::builder()
        .name("catalog")
        .voter_roles(&["manager", "storage"])
        .start();
    let f = c.followers()[0];

    // A plan: what, where from, when (cron), how many to keep.
    let plan = ok(
        &c,
        f,
        Method::POST,
        "/api/v1/plans",
        Some(
            &json!({"name": "etc-daily", "source_node": 2, "paths": ["/etc"], "schedule": "0 3 * * *", "keep_last": 5}),
        ),
        201,
    );
    let plan_id = plan["id"].as_u64().unwrap();
    assert_eq!(plan["replicas"], 1, "default replicas: {plan}");
    // Bad plans change nothing and name the field.
    let base = json!({"name": "x", "source_node": 2, "paths": ["/srv"]});
    for (patch, field) in [
        (json!({"schedule": "every day"}), "schedule"),
        (json!({"source_node": 99}), "source_node"),
        (json!({"paths": ["relative/path"]}), "paths"),
        (json!({"paths": []}), "paths"),
        (json!({"keep_last": 0}), "keep_last"),
        (json!({"name": "bad name"}), "name"),
    ] {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        refused(
            &c,
            f,
            Method::POST,
            "/api/v1/plans",
            &body,
            422,
            Some(field),
        );
    }
    refused(
        &c,
        f,
        Method::POST,
        "/api/v1/plans",
        &json!({"name": "ETC-DAILY", "source_node": 1, "paths": ["/x"]}),
        409,
        None,
    );
    assert_eq!(
        ok(&c, f, Method::GET, "/api/v1/plans", None, 200)["total"],
        1
    );
    // PATCH: null removes the schedule.
    let patched = ok(
        &c,
        f,
        Method::PATCH,
        &format!("/api/v1/plans/{plan_id}"),
        Some(&json!({"schedule": null})),
        200,
    );
    assert_eq!(patched["schedule"], Value::Null, "{patched}");
    assert_eq!(patched["keep_last"], 5, "{patched}");

    // Backups start as pending, from a plan or ad hoc.
    let b1 = ok(
        &c,
        f,
        Method::POST,
        "/api/v1/backups",
        Some(&json!({"plan": plan_id})),
        202,
    );
    assert_eq!(b1["status"], "pending");
    assert_eq!(b1["paths"], json!(["/etc"]));
    let b2 = ok(
        &c,
        f,
        Method::POST,
        "/api/v1/backups",
        Some(&json!({"source_node": 3, "paths": ["/var/lib"]})),
        202,
    );
    refused(
        &c,
        f,
        Method::POST,
        "/api/v1/backups",
        &json!({"plan": 77}),
        422,
        Some("plan"),
    );
    refused(
        &c,
        f,
        Method::POST,
        "/api/v1/backups",
        &json!({"plan": plan_id, "source_node": 1}),
        422,
        None,
    );

    // Filters, on every node.
    for n in c.all_nodes() {
        wait_until(secs(10), &format!("node {n} to filter backups"), || {
            let by_plan = c.get_json(n, &format!("/api/v1/backups?plan={plan_id}"))?;
            let by_node = c.get_json(n, "/api/v1/backups?node=3&status=pending")?;
            let failed = c.get_json(n, "/api/v1/backups?status=failed")?;
            if by_plan["total"] == 1 && by_node["total"] == 1 && failed["total"] == 0 {
                Ok(())
            } else {
                Err(format!(
                    "plan: {by_plan}; node 3: {by_node}; failed: {failed}"
                ))
            }
        });
    }
    let bad = c
        .call(f, Method::GET, "/api/v1/backups?status=done", None)
        .unwrap();
    assert_eq!(bad.status, 400, "{bad}");

    // Only a succeeded backup can be restored; nothing is recorded otherwise.
    refused(
        &c,
        f,
        Method::POST,
        &format!("/api/v1/backups/{}/restore", b1["id"]),
        &json!({"target_node": 1, "target_path": "/restore"}),
        409,
        None,
    );
    assert_eq!(
        ok(&c, f, Method::GET, "/api/v1/restores", None, 200)["total"],
        0
    );

    // Deleting a backup removes it everywhere.
    ok(
        &c,
        f,
        Method::DELETE,
        &format!("/api/v1/backups/{}", b2["id"]),
        None,
        200,
    );
    for n in c.all_nodes() {
        wait_until(
            secs(10),
            &format!("node {n} to forget backup {}", b2["id"]),
            || {
                let r = c.call(
                    n,
                    Method::GET,
                    &format!("/api/v1/backups/{}", b2["id"]),
                    None,
                )?;
                if r.status == 404 {
                    Ok(())
                } else {
                    Err(format!("{r}"))
                }
            },
        );
    }
}
