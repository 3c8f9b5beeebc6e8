//! The snapshot export to a real PostgreSQL server, and disaster recovery from it.

use std::collections::BTreeMap;
use std::process::Command;

use bcm_tests::serde_json::{json, Map, Value};
use bcm_tests::{bcm_bin, wait_for, wait_until, Cluster, Postgres, ADMIN_PASSWORD};
use reqwest::Method;

use crate::{secs, PASSWORD};

/// Three voters exporting their snapshots to `pg` every second.
fn cluster_exporting_to(pg: &Postgres, name: &str) -> Cluster {
    Cluster::builder()
        .name(name)
        .voters(3)
        .postgres(&pg.url(), 1)
        .start()
}

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

/// Waits until the export (asked through `via`) reports an error that mentions
/// `why` (any error, for ""); returns the export status.
fn wait_export_error(c: &Cluster, via: u64, why: &str, what: &str) -> Value {
    wait_for(
        secs(20),
        what,
        || Ok(c.cluster(via)?["snapshot_export"].clone()),
        |ex| ex["last_error"].as_str().is_some_and(|e| e.contains(why)),
    )
}

fn call_ok(c: &Cluster, node: u64, method: Method, path: &str, body: Value) -> Value {
    let r = c.call(node, method.clone(), path, Some(&body)).unwrap();
    assert!(r.is_success(), "{method} {path}: {r}");
    r.json()
}

