//! kill -9 at random, again and again, in the middle of writes.

use bcm_tests::{Cluster, Writer};
use rand::seq::SliceRandom;

use crate::secs;

#[test]
fn twenty_random_kill_9s_under_write_load_lose_nothing() {
    let c = Cluster::builder().name("crash-safety").voters(3).start();
    let writer = Writer::start(&c, "k");
    writer.wait_for_progress(10, secs(20));

    let mut rng = rand::thread_rng();
    for round in 1..=20 {
        let victim = *c.all_nodes().choose(&mut rng).unwrap();
        let was_leader = c.leader() == Some(victim);
        c.log(format!(
            "round {round}: kill -9 node {victim}{}",
            if was_leader { " (the leader)" } else { "" }
        ));
        // The two survivors are a majority: writes go on. The victim then restarts
        // cleanly from what it had on disk and catches up.
        c.while_killed(victim, || writer.wait_for_progress(5, secs(20)));
        writer.wait_for_progress(5, secs(20));
    }

    let log = writer.stop();
    c.log(format!(
        "writer: {} acknowledged, {} failed",
        log.acked.len(),
        log.failed
    ));
    assert!(
        log.acked.len() >= 200,
        "too few writes to prove anything: {} acknowledged, {} failed, last errors {:?}",
        log.acked.len(),
        log.failed,
        log.last_errors
    );
    c.wait_all_present(&c.all_nodes(), &log.acked, secs(60));

    // No term ever had two leaders.
    c.assert_at_most_one_leader_per_term();
}

/// The node registry is a write path of its own: pre-registrations acknowledged
/// while nodes are killed at random are all there afterwards, on every node.
#[test]
fn node_registrations_acknowledged_during_kill_9s_are_never_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use bcm_tests::serde_json::json;
    use bcm_tests::wait_until;
    use reqwest::Method;

    let c = Cluster::builder().name("crash-registry").voters(3).start();
    let api = c.api();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let writer = {
        let (api, stop, acked) = (api.clone(), stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut id = 1000u64;
            while !stop.load(Ordering::SeqCst) {
                let Some(node) = api.random_live_node() else {
                    std::thread::sleep(crate::millis(50));
                    continue;
                };
                id += 1;
                let body = json!({
                    "id": id,
                    "name": format!("storage-{id}"),
                    "api_addr": format!("http://127.0.0.1:{}", 40000 + id),
                    "rpc_addr": format!("http://127.0.0.1:{}", 50000 + id),
                    "roles": ["storage"],
                });
                if let Ok(r) = api.call(node, Method::POST, "/api/v1/nodes", Some(&body)) {
                    if r.status == 201 {
                        acked.lock().unwrap().push(id);
                    }
                }
            }
        })
    };
    let progress = |n: usize| {
        let start = acked.lock().unwrap().len();
        wait_until(secs(20), "registrations to go on", || {
            let now = acked.lock().unwrap().len();
            if now >= start + n {
                Ok(())
            } else {
                Err(format!("{now} acknowledged"))
            }
        });
    };
    progress(5);
    let mut rng = rand::thread_rng();
    for round in 1..=8 {
        let victim = *c.all_nodes().choose(&mut rng).unwrap();
        c.log(format!("registry round {round}: kill -9 node {victim}"));
        c.while_killed(victim, || progress(3));
        progress(3);
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    c.log(format!("{} registrations acknowledged", acked.len()));
    assert!(
        acked.len() >= 40,
        "too few registrations to prove anything: {}",
        acked.len()
    );
    for n in c.all_nodes() {
        wait_until(
            secs(30),
            &format!("node {n} to list every acknowledged registration"),
            || {
                // Page by page: a page holds at most 1000, and a fast machine
                // acknowledges more than that.
                let mut ids: Vec<u64> = Vec::new();
                loop {
                    let page = c.get_json(
                        n,
                        &format!("/api/v1/nodes?role=storage&limit=1000&offset={}", ids.len()),
                    )?;
                    let items = page["items"].as_array().cloned().unwrap_or_default();
                    ids.extend(items.iter().filter_map(|m| m["id"].as_u64()));
                    if items.is_empty() || page["total"].as_u64() <= Some(ids.len() as u64) {
                        break;
                    }
                }
                let missing: Vec<u64> = acked
                    .iter()
                    .filter(|id| !ids.contains(id))
                    .copied()
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("missing {missing:?}"))
                }
            },
        );
    }
    c.assert_at_most_one_leader_per_term();
}
