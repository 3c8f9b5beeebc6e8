//! A backup's replicas checked and repaired: `POST /backups/{id}/verify` reads
//! back every chunk on every holder, makes a replica whose pack files were
//! deleted whole again from the other one, and re-creates a replica whose node
//! is down on another storage node; `GET /backups/{id}/files` lists the tree.

use std::fs;
use std::path::{Path, PathBuf};

use bcm_tests::serde_json::{json, Value};
use bcm_tests::tree::{describe, make_tree};
use bcm_tests::{wait_for, Cluster};

use crate::secs;

/// Every pack file under a node's chunk store.
fn pack_files(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![store.join("packs")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pack") {
                out.push(p);
            }
        }
    }
    out
}

fn verify(c: &Cluster, via: u64, id: u64) -> Value {
    let r = c
        .post(via, &format!("/api/v1/backups/{id}/verify"), &json!({}))
        .unwrap();
    assert_eq!(r.status, 202, "{r}");
    r.json()
}

fn states(v: &Value) -> Vec<(u64, String)> {
    v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["node_id"].as_u64().unwrap(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn verify_repairs_a_replica_that_lost_its_packs_and_rehomes_one_whose_node_is_down() {
    let c = Cluster::builder().name("replicas").voters(5).start();
    let src = c.dir().join("source");
    let made = make_tree(&src, 240);
    let path = src.to_str().unwrap();
    let plan = c.create_plan(1, "tree", 1, &[path], 2);
    let b = c.start_backup(1, &json!({ "plan": plan })).unwrap();
    let b = c.wait_backup(1, b.id, secs(120));
    assert_eq!(b.status.as_str(), "succeeded", "{b:?}");
    let id = b.id;

    // The tree, as backed up: the root, a directory in it, everything below.
    let roots = c
        .get_json(2, &format!("/api/v1/backups/{id}/files"))
        .unwrap();
    assert_eq!(roots["total"], 1, "{roots}");
    assert_eq!(roots["items"][0]["path"], path);
    assert_eq!(roots["items"][0]["type"], "dir");
    let top = c
        .get_json(2, &format!("/api/v1/backups/{id}/files?path={path}"))
        .unwrap();
    let names: Vec<&str> = top["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for want in ["big.bin", "d0", "d1", "d2", "d3", "link"] {
        assert!(names.contains(&format!("{path}/{want}").as_str()), "{top}");
    }
    let link = top["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "symlink")
        .unwrap();
    assert_eq!(link["target"], "d0/e0/f1.dat", "{link}");
    let all = c
        .get_json(
            2,
            &format!("/api/v1/backups/{id}/files?path={path}&recursive=true&limit=1000"),
        )
        .unwrap();
    let files = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .count() as u64;
    assert_eq!(files, made.files, "every file is listed");
    for (query, status) in [
        ("?path=relative", 400),
        (&*format!("?path={path}/nope"), 404),
    ] {
        let r = c
            .call(
                2,
                reqwest::Method::GET,
                &format!("/api/v1/backups/{id}/files{query}"),
                None,
            )
            .unwrap();
        assert_eq!(r.status, status, "{query}: {r}");
    }

    // Whole at first.
    let v = verify(&c, 3, id);
    assert_eq!(v["ok"], true, "{v}");
    assert!(states(&v).iter().all(|(_, s)| s == "ok"), "{v}");

    // One holder loses its pack files while it is down: verify fills them in
    // from the other replica.
    let (a, other) = (b.storage_nodes[0], b.storage_nodes[1]);
    let store = c.data_dir(a).join("store");
    c.while_killed(a, || {
        let packs = pack_files(&store);
        assert!(!packs.is_empty(), "{}", store.display());
        for p in packs {
            fs::remove_file(p).unwrap();
        }
    });
    let v = verify(&c, 3, id);
    assert_eq!(v["ok"], true, "{v}");
    let repaired = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node_id"] == a)
        .unwrap()
        .clone();
    assert_eq!(repaired["state"], "repaired", "{v}");
    assert!(repaired["repaired_chunks"].as_u64().unwrap() > 0, "{v}");
    assert!(states(&verify(&c, 3, id)).iter().all(|(_, s)| s == "ok"));

    // The other holder goes down for good: its replica is re-created on a
    // storage node that holds none, and the catalog says so.
    c.kill(other);
    let via = [1, 2, 3, 4, 5]
        .into_iter()
        .find(|n| *n != other && *n != a)
        .unwrap();
    wait_for(
        secs(15),
        &format!("node {other} to be shown down"),
        || c.get_json(via, &format!("/api/v1/nodes/{other}")),
        |m| m["status"] == "down",
    );
    let v = verify(&c, via, id);
    assert_eq!(v["ok"], true, "{v}");
    let moved = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node_id"] == other)
        .unwrap()
        .clone();
    assert_eq!(moved["state"], "moved", "{v}");
    let to = moved["moved_to"].as_u64().unwrap();
    assert!(to != a && to != other, "{v}");
    let now = c.get_json(via, &format!("/api/v1/backups/{id}")).unwrap();
    let mut holders: Vec<u64> = now["storage_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    holders.sort_unstable();
    let mut want = vec![a, to];
    want.sort_unstable();
    assert_eq!(holders, want, "{now}");

    // Restored from the new replica alone (the repaired one down as well),
    // byte-identical.
    c.kill(a);
    let target = c.dir().join("restored");
    let r = c
        .start_restore(via, id, &json!({"target_node": via, "target_path": target}))
        .unwrap();
    let r = c.wait_restore(via, r.id, secs(120));
    assert_eq!(r.status.as_str(), "succeeded", "{r:?}");
    let mut expect = describe(&src);
    expect.remove(Path::new("d3/pipe"));
    assert_eq!(
        describe(&target.join(src.strip_prefix("/").unwrap())),
        expect
    );
}
