//! What monitoring sees: Prometheus metrics, health probes, the leader probe a load
//! balancer uses, and the live event stream.

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{metric, Cluster, EventStream};

use crate::secs;

#[test]
fn metrics_and_health_probes_describe_the_cluster() {
    let c = Cluster::builder().name("observability").voters(3).start();
    let leader = c.wait_for_agreed_leader(secs(10));
    let f = c.followers()[0];

    // Exactly one node says it leads; the others answer 503; all name the same leader.
    let mut leading = Vec::new();
    for n in c.all_nodes() {
        let (status, body) = c.leader_status(n).unwrap();
        assert_eq!(body["node_id"], n, "/leader on node {n}: {body}");
        assert_eq!(
            body["leader_id"], leader,
            "/leader on node {n} names the leader: {body}"
        );
        match status {
            200 => leading.push(n),
            503 => {}
            other => panic!("/leader on node {n}: HTTP {other} {body}"),
        }
    }
    assert_eq!(leading, [leader], "nodes answering /leader with 200");

    // Every member is alive and ready.
    for n in c.all_nodes() {
        let h = c.get(n, "/healthz").unwrap();
        assert_eq!(h.status, 200, "/healthz on node {n}: {h}");
        let r = c.get(n, "/readyz").unwrap();
        assert_eq!(r.status, 200, "/readyz on node {n}: {r}");
    }

    // A client uses the config API on a follower; its metrics show the Raft state and
    // the latency of that route.
    let put = c.put_config(f, "metrics.probe", &json!(1)).unwrap();
    assert!(put.is_success(), "{put}");
    let version = put.json()["version"].as_u64().unwrap();
    let get = c.get_config(f, "metrics.probe").unwrap();
    assert_eq!(get.status, 200, "{get}");

    let reply = c.get(f, "/metrics").unwrap();
    assert_eq!(reply.status, 200, "{reply}");
    assert!(
        reply.content_type().starts_with("text/plain"),
        "/metrics is Prometheus text: {reply}"
    );
    let text = reply.body;
    let value = |name: &str| {
        metric(&text, name).unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{text}"))
    };
    let term = value("bcm_raft_term");
    let (_, leader_view) = c.leader_status(leader).unwrap();
    assert_eq!(
        json!(term as u64),
        leader_view["term"],
        "bcm_raft_term on node {f} vs the leader's term"
    );
    assert_eq!(
        value("bcm_raft_leader_id"),
        leader as f64,
        "bcm_raft_leader_id"
    );
    assert!(
        value("bcm_raft_commit_index") >= version as f64,
        "bcm_raft_commit_index below the write's version {version}:\n{text}"
    );
    assert!(
        value("bcm_raft_applied_index") >= version as f64,
        "bcm_raft_applied_index below the write's version {version}:\n{text}"
    );
    // The election timing (the harness keeps the shipped defaults), and a
    // follower that hears its leader.
    assert_eq!(value("bcm_raft_heartbeat_seconds"), 0.1, "{text}");
    assert_eq!(
        value("bcm_raft_election_timeout_min_seconds"),
        0.21,
        "{text}"
    );
    assert_eq!(
        value("bcm_raft_election_timeout_max_seconds"),
        0.31,
        "{text}"
    );
    assert_eq!(
        value("bcm_raft_leader_lease_seconds"),
        value("bcm_raft_election_timeout_max_seconds")
    );
    let since = value("bcm_raft_seconds_since_leader_contact");
    assert!(
        (0.0..2.0).contains(&since),
        "node {f} last heard its leader {since} s ago:\n{text}"
    );
    assert!(
        value("bcm_raft_leader_changes_total") >= 1.0,
        "a node that found its first leader counts a leader change:\n{text}"
    );
    for name in [
        "bcm_raft_term",
        "bcm_raft_leader_id",
        "bcm_raft_commit_index",
        "bcm_raft_applied_index",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} gauge")),
            "{name} is declared a gauge:\n{text}"
        );
    }
    assert!(
        text.contains("# TYPE bcm_raft_leader_changes_total counter"),
        "{text}"
    );

    let histogram: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bcm_http_request_duration_seconds_bucket{"))
        .filter(|l| l.contains("route=\"/api/v1/config/{*key}\""))
        .collect();
    for method in ["PUT", "GET"] {
        let inf = histogram
            .iter()
            .find(|l| {
                l.contains(&format!("method=\"{method}\""))
                    && l.contains("status=\"2xx\"")
                    && l.contains("le=\"+Inf\"")
            })
            .unwrap_or_else(|| {
                panic!("no +Inf bucket for {method} /api/v1/config/{{key}} 2xx:\n{text}")
            });
        let count: f64 = inf.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(count >= 1.0, "{inf}");
    }
}

