//! The failed-login limiter as a guesser meets it: the client's address behind
//! a reverse proxy (believed only from a trusted one), limits that hold across
//! the cluster however the guesses are spread and however many come at once, and
//! that one address cannot turn against a user.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::thread;

use bcm_tests::serde_json::json;
use bcm_tests::{Cluster, Reply};
use reqwest::Method;

use super::{create_user, login, wait_user_on};
use crate::PASSWORD;

/// The harness's own address is the trusted proxy: it sends `X-Forwarded-For`
/// as HAProxy would. Any other loopback address is an ordinary client.
const PROXY: &str = "[api]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";

/// A wrong-password login as `name` on `node`, sent from `source` (a loopback
/// address) with `X-Forwarded-For: xff` when given.
fn guess(c: &Cluster, node: u64, source: &str, xff: Option<&str>, name: &str) -> Reply {
    login_as(c, node, source, xff, name, "not-the-password-at-all")
}

fn login_as(
    c: &Cluster,
    node: u64,
    source: &str,
    xff: Option<&str>,
    name: &str,
    password: &str,
) -> Reply {
    let mut req = c
        .request(node, Method::POST, "/api/v1/auth/login")
        .from_address(source)
        .json(&json!({"username": name, "password": password}));
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    c.send(req).unwrap()
}

/// A login through the web UI's form (`POST /login`) as `name`, from `source` with
/// `X-Forwarded-For: xff`: 200 once logged in (the redirect followed), else the
/// refusal's status (the form again).
fn ui_login(c: &Cluster, node: u64, xff: &str, name: &str, password: &str) -> u16 {
    let form = format!("csrf=double-submit&next=%2F&username={name}&password={password}");
    let req = c
        .request(node, Method::POST, "/login")
        .header("cookie", "bcm_login=double-submit")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", xff)
        .raw_body(form);
    c.send(req).unwrap().status
}

/// Sends `n` wrong-password logins for distinct names (`prefix-<i>`), each from
/// `source` with the `X-Forwarded-For` that `xff(i)` gives; returns the statuses.
fn spray(
    c: &Cluster,
    node: u64,
    n: usize,
    prefix: &str,
    source: &str,
    xff: impl Fn(usize) -> Option<String>,
) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let r = guess(c, node, source, xff(i).as_deref(), &format!("{prefix}-{i}"));
            assert!(
                [401, 429].contains(&r.status),
                "guess {i} from {source} ({:?}): {r}",
                xff(i)
            );
            r.status
        })
        .collect()
}

#[test]
fn x_forwarded_for_names_the_client_only_through_a_trusted_proxy() {
    let c = Cluster::builder()
        .name("limiter-proxy")
        .voters(3)
        .node_toml(PROXY)
        .start();
    let n = c.followers()[0];

    // Through the trusted proxy, each forwarded address is a client of its own:
    // 40 failed logins from 40 clients, none of them near its limit of 30.
    let through_proxy = spray(&c, n, 40, "via-proxy", "127.0.0.1", |i| {
        Some(format!("198.51.100.{i}"))
    });
    c.log(format!("40 clients through the proxy: {through_proxy:?}"));
    assert!(
        through_proxy.iter().all(|s| *s == 401),
        "clients behind the proxy were limited together: {through_proxy:?}"
    );

    // A client that is not a trusted proxy cannot pick its address: its header
    // is ignored, and its own address (127.0.0.2) is stopped at 30 failures.
    let untrusted = spray(&c, n, 40, "untrusted", "127.0.0.2", |i| {
        Some(format!("203.0.113.{i}"))
    });
    c.log(format!(
        "40 guesses from 127.0.0.2 with made-up headers: {untrusted:?}"
    ));
    let first = untrusted.iter().position(|s| *s == 429);
    assert_eq!(
        first,
        Some(30),
        "the untrusted client's 31st failure: {untrusted:?}"
    );

    // Nor can a client behind the proxy, by sending the header itself: the proxy
    // appends the address it saw, and the right-most untrusted hop counts.
    let made_up = spray(&c, n, 40, "made-up", "127.0.0.1", |i| {
        Some(format!("10.{i}.0.1, 192.0.2.77"))
    });
    c.log(format!(
        "40 guesses from 192.0.2.77 with made-up first hops: {made_up:?}"
    ));
    let first = made_up.iter().position(|s| *s == 429);
    assert_eq!(first, Some(30), "192.0.2.77's 31st failure: {made_up:?}");
}

/// Asserts a 429 with a Retry-After of 1 to 60 seconds.
fn assert_limited(r: &Reply, what: &str) {
    assert_eq!(r.status, 429, "{what}: {r}");
    let retry = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry.is_some_and(|s| (1..=60).contains(&s)),
        "{what}: Retry-After {retry:?}"
    );
}

