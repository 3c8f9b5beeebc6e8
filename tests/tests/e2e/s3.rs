//! Storage nodes whose chunk store is in an S3 object store: a real Garage
//! cluster (three `garage server` processes, replication factor 3) beside the
//! bcm cluster. Backups land there and restore byte-identical; two storage
//! nodes sharing a bucket deduplicate against each other and are collected
//! once; a Garage node killed, or the whole store stopped, mid-backup loses
//! nothing; a node with a bad `[storage]` section says what is wrong.

use std::fs;
use std::path::Path;

use bcm_chunks::store::Backend;
use bcm_tests::serde_json::{json, Value};
use bcm_tests::tree::{describe, make_tree, noise};
use bcm_tests::{wait_until, Cluster, Garage, GARAGE_SECRET};
use reqwest::Method;

use crate::secs;

/// Where a restore into `target` puts what was backed up from `source`.
fn restored(target: &Path, source: &Path) -> std::path::PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}

/// Three voters that keep no data (the backup manager among them), and the
/// Garage cluster, with `buckets`.
fn cluster_and_garage(name: &str, buckets: &[&str]) -> (Cluster, Garage) {
    let c = Cluster::builder()
        .name(name)
        .voters(3)
        .voter_roles(&["manager", "backup-manager"])
        .start();
    let g = Garage::start(&c.dir().join("garage"), buckets);
    c.log(format!("garage up: {}", g.endpoint(0)));
    (c, g)
}

/// Starts a storage node keeping its chunks in `bucket` through Garage node
/// `via`; waits until it is ready (its store open).
fn s3_node(c: &mut Cluster, g: &Garage, via: usize, bucket: &str, extra: &str) -> u64 {
    let id = c.start_extra_with(&["storage"], &g.storage_toml(via, bucket, extra));
    c.wait_ready(id, secs(60));
    id
}

fn restore_and_compare(c: &Cluster, backup: u64, node: u64, src: &Path, name: &str) {
    let target = c.dir().join(name);
    let r = c
        .start_restore(
            1,
            backup,
            &json!({"target_node": node, "target_path": target}),
        )
        .unwrap();
    let r = c.wait_restore(1, r.id, secs(240));
    assert_eq!(r.status.as_str(), "succeeded", "{r:?}");
    let mut want = describe(src);
    want.remove(Path::new("d3/pipe"));
    assert_eq!(describe(&restored(&target, src)), want, "restore {name}");
}

/// `POST /backups/{id}/verify`, answered once every replica was read back:
/// given minutes (a Garage node just restarted serves its first reads slowly).
fn verify(c: &Cluster, backup: u64) -> Value {
    let req = c
        .request(2, Method::POST, &format!("/api/v1/backups/{backup}/verify"))
        .json(&json!({}))
        .timeout(secs(180));
    let v = c.send_authed(2, req).unwrap();
    assert_eq!(v.status, 202, "{v}");
    v.json()
}

fn storage_view(c: &Cluster, node: u64) -> Value {
    let all = c.get_json(1, "/api/v1/storage").unwrap();
    all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node_id"] == node)
        .cloned()
        .unwrap_or_else(|| panic!("node {node} not in {all}"))
}

