//! The Raft RPCs (openraft's requests and answers as we encode them) and the
//! control messages of `cluster/rpc/`.

use bcm_fuzzing::{check_decoder, garbage, mutated};
use bcm_raft_store::samples::{self, log_id};
use bcm_raft_store::{NodeInfo, Role, TypeConfig, Vote};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use proptest::prelude::*;

use super::{decode, encode, encoded};
use crate::cluster::error::ClusterError;
use crate::cluster::export::ExportStatus;
use crate::cluster::forward_stream::{Reply as ForwardReply, Request as ForwardRequest};
use crate::cluster::rpc::{
    Hello, JoinReply, JoinRequest, LeaderOp, LeaderReply, MemberHealth, OpResult, PreVoteRequest,
};

type Append = AppendEntriesRequest<TypeConfig>;
type Snapshot = InstallSnapshotRequest<TypeConfig>;
type Answer = LeaderReply<OpResult>;

fn appends() -> Vec<Append> {
    let entries = samples::entries();
    vec![
        // A heartbeat.
        Append {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(3, 40)),
            entries: vec![],
            leader_commit: Some(log_id(3, 40)),
        },
        Append {
            vote: Vote::new_committed(2, 1),
            prev_log_id: None,
            entries: entries[..3].to_vec(),
            leader_commit: None,
        },
        Append {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(1, 2)),
            entries: entries[2..].to_vec(),
            leader_commit: Some(log_id(2, 5)),
        },
    ]
}

fn append_answers() -> Vec<AppendEntriesResponse<u64>> {
    vec![
        AppendEntriesResponse::Success,
        AppendEntriesResponse::PartialSuccess(Some(log_id(2, 9))),
        AppendEntriesResponse::Conflict,
        AppendEntriesResponse::HigherVote(Vote::new(4, 2)),
    ]
}

fn snapshots() -> Vec<Snapshot> {
    let (_, states) = samples::applied();
    let data = encode(states.last().unwrap()).unwrap();
    samples::metas()
        .into_iter()
        .map(|meta| Snapshot {
            vote: Vote::new_committed(3, 1),
            meta,
            offset: 0,
            data: data.clone(),
            done: true,
        })
        .collect()
}

fn info() -> NodeInfo {
    NodeInfo {
        id: 4,
        name: "storage-4".into(),
        api_addr: "http://10.0.0.4:8080".into(),
        rpc_addr: "https://10.0.0.4:9080".into(),
        roles: vec![Role::Storage],
    }
}

/// The bodies a node POSTs to a peer's control routes.
fn control_bodies() -> Vec<Vec<u8>> {
    let mut out = encoded(&[
        PreVoteRequest {
            candidate: 2,
            last_log: Some((3, 41)),
        },
        PreVoteRequest {
            candidate: 2,
            last_log: None,
        },
    ]);
    out.extend(encoded(&[JoinRequest {
        info: info(),
        fresh: true,
    }]));
    out.extend(encoded(&[
        JoinReply::Proceed,
        JoinReply::Superseded {
            leader: 1,
            term: 1_000_004,
        },
    ]));
    out.extend(encoded(&[
        Hello {
            info: info(),
            initialized: true,
            cluster_id: Some("c-7f3a".into()),
            leader_id: Some(1),
            leader_rpc: Some("http://127.0.0.1:9081".into()),
            cert: Some(bcm_api::NodeCertView {
                node_id: 1,
                issuer: Some("bcm cluster CA 0f12e13d".into()),
                serial: Some("5a:01".into()),
                not_before: Some(1_796_000_000),
                not_after: Some(1_803_776_000),
                error: None,
            }),
        },
        Hello {
            info: info(),
            initialized: false,
            cluster_id: None,
            leader_id: None,
            leader_rpc: None,
            cert: None,
        },
    ]));
    out
}

/// Work forwarded to the leader: every command as a write, a batch of them, and
/// the other operations.
fn leader_ops() -> Vec<LeaderOp> {
    let commands = samples::commands();
    let mut ops: Vec<LeaderOp> = commands.iter().cloned().map(LeaderOp::Write).collect();
    ops.extend([
        LeaderOp::WriteBatch(commands[5..9].to_vec()),
        LeaderOp::ReadIndex,
        LeaderOp::Decommission(3),
        LeaderOp::Snapshot,
        LeaderOp::Health,
    ]);
    ops
}

