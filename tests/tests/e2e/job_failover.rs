//! Jobs across failures: the backup manager killed with three backups running
//! (the new holder adopts them, each succeeds once, the data restores
//! byte-identical), and a storage node killed mid-backup (the backup fails
//! saying which node, nothing else is lost).

use std::fs;
use std::path::Path;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::tree::{describe, make_tree, noise};
use bcm_tests::{wait_until, Cluster};

use crate::secs;

/// The backup manager as `node` sees it: (holder, epoch).
fn manager(c: &Cluster, node: u64) -> Result<(u64, u64), String> {
    let view: Value = c.cluster(node)?;
    let bm = &view["backup_manager"];
    match (bm["node_id"].as_u64(), bm["epoch"].as_u64()) {
        (Some(n), Some(e)) => Ok((n, e)),
        _ => Err(format!("no backup manager yet: {view}")),
    }
}

/// A tree of about 430 MB, mostly large files that do not compress, so that a
/// backup of it runs for seconds.
fn big_tree(root: &Path, seed: u64) {
    make_tree(root, 120);
    for i in 0..10 {
        fs::write(
            root.join(format!("bulk-{i}.bin")),
            noise(40 << 20, seed * 10 + i),
        )
        .unwrap();
    }
}

#[test]
fn the_backup_manager_killed_mid_backup_its_successor_finishes_each_job_once() {
    let mut c = Cluster::builder()
        .name("job-failover")
        .voters(3)
        .voter_roles(&["manager", "backup-manager"])
        .backup_manager_grace_ms(2000)
        .start();
    let stores = [c.start_extra(&["storage"]), c.start_extra(&["storage"])];
    for s in stores {
        c.wait_ready(s, secs(30));
    }
    let (old, epoch) = wait_until(secs(20), "a backup manager", || manager(&c, 1));
    c.log(format!("backup manager: node {old} at epoch {epoch}"));

    // Three backups from three sources other than the manager, 2 replicas each.
    let sources: Vec<u64> = [1, 2, 3, stores[0]]
        .into_iter()
        .filter(|n| *n != old)
        .take(3)
        .collect();
    // Every tree and plan first, then the three backups in one burst: writing
    // a tree takes seconds on a slow disk, longer than a backup of the last.
    let mut plans = Vec::new();
    let mut trees = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let root = c.dir().join(format!("source-{i}"));
        big_tree(&root, i as u64 + 1);
        plans.push(c.create_plan(
            sources[0],
            &format!("p{i}"),
            *source,
            &[root.to_str().unwrap()],
            2,
        ));
        trees.push(root);
    }
    let ids: Vec<u64> = plans
        .iter()
        .map(|plan| {
            c.start_backup(sources[0], &json!({ "plan": plan }))
                .unwrap()
                .id
        })
        .collect();
    let via = sources[0];
    wait_until(
        secs(60),
        "the three backups to start, two still running",
        || {
            let mut states = Vec::new();
            for id in &ids {
                let b = c.get_json(via, &format!("/api/v1/backups/{id}"))?;
                states.push(b["status"].clone());
            }
            // All started, and some still running (a fast machine may end one
            // early; a backup reports its progress only every 2 s).
            let started = states.iter().all(|s| s != "pending");
            let running = states.iter().filter(|s| *s == "running").count();
            if started && running >= 2 {
                Ok(())
            } else {
                Err(format!("{states:?}"))
            }
        },
    );

    c.kill(old);
    c.log(format!("killed the backup manager, node {old}"));
    let (new, new_epoch) = wait_until(secs(20), "the role to move", || {
        let (n, e) = manager(&c, via)?;
        if n != old && e > epoch {
            Ok((n, e))
        } else {
            Err(format!("still node {n} at epoch {e}"))
        }
    });
    c.log(format!(
        "new backup manager: node {new} at epoch {new_epoch}"
    ));

    let mut taken_over = 0;
    for id in &ids {
        let b = c.wait_backup(via, *id, secs(300));
        assert_eq!(b.status.as_str(), "succeeded", "{b:?}");
        assert_eq!(b.storage_nodes.len(), 2, "{b:?}");
        if b.epoch >= new_epoch {
            assert!(b.attempt >= 2, "adopted under the new epoch: {b:?}");
            taken_over += 1;
        }
    }
    assert!(
        taken_over > 0,
        "at least one backup was adopted by node {new}"
    );

    // Exactly once: three backups in the catalog, three manifests per store.
    let listed = c.get_json(via, "/api/v1/backups").unwrap();
    assert_eq!(listed["total"], 3, "{listed}");
    let storage = c.get_json(via, "/api/v1/storage").unwrap();
    for s in storage["items"].as_array().unwrap() {
        assert_eq!(s["backups"], 3, "one manifest per backup: {storage}");
    }

    // What the adopted backups wrote restores byte-identical.
    let last = *ids.last().unwrap();
    let target = c.dir().join("restored");
    let r = c
        .start_restore(
            via,
            last,
            &json!({"target_node": via, "target_path": target}),
        )
        .unwrap();
    let r = c.wait_restore(via, r.id, secs(300));
    assert_eq!(r.status.as_str(), "succeeded", "{r:?}");
    let src = trees.last().unwrap();
    let mut want = describe(src);
    want.remove(Path::new("d3/pipe"));
    assert_eq!(describe(&target.join(src.strip_prefix("/").unwrap())), want);

    // A storage node killed mid-backup: with no other storage node to take its
    // replica, the backup fails and says which node.
    let fresh = c.dir().join("fresh");
    fs::create_dir_all(&fresh).unwrap();
    for i in 0..4 {
        fs::write(fresh.join(format!("new-{i}.bin")), noise(40 << 20, 500 + i)).unwrap();
    }
    let again = c
        .start_backup(via, &json!({"source_node": sources[1], "paths": [fresh]}))
        .unwrap();
    // An ad hoc backup has one replica: the node it was placed on dies.
    let doomed = wait_until(secs(60), "the new backup to run", || {
        let b = c.get_json(via, &format!("/api/v1/backups/{}", again.id))?;
        match b["storage_nodes"][0].as_u64() {
            Some(n) if b["status"] == "running" => Ok(n),
            _ => Err(format!("{b}")),
        }
    });
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    c.kill(doomed);
    let b = c.wait_backup(via, again.id, secs(180));
    if b.status.as_str() == "succeeded" {
        // Only when it finished before the kill: a backup whose one replica
        // died cannot succeed after it.
        assert!(
            b.finished_at_ms.is_some_and(|t| t <= killed_at),
            "succeeded after its only storage node died: {b:?}"
        );
        c.log(format!(
            "backup {} finished before node {doomed} died",
            b.id
        ));
    } else {
        assert_eq!(b.status.as_str(), "failed", "{b:?}");
        let error = b.error.clone().unwrap_or_default();
        assert!(
            error.contains(&format!("storage node {doomed}")) || error.contains("replica"),
            "the failure says why: {b:?}"
        );
    }
    // The earlier backups are untouched: one restores from the surviving store.
    let target = c.dir().join("restored-after");
    let first = ids[0];
    let r = c
        .start_restore(
            via,
            first,
            &json!({"target_node": via, "target_path": target}),
        )
        .unwrap();
    assert_eq!(
        c.wait_restore(via, r.id, secs(300)).status.as_str(),
        "succeeded"
    );
    let mut want = describe(&trees[0]);
    want.remove(Path::new("d3/pipe"));
    assert_eq!(
        describe(&target.join(trees[0].strip_prefix("/").unwrap())),
        want
    );
}

