//! The snapshot export to a real PostgreSQL server, and disaster recovery from it.

use std::collections::BTreeMap;
use std::process::Command;

use bcm_tests::serde_json::{json, Map, Value};
use bcm_tests::{bcm_bin, wait_until, Cluster, Postgres, ADMIN_PASSWORD};
use reqwest::Method;

use crate::secs;

const PASSWORD: &str = "Tr0ub4dor&3-gazelle-kiwi";

/// Waits until the leader's export (asked through `via`) holds `index` or later,
/// with no error; returns the export status.
fn wait_exported(c: &Cluster, via: u64, index: u64) -> Value {
    wait_until(
        secs(30),
        &format!("the export to reach index {index}"),
        || {
            let cl = c.cluster(via)?;
            let ex = &cl["snapshot_export"];
            match ex["last_index"].as_u64() {
                Some(i) if i >= index && ex["last_error"].is_null() => Ok(ex.clone()),
                _ => Err(ex.to_string()),
            }
        },
    )
}

fn call_ok(c: &Cluster, node: u64, method: Method, path: &str, body: Value) -> Value {
    let r = c.call(node, method.clone(), path, Some(&body)).unwrap();
    assert!(r.is_success(), "{method} {path}: {r}");
    r.json()
}

/// The items of an API list, all pages.
fn api_items(c: &Cluster, node: u64, path: &str) -> Vec<Value> {
    let v = c.get_json(node, &format!("{path}?limit=1000")).unwrap();
    v["items"].as_array().unwrap().clone()
}

/// Keeps the `fields` of each row, keyed by `key`.
fn project(rows: &[Value], key: &str, fields: &[&str]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| {
            let obj: Map<String, Value> = fields
                .iter()
                .map(|f| (f.to_string(), r[*f].clone()))
                .collect();
            (r[key].to_string(), Value::Object(obj))
        })
        .collect()
}

