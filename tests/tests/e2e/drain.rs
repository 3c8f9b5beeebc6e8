//! Planned moves: `bcm nodes drain N` moves leadership and the backup-manager role
//! off a node with no failed request for a client that retries within its
//! deadline, keeps them off while it is in maintenance, and `undrain` makes it
//! eligible again (it can lead again).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{wait_until, Api, Bcm, CliOutput, Cluster, ADMIN_PASSWORD};

use crate::secs;

/// What the retrying writer saw: acknowledged writes, and writes that failed
/// although retried for their whole deadline.
#[derive(Default)]
struct Seen {
    acked: BTreeMap<String, Value>,
    failed: Vec<String>,
}

/// A client as an operator's would be: each write retried on 503 or a lost
/// connection until its deadline, through random nodes (the drained one too).
fn start_writer(api: Api, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) -> thread::JoinHandle<()> {
    const DEADLINE: Duration = Duration::from_secs(10);
    thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let key = format!("drain-{n}");
            let value = json!(n);
            let until = Instant::now() + DEADLINE;
            let outcome = loop {
                let Some(node) = api.random_live_node() else {
                    break Err("no live node".to_string());
                };
                match api.put_config_timeout(node, &key, &value, secs(6)) {
                    Ok(r) if r.is_success() => break Ok(()),
                    Ok(r) if r.status == 503 && Instant::now() < until => {}
                    Err(_) if Instant::now() < until => {}
                    Ok(r) => break Err(format!("{key} via node {node}: {r}")),
                    Err(e) => break Err(format!("{key} via node {node}: {e}")),
                }
                thread::sleep(Duration::from_millis(100));
            };
            let mut s = seen.lock().unwrap();
            match outcome {
                Ok(()) => {
                    s.acked.insert(key, value);
                }
                Err(e) => s.failed.push(e),
            }
            drop(s);
            thread::sleep(Duration::from_millis(20));
        }
    })
}

fn bcm(c: &Cluster, via: u64, args: &[&str]) -> CliOutput {
    let home = c.dir().join("operator");
    std::fs::create_dir_all(&home).unwrap();
    let server = c.api_url(via);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--server", &server]);
    let out = Bcm::new(&home, &all)
        .env("BCM_PASSWORD", ADMIN_PASSWORD)
        .run(secs(90));
    eprintln!("{out}");
    out
}

fn backup_manager(c: &Cluster, via: u64) -> Option<(u64, u64)> {
    let v = c.get_json(via, "/api/v1/cluster").ok()?;
    let b = &v["backup_manager"];
    Some((b["node_id"].as_u64()?, b["epoch"].as_u64()?))
}

fn maintenance(c: &Cluster, via: u64, id: u64) -> bool {
    let v = c.get_json(via, &format!("/api/v1/nodes/{id}")).unwrap();
    v["maintenance"]
        .as_bool()
        .unwrap_or_else(|| panic!("no maintenance in {v}"))
}

#[test]
fn drain_moves_leadership_and_the_backup_manager_role_with_no_failed_request() {
    let c = Cluster::builder().name("drain").voters(3).start();
    let holder = wait_until(secs(30), "a backup manager", || {
        backup_manager(&c, 1).ok_or_else(|| "none yet".to_string())
    });
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let writer = start_writer((*c).clone(), stop.clone(), seen.clone());
    thread::sleep(Duration::from_secs(1));

    // Drain the leader.
    let drained = c.wait_for_leader();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != drained).collect();
    let out = bcm(&c, others[0], &["nodes", "drain", &drained.to_string()]);
    assert!(out.success() && out.stdout.contains("is drained"), "{out}");
    let leader = c.wait_for_agreed_leader(secs(10));
    assert_ne!(leader, drained, "the drained node still leads");
    assert!(maintenance(&c, leader, drained));
    let (bm, epoch) = backup_manager(&c, leader).unwrap();
    assert_ne!(
        bm, drained,
        "the drained node still holds the backup-manager role"
    );
    if holder.0 == drained {
        assert!(epoch > holder.1, "the role moved without a higher epoch");
    }
    // It stays off while in maintenance.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(c.wait_for_agreed_leader(secs(10)), leader);
    assert_ne!(backup_manager(&c, leader).unwrap().0, drained);

    // The backup manager's node drained too: the role moves, with a higher epoch.
    let (bm, epoch) = backup_manager(&c, leader).unwrap();
    let r = c
        .patch(
            leader,
            &format!("/api/v1/nodes/{bm}"),
            &json!({"maintenance": true}),
        )
        .unwrap();
    assert!(r.is_success(), "{r}");
    let moved = wait_until(
        secs(15),
        "the backup-manager role to move",
        || match backup_manager(&c, leader) {
            Some((n, e)) if n != bm => Ok((n, e)),
            other => Err(format!("still {other:?}")),
        },
    );
    assert!(
        moved.1 > epoch,
        "moved from {bm} (epoch {epoch}) to {moved:?}"
    );
    assert_ne!(moved.0, drained);

    // Out of maintenance, and back: with the two others drained, it leads again.
    let out = bcm(&c, leader, &["nodes", "undrain", &drained.to_string()]);
    assert!(out.success(), "{out}");
    assert!(!maintenance(&c, leader, drained));
    for n in &others {
        let r = c
            .patch(
                leader,
                &format!("/api/v1/nodes/{n}"),
                &json!({"maintenance": true}),
            )
            .unwrap();
        assert!(r.is_success(), "{r}");
    }
    wait_until(secs(20), "the undrained node to lead again", || {
        match c.leader() {
            Some(l) if l == drained => Ok(()),
            other => Err(format!("leader {other:?}")),
        }
    });
    for n in &others {
        let out = bcm(&c, drained, &["nodes", "undrain", &n.to_string()]);
        assert!(out.success(), "{out}");
    }

    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        seen.failed.is_empty(),
        "{} writes failed within their deadline: {:?}",
        seen.failed.len(),
        seen.failed
    );
    assert!(seen.acked.len() > 20, "only {} writes", seen.acked.len());
    c.wait_all_present(&[1, 2, 3], &seen.acked, secs(30));
}
