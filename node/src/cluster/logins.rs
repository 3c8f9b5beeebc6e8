//! The failed-login limiter: how many password checks a client address, an
//! address for one user name, and a user name may have had in the last minute.
//!
//! The leader's limiter is the cluster's: every node, before it checks a password
//! (API or web UI), asks the leader for a slot (`LeaderOp::Login`), as it forwards
//! a write, so the limits hold however the guesses are spread over the nodes. A
//! slot is taken under one lock together with the check, so concurrent guesses
//! cannot all pass it, and it counts as a failure from that moment: a node that
//! found the password right (or never checked it) gives it back; a wrong password,
//! a node that died meanwhile or a lost answer leave it counted.
//!
//! The counts are not replicated: a failed login as a Raft write would let anyone
//! who can reach the login form fill the log. A new leader starts with empty
//! counts. Each node also keeps a limiter of its own, the same rules over the
//! logins it took: it stops a guesser through that node after a leader change, and
//! it alone decides while no leader answers (a node cut off from the others still
//! lets an operator log in).
//!
//! The order of the limits is what keeps them from being turned against a user:
//! one address may spend only `PER_ADDRESS_AND_NAME` (5) of a name's `PER_NAME`
//! (10), so a single address guessing `admin` is stopped by its own limit before
//! it can lock `admin` out for everyone else.
//!
//! Memory: a key is kept only while it has a slot in the window (each key holds at
//! most its limit), and slots are only granted to attempts that go on to a
//! password check, which runs one per core on every node; past `MAX_KEYS` keys
//! new attempts are refused (503) until old ones leave the window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::net::client_addr::network_of;

pub const WINDOW: Duration = Duration::from_secs(60);
/// Failed logins from one address (an IPv6 address: its /64), whatever the names.
pub const PER_ADDRESS: usize = 30;
/// Failed logins from one address for one user name.
pub const PER_ADDRESS_AND_NAME: usize = 5;
/// Failed logins for one user name, from anywhere.
pub const PER_NAME: usize = 10;
/// Longer names cannot exist (users.rs `check_name`): such a login is refused
/// without a look-up, and counted against its address alone.
pub const MAX_NAME: usize = 64;
/// Keys kept at most (each a few dozen bytes plus its slots).
const MAX_KEYS: usize = 100_000;

/// One login attempt, as the limiter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The client's address (net/client_addr.rs).
    pub addr: IpAddr,
    /// The user name, unless longer than any user's.
    pub name: Option<String>,
}

impl Attempt {
    pub fn new(addr: IpAddr, name: &str) -> Attempt {
        Attempt {
            addr,
            name: (name.len() <= MAX_NAME).then(|| name.to_string()),
        }
    }

    /// Its keys, each with its limit, in the order they are checked.
    fn keys(&self) -> Vec<(Key, usize)> {
        let net = network_of(self.addr);
        let mut keys = vec![(Key::Address(net), PER_ADDRESS)];
        if let Some(name) = &self.name {
            keys.push((Key::AddressAndName(net, name.clone()), PER_ADDRESS_AND_NAME));
            keys.push((Key::Name(name.clone()), PER_NAME));
        }
        keys
    }
}

/// What a node asks the leader's limiter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LoginOp {
    /// A slot for this attempt, before its password is checked.
    Begin(Attempt),
    /// The password was right, or was never checked: the slot is given back (and
    /// with a right password, the name's failures are forgotten).
    Settle {
        attempt: Attempt,
        ticket: u64,
        outcome: Outcome,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Succeeded,
    NotChecked,
}

/// The limiter's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoginAnswer {
    /// Go on and check the password; `ticket` names the slot.
    Granted {
        ticket: u64,
    },
    /// Refused: a limit is reached; it has room again in this many seconds.
    Limited {
        retry_after: u64,
    },
    /// Refused: the limiter holds as many keys as it may.
    Full,
    Settled,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    AddressAndName(IpAddr, String),
    Name(String),
}

pub struct LoginLimiter {
    inner: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    /// Per key, its slots in the window, oldest first: when each was taken, and
    /// its ticket.
    by_key: HashMap<Key, VecDeque<(Instant, u64)>>,
    pruned: Option<Instant>,
}

impl Slots {
    /// Slots of `key` in the window, and the seconds until the oldest leaves it.
    fn load(&mut self, key: &Key) -> (usize, u64) {
        let Some(q) = self.by_key.get_mut(key) else {
            return (0, 1);
        };
        while q.front().is_some_and(|(t, _)| t.elapsed() > WINDOW) {
            q.pop_front();
        }
        let wait = q.front().map_or(1, |(t, _)| {
            WINDOW.saturating_sub(t.elapsed()).as_secs().max(1)
        });
        (q.len(), wait)
    }

    /// Drops keys with nothing left in the window: once a window, or now when
    /// `force` (the map is full).
    fn prune(&mut self, force: bool) {
        let due = self.pruned.is_none_or(|t| t.elapsed() >= WINDOW);
        let recent = self
            .pruned
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        if !(due || force && !recent) {
            return;
        }
        self.pruned = Some(Instant::now());
        self.by_key
            .retain(|_, q| q.back().is_some_and(|(t, _)| t.elapsed() <= WINDOW));
    }

    fn give_back(&mut self, key: &Key, ticket: u64) {
        if let Some(q) = self.by_key.get_mut(key) {
            q.retain(|(_, t)| *t != ticket);
            if q.is_empty() {
                self.by_key.remove(key);
            }
        }
    }
}

impl LoginLimiter {
    pub fn new() -> LoginLimiter {
        LoginLimiter {
            inner: Mutex::new(Slots::default()),
        }
    }

