//! The failed-login limiter as a guesser meets it: the client's address behind
//! a reverse proxy (believed only from a trusted one).

use bcm_tests::serde_json::json;
use bcm_tests::{Cluster, Reply};
use reqwest::Method;

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
