//! Is a history of register operations linearizable? The Wing–Gong search
//! with Lowe's memoization (as in porcupine and Knossos), one key at a time
//! (keys are independent registers, so the history splits by key and each part
//! is searched alone).
//!
//! The model is a register holding a value (or nothing): a write sets it, a
//! read returns it, a compare-and-set sets it only when it holds the value
//! expected. Values written are unique, so a compare-and-set against a version
//! the client read is one against the value it read with it. An operation
//! whose outcome the client does not know (a timeout, a connection lost) has
//! no end: it may take effect at any point after it began, or never.
//!
//! Long histories (hours of faults, thousands of timed-out writes) are kept
//! tractable: a write (or compare-and-set) of unknown outcome whose value was
//! seen must have taken effect before the first answer that saw it, which
//! becomes its end (exact). One whose value nobody saw is left out in a first
//! search; it can matter only by explaining a refused compare-and-set, so a key
//! that first search cannot linearize is searched again with them in, and only
//! a failure of that search is a violation. The search remembers where it has
//! been by a 128-bit Zobrist hash of the operations taken in, not a copy of
//! the set.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// One register operation as a client saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub client: u32,
    pub key: String,
    /// When it was sent and when its answer came (µs since the run began); no
    /// answer: its outcome is not known.
    pub call_us: u64,
    pub ret_us: Option<u64>,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Wrote the value (`ok` when acknowledged).
    Write { value: u64 },
    /// Read the value (None: the key did not exist). Only answered reads count.
    Read { value: Option<u64> },
    /// Compare-and-set from `expect` to `value`: `ok` when it was applied,
    /// false when refused (412: not holding `expect`), None when not known.
    Cas {
        expect: Option<u64>,
        value: u64,
        ok: Option<bool>,
    },
}

/// What the search found wrong with one key's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub key: String,
    /// How many of its operations the longest linearization found took in.
    pub linearized: usize,
    pub ops: usize,
    /// The operations around where every linearization got stuck, in the order
    /// they began: a window small enough to read.
    pub window: Vec<Op>,
    /// The search ran out of its budget before it could say: not a proof.
    pub gave_up: bool,
}

/// Checks every key's history; the violations, one per key that has one.
pub fn check(history: &[Op]) -> Vec<Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    by_key
        .into_iter()
        .filter_map(|(key, ops)| check_key(key, &ops))
        .collect()
}

/// The register's next state after `op` from `state`, if `op` can take
/// effect there.
fn step(state: Option<u64>, op: &Kind) -> Option<Option<u64>> {
    match op {
        Kind::Write { value } => Some(Some(*value)),
        Kind::Read { value } => (state == *value).then_some(state),
        Kind::Cas {
            expect,
            value,
            ok: Some(true),
        } => (state == *expect).then_some(Some(*value)),
        Kind::Cas {
            expect,
            ok: Some(false),
            ..
        } => (state != *expect).then_some(state),
        Kind::Cas {
            expect,
            value,
            ok: None,
        } => Some(if state == *expect {
            Some(*value)
        } else {
            state
        }),
    }
}

/// One call or return in the doubly linked list of events the search walks.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return.
    matching: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

/// The value an operation writes, if it writes one.
fn written(kind: &Kind) -> Option<u64> {
    match kind {
        Kind::Write { value } | Kind::Cas { value, .. } => Some(*value),
        Kind::Read { .. } => None,
    }
}

/// `ops` ready for the search (see the module's doc): reads without an answer
/// left out, writes of unknown outcome whose value was seen ended where first
/// seen, and those never seen left out too unless `keep_unseen`.
fn reduce(ops: &[&Op], keep_unseen: bool) -> Vec<Op> {
    // When each value was first seen by an answer: a read returning it, or a
    // compare-and-set that found it.
    let mut seen: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for o in ops {
        let (Some(ret), Some(v)) = (
            o.ret_us,
            match &o.kind {
                Kind::Read { value } => *value,
                Kind::Cas {
                    expect,
                    ok: Some(true),
                    ..
                } => *expect,
                _ => None,
            },
        ) else {
            continue;
        };
        let first = seen.entry(v).or_insert(ret);
        *first = (*first).min(ret);
    }
    ops.iter()
        .filter_map(|o| {
            if o.ret_us.is_some() {
                return Some((*o).clone());
            }
            let v = written(&o.kind)?; // an unanswered read: nothing to say
            let mut o = (*o).clone();
            match seen.get(&v) {
                Some(first) => o.ret_us = Some((*first).max(o.call_us)),
                None if keep_unseen => {}
                None => return None,
            }
            Some(o)
        })
        .collect()
}

