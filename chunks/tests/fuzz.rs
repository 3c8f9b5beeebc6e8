//! Fuzz targets for the data plane's stored formats (manifests, pack indexes, blobs), as proptest properties (bcm-fuzzing).

use bcm_chunks::chunker::MAX_CHUNK;
use bcm_chunks::pack::{self, BlobEntry, PackBuilder};
use bcm_chunks::{Blob, ChunkId, Entry, EntryKind, Manifest, Stamp};
use bcm_fuzzing::{budget, check_decoder, decode_within, garbage, mutated, round_trips};
use proptest::prelude::*;
use serde::Serialize;

#[global_allocator]
static ALLOC: bcm_fuzzing::Tracking = bcm_fuzzing::Tracking;

fn entry(path: &str, kind: EntryKind) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind,
        mode: 0o644,
        mtime: (1_700_000_000, 123_456_789),
        stamp: Stamp {
            inode: 4242,
            ctime: (1_700_000_001, 5),
        },
    }
}

fn manifest() -> Manifest {
    Manifest {
        entries: vec![
            entry("srv", EntryKind::Dir),
            entry(
                "srv/a.txt",
                EntryKind::File {
                    size: 3 << 20,
                    chunks: vec![ChunkId::of(b"one"), ChunkId::of(b"two")],
                },
            ),
            entry(
                "srv/empty",
                EntryKind::File {
                    size: 0,
                    chunks: vec![],
                },
            ),
            entry(
                "srv/link",
                EntryKind::Symlink {
                    target: b"../elsewhere".to_vec(),
                },
            ),
        ],
        skipped: vec![(b"srv/socket".to_vec(), "a socket".into())],
    }
}

/// A manifest of the layout before stamps, as such a backup's manifest was
/// written (its types are the crate's own, private: their shape is repeated here).
fn manifest_v1() -> Vec<u8> {
    #[derive(Serialize)]
    struct EntryV1 {
        path: Vec<u8>,
        kind: EntryKind,
        mode: u32,
        mtime: (i64, u32),
    }
    #[derive(Serialize)]
    struct ManifestV1 {
        entries: Vec<EntryV1>,
        skipped: Vec<(Vec<u8>, String)>,
    }
    let m = manifest();
    let old = ManifestV1 {
        entries: m
            .entries
            .into_iter()
            .map(|e| EntryV1 {
                path: e.path,
                kind: e.kind,
                mode: e.mode,
                mtime: e.mtime,
            })
            .collect(),
        skipped: m.skipped,
    };
    with_header(b"bcmmani1", &postcard::to_stdvec(&old).unwrap())
}

