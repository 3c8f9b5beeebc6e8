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
    /// `Bearer <token>` (bcm).
    auth: Option<reqwest::header::HeaderValue>,
    value: String,
}

/// One request, ready to send: built before the clock starts where the key space
/// allows, so that the load generator (which shares the machine with the servers)
/// spends little on each request, and the same for both targets.
#[derive(Clone)]
struct Prepared {
    method: reqwest::Method,
    url: reqwest::Url,
    body: Option<axum::body::Bytes>,
}

/// Requests are prepared ahead for key spaces up to this size.
const PREPARE_MAX_KEYS: usize = 20_000;

impl Target {
    fn prepare(&self, server: &str, op: Op, key: usize) -> anyhow::Result<Prepared> {
        let key = format!("bench-{key}");
        let (method, url, body) = if self.etcd {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let (path, body) = match op {
                Op::Put => (
                    "/v3/kv/put",
                    json!({"key": b64(&key), "value": b64(&self.value)}),
                ),
                Op::Get => (
                    "/v3/kv/range",
                    json!({"key": b64(&key), "serializable": true}),
                ),
                Op::GetLinearizable => ("/v3/kv/range", json!({"key": b64(&key)})),
            };
            (reqwest::Method::POST, path.to_string(), Some(body))
        } else {
            let path = format!("/api/v1/config/{key}");
            match op {
                Op::Put => (
                    reqwest::Method::PUT,
                    path,
                    Some(json!({"value": self.value})),
                ),
                Op::Get => (reqwest::Method::GET, path, None),
                Op::GetLinearizable => (
                    reqwest::Method::GET,
                    format!("{path}?consistency=linearizable"),
                    None,
                ),
            }
        };
        Ok(Prepared {
            method,
            url: reqwest::Url::parse(&format!("{server}{url}"))
                .with_context(|| format!("{server} is not a URL"))?,
            body: body.map(|b| axum::body::Bytes::from(b.to_string())),
        })
    }

    fn send(&self, client: &reqwest::Client, p: &Prepared) -> reqwest::RequestBuilder {
        let mut req = client.request(p.method.clone(), p.url.clone());
        if let Some(body) = &p.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        match &self.auth {
            Some(a) => req.header(reqwest::header::AUTHORIZATION, a.clone()),
            None => req,
        }
    }
}

/// Requests prepared per (server, op, key), or built on demand for big key spaces.
struct Requests {
    target: Target,
    servers: Vec<String>,
    ops: Vec<Op>,
    /// [server][op index][key]
    ready: Vec<Vec<Vec<Prepared>>>,
}

impl Requests {
    fn new(
        target: Target,
        servers: Vec<String>,
        ops: Vec<Op>,
        keys: usize,
    ) -> anyhow::Result<Requests> {
        let mut ready = Vec::new();
        if keys <= PREPARE_MAX_KEYS {
            for s in &servers {
                let mut by_op = Vec::new();
                for op in &ops {
                    by_op.push(
                        (0..keys)
                            .map(|k| target.prepare(s, *op, k))
                            .collect::<anyhow::Result<Vec<_>>>()?,
                    );
                }
                ready.push(by_op);
            }
        }
        Ok(Requests {
            target,
            servers,
            ops,
            ready,
        })
    }

    fn request(
        &self,
        client: &reqwest::Client,
        server: usize,
        op: usize,
        key: usize,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        Ok(match self.ready.get(server) {
            Some(by_op) => self.target.send(client, &by_op[op][key]),
            None => {
                let p = self
                    .target
                    .prepare(&self.servers[server], self.ops[op], key)?;
                self.target.send(client, &p)
            }
        })
    }
}