/// The leader's answers: every response a command gets, and the others.
fn leader_answers() -> Vec<Answer> {
    let (responses, _) = samples::applied();
    let mut answers: Vec<Answer> = responses
        .into_iter()
        .enumerate()
        .map(|(i, r)| LeaderReply::Ok(OpResult::Written(r, i as u64 + 1)))
        .collect();
    answers.extend([
        LeaderReply::Ok(OpResult::ReadIndex(77)),
        LeaderReply::Ok(OpResult::Done),
        LeaderReply::Ok(OpResult::Snapshot(41)),
        LeaderReply::Ok(OpResult::Health(vec![MemberHealth {
            id: 2,
            last_contact_ms: Some(12),
            matched_index: Some(40),
        }])),
        LeaderReply::Ok(OpResult::Batch(vec![
            LeaderReply::Ok(OpResult::Done),
            LeaderReply::Refused(ClusterError::Conflict("a second write of key a".into())),
        ])),
        LeaderReply::NotLeader {
            leader_id: Some(2),
            leader_rpc: Some("http://127.0.0.1:9082".into()),
        },
        LeaderReply::Refused(ClusterError::TooLarge("the write is 2 MiB".into())),
        LeaderReply::Unavailable("no quorum".into()),
    ]);
    answers
}

/// The forward stream's frames: forwarded work with ids, and the listener's
/// opening, answers and refusals.
fn forward_frames() -> Vec<Vec<u8>> {
    let requests: Vec<ForwardRequest> = leader_ops()
        .into_iter()
        .enumerate()
        .map(|(i, op)| ForwardRequest {
            id: i as u64 * 1000 + 1,
            op,
        })
        .collect();
    let mut replies = vec![
        ForwardReply::Open,
        ForwardReply::Refused {
            id: None,
            status: 401,
            detail: "missing or wrong cluster secret".into(),
        },
        ForwardReply::Refused {
            id: Some(7),
            status: 403,
            detail: "members do not forward user writes bare".into(),
        },
    ];
    replies.extend(leader_answers().into_iter().enumerate().map(|(i, reply)| {
        ForwardReply::Answered {
            id: i as u64 + 300,
            reply,
        }
    }));
    let mut out = encoded(&requests);
    out.extend(encoded(&replies));
    out
}

fn export_answers() -> Vec<LeaderReply<ExportStatus>> {
    vec![
        LeaderReply::Ok(ExportStatus {
            last_index: Some(40),
            last_at_ms: Some(1_700_000_000_000),
            last_error: Some("connection refused".into()),
            failures: 3,
        }),
        LeaderReply::NotLeader {
            leader_id: None,
            leader_rpc: None,
        },
    ]
}

/// Every body of this file, whatever its type: the seeds the garbage targets
/// mix with.
fn all_seeds() -> Vec<Vec<u8>> {
    let mut all = encoded(&appends());
    all.extend(encoded(&append_answers()));
    all.extend(encoded(&snapshots()));
    all.extend(control_bodies());
    all.extend(encoded(&leader_ops()));
    all.extend(encoded(&leader_answers()));
    all.extend(encoded(&export_answers()));
    all.extend(forward_frames());
    all
}

/// Every type a node decodes from a peer on the cluster's routes, tried on the
/// same bytes.
fn decode_every_kind(bytes: &[u8]) -> Result<(), TestCaseError> {
    check_decoder(bytes, decode::<Append>, encode)?;
    check_decoder(bytes, decode::<AppendEntriesResponse<u64>>, encode)?;
    check_decoder(bytes, decode::<VoteRequest<u64>>, encode)?;
    check_decoder(bytes, decode::<VoteResponse<u64>>, encode)?;
    check_decoder(bytes, decode::<Snapshot>, encode)?;
    check_decoder(bytes, decode::<InstallSnapshotResponse<u64>>, encode)?;
    check_decoder(bytes, decode::<PreVoteRequest>, encode)?;
    check_decoder(bytes, decode::<bool>, encode)?;
    check_decoder(bytes, decode::<Hello>, encode)?;
    check_decoder(bytes, decode::<JoinRequest>, encode)?;
    check_decoder(bytes, decode::<JoinReply>, encode)?;
    check_decoder(bytes, decode::<LeaderOp>, encode)?;
    check_decoder(bytes, decode::<Answer>, encode)?;
    check_decoder(bytes, decode::<LeaderReply<ExportStatus>>, encode)?;
    check_decoder(bytes, decode::<ForwardRequest>, encode)?;
    check_decoder(bytes, decode::<ForwardReply>, encode)?;
    Ok(())
}

