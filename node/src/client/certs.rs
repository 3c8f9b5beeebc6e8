//! `bcm certs`: the cluster's CAs and node certificates, and rotating them.

use bcm_api::{CertsView, NodeCertView, RotateCerts, RotateStarted};
use reqwest::Method;

use super::resources::{or_dash, table, Table};
use super::{servers, token, Request, ServerArgs};

#[derive(clap::Args)]
pub struct CertsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: CertsCmd,
}

#[derive(clap::Subcommand)]
pub enum CertsCmd {
    /// The trusted CAs and every member's certificate.
    Status {
        /// `table` (default) or `json`.
        #[arg(long, short, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Renew every node's certificate now; with --ca, replace the CA itself.
    Rotate {
        /// Replace the cluster CA (the old one stays trusted for --overlap).
        #[arg(long)]
        ca: bool,
        /// With --ca: seconds the old CA stays trusted (default a day).
        #[arg(long, requires = "ca")]
        overlap: Option<u64>,
    },
}

struct NodeLine<'a>(&'a NodeCertView);

fn date(secs: Option<i64>) -> String {
    or_dash(
        secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map(|d| d.format("%Y-%m-%d %H:%M UTC")),
    )
}

impl Table for NodeLine<'_> {
    fn header() -> &'static [&'static str] {
        &["NODE", "ISSUER", "NOT BEFORE", "NOT AFTER", "SERIAL"]
    }

    fn row(&self) -> Vec<String> {
        let c = self.0;
        vec![
            c.node_id.to_string(),
            c.issuer
                .clone()
                .or_else(|| c.error.clone())
                .unwrap_or_else(|| "-".into()),
            date(c.not_before),
            date(c.not_after),
            or_dash(c.serial.as_deref()),
        ]
    }
}

pub async fn run(args: CertsArgs) -> anyhow::Result<()> {
    let servers = servers(&args.server);
    let token = token(&servers).await?;
    match args.command {
        CertsCmd::Status { output } => {
            let v: CertsView = Request::new(Method::GET, "/api/v1/cluster/certs")
                .token(&token)
                .call(&servers)
                .await?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            if !v.mutual_tls {
                println!("cluster-internal traffic is plaintext (http:// rpc addresses): no certificates");
                return Ok(());
            }
            for ca in &v.cas {
                let until = ca.retire_at.and_then(|t| {
                    chrono::DateTime::from_timestamp_millis(t as i64)
                        .map(|d| format!(", trusted until {}", d.format("%Y-%m-%d %H:%M:%S UTC")))
                });
                println!(
                    "CA {}{}{}",
                    ca.name,
                    if ca.issuing { " (issuing)" } else { "" },
                    until.unwrap_or_default()
                );
            }
            let lines: Vec<_> = v.nodes.iter().map(NodeLine).collect();
            print!("{}", table(&lines));
        }
        CertsCmd::Rotate { ca, overlap } => {
            let r: RotateStarted = Request::new(Method::POST, "/api/v1/cluster/certs/rotate")
                .token(&token)
                .json(&RotateCerts {
                    ca,
                    overlap_secs: overlap,
                })
                .call(&servers)
                .await?;
            println!("{}", r.message);
        }
    }
    Ok(())
}
