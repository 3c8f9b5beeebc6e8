//! The forward stream: work a follower forwards to the leader (batches of writes,
//! forward.rs; read-index rounds, login slots and the rest of `LeaderOp`) over
//! one persistent connection per leader, instead of an HTTP request each.
//! Requests and answers are length-prefixed postcard frames, each request with
//! an id its answer carries, so several batches are under way at once and are
//! answered in the order they commit.
//!
//! It opens as the append stream does (append_stream.rs): ALPN `bcm-forward/1`
//! and a node certificate with cluster TLS, [`PREFACE`] and the cluster secret
//! in plaintext. The listener's first frame says whether it took the stream
//! ([`Reply::Open`]), so a peer of an older version, which answers the preface
//! as a bad HTTP request, is told apart before any work is sent: the follower
//! then forwards over HTTP, as before. A leader that does not answer the
//! opening in time (paused, overloaded) is "unreachable": nothing was sent,
//! and the caller may try again.
//!
//! What a lost connection means is what it means for HTTP: a request whose
//! answer did not come may or may not have been acted on.
//!
//! `leader.rs` serves the stream; `follower.rs` opens and uses it.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter, WriteHalf};
use tokio::sync::mpsc;

use crate::cluster::framed::IoResult;
use crate::cluster::rpc::{LeaderOp, LeaderReply, OpResult};
use crate::net::serve::StreamIo;

mod follower;
mod leader;

pub use follower::Links;
pub use leader::streams;

/// How a plaintext forward stream begins (no HTTP request does).
pub const PREFACE: &[u8] = b"BCM-FORWARD/1\n";

/// The listener closes a stream that carries nothing this long ...
pub(super) const IDLE: Duration = Duration::from_secs(60);
/// ... and a follower stops using one it has not used this long (well before,
/// so that it never sends on a stream the listener is closing).
pub(super) const CLIENT_IDLE: Duration = Duration::from_secs(20);
/// A stream that owes answers and has said nothing this long is no longer sent
/// on (its link may be cut: TCP would queue new work behind the old); it stays
/// open for the answers it owes, and a new one takes the new work.
pub(super) const STALE: Duration = Duration::from_secs(2);
/// A peer that does not serve forward streams gets HTTP for this long.
pub(super) const HTTP_FOR: Duration = Duration::from_secs(60);

/// A request: an id this side chose, and the work.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub op: LeaderOp,
}

/// The same, borrowed, for encoding (one layout: postcard writes fields in turn).
#[derive(Serialize)]
pub(super) struct RequestRef<'a> {
    pub(super) id: u64,
    pub(super) op: &'a LeaderOp,
}

/// What the listener sends.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The stream is open: the listener's first frame.
    Open,
    /// The answer to request `id`.
    Answered {
        id: u64,
        reply: LeaderReply<OpResult>,
    },
    /// Request `id`, or with no id the whole stream (then it closes), refused
    /// with the HTTP status the same refusal gets over HTTP and why.
    Refused {
        id: Option<u64>,
        status: u16,
        detail: String,
    },
}

/// Writes frames as they come, everything ready in one flush, until every
/// sender is gone; then closes this side.
pub(super) async fn write_frames(
    wr: WriteHalf<Box<dyn StreamIo>>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) -> IoResult<()> {
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    while let Some(frame) = rx.recv().await {
        wr.write_all(&frame).await?;
        while let Ok(frame) = rx.try_recv() {
            wr.write_all(&frame).await?;
        }
        wr.flush().await?;
    }
    wr.shutdown().await
}
