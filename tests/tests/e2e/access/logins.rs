//! Logging in and out: failed logins rate-limited and all alike, and a token that
//! stops working on every node once its user is disabled, deleted or given a new
//! password, or once it is logged out.

use bcm_tests::serde_json::json;
use bcm_tests::{wait_for, Cluster, EventStream};
use reqwest::Method;

use super::{
    admin, as_user, create_user, delete_user, get_as, login, logout, me, patch_user, wait_user_on,
};
use crate::{secs, PASSWORD};

/// Asserts that `node` refuses `token` (`what` it is) with a 401 problem, both on
/// a route any valid token may use and on one that needs a permission.
fn assert_token_refused(c: &Cluster, node: u64, token: &str, what: &str) {
    for path in ["/api/v1/auth/me", "/api/v1/config"] {
        let r = get_as(c, node, token, path);
        assert_eq!(r.status, 401, "{what}: GET {path} on node {node}: {r}");
        r.check_problem().unwrap();
    }
}

#[test]
fn a_disabled_deleted_or_repassworded_users_old_token_is_refused_on_every_node() {
    let c = Cluster::builder().name("access-tokens").voters(3).start();
    let followers = c.followers();
    let (f, g) = (followers[0], followers[1]);
    let nodes = c.all_nodes();
    let carol = create_user(&c, f, "carol", &["operator"]);
    let dave = create_user(&c, f, "dave", &["operator"]);
    let erin = create_user(&c, f, "erin", &["viewer"]);
    for &n in &nodes {
        for id in [carol, dave, erin] {
            wait_user_on(&c, n, id, "created", |r| r.status == 200);
        }
    }

    // Carol logs in on one node; her token works on every node.
    let carols = login(&c, g, "carol", PASSWORD);
    for &n in &nodes {
        let r = me(&c, n, &carols);
        assert!(
            r.status == 200 && r.json()["name"] == "carol",
            "node {n}: {r}"
        );
    }
    // The admin disables her: each node refuses her token as soon as it has applied
    // the change, and she cannot log in.
    let r = patch_user(&c, f, carol, json!({"enabled": false}));
    assert!(
        r.status == 200 && r.json()["enabled"] == false,
        "disabling carol: {r}"
    );
    for &n in &nodes {
        wait_user_on(&c, n, carol, "disabled", |r| r.json()["enabled"] == false);
        assert_token_refused(&c, n, &carols, "carol, disabled");
        let r = c.login_with(n, "carol", PASSWORD).unwrap();
        assert_eq!(r.status, 401, "carol, disabled, logs in on node {n}: {r}");
    }
    // Enabled again, she logs in afresh; the token from before stays refused.
    let r = patch_user(&c, f, carol, json!({"enabled": true}));
    assert_eq!(r.status, 200, "enabling carol: {r}");
    for &n in &nodes {
        wait_user_on(&c, n, carol, "enabled", |r| r.json()["enabled"] == true);
        let fresh = login(&c, n, "carol", PASSWORD);
        assert_eq!(
            me(&c, n, &fresh).status,
            200,
            "carol's fresh token on node {n}"
        );
        assert_token_refused(&c, n, &carols, "carol's token from before she was disabled");
    }

    // Dave has tokens from two nodes; his password is changed (say it leaked).
    let daves = [
        login(&c, g, "dave", PASSWORD),
        login(&c, f, "dave", PASSWORD),
    ];
    let new_password = "Second-Passphrase-Of-2025!";
    let r = patch_user(&c, f, dave, json!({"password": new_password}));
    assert_eq!(r.status, 200, "changing dave's password: {r}");
    for &n in &nodes {
        wait_for(
            secs(10),
            &format!("node {n} to refuse dave's old token"),
            || Ok(me(&c, n, &daves[0])),
            |r| r.status == 401,
        );
        assert_token_refused(&c, n, &daves[0], "dave's token from before the change");
        assert_token_refused(
            &c,
            n,
            &daves[1],
            "dave's other token from before the change",
        );
        let r = c.login_with(n, "dave", PASSWORD).unwrap();
        assert_eq!(r.status, 401, "dave's old password on node {n}: {r}");
        let fresh = login(&c, n, "dave", new_password);
        for &m in &nodes {
            let r = me(&c, m, &fresh);
            assert_eq!(
                r.status, 200,
                "dave's new token from node {n} on node {m}: {r}"
            );
        }
    }

    // Dave moves to the viewers: his token keeps working, but each node refuses him
    // config writes as soon as it has applied the change.
    let daves = login(&c, g, "dave", new_password);
    let r = patch_user(&c, f, dave, json!({"groups": ["viewer"]}));
    assert_eq!(r.status, 200, "moving dave to viewer: {r}");
    let write = json!({"value": "dave was here"});
    for &n in &nodes {
        wait_user_on(&c, n, dave, "a viewer", |r| {
            r.json()["groups"] == json!(["viewer"])
        });
        let r = as_user(
            &c,
            n,
            &daves,
            Method::PUT,
            "/api/v1/config/dave",
            Some(&write),
        );
        assert_eq!(
            r.status, 403,
            "dave, now a viewer, writes config on node {n}: {r}"
        );
        let r = get_as(&c, n, &daves, "/api/v1/config");
        assert_eq!(
            r.status, 200,
            "dave, now a viewer, reads config on node {n}: {r}"
        );
    }

    // Erin leaves: her account is deleted, and her token dies with it, even when a
    // new account takes her name.
    let erins = login(&c, g, "erin", PASSWORD);
    let r = delete_user(&c, f, erin);
    assert!(r.is_success(), "deleting erin: {r}");
    for &n in &nodes {
        wait_user_on(&c, n, erin, "deleted", |r| r.status == 404);
        assert_token_refused(&c, n, &erins, "erin, deleted");
        let r = c.login_with(n, "erin", PASSWORD).unwrap();
        assert_eq!(r.status, 401, "erin, deleted, logs in on node {n}: {r}");
    }
    let new_erin = create_user(&c, f, "erin", &["admin"]);
    assert_ne!(new_erin, erin, "the new erin got the deleted erin's id");
    for &n in &nodes {
        wait_user_on(&c, n, new_erin, "created", |r| r.status == 200);
        assert_token_refused(&c, n, &erins, "the deleted erin's token, with a new erin");
    }
}