/// A random 128-bit key per operation for the search's memory (splitmix64).
fn zobrist(i: usize) -> u128 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix((i as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(1));
    let b = mix(a ^ 0x5851_f42d_4c95_7f2d);
    (u128::from(a) << 64) | u128::from(b)
}

fn check_key(key: &str, ops: &[&Op]) -> Option<Violation> {
    search(key, &reduce(ops, false))?;
    search(key, &reduce(ops, true))
}

/// The Wing–Gong search over one key's operations.
fn search(key: &str, reduced: &[Op]) -> Option<Violation> {
    let ops: Vec<&Op> = reduced.iter().collect();
    let n = ops.len();
    if n == 0 {
        return None;
    }
    // Calls and returns by time (a call before a return at the same instant:
    // operations that touch may overlap); a missing return comes last.
    let mut times: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        times.push((o.call_us, true, i));
        times.push((o.ret_us.unwrap_or(u64::MAX), false, i));
    }
    times.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    let mut events: Vec<Event> = Vec::with_capacity(2 * n + 1);
    // events[0] is the head sentinel.
    events.push(Event {
        op: NIL,
        is_call: false,
        matching: NIL,
        prev: NIL,
        next: 1,
    });
    let mut ret_at = vec![0usize; n];
    for (k, &(_, is_call, i)) in times.iter().enumerate() {
        let at = k + 1;
        if !is_call {
            ret_at[i] = at;
        }
        events.push(Event {
            op: i,
            is_call,
            matching: NIL,
            prev: at - 1,
            next: if k + 1 < times.len() { at + 1 } else { NIL },
        });
    }
    for e in events.iter_mut().skip(1) {
        if e.is_call {
            e.matching = ret_at[e.op];
        }
    }

    let keys: Vec<u128> = (0..n).map(zobrist).collect();
    let mut linearized: u128 = 0;
    let mut seen: HashSet<(u128, Option<u64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut state: Option<u64> = None;
    let mut best = 0usize;
    let mut stuck_at = 0usize;
    let mut cur = events[0].next;
    // Bounded: a search this long is not going to finish here.
    let mut budget: u64 = 50_000_000;
    while cur != NIL {
        budget -= 1;
        if budget == 0 {
            break;
        }
        let e = events[cur];
        if e.is_call {
            if let Some(next) = step(state, &ops[e.op].kind) {
                linearized ^= keys[e.op];
                if seen.insert((linearized, next)) {
                    stack.push((cur, state));
                    state = next;
                    lift(&mut events, cur);
                    if stack.len() > best {
                        best = stack.len();
                    }
                    cur = events[0].next;
                    continue;
                }
                linearized ^= keys[e.op];
            }
            cur = e.next;
        } else {
            // A return whose call is not yet linearized: back up.
            if stack.len() >= best {
                stuck_at = e.op;
            }
            let Some((call, before)) = stack.pop() else {
                return Some(violation(key, &ops, best, stuck_at));
            };
            linearized ^= keys[events[call].op];
            state = before;
            unlift(&mut events, call);
            cur = events[call].next;
        }
    }
    if cur == NIL {
        // Every operation was taken in.
        return None;
    }
    let mut v = violation(key, &ops, best, stuck_at);
    v.gave_up = true;
    Some(v)
}

/// Takes call `at` and its return out of the list.
fn lift(events: &mut [Event], at: usize) {
    let call = events[at];
    events[call.prev].next = call.next;
    if call.next != NIL {
        events[call.next].prev = call.prev;
    }
    let ret = events[call.matching];
    events[ret.prev].next = ret.next;
    if ret.next != NIL {
        events[ret.next].prev = ret.prev;
    }
}

/// Puts call `at` and its return back where they were.
fn unlift(events: &mut [Event], at: usize) {
    let call = events[at];
    let ret = events[call.matching];
    events[ret.prev].next = call.matching;
    if ret.next != NIL {
        events[ret.next].prev = call.matching;
    }
    events[call.prev].next = at;
    if call.next != NIL {
        events[call.next].prev = at;
    }
}

