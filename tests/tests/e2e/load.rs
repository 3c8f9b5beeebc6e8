//! Load held: bursts of legal requests (large writes, slow connections, password
//! guessing, made-up methods) never take the cluster down, and what was
//! acknowledged stays.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{metric, wait_until, Cluster, ADMIN_PASSWORD};
use reqwest::Method;

/// A value whose request body `{"value":"<marker>xxx..."}` is just under the
/// public API's 1 MiB body limit.
fn big_value(marker: &str) -> String {
    let body_limit = 1024 * 1024;
    let pad = body_limit - 64 - marker.len();
    format!("{marker}{}", "x".repeat(pad))
}

/// `writer-n-` at the start of a big value: which write it was.
fn write_number(value: &Value) -> Option<u64> {
    let s = value.as_str()?;
    let rest = s.split('-').nth(1)?;
    rest.parse().ok()
}

/// Every node's Raft term at one moment (0 where a node does not answer): the same
/// terms later mean that no election happened in between.
#[derive(Debug, PartialEq)]
struct Terms(BTreeMap<u64, u64>);

impl Terms {
    fn now(cluster: &Cluster) -> Terms {
        let term = |n| {
            cluster
                .cluster(n)
                .ok()
                .and_then(|c| c.get("term").and_then(Value::as_u64))
                .unwrap_or(0)
        };
        Terms(
            cluster
                .all_nodes()
                .into_iter()
                .map(|n| (n, term(n)))
                .collect(),
        )
    }

    /// Asserts that no node's term moved since these were read.
    fn assert_unchanged(&self, cluster: &Cluster, what: &str) {
        assert_eq!(*self, Terms::now(cluster), "{what}");
    }
}

/// Three nodes before the load: the cluster, its leader, a follower, and every
/// node's term.
fn three_nodes() -> (Cluster, u64, u64, Terms) {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = cluster.followers()[0];
    let before = Terms::now(&cluster);
    (cluster, leader, follower, before)
}