#[test]
fn after_a_snapshot_the_tables_hold_exactly_the_clusters_state() {
    let pg = Postgres::start("tables");
    let c = Cluster::builder()
        .name("pg-tables")
        .voters(3)
        .postgres(&pg.url(), 1)
        .start();
    let f = c.followers()[0];
    // The cluster manager writes on its own (members joining -> up, the
    // backup-manager assignment). Let it settle first, or those writes can land
    // after the snapshot below and make the API newer than the tables.
    wait_until(secs(30), "every member up and a backup manager", || {
        let cl = c.cluster(f)?;
        let nodes = c.get_json(f, "/api/v1/nodes?limit=100")?;
        let items = nodes["items"].as_array().cloned().unwrap_or_default();
        let all_up = items.len() == 3 && items.iter().all(|n| n["status"] == "up");
        if all_up && cl["backup_manager"]["node_id"].is_u64() {
            Ok(())
        } else {
            Err(format!("{nodes} {}", cl["backup_manager"]))
        }
    });

    // Something of every kind, written through a follower.
    call_ok(
        &c,
        f,
        Method::POST,
        "/api/v1/groups",
        json!({"name": "auditors", "permissions": ["config.read", "users.read"]}),
    );
    call_ok(
        &c,
        f,
        Method::POST,
        "/api/v1/users",
        json!({"name": "alice", "password": PASSWORD, "groups": ["operator", "auditors"]}),
    );
    let bob = call_ok(
        &c,
        f,
        Method::POST,
        "/api/v1/users",
        json!({"name": "bob", "password": PASSWORD, "groups": ["viewer"]}),
    );
    call_ok(
        &c,
        f,
        Method::PATCH,
        &format!("/api/v1/users/{}", bob["id"]),
        json!({"enabled": false}),
    );
    for (k, v) in [
        ("retention.days", json!(30)),
        ("site/name", json!("Zürich \"main\"")),
        ("limits", json!({"max": [1, 2.5, null], "on": true})),
    ] {
        call_ok(
            &c,
            f,
            Method::PUT,
            &format!("/api/v1/config/{k}"),
            json!({"value": v}),
        );
    }
    call_ok(
        &c,
        f,
        Method::PATCH,
        "/api/v1/nodes/2",
        json!({"labels": {"rack": "r2"}}),
    );
    let plan = call_ok(
        &c,
        f,
        Method::POST,
        "/api/v1/plans",
        json!({"name": "etc", "source_node": 1, "paths": ["/etc", "/srv"], "schedule": "0 3 * * *"}),
    );
    call_ok(
        &c,
        f,
        Method::POST,
        "/api/v1/backups",
        json!({"plan": plan["id"]}),
    );
    call_ok(
        &c,
        f,
        Method::POST,
        "/api/v1/backups",
        json!({"source_node": 2, "paths": ["/var/lib"]}),
    );

    let snap = call_ok(&c, f, Method::POST, "/api/v1/cluster/snapshot", json!(null));
    let index = snap["snapshot_index"].as_u64().unwrap();
    wait_exported(&c, f, index);

    // The newest snapshot row belongs to this cluster and covers the snapshot.
    let cluster = c.cluster(f).unwrap();
    let rows = pg
        .rows(
            "SELECT cluster_id, node_id, term, last_log_index, membership, length(data) AS len \
               FROM snapshots ORDER BY id DESC LIMIT 1",
        )
        .unwrap();
    let row = &rows[0];
    assert_eq!(row["cluster_id"], cluster["cluster_id"], "{row}");
    assert!(row["last_log_index"].as_u64().unwrap() >= index, "{row}");
    assert!(row["len"].as_u64().unwrap() > 100, "{row}");
    assert_eq!(
        row["membership"]["membership"]["configs"],
        json!([[1, 2, 3]]),
        "the voters at that index: {row}"
    );

    // Every table equals what the API answers.
    let cid = cluster["cluster_id"].as_str().unwrap();
    let q = |sql: &str| pg.rows(&sql.replace("$CID", &format!("'{cid}'"))).unwrap();
    let n = c.leader().unwrap();

    let fields = ["id", "name", "enabled", "groups"];
    assert_eq!(
        project(
            &q("SELECT id, name, enabled, groups FROM users WHERE cluster_id = $CID"),
            "id",
            &fields
        ),
        project(&api_items(&c, n, "/api/v1/users"), "id", &fields),
        "users"
    );
    let fields = ["name", "permissions", "builtin"];
    let mut api_groups = api_items(&c, n, "/api/v1/groups");
    for g in &mut api_groups {
        let mut p: Vec<Value> = g["permissions"].as_array().unwrap().clone();
        p.sort_by_key(|v| v.to_string());
        g["permissions"] = Value::Array(p);
    }
    assert_eq!(
        project(&q("SELECT name, ARRAY(SELECT unnest(permissions) ORDER BY 1) AS permissions, builtin FROM groups WHERE cluster_id = $CID"), "name", &fields),
        project(&api_groups, "name", &fields),
        "groups"
    );
    let fields = [
        "id", "name", "api_addr", "rpc_addr", "roles", "enabled", "labels", "status",
    ];
    assert_eq!(
        project(&q("SELECT id, name, api_addr, rpc_addr, roles, enabled, labels, status FROM nodes WHERE cluster_id = $CID"), "id", &fields),
        project(&api_items(&c, n, "/api/v1/nodes"), "id", &fields),
        "nodes"
    );
    let fields = ["key", "value", "version"];
    assert_eq!(
        project(
            &q("SELECT key, value, version FROM config WHERE cluster_id = $CID"),
            "key",
            &fields
        ),
        project(&api_items(&c, n, "/api/v1/config"), "key", &fields),
        "config"
    );
    let fields = [
        "id",
        "name",
        "source_node",
        "paths",
        "schedule",
        "keep_last",
        "replicas",
        "enabled",
    ];
    assert_eq!(
        project(
            &q("SELECT * FROM plans WHERE cluster_id = $CID"),
            "id",
            &fields
        ),
        project(&api_items(&c, n, "/api/v1/plans"), "id", &fields),
        "plans"
    );
    let fields = [
        "id",
        "plan",
        "plan_name",
        "source_node",
        "paths",
        "status",
        "size_bytes",
        "storage_nodes",
        "error",
    ];
    assert_eq!(
        project(
            &q("SELECT * FROM backups WHERE cluster_id = $CID"),
            "id",
            &fields
        ),
        project(&api_items(&c, n, "/api/v1/backups"), "id", &fields),
        "backups"
    );
    assert_eq!(
        q("SELECT * FROM restores WHERE cluster_id = $CID").len(),
        api_items(&c, n, "/api/v1/restores").len(),
        "restores"
    );

    // Password hashes only: no password, and the signing key nowhere in the tables.
    let hashes = q("SELECT password_hash FROM users WHERE cluster_id = $CID");
    assert!(
        hashes.iter().all(|h| h["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$")),
        "{hashes:?}"
    );
    let leaked = pg.psql(&format!(
        "SELECT count(*) FROM users WHERE password_hash LIKE '%{PASSWORD}%' OR password_hash LIKE '%{ADMIN_PASSWORD}%'"
    )).unwrap();
    assert_eq!(leaked, "0");

    // The lag is visible in /metrics on the leader.
    let text = c.metrics(n).unwrap();
    assert!(text.contains("bcm_snapshot_export_lag_entries"), "{text}");
}

