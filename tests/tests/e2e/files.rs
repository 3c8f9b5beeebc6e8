//! What a node leaves on disk is for its own user only: the data directory holds
//! the token signing key (in the snapshot) and password hashes (in the Raft log).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bcm_tests::serde_json::json;
use bcm_tests::Cluster;
use reqwest::Method;

use crate::secs;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The data directory and the files that hold secrets, with their modes.
fn modes(data: &Path) -> Vec<(String, u32)> {
    let mut found = vec![(data.display().to_string(), mode(data))];
    let raft = data.join("raft");
    found.push(("raft/snapshot".into(), mode(&raft.join("snapshot"))));
    for e in std::fs::read_dir(raft.join("wal")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "wal") {
            found.push((
                format!("raft/wal/{}", p.file_name().unwrap().to_string_lossy()),
                mode(&p),
            ));
        }
    }
    found
}

fn assert_private(data: &Path) {
    let found = modes(data);
    assert!(
        found.iter().any(|(p, _)| p.ends_with(".wal")),
        "no log segment found: {found:?}"
    );
    let open: Vec<String> = found
        .iter()
        .filter(|(p, m)| *m != if p.starts_with("raft/") { 0o600 } else { 0o700 })
        .map(|(p, m)| format!("{p} is {m:o}"))
        .collect();
    assert!(open.is_empty(), "readable by others: {open:?}");
}

#[test]
fn a_nodes_data_directory_and_key_material_are_private() {
    let c = Cluster::builder().name("file-modes").voters(1).start();
    let leader = c.wait_for_leader();
    // A user (a password hash in the log) and a snapshot (the token key in it).
    let r = c
        .call(
            leader,
            Method::POST,
            "/api/v1/users",
            Some(&json!({"name": "carol", "password": crate::PASSWORD, "groups": ["viewer"]})),
        )
        .unwrap();
    assert!(r.is_success(), "creating a user: {r}");
    let r = c
        .call(leader, Method::POST, "/api/v1/cluster/snapshot", None)
        .unwrap();
    assert_eq!(r.status, 200, "POST /api/v1/cluster/snapshot: {r}");
    let data = c.data_dir(leader);
    assert_private(&data);

    // A data directory left open to others (by an older bcm, or by hand) is
    // closed again at start-up, and the node says so.
    c.kill(leader);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    c.restart(leader);
    c.wait_ready(leader, secs(30));
    assert_private(&data);
    c.wait_for_log(leader, "made it 0700", secs(5));
}
