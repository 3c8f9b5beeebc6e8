//! What storage nodes and the nodes that talk to them (sources, restore targets,
//! the backup manager) send each other on the cluster-internal listener: POST
//! bodies in postcard, like the Raft routes, behind the same cluster secret.

use axum::body::Bytes;
use bcm_chunks::store::{StoreStats, Stored};
use bcm_chunks::{Blob, ChunkId};
use bcm_raft_store::codec::{self, CodecError};
use serde::{Deserialize, Serialize};

pub const PATH_MISSING: &str = "/internal/storage/missing";
pub const PATH_PUT: &str = "/internal/storage/put";
pub const PATH_GET: &str = "/internal/storage/get";
pub const PATH_MANIFEST_PUT: &str = "/internal/storage/manifest/put";
pub const PATH_MANIFEST_GET: &str = "/internal/storage/manifest/get";
pub const PATH_MANIFEST_DELETE: &str = "/internal/storage/manifest/delete";
pub const PATH_MANIFEST_LIST: &str = "/internal/storage/manifest/list";
pub const PATH_GC: &str = "/internal/storage/gc";
pub const PATH_CHECK: &str = "/internal/storage/check";
pub const PATH_STATS: &str = "/internal/storage/stats";

/// A batch of chunks to put: at most this many bytes of blobs (well under the
/// internal listener's body limit).
pub const PUT_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// A `get` answers with at most this many bytes of blobs (and at least one blob);
/// the caller asks again for the rest.
pub const GET_REPLY_BYTES: usize = 24 * 1024 * 1024;
/// The backup-manager epoch a write is made under: a storage node refuses one
/// older than the epoch it knows (the role has moved since).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub epoch: u64,
}

/// Which of `ids` the store lacks, for backup `backup` (the others are then kept
/// for it until its manifest is put, whatever a GC finds meanwhile).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Missing {
    pub fence: Fence,
    pub backup: u64,
    pub ids: Vec<ChunkId>,
}

/// Chunks for backup `backup`, answered once they are durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Put {
    pub fence: Fence,
    pub backup: u64,
    pub blobs: Vec<Blob>,
}

/// [`Put`] as a sender writes it, without copying the blobs (the same encoding).
#[derive(Debug, Serialize)]
pub struct PutRef<'a> {
    pub fence: Fence,
    pub backup: u64,
    pub blobs: &'a [&'a Blob],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutReply {
    /// Chunks the store did not have.
    pub new_chunks: u64,
    /// Their bytes as stored (compressed).
    pub new_bytes: u64,
}

/// Chunks to read, answered as stored (the reader checks each against its id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Get {
    pub ids: Vec<ChunkId>,
}

/// The encoding of `blobs` (a [`Get`]'s answer, read as a `Vec<Blob>`) in
/// pieces: each blob's stored bytes are a piece of their own, not copied.
pub fn encode_blobs(blobs: Vec<Stored>) -> Result<Vec<Bytes>, CodecError> {
    let mut pieces = Vec::with_capacity(2 * blobs.len() + 1);
    pieces.push(Bytes::from(codec::encode(&blobs.len())?));
    for b in blobs {
        // A blob's fields in order; its bytes as serde_bytes puts them: a
        // length, then the bytes.
        let head = (b.id, b.raw_len, b.compressed, b.bytes.len());
        pieces.push(Bytes::from(codec::encode(&head)?));
        pieces.push(b.bytes);
    }
    Ok(pieces)
}

/// A backup's manifest (encoded), kept only once every chunk it names is held.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestPut {
    pub fence: Fence,
    pub backup: u64,
    #[serde(with = "serde_bytes")]
    pub manifest: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ManifestGet {
    pub backup: u64,
}

/// Read back every chunk of backup `backup` (see `PackStore::check_backup`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Check {
    pub backup: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ManifestDelete {
    pub fence: Fence,
    pub backup: u64,
}

/// A storage node's numbers: its store's, and its file system's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub store: StoreStats,
    /// The file system holding the store: its size and what is free on it
    /// (None in an object store, which does not say).
    pub capacity_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// `local` or `s3`.
    pub backend: String,
    /// Where the store is ("pack files in ...", "bucket ... at ...").
    pub place: String,
    /// The same for storage nodes whose stores share one place (a bucket).
    pub place_key: String,
    /// Whether other storage nodes may write to its place (an object store):
    /// its GC must wait while any backup writes there.
    pub shared: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_in_pieces_are_the_encoding_of_the_blobs() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for raws in [
            vec![],
            vec![&b""[..]],
            vec![&b"x"[..], &big[..], &b"hello"[..]],
        ] {
            let blobs: Vec<Blob> = raws
                .iter()
                .map(|r| Blob::new(ChunkId::of(r), r).unwrap())
                .collect();
            let pieces = encode_blobs(blobs.iter().cloned().map(Stored::from).collect()).unwrap();
            assert_eq!(pieces.concat(), codec::encode(&blobs).unwrap());
            let back: Vec<Blob> = codec::decode(&pieces.concat()).unwrap();
            assert_eq!(back, blobs);
        }
    }
}
