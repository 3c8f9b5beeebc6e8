//! Who leads: waiting for a (new, agreed) leader, and no term with two leaders in the logs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use super::Cluster;
use crate::{parse_became_leader, wait_until};

impl Cluster {
    /// Waits (up to 30 s) until some live node says it is the leader; returns it.
    pub fn wait_for_leader(&self) -> u64 {
        wait_until(Duration::from_secs(30), "a leader", || {
            self.check_processes();
            self.leader().ok_or_else(|| self.leader_views())
        })
    }

    /// Waits (up to 30 s) until a live node other than `old` is the leader.
    pub fn wait_for_new_leader(&self, old: u64) -> u64 {
        let l = wait_until(
            Duration::from_secs(30),
            &format!("a leader other than node {old}"),
            || {
                self.check_processes();
                match self.leader() {
                    Some(l) if l != old => Ok(l),
                    _ => Err(self.leader_views()),
                }
            },
        );
        self.log(format!("new leader: node {l} (was {old})"));
        l
    }

    /// Waits until every live node's `/leader` names the same leader and that leader
    /// answers 200; returns it.
    pub fn wait_for_agreed_leader(&self, timeout: Duration) -> u64 {
        wait_until(timeout, "every live node to agree on one leader", || {
            self.check_processes();
            let leader = self.leader().ok_or_else(|| self.leader_views())?;
            for n in self.live_nodes() {
                let (_, view) = self.leader_view(n)?;
                if view.leader_id != Some(leader) {
                    return Err(self.leader_views());
                }
            }
            Ok(leader)
        })
    }

    /// What every live node's `/leader` says, for failure messages.
    pub fn leader_views(&self) -> String {
        let mut s = String::new();
        for n in self.live_nodes() {
            match self.leader_status(n) {
                Ok((st, body)) => {
                    let _ = write!(s, "[node {n}: {st} {body}] ");
                }
                Err(e) => {
                    let _ = write!(s, "[node {n}: {e}] ");
                }
            }
        }
        if s.is_empty() {
            s.push_str("no live node");
        }
        s
    }

    /// Live nodes other than the current leader.
    pub fn followers(&self) -> Vec<u64> {
        let leader = self.wait_for_leader();
        self.live_nodes()
            .into_iter()
            .filter(|n| *n != leader)
            .collect()
    }

    /// Every `became leader ... term=T ... node_id=N` line in all node logs, as
    /// term -> set of node ids that claimed leadership in that term.
    pub fn leaders_by_term(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        let mut map: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for node in self.nodes.values() {
            let text = fs::read_to_string(&node.log_path).unwrap_or_default();
            for (term, id) in parse_became_leader(&text) {
                map.entry(term).or_default().insert(id);
            }
        }
        map
    }

    /// Asserts, from the logs, that no term had two leaders, and returns the map.
    pub fn assert_at_most_one_leader_per_term(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        let leaders = self.leaders_by_term();
        self.log(format!("leaders by term (from the logs): {leaders:?}"));
        let split: BTreeMap<_, _> = leaders.iter().filter(|(_, ids)| ids.len() > 1).collect();
        assert!(
            split.is_empty(),
            "terms with more than one leader (term -> leaders): {split:?}; \
             all terms: {leaders:?}"
        );
        leaders
    }
}
