//! A follower loses its disk: it catches up from a snapshot and its empty memory never
//! gives anybody a second vote.

use std::collections::BTreeMap;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{member, wait_until, Cluster};

use crate::secs;

fn write_many(c: &Cluster, prefix: &str, n: usize, acked: &mut BTreeMap<String, Value>) {
    for i in 0..n {
        let key = format!("{prefix}-{i}");
        let value = json!({"i": i, "prefix": prefix});
        c.write_eventually(&key, &value, secs(10));
        acked.insert(key, value);
    }
}

#[test]
fn a_wiped_follower_catches_up_from_a_snapshot_and_never_splits_a_term() {
    let c = Cluster::builder()
        .name("wipe")
        .voters(3)
        .snapshot_every(50)
        .keep_logs_behind_snapshot(20)
        .start();
    let mut acked = BTreeMap::new();
    // Well past two snapshots, so the leader's log no longer starts at 1.
    write_many(&c, "early", 120, &mut acked);

    // A follower's disk is lost.
    let victim = c.followers()[0];
    c.kill(victim);
    c.wipe(victim);
    // The others go on without it.
    write_many(&c, "while-down", 60, &mut acked);

    // It comes back with an empty data dir and serves every earlier write.
    c.restart(victim);
    c.wait_ready(victim, secs(60));
    c.wait_all_present(&[victim], &acked, secs(30));
    // The leader's log starts after the snapshot: the node can only have caught up
    // by installing it.
    let log = std::fs::read_to_string(c.log_path(victim)).expect("the wiped node's log");
    assert!(
        log.contains("installed snapshot"),
        "node {victim} caught up without installing a snapshot; its log: {}",
        c.log_path(victim).display()
    );

    // It is promoted back to voter once it has caught up.
    let wait_voter = |what: &str| {
        wait_until(secs(30), what, || {
            let leader = c.leader().ok_or("no leader")?;
            let view = c.cluster(leader)?;
            match member(&view, victim) {
                Some(m) if m["voter"] == true && m["status"] == "up" => Ok(()),
                other => Err(format!("leader {leader} sees node {victim} as {other:?}")),
            }
        })
    };
    wait_voter(&format!("wiped node {victim} to be a voter again"));

    // Force elections: kill the leader a few times, restarting it each time.
    for round in 1..=3 {
        let old = c.wait_for_leader();
        c.kill(old);
        c.wait_for_new_leader(old);
        c.write_eventually(&format!("election-{round}"), &json!(round), secs(15));
        acked.insert(format!("election-{round}"), json!(round));
        c.restart(old);
        c.wait_ready(old, secs(30));
    }

    // Every term had at most one leader, according to what the nodes logged.
    let leaders = c.assert_at_most_one_leader_per_term();
    assert!(
        leaders.len() >= 4,
        "expected the logs to show a leader for the first term and each forced election \
         (`became leader term=T node_id=N` lines); found {leaders:?}"
    );

    wait_voter(&format!("wiped node {victim} to be a voter at the end"));
    c.wait_all_present(&c.all_nodes(), &acked, secs(30));
}

/// A bootstrap member whose `cluster.join` names only itself loses its disk: started
/// again, it finds the leader through its bootstrap peers and is back within 10 s.
#[test]
fn a_wiped_bootstrap_member_whose_join_lists_only_itself_rejoins() {
    let c = Cluster::builder().name("wipe-join-self").voters(3).start();
    let mut acked = BTreeMap::new();
    write_many(&c, "before", 20, &mut acked);

    let victim = c.followers()[0];
    c.kill(victim);
    c.wipe(victim);
    let path = c.config_path(victim);
    let config = std::fs::read_to_string(&path).expect("the victim's config");
    let own = format!("join = [\"{}\"]", c.rpc_url(victim));
    let rewritten: Vec<String> = config
        .lines()
        .map(|l| {
            if l.starts_with("join = ") {
                own.clone()
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(
        rewritten.contains(&own),
        "no join line in {}",
        path.display()
    );
    std::fs::write(&path, rewritten.join("\n") + "\n").expect("rewrite the config");
    write_many(&c, "while-down", 10, &mut acked);

    c.restart(victim);
    c.wait_ready(victim, secs(10));
    c.wait_all_present(&[victim], &acked, secs(30));
}

/// A bootstrap member loses its disk while another bootstrap member is gone for
/// good: started again, it joins through the members that answer instead of
/// waiting for every bootstrap member as a first formation does.
#[test]
fn a_wiped_bootstrap_member_rejoins_while_another_one_is_down() {
    let c = Cluster::builder().name("wipe-one-down").voters(5).start();
    let mut acked = BTreeMap::new();
    write_many(&c, "before", 10, &mut acked);

    let leader = c.wait_for_leader();
    let mut followers = c.followers().into_iter();
    let (gone, victim) = (followers.next().unwrap(), followers.next().unwrap());
    c.kill(gone);
    c.kill(victim);
    c.wipe(victim);
    write_many(&c, "while-down", 10, &mut acked);

    c.restart(victim);
    c.wait_ready(victim, secs(20));
    c.wait_all_present(&[victim], &acked, secs(30));
    // Removed as the member it was, then added and promoted again.
    c.wait_for_log(
        leader,
        &format!("promoting node to voter node_id={victim}"),
        secs(30),
    );
    wait_until(secs(30), "the wiped node to be a voter again", || {
        let view = c.cluster(c.leader().unwrap_or(leader))?;
        match member(&view, victim) {
            Some(m) if m["voter"] == true && m["status"] == "up" => Ok(()),
            other => Err(format!("node {victim} is {other:?}")),
        }
    });
}
