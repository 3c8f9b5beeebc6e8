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
        c.kill(victim);

        // The two survivors are a majority: writes go on.
        writer.wait_for_progress(5, secs(20));

        // The victim restarts cleanly from what it had on disk and catches up.
        c.restart(victim);
        c.wait_ready(victim, secs(30));
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