#[test]
fn the_seeds_decode_as_what_they_are() {
    for b in encoded(&appends()) {
        decode::<Append>(&b).unwrap();
    }
    for b in encoded(&snapshots()) {
        decode::<Snapshot>(&b).unwrap();
    }
    for b in encoded(&leader_ops()) {
        decode::<LeaderOp>(&b).unwrap();
    }
    for b in encoded(&leader_answers()) {
        decode::<Answer>(&b).unwrap();
    }
    let frames = forward_frames();
    let requests = leader_ops().len();
    for b in &frames[..requests] {
        decode::<ForwardRequest>(b).unwrap();
    }
    for b in &frames[requests..] {
        decode::<ForwardReply>(b).unwrap();
    }
}

/// Batches of answers inside batches of answers, as deep as the bytes go:
/// refused, not a stack overflow (`OpResult::Batch` holds answers).
#[test]
fn leader_answers_nested_deep_are_refused_not_a_stack_overflow() {
    let batch = |inner: Vec<Answer>| LeaderReply::Ok(OpResult::Batch(inner));
    let leaf = encode(&batch(vec![])).unwrap();
    let once = encode(&batch(vec![batch(vec![])])).unwrap();
    assert!(decode::<Answer>(&bcm_fuzzing::nested(&leaf, &once, 100_000)).is_err());
    assert!(decode::<Answer>(&bcm_fuzzing::nested(&leaf, &once, 2)).is_ok());
}

proptest! {
    #![proptest_config(bcm_fuzzing::cases(256))]

    #[test]
    fn raft_and_control_bodies_from_garbage(bytes in garbage(512)) {
        decode_every_kind(&bytes)?;
    }

    #[test]
    fn append_entries_mutated(bytes in mutated(encoded(&appends()))) {
        check_decoder(&bytes, decode::<Append>, encode)?;
    }

    #[test]
    fn raft_answers_and_votes_mutated(bytes in mutated({
        let mut seeds = encoded(&append_answers());
        seeds.extend(encoded(&[VoteRequest { vote: Vote::new(4, 2), last_log_id: Some(log_id(3, 41)) }]));
        seeds.extend(encoded(&[VoteResponse { vote: Vote::new(4, 2), vote_granted: true, last_log_id: None }]));
        seeds.extend(encoded(&[InstallSnapshotResponse { vote: Vote::new_committed(4, 2) }]));
        seeds
    })) {
        check_decoder(&bytes, decode::<AppendEntriesResponse<u64>>, encode)?;
        check_decoder(&bytes, decode::<VoteRequest<u64>>, encode)?;
        check_decoder(&bytes, decode::<VoteResponse<u64>>, encode)?;
        check_decoder(&bytes, decode::<InstallSnapshotResponse<u64>>, encode)?;
    }

    #[test]
    fn install_snapshot_mutated(bytes in mutated(encoded(&snapshots()))) {
        check_decoder(&bytes, decode::<Snapshot>, encode)?;
    }

    #[test]
    fn control_messages_mutated(bytes in mutated(control_bodies())) {
        check_decoder(&bytes, decode::<PreVoteRequest>, encode)?;
        check_decoder(&bytes, decode::<Hello>, encode)?;
        check_decoder(&bytes, decode::<JoinRequest>, encode)?;
        check_decoder(&bytes, decode::<JoinReply>, encode)?;
    }

    #[test]
    fn forwarded_work_mutated(bytes in mutated(encoded(&leader_ops()))) {
        check_decoder(&bytes, decode::<LeaderOp>, encode)?;
    }

    #[test]
    fn leader_answers_mutated(bytes in mutated({
        let mut seeds = encoded(&leader_answers());
        seeds.extend(encoded(&export_answers()));
        seeds
    })) {
        check_decoder(&bytes, decode::<Answer>, encode)?;
        check_decoder(&bytes, decode::<LeaderReply<ExportStatus>>, encode)?;
    }

    #[test]
    fn forward_stream_frames_mutated(bytes in mutated(forward_frames())) {
        check_decoder(&bytes, decode::<ForwardRequest>, encode)?;
        check_decoder(&bytes, decode::<ForwardReply>, encode)?;
    }

    /// Any seed mutated, decoded as every kind: a body sent to the wrong route.
    #[test]
    fn bodies_on_the_wrong_route(bytes in mutated(all_seeds())) {
        decode_every_kind(&bytes)?;
    }
}