/// Resident set size and its peak (VmHWM), in KiB, of a process.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_burst_of_large_writes_through_every_node_keeps_the_cluster_writing() {
    let (cluster, leader, _, before) = three_nodes();
    let api = cluster.api();
    api.log(format!(
        "terms before the load: {before:?}, leader {leader}"
    ));

    // 100 writers of values just under the body limit, through all three nodes, for
    // 20 s. Each writes its own key; a 503 is followed as a client would (a short
    // pause, as its Retry-After asks for a pause).
    let until = Instant::now() + Duration::from_secs(20);
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let answers: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let nodes = api.all_nodes();
    let writers: Vec<_> = (0..100)
        .map(|w| {
            let (api, acked, answers, violations) = (
                api.clone(),
                acked.clone(),
                answers.clone(),
                violations.clone(),
            );
            let node = nodes[w % nodes.len()];
            thread::spawn(move || {
                let key = format!("big{w}");
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    // The body as text: serde_json on 1 MiB in the (unoptimised)
                    // test binary would take more CPU than the cluster under test.
                    let body = format!("{{\"value\":\"{}\"}}", big_value(&format!("{w}-{n}-")));
                    let req = api
                        .request(node, Method::PUT, &format!("/api/v1/config/{key}"))
                        .header("content-type", "application/json")
                        .raw_body(body)
                        .timeout(Duration::from_secs(15));
                    let reply = api.send_authed(node, req);
                    let status = match &reply {
                        Ok(r) => r.status,
                        Err(e) => {
                            violations.lock().unwrap().push(format!("{key} #{n}: {e}"));
                            0
                        }
                    };
                    *answers.lock().unwrap().entry(status).or_default() += 1;
                    match reply {
                        Ok(r) if r.is_success() => {
                            acked.lock().unwrap().insert(key.clone(), n);
                        }
                        Ok(r) if r.status == 503 => {
                            if r.headers.get("retry-after").is_none() {
                                violations
                                    .lock()
                                    .unwrap()
                                    .push(format!("{key} #{n}: 503 without Retry-After: {r}"));
                            }
                            thread::sleep(Duration::from_millis(100));
                        }
                        Ok(r) if r.status == 413 || r.status == 507 => {}
                        Ok(r) => violations.lock().unwrap().push(format!("{key} #{n}: {r}")),
                        Err(_) => {}
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    let answers = answers.lock().unwrap().clone();
    api.log(format!("answers by status: {answers:?}"));
    let violations = violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{} answers were neither 2xx, 503 with Retry-After, 413 nor 507; the first: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 50,
        "only {} of 100 writers had a write acknowledged: {answers:?}",
        acked.len()
    );

    // Afterwards a small write succeeds within 2 s through every node.
    for n in api.all_nodes() {
        let started = Instant::now();
        let reply = api
            .put_config_timeout(n, &format!("after/{n}"), &json!(n), Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("a small write through node {n} after the load: {e}"));
        assert!(
            reply.is_success(),
            "a small write through node {n} after the load: {reply}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // No leader change during the load.
    before.assert_unchanged(&cluster, "the term moved under load");
    assert_eq!(cluster.wait_for_leader(), leader);

    // Every acknowledged write is readable, on every node: its key holds it or a
    // later write of the same writer (one whose answer was lost or a 503 that was
    // committed anyway).
    for n in api.all_nodes() {
        for (key, last) in &acked {
            let path = format!("/api/v1/config/{key}?consistency=linearizable");
            let got = api.get_json(n, &path).expect("read an acknowledged key");
            let seen = write_number(&got["value"]).expect("a writer's value");
            assert!(
                seen >= *last,
                "node {n}: {key} holds write #{seen}, but #{last} was acknowledged"
            );
        }
    }
    cluster.assert_at_most_one_leader_per_term();
}

#[test]
fn a_follower_hundreds_of_large_entries_behind_catches_up_while_writes_go_on() {
    let (cluster, leader, follower, before) = three_nodes();
    let api = cluster.api();
    cluster.pause(follower);
    // 320 entries of 256 KiB, one at a time (so one entry each): 80 MiB, more than
    // openraft's 300-entry payload would carry in one request to the follower.
    let value = "y".repeat(256 * 1024);
    for i in 0..320 {
        let reply = api
            .put_config(
                leader,
                &format!("bulk/{}", i % 50),
                &json!(format!("{i}-{value}")),
            )
            .expect("a bulk write");
        assert!(reply.is_success(), "bulk write {i}: {reply}");
    }
    let target = api.cluster(leader).unwrap()["commit_index"]
        .as_u64()
        .unwrap();
    cluster.resume(follower);

    // Small writes go on meanwhile; the follower catches up with them.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, stop) = (api.clone(), stop.clone());
        thread::spawn(move || {
            let mut ok = 0;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                if api
                    .put_config(leader, &format!("small/{}", i % 10), &json!(i))
                    .is_ok_and(|r| r.is_success())
                {
                    ok += 1;
                }
            }
            ok
        })
    };
    wait_until(
        Duration::from_secs(60),
        &format!("node {follower} to apply the leader's index {target}"),
        || {
            let applied = api
                .metrics(follower)
                .ok()
                .and_then(|m| metric(&m, "bcm_raft_applied_index"))
                .unwrap_or(0.0) as u64;
            if applied >= target {
                Ok(())
            } else {
                Err(format!("applied {applied}"))
            }
        },
    );
    stop.store(true, Ordering::SeqCst);
    let small = writer.join().unwrap();
    assert!(
        small > 0,
        "no small write succeeded while the follower caught up"
    );
    // What it applied is what was written: the last bulk value, read locally.
    let got = api.config_value(follower, "bulk/19").unwrap().unwrap();
    assert!(
        got.as_str().unwrap().starts_with("319-"),
        "bulk/19 holds the last write"
    );
    before.assert_unchanged(&cluster, "no election while it caught up");
    let log = std::fs::read_to_string(cluster.log_path(leader)).unwrap();
    assert!(
        !log.contains("answered HTTP 413"),
        "the leader sent a follower more than it accepts"
    );
}

/// Opens `n` connections to `addr` that send part of a request's headers and
/// then nothing (slowloris); some send nothing at all.
fn slow_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(addr).expect("connect a slow client");
            if i % 2 == 0 {
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ");
            }
            s
        })
        .collect()
}

/// Whether the server closed `s` (a read sees the end, or a reset).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => true,
        // A response (408) and then the end: closed.
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