#[test]
fn writes_keep_succeeding_while_postgres_is_down_and_the_export_catches_up() {
    let mut pg = Postgres::start("outage");
    let c = Cluster::builder()
        .name("pg-outage")
        .voters(3)
        .postgres(&pg.url(), 1)
        .start();
    let n = c.followers()[0];
    let first = call_ok(
        &c,
        n,
        Method::PUT,
        "/api/v1/config/before",
        json!({"value": 1}),
    );
    wait_exported(&c, n, first["version"].as_u64().unwrap());

    pg.stop();
    let mut last = 0;
    for i in 0..20 {
        let r = c.put_config(n, &format!("during/{i}"), &json!(i)).unwrap();
        assert_eq!(r.status, 200, "write {i} with Postgres down: {r}");
        last = r.json()["version"].as_u64().unwrap();
    }
    // The failure is reported, and reads and writes go on.
    let ex = wait_until(secs(20), "the export error to show", || {
        let ex = c.cluster(n)?["snapshot_export"].clone();
        if ex["last_error"].is_string() {
            Ok(ex)
        } else {
            Err(ex.to_string())
        }
    });
    assert!(ex["lag"].as_u64().unwrap() > 0, "{ex}");
    let leader = c.leader().unwrap();
    let healthy = bcm_tests::metric(&c.metrics(leader).unwrap(), "bcm_snapshot_export_healthy");
    assert_eq!(healthy, Some(0.0));
    assert_eq!(c.config_value(n, "during/19").unwrap(), Some(json!(19)));

    pg.resume();
    let ex = wait_exported(&c, n, last);
    assert_eq!(ex["lag"], 0, "{ex}");
    let keys = pg
        .psql("SELECT count(*) FROM config WHERE key LIKE 'during/%'")
        .unwrap();
    assert_eq!(keys, "20");
}

