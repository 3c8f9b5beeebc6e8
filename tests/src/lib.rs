//! End-to-end harness: starts real `bcm node` processes on loopback and lets a test
//! kill, pause, restart and wipe them while it talks to their HTTP API.
//! It also runs the binary as an operator does ([`Bcm`] for `bcm status` and
//! `bcm login`, [`DevCluster`] for `bcm dev`) and follows a node's event stream
//! ([`EventStream`]); [`Postgres`] and [`Garage`] are the real servers some
//! tests need beside it.
//!
//! Everything here is blocking on purpose: a test reads top to bottom like an
//! operator's story ("kill the leader, write through a survivor, ...").
//!
//! What the harness relies on from the binary is written down in
//! `docs/TESTING-CONTRACT.md`.
//!
//! Rules the harness follows:
//! - every HTTP request has a timeout, so a hung node fails a test instead of hanging it;
//! - every wait polls a condition with a deadline ([`wait_until`], [`wait_for`]) and,
//!   when it gives up, says what it last saw;
//! - each node's stdout and stderr go to `<dir>/nodeN.log`; harness events go to
//!   `<dir>/harness.log`. When a test fails the directory is kept, its path and the tail
//!   of every log are printed (set `BCM_KEEP_LOGS=1` to keep it always).

use std::time::Duration;

pub use serde_json;

mod answers;
mod api;
mod binary;
mod browser;
pub mod chaos;
mod cli;
mod cluster;
mod command;
pub mod compose;
mod garage;
mod logs;
mod pg;
mod ports;
mod sse;
pub mod tls;
mod tokens;
pub mod tree;
mod wait;
mod writers;

pub use answers::{item_ids, member, metric};
pub use api::{error_chain, Api, Reply, Req};
pub use binary::bcm_bin;
pub use browser::{screenshot_dir, Browser};
pub use cli::{Bcm, CliOutput, DevCluster};
pub use cluster::{disk, Cluster, ClusterBuilder, StartOrder};
pub use garage::{garage_bin, Garage, GARAGE_KEY_ID, GARAGE_SECRET};
pub use logs::{parse_became_leader, strip_ansi, tail};
pub use pg::Postgres;
pub use ports::{free_base_port, free_port};
pub use sse::{EventStream, SseEvent};
pub use tokens::{base64url, forged_token};
pub use wait::{wait_for, wait_until};
pub use writers::{WriteLog, Writer};

/// Default timeout of one HTTP request made by the harness.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of a health probe (`/leader`, `/readyz`): these must answer at once.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The cluster secret written into every node's config.
pub const CLUSTER_SECRET: &str = "e2e-cluster-secret-0123456789abcdef";
/// The admin password written into every node's config.
pub const ADMIN_PASSWORD: &str = "e2e-admin-password-123";
/// The roles a bootstrap node gets unless told otherwise.
pub const ALL_ROLES: &[&str] = &["manager", "backup-manager", "storage"];
