//! `bcm bench`: an HTTP load generator for bcm and, for comparison, etcd's JSON
//! gateway. Closed loop: each client sends its next request when the previous one
//! answered, over keep-alive connections; latencies go into an HDR histogram.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// What to load: `bcm` (its config API) or `etcd` (its v3 JSON gateway).
    #[arg(long, default_value = "bcm", value_parser = ["bcm", "etcd"])]
    target: String,
    /// API URLs of the members (comma-separated); clients are spread over them.
    #[arg(long, env = "BCM_SERVER", default_value = "http://127.0.0.1:8080")]
    servers: String,
    /// Concurrent clients (each waits for its answer before the next request).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds to measure (after a one-second warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// `put`, `get` (local read), `get-linearizable`, `mixed` (20 % put, 80 % get), or
    /// `fill` (write each of the --keys keys once, then stop; --duration is ignored).
    #[arg(long, default_value = "put", value_parser = ["put", "get", "get-linearizable", "mixed", "fill"])]
    op: String,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys the clients write and read.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Skip the warm-up second.
    #[arg(long)]
    no_warmup: bool,
    /// `table` or `json`.
    #[arg(long, short, default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

/// One run's figures.
#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub op: String,
    pub clients: usize,
    pub value_size: usize,
    pub duration_s: f64,
    pub ok: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub first_error: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Put,
    Get,
    GetLinearizable,
}

/// How to talk to one kind of server.
#[derive(Clone)]
struct Target {
    etcd: bool,
    token: Option<String>,
    value: String,
}

impl Target {
    fn request(
        &self,
        client: &reqwest::Client,
        server: &str,
        op: Op,
        key: usize,
    ) -> reqwest::RequestBuilder {
        let key = format!("bench-{key}");
        if self.etcd {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            match op {
                Op::Put => client
                    .post(format!("{server}/v3/kv/put"))
                    .json(&json!({"key": b64(&key), "value": b64(&self.value)})),
                Op::Get => client
                    .post(format!("{server}/v3/kv/range"))
                    .json(&json!({"key": b64(&key), "serializable": true})),
                Op::GetLinearizable => client
                    .post(format!("{server}/v3/kv/range"))
                    .json(&json!({"key": b64(&key)})),
            }
        } else {
            let url = format!("{server}/api/v1/config/{key}");
            let req = match op {
                Op::Put => client.put(url).json(&json!({"value": self.value})),
                Op::Get => client.get(url),
                Op::GetLinearizable => client.get(format!("{url}?consistency=linearizable")),
            };
            match &self.token {
                Some(t) => req.bearer_auth(t),
                None => req,
            }
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building the HTTP client")
}

async fn login(client: &reqwest::Client, server: &str) -> anyhow::Result<String> {
    let password = std::env::var("BCM_PASSWORD")
        .map_err(|_| anyhow!("set BCM_PASSWORD to the admin password (or BCM_TOKEN)"))?;
    let user = std::env::var("BCM_USER").unwrap_or_else(|_| "admin".into());
    let resp: Value = client
        .post(format!("{server}/api/v1/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .with_context(|| format!("logging in at {server}"))?
        .json()
        .await?;
    resp["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("login at {server} failed: {resp}"))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = measure(&args).await?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} {} clients={} value={}B: {:.0} ops/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} ok, {} errors",
            report.target,
            report.op,
            report.clients,
            report.value_size,
            report.throughput,
            report.p50_ms,
            report.p90_ms,
            report.p99_ms,
            report.max_ms,
            report.ok,
            report.errors
        );
        if let Some(e) = &report.first_error {
            println!("first error: {e}");
        }
    }
    Ok(())
}

pub async fn measure(args: &BenchArgs) -> anyhow::Result<Report> {
    if args.clients == 0 || args.keys == 0 || args.duration <= 0.0 {
        bail!("--clients, --keys and --duration must be positive");
    }
    let servers: Vec<String> = args
        .servers
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        bail!("--servers names no server");
    }
    let http = client();
    let etcd = args.target == "etcd";
    let token = if etcd {
        None
    } else if let Ok(t) = std::env::var("BCM_TOKEN") {
        Some(t)
    } else {
        Some(login(&http, &servers[0]).await?)
    };
    let target = Target {
        etcd,
        token,
        value: "v".repeat(args.value_size),
    };
    let ops: Vec<Op> = match args.op.as_str() {
        "put" | "fill" => vec![Op::Put],
        "get" => vec![Op::Get],
        "get-linearizable" => vec![Op::GetLinearizable],
        _ => vec![Op::Put, Op::Get, Op::Get, Op::Get, Op::Get],
    };
    if ops.contains(&Op::Get) || ops.contains(&Op::GetLinearizable) {
        // Reads need something to read.
        for k in 0..args.keys {
            let resp = target
                .request(&http, &servers[k % servers.len()], Op::Put, k)
                .send()
                .await
                .with_context(|| format!("preloading key {k}"))?;
            if !resp.status().is_success() {
                bail!("preloading key {k}: HTTP {}", resp.status());
            }
        }
    }

    let fill = args.op == "fill";
    let next_key = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(args.no_warmup || fill));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (http, target, servers, ops) =
            (http.clone(), target.clone(), servers.clone(), ops.clone());
        let (measuring, stop, errors, first_error) = (
            measuring.clone(),
            stop.clone(),
            errors.clone(),
            first_error.clone(),
        );
        let keys = args.keys;
        let next_key = next_key.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let server = &servers[c % servers.len()];
            let mut i: usize = c;
            while !stop.load(Ordering::Relaxed) {
                let op = ops[i % ops.len()];
                let key = if fill {
                    let k = next_key.fetch_add(1, Ordering::Relaxed) as usize;
                    if k >= keys {
                        break;
                    }
                    k
                } else {
                    (i.wrapping_mul(2_654_435_761)) % keys
                };
                i = i.wrapping_add(args_stride(c));
                let started = Instant::now();
                let outcome = match target.request(&http, server, op, key).send().await {
                    Ok(r) if r.status().is_success() => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        Err(format!(
                            "HTTP {status}: {}",
                            body.chars().take(200).collect::<String>()
                        ))
                    }
                    Err(e) => Err(e.to_string()),
                };
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        let us = started.elapsed().as_micros().max(1) as u64;
                        let _ = hist.record(us.min(60_000_000));
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().expect("error lock").get_or_insert(e);
                    }
                }
            }
            hist
        }));
    }
    if !measuring.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        measuring.store(true, Ordering::Relaxed);
    }
    let started = Instant::now();
    if !fill {
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    for t in tasks {
        total
            .add(t.await?)
            .expect("histograms with the same bounds");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    let first_error = first_error.lock().expect("error lock").clone();
    Ok(Report {
        target: args.target.clone(),
        op: args.op.clone(),
        clients: args.clients,
        value_size: args.value_size,
        duration_s: elapsed,
        ok: total.len(),
        errors: errors.load(Ordering::Relaxed),
        throughput: total.len() as f64 / elapsed,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: total.max() as f64 / 1000.0,
        first_error,
    })
}

/// Clients walk the key space with different strides so they rarely collide.
fn args_stride(client: usize) -> usize {
    2 * client + 1
}
