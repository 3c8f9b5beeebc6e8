//! A leader frozen with SIGSTOP is replaced and, when it wakes up, steps down without
//! acknowledging, on the strength of its old leadership, what it was sent while frozen.

use std::collections::BTreeMap;
use std::thread;

use bcm_tests::serde_json::json;
use bcm_tests::{wait_until, Cluster};

use crate::{millis, secs};

#[test]
fn a_paused_leader_is_replaced_and_acknowledges_nothing_it_was_sent() {
    let c = Cluster::builder().name("pause").voters(3).start();
    let mut acked = BTreeMap::new();
    for i in 0..5 {
        c.write_eventually(&format!("before-{i}"), &json!(i), secs(10));
        acked.insert(format!("before-{i}"), json!(i));
    }

    let old = c.wait_for_agreed_leader(secs(10));
    c.pause(old);
    let new = c.wait_for_new_leader(old);

    // Clients that still talk to the old leader send it writes while it is frozen.
    let sent: Vec<_> = (0..5)
        .map(|i| {
            let api = c.api();
            let key = format!("sent-to-paused-{i}");
            let handle = thread::spawn({
                let key = key.clone();
                move || api.put_config_timeout(old, &key, &json!("from-the-past"), secs(15))
            });
            (key, handle)
        })
        .collect();
    // The kernel accepts connections for a stopped process, so the requests are sent at
    // once; leave them a moment to get there before the process wakes up.
    thread::sleep(millis(500));

    // Meanwhile the new leader commits writes of its own.
    for i in 0..5 {
        c.write_eventually(&format!("during-{i}"), &json!(i), secs(10));
        acked.insert(format!("during-{i}"), json!(i));
    }

    c.resume(old);

    // The old leader steps down and follows the new one.
    wait_until(secs(15), &format!("node {old} to step down"), || {
        let (status, body) = c.leader_status(old)?;
        let current = c.leader();
        if status == 503
            && body["leader_id"].as_u64().is_some()
            && body["leader_id"].as_u64() == current
            && current != Some(old)
        {
            Ok(())
        } else {
            Err(format!(
                "node {old}: {status} {body}; leader now {current:?}"
            ))
        }
    });
    c.log(format!(
        "node {old} stepped down; leader is {:?} (elected {new})",
        c.leader()
    ));

    // Every node applies a later write, so what is not there by then never will be.
    c.write_eventually("after-resume", &json!("x"), secs(10));
    acked.insert("after-resume".into(), json!("x"));
    c.wait_all_present(&c.all_nodes(), &acked, secs(30));

    // What became of the writes sent to the frozen leader:
    // - refused or unanswered (the expected outcome): the write is on no node, the old
    //   leader's uncommitted entry was thrown away;
    // - acknowledged: acceptable only if the resumed node handed it to the new leader,
    //   which committed it as a new write: then it is on every node. An acknowledged
    //   write missing anywhere means the old leader acknowledged it on its own authority.
    let mut refused = 0;
    for (key, handle) in sent {
        let outcome = handle.join().unwrap();
        let on_nodes: Vec<(u64, bool)> = c
            .all_nodes()
            .into_iter()
            .map(|n| (n, c.config_value(n, &key).unwrap().is_some()))
            .collect();
        match outcome {
            Ok(r) if r.is_success() => {
                c.log(format!(
                    "{key}: acknowledged after the resume ({r}); present on {on_nodes:?}"
                ));
                assert!(
                    on_nodes.iter().all(|(_, present)| *present),
                    "{key} sent to the paused leader {old} was acknowledged ({r}) but is \
                     missing on some node: {on_nodes:?}"
                );
            }
            other => {
                refused += 1;
                let what = match other {
                    Ok(r) => r.to_string(),
                    Err(e) => format!("no answer: {e}"),
                };
                c.log(format!("{key}: not acknowledged ({what})"));
                assert!(
                    on_nodes.iter().all(|(_, present)| !*present),
                    "{key} sent to the paused leader {old} was not acknowledged but is \
                     present on some node: {on_nodes:?}"
                );
            }
        }
    }
    c.log(format!(
        "{refused} of 5 writes sent to the paused leader were refused, the others were \
         forwarded to the new leader"
    ));
    c.assert_at_most_one_leader_per_term();
}