#[test]
fn storage_nodes_in_garage_back_up_restore_deduplicate_across_a_shared_bucket_and_collect_garbage()
{
    let (mut c, g) = cluster_and_garage("s3-data", &["shared", "solo"]);
    let a = s3_node(&mut c, &g, 0, "shared", "");
    let b = s3_node(&mut c, &g, 1, "shared", "");
    let solo = s3_node(&mut c, &g, 1, "solo", "prefix = \"cluster-one\"\n");
    for n in [a, b] {
        let v = storage_view(&c, n);
        assert_eq!(v["backend"], "s3", "{v}");
        assert!(
            v["place"].as_str().unwrap().contains("bucket \"shared\""),
            "{v}"
        );
        assert_eq!(v["capacity_bytes"], Value::Null, "{v}");
    }

    let src = c.dir().join("source");
    let made = make_tree(&src, 400);
    let path = src.to_str().unwrap();
    // Two replicas: never both in the shared bucket (it is one place).
    let plan = c.create_plan(1, "to-garage", 1, &[path], 2);
    let first = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    let first = c.wait_backup(1, first.id, secs(240));
    assert_eq!(first.status.as_str(), "succeeded", "{first:?}");
    assert_eq!(first.files, Some(made.files));
    let homes = first.storage_nodes.clone();
    assert!(homes.contains(&solo), "{homes:?}");
    let shared_home = *homes.iter().find(|n| **n != solo).unwrap();
    assert!([a, b].contains(&shared_home), "{homes:?}");
    restore_and_compare(&c, first.id, 2, &src, "from-garage");

    // A pack deleted from the solo bucket behind bcm's back: verify finds the
    // replica short and repairs it from the shared bucket's.
    let solo_bucket = g.client(1, "solo", "cluster-one");
    let packs = solo_bucket.list_packs().unwrap();
    assert!(!packs.is_empty());
    assert!(solo_bucket.remove_pack(&packs[0].0).unwrap());
    let v = verify(&c, first.id);
    assert_eq!(v["ok"], true, "{v}");
    let solo_replica = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node_id"] == solo)
        .cloned()
        .unwrap();
    assert_eq!(solo_replica["state"], "repaired", "{v}");
    assert!(solo_replica["repaired_chunks"].as_u64().unwrap() > 0, "{v}");
    let again = verify(&c, first.id);
    assert!(
        again["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "ok"),
        "{again}"
    );

    // The other node of the shared bucket (the only one left enabled) finds
    // every chunk there already: almost nothing is stored again.
    let other = if shared_home == a { b } else { a };
    for n in [shared_home, solo] {
        let r = c
            .patch(1, &format!("/api/v1/nodes/{n}"), &json!({"enabled": false}))
            .unwrap();
        assert_eq!(r.status, 200, "{r}");
    }
    let plan2 = c.create_plan(1, "again-elsewhere", 1, &[path], 1);
    let second = c.start_backup(1, &json!({ "plan": plan2 })).unwrap();
    let second = c.wait_backup(1, second.id, secs(240));
    assert_eq!(second.status.as_str(), "succeeded", "{second:?}");
    assert_eq!(second.storage_nodes, vec![other], "{second:?}");
    let stored = second.stored_bytes.unwrap();
    assert!(
        stored * 100 < made.bytes,
        "node {other} stored {stored} bytes of {} already in the bucket",
        made.bytes
    );
    restore_and_compare(&c, second.id, 3, &src, "via-the-other-node");
    assert_eq!(verify(&c, first.id)["ok"], true);
    assert_eq!(verify(&c, second.id)["ok"], true);

    // The first backup deleted: the solo bucket is emptied, and the shared
    // bucket's GC (by one of its nodes) keeps every chunk the other node's
    // manifest of the second backup uses, although the packs are the first's.
    for n in [shared_home, solo] {
        c.patch(1, &format!("/api/v1/nodes/{n}"), &json!({"enabled": true}))
            .unwrap();
    }
    let r = c
        .delete(1, &format!("/api/v1/backups/{}", first.id))
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    let solo_client = g.client(0, "solo", "cluster-one");
    wait_until(
        secs(120),
        "the solo bucket to be emptied",
        || match solo_client.keys() {
            Ok(keys) if keys.is_empty() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let collected = format!("storage_node={shared_home} place=s3:shared/");
    let collected_by_other = format!("storage_node={other} place=s3:shared/");
    wait_until(secs(60), "the shared bucket's GC", || {
        let log = fs::read_to_string(c.log_path(1)).unwrap_or_default()
            + &fs::read_to_string(c.log_path(2)).unwrap_or_default()
            + &fs::read_to_string(c.log_path(3)).unwrap_or_default();
        (log.contains(&collected) || log.contains(&collected_by_other))
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    assert_eq!(verify(&c, second.id)["ok"], true);
    restore_and_compare(&c, second.id, 2, &src, "after-the-first-went");

    // The second deleted too: both buckets are emptied.
    let r = c
        .delete(1, &format!("/api/v1/backups/{}", second.id))
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    // (Listed: Garage's own object counters follow deletes only eventually.)
    for (bucket, prefix) in [("shared", ""), ("solo", "cluster-one")] {
        let client = g.client(0, bucket, prefix);
        wait_until(
            secs(120),
            &format!("bucket {bucket} to be emptied"),
            || match client.keys() {
                Ok(keys) if keys.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }
    assert!(
        fs::read_to_string(c.log_path(a))
            .unwrap()
            .contains("chunk store open"),
        "{}",
        c.log_tail(a, 10)
    );
}

/// About 160 MB that neither compresses nor repeats, and a small tree.
fn big_tree(root: &Path) {
    make_tree(root, 120);
    for i in 0..4 {
        fs::write(root.join(format!("bulk-{i}.bin")), noise(40 << 20, 70 + i)).unwrap();
    }
}

fn wait_running(c: &Cluster, backup: u64) {
    wait_until(secs(120), "the backup to run", || {
        let v = c.get_json(1, &format!("/api/v1/backups/{backup}"))?;
        (v["status"] == "running")
            .then_some(())
            .ok_or(format!("{v}"))
    });
}

#[test]
fn a_garage_node_killed_mid_backup_loses_nothing_and_the_whole_store_stopped_fails_clearly() {
    let (mut c, mut g) = cluster_and_garage("s3-faults", &["bcm"]);
    let store = s3_node(&mut c, &g, 0, "bcm", "");
    let src = c.dir().join("source");
    big_tree(&src);
    let plan = c.create_plan(1, "faults", 1, &[src.to_str().unwrap()], 1);

    // One of Garage's three nodes dies (not the one bcm talks to): two still
    // make a quorum, and the backup goes on.
    let b = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    wait_running(&c, b.id);
    g.kill(2);
    c.log("killed garage node 3");
    let b = c.wait_backup(1, b.id, secs(300));
    assert_eq!(b.status.as_str(), "succeeded", "{b:?}\n{}", g.logs());
    g.restart(2);
    assert_eq!(verify(&c, b.id)["ok"], true);
    restore_and_compare(&c, b.id, 2, &src, "after-a-garage-node-died");

    // The whole store stopped mid-backup: the backup either rides it out
    // (the store came back within its retries) or fails saying the object
    // store is the trouble. Either way the next backup, once the store is
    // back, succeeds and restores whole.
    for i in 0..4 {
        fs::write(src.join(format!("bulk-{i}.bin")), noise(40 << 20, 90 + i)).unwrap();
    }
    let b = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    wait_running(&c, b.id);
    g.stop_all();
    c.log("stopped every garage node");
    let ended = c.wait_backup(1, b.id, secs(300));
    g.start_all();
    c.log("started garage again");
    if ended.status.as_str() == "succeeded" {
        c.log("the backup ended before the store went");
    } else {
        assert_eq!(ended.status.as_str(), "failed", "{ended:?}");
        let error = ended.error.clone().unwrap_or_default();
        assert!(
            error.contains(&format!("storage node {store}")) && error.contains("object store"),
            "{error}"
        );
        assert!(!error.contains(GARAGE_SECRET), "{error}");
    }
    let again = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    let again = c.wait_backup(1, again.id, secs(300));
    assert_eq!(again.status.as_str(), "succeeded", "{again:?}");
    assert_eq!(verify(&c, again.id)["ok"], true);
    restore_and_compare(&c, again.id, 3, &src, "after-the-store-came-back");

    // The storage node itself killed mid-backup (kill -9) and started again:
    // it opens its store from the bucket, every pack it had acknowledged
    // there, and the next backup succeeds and restores whole.
    for i in 0..4 {
        fs::write(src.join(format!("bulk-{i}.bin")), noise(40 << 20, 110 + i)).unwrap();
    }
    let b = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    wait_running(&c, b.id);
    c.kill(store);
    let ended = c.wait_backup(1, b.id, secs(300));
    c.log(format!("with its storage node killed: {ended:?}"));
    c.restart(store);
    c.wait_ready(store, secs(60));
    assert_eq!(verify(&c, again.id)["ok"], true, "the earlier backup");
    let last = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    let last = c.wait_backup(1, last.id, secs(300));
    assert_eq!(last.status.as_str(), "succeeded", "{last:?}");
    assert_eq!(verify(&c, last.id)["ok"], true);
    restore_and_compare(&c, last.id, 2, &src, "after-the-storage-node-died");
}

#[test]
fn a_storage_node_with_a_bad_object_store_says_what_is_wrong_and_opens_once_it_is_fixed() {
    let (mut c, g) = cluster_and_garage("s3-bad-config", &["bcm"]);
    let dead_port = bcm_tests::free_port();
    let wrong_endpoint = c.start_extra_with(
        &["storage"],
        &g.storage_toml(0, "bcm", "")
            .replace(&g.endpoint(0), &format!("http://127.0.0.1:{dead_port}")),
    );
    let bad_key = c.start_extra_with(
        &["storage"],
        &g.storage_toml(0, "bcm", "")
            .replace(GARAGE_SECRET, &"0".repeat(GARAGE_SECRET.len())),
    );
    let no_bucket = c.start_extra_with(&["storage"], &g.storage_toml(1, "later", ""));
    let cases = [
        (wrong_endpoint, "cannot reach the object store".to_string()),
        (bad_key, "refused access key GK".to_string()),
        (no_bucket, "does not exist at".to_string()),
    ];
    for (node, says) in &cases {
        let why = wait_until(
            secs(60),
            &format!("node {node}'s /readyz to say why"),
            || {
                let r = c.get(*node, "/readyz").map_err(|e| e.to_string())?;
                (r.status == 503 && r.body.contains(says.as_str()))
                    .then(|| r.body.clone())
                    .ok_or(format!("{r}"))
            },
        );
        assert!(!why.contains(GARAGE_SECRET), "{why}");
        c.wait_for_log(*node, says, secs(30));
        let log = fs::read_to_string(c.log_path(*node)).unwrap();
        assert!(
            !log.contains(GARAGE_SECRET),
            "the secret key in node {node}'s log"
        );
        // The node is a member all the same, its store listed unreachable.
        let v = storage_view(&c, *node);
        assert_eq!(v["reachable"], false, "{v}");
        assert!(v["error"].as_str().unwrap().contains(says.as_str()), "{v}");
    }
    // The missing bucket made: the node opens its store by itself.
    g.create_bucket("later");
    c.wait_ready(no_bucket, secs(30));
    assert_eq!(storage_view(&c, no_bucket)["reachable"], true);
}
