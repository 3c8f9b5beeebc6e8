//! The web UI in a real browser (headless Chromium through chromedriver) against
//! real `bcm` processes: an operator logs in through a follower, manages users, is
//! refused what their group may not do, and keeps a live dashboard while nodes die.

use std::time::{Duration, Instant};

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{screenshot_dir, wait_until, Browser, Cluster, ADMIN_PASSWORD};
use reqwest::Method;

use crate::secs;

const PASSWORD: &str = "Tr0ub4dor&3-gazelle-kiwi";

/// Posts a form from inside the page with `fetch`, as a script or another tab could;
/// returns (status, body text).
fn post_from_page(b: &Browser, path: &str, fields: Value) -> (u64, String) {
    // Status 0 is a request the browser lost (a network change on this machine,
    // see Browser::goto); the server never answered it, so it is sent again.
    for _ in 0..4 {
        let (status, body) = post_once(b, path, fields.clone());
        if status != 0 {
            return (status, body);
        }
    }
    post_once(b, path, fields)
}

fn post_once(b: &Browser, path: &str, fields: Value) -> (u64, String) {
    let started = Instant::now();
    let v = b
        .exec_async(
            "const [path, fields, done] = arguments;
             const ctl = new AbortController();
             setTimeout(() => ctl.abort(), 15000);
             fetch(path, {method: 'POST', credentials: 'same-origin', redirect: 'manual',
                          body: new URLSearchParams(fields), signal: ctl.signal})
               .then(r => r.text().then(t => done([r.status, t])))
               .catch(e => done([0, String(e)]));",
            json!([path, fields]),
        )
        .expect("a fetch from the page");
    eprintln!(
        "ui: POST {path} from the page: {} after {:.1}s",
        v[0],
        started.elapsed().as_secs_f64()
    );
    (
        v[0].as_u64().unwrap_or(0),
        v[1].as_str().unwrap_or_default().to_string(),
    )
}

/// The session's CSRF token, from the page's logout form.
fn csrf_token(b: &Browser) -> String {
    b.attr("form.logout input[name=csrf]", "value")
        .unwrap()
        .expect("a CSRF token in the logout form")
}