#[test]
fn failed_logins_are_rate_limited_and_all_look_the_same() {
    let c = Cluster::builder()
        .name("access-login-limit")
        .voters(3)
        .start();
    let n = c.followers()[0];
    let frank = create_user(&c, n, "frank", &["viewer"]);
    let grace = create_user(&c, n, "grace", &["viewer"]);
    let heidi = create_user(&c, n, "heidi", &["viewer"]);
    let r = patch_user(&c, n, heidi, json!({"enabled": false}));
    assert_eq!(r.status, 200, "disabling heidi: {r}");
    for id in [frank, grace] {
        wait_user_on(&c, n, id, "created", |r| r.status == 200);
    }
    wait_user_on(&c, n, heidi, "disabled", |r| r.json()["enabled"] == false);

    // Somebody guesses frank's password 30 times from one address: after at most
    // 5 failures (that address's limit for one name) every further try is refused
    // with 429 and a Retry-After, without being checked.
    let mut statuses = Vec::new();
    for i in 1..=30 {
        let r = c
            .login_with(n, "frank", &format!("guess-number-{i:02}"))
            .unwrap();
        statuses.push(r.status);
        match r.status {
            401 => {
                assert!(
                    !statuses[..i - 1].contains(&429),
                    "try {i} was checked again after a 429: {statuses:?}"
                );
            }
            429 => {
                r.check_problem().unwrap();
                let retry = r
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("try {i}: 429 without a Retry-After: {r:?}"));
                assert!((1..=60).contains(&retry), "try {i}: Retry-After {retry}");
            }
            _ => panic!("try {i}: {r}"),
        }
    }
    c.log(format!("30 wrong passwords for frank: {statuses:?}"));
    let first = statuses.iter().position(|s| *s == 429).map(|i| i + 1);
    assert!(
        first.is_some_and(|i| (2..=6).contains(&i)),
        "the first 429 came at try {first:?}: {statuses:?}"
    );
    // Frank himself must now wait too, from that address.
    let r = c.login_with(n, "frank", PASSWORD).unwrap();
    assert_eq!(
        r.status, 429,
        "frank's right password while locked out: {r}"
    );

    // An unknown user, a wrong password and a disabled user get the very same answer.
    let unknown = c.login_with(n, "nobody-here", PASSWORD).unwrap();
    let wrong = c.login_with(n, "grace", "not-graces-password").unwrap();
    let disabled = c.login_with(n, "heidi", PASSWORD).unwrap();
    for (what, r) in [
        ("unknown", &unknown),
        ("wrong", &wrong),
        ("disabled", &disabled),
    ] {
        assert_eq!(r.status, 401, "{what}: {r}");
        r.check_problem().unwrap();
    }
    assert!(
        unknown.body == wrong.body && wrong.body == disabled.body,
        "the answers tell the cases apart:\nunknown user: {}\nwrong password: {}\n\
         disabled user: {}",
        unknown.body,
        wrong.body,
        disabled.body
    );

    // Spreading the guesses over many names does not help: 30 failures from one
    // address (8 so far) and it is answered 429 for any name.
    let mut statuses = Vec::new();
    for i in 1..=25 {
        let r = c
            .login_with(n, &format!("stranger-{i}"), "some-long-guess-here")
            .unwrap();
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.headers.contains_key("retry-after"), "{r:?}");
            break;
        }
        assert_eq!(r.status, 401, "stranger {i}: {r}");
    }
    c.log(format!("guesses over many names: {statuses:?}"));
    assert!(
        statuses.len() <= 23 && statuses.last() == Some(&429),
        "30 failures from one address were not limited: {statuses:?}"
    );
}

