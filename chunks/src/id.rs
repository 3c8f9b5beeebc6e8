//! A chunk's name: the BLAKE3 hash of its bytes. Equal bytes, equal id, stored
//! once; and every read is checked against it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The BLAKE3 hash of a chunk's (uncompressed) bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id of `data`.
    pub fn of(data: &[u8]) -> ChunkId {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    /// Whether `data` is the chunk this id names.
    pub fn matches(&self, data: &[u8]) -> bool {
        ChunkId::of(data) == *self
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first 8 bytes say enough in a log line or an assertion.
        write!(f, "ChunkId({}…)", &self.to_hex()[..16])
    }
}

/// A chunk's bytes, known to hash to its id: only [`Checked::new`] makes one,
/// so whatever takes a `Checked` need not hash the bytes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    id: ChunkId,
    data: Vec<u8>,
}

impl Checked {
    /// `data` as chunk `id`, when it hashes to it.
    pub fn new(id: ChunkId, data: Vec<u8>) -> Option<Checked> {
        id.matches(&data).then_some(Checked { id, data })
    }

    pub fn id(&self) -> ChunkId {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }
}

/// Not 64 hex characters.
#[derive(Debug, thiserror::Error)]
#[error("a chunk id is 64 hex characters, not {0:?}")]
pub struct BadChunkId(String);

impl FromStr for ChunkId {
    type Err = BadChunkId;

    fn from_str(s: &str) -> Result<ChunkId, BadChunkId> {
        let bad = || BadChunkId(s.chars().take(80).collect());
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                .map_err(|_| bad())?;
        }
        Ok(ChunkId(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_bytes_and_round_trip_as_hex() {
        let a = ChunkId::of(b"hello");
        assert_eq!(a, ChunkId::of(b"hello"));
        assert_ne!(a, ChunkId::of(b"hello!"));
        assert!(a.matches(b"hello") && !a.matches(b"hellO"));
        let hex = a.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<ChunkId>().unwrap(), a);
        for bad in ["", "zz", &"g".repeat(64), &hex[..63]] {
            assert!(bad.parse::<ChunkId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_bytes_that_hash_to_the_id_are_checked() {
        let id = ChunkId::of(b"hello");
        assert_eq!(
            Checked::new(id, b"hello".to_vec()).unwrap().bytes(),
            b"hello"
        );
        assert!(Checked::new(id, b"hellO".to_vec()).is_none());
    }
}