/// Writes `value` under `key` through `node`, which must acknowledge it (200);
/// returns the write's version.
fn put_ok(c: &Cluster, node: u64, key: &str, value: &Value) -> u64 {
    let r = c.put_config(node, key, value).unwrap();
    assert_eq!(r.status, 200, "PUT {key} via node {node}: {r}");
    r.json()["version"].as_u64().unwrap()
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

/// `bcm node --restore-from-postgres` with node 1's config, `args` and the
/// environment variable `env`, as an operator runs it by hand: whether it
/// succeeded, and what it printed.
fn restore_from_postgres(c: &Cluster, args: &[&str], env: (&str, &str)) -> (bool, String) {
    let out = Command::new(bcm_bin())
        .args(["node", "--restore-from-postgres", "--config"])
        .arg(c.config_path(1))
        .args(args)
        .env(env.0, env.1)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[test]
fn after_a_snapshot_the_tables_hold_exactly_the_clusters_state() {
    let pg = Postgres::start("tables");
    let c = cluster_exporting_to(&pg, "pg-tables");
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
    let post = |path: &str, body: Value| call_ok(&c, f, Method::POST, path, body);
    post(
        "/api/v1/groups",
        json!({"name": "auditors", "permissions": ["config.read", "users.read"]}),
    );
    post(
        "/api/v1/users",
        json!({"name": "alice", "password": PASSWORD, "groups": ["operator", "auditors"]}),
    );
    let bob = post(
        "/api/v1/users",
        json!({"name": "bob", "password": PASSWORD, "groups": ["viewer"]}),
    );
    let bob = format!("/api/v1/users/{}", bob["id"]);
    call_ok(&c, f, Method::PATCH, &bob, json!({"enabled": false}));
    for (k, v) in [
        ("retention.days", json!(30)),
        ("site/name", json!("Zürich \"main\"")),
        ("limits", json!({"max": [1, 2.5, null], "on": true})),
    ] {
        put_ok(&c, f, k, &v);
    }
    let rack = json!({"labels": {"rack": "r2"}});
    call_ok(&c, f, Method::PATCH, "/api/v1/nodes/2", rack);
    // Two backups of small trees, ended before the snapshot (so the tables and
    // the API agree on their status and numbers).
    let dirs: Vec<String> = ["etc", "srv", "lib"]
        .iter()
        .map(|d| {
            let dir = c.dir().join(d);
            bcm_tests::tree::make_tree(&dir, 60);
            dir.to_string_lossy().into_owned()
        })
        .collect();
    let plan = post(
        "/api/v1/plans",
        json!({"name": "etc", "source_node": 1, "paths": [dirs[0], dirs[1]], "schedule": "0 3 * * *"}),
    );
    let b1 = post("/api/v1/backups", json!({"plan": plan["id"]}));
    let b2 = post(
        "/api/v1/backups",
        json!({"source_node": 2, "paths": [dirs[2]]}),
    );
    for b in [b1, b2] {
        let ended = c.wait_backup(f, b["id"].as_u64().unwrap(), secs(60));
        assert_eq!(ended.status.as_str(), "succeeded", "{ended:?}");
    }

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

    // Every table equals what the API lists at the path of the same name, in the
    // columns named (the first is the key that matches rows up).
    let cid = cluster["cluster_id"].as_str().unwrap();
    let q = |sql: &str| pg.rows(&sql.replace("$CID", &format!("'{cid}'"))).unwrap();
    let n = c.leader().unwrap();
    for table in [
        "users: id name enabled groups",
        "nodes: id name api_addr rpc_addr roles enabled labels status",
        "config: key value version",
        "plans: id name source_node paths schedule keep_last replicas enabled",
        "backups: id plan plan_name source_node paths status size_bytes storage_nodes error \
         replicas files stored_bytes attempt",
    ] {
        let (table, columns) = table.split_once(": ").unwrap();
        let fields: Vec<&str> = columns.split_whitespace().collect();
        let rows = q(&format!("SELECT * FROM {table} WHERE cluster_id = $CID"));
        let items = api_items(&c, n, &format!("/api/v1/{table}"));
        assert_eq!(
            project(&rows, fields[0], &fields),
            project(&items, fields[0], &fields),
            "{table}"
        );
    }
    // Groups, with their permissions in one order on both sides.
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
    assert_eq!(
        q("SELECT * FROM restores WHERE cluster_id = $CID").len(),
        api_items(&c, n, "/api/v1/restores").len(),
        "restores"
    );

    // Placement in SQL: which storage node holds which backup, with its numbers.
    let held = q("SELECT r.backup, n.name, b.files, b.stored_bytes \
                    FROM backup_replicas r \
                    JOIN nodes n ON n.cluster_id = r.cluster_id AND n.id = r.node_id \
                    JOIN backups b ON b.cluster_id = r.cluster_id AND b.id = r.backup \
                   WHERE r.cluster_id = $CID ORDER BY r.backup, n.name");
    let mut want = Vec::new();
    for b in api_items(&c, n, "/api/v1/backups") {
        for node in b["storage_nodes"].as_array().unwrap() {
            want.push(json!({"backup": b["id"], "name": format!("node-{node}"),
                             "files": b["files"], "stored_bytes": b["stored_bytes"]}));
        }
    }
    want.sort_by_key(|v| (v["backup"].as_u64(), v["name"].to_string()));
    assert!(!want.is_empty());
    assert_eq!(held, want, "backup_replicas");

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

    // The audit log: the admin's login and its writes, with who and from where,
    // each row as the API shows the record; no password in any of them.
    let audit = q(
        "SELECT id, actor, addr, action, target, detail, outcome, reason \
                     FROM audit WHERE cluster_id = $CID ORDER BY id",
    );
    let fields = [
        "id", "actor", "addr", "action", "target", "detail", "outcome", "reason",
    ];
    let api_audit = project(&api_items(&c, n, "/api/v1/audit"), "id", &fields);
    for row in &audit {
        assert_eq!(
            project(std::slice::from_ref(row), "id", &fields)
                .values()
                .next(),
            api_audit.get(&row["id"].to_string()),
            "audit row {row}"
        );
    }
    let has = |action: &str, target: &str| {
        audit.iter().any(|r| {
            r["action"] == action
                && r["target"] == target
                && r["actor"] == "admin"
                && r["addr"] == "127.0.0.1"
                && r["outcome"] == "ok"
        })
    };
    assert!(has("login", "admin"), "{audit:?}");
    assert!(has("users.create", "alice"), "{audit:?}");
    assert!(has("config.set", "retention.days"), "{audit:?}");
    let leaked = pg.psql(&format!(
        "SELECT count(*) FROM audit WHERE concat_ws(' ', actor, target, detail, reason) \
         LIKE '%{PASSWORD}%' OR concat_ws(' ', actor, target, detail, reason) LIKE '%{ADMIN_PASSWORD}%'"
    )).unwrap();
    assert_eq!(leaked, "0");

    // The lag is visible in /metrics on the leader.
    let text = c.metrics(n).unwrap();
    assert!(text.contains("bcm_snapshot_export_lag_entries"), "{text}");
}

#[test]
fn writes_keep_succeeding_while_postgres_is_down_and_the_export_catches_up() {
    let mut pg = Postgres::start("outage");
    let c = cluster_exporting_to(&pg, "pg-outage");
    let n = c.followers()[0];
    let first = put_ok(&c, n, "before", &json!(1));
    wait_exported(&c, n, first);

    pg.stop();
    let mut last = 0;
    for i in 0..20 {
        // Each write is acknowledged with Postgres down.
        last = put_ok(&c, n, &format!("during/{i}"), &json!(i));
    }
    // The failure is reported, and reads and writes go on.
    let ex = wait_export_error(&c, n, "", "the export error to show");
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
    let c = cluster_exporting_to(&pg, "pg-restore");
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
        last = put_ok(&c, n, &format!("dr/{i}"), &json!({"i": i}));
        acked.insert(format!("dr/{i}"), json!({"i": i}));
    }
    wait_exported(&c, n, last);

    // Every disk is lost.
    for id in c.all_nodes() {
        c.kill(id);
    }

    // A restore refuses a data directory that is not empty...
    let (ok, text) = restore_from_postgres(&c, &[], ("BCM_LOG__FORMAT", "human"));
    assert!(!ok && text.contains("not empty"), "{text}");
    // ...and a database that holds no snapshot.
    pg.psql("CREATE DATABASE empty OWNER bcm").unwrap();
    let empty_dir = tempfile::tempdir().unwrap();
    let data_dir = empty_dir.path().join("data");
    let (ok, text) = restore_from_postgres(
        &c,
        &["--data-dir", &data_dir.to_string_lossy()],
        ("BCM_POSTGRES__URL", &pg.url_of("empty")),
    );
    assert!(!ok && text.contains("no bcm snapshot"), "{text}");

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
    wait_for(
        secs(30),
        "the members to join the restored node as voters",
        || Ok(c.cluster(1)?["members"].clone()),
        |members| {
            let voters = members
                .as_array()
                .map(|m| m.iter().filter(|m| m["voter"] == true).count());
            voters == Some(3)
        },
    );
    // And the cluster takes new writes.
    put_ok(&c, 2, "after/restore", &json!(true));
}

#[test]
fn nodes_starting_at_once_against_an_empty_database_all_migrate_and_come_up() {
    let pg = Postgres::start("migrate");
    let c = cluster_exporting_to(&pg, "pg-migrate");
    for id in c.all_nodes() {
        c.wait_for_log(id, "schema up to date", secs(20));
    }
    // Every migration in migrations/ applied once, by whichever node got there first.
    let applied = pg
        .rows("SELECT version, success FROM _sqlx_migrations ORDER BY version")
        .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    assert_eq!(applied.len(), files, "{applied:?}");
    for (i, m) in applied.iter().enumerate() {
        assert_eq!(m["version"], i as u64 + 1, "{applied:?}");
        assert_eq!(m["success"], true, "{applied:?}");
    }
    let n = c.leader().unwrap();
    let written = c.put_config(n, "migrated", &json!(1)).unwrap();
    wait_exported(&c, n, written.json()["version"].as_u64().unwrap());
}

#[test]
fn a_leader_killed_during_an_export_leaves_postgres_consistent() {
    let pg = Postgres::start("leader-change");
    let c = cluster_exporting_to(&pg, "pg-leader-change");
    // A state big enough that an export takes a while.
    let big = "x".repeat(4000);
    let mut versions = BTreeMap::new();
    let writer = c.leader().unwrap();
    for i in 0..400 {
        let key = format!("big/{i:04}");
        versions.insert(key.clone(), put_ok(&c, writer, &key, &json!(big)));
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
        c.while_killed(leader, || {
            let next = c.wait_for_new_leader(leader);
            let key = format!("after-kill/{round}");
            versions.insert(key.clone(), put_ok(&c, next, &key, &json!(round)));
        });
    }

    // Once the new leader exported everything, Postgres holds one consistent state:
    // the newest snapshot row, and tables that match exactly the writes at or below
    // its index.
    let n = c.leader().unwrap();
    let last = *versions.values().max().unwrap();
    wait_exported(&c, n, last);
    let number = |sql: &str| -> u64 { pg.psql(sql).unwrap().parse().unwrap() };
    let newest = number("SELECT max(last_log_index) FROM snapshots");
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
    let max_version = number("SELECT max(version) FROM config");
    assert!(
        max_version <= newest,
        "a row newer ({max_version}) than the newest snapshot ({newest})"
    );
    let kept = number("SELECT count(*) FROM snapshots");
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
    let written = put_ok(&c, 1, "over-tls", &json!(7));
    wait_exported(&c, 1, written);
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
        let what = format!("{name}: the export error to show");
        let ex = wait_export_error(&c, 1, why, &what);
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
