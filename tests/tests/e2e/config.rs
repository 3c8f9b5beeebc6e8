//! Cluster configuration: versions, compare-and-set, listing, and reads that are
//! guaranteed to be current.

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{wait_for, Cluster, Reply};
use reqwest::Method;

use crate::secs;

/// `PUT /api/v1/config/{key}` through `node` with extra headers.
fn put(c: &Cluster, node: u64, key: &str, value: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = c
        .request(node, Method::PUT, &format!("/api/v1/config/{key}"))
        .json(&json!({ "value": value }));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    c.send_authed(node, req)
        .unwrap_or_else(|e| panic!("PUT {key} via node {node}: {e}"))
}

/// A plain [`put`] that must be acknowledged (200); `what` names it when it is not.
fn put_ok(c: &Cluster, node: u64, key: &str, value: &Value, what: &str) -> Reply {
    let r = put(c, node, key, value, &[]);
    assert_eq!(r.status, 200, "{what}: {r}");
    r
}

/// A [`put`] that only applies while the key is at `version` (`If-Match`).
fn put_if_match(c: &Cluster, node: u64, key: &str, value: &Value, version: u64) -> Reply {
    put(
        c,
        node,
        key,
        value,
        &[("if-match", &format!("\"{version}\""))],
    )
}

fn version(r: &Reply) -> u64 {
    r.json()["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no version in {r}"))
}

fn etag(r: &Reply) -> String {
    r.headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no ETag in {r}"))
        .to_string()
}

/// Waits until every node serves `key` with `expected` (`None`: 404).
fn wait_everywhere(c: &Cluster, key: &str, expected: Option<(&Value, u64)>) {
    for n in c.all_nodes() {
        wait_for(
            secs(10),
            &format!("node {n} to serve {key} as {expected:?}"),
            || c.get_config(n, key),
            |r| match expected {
                None => r.status == 404,
                Some((value, v)) => {
                    r.status == 200
                        && r.json()["value"] == *value
                        && r.json()["version"] == v
                        && etag(r) == format!("\"{v}\"")
                }
            },
        );
    }
}

#[test]
fn config_versions_only_grow_and_compare_and_set_never_overwrites_a_newer_value() {
    let c = Cluster::builder().name("config-cas").voters(3).start();
    let f = c.followers()[0];
    let key = "retention.days";

    // A write answers with the entry and its version, also as an ETag.
    let first = put_ok(&c, f, key, &json!(30), "the first write");
    let v1 = version(&first);
    assert_eq!(
        first.json(),
        json!({"key": key, "value": 30, "version": v1})
    );
    assert_eq!(etag(&first), format!("\"{v1}\""), "{first}");
    wait_everywhere(&c, key, Some((&json!(30), v1)));

    // A second write gets a higher version.
    let v2 = version(&put_ok(&c, f, key, &json!(31), "the second write"));
    assert!(v2 > v1, "second version {v2} after {v1}");

    // Compare-and-set with the ETag just read succeeds...
    let read = c.get_config(f, key).unwrap();
    let third = put(&c, f, key, &json!(32), &[("if-match", &etag(&read))]);
    assert_eq!(
        third.status, 200,
        "If-Match with the current version: {third}"
    );
    let v3 = version(&third);
    assert!(v3 > v2, "third version {v3} after {v2}");

    // ...and with an old version it fails and changes nothing, through any node.
    for n in c.all_nodes() {
        let stale = put_if_match(&c, n, key, &json!("lost update"), v2);
        assert_eq!(stale.status, 412, "If-Match {v2} via node {n}: {stale}");
        stale.check_problem().unwrap();
    }
    let r = c
        .send_authed(
            f,
            c.request(f, Method::DELETE, &format!("/api/v1/config/{key}"))
                .header("if-match", &v1.to_string()),
        )
        .unwrap();
    assert_eq!(r.status, 412, "DELETE with If-Match {v1}: {r}");
    wait_everywhere(&c, key, Some((&json!(32), v3)));

    // If-None-Match: * only creates.
    let r = put(&c, f, key, &json!(0), &[("if-none-match", "*")]);
    assert_eq!(r.status, 412, "If-None-Match: * on an existing key: {r}");
    r.check_problem().unwrap();
    let fresh = "feature.flags.new-ui";
    let create_only = [("if-none-match", "*")];
    let created = put(&c, f, fresh, &json!({"on": true}), &create_only);
    assert_eq!(
        created.status, 200,
        "If-None-Match: * on a new key: {created}"
    );
    let again = put(&c, f, fresh, &json!({"on": false}), &create_only);
    assert_eq!(again.status, 412, "a second create-only write: {again}");
    // An empty If-None-Match is an empty list of tags (RFC 9110): no condition
    // (it was a 400, on a header the document allows; schemathesis found it).
    let plain = "feature.flags.no-condition";
    let r = put(&c, f, plain, &json!(1), &[("if-none-match", "")]);
    assert_eq!(r.status, 200, "an empty If-None-Match: {r}");
    let gone = c
        .send_authed(
            f,
            c.request(f, Method::DELETE, &format!("/api/v1/config/{plain}")),
        )
        .unwrap();
    assert_eq!(gone.status, 200, "{gone}");
    wait_everywhere(&c, fresh, Some((&json!({"on": true}), version(&created))));

    // Delete: then the key is gone everywhere, and deleting again is a 404.
    let del = c
        .call(f, Method::DELETE, &format!("/api/v1/config/{key}"), None)
        .unwrap();
    assert_eq!(del.status, 200, "DELETE {key}: {del}");
    wait_everywhere(&c, key, None);
    let r = c.get_config(f, key).unwrap();
    r.check_problem().unwrap();
    let del = c
        .call(f, Method::DELETE, &format!("/api/v1/config/{key}"), None)
        .unwrap();
    assert_eq!(del.status, 404, "DELETE {key} again: {del}");

    // Re-created, the key gets a version above any it had before, so a client holding
    // an old ETag cannot overwrite it by accident.
    let v4 = version(&put_ok(&c, f, key, &json!(7), "re-creating the key"));
    assert!(
        v4 > v3,
        "re-created {key} got version {v4}; it had {v1}, {v2}, {v3}"
    );
    for old in [v1, v2, v3] {
        let r = put_if_match(&c, f, key, &json!("stale"), old);
        assert_eq!(r.status, 412, "If-Match {old} on the re-created key: {r}");
    }
    wait_everywhere(&c, key, Some((&json!(7), v4)));

    // Listing with a filter.
    for (k, v) in [("backup.window", "22:00"), ("backup.target", "s3")] {
        assert!(put(&c, f, k, &json!(v), &[]).is_success());
    }
    let list = wait_for(
        secs(10),
        "the filtered list",
        || c.get_json(f, "/api/v1/config?q=backup."),
        |list| list["total"] == 2,
    );
    let items = list["items"].as_array().unwrap();
    let keys: Vec<&str> = items.iter().filter_map(|i| i["key"].as_str()).collect();
    assert_eq!(keys, ["backup.target", "backup.window"], "{list}");
    for i in items {
        assert!(i["version"].as_u64().is_some(), "{list}");
        assert!(i["value"] == "s3" || i["value"] == "22:00", "{list}");
    }
    wait_for(
        secs(10),
        "the unfiltered list to hold the four keys",
        || c.get_json(f, "/api/v1/config"),
        |all| all["total"] == 4 && all["items"].as_array().map(Vec::len) == Some(4),
    );
}