/// Magic, CRC-32 of the body, body: a manifest file around `body`.
fn with_header(magic: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The bodies of both manifest layouts, with the magic of each.
fn manifest_files() -> Vec<Vec<u8>> {
    [manifest().encode(), manifest_v1()]
        .into_iter()
        .map(|m| m.to_vec())
        .collect()
}

/// A mutated manifest whose checksum was made to match again, so that the
/// damage reaches the decoder behind it.
fn mutated_manifest() -> impl Strategy<Value = Vec<u8>> {
    let bodies: Vec<Vec<u8>> = manifest_files()
        .into_iter()
        .map(|m| m[12..].to_vec())
        .collect();
    (any::<bool>(), mutated(bodies))
        .prop_map(|(new, body)| with_header(if new { b"bcmmani2" } else { b"bcmmani1" }, &body))
}

fn encode_manifest(m: &Manifest) -> Result<Vec<u8>, ()> {
    Ok(m.encode())
}

/// A pack of a compressible chunk, an incompressible one and an empty one.
fn pack_bytes() -> Vec<u8> {
    let mut b = PackBuilder::default();
    let text = b"a chunk that compresses well ".repeat(200);
    let noise: Vec<u8> = (0..3000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for raw in [&text[..], &noise[..], b""] {
        b.add(ChunkId::of(raw), raw).unwrap();
    }
    let (_, end) = b.end();
    [b.blob_bytes(), &end[..]].concat()
}

/// The trailer's checksum made to match the (damaged) trailer its length names,
/// where that length fits: damage behind the checksum.
fn fix_pack_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len();
    if n < 16 {
        return bytes;
    }
    let len = u32::from_le_bytes(bytes[n - 16..n - 12].try_into().unwrap()) as usize;
    if len + 16 <= n {
        let crc = crc32fast::hash(&bytes[n - 16 - len..n - 16]);
        bytes[n - 12..n - 8].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

/// Reads a pack's index from its bytes, as the store does (first its last 64 KiB,
/// then as many as it says it needs), and opens every chunk it names. The pack
/// may claim to be longer than the bytes at hand (`extra`).
fn read_pack(bytes: &[u8], extra: u64) -> Result<usize, String> {
    let len = bytes.len() as u64 + extra;
    let suffix = &bytes[bytes.len().saturating_sub(pack::TAIL_READ)..];
    let entries = match pack::index_from_suffix(len, suffix).map_err(|e| e.to_string())? {
        Ok(entries) => entries,
        Err(need) => {
            let from = bytes
                .len()
                .checked_sub(need)
                .ok_or("needs more than there is")?;
            pack::index_from_suffix(len, &bytes[from..])
                .map_err(|e| e.to_string())?
                .map_err(|n| format!("asked for {n} bytes again"))?
        }
    };
    let mut opened = 0;
    for e in &entries {
        let stored = bytes
            .get(e.offset as usize..)
            .and_then(|b| b.get(..e.stored_len as usize))
            .unwrap_or_default();
        if pack::stored_blob(e, stored.to_vec()).open().is_ok() {
            opened += 1;
        }
    }
    Ok(opened)
}

fn blobs() -> Vec<Blob> {
    let text = b"blob blob blob blob blob blob blob".to_vec();
    vec![
        Blob::new(ChunkId::of(&text), &text).unwrap(),
        Blob::new(ChunkId::of(b"x"), b"x").unwrap(),
    ]
}

#[test]
fn the_seeds_are_valid() {
    for bytes in manifest_files() {
        let m = Manifest::decode(&bytes).unwrap();
        assert_eq!(m.entries.len(), 4);
    }
    assert_eq!(read_pack(&pack_bytes(), 0), Ok(3));
    for b in blobs() {
        assert!(b.verify());
    }
}

/// A pack whose index places a chunk at offset 2^64 - 1: the check that every
/// chunk lies inside the pack added offset and length and overflowed (a panic
/// in a debug build, a wrapped sum that passed the check in a release build).
#[test]
fn a_pack_index_with_an_offset_at_the_end_of_u64_is_refused() {
    let mut b = PackBuilder::default();
    b.add(ChunkId::of(b"abc"), b"abc").unwrap();
    let mut entries = b.entries().to_vec();
    entries[0].offset = u64::MAX;
    let trailer = postcard::to_stdvec(&entries).unwrap();
    let mut bytes = b.blob_bytes().to_vec();
    bytes.extend_from_slice(&trailer);
    bytes.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&trailer).to_le_bytes());
    bytes.extend_from_slice(b"bcmpack1");
    let err = read_pack(&bytes, 0).unwrap_err();
    assert!(err.contains("past the blobs"), "{err}");
}

proptest! {
    #![proptest_config(bcm_fuzzing::cases(512))]

    #[test]
    fn manifests_from_garbage(bytes in garbage(512)) {
        check_decoder(&bytes, Manifest::decode, encode_manifest)?;
    }

    #[test]
    fn manifests_mutated(bytes in mutated(manifest_files())) {
        check_decoder(&bytes, Manifest::decode, encode_manifest)?;
    }

    /// Damage behind the checksum: what decodes is still checked path by path,
    /// so nothing it accepts leaves its root.
    #[test]
    fn manifests_mutated_behind_their_checksum(bytes in mutated_manifest()) {
        if let Some(m) = bcm_fuzzing::decode_within_budget(&bytes, Manifest::decode)? {
            for e in &m.entries {
                prop_assert!(bcm_chunks::manifest::relative_path(e.path()).is_ok());
            }
            round_trips(&m, Manifest::decode, encode_manifest)?;
        }
    }

    /// A pack's index, damaged before or behind its checksum, from a pack that
    /// may claim more bytes than it has; every chunk it names is opened (and
    /// checked against its id): nothing panics, and no forged length is believed
    /// past the largest chunk (16 MiB).
    #[test]
    fn pack_indexes_mutated(
        bytes in mutated(vec![pack_bytes()]),
        fix in any::<bool>(),
        extra in prop_oneof![Just(0u64), 0u64..100_000, Just(u64::MAX / 2)],
    ) {
        let bytes = if fix { fix_pack_checksum(bytes) } else { bytes };
        let allowed = budget(bytes.len()) + MAX_CHUNK as usize;
        decode_within(&bytes, allowed, |b| read_pack(b, extra))?;
        let index = |b: &[u8]| postcard::from_bytes::<Vec<BlobEntry>>(b);
        check_decoder(&bytes, index, postcard::to_stdvec)?;
    }

    /// Blobs as a put carries them and a get answers them (postcard), opened: a
    /// blob that claims to unpack to more than the largest chunk is refused
    /// before anything is allocated for it.
    #[test]
    fn blobs_mutated(bytes in mutated(blobs().iter().map(|b| postcard::to_stdvec(b).unwrap()).collect())) {
        let allowed = budget(bytes.len()) + MAX_CHUNK as usize;
        decode_within(&bytes, allowed, |b| {
            postcard::from_bytes::<Blob>(b).map(|blob| blob.open().map(|raw| raw.len()))
        })?;
        let blob = |b: &[u8]| postcard::from_bytes::<Blob>(b);
        check_decoder(&bytes, blob, postcard::to_stdvec)?;
    }
}
