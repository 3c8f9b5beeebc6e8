//! What the web UI's pages show to whom: the login page, to anyone, says nothing of
//! where the members are; the dashboard shows events only to a holder of
//! `events.read`, as the API's event stream does.

use bcm_tests::serde_json::json;
use bcm_tests::{Cluster, Reply};
use reqwest::Method;

use super::{admin, create_user, login};
use crate::PASSWORD;

/// `GET path` on `node` as a browser with `session` (the session cookie holds the
/// API token), or without one.
fn page(c: &Cluster, node: u64, path: &str, session: Option<&str>) -> Reply {
    let mut req = c.request(node, Method::GET, path);
    if let Some(t) = session {
        req = req.header("cookie", &format!("bcm_session={t}"));
    }
    c.send(req)
        .unwrap_or_else(|e| panic!("GET {path} via node {node}: {e}"))
}

#[test]
fn the_login_page_hides_members_and_the_dashboard_hides_events_without_events_read() {
    let c = Cluster::builder().name("access-pages").voters(3).start();
    let leader = c.wait_for_leader();
    let f = c.followers()[0];

    // Anyone may fetch the login page: it does not say where the members are.
    let r = page(&c, f, "/login", None);
    assert_eq!(r.status, 200, "{r}");
    let leaked: Vec<String> = c
        .all_nodes()
        .into_iter()
        .map(|n| c.api_url(n))
        .filter(|url| r.body.contains(url.trim_start_matches("http://")))
        .collect();
    assert!(
        leaked.is_empty(),
        "the login page shows {leaked:?}:\n{}",
        r.body
    );

    // A user whose group may read the cluster but not its events.
    let group = json!({"name": "watchers", "permissions": ["cluster.read", "nodes.read"]});
    let r = admin(&c, leader, Method::POST, "/api/v1/groups", Some(&group));
    assert_eq!(r.status, 201, "{r}");
    create_user(&c, leader, "walter", &["watchers"]);
    let walter = login(&c, leader, "walter", PASSWORD);
    let admin_token = c.token(leader).unwrap();

    // The node has seen events since it started (a leader elected, the cluster
    // formed): an admin's dashboard lists them.
    for path in ["/", "/ui/live/dashboard"] {
        let r = page(&c, leader, path, Some(&admin_token));
        assert_eq!(r.status, 200, "{path} as admin: {r}");
        assert!(
            r.body.contains("<li class=\"ev-"),
            "{path} as admin lists events:\n{}",
            r.body
        );
    }
    // Walter's does not, and says why.
    for path in ["/", "/ui/live/dashboard"] {
        let r = page(&c, leader, path, Some(&walter));
        assert_eq!(r.status, 200, "{path} as walter: {r}");
        assert!(
            r.body.contains("dash-leader"),
            "{path}: walter sees the cluster:\n{}",
            r.body
        );
        assert!(
            !r.body.contains("<li class=\"ev-"),
            "{path} lists events to walter:\n{}",
            r.body
        );
        assert!(
            r.body.contains("events.read"),
            "{path} says why there are no events:\n{}",
            r.body
        );
    }
}