#[test]
fn a_source_node_killed_mid_backup_fails_its_backup_saying_so_and_backs_up_again_once_back() {
    let mut c = Cluster::builder().name("source-dies").voters(3).start();
    // Any node can be a source; a node needs one role, and this one keeps no
    // data (the backup-manager role stays with node 1 while it is up).
    let source = c.start_extra(&["backup-manager"]);
    c.wait_ready(source, secs(30));
    let root = c.dir().join("source-tree");
    big_tree(&root, 7);
    let plan = c.create_plan(1, "dies", source, &[root.to_str().unwrap()], 2);
    let b = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    wait_until(secs(60), "the backup to run", || {
        let v = c.get_json(1, &format!("/api/v1/backups/{}", b.id))?;
        (v["status"] == "running")
            .then_some(())
            .ok_or(format!("{v}"))
    });
    c.kill(source);
    c.log(format!("killed the source, node {source}"));
    let b = c.wait_backup(1, b.id, secs(240));
    if b.status.as_str() == "succeeded" {
        c.log("the backup ended before its source died");
    } else {
        // Its run went silent; the manager's next attempt finds the source down.
        assert_eq!(b.status.as_str(), "failed", "{b:?}");
        let error = b.error.clone().unwrap_or_default();
        assert!(
            error.contains(&format!("source node {source}")),
            "the failure names the source: {b:?}"
        );
    }
    // Back up again once the source is back: the plan works as before.
    c.restart(source);
    c.wait_ready(source, secs(30));
    let again = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    let again = c.wait_backup(1, again.id, secs(240));
    assert_eq!(again.status.as_str(), "succeeded", "{again:?}");
    assert_eq!(again.storage_nodes.len(), 2, "{again:?}");
}
