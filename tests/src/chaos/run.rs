//! One chaos run: a cluster whose nodes each have an address of their own,
//! clients recording a history of operations on config keys through random
//! nodes, and a nemesis hitting the nodes and their links on a seeded
//! schedule; then everything healed, and the checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};

use super::checker::{self, Kind, Op, Violation};
use super::firewall::Firewall;
use crate::{wait_until, Api, Cluster};

/// The faults the nemesis knows.
pub const FAULTS: &[&str] = &[
    "kill",
    "pause",
    "partition",
    "one-way",
    "isolate-leader",
    "slow",
    "wipe",
    "drain",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    pub seed: u64,
    pub nodes: usize,
    pub clients: usize,
    pub keys: usize,
    /// Read with `consistency=local` from whichever node: stale reads are
    /// possible then, and the checker must find them (testing the tester).
    pub local_reads: bool,
    /// The fault kinds to draw from (all of [`FAULTS`] by default).
    pub faults: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            duration: Duration::from_secs(120),
            seed: 1,
            nodes: 3,
            clients: 6,
            keys: 6,
            local_reads: false,
            faults: FAULTS.to_vec(),
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Report {
    pub ops: usize,
    /// Writes and compare-and-sets without a definite answer (an error, a
    /// timeout: each may or may not have taken effect). The more, the harder
    /// the history is to check.
    pub unanswered: usize,
    pub violations: Vec<Violation>,
    /// Acknowledged set elements missing at the end.
    pub lost: Vec<String>,
    /// Nodes at the same applied index with different states, or nodes that
    /// did not reach one index, said how.
    pub diverged: Option<String>,
    pub faults: BTreeMap<&'static str, usize>,
    /// Per fault kind, the longest time no client operation succeeded while
    /// a fault of that kind lasted or the cluster recovered from it (ms),
    /// each fault's figure.
    pub unavailable_ms: BTreeMap<&'static str, Vec<u64>>,
    pub leader_changes: usize,
    /// Where the history, the violations and the nodes' logs are kept (when
    /// something was found).
    pub kept: Option<PathBuf>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.lost.is_empty() && self.diverged.is_none()
    }

    /// The run in one line: `chaos: ops=N violations=V lost=L faults=kill:a,...`.
    pub fn summary(&self) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect();
        format!(
            "chaos: ops={} violations={} lost={} faults={}{}",
            self.ops,
            self.violations.len(),
            self.lost.len(),
            faults.join(","),
            if self.diverged.is_some() {
                " diverged=1"
            } else {
                ""
            }
        )
    }
}

/// The clients' shared record.
struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    /// Set elements acknowledged, by key.
    added: Mutex<BTreeSet<String>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

const OP_TIMEOUT: Duration = Duration::from_secs(2);
const SET_PREFIX: &str = "chaos-set-";

/// A register's value on the wire: a JSON number.
fn value_of(body: &Value) -> Option<u64> {
    body["value"].as_u64()
}

