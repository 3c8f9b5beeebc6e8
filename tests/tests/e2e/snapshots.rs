//! Snapshots and log compaction: the log does not grow forever, and a cluster that
//! loses every process at once comes back from snapshot + log tail with nothing lost.

use std::collections::BTreeMap;

use bcm_tests::serde_json::json;
use bcm_tests::{metric, wait_until, Cluster};
use reqwest::Method;

use crate::secs;

#[test]
fn compacted_nodes_restarted_all_at_once_keep_every_acknowledged_write() {
    let c = Cluster::builder()
        .name("snapshots")
        .voters(3)
        .snapshot_every(50)
        // The node keeps 1000 entries behind a snapshot by default, which would leave
        // nothing to purge after a few hundred writes.
        .keep_logs_behind_snapshot(20)
        .start();

    let mut acked = BTreeMap::new();
    let mut last_version = 0;
    for i in 0..200 {
        let key = format!("k{i:03}");
        let value = json!({"i": i});
        let via = c.all_nodes()[i % 3];
        let r = c.put_config(via, &key, &value).unwrap();
        assert!(r.is_success(), "write {key} via node {via}: {r}");
        last_version = r.json()["version"].as_u64().unwrap();
        acked.insert(key, value);
    }

    // Every node has taken a snapshot and purged the log behind it.
    for n in c.all_nodes() {
        wait_until(
            secs(20),
            &format!("node {n} to report a snapshot and a purged log"),
            || {
                let text = c.metrics(n)?;
                let snap = metric(&text, "bcm_raft_snapshot_index").unwrap_or(0.0);
                let purged = metric(&text, "bcm_raft_purged_index").unwrap_or(0.0);
                if snap > 0.0 && purged > 0.0 {
                    Ok(())
                } else {
                    Err(format!("snapshot_index {snap}, purged_index {purged}"))
                }
            },
        );
    }

    // An operator asks for a snapshot now (through a follower): it covers the last write.
    let f = c.followers()[0];
    let r = c
        .call(f, Method::POST, "/api/v1/cluster/snapshot", None)
        .unwrap();
    assert_eq!(
        r.status, 200,
        "POST /api/v1/cluster/snapshot via node {f}: {r}"
    );
    let snap = r.json()["snapshot_index"].as_u64().unwrap_or(0);
    assert!(
        snap >= last_version,
        "snapshot_index {snap} does not cover the last write (version {last_version}): {r}"
    );

    // The power goes out: every node dies at once, then all come back.
    for n in c.all_nodes() {
        c.kill(n);
    }
    for n in c.all_nodes() {
        c.restart(n);
    }
    for n in c.all_nodes() {
        c.wait_ready(n, secs(30));
    }

    // They started from their snapshots (their logs begin after a purge point)...
    for n in c.all_nodes() {
        let text = c.metrics(n).unwrap();
        let snap = metric(&text, "bcm_raft_snapshot_index").unwrap_or(0.0);
        let purged = metric(&text, "bcm_raft_purged_index").unwrap_or(0.0);
        assert!(
            snap > 0.0 && purged > 0.0,
            "node {n} after the restart: snapshot_index {snap}, purged_index {purged}"
        );
    }
    // ...and every acknowledged write is there, on every node.
    c.wait_all_present(&c.all_nodes(), &acked, secs(20));
    let via = c.write_eventually("after-restart", &json!(true), secs(10));
    c.log(format!(
        "the restarted cluster commits again (via node {via})"
    ));
}
