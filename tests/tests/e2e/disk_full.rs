//! A node whose data disk fills up: it refuses writes with 507 and says why, keeps
//! serving reads, hands leadership to another voter, waits with its log intact
//! while the others go on, and takes writes again once space is freed.

use std::collections::BTreeMap;
use std::time::Duration;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{disk, wait_until, Cluster};

use crate::secs;

/// A config value of about `kib` KiB.
fn big(tag: &str, kib: usize) -> Value {
    json!({ "tag": tag, "pad": "x".repeat(kib * 1024) })
}

#[test]
fn a_full_data_disk_refuses_writes_serves_reads_and_recovers_once_freed() {
    // Root only (it mounts small file systems), as the chaos runs: skipped,
    // saying so, elsewhere.
    if let Err(why) = disk::can_mount() {
        eprintln!("skipped: {why}");
        return;
    }
    let c = Cluster::builder()
        .name("disk-full")
        .voters(3)
        .data_on_tmpfs(128, 24)
        .start();
    let mut acked: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..10 {
        let (k, v) = (format!("before-{i}"), json!(i));
        c.write_eventually(&k, &v, secs(10));
        acked.insert(k, v);
    }

    // The leader's disk fills up.
    let full = c.wait_for_leader();
    c.fill_disk(full);

    // Writes through it are refused, clearly, and change nothing.
    c.wait_for_log(full, "writes through this node are refused", secs(10));
    let refused = c.put_config(full, "refused", &json!(1)).unwrap();
    assert_eq!(
        refused.status, 507,
        "a write through the full node: {refused}"
    );
    assert!(
        refused.body.contains("data disk") && refused.body.contains("reads are served"),
        "the 507 does not say why: {refused}"
    );
    // Reads are served.
    for (k, v) in acked.iter().take(3) {
        assert_eq!(c.config_value(full, k).unwrap().as_ref(), Some(v));
    }
    // Leadership moves to a node with room, and the cluster takes writes through
    // the others: big ones, so that the full node's log needs a new segment it
    // has no room for (its log then waits).
    let new_leader = c.wait_for_new_leader(full);
    assert_ne!(new_leader, full);
    let others: Vec<u64> = c.live_nodes().into_iter().filter(|n| *n != full).collect();
    for i in 0..24 {
        let n = others[i % others.len()];
        let (k, v) = (format!("while-full-{i}"), big(&format!("w{i}"), 900));
        wait_until(
            secs(15),
            &format!("a write of {k} through node {n}"),
            || match c.put_config_timeout(n, &k, &v, secs(10)) {
                Ok(r) if r.is_success() => Ok(()),
                Ok(r) => Err(format!("{r}")),
                Err(e) => Err(e),
            },
        );
        acked.insert(k, v);
    }
    c.wait_all_present(&others, &acked, secs(30));
    c.wait_for_log(full, "the Raft log waits for space", secs(30));
    // Still refusing, still reading.
    let r = c.put_config(full, "refused", &json!(2)).unwrap();
    assert_eq!(r.status, 507, "while full: {r}");
    assert_eq!(c.config_value(full, "before-0").unwrap(), Some(json!(0)));
    assert_eq!(c.config_value(full, "refused").unwrap(), None);

    // Space is freed: it catches up and takes writes again.
    c.free_disk(full);
    wait_until(secs(30), "a write through the freed node", || {
        match c.put_config_timeout(full, "after-free", &json!("ok"), secs(10)) {
            Ok(r) if r.is_success() => Ok(()),
            Ok(r) => Err(format!("{r}")),
            Err(e) => Err(e),
        }
    });
    acked.insert("after-free".into(), json!("ok"));
    c.wait_all_present(&[full], &acked, secs(60));

    // Its log came through whole: after kill -9 it starts and has everything.
    c.kill(full);
    c.restart(full);
    c.wait_ready(full, secs(60));
    c.wait_all_present(&c.live_nodes(), &acked, secs(60));
    let r = c
        .put_config_timeout(full, "after-restart", &json!(1), Duration::from_secs(10))
        .unwrap();
    assert!(r.is_success(), "a write after the restart: {r}");
}
