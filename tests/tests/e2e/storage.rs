//! Storage nodes: each keeps a chunk store under its data dir, and `GET
//! /api/v1/storage` through any node shows their room and use, asked of them now.

use bcm_api::{Page, StorageView};
use bcm_tests::{wait_until, Cluster, CLUSTER_SECRET};
use reqwest::Method;

use crate::secs;

fn storage(c: &Cluster, via: u64) -> Result<Vec<StorageView>, String> {
    let reply = c.send_authed(via, c.request(via, Method::GET, "/api/v1/storage"))?;
    if reply.status != 200 {
        return Err(format!("GET /storage: {reply}"));
    }
    Ok(reply.parse::<Page<StorageView>>()?.items)
}

#[test]
fn storage_nodes_show_their_room_through_any_node_and_a_dead_one_says_so() {
    let c = Cluster::builder()
        .name("storage-nodes")
        .voters(3)
        .joiner(&["manager"])
        .start();
    let plain = 4;
    c.wait_ready(plain, secs(20));

    // Asked through the node that keeps no store: the three that do, each with
    // its file system's numbers and an empty store.
    let views = wait_until(secs(20), "three storage nodes listed", || {
        let v = storage(&c, plain)?;
        if v.len() == 3 && v.iter().all(|s| s.reachable) {
            Ok(v)
        } else {
            Err(format!("{v:?}"))
        }
    });
    let ids: Vec<u64> = views.iter().map(|s| s.node_id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    for s in &views {
        let (cap, free) = (s.capacity_bytes.unwrap(), s.free_bytes.unwrap());
        assert!(cap > 0 && free <= cap, "{s:?}");
        assert_eq!(
            (s.used_bytes, s.chunks, s.backups),
            (Some(0), Some(0), Some(0))
        );
        assert_eq!(s.error, None);
        let store = c.data_dir(s.node_id).join("store");
        assert!(store.join("packs").is_dir() && store.join("manifests").is_dir());
    }
    assert!(!c.data_dir(plain).join("store").exists());

    // Its internal storage routes say it keeps no store; the others' refuse a
    // caller without the cluster secret and a body that does not decode.
    let stats = |n: u64| {
        c.rpc_request(n, Method::POST, "/internal/storage/stats")
            .header("content-type", "application/octet-stream")
    };
    assert_eq!(
        c.send(stats(plain).bearer(CLUSTER_SECRET)).unwrap().status,
        503
    );
    assert_eq!(c.send(stats(1)).unwrap().status, 401);
    assert_eq!(c.send(stats(1).bearer(CLUSTER_SECRET)).unwrap().status, 200);
    let garbage = c
        .rpc_request(1, Method::POST, "/internal/storage/put")
        .bearer(CLUSTER_SECRET)
        .raw_body(vec![0xff; 12]);
    assert_eq!(c.send(garbage).unwrap().status, 400);

    // A storage node killed: listed, unreachable, with why; the others still answer.
    c.kill(3);
    let views = storage(&c, 1).unwrap();
    let dead = views.iter().find(|s| s.node_id == 3).unwrap();
    assert!(!dead.reachable && dead.capacity_bytes.is_none(), "{dead:?}");
    assert!(
        dead.error.as_deref().unwrap_or("").contains("127.0.0.1"),
        "{dead:?}"
    );
    assert!(views.iter().filter(|s| s.node_id != 3).all(|s| s.reachable));
}