#[test]
fn a_linearizable_read_on_a_follower_sees_a_write_acknowledged_by_another_node() {
    let c = Cluster::builder()
        .name("config-linearizable")
        .voters(3)
        .start();
    let leader = c.wait_for_leader();
    let reader = c.followers()[0];
    let writers: Vec<u64> = c.all_nodes().into_iter().filter(|n| *n != reader).collect();
    c.log(format!(
        "reading on follower {reader}, writing via {writers:?} (leader {leader})"
    ));

    for i in 0..40u64 {
        let via = writers[i as usize % writers.len()];
        let what = format!("write {i} via node {via}");
        let written = version(&put_ok(&c, via, "counter", &json!(i), &what));

        let read = c
            .send_authed(
                reader,
                c.request(
                    reader,
                    Method::GET,
                    "/api/v1/config/counter?consistency=linearizable",
                ),
            )
            .unwrap();
        assert_eq!(read.status, 200, "linearizable read {i}: {read}");
        assert!(
            read.json()["value"] == i && version(&read) >= written,
            "round {i}: write via node {via} acknowledged version {written}; a linearizable \
             read on node {reader} right after returned {read}"
        );
    }
}

#[test]
fn keys_are_paths_and_bad_keys_are_refused_with_the_field_named() {
    let c = Cluster::builder().name("config-keys").voters(3).start();
    let f = c.followers()[0];

    // Operators group settings with slashes; they work as plain URL paths.
    let key = "backup/retention/days";
    let r = put_ok(&c, f, key, &json!(14), &format!("PUT {key}"));
    assert_eq!(r.json()["key"], key, "{r}");
    wait_everywhere(&c, key, Some((&json!(14), version(&r))));

    // A key with characters outside letters, digits and `. _ - /` is refused, names
    // the field, and writes nothing.
    let bad = put(&c, f, "has%20space", &json!(1), &[]);
    assert_eq!(bad.status, 422, "{bad}");
    bad.check_problem().unwrap();
    assert_eq!(bad.json()["field"], "key", "{bad}");
    let listed = c
        .call(f, Method::GET, "/api/v1/config?q=space", None)
        .unwrap();
    assert_eq!(listed.json()["total"], 0, "{listed}");
}