#[test]
fn a_cluster_that_lost_every_disk_comes_back_from_postgres() {
    let pg = Postgres::start("restore");
    let c = Cluster::builder()
        .name("pg-restore")
        .voters(3)
        .postgres(&pg.url(), 1)
        .start();
    let n = c.leader().unwrap();
    let before = c.cluster(n).unwrap();
    call_ok(
        &c,
        n,
        Method::POST,
        "/api/v1/users",
        json!({"name": "carol", "password": PASSWORD, "groups": ["operator"]}),
    );
    let mut acked = BTreeMap::new();
    let mut last = 0;
    for i in 0..50 {
        let r = c
            .put_config(n, &format!("dr/{i}"), &json!({"i": i}))
            .unwrap();
        assert_eq!(r.status, 200, "{r}");
        last = r.json()["version"].as_u64().unwrap();
        acked.insert(format!("dr/{i}"), json!({"i": i}));
    }
    wait_exported(&c, n, last);

    // Every disk is lost.
    for id in c.all_nodes() {
        c.kill(id);
    }

    // A restore refuses a data directory that is not empty...
    let out = Command::new(bcm_bin())
        .args(["node", "--restore-from-postgres", "--config"])
        .arg(c.config_path(1))
        .env("BCM_LOG__FORMAT", "human")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("not empty"),
        "{text}"
    );
    // ...and a database that holds no snapshot.
    pg.psql("CREATE DATABASE empty OWNER bcm").unwrap();
    let empty_dir = tempfile::tempdir().unwrap();
    let out = Command::new(bcm_bin())
        .args(["node", "--restore-from-postgres", "--config"])
        .arg(c.config_path(1))
        .arg("--data-dir")
        .arg(empty_dir.path().join("data"))
        .env("BCM_POSTGRES__URL", pg.url_of("empty"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("no bcm snapshot"),
        "{text}"
    );

    for id in c.all_nodes() {
        c.wipe(id);
    }
    c.restart_with(1, &["--restore-from-postgres"]);
    c.wait_ready(1, secs(30));
    c.restart(2);
    c.restart(3);
    for id in c.all_nodes() {
        c.wait_ready(id, secs(45));
    }
    let after = c.cluster(1).unwrap();
    assert_eq!(
        after["cluster_id"], before["cluster_id"],
        "the same cluster"
    );

    // Every acknowledged write is back on every node, and logins work everywhere.
    for id in c.all_nodes() {
        wait_until(secs(30), &format!("node {id} to hold every write"), || {
            for (k, v) in &acked {
                match c.config_value(id, k)? {
                    Some(got) if got == *v => {}
                    other => return Err(format!("{k} = {other:?}")),
                }
            }
            Ok(())
        });
        let r = c.login_with(id, "carol", PASSWORD).unwrap();
        assert_eq!(r.status, 200, "carol logs in on node {id}: {r}");
        let r = c.login_with(id, "admin", ADMIN_PASSWORD).unwrap();
        assert_eq!(r.status, 200, "admin logs in on node {id}: {r}");
    }
    wait_until(
        secs(30),
        "the members to join the restored node as voters",
        || {
            let cl = c.cluster(1)?;
            let voters = cl["members"]
                .as_array()
                .map(|m| m.iter().filter(|m| m["voter"] == true).count())
                .unwrap_or(0);
            if voters == 3 {
                Ok(())
            } else {
                Err(cl["members"].to_string())
            }
        },
    );
    // And the cluster takes new writes.
    let r = c.put_config(2, "after/restore", &json!(true)).unwrap();
    assert_eq!(r.status, 200, "{r}");
}

#[test]
fn nodes_starting_at_once_against_an_empty_database_all_migrate_and_come_up() {
    let pg = Postgres::start("migrate");
    let c = Cluster::builder()
        .name("pg-migrate")
        .voters(3)
        .postgres(&pg.url(), 1)
        .start();
    for id in c.all_nodes() {
        wait_until(secs(20), &format!("node {id} to apply the schema"), || {
            let log = std::fs::read_to_string(c.log_path(id)).unwrap_or_default();
            if log.contains("schema up to date") {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        });
    }
    let applied = pg
        .rows("SELECT version, success FROM _sqlx_migrations")
        .unwrap();
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0]["success"], true, "{applied:?}");
    let n = c.leader().unwrap();
    let r = c.put_config(n, "migrated", &json!(1)).unwrap();
    wait_exported(&c, n, r.json()["version"].as_u64().unwrap());
}

