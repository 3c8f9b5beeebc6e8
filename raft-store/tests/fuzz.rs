//! Fuzz targets for what the store reads back (log entries, vote, snapshot meta, log segment files), as proptest properties (bcm-fuzzing).

use bcm_fuzzing::{check_decoder, garbage, mutated};
use bcm_raft_store::samples::{entries, log_id, metas};
use bcm_raft_store::wal::Wal;
use bcm_raft_store::{codec, Entry, LogId, SnapshotMeta, Vote};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: bcm_fuzzing::Tracking = bcm_fuzzing::Tracking;

fn encoded<T: serde::Serialize>(values: &[T]) -> Vec<Vec<u8>> {
    values.iter().map(|v| codec::encode(v).unwrap()).collect()
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, codec::CodecError> {
    codec::encode(v)
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, codec::CodecError> {
    codec::decode(b)
}

/// A log segment as the log writes it, cut where its records end (the rest of a
/// segment is zeroes, preallocated), and the payloads it holds from index 1.
fn segment() -> (Vec<u8>, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let payloads = encoded(&entries());
    let wal = Wal::open(dir.path(), None).unwrap();
    wal.append(payloads.iter().enumerate().map(|(i, p)| (i as u64 + 1, p)))
        .unwrap();
    wal.sync().unwrap();
    drop(wal);
    let bytes = std::fs::read(dir.path().join(SEGMENT_NAME)).unwrap();
    let end = 16 + payloads.iter().map(|p| 16 + p.len()).sum::<usize>();
    assert!(
        bytes[end..].iter().all(|b| *b == 0),
        "a segment's tail is zeroes"
    );
    (bytes[..end].to_vec(), payloads)
}

/// The name of the segment whose first record is index 1.
const SEGMENT_NAME: &str = "00000000000000000001.wal";

#[test]
fn the_seeds_are_valid() {
    for e in entries() {
        let back: Entry = decode(&encode(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
    let (bytes, payloads) = segment();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(SEGMENT_NAME), bytes).unwrap();
    let read = Wal::open(dir.path(), None).unwrap().read(..).unwrap();
    assert_eq!(read.len(), payloads.len());
}

proptest! {
    #![proptest_config(bcm_fuzzing::cases(512))]

    #[test]
    fn entries_from_garbage(bytes in garbage(512)) {
        check_decoder(&bytes, decode::<Entry>, encode)?;
    }

    #[test]
    fn entries_mutated(bytes in mutated(encoded(&entries()))) {
        check_decoder(&bytes, decode::<Entry>, encode)?;
    }

    #[test]
    fn votes_and_log_ids_mutated(bytes in mutated([
        encode(&Vote::new(7, 2)).unwrap(),
        encode(&Vote::new_committed(7, 2)).unwrap(),
        encode(&Some(log_id(7, 1 << 40))).unwrap(),
    ].to_vec())) {
        check_decoder(&bytes, decode::<Vote>, encode)?;
        check_decoder(&bytes, decode::<Option<LogId>>, encode)?;
    }

    #[test]
    fn snapshot_metas_mutated(bytes in mutated(encoded(&metas()))) {
        check_decoder(&bytes, decode::<SnapshotMeta>, encode)?;
    }
}

proptest! {
    #![proptest_config(bcm_fuzzing::cases(48))]

    /// A damaged log segment (the only one, so the one appends went to): opening
    /// the log never panics, and what it then reads is the records written, up to
    /// the first one the damage reached (it checks each record's checksum and
    /// index), never a changed one.
    #[test]
    fn log_segments_mutated(bytes in mutated(vec![segment_payloads().0.clone()])) {
        let payloads = &segment_payloads().1;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SEGMENT_NAME), &bytes).unwrap();
        let Ok(wal) = Wal::open(dir.path(), None) else { return Ok(()) };
        let read = wal.read(..).unwrap();
        prop_assert!(read.len() <= payloads.len());
        for (i, (index, payload)) in read.iter().enumerate() {
            prop_assert_eq!(*index, i as u64 + 1);
            prop_assert_eq!(payload, &payloads[i], "record {} changed", index);
        }
    }
}

/// The payloads of [`segment`], made once.
fn segment_payloads() -> &'static (Vec<u8>, Vec<Vec<u8>>) {
    static SEGMENT: std::sync::OnceLock<(Vec<u8>, Vec<Vec<u8>>)> = std::sync::OnceLock::new();
    SEGMENT.get_or_init(segment)
}
