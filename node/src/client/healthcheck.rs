//! `bcm healthcheck`: one GET of a node's health endpoint, exit status 0 on 200.
//! Container health checks call it, so images need no curl.

use std::time::Duration;

use anyhow::bail;

#[derive(clap::Args)]
pub struct HealthcheckArgs {
    /// The endpoint to ask: `/readyz` (ready: knows the leader and has applied what
    /// it committed), `/healthz` (serving) or `/leader` (200 on the leader only).
    #[arg(long, default_value = "http://127.0.0.1:8080/readyz")]
    pub url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 2)]
    pub timeout_secs: u64,
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    let client = super::http_builder()
        .timeout(Duration::from_secs(args.timeout_secs.max(1)))
        .no_proxy()
        .build()?;
    let resp = client
        .get(&args.url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GET {}: {e}", args.url))?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        let body = resp.text().await.unwrap_or_default();
        bail!("GET {}: {status} {}", args.url, body.trim());
    }
    Ok(())
}