/// The operations that overlap the one where the search got stuck, and a few
/// before it, in the order they began.
fn violation(key: &str, ops: &[&Op], best: usize, stuck: usize) -> Violation {
    let s = ops[stuck];
    let from = s.call_us.saturating_sub(1);
    let to = s.ret_us.unwrap_or(u64::MAX);
    let mut window: Vec<Op> = ops
        .iter()
        .filter(|o| o.call_us <= to && o.ret_us.unwrap_or(u64::MAX) >= from)
        .map(|o| (*o).clone())
        .collect();
    // And the last few that ended before it: the state it started from.
    let mut before: Vec<&&Op> = ops
        .iter()
        .filter(|o| o.ret_us.is_some_and(|r| r < from))
        .collect();
    before.sort_by_key(|o| o.ret_us);
    window.extend(before.iter().rev().take(5).map(|o| (**o).clone()));
    window.sort_by_key(|o| o.call_us);
    window.dedup();
    Violation {
        key: key.to_string(),
        linearized: best,
        ops: ops.len(),
        window,
        gave_up: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, call: u64, ret: Option<u64>, kind: Kind) -> Op {
        Op {
            client,
            key: "k".into(),
            call_us: call,
            ret_us: ret,
            kind,
        }
    }
    fn w(c: u32, a: u64, b: u64, v: u64) -> Op {
        op(c, a, Some(b), Kind::Write { value: v })
    }
    fn r(c: u32, a: u64, b: u64, v: Option<u64>) -> Op {
        op(c, a, Some(b), Kind::Read { value: v })
    }

    #[test]
    fn sequential_and_overlapping_histories_that_can_be_ordered_pass() {
        let h = vec![
            w(1, 0, 10, 1),
            r(2, 11, 20, Some(1)),
            w(1, 21, 30, 2),
            r(2, 31, 40, Some(2)),
        ];
        assert!(check(&h).is_empty());
        // Overlapping write and reads: either order of the reads' values is fine
        // as long as no read goes back.
        let h = vec![
            w(1, 0, 100, 1),
            r(2, 10, 20, None),
            r(3, 30, 40, Some(1)),
            r(2, 50, 60, Some(1)),
        ];
        assert!(check(&h).is_empty());
    }

    #[test]
    fn a_stale_read_is_caught() {
        // The write finished before the read began, yet the read saw the old value.
        let h = vec![w(1, 0, 10, 1), w(1, 20, 30, 2), r(2, 40, 50, Some(1))];
        let v = check(&h);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key, "k");
        assert!(v[0]
            .window
            .iter()
            .any(|o| o.kind == Kind::Read { value: Some(1) }));
    }

    #[test]
    fn a_read_going_back_in_time_is_caught() {
        let h = vec![w(1, 0, 100, 1), r(2, 10, 20, Some(1)), r(3, 30, 40, None)];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let h = vec![w(1, 0, 10, 1), w(2, 20, 30, 2), r(3, 40, 50, Some(1))];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn writes_of_unknown_outcome_may_or_may_not_have_happened() {
        // Seen later: it happened.
        let h = vec![
            op(1, 0, None, Kind::Write { value: 1 }),
            r(2, 10, 20, None),
            r(2, 30, 40, Some(1)),
        ];
        assert!(check(&h).is_empty());
        // Never seen: it did not.
        let h = vec![op(1, 0, None, Kind::Write { value: 1 }), r(2, 10, 20, None)];
        assert!(check(&h).is_empty());
        // But it cannot have happened before it was sent.
        let h = vec![
            r(2, 0, 10, Some(1)),
            op(1, 20, None, Kind::Write { value: 1 }),
        ];
        assert_eq!(check(&h).len(), 1);
    }

    #[test]
    fn compare_and_set_is_checked_against_the_value_it_expected() {
        let cas = |c, a, b, expect, value, ok| {
            op(
                c,
                a,
                Some(b),
                Kind::Cas {
                    expect,
                    value,
                    ok: Some(ok),
                },
            )
        };
        let good = vec![
            w(1, 0, 10, 1),
            cas(2, 20, 30, Some(1), 2, true),
            cas(3, 40, 50, Some(1), 3, false),
            r(1, 60, 70, Some(2)),
        ];
        assert!(check(&good).is_empty());
        // Two compare-and-sets from the same value may not both succeed.
        let both = vec![
            w(1, 0, 10, 1),
            cas(2, 20, 30, Some(1), 2, true),
            cas(3, 40, 50, Some(1), 3, true),
        ];
        assert_eq!(check(&both).len(), 1);
        // One refused although the register held what it expected.
        let refused = vec![w(1, 0, 10, 1), cas(2, 20, 30, Some(1), 2, false)];
        assert_eq!(check(&refused).len(), 1);
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut a = w(1, 0, 10, 1);
        a.key = "a".into();
        let mut b = r(2, 20, 30, Some(1));
        b.key = "b".into();
        let v = check(&[a, b]);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key, "b");
    }

    /// Histories made linearizable by construction: each operation takes
    /// effect at a random instant between its call and its return, on a real
    /// register; some answers are lost (unknown outcome).
    fn generated(seed: u64, clients: u32, per_client: usize) -> Vec<Op> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // (effect time, client, call, ret, kind template)
        let mut planned = Vec::new();
        let mut next_value = 1u64;
        for c in 0..clients {
            let mut t = rng.gen_range(0..50u64);
            for _ in 0..per_client {
                let call = t;
                let ret = call + rng.gen_range(1..200u64);
                let at = rng.gen_range(call..=ret);
                let which = rng.gen_range(0..3);
                planned.push((at, c, call, ret, which, next_value));
                next_value += 1;
                t = ret + rng.gen_range(0..30u64);
            }
        }
        planned.sort();
        let mut register: Option<u64> = None;
        let mut out = Vec::new();
        for (_, c, call, ret, which, fresh) in planned {
            let kind = match which {
                0 => {
                    register = Some(fresh);
                    Kind::Write { value: fresh }
                }
                1 => Kind::Read { value: register },
                _ => {
                    // Expect the current value half the time, something else otherwise.
                    let expect = if rng.gen_bool(0.5) { register } else { Some(0) };
                    let ok = register == expect;
                    if ok {
                        register = Some(fresh);
                    }
                    Kind::Cas {
                        expect,
                        value: fresh,
                        ok: Some(ok),
                    }
                }
            };
            let lost = !matches!(kind, Kind::Read { .. }) && rng.gen_bool(0.05);
            let kind = match kind {
                Kind::Cas { expect, value, .. } if lost => Kind::Cas {
                    expect,
                    value,
                    ok: None,
                },
                k => k,
            };
            out.push(op(c, call, if lost { None } else { Some(ret) }, kind));
        }
        out
    }

    #[test]
    fn generated_linearizable_histories_pass_and_a_changed_read_is_caught() {
        for seed in 0..40 {
            let h = generated(seed, 6, 60);
            let v = check(&h);
            assert!(v.is_empty(), "seed {seed}: {v:?}");
            // A read changed to a value that was never written cannot be
            // ordered anywhere.
            let mut bad = h.clone();
            let i = bad
                .iter()
                .position(|o| matches!(o.kind, Kind::Read { .. }) && o.ret_us.is_some())
                .unwrap();
            bad[i].kind = Kind::Read {
                value: Some(999_999),
            };
            assert_eq!(check(&bad).len(), 1, "seed {seed}");
        }
    }

    #[test]
    fn a_long_generated_history_with_lost_answers_is_checked_quickly() {
        // 40 000 operations on one key, one in twenty writes of unknown
        // outcome: the size of ten minutes of a chaos run.
        let h = generated(99, 8, 5000);
        let start = std::time::Instant::now();
        let v = check(&h);
        assert!(v.is_empty(), "{v:?}");
        assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // 8 clients, 4 000 operations on one key, each read seeing the last
        // write that ended before it began or one in flight.
        let mut h = Vec::new();
        let mut t = 0u64;
        let mut last = None;
        for i in 0..500u64 {
            for c in 0..8u32 {
                if c == 0 {
                    h.push(w(c, t, t + 30, i + 1));
                } else {
                    h.push(r(
                        c,
                        t + 1,
                        t + 29,
                        if c % 2 == 0 { last } else { Some(i + 1) },
                    ));
                }
            }
            last = Some(i + 1);
            t += 40;
        }
        let start = std::time::Instant::now();
        assert!(check(&h).is_empty());
        assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
    }
}