#[test]
fn a_leader_killed_during_an_export_leaves_postgres_consistent() {
    let pg = Postgres::start("leader-change");
    let c = Cluster::builder()
        .name("pg-leader-change")
        .voters(3)
        .postgres(&pg.url(), 1)
        .start();
    // A state big enough that an export takes a while.
    let big = "x".repeat(4000);
    let mut versions = BTreeMap::new();
    let writer = c.leader().unwrap();
    for i in 0..400 {
        let r = c
            .put_config(writer, &format!("big/{i:04}"), &json!(big))
            .unwrap();
        assert_eq!(r.status, 200, "{r}");
        versions.insert(format!("big/{i:04}"), r.json()["version"].as_u64().unwrap());
    }

    for round in 0..3 {
        let leader = c.wait_for_leader();
        // Wait for the leader to be inside an export transaction, then kill it.
        wait_until(secs(30), "an export transaction in flight", || {
            let busy = pg.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'bcm' \
                 AND xact_start IS NOT NULL AND pid <> pg_backend_pid()",
            )?;
            if busy != "0" {
                return Ok(());
            }
            // Keep something to export.
            let n = c.live_nodes()[0];
            let k = format!("round{round}/{}", versions.len());
            let r = c.put_config(n, &k, &json!(big))?;
            if r.status == 200 {
                versions.insert(k, r.json()["version"].as_u64().unwrap());
            }
            Err("no export in flight".to_string())
        });
        c.kill(leader);
        let next = c.wait_for_new_leader(leader);
        let r = c
            .put_config(next, &format!("after-kill/{round}"), &json!(round))
            .unwrap();
        assert_eq!(r.status, 200, "{r}");
        versions.insert(
            format!("after-kill/{round}"),
            r.json()["version"].as_u64().unwrap(),
        );
        c.restart(leader);
        c.wait_ready(leader, secs(30));
    }

    // Once the new leader exported everything, Postgres holds one consistent state:
    // the newest snapshot row, and tables that match exactly the writes at or below
    // its index.
    let n = c.leader().unwrap();
    let last = *versions.values().max().unwrap();
    wait_exported(&c, n, last);
    let newest: u64 = pg
        .psql("SELECT max(last_log_index) FROM snapshots")
        .unwrap()
        .parse()
        .unwrap();
    let expected: Vec<String> = versions
        .iter()
        .filter(|(_, v)| **v <= newest)
        .map(|(k, _)| k.clone())
        .collect();
    let in_table: Vec<String> = pg
        .rows("SELECT key FROM config WHERE key LIKE 'big/%' OR key LIKE 'round%' OR key LIKE 'after-kill/%' ORDER BY key")
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(
        in_table, expected,
        "config table vs the writes at or below index {newest}"
    );
    let max_version: u64 = pg
        .psql("SELECT max(version) FROM config")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        max_version <= newest,
        "a row newer ({max_version}) than the newest snapshot ({newest})"
    );
    let kept: u64 = pg
        .psql("SELECT count(*) FROM snapshots")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&kept), "{kept} snapshot rows kept");
}

#[test]
fn the_export_goes_over_tls_and_checks_the_servers_certificate() {
    // This server refuses every connection without TLS.
    let pg = Postgres::start_tls("tls");
    let url = |mode: &str, ca: &std::path::Path| {
        format!("{}?sslmode={mode}&sslrootcert={}", pg.url(), ca.display())
    };

    // Verified against the CA that signed the server's certificate: the export
    // lands, over encrypted connections.
    let c = Cluster::builder()
        .name("pg-tls")
        .voters(1)
        .postgres(&url("verify-full", &pg.ca_cert()), 1)
        .start();
    let w = call_ok(
        &c,
        1,
        Method::PUT,
        "/api/v1/config/over-tls",
        json!({"value": 7}),
    );
    wait_exported(&c, 1, w["version"].as_u64().unwrap());
    assert_eq!(
        pg.psql("SELECT value FROM config WHERE key = 'over-tls'")
            .unwrap(),
        "7"
    );
    let encrypted = pg
        .psql(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.usename = 'bcm' AND s.ssl AND a.application_name <> 'psql'",
        )
        .unwrap();
    assert_ne!(encrypted, "0", "bcm's connections use TLS");

    // A certificate the configured CA did not sign is refused, and so is a
    // connection without TLS; the export reports why and writes nothing.
    for (name, mode, ca, why) in [
        (
            "pg-tls-wrong-ca",
            "verify-full",
            pg.other_ca_cert(),
            "certificate",
        ),
        ("pg-tls-disabled", "disable", pg.ca_cert(), "no encryption"),
    ] {
        let c = Cluster::builder()
            .name(name)
            .voters(1)
            .postgres(&url(mode, &ca), 1)
            .start();
        let w = call_ok(
            &c,
            1,
            Method::PUT,
            "/api/v1/config/refused",
            json!({"value": 1}),
        );
        assert!(
            w["version"].is_u64(),
            "writes go on without the export: {w}"
        );
        let ex = wait_until(
            secs(20),
            &format!("{name}: the export error to show"),
            || {
                let ex = c.cluster(1)?["snapshot_export"].clone();
                match ex["last_error"].as_str() {
                    Some(e) if e.contains(why) => Ok(ex.clone()),
                    _ => Err(ex.to_string()),
                }
            },
        );
        assert!(ex["last_index"].is_null(), "{name}: nothing exported: {ex}");
        let cluster_id = c.cluster(1).unwrap()["cluster_id"]
            .as_str()
            .unwrap()
            .to_string();
        let rows = pg
            .psql(&format!(
                "SELECT count(*) FROM snapshots WHERE cluster_id = '{cluster_id}'"
            ))
            .unwrap();
        assert_eq!(rows, "0", "{name}: no snapshot row");
    }
}
