//! Quorum lost for good: `bcm recover` re-forms the cluster from one survivor's data,
//! refuses while a majority still answers, and the wiped members join it again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bcm_tests::serde_json::json;
use bcm_tests::tree::describe;
use bcm_tests::{member, wait_until, Bcm, CliOutput, Cluster};

use crate::secs;

/// `bcm recover --from-node <from> --config <node 1's config> <extra>`, with
/// `stdin` on its standard input.
fn recover(c: &Cluster, from: u64, extra: &[&str], stdin: &str) -> CliOutput {
    let config = c.config_path(1);
    let from = from.to_string();
    let mut args = vec![
        "recover",
        "--from-node",
        &from,
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend(extra);
    let home = c.dir().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Bcm::new(&home, &args).stdin(stdin).run(secs(30));
    eprintln!("{out}");
    out
}

/// bcm's own files in a Raft directory (the log's segments and the snapshot file),
/// with their contents. sled's files beside them (`db`, `conf`, `snap.*`) are left
/// out: sled rewrites its own bookkeeping at every open, a node's start as much
/// as `bcm recover`'s read.
fn raft_files(raft_dir: &Path) -> BTreeMap<PathBuf, String> {
    let files: BTreeMap<PathBuf, String> = describe(raft_dir)
        .into_iter()
        .filter(|(path, _)| path.starts_with("wal") || path == Path::new("snapshot"))
        .collect();
    assert!(
        files.keys().any(|p| p.starts_with("wal/")),
        "no log segment in {}: {files:?}",
        raft_dir.display()
    );
    files
}

/// The directories beside `raft` that `bcm recover` kept.
fn kept_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let mut kept: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("raft.before-recover-"))
        })
        .collect();
    kept.sort();
    kept
}

