//! `bcm bench`, the load generator, works against a real cluster (a smoke test: it
//! checks the tool, not a speed).

use bcm_tests::serde_json::{self, Value};
use bcm_tests::{Bcm, Cluster, ADMIN_PASSWORD};

use crate::secs;

fn bench(c: &Cluster, args: &[&str]) -> Value {
    let servers = c
        .all_nodes()
        .iter()
        .map(|n| c.api_url(*n))
        .collect::<Vec<_>>()
        .join(",");
    let mut all = vec!["bench", "--servers", &servers, "--output", "json"];
    all.extend_from_slice(args);
    let out = Bcm::new(&c.dir().join("bench-home"), &all)
        .env("BCM_PASSWORD", ADMIN_PASSWORD)
        .run(secs(60));
    assert!(out.success(), "bcm {all:?}: {out}");
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("bench output is not JSON ({e}): {out}"))
}

#[test]
fn bcm_bench_reports_throughput_and_latency_and_really_writes() {
    let c = Cluster::builder().name("bench").voters(3).start();

    // fill writes every key once, through every node.
    let fill = bench(&c, &["--op", "fill", "--keys", "60", "--clients", "4"]);
    assert_eq!(fill["ok"], 60, "{fill}");
    assert_eq!(fill["errors"], 0, "{fill}");
    for n in c.all_nodes() {
        let r = c.get_config(n, "bench-59").unwrap();
        assert_eq!(r.status, 200, "node {n}: {r}");
        assert_eq!(
            r.json()["value"].as_str().map(str::len),
            Some(256),
            "node {n}: {r}"
        );
    }

    // A timed mixed run reports its figures.
    let mixed = bench(
        &c,
        &[
            "--op",
            "mixed",
            "--clients",
            "3",
            "--duration",
            "1",
            "--keys",
            "20",
            "--no-warmup",
        ],
    );
    for field in ["throughput", "p50_ms", "p90_ms", "p99_ms", "max_ms"] {
        assert!(
            mixed[field].as_f64().is_some_and(|v| v > 0.0),
            "{field} in {mixed}"
        );
    }
    assert!(mixed["ok"].as_u64().unwrap_or(0) > 0, "{mixed}");
    assert_eq!(mixed["errors"], 0, "{mixed}");
    let p50 = mixed["p50_ms"].as_f64().unwrap();
    let p99 = mixed["p99_ms"].as_f64().unwrap();
    assert!(p50 <= p99, "quantiles are ordered: {mixed}");
}