#[test]
fn the_event_stream_reports_writes_made_elsewhere_and_a_new_leader() {
    let c = Cluster::builder().name("events").voters(3).start();
    let old_leader = c.wait_for_agreed_leader(secs(10));
    let followers = c.followers();
    let (watched, other) = (followers[0], followers[1]);
    let old_term = c.leader_status(old_leader).unwrap().1["term"]
        .as_u64()
        .unwrap();

    // A dashboard follows the events of one follower.
    let mut events = EventStream::connect(&c, watched).unwrap();

    // A write through another node shows up.
    let put = c
        .put_config(other, "events.probe", &json!("hello"))
        .unwrap();
    assert!(put.is_success(), "{put}");
    let version = put.json()["version"].clone();
    let ev = events.wait_for(secs(10), "config_changed for events.probe", |e| {
        e.event == "config_changed" && e.json()["key"] == "events.probe"
    });
    assert_eq!(ev.json()["version"], version, "{ev}");

    // The leader dies; the stream tells who leads now.
    c.kill(old_leader);
    let ev = events.wait_for(secs(15), "leader_changed naming a new leader", |e| {
        e.event == "leader_changed"
            && e.json()["leader_id"]
                .as_u64()
                .is_some_and(|l| l != old_leader)
    });
    let data: Value = ev.json();
    let new_leader = c.wait_for_agreed_leader(secs(10));
    assert_eq!(data["leader_id"], new_leader, "{ev}");
    assert!(
        data["term"].as_u64().is_some_and(|t| t > old_term),
        "the new leader's term is above {old_term}: {ev}"
    );
    c.log(format!(
        "events seen on node {watched}: {:?}",
        events
            .seen()
            .iter()
            .map(|e| e.event.as_str())
            .collect::<Vec<_>>()
    ));
}

/// A dashboard following one node sees users, groups, plans and backups change
/// wherever they were changed.
#[test]
fn the_event_stream_reports_user_group_plan_and_backup_changes() {
    use reqwest::Method;

    let c = Cluster::builder().name("events-catalog").voters(3).start();
    let followers = c.followers();
    let (watched, other) = (followers[0], followers[1]);
    let mut events = EventStream::connect(&c, watched).unwrap();

    let user = c
        .call(
            other,
            Method::POST,
            "/api/v1/users",
            Some(&json!({"name": "eve", "password": "a long enough passphrase", "groups": ["viewer"]})),
        )
        .unwrap();
    assert_eq!(user.status, 201, "{user}");
    let user_id = user.json()["id"].clone();
    events.wait_for(secs(10), "user_changed for eve", |e| {
        e.event == "user_changed" && e.json()["user_id"] == user_id
    });

    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/groups",
            Some(json!({"name": "auditors", "permissions": ["events.read"]})),
        ),
        (Method::DELETE, "/api/v1/groups/auditors", None),
    ] {
        let r = c.call(other, method.clone(), path, body.as_ref()).unwrap();
        assert!(r.is_success(), "{method} {path}: {r}");
        events.wait_for(
            secs(10),
            &format!("group_changed after {method} {path}"),
            |e| e.event == "group_changed" && e.json()["name"] == "auditors",
        );
    }

    let src = c.dir().join("srv");
    std::fs::create_dir_all(&src).unwrap();
    let plan = c
        .call(
            other,
            Method::POST,
            "/api/v1/plans",
            Some(&json!({"name": "nightly", "source_node": 1, "paths": [src]})),
        )
        .unwrap();
    assert_eq!(plan.status, 201, "{plan}");
    let plan_id = plan.json()["id"].clone();
    events.wait_for(secs(10), "plan_changed for nightly", |e| {
        e.event == "plan_changed" && e.json()["plan_id"] == plan_id
    });

    let backup = c
        .call(
            other,
            Method::POST,
            "/api/v1/backups",
            Some(&json!({"plan": plan_id})),
        )
        .unwrap();
    assert_eq!(backup.status, 202, "{backup}");
    let backup_id = backup.json()["id"].clone();
    let ev = events.wait_for(secs(10), "backup_changed for the new backup", |e| {
        e.event == "backup_changed" && e.json()["backup_id"] == backup_id
    });
    assert_eq!(ev.json()["status"], "pending", "{ev}");
}

