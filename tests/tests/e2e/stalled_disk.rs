//! A leader whose data disk stalls (its file system frozen while a write waits to
//! be logged) sends no heartbeats meanwhile and is replaced by a member whose disk
//! works; the others take writes while it waits, and once its disk goes on it
//! follows the new leader. Nothing acknowledged is lost, and a write sent to the
//! stalled leader is on every member if it was acknowledged, on none if not.

use std::collections::BTreeMap;
use std::thread;
use std::time::Instant;

use bcm_tests::serde_json::json;
use bcm_tests::{disk, wait_until, Cluster};

use crate::secs;

#[test]
fn a_leader_whose_disk_stalls_is_replaced_and_nothing_acknowledged_is_lost() {
    // Root only (it loop-mounts and freezes ext4 images), as the full-disk test:
    // skipped, saying so, elsewhere.
    if let Err(why) = disk::can_freeze() {
        eprintln!("skipped: {why}");
        return;
    }
    let c = Cluster::builder()
        .name("stalled-disk")
        .voters(3)
        .data_on_ext4(256, 16)
        .start();
    let mut acked = BTreeMap::new();
    for i in 0..5 {
        c.write_eventually(&format!("before-{i}"), &json!(i), secs(10));
        acked.insert(format!("before-{i}"), json!(i));
    }

    let old = c.wait_for_agreed_leader(secs(10));
    c.freeze_disk(old);
    let frozen_at = Instant::now();
    // A client of the leader writes: its log write waits on the frozen disk.
    let stuck = thread::spawn({
        let api = c.api();
        move || api.put_config_timeout(old, "sent-while-stalled", &json!("x"), secs(20))
    });

    // The others elect a leader of their own and take writes.
    let new = c.wait_for_new_leader(old);
    c.log(format!(
        "node {new} leads {} ms after node {old}'s disk froze",
        frozen_at.elapsed().as_millis()
    ));
    let others: Vec<u64> = c.all_nodes().into_iter().filter(|n| *n != old).collect();
    for i in 0..5 {
        let (k, v) = (format!("during-{i}"), json!(i));
        let n = others[i % others.len()];
        wait_until(
            secs(15),
            &format!("a write of {k} through node {n}"),
            || match c.put_config_timeout(n, &k, &v, secs(5)) {
                Ok(r) if r.is_success() => Ok(()),
                Ok(r) => Err(format!("{r}")),
                Err(e) => Err(e),
            },
        );
        acked.insert(k, v);
    }
    c.wait_all_present(&others, &acked, secs(30));

    // The disk goes on: the old leader steps down and follows.
    c.thaw_disk(old);
    wait_until(secs(15), &format!("node {old} to follow"), || {
        let (status, body) = c.leader_status(old)?;
        let current = c.leader();
        if status == 503 && current.is_some() && body["leader_id"].as_u64() == current {
            Ok(())
        } else {
            Err(format!(
                "node {old}: {status} {body}; leader now {current:?}"
            ))
        }
    });
    c.write_eventually("after-thaw", &json!("y"), secs(10));
    acked.insert("after-thaw".into(), json!("y"));
    c.wait_all_present(&c.all_nodes(), &acked, secs(30));

    // The write sent to the stalled leader: on every node if acknowledged (the
    // thawed node handed it to the new leader), on none if not.
    let outcome = stuck.join().unwrap();
    let on_nodes: Vec<(u64, bool)> = c
        .all_nodes()
        .into_iter()
        .map(|n| {
            (
                n,
                c.config_value(n, "sent-while-stalled").unwrap().is_some(),
            )
        })
        .collect();
    c.log(format!(
        "the write sent while the disk stalled: {outcome:?}; present on {on_nodes:?}"
    ));
    let acknowledged = matches!(&outcome, Ok(r) if r.is_success());
    assert!(
        on_nodes.iter().all(|(_, present)| *present == acknowledged),
        "the write sent to the stalled leader {old} was {} but is present on {on_nodes:?}",
        if acknowledged {
            "acknowledged"
        } else {
            "not acknowledged"
        }
    );
}