/// One client: operations one after another until `stop`.
fn client(
    api: Api,
    nodes: Vec<u64>,
    id: u32,
    opts: Options,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(opts.seed ^ (u64::from(id) << 32));
    let mut counter = 0u64;
    let consistency = if opts.local_reads {
        "local"
    } else {
        "linearizable"
    };
    let send = |node: u64, req: crate::Req| api.send_authed(node, req.timeout(OP_TIMEOUT));
    while !stop.load(Ordering::Relaxed) {
        let node = nodes[rng.gen_range(0..nodes.len())];
        let key = format!("chaos-k{}", rng.gen_range(0..opts.keys));
        counter += 1;
        let fresh = (u64::from(id) << 32) | counter;
        let roll = rng.gen_range(0..100);
        let path = format!("/api/v1/config/{key}");
        if roll < 10 {
            // The set workload: an element of its own, kept as a key.
            let elem = format!("{SET_PREFIX}{id}-{counter}");
            let req = api
                .request(node, Method::PUT, &format!("/api/v1/config/{elem}"))
                .json(&json!({"value": 1}));
            if let Ok(r) = send(node, req) {
                if r.status == 200 || r.status == 201 {
                    rec.added.lock().unwrap().insert(elem);
                }
            }
            continue;
        }
        let read = |rec: &Recorder| -> Option<(Option<u64>, Option<u64>)> {
            let call = rec.now();
            let req = api.request(
                node,
                Method::GET,
                &format!("{path}?consistency={consistency}"),
            );
            let reply = send(node, req).ok()?;
            let (value, version) = match reply.status {
                200 => {
                    let body: Value = serde_json::from_str(&reply.body).ok()?;
                    (value_of(&body), body["version"].as_u64())
                }
                404 => (None, None),
                _ => return None,
            };
            rec.ops.lock().unwrap().push(Op {
                client: id,
                key: key.clone(),
                call_us: call,
                ret_us: Some(rec.now()),
                kind: Kind::Read { value },
            });
            Some((value, version))
        };
        if roll < 50 {
            read(&rec);
        } else if roll < 80 {
            let call = rec.now();
            let req = api
                .request(node, Method::PUT, &path)
                .json(&json!({"value": fresh}));
            let ok = matches!(send(node, req), Ok(r) if r.status == 200 || r.status == 201);
            rec.ops.lock().unwrap().push(Op {
                client: id,
                key: key.clone(),
                call_us: call,
                ret_us: ok.then(|| rec.now()),
                kind: Kind::Write { value: fresh },
            });
        } else {
            // Compare-and-set from what a read just saw.
            let Some((seen, version)) = read(&rec) else {
                continue;
            };
            let call = rec.now();
            let mut req = api
                .request(node, Method::PUT, &path)
                .json(&json!({"value": fresh}));
            req = match version {
                Some(v) => req.header("if-match", &format!("\"{v}\"")),
                None => req.header("if-none-match", "*"),
            };
            let outcome = match send(node, req) {
                Ok(r) if r.status == 200 || r.status == 201 => Some(true),
                Ok(r) if r.status == 412 => Some(false),
                _ => None,
            };
            rec.ops.lock().unwrap().push(Op {
                client: id,
                key: key.clone(),
                call_us: call,
                ret_us: outcome.map(|_| rec.now()),
                kind: Kind::Cas {
                    expect: seen,
                    value: fresh,
                    ok: outcome,
                },
            });
        }
    }
}

/// One fault: its kind, and when it began and its cluster was whole again
/// (µs since the run began).
struct Fault {
    kind: &'static str,
    from_us: u64,
    to_us: u64,
}