#[test]
fn a_restarted_node_is_not_ready_until_the_leader_has_sent_it_entries() {
    // Frequent snapshots: f restarts from one, with the cluster formed in it.
    let c = Cluster::builder()
        .name("observability-restart-ready")
        .voters(3)
        .snapshot_every(3)
        .start();
    let leader = c.wait_for_agreed_leader(secs(10));
    let f = c.followers()[0];
    let g = c.followers()[1];
    for i in 0..10 {
        let put = c.put_config(f, &format!("filler-{i}"), &json!(i)).unwrap();
        assert!(put.is_success(), "{put}");
    }
    let put = c.put_config(f, "before-restart", &json!(1)).unwrap();
    assert!(put.is_success(), "{put}");

    // f comes back while no other member can answer: it knows the last leader from
    // its vote, but not the commit index, so it must not say it is ready. (First
    // it asks the others whether the cluster still has it, for up to a second:
    // not ready either.)
    c.kill(f);
    c.pause(leader);
    c.pause(g);
    c.restart(f);
    bcm_tests::wait_until(secs(20), "node f to wait for the leader's entries", || {
        if c.get(f, "/healthz")?.status != 200 {
            return Err("not up yet".into());
        }
        let r = c.get(f, "/readyz")?;
        assert_eq!(
            r.status, 503,
            "/readyz on a restarted node cut off from the others: {r}"
        );
        if r.body.contains("first entries") {
            Ok(())
        } else {
            Err(r.to_string())
        }
    });

    // Once the others answer again, it catches up and is ready.
    c.resume(leader);
    c.resume(g);
    c.wait_ready(f, secs(20));
    assert_eq!(c.config_value(f, "before-restart").unwrap(), Some(json!(1)));
}

#[test]
fn a_restarted_leader_is_ready_only_once_it_has_what_its_successor_committed() {
    let c = Cluster::builder()
        .name("observability-ready-caught-up")
        .voters(3)
        .start();
    let old = c.wait_for_agreed_leader(secs(10));
    let put = c.put_config(old, "before", &json!(1)).unwrap();
    assert!(put.is_success(), "{put}");
    // Long enough for the commit index to reach its disk: it restarts with the
    // cluster's state, not waiting for a leader to say what is committed.
    std::thread::sleep(secs(2));

    // The leader goes down and the others commit more than one AppendEntries
    // carries (about four values this size), so its catch-up takes several.
    c.kill(old);
    let leader = c.wait_for_new_leader(old);
    let big = "x".repeat(900 * 1024);
    for i in 0..40 {
        let put = c
            .put_config(leader, &format!("big-{i}"), &json!(big))
            .unwrap();
        assert!(put.is_success(), "{put}");
    }
    let put = c
        .put_config(leader, "after-the-big-ones", &json!(1))
        .unwrap();
    assert!(put.is_success(), "{put}");

    // It comes back (a follower: it takes no leadership back) while the others
    // cannot answer: it must not say it is ready.
    let others: Vec<u64> = c.all_nodes().into_iter().filter(|&n| n != old).collect();
    for &n in &others {
        c.pause(n);
    }
    c.restart(old);
    let until = std::time::Instant::now() + secs(3);
    let mut answered = 0;
    while std::time::Instant::now() < until {
        if let Ok(r) = c.get(old, "/readyz") {
            assert_eq!(r.status, 503, "/readyz on the old leader, cut off: {r}");
            answered += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(answered > 0, "node {old} never answered /readyz");
    assert_eq!(c.config_value(old, "before").unwrap(), Some(json!(1)));

    // A load balancer sends reads to a node as soon as it says it is ready: from
    // then on it serves everything acknowledged before it came back.
    for &n in &others {
        c.resume(n);
    }
    let deadline = std::time::Instant::now() + secs(60);
    loop {
        match c.get(old, "/readyz") {
            Ok(r) if r.status == 200 => break,
            Ok(r) => assert_eq!(r.status, 503, "{r}"),
            Err(_) => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node {old} never became ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        c.config_value(old, "after-the-big-ones").unwrap(),
        Some(json!(1)),
        "node {old} said it was ready without the last acknowledged write"
    );
    for i in [0, 39] {
        let v = c.config_value(old, &format!("big-{i}")).unwrap();
        assert_eq!(
            v.as_ref().and_then(Value::as_str).map(str::len),
            Some(big.len())
        );
    }
}

#[test]
fn a_leader_cut_off_from_the_majority_is_not_ready() {
    let c = Cluster::builder()
        .name("observability-cut-off")
        .voters(3)
        .start();
    let leader = c.wait_for_agreed_leader(secs(10));
    c.wait_ready(leader, secs(10));
    // A load balancer must stop sending to a leader that the others may have
    // replaced: once no majority has acknowledged it for a while, it says so.
    let others = c.followers();
    for &n in &others {
        c.pause(n);
    }
    bcm_tests::wait_until(
        secs(10),
        "the cut-off leader to say it is not ready",
        || {
            let r = c.get(leader, "/readyz")?;
            if r.status == 503 && r.body.contains("no majority of voters has acknowledged") {
                Ok(())
            } else {
                Err(r.to_string())
            }
        },
    );
    for &n in &others {
        c.resume(n);
    }
    c.wait_ready(leader, secs(20));
}
