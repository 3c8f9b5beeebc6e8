//! The web UI with data moving: a running backup's page shows its progress live
//! (no reload), then its replicas; the restore form restores one sub-path into
//! a non-empty directory with "overwrite", and the restore's page follows it.

use std::fs;

use bcm_tests::serde_json::json;
use bcm_tests::tree::{describe, make_tree, noise};
use bcm_tests::{wait_until, Browser, Cluster, ADMIN_PASSWORD};

use crate::secs;

#[test]
fn ui_shows_a_running_backups_progress_live_and_restores_a_path_through_the_form() {
    let c = Cluster::builder().name("ui-jobs").voters(3).start();
    let src = c.dir().join("source");
    make_tree(&src, 120);
    // Large files that do not compress: the backup runs for seconds.
    for i in 0..10 {
        fs::write(src.join(format!("bulk-{i}.bin")), noise(40 << 20, 90 + i)).unwrap();
    }
    let plan = c.create_plan(1, "ui-tree", 1, &[src.to_str().unwrap()], 2);
    // The page is served by a node other than the source, which is paused below.
    let follower = c.followers().into_iter().find(|&n| n != 1).unwrap();
    let base = c.api_url(follower);
    let b = Browser::start();
    b.log_in(&base, "admin", ADMIN_PASSWORD);

    let backup = c.start_backup(follower, &json!({ "plan": plan })).unwrap();
    // A backup of these 400 MB can end within two seconds; the source is frozen
    // once it runs (SIGSTOP) so that the page is sure to find it running.
    wait_until(secs(60), "the backup to run", || {
        let v = c.get_json(follower, &format!("/api/v1/backups/{}", backup.id))?;
        (v["status"] == "running")
            .then_some(())
            .ok_or(format!("{v}"))
    });
    c.pause(1);
    b.goto(&format!("{base}/backups/{}", backup.id));
    b.exec("window.__bcm_no_reload = true; return true", json!([]))
        .unwrap();
    // Progress appears while it runs, on the same page.
    b.wait_for("#backup-progress", secs(60));
    let seen = b.text("#backup-progress").unwrap_or_default();
    assert!(seen.contains("files"), "{seen}");
    c.resume(1);
    wait_until(
        secs(180),
        "the page to show the backup succeeded",
        || match b.text("#backup-status") {
            Ok(s) if s == "succeeded" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(
        b.exec("return window.__bcm_no_reload === true", json!([]))
            .unwrap(),
        json!(true),
        "updated live, not reloaded"
    );
    let replicas = b.text("#backup-replicas").unwrap();
    assert!(replicas.contains("2 of 2 replica(s)"), "{replicas}");
    assert!(!b.exists("#backup-progress"), "no progress once it ended");

    // Restore d1 only, onto node 3, into a directory that holds a file.
    let target = c.dir().join("into");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("mine.txt"), b"kept").unwrap();
    let include = src.join("d1");
    b.goto(&format!("{base}/backups/{}", backup.id));
    b.fill_in_and_submit(
        |b| {
            b.click("#r-node option[value='3']");
            b.type_into("#r-path", target.to_str().unwrap());
            b.type_into("#r-include", include.to_str().unwrap());
            if b.exec(
                "return document.querySelector('#r-overwrite').checked",
                json!([]),
            )
            .unwrap()
                != json!(true)
            {
                b.click("#r-overwrite");
            }
        },
        "form button.primary[type=submit]",
        "the restore started",
        |b| {
            let flash = b.text("#flash").unwrap_or_default();
            flash
                .contains("started")
                .then_some(())
                .ok_or(format!("flash {flash:?}"))
        },
    );
    let restores = c.get_json(follower, "/api/v1/restores").unwrap();
    let r = &restores["items"][0];
    assert_eq!(r["overwrite"], true, "{restores}");
    assert_eq!(r["include"], include.to_str().unwrap(), "{restores}");
    assert_eq!(r["target_node"], 3, "{restores}");
    let id = r["id"].as_u64().unwrap();
    let done = c.wait_restore(follower, id, secs(180));
    assert_eq!(done.status.as_str(), "succeeded", "{done:?}");
    wait_until(
        secs(20),
        "the restore's page to show it succeeded",
        || match b.text(".facts .badge") {
            Ok(s) if s == "succeeded" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Only d1 came back, byte-identical, beside what was there.
    let inside = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(describe(&inside.join("d1")), describe(&include));
    assert!(!inside.join("d0").exists(), "only the included path");
    assert!(
        !inside.join("bulk-0.bin").exists(),
        "only the included path"
    );
    assert_eq!(fs::read(target.join("mine.txt")).unwrap(), b"kept");
}
