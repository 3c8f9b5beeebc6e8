//! Concurrent writes are batched (followers forward them together, the leader
//! proposes them as one entry); each write still gets its own answer, compare-and-set
//! stays exact, and nothing acknowledged is lost when the leader dies mid-batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{metric, Cluster};
use reqwest::Method;

use crate::{millis, secs};

fn leader_counts(c: &Cluster) -> (f64, f64) {
    let l = c.leader().expect("a leader");
    let text = c.metrics(l).unwrap();
    (
        metric(&text, "bcm_raft_proposals_total").unwrap_or(0.0),
        metric(&text, "bcm_raft_proposed_writes_total").unwrap_or(0.0),
    )
}

#[test]
fn concurrent_writes_through_every_node_each_get_their_own_answer() {
    let c = Cluster::builder().name("batching").voters(3).start();
    let (proposals_before, writes_before) = leader_counts(&c);
    const THREADS: u64 = 24;
    const EACH: u64 = 15;
    thread::scope(|s| {
        for t in 0..THREADS {
            let c = &c;
            s.spawn(move || {
                let node = t % 3 + 1;
                for i in 0..EACH {
                    let key = format!("b-{t}-{i}");
                    let value = json!({"thread": t, "i": i, "pad": "x".repeat(64)});
                    let r = c.put_config(node, &key, &value).unwrap();
                    assert_eq!(r.status, 200, "PUT {key} via node {node}: {r}");
                    // The answer is this write's, not another one's from its batch.
                    let body = r.json();
                    assert_eq!(body["key"], json!(key), "{body}");
                    assert_eq!(body["value"], value, "{body}");
                    // Read-your-writes on the node written through.
                    assert_eq!(
                        c.config_value(node, &key).unwrap(),
                        Some(value),
                        "{key} read back from node {node}"
                    );
                }
            });
        }
    });
    let expected: BTreeMap<String, Value> = (0..THREADS)
        .flat_map(|t| {
            (0..EACH).map(move |i| {
                (
                    format!("b-{t}-{i}"),
                    json!({"thread": t, "i": i, "pad": "x".repeat(64)}),
                )
            })
        })
        .collect();
    c.wait_all_present(&c.all_nodes(), &expected, secs(30));

    // The leader proposed fewer entries than it carried writes: they were batched.
    let (proposals, writes) = leader_counts(&c);
    let (proposals, writes) = (proposals - proposals_before, writes - writes_before);
    c.log(format!("{writes} writes in {proposals} proposals"));
    assert!(writes >= (THREADS * EACH) as f64, "{writes} writes counted");
    assert!(
        proposals < writes,
        "{writes} writes took {proposals} proposals: nothing was batched"
    );
}

#[test]
fn concurrent_compare_and_set_on_one_key_lets_exactly_one_win() {
    let c = Cluster::builder().name("batching-cas").voters(3).start();
    let first = c.put_config(1, "cas", &json!(0)).unwrap();
    assert_eq!(first.status, 200, "{first}");
    let mut version = first.json()["version"].as_u64().unwrap();
    for round in 1..=5u64 {
        let wins = Mutex::new(Vec::new());
        thread::scope(|s| {
            for t in 0..12u64 {
                let (c, wins) = (&c, &wins);
                s.spawn(move || {
                    let node = t % 3 + 1;
                    let req = c
                        .request(node, Method::PUT, "/api/v1/config/cas")
                        .header("if-match", &version.to_string())
                        .json(&json!({"value": {"round": round, "writer": t}}));
                    let r = c.send_authed(node, req).unwrap();
                    match r.status {
                        200 => wins.lock().unwrap().push(r.json()),
                        412 => {}
                        _ => panic!("PUT If-Match {version} via node {node}: {r}"),
                    }
                });
            }
        });
        let wins = wins.into_inner().unwrap();
        assert_eq!(wins.len(), 1, "round {round}: {wins:?}");
        let won = &wins[0];
        assert!(won["version"].as_u64().unwrap() > version, "{won}");
        version = won["version"].as_u64().unwrap();
        // Every node ends with the winner's value.
        for n in c.all_nodes() {
            let got = c.config_value(n, "cas").unwrap();
            assert_eq!(got.as_ref(), Some(&won["value"]), "node {n}, round {round}");
        }
    }

    // Unconditional writes of one key at once: all succeed, each with its own version.
    let versions = Mutex::new(Vec::new());
    thread::scope(|s| {
        for t in 0..12u64 {
            let (c, versions) = (&c, &versions);
            s.spawn(move || {
                let r = c.put_config(t % 3 + 1, "same", &json!(t)).unwrap();
                assert_eq!(r.status, 200, "{r}");
                versions
                    .lock()
                    .unwrap()
                    .push(r.json()["version"].as_u64().unwrap());
            });
        }
    });
    let mut versions = versions.into_inner().unwrap();
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 12, "versions shared: {versions:?}");
}

#[test]
fn killing_the_leader_under_concurrent_writes_loses_no_acknowledged_write() {
    let c = Cluster::builder().name("batching-crash").voters(3).start();
    let acked: Arc<Mutex<BTreeMap<String, Value>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..16u64 {
        let (api, acked, stop) = (c.api(), acked.clone(), stop.clone());
        writers.push(thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let Some(node) = api.random_live_node() else {
                    thread::sleep(millis(20));
                    continue;
                };
                let key = format!("k-{t}-{i}");
                let value = json!({"t": t, "i": i});
                i += 1;
                match api.put_config_timeout(node, &key, &value, secs(3)) {
                    Ok(r) if r.status == 200 => {
                        acked.lock().unwrap().insert(key, value);
                    }
                    // Not acknowledged: may or may not have been applied.
                    _ => thread::sleep(millis(20)),
                }
            }
        }));
    }
    let progress = |n: usize| {
        let start = acked.lock().unwrap().len();
        bcm_tests::wait_until(secs(30), &format!("{n} more acknowledged writes"), || {
            let now = acked.lock().unwrap().len();
            if now >= start + n {
                Ok(())
            } else {
                Err(format!("{} so far", now - start))
            }
        });
    };
    progress(100);
    for round in 1..=3 {
        let leader = c.wait_for_leader();
        c.log(format!("round {round}: kill -9 the leader, node {leader}"));
        c.while_killed(leader, || progress(100));
        progress(50);
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    c.log(format!("{} writes acknowledged", acked.len()));
    c.wait_all_present(&c.all_nodes(), &acked, secs(60));
}
