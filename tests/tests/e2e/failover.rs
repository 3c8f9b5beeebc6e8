//! The leader dies; the cluster goes on and loses nothing.

use std::time::{Duration, Instant};

use bcm_tests::serde_json::json;
use bcm_tests::{wait_until, Cluster, Writer};

use crate::secs;

/// The longest a write may take to succeed after the leader is `kill -9`ed.
const FAILOVER_BUDGET: Duration = Duration::from_secs(3);

#[test]
fn killing_the_leader_three_times_loses_no_acknowledged_write() {
    let c = Cluster::builder().name("failover").voters(3).start();
    let writer = Writer::start(&c, "k");
    writer.wait_for_progress(20, secs(20));

    let mut acked_probes = std::collections::BTreeMap::new();
    let mut failover_times = Vec::new();
    for round in 1..=3 {
        let old = c.wait_for_leader();
        c.kill(old);
        let killed_at = Instant::now();

        // Write through the survivors, alternating, until one write is acknowledged.
        let survivors = c.live_nodes();
        let key = format!("failover-{round}");
        let value = json!(format!("after-killing-{old}"));
        let mut attempt = 0usize;
        let (via, took) = wait_until(
            secs(30),
            &format!("a write after killing node {old}"),
            || {
                let n = survivors[attempt % survivors.len()];
                attempt += 1;
                match c.put_config(n, &key, &value) {
                    Ok(r) if r.is_success() => Ok((n, killed_at.elapsed())),
                    Ok(r) => Err(format!("node {n}: {r}")),
                    Err(e) => Err(format!("node {n}: {e}")),
                }
            },
        );
        c.log(format!(
            "round {round}: write through node {via} succeeded {:.2}s after killing leader {old}",
            took.as_secs_f64()
        ));
        failover_times.push((round, old, took));
        acked_probes.insert(key, value);

        let new = c.wait_for_new_leader(old);
        assert_ne!(new, old);

        // Bring the old leader back; the writer keeps going throughout.
        c.restart(old);
        c.wait_ready(old, secs(30));
        writer.wait_for_progress(20, secs(20));
    }

    let mut log = writer.stop();
    c.log(format!(
        "writer: {} acknowledged, {} failed",
        log.acked.len(),
        log.failed
    ));
    // Every acknowledged write is on every node, with the right value.
    log.acked.extend(acked_probes);
    c.wait_all_present(&c.all_nodes(), &log.acked, secs(30));

    // No term ever had two leaders.
    c.assert_at_most_one_leader_per_term();

    for (round, old, took) in &failover_times {
        assert!(
            *took < FAILOVER_BUDGET,
            "round {round}: the first write after killing leader {old} succeeded after \
             {:.2}s (budget {FAILOVER_BUDGET:?}); all rounds: {failover_times:?}",
            took.as_secs_f64()
        );
    }
}