#[test]
fn logging_out_ends_that_token_on_every_node_and_no_other() {
    let c = Cluster::builder().name("access-logout").voters(3).start();
    let leader = c.wait_for_leader();
    let f = c.followers()[0];
    let id = create_user(&c, leader, "leaving", &["operator"]);
    wait_user_on(&c, f, id, "created", |r| r.status == 200);
    let laptop = login(&c, f, "leaving", PASSWORD);
    let desktop = login(&c, leader, "leaving", PASSWORD);

    // Logging out through a follower.
    let r = logout(&c, f, &laptop);
    assert_eq!(r.status, 204, "{r}");
    for n in c.all_nodes() {
        wait_for(
            secs(10),
            &format!("node {n} to refuse the logged-out token"),
            || Ok(me(&c, n, &laptop)),
            |r| {
                r.status == 401
                    && r.json()["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("logged out"))
            },
        );
        let r = me(&c, n, &desktop);
        assert_eq!(
            r.status, 200,
            "the user's other token still works on node {n}: {r}"
        );
    }
    // An event stream opened with the desktop token ends when that token is logged out.
    let mut stream = EventStream::connect_as(&c.api(), f, &desktop).unwrap();
    let r = logout(&c, leader, &desktop);
    assert_eq!(r.status, 204, "{r}");
    stream.wait_closed(secs(10)).unwrap();
    let desktop = login(&c, leader, "leaving", PASSWORD);

    // Twice is refused like any invalid token, and changes nothing.
    let r = logout(&c, leader, &laptop);
    assert_eq!(r.status, 401, "{r}");
    r.check_problem().unwrap();

    // It survives a snapshot and a restart: a node rebuilt from its snapshot and log
    // still refuses it.
    let r = admin(&c, leader, Method::POST, "/api/v1/cluster/snapshot", None);
    assert!(r.is_success(), "{r}");
    c.kill(f);
    c.restart(f);
    c.wait_ready(f, secs(30));
    let r = me(&c, f, &laptop);
    assert_eq!(r.status, 401, "{r}");
    let r = me(&c, f, &desktop);
    assert_eq!(r.status, 200, "{r}");
}
