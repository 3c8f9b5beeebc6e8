//! Without a majority nothing commits, and nobody waits forever to hear it.

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use bcm_tests::serde_json::json;
use bcm_tests::Cluster;

use crate::secs;

/// How long a refused write may take to be answered (the contract says ~6 s).
const ANSWER_BUDGET: Duration = Duration::from_secs(8);

#[test]
fn five_nodes_commit_with_two_down_and_refuse_with_three_down() {
    let c = Cluster::builder().name("quorum").voters(5).start();
    let mut acked = BTreeMap::new();

    // Two followers die: three of five is still a majority.
    let leader = c.wait_for_leader();
    let followers = c.followers();
    for &f in &followers[..2] {
        c.kill(f);
    }
    for n in c.live_nodes() {
        let key = format!("two-down-via-{n}");
        let r = c.put_config(n, &key, &json!(n)).unwrap();
        assert!(
            r.is_success(),
            "with two of five down, a write via node {n}: {r}"
        );
        acked.insert(key, json!(n));
    }

    // A third node dies (a follower, so the leader is still there but has no majority).
    let third = followers[2];
    c.kill(third);
    let live = c.live_nodes();
    assert_eq!(live.len(), 2);
    assert!(live.contains(&leader));

    // Writes through either survivor are refused with 503, promptly, never accepted.
    // Two writes per survivor, all sent at once.
    let mut sent = Vec::new();
    for &n in &live {
        for i in 0..2 {
            let api = c.api();
            let key = format!("three-down-{n}-{i}");
            sent.push((
                n,
                key.clone(),
                thread::spawn(move || {
                    api.put_config_timeout(n, &key, &json!("must not commit"), secs(15))
                }),
            ));
        }
    }
    for (n, key, h) in sent {
        let reply = h
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("write of {key} via node {n} got no answer: {e}"));
        c.log(format!("{key} via node {n}: {reply}"));
        assert_eq!(
            reply.status, 503,
            "without a majority, a write via node {n} must be refused with 503: {reply}"
        );
        assert!(
            reply.elapsed < ANSWER_BUDGET,
            "the refusal took {:.1}s (budget {ANSWER_BUDGET:?}): {reply}",
            reply.elapsed.as_secs_f64()
        );
        assert!(
            reply.headers.contains_key("retry-after"),
            "a 503 carries Retry-After: {reply}"
        );
    }

    // One node comes back: three of five again, writes succeed again.
    c.restart(third);
    let key = "one-back".to_string();
    let via = c.write_eventually(&key, &json!("ok"), secs(30));
    c.log(format!("write succeeded again via node {via}"));
    acked.insert(key, json!("ok"));

    let live = c.live_nodes();
    c.wait_all_present(&live, &acked, secs(30));
}