fn client() -> reqwest::Client {
    super::http_builder()
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
    let auth = match token {
        Some(t) => Some(
            reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .context("the token is not a valid header value")?,
        ),
        None => None,
    };
    let target = Target {
        etcd,
        auth,
        value: "v".repeat(args.value_size),
    };
    // The kinds of request, and the order a client cycles through them (indexes).
    let (kinds, pattern): (Vec<Op>, Vec<usize>) = match args.op.as_str() {
        "put" | "fill" => (vec![Op::Put], vec![0]),
        "get" => (vec![Op::Get], vec![0]),
        "get-linearizable" => (vec![Op::GetLinearizable], vec![0]),
        _ => (vec![Op::Put, Op::Get], vec![0, 1, 1, 1, 1]),
    };
    if kinds.contains(&Op::Get) || kinds.contains(&Op::GetLinearizable) {
        // Reads need something to read.
        for k in 0..args.keys {
            let p = target.prepare(&servers[k % servers.len()], Op::Put, k)?;
            let resp = target
                .send(&http, &p)
                .send()
                .await
                .with_context(|| format!("preloading key {k}"))?;
            if !resp.status().is_success() {
                bail!("preloading key {k}: HTTP {}", resp.status());
            }
        }
    }
    let requests = Arc::new(Requests::new(target, servers.clone(), kinds, args.keys)?);

    let fill = args.op == "fill";
    let next_key = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(args.no_warmup || fill));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (http, requests, pattern) = (http.clone(), requests.clone(), pattern.clone());
        let server = c % servers.len();
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
            let mut i: usize = c;
            while !stop.load(Ordering::Relaxed) {
                let op = pattern[i % pattern.len()];
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
                let request = match requests.request(&http, server, op, key) {
                    Ok(r) => r,
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .expect("error lock")
                            .get_or_insert(e.to_string());
                        break;
                    }
                };
                let outcome = match request.send().await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(etcd: bool) -> Target {
        Target {
            etcd,
            auth: (!etcd).then(|| reqwest::header::HeaderValue::from_static("Bearer t0k")),
            value: "vvv".into(),
        }
    }

    fn built(reqs: &Requests, server: usize, op: usize, key: usize) -> reqwest::Request {
        reqs.request(&reqwest::Client::new(), server, op, key)
            .unwrap()
            .build()
            .unwrap()
    }

    fn body(r: &reqwest::Request) -> Value {
        serde_json::from_slice(r.body().and_then(|b| b.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn bcm_requests_name_the_key_and_carry_the_token() {
        let servers = vec!["http://a:1".to_string(), "http://b:2".to_string()];
        let kinds = vec![Op::Put, Op::Get, Op::GetLinearizable];
        // Prepared ahead, and built on demand for a big key space: the same requests.
        for keys in [10, PREPARE_MAX_KEYS + 1] {
            let reqs = Requests::new(target(false), servers.clone(), kinds.clone(), keys).unwrap();
            let put = built(&reqs, 1, 0, 7);
            assert_eq!(put.method(), reqwest::Method::PUT);
            assert_eq!(put.url().as_str(), "http://b:2/api/v1/config/bench-7");
            assert_eq!(put.headers()["authorization"], "Bearer t0k");
            assert_eq!(body(&put), json!({"value": "vvv"}));
            let get = built(&reqs, 0, 1, 3);
            assert_eq!(
                (get.method(), get.url().as_str()),
                (&reqwest::Method::GET, "http://a:1/api/v1/config/bench-3")
            );
            let lin = built(&reqs, 0, 2, 3);
            assert_eq!(
                lin.url().as_str(),
                "http://a:1/api/v1/config/bench-3?consistency=linearizable"
            );
        }
    }

    #[test]
    fn etcd_requests_use_the_json_gateway_with_base64_keys() {
        let reqs = Requests::new(
            target(true),
            vec!["http://e:1".into()],
            vec![Op::Put, Op::Get],
            5,
        )
        .unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let put = built(&reqs, 0, 0, 4);
        assert_eq!(put.url().as_str(), "http://e:1/v3/kv/put");
        assert!(put.headers().get("authorization").is_none());
        assert_eq!(
            body(&put),
            json!({"key": b64("bench-4"), "value": b64("vvv")})
        );
        let get = built(&reqs, 0, 1, 4);
        assert_eq!(get.url().as_str(), "http://e:1/v3/kv/range");
        assert_eq!(
            body(&get),
            json!({"key": b64("bench-4"), "serializable": true})
        );
    }
}
