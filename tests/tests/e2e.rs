//! End-to-end tests: real `bcm` processes on loopback, driven like an operator would.
//!
//! One test binary, one module per feature. Run with
//! `cargo build --bin bcm && cargo test -p bcm-tests --test e2e -- --test-threads=1`.
//! When a test fails, its cluster's logs are kept and their path is printed.

#[path = "e2e/access/mod.rs"]
mod access;
#[path = "e2e/audit.rs"]
mod audit;
#[path = "e2e/backup_manager.rs"]
mod backup_manager;
#[path = "e2e/bad_input.rs"]
mod bad_input;
#[path = "e2e/batching.rs"]
mod batching;
#[path = "e2e/bench.rs"]
mod bench;
#[path = "e2e/catalog.rs"]
mod catalog;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/config.rs"]
mod config;
#[path = "e2e/crash_safety.rs"]
mod crash_safety;
#[path = "e2e/data.rs"]
mod data;
#[path = "e2e/dev.rs"]
mod dev;
#[path = "e2e/disk_full.rs"]
mod disk_full;
#[path = "e2e/drain.rs"]
mod drain;
#[path = "e2e/failover.rs"]
mod failover;
#[path = "e2e/files.rs"]
mod files;
#[path = "e2e/forming.rs"]
mod forming;
#[path = "e2e/job_failover.rs"]
mod job_failover;
#[path = "e2e/load.rs"]
mod load;
#[path = "e2e/nodes.rs"]
mod nodes;
#[path = "e2e/observability.rs"]
mod observability;
#[path = "e2e/openapi.rs"]
mod openapi;
#[path = "e2e/pause.rs"]
mod pause;
#[path = "e2e/postgres.rs"]
mod postgres;
#[path = "e2e/quorum.rs"]
mod quorum;
#[path = "e2e/recover.rs"]
mod recover;
#[path = "e2e/replicas.rs"]
mod replicas;
#[path = "e2e/s3.rs"]
mod s3;
#[path = "e2e/schedule.rs"]
mod schedule;
#[path = "e2e/schemathesis.rs"]
mod schemathesis;
#[path = "e2e/snapshots.rs"]
mod snapshots;
#[path = "e2e/stalled_disk.rs"]
mod stalled_disk;
#[path = "e2e/storage.rs"]
mod storage;
#[path = "e2e/tls.rs"]
mod tls;
#[path = "e2e/ui.rs"]
mod ui;
#[path = "e2e/ui_jobs.rs"]
mod ui_jobs;
#[path = "e2e/wipe.rs"]
mod wipe;

use std::time::Duration;

/// A password every check accepts: long, uncommon, and containing none of the user
/// names the tests use.
pub const PASSWORD: &str = "Tr0ub4dor&3-gazelle-kiwi";

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Asserts that a check over many cases found nothing wrong; otherwise lists every
/// one of the `failures`, saying `what` they are ("answers broke the matrix").
pub fn assert_no_failures(failures: &[String], what: &str) {
    assert!(
        failures.is_empty(),
        "{} {what}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
