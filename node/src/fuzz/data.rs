//! The data plane's bodies: a backup manager's jobs (`jobs/wire.rs`) and the
//! storage routes' requests and answers (`storage/wire.rs`); the manifests and
//! blobs inside them are bcm-chunks' own targets.

use bcm_chunks::pack::PackId;
use bcm_chunks::store::{BackupCheck, GcReport, StoreStats};
use bcm_chunks::{Blob, ChunkId};
use bcm_fuzzing::{check_decoder, garbage, mutated};
use proptest::prelude::*;
use serde_bytes::ByteBuf;

use super::{decode, encode, encoded};
use crate::jobs::wire::{CheckPaths, Parent, RunBackup, RunRestore};
use crate::storage::client::StorageNode;
use crate::storage::wire::{
    Check, Fence, Get, ManifestDelete, ManifestGet, ManifestPut, Missing, Put, PutReply, Stats,
};

fn holders() -> Vec<StorageNode> {
    (2..=3)
        .map(|id| StorageNode {
            id,
            rpc: format!("http://127.0.0.1:{}", 9080 + id),
        })
        .collect()
}

fn jobs() -> Vec<Vec<u8>> {
    let mut out = encoded(&[
        RunBackup {
            backup: 7,
            attempt: 2,
            epoch: 3,
            paths: vec!["/srv/data".into(), "/etc".into()],
            replicas: holders(),
            parent: Some(Parent {
                backup: 6,
                holders: holders(),
            }),
        },
        RunBackup {
            backup: 1,
            attempt: 1,
            epoch: 1,
            paths: vec![],
            replicas: vec![],
            parent: None,
        },
    ]);
    out.extend(encoded(&[RunRestore {
        restore: 2,
        attempt: 1,
        epoch: 3,
        backup: 7,
        holders: holders(),
        target_path: "/restore/here".into(),
        overwrite: true,
        include: Some("srv/data/a".into()),
    }]));
    out.extend(encoded(&[CheckPaths {
        paths: vec!["/srv".into(), "/nope".into()],
    }]));
    out.extend(encoded(&[vec![
        "/nope: no such file or directory".to_string()
    ]]));
    out
}

fn ids() -> Vec<ChunkId> {
    [&b"one"[..], b"two", b"three"]
        .iter()
        .map(|c| ChunkId::of(c))
        .collect()
}

fn blobs() -> Vec<Blob> {
    let text = b"compress me compress me compress me".to_vec();
    vec![
        Blob::new(ChunkId::of(&text), &text).unwrap(),
        Blob::new(ChunkId::of(b"x"), b"x").unwrap(),
    ]
}

/// The storage routes' requests, and their answers.
fn storage_bodies() -> Vec<Vec<u8>> {
    let fence = Fence { epoch: 3 };
    let mut out = encoded(&[Missing {
        fence,
        backup: 7,
        ids: ids(),
    }]);
    out.extend(encoded(&[ids()]));
    out.extend(encoded(&[Put {
        fence,
        backup: 7,
        blobs: blobs(),
    }]));
    out.extend(encoded(&[PutReply {
        new_chunks: 2,
        new_bytes: 100,
    }]));
    out.extend(encoded(&[Get { ids: ids() }]));
    out.extend(encoded(&[blobs()]));
    let manifest = bcm_chunks::Manifest::default().encode();
    out.extend(encoded(&[ManifestPut {
        fence,
        backup: 7,
        manifest: manifest.clone(),
    }]));
    out.extend(encoded(&[ManifestGet { backup: 7 }]));
    out.extend(encoded(&[Some(ByteBuf::from(manifest)), None]));
    out.extend(encoded(&[ManifestDelete { fence, backup: 7 }]));
    out.extend(encoded(&[vec![1u64, 7, 1 << 40]]));
    out.extend(encoded(&[Check { backup: 7 }]));
    out.extend(encoded(&[BackupCheck {
        held: true,
        manifest_error: None,
        chunks: 3,
        missing: ids()[..1].to_vec(),
        damaged: vec![(PackId([9; 32]), "its index is damaged".into())],
    }]));
    out.extend(encoded(&[fence]));
    out.extend(encoded(&[GcReport {
        packs_deleted: 1,
        packs_rewritten: 2,
        chunks_deleted: 3,
        bytes_freed: 4,
        stopped: Some("a backup writes".into()),
    }]));
    out.extend(encoded(&[Stats {
        store: StoreStats {
            packs: 1,
            chunks: 2,
            stored_bytes: 3,
            raw_bytes: 4,
            manifests: 5,
        },
        capacity_bytes: Some(1 << 40),
        free_bytes: None,
        backend: "s3".into(),
        place: "bucket \"bcm\" at http://127.0.0.1:3900".into(),
        place_key: "s3:bcm".into(),
        shared: true,
    }]));
    out
}

fn decode_jobs(bytes: &[u8]) -> Result<(), TestCaseError> {
    check_decoder(bytes, decode::<RunBackup>, encode)?;
    check_decoder(bytes, decode::<RunRestore>, encode)?;
    check_decoder(bytes, decode::<CheckPaths>, encode)?;
    check_decoder(bytes, decode::<Vec<String>>, encode)?;
    Ok(())
}

fn decode_storage(bytes: &[u8]) -> Result<(), TestCaseError> {
    check_decoder(bytes, decode::<Missing>, encode)?;
    check_decoder(bytes, decode::<Vec<ChunkId>>, encode)?;
    check_decoder(bytes, decode::<Put>, encode)?;
    check_decoder(bytes, decode::<PutReply>, encode)?;
    check_decoder(bytes, decode::<Get>, encode)?;
    check_decoder(bytes, decode::<Vec<Blob>>, encode)?;
    check_decoder(bytes, decode::<ManifestPut>, encode)?;
    check_decoder(bytes, decode::<ManifestGet>, encode)?;
    check_decoder(bytes, decode::<Option<ByteBuf>>, encode)?;
    check_decoder(bytes, decode::<ManifestDelete>, encode)?;
    check_decoder(bytes, decode::<Vec<u64>>, encode)?;
    check_decoder(bytes, decode::<Check>, encode)?;
    check_decoder(bytes, decode::<BackupCheck>, encode)?;
    check_decoder(bytes, decode::<Fence>, encode)?;
    check_decoder(bytes, decode::<GcReport>, encode)?;
    check_decoder(bytes, decode::<Stats>, encode)?;
    Ok(())
}

proptest! {
    #![proptest_config(bcm_fuzzing::cases(256))]

    #[test]
    fn data_bodies_from_garbage(bytes in garbage(512)) {
        decode_jobs(&bytes)?;
        decode_storage(&bytes)?;
    }

    #[test]
    fn jobs_mutated(bytes in mutated(jobs())) {
        decode_jobs(&bytes)?;
    }

    #[test]
    fn storage_bodies_mutated(bytes in mutated(storage_bodies())) {
        decode_storage(&bytes)?;
    }
}
