//! A write through a node that lags builds on the latest state: users and groups
//! made through one node a moment ago can be used, changed and deleted through
//! another at once; a permission just taken away from a group cannot be granted
//! again, nor one just taken from a user used, on the strength of the lagging
//! node's old copy.

use std::thread;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{wait_for, Cluster, Reply};
use reqwest::Method;

use super::{admin, as_user, create_user, login, names};
use crate::{millis, secs, PASSWORD};

#[test]
fn writes_through_a_lagging_node_build_on_the_latest_state() {
    let c = Cluster::builder().name("access-lag").voters(3).start();
    let leader = c.wait_for_agreed_leader(secs(10));
    let (writer, lagging) = match c.followers()[..] {
        [a, b, ..] => (a, b),
        _ => panic!("three voters have two followers"),
    };

    // A user manager, gina, who does not hold config.write; and a group that
    // grants it, for now.
    let managers = json!({"name": "granters", "permissions":
        ["users.read", "users.write", "groups.read", "groups.write", "config.read"]});
    let r = admin(&c, leader, Method::POST, "/api/v1/groups", Some(&managers));
    assert_eq!(r.status, 201, "{r}");
    let shared = json!({"name": "shared", "permissions": ["config.read", "config.write"]});
    let r = admin(&c, leader, Method::POST, "/api/v1/groups", Some(&shared));
    assert_eq!(r.status, 201, "{r}");
    create_user(&c, leader, "gina", &["granters"]);
    let hank_id = create_user(&c, leader, "hank", &["granters"]);
    let leaver = create_user(&c, leader, "leaver", &["viewer"]);
    // The lagging node has all of it, and gina and admin have tokens for it.
    wait_for(
        secs(10),
        &format!("node {lagging} to have gina"),
        || c.call(lagging, Method::GET, "/api/v1/users?q=gina", None),
        |r| r.status == 200 && r.json()["total"] == 1,
    );
    let gina = login(&c, lagging, "gina", PASSWORD);
    let hank = login(&c, lagging, "hank", PASSWORD);

    // The lagging node is frozen while the writer makes new records and takes
    // config.write away from `shared`.
    c.pause(lagging);
    let fresh = json!({"name": "fresh", "permissions": ["config.read"]});
    let r = admin(&c, writer, Method::POST, "/api/v1/groups", Some(&fresh));
    assert_eq!(r.status, 201, "{r}");
    let newbie = create_user(&c, writer, "newbie", &["viewer"]);
    let narrowed = json!({"permissions": ["config.read"]});
    let r = admin(
        &c,
        writer,
        Method::PATCH,
        "/api/v1/groups/shared",
        Some(&narrowed),
    );
    assert_eq!(r.status, 200, "{r}");
    // And hank is no user manager any more.
    let demoted = json!({"groups": ["viewer"]});
    let r = admin(
        &c,
        writer,
        Method::PATCH,
        &format!("/api/v1/users/{hank_id}"),
        Some(&demoted),
    );
    assert_eq!(r.status, 200, "{r}");

    // Requests to the lagging node, sent while it is frozen (the kernel takes
    // them), are handled first thing when it wakes up.
    let (joiner, moved, regrant, widened, deleted, hanks) = thread::scope(|s| {
        let send = |method: Method, path: String, body: Value| {
            let c = &c;
            s.spawn(move || admin(c, lagging, method, &path, Some(&body)))
        };
        let joiner = send(
            Method::POST,
            "/api/v1/users".into(),
            json!({"name": "joiner", "password": PASSWORD, "groups": ["fresh"]}),
        );
        let moved = send(
            Method::PATCH,
            format!("/api/v1/users/{newbie}"),
            json!({"groups": ["viewer", "fresh"]}),
        );
        let widened = send(
            Method::PATCH,
            "/api/v1/groups/fresh".into(),
            json!({"permissions": ["config.read", "backups.read"]}),
        );
        let deleted = s.spawn(|| {
            admin(
                &c,
                lagging,
                Method::DELETE,
                &format!("/api/v1/users/{leaver}"),
                None,
            )
        });
        let regrant = s.spawn(|| {
            let body = json!({"permissions": ["config.read", "config.write"]});
            as_user(
                &c,
                lagging,
                &gina,
                Method::PATCH,
                "/api/v1/groups/shared",
                Some(&body),
            )
        });
        let hanks = s.spawn(|| {
            let body = json!({"name": "hanks-friend", "password": PASSWORD, "groups": []});
            as_user(
                &c,
                lagging,
                &hank,
                Method::POST,
                "/api/v1/users",
                Some(&body),
            )
        });
        thread::sleep(millis(300));
        c.resume(lagging);
        let done = |h: thread::ScopedJoinHandle<'_, Reply>| h.join().unwrap();
        (
            done(joiner),
            done(moved),
            done(regrant),
            done(widened),
            done(deleted),
            done(hanks),
        )
    });

    assert_eq!(
        joiner.status, 201,
        "a user put into a fresh group: {joiner}"
    );
    assert_eq!(
        moved.status, 200,
        "a fresh user moved into a fresh group: {moved}"
    );
    assert_eq!(
        names(&moved.json()["groups"]),
        names(&json!(["viewer", "fresh"]))
    );
    assert_eq!(widened.status, 200, "a fresh group changed: {widened}");
    assert_eq!(deleted.status, 200, "a user deleted: {deleted}");
    assert_eq!(
        regrant.status, 403,
        "gina grants config.write again without holding it: {regrant}"
    );
    let detail = regrant.json()["detail"].as_str().unwrap_or("").to_string();
    assert!(detail.contains("config.write"), "{regrant}");

    assert_eq!(
        hanks.status, 403,
        "hank creates a user after losing users.write: {hanks}"
    );
    let detail = hanks.json()["detail"].as_str().unwrap_or("").to_string();
    assert!(detail.contains("users.write"), "{hanks}");

    // Every node agrees: `shared` no longer grants config.write.
    for n in c.all_nodes() {
        wait_for(
            secs(10),
            &format!("node {n} to show group shared without config.write"),
            || c.call(n, Method::GET, "/api/v1/groups/shared", None),
            |r| {
                r.status == 200 && names(&r.json()["permissions"]) == names(&json!(["config.read"]))
            },
        );
    }
}
