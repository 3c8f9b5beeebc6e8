//! Plans on their schedule: slots missed while no node held the backup-manager
//! role run once (the latest), later slots run each, and `keep_last` prunes a
//! plan's older succeeded backups.

use std::collections::BTreeSet;
use std::fs;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{wait_until, Cluster};

use crate::{millis, secs};

/// The plan's backups, oldest first: (id, status, slot_ms).
fn of_plan(c: &Cluster, plan: u64) -> Vec<(u64, String, u64)> {
    let page = c
        .get_json(1, &format!("/api/v1/backups?plan={plan}&limit=1000"))
        .unwrap();
    let mut out: Vec<(u64, String, u64)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_u64().unwrap(),
                b["status"].as_str().unwrap().to_string(),
                b["slot_ms"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn missed_slots_run_once_later_slots_each_and_keep_last_prunes() {
    // No node may hold the backup-manager role at first.
    let c = Cluster::builder()
        .name("schedule")
        .voters(3)
        .voter_roles(&["manager", "storage"])
        .start();
    let src = c.dir().join("source");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"scheduled").unwrap();
    let every_10s = "*/10 * * * * *";
    let body = json!({"name": "often", "source_node": 2, "paths": [src], "schedule": every_10s,
                      "keep_last": 2, "replicas": 1});
    let r = c.post(1, "/api/v1/plans", &body).unwrap();
    assert_eq!(r.status, 201, "{r}");
    let plan = r.json()["id"].as_u64().unwrap();

    // Three slots go by with nobody to run them.
    std::thread::sleep(secs(32));
    assert!(of_plan(&c, plan).is_empty(), "no backup manager, no backup");

    // Node 1 takes the role: it runs the latest missed slot, once.
    let r = c
        .patch(
            1,
            "/api/v1/nodes/1",
            &json!({"roles": ["manager", "storage", "backup-manager"]}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    let since = wait_until(secs(20), "node 1 to hold the role", || {
        let v: Value = c.cluster(1)?;
        match v["backup_manager"]["node_id"].as_u64() {
            Some(1) => Ok(v["backup_manager"]["since_ms"].as_u64().unwrap()),
            _ => Err(format!("{v}")),
        }
    });
    wait_until(secs(20), "the missed slot's backup", || {
        (!of_plan(&c, plan).is_empty())
            .then_some(())
            .ok_or("none yet".to_string())
    });
    std::thread::sleep(millis(1500));
    let caught_up: Vec<_> = of_plan(&c, plan)
        .into_iter()
        .filter(|(.., slot)| *slot < since)
        .collect();
    assert_eq!(caught_up.len(), 1, "missed slots run once: {caught_up:?}");
    let slot = caught_up[0].2;
    assert_eq!(slot % 10_000, 0, "a slot of the schedule: {slot}");
    assert!(
        since - slot <= 10_000,
        "the latest missed slot: {slot} for {since}"
    );

    // Later slots each run once; the plan keeps its two newest succeeded.
    let seen = wait_until(secs(60), "two more slots to run", || {
        let all = of_plan(&c, plan);
        let later = all.iter().filter(|(.., s)| *s >= since).count();
        (later >= 2)
            .then_some(all.clone())
            .ok_or(format!("{all:?}"))
    });
    let slots: BTreeSet<u64> = seen.iter().map(|(.., s)| *s).collect();
    assert_eq!(slots.len(), seen.len(), "one backup per slot: {seen:?}");
    let first = seen[0].0;
    let pruned = wait_until(secs(30), "keep_last to prune", || {
        let all = of_plan(&c, plan);
        let ok: Vec<_> = all.iter().filter(|(_, s, _)| s == "succeeded").collect();
        if ok.len() <= 2 && all.iter().all(|(id, ..)| *id != first) {
            Ok(all.clone())
        } else {
            Err(format!("{all:?}"))
        }
    });
    c.log(format!("after pruning: {pruned:?}"));
    let r = c
        .call(
            1,
            reqwest::Method::GET,
            &format!("/api/v1/backups/{first}"),
            None,
        )
        .unwrap();
    assert_eq!(r.status, 404, "the oldest was deleted: {r}");
}
