//! openraft's network over `Peers`: AppendEntries on append streams (HTTP as
//! the fallback), votes and snapshots over HTTP, and how a failed call is told
//! to openraft (back off, send fewer entries, or retry).

use std::time::{Duration, Instant};

use bcm_raft_store::codec;
use bcm_raft_store::{BcmNode, NodeId, TypeConfig};
use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{PeerError, Peers, PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};
use crate::cluster::append_stream::{AppendStream, Reply};

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BcmNode) -> Self::Network {
        // No eager connection: the shared pool, and the append stream, connect on
        // first use.
        PeerConnection {
            peers: self.clone(),
            target,
            addr: node.rpc_addr.clone(),
        }
    }
}

/// The openraft view of one peer.
pub struct PeerConnection {
    peers: Peers,
    target: NodeId,
    addr: String,
}

/// How long AppendEntries stay on HTTP after an append stream could not be used
/// where HTTP could.
const HTTP_FALLBACK: Duration = Duration::from_secs(30);

impl PeerConnection {
    /// Refuses to send while this node takes no part in Raft (see
    /// `Peers::raft_gated_by`): told to openraft as an unreachable peer, so
    /// that it backs off and tries again once the node is open.
    #[allow(clippy::result_large_err)]
    fn may_send<E: std::error::Error>(
        &self,
    ) -> Result<(), RPCError<NodeId, BcmNode, RaftError<NodeId, E>>> {
        if self.peers.raft_may_send() {
            return Ok(());
        }
        let closed = PeerError::Unreachable {
            addr: self.addr.clone(),
            message: "not sent: this node takes no part in Raft yet (it asks the members \
                      whether the cluster still has it, or waits to be admitted)"
                .into(),
        };
        Err(RPCError::Unreachable(Unreachable::new(&closed)))
    }

    /// `entries` is the number of entries an AppendEntries carries (see
    /// `outcome`).
    async fn raft_call<Req, Resp, E>(
        &self,
        path: &'static str,
        req: &Req,
        ttl: Duration,
        entries: Option<usize>,
    ) -> Result<Resp, RPCError<NodeId, BcmNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error,
    {
        let answer = self
            .peers
            .call::<Req, Resp>(&self.addr, path, req, ttl)
            .await;
        self.outcome(answer, entries)
    }

    /// A call's outcome as openraft wants it. (openraft's error type is large;
    /// it is what the trait returns.) For an AppendEntries (`entries` is
    /// `Some`), a 413, or a timeout of a call that carried entries, asks openraft
    /// to send half as many at once (`PayloadTooLarge`); a timeout also halves
    /// the byte budget of the next calls, and a call with entries in time grows
    /// it back (see `AppendBudget`).
    #[allow(clippy::result_large_err)]
    fn outcome<Resp, E: std::error::Error>(
        &self,
        answer: Result<Resp, PeerError>,
        entries: Option<usize>,
    ) -> Result<Resp, RPCError<NodeId, BcmNode, RaftError<NodeId, E>>> {
        let carried = entries.unwrap_or(0);
        match answer {
            Ok(resp) => {
                self.peers.contacts.touch(self.target);
                if carried > 0 {
                    self.peers.append_budget.in_time();
                }
                Ok(resp)
            }
            // Unreachable makes openraft back off instead of retrying in a tight loop.
            Err(e @ (PeerError::Unreachable { .. } | PeerError::Lost { .. })) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            // Refused (401), not taking Raft RPCs yet (503: forming, asking
            // whether the cluster still has it, waiting to be re-admitted), or
            // its Raft stopped (500): sending again at once changes nothing.
            Err(
                e @ PeerError::Status {
                    status: 401 | 500 | 503,
                    ..
                },
            ) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e)
                if entries.is_some()
                    && (matches!(e, PeerError::Status { status: 413, .. })
                        || matches!(e, PeerError::Timeout { .. }) && carried > 0) =>
            {
                // A slow call also makes the next ones smaller in bytes.
                let next_bytes = matches!(e, PeerError::Timeout { .. })
                    .then(|| self.peers.append_budget.too_slow());
                let hint = (carried / 2).max(1) as u64;
                tracing::warn!(
                    target_node = self.target,
                    hint,
                    next_bytes,
                    "{e}; sending fewer entries"
                );
                Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint).with_source_error(&e),
                ))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    /// One AppendEntries over an idle append stream to the peer, or a new one.
    /// A stream that was already open may have been closed by the peer since
    /// (it restarted, or dropped it idle): then once more on a new one. An
    /// AppendEntries may be delivered twice; Raft makes that harmless.
    async fn over_stream(&mut self, frame: &[u8]) -> Result<Reply, PeerError> {
        let mut reused = self.peers.take_stream(&self.addr);
        loop {
            let fresh = reused.is_none();
            let mut stream = match reused.take() {
                Some(s) => s,
                None => AppendStream::connect(&self.peers, &self.addr).await?,
            };
            match stream.exchange(frame).await {
                Ok(reply) => {
                    // A refusal may be the last frame: the peer closes after it.
                    if matches!(reply, Reply::Appended(_)) {
                        self.peers.keep_stream(&self.addr, stream);
                    }
                    return Ok(reply);
                }
                Err(e) if !fresh => {
                    tracing::debug!(
                        target_node = self.target,
                        "append stream closed ({e}); reopening"
                    );
                    self.peers.drop_streams(&self.addr);
                }
                Err(e) => {
                    return Err(PeerError::Lost {
                        addr: self.addr.clone(),
                        message: format!("append stream: {e}"),
                    })
                }
            }
        }
    }
}

