//! The leader's side of the forward stream: it takes the stream, runs each
//! request in a task of its own and writes the answers as they are done.

use std::sync::Arc;
use std::time::Duration;

use bcm_raft_store::codec;
use bcm_raft_store::limits::RPC_BODY_BYTES;
use tokio::io::{AsyncWriteExt, ReadHalf};
use tokio::sync::mpsc;

use super::{write_frames, Reply, Request, IDLE, PREFACE};
use crate::cluster::framed::{self, invalid, IoResult};
use crate::cluster::rpc::{LeaderReply, OpResult};
use crate::cluster::rpc_server;
use crate::cluster::SharedNode;
use crate::net::serve::{StreamIo, Streams};
use crate::tls::{PeerNode, ALPN_FORWARD};

/// The internal listener's hook for forward streams.
pub fn streams(node: SharedNode) -> Streams {
    Streams {
        alpn: ALPN_FORWARD,
        preface: PREFACE,
        serve: Arc::new(move |io, peer| Box::pin(serve(node.clone(), io, peer))),
    }
}

async fn serve(node: SharedNode, io: Box<dyn StreamIo>, peer: Option<PeerNode>) {
    if let Err(e) = answer(node, io, peer).await {
        tracing::debug!(peer = ?peer.map(|p| p.0), "forward stream ended: {e}");
    }
}

async fn answer(node: SharedNode, io: Box<dyn StreamIo>, peer: Option<PeerNode>) -> IoResult<()> {
    let (rd, mut wr) = tokio::io::split(io);
    let mut rd = framed::reader(rd, 64 * 1024);
    let opening = framed::check_opening(&node, &mut rd, PREFACE, peer).await?;
    let first = match opening {
        Ok(()) => Reply::Open,
        Err((status, detail)) => Reply::Refused {
            id: None,
            status,
            detail,
        },
    };
    framed::write_frame(&mut wr, &first).await?;
    if !matches!(first, Reply::Open) {
        return wr.shutdown().await;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_frames(wr, rx));
    let read = read_requests(&node, &mut rd, peer, &tx).await;
    // The answers under way are still written: the writer ends after the last.
    drop(tx);
    let written = writer
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    read.and(written)
}

/// Reads requests until the follower closes the stream (or the node stops),
/// each answered by a task of its own as soon as it is done.
async fn read_requests(
    node: &SharedNode,
    rd: &mut tokio::io::BufReader<ReadHalf<Box<dyn StreamIo>>>,
    peer: Option<PeerNode>,
    tx: &mpsc::UnboundedSender<Vec<u8>>,
) -> IoResult<()> {
    let within = Duration::from_millis(node.cfg.http.body_timeout_ms);
    let mut stop = node.shutdown.clone();
    let mut body = Vec::new();
    let refuse = |status: u16, detail: String| {
        let frame = codec::encode_frame(&Reply::Refused {
            id: None,
            status,
            detail,
        });
        if let Ok(frame) = frame {
            let _ = tx.send(frame);
        }
    };
    loop {
        let len = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Ok(()),
            len = tokio::time::timeout(IDLE, framed::read_len(rd, RPC_BODY_BYTES)) => match len {
                Err(_) => return Ok(()),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                    refuse(413, e.to_string());
                    return Ok(());
                }
                Ok(len) => len?,
            },
        };
        tokio::time::timeout(within, framed::read_frame(rd, &mut body, len))
            .await
            .map_err(|_| invalid("a frame did not arrive within http.body_timeout_ms"))??;
        if let (Some(tls), Some(PeerNode(p))) = (&node.tls, peer) {
            // Decommissioned since the connection opened.
            if tls.is_revoked(p) {
                refuse(
                    403,
                    format!("node {p} was decommissioned: its certificate is refused"),
                );
                return Ok(());
            }
        }
        let req: Request = match codec::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                // Refused alone when its id can be read (work of a newer
                // version, say); else the stream cannot go on.
                let detail = format!("undecodable request: {e}");
                match codec::decode_prefix::<u64>(&body) {
                    Ok(id) => {
                        answer_with(tx, id, Err((400, detail)));
                        continue;
                    }
                    Err(_) => {
                        refuse(400, detail);
                        return Ok(());
                    }
                }
            }
        };
        let (node, tx) = (node.clone(), tx.clone());
        tokio::spawn(async move {
            let id = req.id;
            // Bounded as an HTTP request is (http.request_timeout_ms).
            let within = Duration::from_millis(node.cfg.http.request_timeout_ms);
            let done = tokio::time::timeout(within, rpc_server::forwarded(&node, peer, req.op));
            let reply = match done.await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(p)) => Err((p.status, p.detail.clone())),
                Err(_) => Err((
                    408,
                    format!("the request was not answered within {} s", within.as_secs()),
                )),
            };
            answer_with(&tx, id, reply);
        });
    }
}

/// Sends the answer to request `id` to the stream's writer.
fn answer_with(
    tx: &mpsc::UnboundedSender<Vec<u8>>,
    id: u64,
    reply: Result<LeaderReply<OpResult>, (u16, String)>,
) {
    let reply = match reply {
        Ok(reply) => Reply::Answered { id, reply },
        Err((status, detail)) => Reply::Refused {
            id: Some(id),
            status,
            detail,
        },
    };
    let frame = codec::encode_frame(&reply).or_else(|e| {
        codec::encode_frame(&Reply::Refused {
            id: Some(id),
            status: 500,
            detail: e.to_string(),
        })
    });
    if let Ok(frame) = frame {
        let _ = tx.send(frame);
    }
}