#[test]
fn recover_reforms_the_cluster_from_one_survivor_and_the_wiped_members_join_it() {
    // Snapshots every 25 writes: the survivor's state is a snapshot and (most
    // likely) a log tail; the tail's replay is pinned by raft-store's history test.
    let c = Cluster::builder()
        .name("recover")
        .voters(3)
        .snapshot_every(25)
        .keep_logs_behind_snapshot(5)
        .start();
    let mut acked = BTreeMap::new();
    for i in 0..30 {
        let (key, value) = (format!("before/{i}"), json!({"i": i}));
        c.write_eventually(&key, &value, secs(10));
        acked.insert(key, value);
    }
    // Node 1 is the survivor: it has applied every acknowledged write.
    c.wait_all_present(&[1], &acked, secs(30));

    // Run on a node that is running: its data directory is in use.
    let out = recover(&c, 1, &["--yes"], "");
    assert!(
        !out.success() && out.stderr.contains("Stop node 1 first"),
        "{out}"
    );
    // With another node's id: it says where to run it.
    let out = recover(&c, 2, &["--yes"], "");
    assert!(
        !out.success()
            && out
                .stderr
                .contains("run bcm recover on node 2's machine with node 2's config"),
        "{out}"
    );

    // The highest term node 1 sees before it stops.
    let leader_term = |id: u64| match c.leader_status(id) {
        Ok((200, v)) => v["term"].as_u64(),
        _ => None,
    };
    let survivor_term = leader_term(c.wait_for_leader()).expect("the leader's term");

    // Node 1 stopped, nodes 2 and 3 still running: they are a majority.
    c.stop(1);
    let raft_dir = c.data_dir(1).join("raft");
    let before = raft_files(&raft_dir);
    let out = recover(&c, 1, &["--yes"], "");
    assert!(
        !out.success()
            && out.stderr.contains(
                "a majority of the voters answers (nodes 2, 3): this cluster can still elect a leader"
            ),
        "{out}"
    );
    assert_eq!(
        raft_files(&raft_dir),
        before,
        "a refused recover changed the data"
    );
    assert!(kept_dirs(&c.data_dir(1)).is_empty());

    // The old cluster goes on electing without node 1 (a leader killed and
    // started again takes no leadership back: its term is over) until its
    // leader, the `stale` node, leads a term above any node 1 saw + 2: above
    // the term node 1 would lead the recovered cluster in if `bcm recover` gave
    // it node 1's term + 1. (In a CI run node 3 led such a term when the
    // majority was lost; started again with its old data it took that
    // leadership back at once, and the recovered cluster's members took its
    // entries over their own committed ones and crashed.)
    let mut term = 0;
    for round in 0.. {
        let (leader, now) = wait_until(secs(30), "a leader of nodes 2 and 3", || {
            c.check_processes();
            let l = c.leader().ok_or_else(|| c.leader_views())?;
            match leader_term(l) {
                Some(t) if t > term => Ok((l, t)),
                _ => Err(c.leader_views()),
            }
        });
        term = now;
        if term >= survivor_term + 3 {
            c.log(format!(
                "node {leader} leads term {term}; node 1 saw {survivor_term}"
            ));
            break;
        }
        assert!(
            round < 12,
            "no term above {survivor_term} + 2 after {round} rounds"
        );
        c.kill(leader);
        c.restart(leader);
    }
    let stale = c.leader().expect("the old cluster's leader");
    let wiped = 5 - stale;

    // The majority is lost for good (the stale node dies its leader).
    c.kill(2);
    c.kill(3);
    let before = raft_files(&raft_dir);
    // Anything but "recover" at the prompt aborts, having said what may be lost.
    let out = recover(&c, 1, &[], "no\n");
    assert!(!out.success() && out.stderr.contains("aborted"), "{out}");
    for said in [
        "last log entry:",
        "snapshot:              index",
        "committed (as saved):",
        "node 2 (",
        "no answer",
        "writes the lost majority committed after index",
        "must be wiped",
        "type \"recover\" to continue",
    ] {
        assert!(out.stdout.contains(said), "{said:?} not said: {out}");
    }
    assert_eq!(
        raft_files(&raft_dir),
        before,
        "an aborted recover changed the data"
    );
    assert!(kept_dirs(&c.data_dir(1)).is_empty());

    let out = recover(&c, 1, &[], "recover\n");
    assert!(out.success(), "{out}");
    assert!(
        out.stdout
            .contains("recovered: node 1 is now the only voter"),
        "{out}"
    );
    let kept = kept_dirs(&c.data_dir(1));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        raft_files(&kept[0]),
        before,
        "the old Raft data is kept as it was"
    );

    // Started, node 1 leads alone within a few seconds and serves every write.
    let started = Instant::now();
    c.restart(1);
    wait_until(secs(10), "node 1 to lead the recovered cluster", || {
        c.check_processes();
        match c.leader() {
            Some(1) => Ok(()),
            other => Err(format!("leader {other:?}; {}", c.leader_views())),
        }
    });
    c.wait_ready(1, secs(10));
    c.log(format!("node 1 leads after {:?}", started.elapsed()));
    c.wait_all_present(&[1], &acked, secs(10));
    let cluster = c.cluster(1).unwrap();
    for (id, voter) in [(1, true), (2, false), (3, false)] {
        let m = member(&cluster, id);
        assert_eq!(
            m.map(|m| m["voter"] == true),
            Some(voter),
            "node {id} in {cluster}"
        );
    }
    for i in 0..10 {
        let (key, value) = (format!("after/{i}"), json!({"i": i}));
        let r = c.put_config(1, &key, &value).unwrap();
        assert!(r.is_success(), "a write after the recovery: {r}");
        acked.insert(key, value);
    }

    // The other, wiped and started, joins the recovered cluster as a voter and
    // serves the same data; the stale node, still gone, is shown down.
    c.wipe(wiped);
    c.restart(wiped);
    c.wait_ready(wiped, secs(60));
    wait_until(
        secs(30),
        "the wiped node to be a voter of the recovered cluster",
        || {
            let view = c.cluster(1)?;
            match (member(&view, wiped), member(&view, stale)) {
                (Some(two), Some(three))
                    if two["voter"] == true
                        && two["status"] == "up"
                        && three["status"] == "down" =>
                {
                    Ok(())
                }
                _ => Err(view.to_string()),
            }
        },
    );
    c.wait_all_present(&[wiped], &acked, secs(30));
    let r = c.put_config(wiped, "after/joined", &json!(true)).unwrap();
    assert!(r.is_success(), "a write through node {wiped}: {r}");

    // The stale node started with its old Raft data takes no part in the
    // recovered cluster, whose leader has no such member: it says why and what
    // to do, takes no write, and node 1 leads on in the same term, with the
    // same members.
    let term = || c.leader_status(1).map(|(_, v)| v["term"].as_u64());
    let term_before = term().unwrap();
    assert!(term_before.is_some(), "node 1 reports its term");
    let stays_out = |how: &str| {
        wait_until(secs(30), how, || {
            c.check_processes();
            let r = c.get(stale, "/readyz")?;
            if r.status == 503
                && r.body.contains(&format!("has no member {stale}"))
                && r.body.contains("bcm recover")
            {
                Ok(())
            } else {
                Err(r.to_string())
            }
        });
        let r = c.put_config(stale, "through/stale", &json!(true)).unwrap();
        assert_eq!(r.status, 503, "a write through the stale node: {r}");
        assert_eq!(
            leader_term(stale),
            None,
            "node {stale} took its old leadership back"
        );
        std::thread::sleep(secs(2));
        assert_eq!(c.leader(), Some(1), "{}", c.leader_views());
        assert_eq!(term().unwrap(), term_before, "node 1's term moved");
        let view = c.cluster(1).unwrap();
        assert!(
            member(&view, stale).is_some_and(|m| m["voter"] == false && m["status"] == "down"),
            "node {stale} in {view}"
        );
        let r = c.put_config(1, "beside/stale", &json!(true)).unwrap();
        assert!(r.is_success(), "a write beside the stale node: {r}");
    };
    c.restart(stale);
    stays_out("the stale node to refuse its old Raft data");
    c.stop(stale);

    // Started while the recovered cluster's leader cannot answer in time (it is
    // paused), the stale node's question gets no leader's answer and it takes
    // part in Raft; the leader's answer to its join then fences it all the same
    // (the leader's log says so).
    c.pause(1);
    c.restart(stale);
    wait_until(
        secs(20),
        "the stale node to be done asking the members",
        || {
            let r = c.get(stale, "/readyz")?;
            if r.status == 503 && !r.body.contains("asking the other members") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        },
    );
    c.resume(1);
    stays_out("the leader to refuse the stale node's old Raft data");
    c.wait_for_log(1, "is not in the membership: refused (superseded)", secs(5));
    c.stop(stale);

    // The stale node comes back with only its Raft data moved away (its chunk store
    // stays), and joins as node 2 did.
    let old_raft = c.data_dir(stale).join("raft.old");
    std::fs::rename(c.data_dir(stale).join("raft"), &old_raft).unwrap();
    assert!(c.data_dir(stale).join("store").is_dir());
    c.restart(stale);
    c.wait_ready(stale, secs(60));
    wait_until(
        secs(30),
        "the stale node to be a voter of the recovered cluster",
        || {
            let view = c.cluster(1)?;
            match member(&view, stale) {
                Some(m) if m["voter"] == true && m["status"] == "up" => Ok(()),
                _ => Err(view.to_string()),
            }
        },
    );
    c.wait_all_present(&[stale], &acked, secs(30));
    assert!(c.data_dir(stale).join("store").is_dir());

    // The old Raft data of node 1 is still there.
    assert_eq!(kept_dirs(&c.data_dir(1)), kept);
    assert_eq!(raft_files(&kept[0]), before);
}