/// Runs the nemesis against `c` until `deadline`: faults drawn from a
/// shuffled deck of the kinds asked for (every kind once before any twice),
/// victims and durations from the seed; the faults it made.
fn nemesis(
    c: &Cluster,
    fw: &Firewall,
    opts: &Options,
    rec: &Recorder,
    deadline: Instant,
) -> Vec<Fault> {
    use rand::seq::SliceRandom;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut done = Vec::new();
    let mut deck: Vec<&'static str> = Vec::new();
    let ids: Vec<u64> = (1..=opts.nodes as u64).collect();
    let host = |id: u64| c.rpc_host(id);
    while Instant::now() < deadline {
        if deck.is_empty() {
            deck = opts.faults.clone();
            deck.shuffle(&mut rng);
        }
        let kind = deck.pop().expect("a full deck");
        let from_us = rec.now();
        let hold = Duration::from_millis(rng.gen_range(800..3000));
        let victim = ids[rng.gen_range(0..ids.len())];
        c.log(format!("nemesis: {kind} (node {victim}, {hold:?})"));
        match kind {
            "kill" => {
                c.kill(victim);
                thread::sleep(hold);
                c.restart(victim);
            }
            "pause" => {
                c.pause(victim);
                thread::sleep(hold);
                c.resume(victim);
            }
            "partition" => {
                // A random minority (one node) cut off both ways.
                for other in ids.iter().filter(|o| **o != victim) {
                    fw.cut(&host(victim), &host(*other)).expect("cut");
                    fw.cut(&host(*other), &host(victim)).expect("cut");
                }
                thread::sleep(hold);
                fw.heal().expect("heal");
            }
            "one-way" => {
                let others: Vec<u64> = ids.iter().copied().filter(|o| *o != victim).collect();
                let to = others[rng.gen_range(0..others.len())];
                fw.cut(&host(victim), &host(to)).expect("cut");
                thread::sleep(hold);
                fw.heal().expect("heal");
            }
            "isolate-leader" => {
                // The leader cut off from its peers; clients still reach it.
                let leader = c.leader().unwrap_or(victim);
                for other in ids.iter().filter(|o| **o != leader) {
                    fw.cut(&host(leader), &host(*other)).expect("cut");
                    fw.cut(&host(*other), &host(leader)).expect("cut");
                }
                thread::sleep(hold);
                fw.heal().expect("heal");
            }
            "slow" => {
                // A lossy link each way between the victim and the others.
                for other in ids.iter().filter(|o| **o != victim) {
                    let loss = rng.gen_range(5..30);
                    fw.lossy(&host(victim), &host(*other), loss).expect("lossy");
                    fw.lossy(&host(*other), &host(victim), loss).expect("lossy");
                }
                thread::sleep(hold);
                fw.heal().expect("heal");
            }
            "wipe" => {
                // A follower loses its disk: it comes back empty and catches up.
                let leader = c.leader();
                let follower = ids
                    .iter()
                    .copied()
                    .find(|i| Some(*i) != leader && c.is_running(*i))
                    .unwrap_or(victim);
                c.kill(follower);
                c.wipe(follower);
                c.restart(follower);
            }
            "drain" => {
                // A planned move: the leader is drained (leadership and the
                // backup-manager role move off it), then taken out of maintenance.
                let leader = c.leader().unwrap_or(victim);
                let maintenance = |on: bool| {
                    let path = format!("/api/v1/nodes/{leader}");
                    wait_until(Duration::from_secs(30), "a maintenance change", || {
                        let via = c.leader().ok_or("no leader")?;
                        match c.patch(via, &path, &json!({ "maintenance": on })) {
                            Ok(r) if r.is_success() => Ok(()),
                            Ok(r) => Err(format!("{r}")),
                            Err(e) => Err(e),
                        }
                    })
                };
                maintenance(true);
                thread::sleep(hold);
                maintenance(false);
            }
            other => panic!("unknown fault {other}"),
        }
        // Back to a whole cluster before the next fault (one fault at a time:
        // a majority always survives).
        wait_until(Duration::from_secs(60), "a leader after the fault", || {
            c.leader().ok_or_else(|| "no leader".to_string())
        });
        for id in &ids {
            c.wait_ready(*id, Duration::from_secs(60));
        }
        done.push(Fault {
            kind,
            from_us,
            to_us: rec.now(),
        });
        thread::sleep(Duration::from_millis(rng.gen_range(300..1200)));
    }
    done
}

/// Per fault, the longest stretch in which no client operation succeeded
/// (answered, and not a refusal of the cluster's own) within it, from the
/// completions in `ops`.
fn unavailability(faults: &[Fault], ops: &[Op]) -> BTreeMap<&'static str, Vec<u64>> {
    let mut done: Vec<u64> = ops.iter().filter_map(|o| o.ret_us).collect();
    done.sort_unstable();
    let mut out: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for f in faults {
        let inside: Vec<u64> = done
            .iter()
            .copied()
            .filter(|t| *t >= f.from_us && *t <= f.to_us)
            .collect();
        let mut edges = vec![f.from_us];
        edges.extend(inside);
        edges.push(f.to_us);
        let gap = edges.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        out.entry(f.kind).or_default().push(gap / 1000);
    }
    out
}