/// Waits until the page's connection indicator (`#conn`) reads one of `states`.
fn wait_conn(b: &Browser, states: &[&str], timeout: Duration, what: &str) {
    wait_until(timeout, what, || match b.text("#conn") {
        Ok(t) if states.contains(&t.as_str()) => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// Three voters, and a browser in which the admin logged in through a follower's
/// UI: `(cluster, that follower, its base URL, the browser)`. No backup manager:
/// backups stay pending, so the pages show the catalog without data moving.
fn admin_logged_in_through_a_follower(name: &str) -> (Cluster, u64, String, Browser) {
    let c = Cluster::builder()
        .name(name)
        .voter_roles(&["manager", "storage"])
        .start();
    let follower = c.followers()[0];
    let base = c.api_url(follower);
    let b = Browser::start();
    b.log_in(&base, "admin", ADMIN_PASSWORD);
    (c, follower, base, b)
}

fn users_named(c: &Cluster, name: &str) -> Vec<Value> {
    c.get_json(c.wait_for_leader(), &format!("/api/v1/users?q={name}"))
        .expect("listing users")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|u| u["name"] == name)
        .collect()
}

#[test]
fn ui_users_through_a_follower_with_permissions_and_csrf() {
    // Log in through a follower's UI: its dashboard says who serves and who leads.
    let (c, follower, base, b) = admin_logged_in_through_a_follower("ui-users");
    b.wait_for(".member[data-node-id]", secs(10));
    assert_eq!(b.count(".member[data-node-id]"), 3);
    assert_eq!(
        b.attr("#serving", "data-serving").unwrap().as_deref(),
        Some(follower.to_string().as_str())
    );
    let leader = c.wait_for_leader();
    assert!(
        b.text("#leader")
            .unwrap()
            .contains(&format!("node {leader}")),
        "the header names the leader"
    );
    // The session cookie is HttpOnly: no script can read it.
    assert_eq!(
        b.exec("return document.cookie", json!([])).unwrap(),
        json!("")
    );
    b.screenshot(&screenshot_dir().join("dashboard.png"));

    // Create a user with a predefined group.
    b.goto(&format!("{base}/users"));
    b.fill_in_and_submit(
        |b| {
            b.type_into("#u-name", "alice-ui");
            b.type_into("#u-password", PASSWORD);
            b.click("input[name=groups][value=operator]");
        },
        "form[method=post][action='/users'] button[type=submit]",
        "the new user's page",
        |b| {
            let t = b.text("#flash").unwrap_or_default();
            // "already exists": a first submission reached the server but its answer
            // was lost (see Browser::submit).
            if t.contains("alice-ui created") || t.contains("already exists") {
                Ok(())
            } else {
                Err(t)
            }
        },
    );
    let created = users_named(&c, "alice-ui");
    assert_eq!(created.len(), 1, "the API has the user");
    assert_eq!(created[0]["groups"], json!(["operator"]));

    // The audit log has it, with the browser's address: a page of its own, in the
    // navigation of those who may read it.
    assert!(
        b.exists("nav a[href='/audit']"),
        "the audit log in admin's navigation"
    );
    b.goto(&format!("{base}/audit?action=users.create"));
    b.wait_for("tr[data-action='users.create']", secs(10));
    let row = b.text("tr[data-action='users.create']").unwrap();
    assert!(
        row.contains("alice-ui") && row.contains("admin") && row.contains("127.0.0.1"),
        "{row}"
    );
    assert!(row.contains("groups: operator"), "{row}");
    assert!(
        !b.exists("tr[data-action='login']"),
        "the action filter holds"
    );
    assert_eq!(
        b.attr("#f-action", "value").unwrap().as_deref(),
        Some("users.create")
    );

    // A refused form says why, inline, and keeps what was typed.
    b.goto(&format!("{base}/users"));
    let flash = b.fill_in_and_submit(
        |b| {
            b.type_into("#u-name", "bob-ui");
            b.type_into("#u-password", "short");
            // Bypass the browser's own minlength check to reach the server's.
            b.exec(
                "document.getElementById('u-password').removeAttribute('minlength')",
                json!([]),
            )
            .unwrap();
        },
        "form[method=post][action='/users'] button[type=submit]",
        "the refusal",
        |b| b.text("#flash"),
    );
    assert!(
        flash.contains("password") && flash.contains("12"),
        "{flash}"
    );
    assert_eq!(
        b.attr("#u-name", "value").unwrap().as_deref(),
        Some("bob-ui")
    );
    assert!(users_named(&c, "bob-ui").is_empty());

    // Find it by search.
    b.goto(&format!("{base}/users"));
    b.fill_in_and_submit(
        |b| b.type_into("#f-q", "alice"),
        "form.filters button[type=submit]",
        "the search result",
        |b| listed_alone(b, "q=alice", "alice-ui"),
    );
    assert!(!b.exists("tr[data-user='admin']"), "the search filters");

    // Disable it from its page.
    b.click("tr[data-user='alice-ui'] a");
    b.wait_for("#user-state", secs(10));
    b.submit(
        "button[name=op][value=disable]",
        "the user to show as disabled",
        |_| {},
        |b| match b.text("#user-state") {
            Ok(t) if t == "disabled" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(users_named(&c, "alice-ui")[0]["enabled"], json!(false));

    // Filter by disabled: a shareable URL, the API's own parameters.
    b.goto(&format!("{base}/users"));
    b.fill_in_and_submit(
        |b| b.click("#f-enabled option[value=false]"),
        "form.filters button[type=submit]",
        "the disabled filter",
        |b| listed_alone(b, "enabled=false", "alice-ui"),
    );
    assert!(!b.exists("tr[data-user='admin']"));
    b.screenshot(&screenshot_dir().join("users.png"));
    b.set_size(390, 844);
    b.goto(&format!("{base}/users"));
    b.screenshot(&screenshot_dir().join("users-phone.png"));
    b.set_size(1280, 900);

    // CSRF: a form posted without the session's token is refused and changes nothing.
    let (status, body) = post_from_page(
        &b,
        "/users",
        json!({"name": "mallory-ui", "password": PASSWORD, "groups": "admin"}),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "the refusal says why: {body}");
    let (status, _) = post_from_page(
        &b,
        "/users",
        json!({"csrf": "forged", "name": "mallory-ui", "password": PASSWORD}),
    );
    assert_eq!(status, 403);
    assert!(users_named(&c, "mallory-ui").is_empty());

    // A viewer sees no edit controls, and is refused if it posts a form anyway.
    let victor = json!({"name": "victor-ui", "password": PASSWORD, "groups": ["viewer"]});
    let r = c.post(leader, "/api/v1/users", &victor).unwrap();
    assert_eq!(r.status, 201, "{r}");
    let session = b.cookie("bcm_session").unwrap();
    b.submit(
        "form.logout button",
        "the login page",
        |_| {},
        |b| b.find("#username").map(|_| ()),
    );
    // Logging out ended the session's token on the cluster, not only in this browser.
    let r = c
        .send(
            c.request(leader, Method::GET, "/api/v1/auth/me")
                .bearer(&session),
        )
        .unwrap();
    assert_eq!(r.status, 401, "the logged-out session's token: {r}");
    // A shared link opened without a session leads through the login page and back;
    // the form works with the keyboard alone (Enter submits).
    b.goto(&format!("{base}/users?enabled=true"));
    b.wait_for("#username", secs(10));
    assert!(b.url().contains("/login?next="), "{}", b.url());
    b.type_into("#username", "victor-ui");
    b.type_into("#password", &format!("{PASSWORD}\u{E007}"));
    wait_until(secs(15), "the shared link after logging in", || {
        if b.url().ends_with("/users?enabled=true") && b.exists("tr[data-user='admin']") {
            Ok(())
        } else {
            Err(b.where_now())
        }
    });
    assert!(!b.exists("tr[data-user='alice-ui']"), "the filter holds");
    assert!(!b.exists("#u-name"), "no create form for a viewer");
    assert!(
        !b.exists("nav a[href='/audit']"),
        "no audit log for a viewer"
    );
    b.goto(&format!("{base}/audit"));
    b.wait_for("#flash", secs(10));
    let refusal = b.text("#flash").unwrap();
    assert!(refusal.contains("audit.read"), "{refusal}");
    assert!(
        !b.exists("tr[data-audit-id]"),
        "no record shown to a viewer"
    );
    b.goto(&format!("{base}/users/1"));
    b.wait_for("#user-state", secs(10));
    assert!(!b.exists("button[name=op]"), "no edit buttons for a viewer");
    let csrf = csrf_token(&b);
    // The same form posted from outside the browser with the viewer's session: the
    // server refuses it whatever the client.
    let r = reqwest::blocking::Client::new()
        .post(format!("{base}/users"))
        .header(
            "cookie",
            format!("bcm_session={}", b.cookie("bcm_session").unwrap()),
        )
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "eve-ui"),
            ("password", PASSWORD),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (status, body) = post_from_page(
        &b,
        "/users",
        json!({"csrf": csrf, "name": "eve-ui", "password": PASSWORD, "groups": "admin"}),
    );
    assert_eq!(status, 403, "{body} (page: {})", b.url());
    assert!(
        body.contains("not allowed") && body.contains("users.write"),
        "a plain refusal: {body}"
    );
    let (status, _) = post_from_page(&b, "/users/1", json!({"csrf": csrf, "op": "disable"}));
    assert_eq!(status, 403);
    assert!(users_named(&c, "eve-ui").is_empty());
    assert_eq!(users_named(&c, "admin")[0]["enabled"], json!(true));

    // An admin disables the viewer: its open page stops being live and goes to the
    // login page (the server ends the session's event stream).
    wait_conn(
        &b,
        &["live", "reconnected"],
        secs(10),
        "the viewer's page to be live",
    );
    let victor = users_named(&c, "victor-ui")[0]["id"].as_u64().unwrap();
    let disable = json!({"enabled": false});
    let r = c
        .patch(leader, &format!("/api/v1/users/{victor}"), &disable)
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    wait_until(
        secs(15),
        "the disabled viewer's page to go to the login page",
        || {
            if b.url().contains("/login") && b.exists("#username") {
                Ok(())
            } else {
                Err(b.where_now())
            }
        },
    );
}

/// The users page after a search or a filter: its URL carries `query`, and it
/// lists `user`.
fn listed_alone(b: &Browser, query: &str, user: &str) -> Result<(), String> {
    if b.url().contains(query) && b.exists(&format!("tr[data-user='{user}']")) {
        Ok(())
    } else {
        Err("no result".into())
    }
}

fn member_status(b: &Browser, id: u64) -> Result<String, String> {
    b.attr(&format!(".member[data-node-id='{id}']"), "data-status")
        .and_then(|s| s.ok_or_else(|| "no data-status".into()))
}

/// Waits until the open page shows member `id` as `status` (`what` it is waiting
/// for); returns how long that took.
fn wait_shown(b: &Browser, id: u64, status: &str, timeout: Duration, what: &str) -> Duration {
    let start = Instant::now();
    wait_until(timeout, what, || match member_status(b, id)? {
        s if s == status => Ok(()),
        s => Err(s),
    });
    start.elapsed()
}

/// The page is still the one marked by `window.__bcm_no_reload`: not reloaded.
fn not_reloaded(b: &Browser) -> bool {
    b.exec("return window.__bcm_no_reload === true", json!([]))
        .unwrap()
        == json!(true)
}

#[test]
fn ui_dashboard_follows_nodes_dying_and_moves_off_a_dead_node() {
    let c = Cluster::builder().name("ui-live").voters(3).start();
    let followers = c.followers();
    let (serving, other) = (followers[0], followers[1]);
    let b = Browser::start();
    b.log_in(&c.api_url(serving), "admin", ADMIN_PASSWORD);
    b.wait_for(".member[data-node-id]", secs(10));
    wait_conn(&b, &["live"], secs(10), "the page's event stream");
    // Marks the page: a reload would lose it.
    b.exec("window.__bcm_no_reload = true", json!([])).unwrap();

    // Kill another node: its picture turns down on the open page, no reload.
    c.kill(other);
    let took = wait_shown(&b, other, "down", secs(15), "the killed node to show down");
    c.log(format!(
        "ui: node {other} shown down {:.1}s after kill",
        took.as_secs_f64()
    ));
    b.screenshot(&screenshot_dir().join("dashboard-node-down.png"));
    // And the cluster itself said so: the page shows what the API says.
    let api_status = c.cluster(serving).unwrap()["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == other)
        .map(|m| m["status"].clone());
    assert_eq!(api_status, Some(json!("down")));
    assert!(not_reloaded(&b), "the page was reloaded");

    // Restart it: it turns up.
    c.restart(other);
    let took = wait_shown(&b, other, "up", secs(30), "the restarted node to show up");
    c.log(format!(
        "ui: node {other} shown up {:.1}s after restart",
        took.as_secs_f64()
    ));
    assert!(not_reloaded(&b), "the page was reloaded");
    b.screenshot(&screenshot_dir().join("dashboard-live.png"));

    // Kill the node serving the page: it carries on from another member by itself,
    // with the same session.
    c.wait_ready(other, secs(30));
    c.kill(serving);
    let killed = Instant::now();
    let moved_to = wait_until(
        Duration::from_secs(20),
        "the page to move to a live node",
        || {
            let now = b
                .attr("#serving", "data-serving")?
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("no serving node")?;
            if now != serving && b.exists(".member[data-node-id]") && b.exists("form.logout") {
                Ok(now)
            } else {
                Err(format!("{} serving {now}", b.url()))
            }
        },
    );
    c.log(format!(
        "ui: page moved from node {serving} to node {moved_to} {:.1}s after the kill",
        killed.elapsed().as_secs_f64()
    ));
    assert!(b.url().starts_with(&c.api_url(moved_to)), "{}", b.url());
    // It works there: live again, and it sees the dead node go down.
    wait_conn(&b, &["live"], secs(15), "the moved page to be live");
    wait_shown(
        &b,
        serving,
        "down",
        secs(15),
        "the dead serving node to show down",
    );
    b.goto(&format!("{}/users", c.api_url(moved_to)));
    b.wait_for("tr[data-user='admin']", secs(10));
}

/// The flash message of the page, once it contains `want`.
fn flash_with(b: &Browser, want: &str) -> Result<String, String> {
    let t = b.text("#flash").unwrap_or_default();
    if t.contains(want) {
        Ok(t)
    } else {
        Err(format!("flash {t:?}"))
    }
}

#[test]
fn ui_config_plans_backups_restores_nodes_and_groups_through_forms() {
    let (c, follower, base, b) = admin_logged_in_through_a_follower("ui-forms");

    // Config: set a key, then edit it (compare-and-set on the version shown).
    let retention = || c.config_value(follower, "retention.days").unwrap();
    b.goto(&format!("{base}/config"));
    b.fill_in_and_submit(
        |b| {
            b.type_into("#c-key", "retention.days");
            b.type_into("#c-value", "30");
        },
        "form[method=post][action='/config'] button[type=submit]",
        "the key saved",
        |b| flash_with(b, "retention.days saved"),
    );
    assert_eq!(retention(), Some(json!(30)));
    b.fill_in_and_submit(
        |b| b.type_into("#c-value", "31"),
        "button[name=op][value=save]",
        "the key edited",
        |b| flash_with(b, "retention.days saved"),
    );
    assert_eq!(retention(), Some(json!(31)));

    // Plans: create one.
    b.goto(&format!("{base}/plans"));
    b.fill_in_and_submit(
        |b| {
            b.type_into("#p-name", "etc-nightly");
            b.click("#p-node option[value='1']");
            b.type_into("#p-paths", "/etc\n/var/lib");
            b.type_into("#p-schedule", "0 3 * * *");
        },
        "form[method=post][action='/plans'] button[type=submit]",
        "the plan created",
        |b| flash_with(b, "etc-nightly created"),
    );
    let plans = c.get_json(follower, "/api/v1/plans?q=etc-nightly").unwrap();
    assert_eq!(plans["items"][0]["paths"], json!(["/etc", "/var/lib"]));
    assert_eq!(plans["items"][0]["schedule"], json!("0 3 * * *"));

    // Back up now from the plan's page; the backup's page shows it pending.
    b.submit(
        "form[action='/backups'] button[type=submit]",
        "the backup started",
        |_| {},
        |b| flash_with(b, "started"),
    );
    assert_eq!(b.text("#backup-status").unwrap(), "pending");
    let backup_url = b.url();
    assert!(backup_url.contains("/backups/"));

    // A pending backup cannot be restored: no restore form, and a restore posted
    // anyway is refused (409) in plain words, on the page.
    assert!(!b.exists("#r-path"));
    assert!(b.text("#restore-note").unwrap().contains("pending"));
    let csrf = csrf_token(&b);
    let path = backup_url.trim_start_matches(&base).to_string();
    let (status, body) = post_from_page(
        &b,
        &path,
        json!({"csrf": csrf, "op": "restore", "target_node": "1", "target_path": "/restore/etc"}),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("only a succeeded backup can be restored"),
        "{body}"
    );
    let restores = c.get_json(follower, "/api/v1/restores").unwrap();
    assert_eq!(restores["total"], json!(0));

    // Backups filter by status, with the API's parameters.
    b.goto(&format!("{base}/backups?status=pending"));
    b.wait_for("tr[data-backup][data-status=pending]", secs(10));
    b.goto(&format!("{base}/backups?status=failed"));
    b.wait_for("table caption", secs(10));
    assert!(!b.exists("tr[data-backup]"), "no failed backup");
    assert!(b.text("table caption").unwrap().starts_with("0 backups"));

    // Nodes: configure a node's labels.
    b.goto(&format!("{base}/nodes/2"));
    b.fill_in_and_submit(
        |b| b.type_into("#n-labels", "rack=b"),
        "button[type=submit].primary",
        "the node saved",
        |b| flash_with(b, "configuration saved"),
    );
    let n2 = c.get_json(follower, "/api/v1/nodes/2").unwrap();
    assert_eq!(n2["labels"], json!({"rack": "b"}));

    // Nodes: drained for maintenance and back, shown on its page.
    assert!(b.exists("button[name=op][value=drain]"));
    let csrf = csrf_token(&b);
    let (status, _) = post_from_page(&b, "/nodes/2", json!({"csrf": csrf, "op": "drain"}));
    assert!(
        status == 303 || status == 0 || status == 200,
        "drain: {status}"
    );
    wait_until(secs(10), "node 2 in maintenance", || {
        let n = c.get_json(follower, "/api/v1/nodes/2")?;
        if n["maintenance"] == json!(true) {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    });
    b.goto(&format!("{base}/nodes/2"));
    b.wait_for("#node-maintenance", secs(10));
    assert!(b.exists("button[name=op][value=undrain]"));
    let (status, _) = post_from_page(&b, "/nodes/2", json!({"csrf": csrf, "op": "undrain"}));
    assert!(
        status == 303 || status == 0 || status == 200,
        "undrain: {status}"
    );
    wait_until(secs(10), "node 2 out of maintenance", || {
        let n = c.get_json(follower, "/api/v1/nodes/2")?;
        if n["maintenance"] == json!(false) {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    });

    // Groups: a custom group with one permission.
    b.goto(&format!("{base}/groups"));
    b.fill_in_and_submit(
        |b| {
            b.type_into("#g-name", "night-shift");
            b.click("input[name=permissions][value='backups.read']");
        },
        "form[method=post][action='/groups'] button[type=submit]",
        "the group created",
        |b| flash_with(b, "night-shift created"),
    );
    let g = c.get_json(follower, "/api/v1/groups/night-shift").unwrap();
    assert_eq!(g["permissions"], json!(["backups.read"]));
}
