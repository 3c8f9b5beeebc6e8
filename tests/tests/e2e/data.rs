//! Backups that really happen: a generated tree backed up from one node to two
//! storage nodes and restored onto another, byte-identical with modes, mtimes
//! and symlinks; deduplicated when unchanged; refused restores change nothing.

use std::fs;
use std::path::Path;

use bcm_tests::serde_json::json;
use bcm_tests::tree::{describe, make_tree};
use bcm_tests::{metric, wait_until, Cluster};

use crate::secs;

/// Where a restore into `target` puts what was backed up from `source`.
fn restored(target: &Path, source: &Path) -> std::path::PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}

#[test]
fn a_tree_backed_up_with_two_replicas_restores_byte_identical_on_another_node() {
    let c = Cluster::builder().name("data-roundtrip").voters(3).start();
    let src = c.dir().join("source");
    let made = make_tree(&src, 1200);
    c.log(format!("tree: {} files, {} bytes", made.files, made.bytes));
    let path = src.to_str().unwrap();
    let plan = c.create_plan(1, "tree", 1, &[path], 2);

    let b = c.start_backup(2, &json!({ "plan": plan })).unwrap();
    let b = c.wait_backup(2, b.id, secs(120));
    assert_eq!(b.status.as_str(), "succeeded", "{b:?}");
    assert_eq!(b.files, Some(made.files));
    assert_eq!(b.size_bytes, Some(made.bytes));
    assert_eq!(b.storage_nodes.len(), 2, "two replicas: {b:?}");
    assert_ne!(b.storage_nodes[0], b.storage_nodes[1]);
    let stored = b.stored_bytes.unwrap();
    assert!(
        stored > 0 && stored < made.bytes,
        "dedup and compression: {b:?}"
    );
    c.log(format!(
        "backup {}: {stored} bytes stored on {:?}",
        b.id, b.storage_nodes
    ));

    // Restored on node 3: the same tree, byte for byte, modes, mtimes, links.
    let target = c.dir().join("restored");
    let r = c
        .start_restore(1, b.id, &json!({"target_node": 3, "target_path": target}))
        .unwrap();
    let r = c.wait_restore(1, r.id, secs(120));
    assert_eq!(r.status.as_str(), "succeeded", "{r:?}");
    assert_eq!(r.files, Some(made.files));
    let mut want = describe(&src);
    want.remove(Path::new("d3/pipe"));
    assert_eq!(describe(&restored(&target, &src)), want);

    // Unchanged, backed up again: almost nothing new is stored.
    let again = c.start_backup(3, &json!({ "plan": plan })).unwrap();
    let again = c.wait_backup(3, again.id, secs(120));
    assert_eq!(again.status.as_str(), "succeeded", "{again:?}");
    let new = again.stored_bytes.unwrap();
    assert!(new * 100 < made.bytes, "{new} new bytes of {}", made.bytes);

    // The source's and the target's metrics say what moved.
    let sample = |node: u64, name: &str| {
        let text = c.get(node, "/metrics").unwrap().body;
        metric(&text, name).unwrap_or_else(|| panic!("no {name} on node {node}:\n{text}")) as u64
    };
    // The second backup read nothing: every file was unchanged since the first.
    assert_eq!(sample(1, "bcm_backup_read_bytes_total"), made.bytes);
    assert_eq!(sample(1, "bcm_backup_unchanged_bytes_total"), made.bytes);
    assert_eq!(sample(1, "bcm_backup_stored_bytes_total"), stored + new);
    let dedup = sample(1, "bcm_backup_deduplicated_bytes_total");
    assert!(
        dedup > 0 && dedup < made.bytes,
        "the tree's duplicates were not sent twice: {dedup}"
    );
    assert_eq!(sample(1, "bcm_backup_runs_total{outcome=\"succeeded\"}"), 2);
    assert_eq!(sample(3, "bcm_restore_written_bytes_total"), made.bytes);
    assert_eq!(sample(2, "bcm_catalog_backups{status=\"succeeded\"}"), 2);

    // Over a non-empty target without overwrite: the restore fails saying why,
    // and what was there is untouched.
    let busy = c.dir().join("busy");
    fs::create_dir_all(&busy).unwrap();
    fs::write(busy.join("keep.txt"), b"mine").unwrap();
    let before = describe(&busy);
    let r = c
        .start_restore(1, b.id, &json!({"target_node": 2, "target_path": busy}))
        .unwrap();
    let r = c.wait_restore(1, r.id, secs(60));
    assert_eq!(r.status.as_str(), "failed");
    assert!(
        r.error.as_deref().unwrap_or("").contains("not empty"),
        "{r:?}"
    );
    assert_eq!(describe(&busy), before);
    // With overwrite it goes in beside what was there.
    let r = c
        .start_restore(
            1,
            b.id,
            &json!({"target_node": 2, "target_path": busy, "overwrite": true}),
        )
        .unwrap();
    assert_eq!(
        c.wait_restore(1, r.id, secs(120)).status.as_str(),
        "succeeded"
    );
    assert_eq!(fs::read(busy.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(describe(&restored(&busy, &src)), want);

    // A file rewritten with its old size and mtime is read again (its ctime
    // moved): the next backup restores its new content.
    let edited = src.join("d0/e0/f2.dat");
    let old = fs::read(&edited).unwrap();
    let mtime = fs::metadata(&edited).unwrap().modified().unwrap();
    let new_body: Vec<u8> = old.iter().map(|b| b ^ 0x5a).collect();
    fs::write(&edited, &new_body).unwrap();
    fs::File::options()
        .write(true)
        .open(&edited)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let third = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    let third = c.wait_backup(1, third.id, secs(120));
    assert_eq!(third.status.as_str(), "succeeded", "{third:?}");
    assert_eq!(
        sample(1, "bcm_backup_read_bytes_total"),
        made.bytes + old.len() as u64,
        "only the rewritten file was read"
    );
    let fresh = c.dir().join("after-edit");
    let r = c
        .start_restore(
            1,
            third.id,
            &json!({"target_node": 2, "target_path": fresh}),
        )
        .unwrap();
    assert_eq!(
        c.wait_restore(1, r.id, secs(120)).status.as_str(),
        "succeeded"
    );
    let mut want = describe(&src);
    want.remove(Path::new("d3/pipe"));
    assert_eq!(describe(&restored(&fresh, &src)), want);
    assert_eq!(
        fs::read(restored(&fresh, &src).join("d0/e0/f2.dat")).unwrap(),
        new_body
    );
}

#[test]
fn bad_backup_and_restore_requests_are_refused_and_change_nothing() {
    let c = Cluster::builder().name("data-bad-input").voters(3).start();
    let src = c.dir().join("here");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    let here = src.to_str().unwrap();
    let missing = c.dir().join("not-there");
    let cases = [
        json!({"source_node": 1, "paths": ["relative/path"]}),
        json!({"source_node": 1, "paths": [format!("{here}/../etc")]}),
        json!({"source_node": 1, "paths": [missing]}),
        json!({"source_node": 99, "paths": [here]}),
    ];
    for body in &cases {
        let reply = c.post(1, "/api/v1/backups", body).unwrap();
        assert_eq!(reply.status, 422, "{body}: {reply}");
        assert_eq!(
            reply.problem().unwrap().field.as_deref(),
            Some(if body["source_node"] == 99 {
                "source_node"
            } else {
                "paths"
            }),
            "{body}: {reply}"
        );
    }
    let listed = c.get_json(1, "/api/v1/backups").unwrap();
    assert_eq!(listed["total"], 0, "nothing was recorded: {listed}");

    // A backup that has not succeeded cannot be restored; bad targets are refused.
    let b = c
        .start_backup(1, &json!({"source_node": 1, "paths": [here]}))
        .unwrap();
    let early = c
        .post(
            1,
            &format!("/api/v1/backups/{}/restore", b.id),
            &json!({"target_node": 2, "target_path": "/tmp/x"}),
        )
        .unwrap();
    assert!(early.status == 409 || early.status == 202, "{early}");
    let b = c.wait_backup(1, b.id, secs(60));
    assert_eq!(b.status.as_str(), "succeeded", "{b:?}");
    let restores_before = c.get_json(1, "/api/v1/restores").unwrap()["total"].clone();
    for (body, field) in [
        (
            json!({"target_node": 2, "target_path": "relative"}),
            "target_path",
        ),
        (
            json!({"target_node": 2, "target_path": "/tmp/../etc"}),
            "target_path",
        ),
        (
            json!({"target_node": 42, "target_path": "/tmp/r"}),
            "target_node",
        ),
        (
            json!({"target_node": 2, "target_path": "/tmp/r", "include": "x/../../etc"}),
            "include",
        ),
    ] {
        let reply = c
            .post(1, &format!("/api/v1/backups/{}/restore", b.id), &body)
            .unwrap();
        assert_eq!(reply.status, 422, "{body}: {reply}");
        assert_eq!(
            reply.problem().unwrap().field.as_deref(),
            Some(field),
            "{reply}"
        );
    }
    assert_eq!(
        c.get_json(1, "/api/v1/restores").unwrap()["total"],
        restores_before
    );
}

/// `(chunks, backups held)` of every storage node, by node id.
fn held(c: &Cluster, via: u64) -> Result<Vec<(u64, u64, u64)>, String> {
    let page = c.get_json(via, "/api/v1/storage")?;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| match (s["chunks"].as_u64(), s["backups"].as_u64()) {
            (Some(ch), Some(b)) => Ok((s["node_id"].as_u64().unwrap(), ch, b)),
            _ => Err(format!("{s}")),
        })
        .collect()
}

#[test]
fn deleting_a_backup_frees_the_chunks_only_it_used_and_the_others_still_restore() {
    let c = Cluster::builder().name("data-delete").voters(3).start();
    // Two trees sharing one large file; the rest differs.
    let (one, two) = (c.dir().join("one"), c.dir().join("two"));
    make_tree(&one, 120);
    fs::create_dir_all(&two).unwrap();
    fs::copy(one.join("big.bin"), two.join("big.bin")).unwrap();
    fs::write(two.join("own.bin"), bcm_tests::tree::noise(3 << 20, 77)).unwrap();
    let mut ids = Vec::new();
    for dir in [&one, &two] {
        let b = c
            .start_backup(1, &json!({"source_node": 1, "paths": [dir]}))
            .unwrap();
        let b = c.wait_backup(1, b.id, secs(120));
        assert_eq!(b.status.as_str(), "succeeded", "{b:?}");
        ids.push(b);
    }
    let before = held(&c, 2).unwrap();
    let total = |h: &[(u64, u64, u64)]| h.iter().map(|(_, ch, _)| ch).sum::<u64>();
    assert_eq!(before.iter().map(|(.., b)| b).sum::<u64>(), 2, "{before:?}");

    let r = c
        .delete(2, &format!("/api/v1/backups/{}", ids[0].id))
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    // Within seconds its manifest and the chunks only it used are gone.
    let after = wait_until(secs(30), "the deleted backup's data to go", || {
        let h = held(&c, 2)?;
        let manifests: u64 = h.iter().map(|(.., b)| b).sum();
        (manifests == 1 && total(&h) < total(&before))
            .then_some(h.clone())
            .ok_or(format!("{h:?}"))
    });
    assert!(
        total(&after) > 0,
        "the other backup keeps its chunks: {after:?}"
    );

    // The other backup, sharing a file with the deleted one, restores whole.
    let target = c.dir().join("restored");
    let r = c
        .start_restore(
            2,
            ids[1].id,
            &json!({"target_node": 3, "target_path": target}),
        )
        .unwrap();
    let r = c.wait_restore(2, r.id, secs(120));
    assert_eq!(r.status.as_str(), "succeeded", "{r:?}");
    assert_eq!(describe(&restored(&target, &two)), describe(&two));
    let v = c
        .post(
            2,
            &format!("/api/v1/backups/{}/verify", ids[1].id),
            &json!({}),
        )
        .unwrap();
    assert_eq!(v.json()["ok"], true, "{v}");
}

#[test]
fn a_running_backup_cancelled_stops_and_leaves_nothing_restorable() {
    let c = Cluster::builder().name("data-cancel").voters(3).start();
    let src = c.dir().join("big");
    fs::create_dir_all(&src).unwrap();
    for i in 0..6 {
        fs::write(
            src.join(format!("{i}.bin")),
            bcm_tests::tree::noise(40 << 20, 300 + i),
        )
        .unwrap();
    }
    let b = c
        .start_backup(1, &json!({"source_node": 2, "paths": [src]}))
        .unwrap();
    wait_until(secs(60), "the backup to run", || {
        let v = c.get_json(1, &format!("/api/v1/backups/{}", b.id))?;
        (v["status"] == "running")
            .then_some(())
            .ok_or(format!("{v}"))
    });
    let r = c
        .post(1, &format!("/api/v1/backups/{}/cancel", b.id), &json!({}))
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["status"], "cancelled", "{r}");
    // Its run notices at its next report and stops, or (a run that was about to
    // end) finds its end refused; it never ends as succeeded.
    wait_until(secs(20), "node 2 to stop the backup", || {
        let log = fs::read_to_string(c.log_path(2)).unwrap_or_default();
        let stopped = log.contains("backup stopped")
            || log.contains("backup's end not recorded: the job moved on");
        stopped.then_some(()).ok_or_else(|| c.log_tail(2, 5))
    });
    std::thread::sleep(secs(3));
    let v = c.get_json(3, &format!("/api/v1/backups/{}", b.id)).unwrap();
    assert_eq!(v["status"], "cancelled", "{v}");
    // A cancelled backup cannot be cancelled again, nor restored.
    let again = c
        .post(1, &format!("/api/v1/backups/{}/cancel", b.id), &json!({}))
        .unwrap();
    assert_eq!(again.status, 409, "{again}");
    let restore = c
        .post(
            1,
            &format!("/api/v1/backups/{}/restore", b.id),
            &json!({"target_node": 3, "target_path": c.dir().join("r")}),
        )
        .unwrap();
    assert_eq!(restore.status, 409, "{restore}");
}
