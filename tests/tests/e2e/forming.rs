//! Forming a cluster and joining it.

use bcm_tests::serde_json::Value;
use bcm_tests::{member, wait_until, Cluster, StartOrder};

use crate::{millis, secs};

/// Waits until every running node's `/api/v1/cluster` lists exactly `expected`
/// (id -> voter) with status `up`, all under one cluster id and one leader.
pub(crate) fn wait_for_membership(c: &Cluster, expected: &[(u64, bool)]) -> Vec<Value> {
    wait_until(
        secs(30),
        &format!("every node to list members {expected:?} (id, voter) as up"),
        || {
            c.check_processes();
            let mut views = Vec::new();
            for n in c.running_nodes() {
                let view = c.cluster(n)?;
                let members = view["members"].as_array().cloned().unwrap_or_default();
                if members.len() != expected.len() {
                    return Err(format!("node {n} lists {} members: {view}", members.len()));
                }
                for &(id, voter) in expected {
                    let m = member(&view, id)
                        .ok_or_else(|| format!("node {n} does not list node {id}: {view}"))?;
                    if m["voter"] != Value::Bool(voter) || m["status"] != "up" {
                        return Err(format!(
                            "node {n} sees node {id} as {m} (want voter={voter}, status up)"
                        ));
                    }
                }
                views.push(view);
            }
            let ids: Vec<&Value> = views.iter().map(|v| &v["cluster_id"]).collect();
            if ids.iter().any(|id| id.is_null() || *id != ids[0]) {
                return Err(format!("cluster ids differ or are missing: {ids:?}"));
            }
            let leaders: Vec<&Value> = views.iter().map(|v| &v["leader_id"]).collect();
            if leaders.iter().any(|l| l.is_null() || *l != leaders[0]) {
                return Err(format!("nodes name different leaders: {leaders:?}"));
            }
            Ok(views)
        },
    )
}

#[test]
fn three_nodes_started_in_reverse_order_form_one_cluster() {
    // An operator starts node 3, then node 2, then node 1, a little apart.
    let c = Cluster::builder()
        .name("forming-reverse")
        .voters(3)
        .start_order(StartOrder::Reverse, millis(1500))
        .start();

    // They formed exactly one cluster: three voters, all up, the same cluster id and
    // the same leader on every node.
    let views = wait_for_membership(&c, &[(1, true), (2, true), (3, true)]);
    let leader = c.wait_for_agreed_leader(secs(10));
    assert_eq!(views[0]["leader_id"].as_u64(), Some(leader));
    c.assert_at_most_one_leader_per_term();

    // The cluster works: a write through any node is readable on every node.
    let ack = c.put_config(3, "formed", &"yes".into()).unwrap();
    assert!(ack.is_success(), "write through node 3: {ack}");
    for n in 1..=3 {
        wait_until(secs(10), &format!("node {n} to serve `formed`"), || match c
            .config_value(n, "formed")?
        {
            Some(v) if v == "yes" => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }
}

#[test]
fn three_nodes_started_at_once_elect_one_leader_per_term() {
    // The worst case for a first election: everybody starts in the same instant and
    // campaigns at once. Race it a few times.
    for attempt in 1..=10 {
        let c = Cluster::builder()
            .name(&format!("forming-at-once-{attempt}"))
            .voters(3)
            .start();
        wait_for_membership(&c, &[(1, true), (2, true), (3, true)]);
        c.assert_at_most_one_leader_per_term();
    }
}

#[test]
fn a_fourth_node_that_only_joins_becomes_a_voter_by_itself() {
    let mut c = Cluster::builder()
        .name("forming-join-voter")
        .voters(3)
        .start();
    wait_for_membership(&c, &[(1, true), (2, true), (3, true)]);

    // Node 4 is not in `bootstrap`; it only knows where to `join`, and has role manager.
    let four = c.start_extra(&["manager"]);
    c.wait_ready(four, secs(30));
    let views = wait_for_membership(&c, &[(1, true), (2, true), (3, true), (four, true)]);
    assert_eq!(views.len(), 4, "node {four} answers /api/v1/cluster too");

    // It is a full member: it accepts a write and serves it.
    let ack = c.put_config(four, "joined", &four.into()).unwrap();
    assert!(ack.is_success(), "write through node {four}: {ack}");
    assert_eq!(c.config_value(four, "joined").unwrap(), Some(four.into()));
}

#[test]
fn a_storage_only_node_joins_as_a_learner() {
    let mut c = Cluster::builder()
        .name("forming-join-learner")
        .voters(3)
        .start();
    let ack = c.put_config(1, "before-learner", &"x".into()).unwrap();
    assert!(ack.is_success(), "{ack}");

    let four = c.start_extra(&["storage"]);
    c.wait_ready(four, secs(30));
    wait_for_membership(&c, &[(1, true), (2, true), (3, true), (four, false)]);

    // A learner is a full replica: it serves what was written before it came.
    wait_until(secs(10), "the learner to serve earlier writes", || match c
        .config_value(four, "before-learner")?
    {
        Some(v) if v == "x" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    // And it never leads.
    assert_ne!(c.wait_for_leader(), four);
}
