//! Fuzz targets for the model's encodings (commands, responses, the state), as proptest properties (bcm-fuzzing).

use std::collections::BTreeSet;

use bcm_fuzzing::{check_decoder, garbage, mutated, round_trips};
use bcm_model::samples::{applied, commands};
use bcm_model::{codec, ClusterState, Command, Response};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: bcm_fuzzing::Tracking = bcm_fuzzing::Tracking;

fn encoded<T: serde::Serialize>(values: &[T]) -> Vec<Vec<u8>> {
    values.iter().map(|v| codec::encode(v).unwrap()).collect()
}

fn decode_command(b: &[u8]) -> Result<Command, codec::CodecError> {
    codec::decode(b)
}

fn decode_response(b: &[u8]) -> Result<Response, codec::CodecError> {
    codec::decode(b)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, codec::CodecError> {
    codec::encode(v)
}

#[test]
fn the_seeds_are_valid_and_cover_every_kind_of_answer() {
    let (responses, states) = applied();
    for c in commands() {
        round_trips(&c, decode_command, encode).unwrap();
        assert_eq!(decode_command(&encode(&c).unwrap()).unwrap(), c);
    }
    let kinds: BTreeSet<&str> = responses
        .iter()
        .map(|r| match r {
            Response::Done => "done",
            Response::Config(_) => "config",
            Response::Node(_) => "node",
            Response::User(_) => "user",
            Response::Group(_) => "group",
            Response::Plan(_) => "plan",
            Response::Backup(_) => "backup",
            Response::Restore(_) => "restore",
            Response::Rejected(_) => "rejected",
            Response::Batch(_) => "batch",
        })
        .collect();
    assert_eq!(kinds.len(), 10, "responses seen: {kinds:?}");
    let last = states.last().unwrap();
    assert!(last.is_initialized() && !last.backups.is_empty());
}

proptest! {
    #![proptest_config(bcm_fuzzing::cases(512))]

    #[test]
    fn commands_from_garbage(bytes in garbage(512)) {
        check_decoder(&bytes, decode_command, encode)?;
    }

    #[test]
    fn commands_mutated(bytes in mutated(encoded(&commands()))) {
        check_decoder(&bytes, decode_command, encode)?;
    }

    #[test]
    fn responses_mutated(bytes in mutated(encoded(&applied().0))) {
        check_decoder(&bytes, decode_response, encode)?;
    }
}

proptest! {
    #![proptest_config(bcm_fuzzing::cases(128))]

    /// A snapshot's state, today's layout or an earlier one (`ClusterState::decode`
    /// tries both).
    #[test]
    fn states_mutated(bytes in mutated(encoded(&applied().1))) {
        check_decoder(&bytes, ClusterState::decode, encode)?;
    }
}

/// A batch holding a batch holding a batch ... as deep as the bytes go: every
/// level is two bytes, so a 1 MiB body nests half a million deep.
fn nested_batch(depth: usize) -> Vec<u8> {
    let leaf = encode(&Command::Batch(vec![])).unwrap();
    let once = encode(&Command::Batch(vec![Command::Batch(vec![])])).unwrap();
    bcm_fuzzing::nested(&leaf, &once, depth)
}

#[test]
fn commands_nested_deep_are_refused_not_a_stack_overflow() {
    for depth in [1_000, 100_000] {
        let bytes = nested_batch(depth);
        assert!(decode_command(&bytes).is_err(), "nested {depth} deep");
    }
    // What a leader writes (a batch of plain commands), and a batch inside one
    // (refused when applied, but it decodes), still do.
    assert!(decode_command(&nested_batch(2)).is_ok());
}

#[test]
fn responses_nested_deep_are_refused_not_a_stack_overflow() {
    let leaf = encode(&Response::Batch(vec![])).unwrap();
    let once = encode(&Response::Batch(vec![Response::Batch(vec![])])).unwrap();
    let bytes = bcm_fuzzing::nested(&leaf, &once, 100_000);
    assert!(decode_response(&bytes).is_err());
    assert!(decode_response(&bcm_fuzzing::nested(&leaf, &once, 2)).is_ok());
}