/// How long replication to a peer answering `Unreachable` pauses between tries:
/// 50 ms, doubling up to openraft's default of 500 ms, so that a peer that is a
/// moment from taking Raft RPCs (a bootstrap member opening, a restarted one) is
/// not kept waiting long, and one that stays away costs two calls a second.
fn unreachable_backoff() -> impl Iterator<Item = Duration> + Send + 'static {
    (0u32..)
        .map(|tries| Duration::from_millis(50u64 << tries.min(4)).min(Duration::from_millis(500)))
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    fn backoff(&self) -> Backoff {
        Backoff::new(unreachable_backoff())
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BcmNode, RaftError<NodeId>>> {
        // openraft drops a call at its ttl (one heartbeat interval, counted
        // from the call: encoding the frame is part of it) and sends the same
        // again. A call with entries gives up a little before, to say so and to
        // send less next time (see `outcome`).
        self.may_send()?;
        let ttl = option.hard_ttl();
        let deadline = Instant::now()
            + if rpc.entries.is_empty() {
                ttl
            } else {
                ttl * 4 / 5
            };
        let left = || deadline.saturating_duration_since(Instant::now());
        let entries = Some(rpc.entries.len());
        if self.peers.http_until.now(&self.addr) {
            return self
                .raft_call::<_, _, Infallible>(PATH_APPEND, &rpc, left(), entries)
                .await;
        }
        let frame = match codec::encode_frame(&rpc) {
            Ok(f) => f,
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let limit = left();
        let answer = if frame.len() - 4 > bcm_raft_store::limits::RPC_BODY_BYTES {
            // What the peer would refuse, refused here.
            Err(PeerError::Status {
                addr: self.addr.clone(),
                status: 413,
                body: format!("{} bytes is over the rpc body limit", frame.len() - 4),
            })
        } else {
            match tokio::time::timeout(limit, self.over_stream(&frame)).await {
                Err(_) => Err(PeerError::Timeout {
                    addr: self.addr.clone(),
                    timeout: limit,
                }),
                Ok(Ok(Reply::Appended(resp))) => Ok(resp),
                Ok(Ok(Reply::Refused { status, detail })) => Err(PeerError::Status {
                    addr: self.addr.clone(),
                    status,
                    body: detail,
                }),
                Ok(Err(e @ PeerError::Unreachable { .. })) => Err(e),
                Ok(Err(e)) => {
                    // A new stream failed once open: try HTTP, and stay on it
                    // for a while if it works.
                    let http = self.peers.call(&self.addr, PATH_APPEND, &rpc, left()).await;
                    if http.is_ok() {
                        tracing::info!(
                            target_node = self.target,
                            "append stream failed ({e}) where HTTP works: AppendEntries over HTTP for {HTTP_FALLBACK:?}"
                        );
                        self.peers.http_until.set(&self.addr, HTTP_FALLBACK);
                    }
                    http
                }
            }
        };
        self.outcome(answer, entries)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BcmNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.may_send()?;
        self.raft_call::<_, _, InstallSnapshotError>(PATH_SNAPSHOT, &rpc, option.hard_ttl(), None)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BcmNode, RaftError<NodeId>>> {
        self.may_send()?;
        self.raft_call::<_, _, Infallible>(PATH_VOTE, &rpc, option.hard_ttl(), None)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_to_an_unreachable_peer_backs_off_from_50_ms_to_500_ms() {
        let pauses: Vec<u64> = unreachable_backoff()
            .take(7)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(pauses, [50, 100, 200, 400, 500, 500, 500]);
    }
}