/// Asserts that the server closes every one of `slow`, opened at `opened`, after its
/// 10 s header timeout has passed, and not before.
fn assert_closed_after_the_header_timeout(slow: &mut [TcpStream], opened: Instant) {
    let deadline = opened + Duration::from_secs(14);
    let mut open: Vec<usize> = (0..slow.len()).collect();
    while !open.is_empty() && Instant::now() < deadline {
        open.retain(|i| !closed_by_server(&mut slow[*i]));
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        open.is_empty(),
        "{} of {} slow connections were still open {:?} after they were opened",
        open.len(),
        slow.len(),
        opened.elapsed()
    );
    assert!(
        opened.elapsed() > Duration::from_secs(9),
        "closed before the header timeout"
    );
}

#[test]
fn slow_connections_that_never_finish_their_headers_hold_neither_listener() {
    let (cluster, leader, node, before) = three_nodes();
    let api = cluster.api();
    let host = |url: String| url.trim_start_matches("http://").to_string();
    let opened = Instant::now();
    let mut slow = slow_connections(&host(api.api_url(node)), 500);
    slow.extend(slow_connections(&host(api.rpc_url(leader)), 100));
    api.log(format!("{} slow connections open", slow.len()));

    // Normal requests are still answered within 1 s, on the same node.
    for i in 0..5 {
        for (what, reply) in [
            ("readyz", api.get(node, "/readyz")),
            (
                "a write",
                api.put_config(node, &format!("amid/{i}"), &json!(i)),
            ),
        ] {
            let reply = reply.unwrap_or_else(|e| panic!("{what} amid slow connections: {e}"));
            assert!(reply.is_success(), "{what}: {reply}");
            assert!(
                reply.elapsed < Duration::from_secs(1),
                "{what} took {:?} amid slow connections",
                reply.elapsed
            );
        }
    }
    // The server closes them once the header timeout (10 s) has passed.
    assert_closed_after_the_header_timeout(&mut slow, opened);
    before.assert_unchanged(&cluster, "no election meanwhile");
}

#[test]
fn a_burst_of_wrong_password_logins_keeps_memory_bounded_and_the_cluster_serving() {
    let (cluster, leader, node, before) = three_nodes();
    let api = cluster.api();
    let pid = cluster.pid(node).unwrap();
    let (rss_before, _) = rss_kib(pid);
    let url = format!("{}/api/v1/auth/login", api.api_url(node));

    // 300 concurrent wrong-password logins from ten addresses (so that the
    // per-address limit alone does not stop them), names all different.
    let go = Arc::new(std::sync::Barrier::new(301));
    let statuses: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let guesses: Vec<_> = (0..300)
        .map(|i| {
            let (go, statuses, url) = (go.clone(), statuses.clone(), url.clone());
            thread::spawn(move || {
                let from: std::net::IpAddr = format!("127.0.0.{}", 2 + i % 10).parse().unwrap();
                let client = reqwest::blocking::Client::builder()
                    .local_address(from)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                go.wait();
                let status = client
                    .post(&url)
                    .json(&json!({"username": format!("nobody{i}"), "password": "wrong-guess-123"}))
                    .send()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                *statuses.lock().unwrap().entry(status).or_default() += 1;
            })
        })
        .collect();
    go.wait();

    // Meanwhile: the leader keeps its quorum (no heartbeat starves), a correct
    // login and a write succeed (a 503 "busy checking passwords" is retried, as
    // its Retry-After says).
    let mut max_quorum_ack = 0.0f64;
    let mut logged_in = None;
    let mut wrote = false;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) && (logged_in.is_none() || !wrote) {
        if let Some(ms) = api
            .metrics(leader)
            .ok()
            .and_then(|m| metric(&m, "bcm_raft_millis_since_quorum_ack"))
        {
            max_quorum_ack = max_quorum_ack.max(ms);
        }
        if logged_in.is_none() {
            let r = api.login_with(node, "admin", ADMIN_PASSWORD).unwrap();
            match r.status {
                200 => logged_in = Some(started.elapsed()),
                503 => assert!(r.headers.get("retry-after").is_some(), "{r}"),
                _ => panic!("a correct login amid the guesses: {r}"),
            }
        }
        if !wrote {
            let r = api.put_config(node, "amid/logins", &json!(1)).unwrap();
            assert!(r.is_success(), "a write amid the guesses: {r}");
            wrote = true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    for g in guesses {
        g.join().unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    api.log(format!(
        "guesses answered {statuses:?}; admin logged in after {logged_in:?}; max ms since quorum ack {max_quorum_ack}"
    ));
    assert!(logged_in.is_some(), "the correct login never succeeded");
    let allowed: BTreeSet<u16> = [401, 429, 503].into();
    assert!(
        statuses.keys().all(|s| allowed.contains(s)),
        "guesses got {statuses:?}"
    );
    // The bound: argon2 runs one per core (19 MiB each) and at most 64 wait; with
    // the process's own memory, the peak stays well under 160 MiB above where it was.
    let (_, peak) = rss_kib(pid);
    api.log(format!("RSS before {rss_before} KiB, peak {peak} KiB"));
    assert!(
        peak < rss_before + 160 * 1024,
        "peak RSS {peak} KiB, from {rss_before} KiB before the guesses"
    );
    assert!(
        max_quorum_ack < 500.0,
        "the leader went {max_quorum_ack} ms without a quorum's ack"
    );
    before.assert_unchanged(&cluster, "no election meanwhile");
}

#[test]
fn made_up_http_methods_do_not_grow_the_metrics() {
    let cluster = Cluster::start(1);
    let api = cluster.api();
    let send = |method: &str, path: &str| {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        api.send(api.request(1, m, path)).expect("an answer");
    };
    // Every route and class seen once, so that only the methods differ later.
    send("BREW", "/api/v1/config/x");
    send("BREW", "/nowhere");
    api.metrics(1).unwrap();
    let shape = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with("bcm_http_request"))
            .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string())
            .collect()
    };
    let before = shape(&api.metrics(1).unwrap());
    for i in 0..1000 {
        let path = if i % 2 == 0 {
            "/api/v1/config/x"
        } else {
            "/nowhere"
        };
        send(&format!("M{i}X"), path);
    }
    let after_text = api.metrics(1).unwrap();
    let after = shape(&after_text);
    assert_eq!(
        after.difference(&before).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "new series appeared"
    );
    assert!(after_text.contains("method=\"other\""));
}