    /// Answers one request (this node's own, or another node's on the leader).
    pub fn handle(&self, op: LoginOp) -> LoginAnswer {
        match op {
            LoginOp::Begin(attempt) => self.begin(&attempt),
            LoginOp::Settle {
                attempt,
                ticket,
                outcome,
            } => {
                self.settle(&attempt, ticket, outcome);
                LoginAnswer::Settled
            }
        }
    }

    /// Checks every limit of `attempt` and takes a slot in each, at once.
    pub fn begin(&self, attempt: &Attempt) -> LoginAnswer {
        let keys = attempt.keys();
        let mut slots = self.inner.lock().expect("limiter lock");
        slots.prune(false);
        for (key, limit) in &keys {
            let (load, wait) = slots.load(key);
            if load >= *limit {
                return LoginAnswer::Limited { retry_after: wait };
            }
        }
        if slots.by_key.len() + keys.len() > MAX_KEYS {
            slots.prune(true);
            if slots.by_key.len() + keys.len() > MAX_KEYS {
                return LoginAnswer::Full;
            }
        }
        let ticket = rand::random::<u64>();
        let now = Instant::now();
        for (key, _) in keys {
            slots
                .by_key
                .entry(key)
                .or_default()
                .push_back((now, ticket));
        }
        LoginAnswer::Granted { ticket }
    }

    /// Gives the slot `ticket` back; a right password also forgets the failures
    /// of its name (from everywhere) and of its name from its address.
    pub fn settle(&self, attempt: &Attempt, ticket: u64, outcome: Outcome) {
        let mut slots = self.inner.lock().expect("limiter lock");
        for (key, _) in attempt.keys() {
            match (&key, outcome) {
                (Key::Name(_) | Key::AddressAndName(..), Outcome::Succeeded) => {
                    slots.by_key.remove(&key);
                }
                _ => slots.give_back(&key, ticket),
            }
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.inner.lock().expect("limiter lock").by_key.len()
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(addr: &str, name: &str) -> Attempt {
        Attempt::new(addr.parse().unwrap(), name)
    }

    fn granted(a: LoginAnswer) -> u64 {
        match a {
            LoginAnswer::Granted { ticket } => ticket,
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn a_slot_counts_as_a_failure_until_given_back() {
        let l = LoginLimiter::new();
        // PER_NAME concurrent attempts for one name from different addresses:
        // the next is refused at once, before any of them ended.
        let held: Vec<_> = (0..PER_NAME)
            .map(|i| {
                let a = from(&format!("10.0.0.{i}"), "alice");
                let t = granted(l.begin(&a));
                (a, t)
            })
            .collect();
        assert!(matches!(
            l.begin(&from("10.0.0.99", "alice")),
            LoginAnswer::Limited { retry_after } if (1..=60).contains(&retry_after)
        ));
        // They were never checked (the node was busy): room again.
        for (a, t) in &held {
            l.settle(a, *t, Outcome::NotChecked);
        }
        assert_eq!(l.keys(), 0, "nothing is kept for slots given back");
        granted(l.begin(&from("10.0.0.99", "alice")));
    }

    #[test]
    fn one_address_cannot_lock_a_name_out() {
        let l = LoginLimiter::new();
        for _ in 0..PER_ADDRESS_AND_NAME {
            granted(l.begin(&from("203.0.113.7", "admin")));
        }
        // The guesser is stopped by its own limit...
        assert!(matches!(
            l.begin(&from("203.0.113.7", "admin")),
            LoginAnswer::Limited { .. }
        ));
        // ...while the name has room left for everyone else.
        granted(l.begin(&from("198.51.100.9", "admin")));
        // An IPv6 guesser is one client across its /64.
        for i in 0..PER_ADDRESS_AND_NAME {
            granted(l.begin(&from(&format!("2001:db8:1:2::{i}"), "bob")));
        }
        assert!(matches!(
            l.begin(&from("2001:db8:1:2:ffff::1", "bob")),
            LoginAnswer::Limited { .. }
        ));
    }

    #[test]
    fn failures_from_one_address_stop_every_name_from_it() {
        let l = LoginLimiter::new();
        for i in 0..PER_ADDRESS {
            granted(l.begin(&from("10.0.0.1", &format!("u{i}"))));
        }
        assert!(matches!(
            l.begin(&from("10.0.0.1", "carol")),
            LoginAnswer::Limited { .. }
        ));
        granted(l.begin(&from("10.0.0.2", "carol")));
        // A name too long to exist counts against its address alone.
        let long = "x".repeat(MAX_NAME + 1);
        assert_eq!(from("10.0.0.3", &long).name, None);
        granted(l.begin(&from("10.0.0.3", &long)));
    }

    #[test]
    fn a_right_password_forgets_the_names_failures() {
        let l = LoginLimiter::new();
        for i in 0..PER_NAME - 1 {
            granted(l.begin(&from(&format!("10.0.1.{i}"), "alice")));
        }
        let a = from("10.0.0.1", "alice");
        let t = granted(l.begin(&a));
        l.settle(&a, t, Outcome::Succeeded);
        for i in 0..PER_NAME - 1 {
            granted(l.begin(&from(&format!("10.0.2.{i}"), "alice")));
        }
        granted(l.begin(&from("10.0.3.1", "alice")));
    }

    #[test]
    fn wire_types_round_trip() {
        let op = LoginOp::Settle {
            attempt: from("2001:db8::1", "admin"),
            ticket: 7,
            outcome: Outcome::Succeeded,
        };
        let bytes = bcm_raft_store::codec::encode(&op).unwrap();
        let back: LoginOp = bcm_raft_store::codec::decode(&bytes).unwrap();
        assert!(matches!(back, LoginOp::Settle { ticket: 7, .. }));
    }
}