#[test]
fn ten_guesses_for_a_name_spread_over_every_node_lock_it_on_every_node() {
    let c = Cluster::builder()
        .name("limiter-cluster")
        .voters(3)
        .node_toml(PROXY)
        .start();
    let nodes = c.all_nodes();
    let ivan = create_user(&c, nodes[0], "ivan", &["viewer"]);
    for &n in &nodes {
        wait_user_on(&c, n, ivan, "created", |r| r.status == 200);
    }

    // Ten wrong passwords for ivan, each from a client of its own, taking turns
    // over the three nodes: each is checked.
    for i in 0..10 {
        let n = nodes[i % nodes.len()];
        let r = guess(&c, n, "127.0.0.1", Some(&format!("198.51.100.{i}")), "ivan");
        assert_eq!(r.status, 401, "guess {i} on node {n}: {r}");
    }
    // Now every node refuses ivan, from anywhere, his right password too.
    for &n in &nodes {
        let r = guess(&c, n, "127.0.0.1", Some("198.51.100.200"), "ivan");
        assert_limited(&r, &format!("an 11th guess on node {n}"));
        let r = login_as(&c, n, "127.0.0.3", None, "ivan", PASSWORD);
        assert_limited(&r, &format!("ivan himself on node {n}"));
    }
    // Other names are not touched.
    login(&c, nodes[1], "admin", bcm_tests::ADMIN_PASSWORD);
}

#[test]
fn forty_concurrent_guesses_get_at_most_ten_password_checks() {
    let c = Cluster::builder()
        .name("limiter-burst")
        .voters(3)
        .node_toml(PROXY)
        .start();
    let nodes = c.all_nodes();
    let judy = create_user(&c, nodes[0], "judy", &["viewer"]);
    for &n in &nodes {
        wait_user_on(&c, n, judy, "created", |r| r.status == 200);
    }

    // 40 wrong passwords for judy at once, from 40 clients, over the three nodes.
    let go = Arc::new(Barrier::new(40));
    let guesses: Vec<_> = (0..40)
        .map(|i| {
            let (api, go) = (c.api(), go.clone());
            let n = nodes[i % nodes.len()];
            thread::spawn(move || {
                let req = api
                    .request(n, Method::POST, "/api/v1/auth/login")
                    .header("x-forwarded-for", &format!("198.51.100.{i}"))
                    .json(&json!({"username": "judy", "password": format!("guess-{i}-of-40")}));
                go.wait();
                api.send(req).map(|r| r.status)
            })
        })
        .collect();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for g in guesses {
        let status = g.join().unwrap().unwrap();
        *statuses.entry(status).or_default() += 1;
    }
    c.log(format!("40 concurrent guesses for judy: {statuses:?}"));
    let checked = statuses.get(&401).copied().unwrap_or(0);
    assert!(
        (1..=10).contains(&checked),
        "{checked} of 40 concurrent guesses had their password checked: {statuses:?}"
    );
    assert_eq!(
        statuses.get(&429).copied().unwrap_or(0),
        40 - checked,
        "every other guess is refused with 429: {statuses:?}"
    );
}

#[test]
fn an_address_hammering_admin_is_stopped_before_admin_is_locked_out() {
    let c = Cluster::builder()
        .name("limiter-lockout")
        .voters(3)
        .node_toml(PROXY)
        .start();
    let nodes = c.all_nodes();

    // One client behind the proxy guesses admin's password 20 times over the
    // three nodes: after 5 failures it is refused (its own limit for that name).
    let statuses: Vec<u16> = (0..20)
        .map(|i| {
            let n = nodes[i % nodes.len()];
            guess(&c, n, "127.0.0.1", Some("203.0.113.66"), "admin").status
        })
        .collect();
    c.log(format!(
        "20 guesses for admin from one client: {statuses:?}"
    ));
    assert_eq!(
        statuses,
        [vec![401; 5], vec![429; 15]].concat(),
        "one client's guesses for admin"
    );
    let r = guess(&c, nodes[0], "127.0.0.1", Some("203.0.113.66"), "admin");
    assert_limited(&r, "the hammering client");
    // The web UI's login form is the same path, with the browser's address.
    let status = ui_login(
        &c,
        nodes[1],
        "203.0.113.66",
        "admin",
        bcm_tests::ADMIN_PASSWORD,
    );
    assert_eq!(status, 429, "the hammering client at the login form");
    let status = ui_login(
        &c,
        nodes[1],
        "198.51.100.21",
        "admin",
        bcm_tests::ADMIN_PASSWORD,
    );
    assert_eq!(status, 200, "admin at the login form, elsewhere");

    // Admin, elsewhere, still logs in on every node: through the proxy, and
    // straight from another address.
    for &n in &nodes {
        let r = login_as(
            &c,
            n,
            "127.0.0.1",
            Some("198.51.100.20"),
            "admin",
            bcm_tests::ADMIN_PASSWORD,
        );
        assert_eq!(r.status, 200, "admin through the proxy on node {n}: {r}");
        let r = login_as(&c, n, "127.0.0.2", None, "admin", bcm_tests::ADMIN_PASSWORD);
        assert_eq!(r.status, 200, "admin from 127.0.0.2 on node {n}: {r}");
    }
}
