//! The operator's command line against a running cluster: `bcm status`, `bcm login`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bcm_tests::serde_json::{self, Value};
use bcm_tests::{wait_until, Bcm, CliOutput, Cluster, ADMIN_PASSWORD};

use crate::secs;

/// `bcm status` runs are quick; a hung one fails the test instead of hanging it.
fn run(home: &Path, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let mut cmd = Bcm::new(home, args);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.run(secs(30));
    eprintln!("{out}");
    out
}

/// The member rows of `bcm status`'s table, each as column name -> cell (the cells
/// hold no spaces).
fn rows(table: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = table.lines().skip_while(|l| !l.starts_with("ID "));
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            columns
                .iter()
                .map(|c| c.to_string())
                .zip(l.split_whitespace().map(str::to_string))
                .collect()
        })
        .collect()
}

/// Waits until the cluster agrees on a leader and a backup-manager holder; returns both.
fn leader_and_holder(c: &Cluster) -> (u64, u64) {
    let leader = c.wait_for_agreed_leader(secs(10));
    wait_until(secs(15), "a backup manager every node agrees on", || {
        let mut holders = Vec::new();
        for n in c.all_nodes() {
            let view = c.cluster(n)?;
            holders.push(view["backup_manager"]["node_id"].as_u64());
        }
        match holders[0] {
            Some(h) if holders.iter().all(|x| *x == Some(h)) => Ok((leader, h)),
            _ => Err(format!("holders per node: {holders:?}")),
        }
    })
}

#[test]
fn bcm_status_shows_every_member_and_who_holds_which_role() {
    let c = Cluster::builder().name("cli-status").voters(3).start();
    let (leader, holder) = leader_and_holder(&c);
    let f = c.followers()[0];
    let home = c.dir().join("cli-home");
    fs::create_dir_all(&home).unwrap();
    let server = c.api_url(f);

    let out = run(
        &home,
        &["status", "--server", &server],
        &[("BCM_PASSWORD", ADMIN_PASSWORD)],
    );
    assert!(out.success(), "{out}");
    let rows = rows(&out.stdout);
    let ids: Vec<&str> = rows.iter().map(|r| r["ID"].as_str()).collect();
    assert_eq!(ids, ["1", "2", "3"], "one row per member:\n{out}");
    for row in &rows {
        let id: u64 = row["ID"].parse().unwrap();
        assert_eq!(row["NAME"], format!("node-{id}"), "{row:?}");
        assert_eq!(row["API"], c.api_url(id), "{row:?}");
        assert_eq!(row["STATUS"], "up", "{row:?}");
        assert_eq!(row["VOTER"], "voter", "{row:?}");
        let roles: Vec<&str> = row["ROLE"].split('+').collect();
        assert_eq!(
            roles.contains(&"cluster-manager"),
            id == leader,
            "the leader is node {leader}: {row:?}\n{out}"
        );
        assert_eq!(
            roles.contains(&"backup-manager"),
            id == holder,
            "the backup manager is node {holder}: {row:?}\n{out}"
        );
    }

    let out = run(
        &home,
        &["status", "--server", &server, "--output", "json"],
        &[("BCM_PASSWORD", ADMIN_PASSWORD)],
    );
    assert!(out.success(), "{out}");
    let status: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("--output json is not JSON ({e}):\n{out}"));
    let members: Vec<u64> = status["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {status}"))
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(members, [1, 2, 3], "{status}");
    assert_eq!(status["leader_id"], leader, "{status}");
    assert_eq!(status["backup_manager"]["node_id"], holder, "{status}");
}

#[test]
fn bcm_login_keeps_a_private_token_that_later_commands_use() {
    let c = Cluster::builder().name("cli-login").voters(3).start();
    let server = c.api_url(c.followers()[0]);

    // A wrong password: a non-zero exit, a message a person can read, no token kept.
    let home = c.dir().join("cli-home-wrong");
    fs::create_dir_all(&home).unwrap();
    let out = run(
        &home,
        &[
            "login",
            "--server",
            &server,
            "--password",
            "not-the-password",
        ],
        &[],
    );
    assert!(!out.success(), "a wrong password must fail: {out}");
    let msg = out.stderr.trim();
    assert!(
        msg.starts_with("bcm: error:") && msg.contains("wrong password") && msg.contains("401"),
        "a readable error naming the cause: {out}"
    );
    assert!(
        !msg.contains("panicked") && msg.lines().count() <= 2,
        "no panic or backtrace: {out}"
    );
    assert!(
        !home.join(".config/bcm/token.json").exists(),
        "a failed login wrote a token: {out}"
    );

    // The right password: the token is kept, readable by its owner only.
    let home = c.dir().join("cli-home");
    fs::create_dir_all(&home).unwrap();
    let out = run(
        &home,
        &["login", "--server", &server, "--password", ADMIN_PASSWORD],
        &[],
    );
    assert!(out.success(), "{out}");
    let path = home.join(".config/bcm/token.json");
    let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}\n{out}", path.display()));
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{} must be private",
        path.display()
    );
    let stored: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let token = stored["token"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "no token in {stored}");
    assert!(
        !fs::read_to_string(&path).unwrap().contains(ADMIN_PASSWORD),
        "the password must not be stored"
    );

    // A later command works with the kept token alone.
    let out = run(&home, &["status", "--server", &server], &[]);
    assert!(out.success(), "status with the stored token: {out}");
    assert_eq!(rows(&out.stdout).len(), 3, "{out}");
}

#[test]
fn bcm_status_uses_the_next_server_when_the_first_is_down() {
    let c = Cluster::builder().name("cli-failover").voters(3).start();
    let followers = c.followers();
    let (dead, live) = (followers[0], followers[1]);
    c.kill(dead);
    let home = c.dir().join("cli-home");
    fs::create_dir_all(&home).unwrap();

    let servers = format!("{},{}", c.api_url(dead), c.api_url(live));
    let out = run(
        &home,
        &["status", "--server", &servers, "--output", "json"],
        &[("BCM_PASSWORD", ADMIN_PASSWORD)],
    );
    assert!(out.success(), "status with {servers}: {out}");
    let status: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        status["this_node_id"], live,
        "answered by node {live}: {status}"
    );
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
}