/// Runs the whole thing (see the module's doc).
pub fn run(opts: Options) -> Report {
    let c = Cluster::builder()
        .name("chaos")
        .voters(opts.nodes)
        .voter_roles(&["manager"])
        .own_addresses()
        .start();
    let fw = Firewall::new().expect("the firewall (root, iptables)");
    let api = c.api();
    let nodes: Vec<u64> = (1..=opts.nodes as u64).collect();
    api.token(nodes[0]).expect("a token");
    let rec = Arc::new(Recorder {
        start: Instant::now(),
        ops: Mutex::new(Vec::new()),
        added: Mutex::new(BTreeSet::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..opts.clients as u32)
        .map(|id| {
            let (api, nodes, opts, rec, stop) = (
                api.clone(),
                nodes.clone(),
                opts.clone(),
                rec.clone(),
                stop.clone(),
            );
            thread::spawn(move || client(api, nodes, id, opts, rec, stop))
        })
        .collect();
    let deadline = Instant::now() + opts.duration;
    let faults = nemesis(&c, &fw, &opts, &rec, deadline);
    fw.heal().expect("heal");
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().expect("a client thread");
    }
    let leader = wait_until(Duration::from_secs(60), "a leader at the end", || {
        c.leader().ok_or_else(|| "no leader".to_string())
    });
    // The final word on every key: linearizable reads through the leader.
    let mut ops = std::mem::take(&mut *rec.ops.lock().unwrap());
    for k in 0..opts.keys {
        let key = format!("chaos-k{k}");
        let call = rec.now();
        let path = format!("/api/v1/config/{key}?consistency=linearizable");
        let r = c
            .call(leader, Method::GET, &path, None)
            .expect("the final read");
        let value = match r.status {
            200 => value_of(&r.json()),
            404 => None,
            _ => panic!("the final read of {key}: {r}"),
        };
        ops.push(Op {
            client: u32::MAX,
            key,
            call_us: call,
            ret_us: Some(rec.now()),
            kind: Kind::Read { value },
        });
    }
    let violations = checker::check(&ops);
    let present: BTreeSet<String> = {
        let mut keys = BTreeSet::new();
        let mut offset = 0;
        loop {
            let page = c
                .get_json(
                    leader,
                    &format!("/api/v1/config?q={SET_PREFIX}&limit=1000&offset={offset}&consistency=linearizable"),
                )
                .expect("the set's keys");
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                break;
            }
            offset += items.len();
            keys.extend(
                items
                    .iter()
                    .filter_map(|i| i["key"].as_str().map(str::to_string)),
            );
        }
        keys
    };
    let lost: Vec<String> = rec
        .added
        .lock()
        .unwrap()
        .iter()
        .filter(|k| !present.contains(*k))
        .cloned()
        .collect();
    let diverged = converged(&c, &nodes).err();
    let leader_changes = c
        .leaders_by_term()
        .values()
        .filter(|l| !l.is_empty())
        .count()
        .saturating_sub(1);
    let dir = c.dir().to_path_buf();
    let mut report = Report {
        ops: ops.len(),
        unanswered: ops.iter().filter(|o| o.ret_us.is_none()).count(),
        violations,
        lost,
        diverged,
        faults: faults.iter().fold(BTreeMap::new(), |mut m, f| {
            *m.entry(f.kind).or_default() += 1;
            m
        }),
        unavailable_ms: unavailability(&faults, &ops),
        leader_changes,
        kept: None,
    };
    if !report.ok() {
        // The history and what was found, beside the nodes' logs.
        let history = serde_json::to_string(&ops).expect("the history");
        fs::write(dir.join("history.json"), history).expect("writing the history");
        let found = serde_json::to_string_pretty(&report.violations).expect("the violations");
        fs::write(dir.join("violations.json"), found).expect("writing the violations");
        c.keep();
        report.kept = Some(dir);
    }
    report
}

/// Every node at one applied index with one state digest (waiting for them to
/// catch up), or what differs.
fn converged(c: &Cluster, nodes: &[u64]) -> Result<(), String> {
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let digests: Vec<(u64, u64, String)> = nodes
            .iter()
            .filter_map(|n| {
                let d = c.get_json(*n, "/api/v1/cluster/digest").ok()?;
                Some((
                    *n,
                    d["applied_index"].as_u64()?,
                    d["digest"].as_str()?.to_string(),
                ))
            })
            .collect();
        if digests.len() == nodes.len() {
            let index = digests[0].1;
            if digests.iter().all(|d| d.1 == index) {
                return if digests.iter().all(|d| d.2 == digests[0].2) {
                    Ok(())
                } else {
                    Err(format!(
                        "same applied index {index}, different states: {digests:?}"
                    ))
                };
            }
        }
        last = format!("{digests:?}");
        thread::sleep(Duration::from_millis(200));
    }
    Err(format!("the nodes never reached one applied index: {last}"))
}
