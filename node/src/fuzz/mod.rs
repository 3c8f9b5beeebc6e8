//! Fuzz targets for every body a node decodes from another (Raft RPCs, control messages, jobs, storage), as proptest properties (bcm-fuzzing).
//!
//! The cluster-internal listener takes these bodies from whoever holds the
//! cluster secret, and a node takes the answers from whatever answers at a
//! peer's address: neither may panic it, make it allocate what a length prefix
//! claims, or decode to something that does not encode back the same.

mod cluster;
mod data;

use bcm_raft_store::codec::{self, CodecError};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[global_allocator]
static ALLOC: bcm_fuzzing::Tracking = bcm_fuzzing::Tracking;

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, CodecError> {
    codec::encode(v)
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    codec::decode(b)
}

/// The encodings of `values`: the seeds of a target.
fn encoded<T: Serialize>(values: &[T]) -> Vec<Vec<u8>> {
    values.iter().map(|v| encode(v).unwrap()).collect()
}
