//! `--wait`: following a backup or a restore to its end with a progress bar
//! (indicatif, on stderr, only on a terminal), then one summary line: files,
//! bytes, what was stored after dedup, throughput. A job that fails makes the
//! command fail with its error.

use std::time::{Duration, Instant};

use anyhow::bail;
use bcm_api::time::human_bytes;
use bcm_api::{BackupView, ProgressView, RestoreView};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::de::DeserializeOwned;

use super::Api;

const POLL: Duration = Duration::from_millis(500);

/// What following needs of a job's view.
trait Job: DeserializeOwned {
    fn status(&self) -> &str;
    fn progress(&self) -> Option<ProgressView>;
}

impl Job for BackupView {
    fn status(&self) -> &str {
        self.status.as_str()
    }
    fn progress(&self) -> Option<ProgressView> {
        self.progress
    }
}

impl Job for RestoreView {
    fn status(&self) -> &str {
        self.status.as_str()
    }
    fn progress(&self) -> Option<ProgressView> {
        self.progress
    }
}

/// Polls `path` until the job ends, drawing its progress.
async fn follow<T: Job>(api: &Api, path: &str, what: &str) -> anyhow::Result<T> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {bytes} ({bytes_per_sec}) {elapsed}")
            .expect("a valid template"),
    );
    let mut sized = false;
    loop {
        let job: T = api.get(path).await?;
        if !matches!(job.status(), "pending" | "running") {
            bar.finish_and_clear();
            return Ok(job);
        }
        match job.progress() {
            Some(p) => {
                if let (Some(total), false) = (p.bytes_total, sized) {
                    bar.set_length(total);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
                        )
                        .expect("a valid template")
                        .progress_chars("=> "),
                    );
                    sized = true;
                }
                bar.set_position(p.bytes_done);
                let files = match p.files_total {
                    Some(t) => format!("{}/{t} files", p.files_done),
                    None => format!("{} files", p.files_done),
                };
                bar.set_message(format!("{what} {}: {files}", job.status()));
            }
            None => bar.set_message(format!("{what} {}", job.status())),
        }
        bar.tick();
        tokio::time::sleep(POLL).await;
    }
}

fn rate(bytes: u64, took: Duration) -> String {
    let secs = took.as_secs_f64().max(0.001);
    format!("{:.1} MB/s", bytes as f64 / secs / 1e6)
}

/// Follows backup `id`; prints its summary (or its JSON).
pub async fn backup(api: &Api, id: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let b: BackupView = follow(
        api,
        &format!("/api/v1/backups/{id}"),
        &format!("backup {id}"),
    )
    .await?;
    if api.json {
        super::print_json(&b)?;
    } else if b.status.as_str() == "succeeded" {
        let size = b.size_bytes.unwrap_or(0);
        println!(
            "backup {id} succeeded: {} files, {} read, {} stored after dedup, on storage node(s) {}, in {:.1}s ({})",
            b.files.unwrap_or(0),
            human_bytes(size),
            human_bytes(b.stored_bytes.unwrap_or(0)),
            super::joined(&b.storage_nodes),
            started.elapsed().as_secs_f64(),
            rate(size, started.elapsed())
        );
    }
    if b.status.as_str() != "succeeded" {
        bail!(
            "backup {id} {}: {}",
            b.status.as_str(),
            b.error.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// Follows restore `id`; prints its summary (or its JSON).
pub async fn restore(api: &Api, id: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let r: RestoreView = follow(
        api,
        &format!("/api/v1/restores/{id}"),
        &format!("restore {id}"),
    )
    .await?;
    if api.json {
        super::print_json(&r)?;
    } else if r.status.as_str() == "succeeded" {
        let bytes = r.bytes.unwrap_or(0);
        println!(
            "restore {id} succeeded: {} files, {} written to {} on node {}, in {:.1}s ({})",
            r.files.unwrap_or(0),
            human_bytes(bytes),
            r.target_path,
            r.target_node,
            started.elapsed().as_secs_f64(),
            rate(bytes, started.elapsed())
        );
    }
    if r.status.as_str() != "succeeded" {
        bail!(
            "restore {id} {}: {}",
            r.status.as_str(),
            r.error.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(())
}