#[test]
fn config_quota_answers_507_naming_it_and_pages_stay_bounded() {
    let cluster = Cluster::start(1);
    let api = cluster.api();
    // 1 MiB values until the 128 MiB quota of config bytes is reached.
    let mut written = 0;
    let refused = loop {
        let reply = api
            .put_config(1, &format!("q/{written:03}"), &json!(big_value("q-")))
            .unwrap();
        if reply.status == 507 {
            break reply;
        }
        assert!(reply.is_success(), "write {written}: {reply}");
        written += 1;
        assert!(written < 200, "no quota after {written} MiB");
    };
    assert_eq!(refused.content_type(), "application/problem+json");
    assert_eq!(refused.json()["quota"], "config.bytes", "{refused}");
    assert!(written >= 120, "the quota came after {written} MiB");
    // A page is bounded in bytes; total still counts every key; pages continue.
    let page = api.get_json(1, "/api/v1/config?limit=1000").unwrap();
    let items = page["items"].as_array().unwrap().len();
    assert!(
        (1..=4).contains(&items),
        "{items} MiB-sized items in one page"
    );
    assert_eq!(page["total"], written);
    let next = api
        .get_json(1, &format!("/api/v1/config?limit=1000&offset={items}"))
        .unwrap();
    assert_ne!(next["items"][0]["key"], page["items"][0]["key"]);
    // Deleting gives room back.
    let del = api
        .call(1, Method::DELETE, "/api/v1/config/q/000", None)
        .unwrap();
    assert!(del.is_success(), "{del}");
    let again = api
        .put_config(1, "q/again", &json!(big_value("q-")))
        .unwrap();
    assert!(again.is_success(), "{again}");
}

#[test]
fn a_value_that_grows_past_the_limit_when_stored_is_refused_with_413() {
    let cluster = Cluster::start(1);
    let api = cluster.api();
    // 1e15 is stored as 1000000000000000.0: the body fits, the stored value does not.
    let numbers = vec!["1e15"; 180_000].join(",");
    let body = format!("{{\"value\":[{numbers}]}}");
    assert!(body.len() < 1024 * 1024);
    let req = api
        .request(1, Method::PUT, "/api/v1/config/grows")
        .header("content-type", "application/json")
        .raw_body(body);
    let reply = api.send_authed(1, req).unwrap();
    assert_eq!(reply.status, 413, "{reply}");
    assert_eq!(reply.json()["field"], "value");
    assert_eq!(api.config_value(1, "grows").unwrap(), None);
}
