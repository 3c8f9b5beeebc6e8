//! The node registry: listing, pre-registering, labelling and decommissioning nodes,
//! through any node.

use std::collections::BTreeSet;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{item_ids, member, wait_for, wait_until, Cluster, ADMIN_PASSWORD};
use reqwest::Method;

use crate::secs;

/// The voter ids in a `/api/v1/cluster` answer.
fn voters(view: &Value) -> BTreeSet<u64> {
    view["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["voter"] == true)
        .filter_map(|m| m["id"].as_u64())
        .collect()
}

/// Waits until `node` lists exactly `ids` for `GET /api/v1/nodes{query}`.
fn wait_listed(c: &Cluster, node: u64, query: &str, ids: &[u64]) {
    wait_for(
        secs(10),
        &format!("node {node} to list {ids:?} for /api/v1/nodes{query}"),
        || c.get_json(node, &format!("/api/v1/nodes{query}")),
        |list| item_ids(list) == ids && list["total"] == ids.len(),
    );
}

/// Three voters and a fourth node that joins them through `join` with `roles`.
fn three_voters_and_a_joiner(name: &str, roles: &[&str]) -> Cluster {
    Cluster::builder()
        .name(name)
        .voters(3)
        .joiner(roles)
        .start()
}

/// Three voters, then one of the two followers killed: `(cluster, leader, the live
/// follower, the dead one)`.
fn three_voters_with_a_follower_killed(name: &str) -> (Cluster, u64, u64, u64) {
    let c = Cluster::builder().name(name).voters(3).start();
    let leader = c.wait_for_leader();
    let followers = c.followers();
    let (live, dead) = (followers[0], followers[1]);
    c.kill(dead);
    (c, leader, live, dead)
}

#[test]
fn the_node_registry_is_listed_filtered_and_edited_through_a_follower() {
    let c = Cluster::builder().name("nodes-registry").voters(3).start();
    let followers = c.followers();
    let (f, g) = (followers[0], followers[1]);

    // A follower lists the three voters, each up, with its roles and the leader's
    // live view of it (last contact, matched log index).
    let list = wait_for(
        secs(10),
        &format!("node {f} to list three voters, up, with contact and matched index"),
        || c.get_json(f, "/api/v1/nodes"),
        |list| {
            let items = list["items"].as_array().cloned().unwrap_or_default();
            item_ids(list) == [1, 2, 3]
                && list["total"] == 3
                && items.iter().all(|m| {
                    m["status"] == "up"
                        && m["voter"] == true
                        && m["enabled"] == true
                        && m["last_contact_ms"].is_u64()
                        && m["matched_index"].as_u64().is_some_and(|i| i > 0)
                })
        },
    );
    for m in list["items"].as_array().unwrap() {
        let id = m["id"].as_u64().unwrap();
        assert_eq!(m["name"], format!("node-{id}"), "{m}");
        assert_eq!(m["api_addr"], c.api_url(id), "{m}");
        assert_eq!(m["rpc_addr"], c.rpc_url(id), "{m}");
        assert_eq!(
            m["roles"],
            json!(["manager", "backup-manager", "storage"]),
            "{m}"
        );
    }

    // Filters: by name or id, by role, by status.
    wait_listed(&c, f, "?q=node-2", &[2]);
    wait_listed(&c, f, "?q=3", &[3]);
    wait_listed(&c, f, "?q=no-such-node", &[]);
    wait_listed(&c, f, "?role=backup-manager", &[1, 2, 3]);
    wait_listed(&c, f, "?status=up", &[1, 2, 3]);
    wait_listed(&c, f, "?status=down", &[]);

    // An operator pre-registers node 9, a storage node that is not running yet.
    let nine = json!({
        "id": 9,
        "name": "node-9",
        "api_addr": "http://127.0.0.1:9",
        "rpc_addr": "http://127.0.0.1:10",
        "roles": ["storage"],
    });
    let r = c.post(f, "/api/v1/nodes", &nine).unwrap();
    assert_eq!(r.status, 201, "pre-registering node 9 via node {f}: {r}");
    assert_eq!(r.json()["id"], 9, "{r}");
    assert_eq!(r.json()["roles"], json!(["storage"]), "{r}");

    // Every node shows it, down (nothing answers for it) and not a voter.
    for n in c.all_nodes() {
        wait_for(
            secs(10),
            &format!("node {n} to show node 9 down"),
            || c.call(n, Method::GET, "/api/v1/nodes/9", None),
            |r| r.status == 200 && r.json()["status"] == "down" && r.json()["voter"] == false,
        );
    }
    wait_listed(&c, f, "?status=down", &[9]);
    wait_listed(&c, f, "?status=up", &[1, 2, 3]);
    wait_listed(&c, f, "?role=storage", &[1, 2, 3, 9]);
    wait_listed(&c, f, "?role=manager", &[1, 2, 3]);

    // The same id twice is a conflict, whether pre-registered or a running member.
    for dup in [9, g] {
        let mut body = nine.clone();
        body["id"] = json!(dup);
        let r = c.post(f, "/api/v1/nodes", &body).unwrap();
        assert_eq!(r.status, 409, "registering node {dup} again: {r}");
        r.check_problem().unwrap();
    }

    // Roles must be known ones, and there must be at least one.
    for roles in [json!(["chef"]), json!([])] {
        let mut body = nine.clone();
        body["id"] = json!(10);
        body["roles"] = roles.clone();
        let r = c.post(f, "/api/v1/nodes", &body).unwrap();
        assert_eq!(r.status, 422, "registering node 10 with roles {roles}: {r}");
        r.check_problem().unwrap();
        assert_eq!(r.json()["field"], "roles", "the problem names `roles`: {r}");
    }
    wait_listed(&c, f, "?q=10", &[]);

    // The operator labels member g and disables it (say, for maintenance) through
    // another node; every node shows the change.
    let patch = json!({"labels": {"rack": "r7", "zone": "eu-west-1"}, "enabled": false});
    let r = c.patch(f, &format!("/api/v1/nodes/{g}"), &patch).unwrap();
    assert_eq!(r.status, 200, "PATCH node {g}: {r}");
    for n in c.all_nodes() {
        wait_for(
            secs(10),
            &format!("node {n} to show node {g} labelled and disabled"),
            || c.get_json(n, &format!("/api/v1/nodes/{g}")),
            |m| m["labels"] == patch["labels"] && m["enabled"] == false,
        );
    }
    wait_listed(&c, f, "?enabled=false", &[g]);
    // Disabling is not decommissioning: g is still an up voter.
    let view = c.cluster(c.wait_for_leader()).unwrap();
    let m = member(&view, g).unwrap();
    assert!(m["voter"] == true && m["status"] == "up", "node {g}: {m}");

    // Patching a node nobody registered is a 404.
    let r = c.patch(f, "/api/v1/nodes/42", &patch).unwrap();
    assert_eq!(r.status, 404, "PATCH node 42: {r}");
    r.check_problem().unwrap();
}

#[test]
fn a_decommissioned_node_leaves_the_membership_and_is_refused_when_restarted() {
    let c = three_voters_and_a_joiner("nodes-decommission", &["manager"]);
    let four = 4;
    // Node 4 joined through `join` and became the fourth voter.
    wait_until(secs(30), "node 4 to be an up voter", || {
        let view = c.cluster(c.leader().ok_or("no leader")?)?;
        match member(&view, four) {
            Some(m) if m["voter"] == true && m["status"] == "up" => Ok(()),
            other => Err(format!("node 4: {other:?}")),
        }
    });

    // The operator decommissions node 4 through one of the bootstrap nodes.
    let via = c.followers().into_iter().find(|n| *n != four).unwrap();
    let r = c.delete(via, &format!("/api/v1/nodes/{four}")).unwrap();
    assert_eq!(r.status, 200, "DELETE node {four} via node {via}: {r}");
    assert_eq!(r.json()["status"], "removed", "{r}");

    // Every remaining node sees three voters and node 4 gone or marked removed.
    let three = BTreeSet::from([1, 2, 3]);
    for n in [1, 2, 3] {
        wait_until(
            secs(10),
            &format!("node {n} to show node 4 removed"),
            || {
                let view = c.cluster(n)?;
                let gone = match member(&view, four) {
                    None => true,
                    Some(m) => m["status"] == "removed" && m["voter"] == false,
                };
                if gone && voters(&view) == three {
                    Ok(())
                } else {
                    Err(view.to_string())
                }
            },
        );
    }
    wait_listed(&c, via, "?status=removed", &[four]);

    // The operator shuts node 4 down; later somebody starts it again with its old
    // data. The cluster manager refuses it, and it does not become a member again.
    c.kill(four);
    c.restart(four);
    let log = c.log_path(four);
    wait_until(
        secs(20),
        "restarted node 4 to be refused by the cluster manager",
        || {
            c.check_processes();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let this_run = text.rsplit("start #2 of node 4").next().unwrap_or("");
            if this_run.contains("refused this node") && this_run.contains("decommissioned") {
                Ok(())
            } else {
                Err(c.log_tail(four, 5))
            }
        },
    );
    for n in [1, 2, 3] {
        let view = c.cluster(n).unwrap();
        assert_eq!(voters(&view), three, "node {n}: {view}");
        if let Some(m) = member(&view, four) {
            assert_eq!(m["status"], "removed", "node {n} shows node 4 as {m}");
        }
    }
    // Its own state is frozen: it says it is not ready and serves no API request,
    // rather than answer from a state that no longer follows the cluster.
    let ready = c.call(four, Method::GET, "/readyz", None).unwrap();
    assert_eq!(ready.status, 503, "/readyz on the refused node 4: {ready}");
    let put = c.put_config(four, "via-removed", &json!(1)).unwrap();
    assert_eq!(put.status, 503, "a write through the refused node 4: {put}");
    let detail = put.json()["detail"].as_str().unwrap_or("").to_string();
    assert!(
        detail.contains("decommissioned"),
        "the refusal says why: {put}"
    );
    // It still asks who is calling first: without a token the answer is 401, as
    // on any node, not a word about its state.
    for (method, path) in [
        (Method::GET, "/api/v1/cluster"),
        (Method::DELETE, "/api/v1/users/1"),
    ] {
        let r = c.send(c.request(four, method.clone(), path)).unwrap();
        assert_eq!(
            r.status, 401,
            "{method} {path} on the refused node 4 without a token: {r}"
        );
    }
    let login = c.login_with(four, "admin", ADMIN_PASSWORD).unwrap();
    assert_eq!(
        login.status, 503,
        "logging in on the refused node 4: {login}"
    );
    c.kill(four);

    // The remaining three form the whole cluster: with one of them down, the other
    // two are a majority and still commit writes.
    for n in [1, 2, 3] {
        let r = c
            .put_config(n, &format!("after-decommission-{n}"), &json!(n))
            .unwrap();
        assert!(r.is_success(), "write via node {n}: {r}");
    }
    let victim = c.followers()[0];
    c.kill(victim);
    let via = c.write_eventually("two-of-three", &json!(true), secs(10));
    c.log(format!(
        "with node {victim} and node 4 down, a write committed via node {via}"
    ));
}

#[test]
fn deleting_a_voter_that_would_leave_no_quorum_is_refused_and_changes_nothing() {
    let (c, leader, live, dead) = three_voters_with_a_follower_killed("nodes-no-quorum");
    // The cluster manager notices that `dead` is down.
    wait_for(
        secs(10),
        &format!("node {dead} to be shown down"),
        || c.get_json(live, &format!("/api/v1/nodes/{dead}")),
        |m| m["status"] == "down",
    );

    // Removing either live voter would leave one up voter of two: refused.
    for (target, via) in [(live, leader), (leader, live)] {
        let r = c.delete(via, &format!("/api/v1/nodes/{target}")).unwrap();
        assert_eq!(r.status, 409, "DELETE node {target} via node {via}: {r}");
        r.check_problem().unwrap();
        let detail = r.json()["detail"].as_str().unwrap_or("").to_string();
        assert!(detail.contains("quorum"), "the refusal says why: {r}");
    }

    // Nothing changed: three voters, nobody removed, writes commit with two of three.
    for n in [leader, live] {
        let view = c.cluster(n).unwrap();
        assert_eq!(voters(&view), BTreeSet::from([1, 2, 3]), "node {n}: {view}");
        for m in view["members"].as_array().unwrap() {
            assert_ne!(m["status"], "removed", "node {n} shows {m}");
        }
        let r = c.put_config(n, &format!("still-{n}"), &json!(n)).unwrap();
        assert!(r.is_success(), "write via node {n}: {r}");
    }

    // The dead node comes back as a voter, as if nothing had happened.
    c.restart(dead);
    c.wait_ready(dead, secs(30));
    wait_listed(&c, dead, "?status=up", &[1, 2, 3]);
    let written = [leader, live]
        .map(|n| (format!("still-{n}"), json!(n)))
        .into();
    c.wait_all_present(&[dead], &written, secs(10));
}

#[test]
fn deleting_a_voter_right_after_another_died_is_refused_and_leaves_the_cluster_whole() {
    // A voter dies, and the operator, not yet aware, decommissions another one at once:
    // with `dead` gone, removing `live` would leave the leader alone with a dead voter.
    let (c, leader, live, dead) = three_voters_with_a_follower_killed("nodes-no-quorum-race");
    let r = c.delete(leader, &format!("/api/v1/nodes/{live}"));
    let r = r.unwrap_or_else(|e| {
        panic!(
            "DELETE node {live} via node {leader} right after node {dead} died got no answer \
             ({e}); /leader views: {}",
            c.leader_views()
        )
    });
    assert_eq!(
        r.status, 409,
        "DELETE node {live} right after node {dead} died: {r}"
    );

    // Nothing changed: the dead node comes back, and then the three voters tolerate
    // the loss of any one of them again, including `dead`.
    c.restart(dead);
    c.wait_ready(dead, secs(30));
    wait_listed(&c, leader, "?status=up", &[1, 2, 3]);
    c.kill(dead);
    let key = "with-the-restarted-node-down-again";
    let r = c.put_config(leader, key, &json!(true)).unwrap();
    assert!(
        r.is_success(),
        "with node {dead} down, nodes {leader} and {live} are a majority of three, \
         but a write via the leader got {r}"
    );
}

/// PATCHes `id`'s roles through `via` and expects 200 with those roles.
fn set_roles(c: &Cluster, via: u64, id: u64, roles: &[&str]) {
    let r = c
        .patch(
            via,
            &format!("/api/v1/nodes/{id}"),
            &json!({ "roles": roles }),
        )
        .unwrap();
    assert_eq!(
        r.status, 200,
        "PATCH node {id} roles {roles:?} via node {via}: {r}"
    );
    assert_eq!(r.json()["roles"], json!(roles), "{r}");
}

#[test]
fn roles_set_through_the_api_move_nodes_between_voters_and_learners() {
    use crate::forming::wait_for_membership;

    let c = three_voters_and_a_joiner("nodes-roles-voters", &["storage"]);
    wait_for_membership(&c, &[(1, true), (2, true), (3, true), (4, false)]);
    let leader = c.wait_for_leader();
    let f = c.followers()[0];
    let g = (1..=3).find(|n| *n != leader && *n != f).unwrap();

    // Storage node 4 gains role manager: once caught up it becomes a voter.
    set_roles(&c, f, 4, &["manager", "storage"]);
    wait_for_membership(&c, &[(1, true), (2, true), (3, true), (4, true)]);

    // Follower f loses it: it becomes a learner, stays up and keeps serving.
    set_roles(&c, 4, f, &["storage"]);
    wait_for_membership(
        &c,
        &[(1, true), (2, true), (3, true), (4, true)].map(|(id, v)| (id, v && id != f)),
    );
    // A restart does not undo it, though f's config file still lists manager: the
    // config file's roles only seed the registry's, and f says so in its log.
    c.kill(f);
    c.restart(f);
    c.wait_ready(f, secs(30));
    c.wait_for_log(f, "are not the cluster registry's", secs(10));
    let view = c.get_json(leader, &format!("/api/v1/nodes/{f}")).unwrap();
    assert_eq!(view["roles"], json!(["storage"]), "{view}");
    wait_for_membership(
        &c,
        &[(1, true), (2, true), (3, true), (4, true)].map(|(id, v)| (id, v && id != f)),
    );
    let ack = c.put_config(f, "after-demotion", &json!(f)).unwrap();
    assert!(ack.is_success(), "a write through the learner {f}: {ack}");
    assert_eq!(c.config_value(f, "after-demotion").unwrap(), Some(json!(f)));

    // The leader loses it: it steps aside, a voter takes over, it stays a learner.
    set_roles(&c, f, leader, &["backup-manager", "storage"]);
    wait_for_membership(&c, &[(leader, false), (f, false), (g, true), (4, true)]);
    let next = agreed_leader_among(&c, &[g, 4]);

    // Twice over, with two voters left: the new leader loses it too and steps aside
    // for the one voter left.
    let last = if next == g { 4 } else { g };
    let roles_of_last = c.get_json(f, &format!("/api/v1/nodes/{last}")).unwrap()["roles"].clone();
    set_roles(&c, last, next, &["storage"]);
    let expected = [(leader, false), (f, false), (next, false), (last, true)];
    wait_for_membership(&c, &expected);
    assert_eq!(agreed_leader_among(&c, &[last]), last);

    // Taking manager from the last node that has it is refused and changes nothing.
    let r = c
        .patch(
            f,
            &format!("/api/v1/nodes/{last}"),
            &json!({ "roles": ["storage"] }),
        )
        .unwrap();
    assert_eq!(
        r.status, 409,
        "taking manager from the last node with it: {r}"
    );
    r.check_problem().unwrap();
    assert_eq!(r.json()["field"], "roles", "{r}");
    let view = c.get_json(f, &format!("/api/v1/nodes/{last}")).unwrap();
    assert_eq!(view["roles"], roles_of_last, "{view}");
    assert_eq!(view["voter"], true, "{view}");

    // The one voter leads and every write still lands, through any node.
    for n in [leader, f, g, 4] {
        let ack = c
            .put_config(n, &format!("one-voter-{n}"), &json!(n))
            .unwrap();
        assert!(ack.is_success(), "a write through node {n}: {ack}");
        assert_eq!(
            c.config_value(n, &format!("one-voter-{n}")).unwrap(),
            Some(json!(n))
        );
    }
    wait_for_membership(&c, &expected);
}

/// Waits until every node names the same leader, one of `among`, and returns it.
fn agreed_leader_among(c: &Cluster, among: &[u64]) -> u64 {
    wait_until(
        secs(10),
        &format!("every node to agree on a leader among {among:?}"),
        || {
            let mut seen = BTreeSet::new();
            for n in c.running_nodes() {
                seen.insert(c.cluster(n)?["leader_id"].as_u64());
            }
            match seen.iter().collect::<Vec<_>>()[..] {
                [Some(l)] if among.contains(l) => Ok(*l),
                _ => Err(format!("leader ids seen: {seen:?}")),
            }
        },
    )
}

#[test]
fn a_demotion_that_would_leave_no_quorum_waits_until_it_is_safe() {
    use crate::forming::wait_for_membership;

    let (c, leader, f, down) = three_voters_with_a_follower_killed("nodes-roles-quorum");

    // With `down` dead, losing f would leave the leader alone among two voters.
    set_roles(&c, leader, f, &["storage"]);
    c.wait_for_log(
        leader,
        &format!("node {f} lost role manager and stays a voter for now"),
        secs(10),
    );
    let view = c.cluster(leader).unwrap();
    assert_eq!(member(&view, f).unwrap()["voter"], true, "{view}");
    let ack = c.put_config(f, "while-waiting", &json!(1)).unwrap();
    assert!(ack.is_success(), "the two voters up still commit: {ack}");

    // Once the third voter is back, f becomes a learner.
    c.restart(down);
    wait_for_membership(&c, &[(leader, true), (down, true), (f, false)]);
    wait_until(
        secs(10),
        "the restarted voter to serve the write made without it",
        || match c.config_value(down, "while-waiting")? {
            Some(v) if v == json!(1) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}
