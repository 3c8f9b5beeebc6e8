//! The pack file: many chunks, each compressed (zstd) unless that would not make
//! it smaller, then an index of them (the trailer) and a fixed tail:
//!
//! ```text
//! blob 0 | blob 1 | ... | trailer (postcard: [BlobEntry]) | trailer length (u32 LE)
//!   | CRC-32 of the trailer (u32 LE) | magic "bcmpack1"
//! ```
//!
//! A pack is named by the BLAKE3 hash of its whole content ([`PackId`]), so a copy
//! on another node, or in an object store, is the same pack by name. Each blob is
//! checked against its chunk id when it is read.

use std::borrow::Cow;
use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

use crate::id::{Checked, ChunkId};

const MAGIC: &[u8; 8] = b"bcmpack1";
/// Trailer length, trailer CRC, magic.
const TAIL: usize = 4 + 4 + 8;
/// zstd's level for chunks: its default, fast and about as good as it gets for
/// data that is not already compressed.
const LEVEL: i32 = 3;

/// Where a chunk lies in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    pub id: ChunkId,
    pub offset: u64,
    /// Bytes in the pack.
    pub stored_len: u32,
    /// Bytes of the chunk.
    pub raw_len: u32,
    pub compressed: bool,
}

/// A pack's name: the BLAKE3 hash of its content.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PackId(pub [u8; 32]);

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({})", &self.to_string()[..16])
    }
}

/// What is wrong with a pack file or a blob in it.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    #[error("it is not a pack (no pack tail)")]
    NotAPack,
    #[error("its index is damaged ({0})")]
    BadTrailer(String),
    #[error("chunk {0} does not check out (its bytes do not hash to its id)")]
    BadChunk(ChunkId),
}

impl PackError {
    /// A failure to read (the disk, the link to an object store), rather than
    /// bytes that were read and found wrong: a pack is not judged damaged by it.
    pub fn is_io(&self) -> bool {
        match self {
            PackError::Io(e) => !matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ),
            _ => false,
        }
    }
}

/// A chunk as it is sent and stored: compressed (zstd) unless that would not make
/// it smaller, with what it takes to check it against its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub id: ChunkId,
    pub raw_len: u32,
    pub compressed: bool,
    #[serde(with = "serde_bytes")]
    pub stored: Vec<u8>,
}

impl Blob {
    /// `raw` (the chunk `id` names), compressed when that makes it smaller.
    pub fn new(id: ChunkId, raw: &[u8]) -> io::Result<Blob> {
        let packed = zstd::bulk::compress(raw, LEVEL)?;
        let compressed = packed.len() < raw.len();
        Ok(Blob {
            id,
            raw_len: raw.len() as u32,
            compressed,
            stored: if compressed { packed } else { raw.to_vec() },
        })
    }

    /// The chunk's bytes, checked against its id.
    pub fn open(&self) -> Result<Vec<u8>, PackError> {
        self.check().map(Checked::into_bytes)
    }

    /// [`Blob::open`], saying so in its type.
    pub fn check(&self) -> Result<Checked, PackError> {
        unpack(&self.entry(0), Cow::Borrowed(&self.stored))
    }

    /// [`Blob::check`] taking the blob: an uncompressed chunk's bytes are
    /// checked where they lie and become the [`Checked`] without a copy.
    pub fn into_checked(self) -> Result<Checked, PackError> {
        let entry = self.entry(0);
        unpack(&entry, Cow::Owned(self.stored))
    }

    /// Whether the blob holds the chunk its id names (an uncompressed one is
    /// hashed where it lies, not copied first).
    pub fn verify(&self) -> bool {
        holds(self.id, self.raw_len, self.compressed, &self.stored)
    }

    fn entry(&self, offset: u64) -> BlobEntry {
        BlobEntry {
            id: self.id,
            offset,
            stored_len: self.stored.len() as u32,
            raw_len: self.raw_len,
            compressed: self.compressed,
        }
    }
}

/// Whether `stored` (compressed or not, as a blob keeps it) is the chunk `id`
/// of `raw_len` bytes; an uncompressed one is hashed where it lies.
pub fn holds(id: ChunkId, raw_len: u32, compressed: bool, stored: &[u8]) -> bool {
    if compressed {
        let entry = BlobEntry {
            id,
            offset: 0,
            stored_len: stored.len() as u32,
            raw_len,
            compressed,
        };
        unpack(&entry, Cow::Borrowed(stored)).is_ok()
    } else {
        stored.len() == raw_len as usize && id.matches(stored)
    }
}

/// A pack being filled, in memory.
#[derive(Default)]
pub struct PackBuilder {
    bytes: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl PackBuilder {
    /// Adds a chunk (compressed when that makes it smaller).
    pub fn add(&mut self, id: ChunkId, raw: &[u8]) -> io::Result<()> {
        self.push(&Blob::new(id, raw)?);
        Ok(())
    }

    /// Adds a blob as it is (the caller has checked it).
    pub fn push(&mut self, blob: &Blob) {
        self.entries.push(blob.entry(self.bytes.len() as u64));
        self.bytes.extend_from_slice(&blob.stored);
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[BlobEntry] {
        &self.entries
    }

    /// A chunk added to this pack, as stored.
    pub fn blob(&self, entry: &BlobEntry) -> Blob {
        let at = entry.offset as usize;
        Blob {
            id: entry.id,
            raw_len: entry.raw_len,
            compressed: entry.compressed,
            stored: self.bytes[at..at + entry.stored_len as usize].to_vec(),
        }
    }

    /// The pack file's name and what follows its blobs (trailer and tail), so
    /// that the file is written as [`PackBuilder::blob_bytes`] then this,
    /// without copying the blobs into one buffer first.
    pub fn end(&self) -> (PackId, Vec<u8>) {
        let trailer = postcard::to_stdvec(&self.entries).expect("an index encodes");
        let mut end = Vec::with_capacity(trailer.len() + TAIL);
        end.extend_from_slice(&trailer);
        end.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        end.extend_from_slice(&crc32fast::hash(&trailer).to_le_bytes());
        end.extend_from_slice(MAGIC);
        let mut hash = blake3::Hasher::new();
        hash.update(&self.bytes);
        hash.update(&end);
        (PackId(*hash.finalize().as_bytes()), end)
    }

    /// The blobs' bytes, as they start the pack file.
    pub fn blob_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Bytes at the end of a pack that hold its whole trailer in all but very full
/// packs: a pack's index is found with one read of this many.
pub const TAIL_READ: usize = 64 * 1024;

/// The index of a pack of `len` bytes from its last bytes (`suffix`): the
/// entries, or (inside `Ok`) `Err(n)` when the trailer starts before them and
/// the last `n` bytes are needed.
pub fn index_from_suffix(
    len: u64,
    suffix: &[u8],
) -> Result<Result<Vec<BlobEntry>, usize>, PackError> {
    if len < TAIL as u64 || suffix.len() < TAIL || suffix.len() as u64 > len {
        return Err(PackError::NotAPack);
    }
    let tail = &suffix[suffix.len() - TAIL..];
    if &tail[8..] != MAGIC {
        return Err(PackError::NotAPack);
    }
    let trailer_len = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
    let crc = u32::from_le_bytes(tail[4..8].try_into().expect("4 bytes"));
    if trailer_len + TAIL as u64 > len {
        return Err(PackError::BadTrailer("longer than the file".into()));
    }
    let wanted = (trailer_len as usize) + TAIL;
    if wanted > suffix.len() {
        return Ok(Err(wanted));
    }
    let start = len - wanted as u64;
    let trailer = &suffix[suffix.len() - wanted..suffix.len() - TAIL];
    if crc32fast::hash(trailer) != crc {
        return Err(PackError::BadTrailer("its checksum does not match".into()));
    }
    let entries: Vec<BlobEntry> =
        postcard::from_bytes(trailer).map_err(|e| PackError::BadTrailer(e.to_string()))?;
    // Added with a check: a forged offset near 2^64 must not wrap around.
    if let Some(e) = entries.iter().find(|e| {
        e.offset
            .checked_add(e.stored_len as u64)
            .is_none_or(|end| end > start)
    }) {
        return Err(PackError::BadTrailer(format!(
            "chunk {} lies past the blobs",
            e.id
        )));
    }
    Ok(Ok(entries))
}

/// One chunk as stored, from its entry and the bytes read for it (not checked:
/// [`Blob::open`] does).
pub fn stored_blob(entry: &BlobEntry, stored: Vec<u8>) -> Blob {
    Blob {
        id: entry.id,
        raw_len: entry.raw_len,
        compressed: entry.compressed,
        stored,
    }
}

fn unpack(entry: &BlobEntry, stored: Cow<'_, [u8]>) -> Result<Checked, PackError> {
    // No chunk is larger: a forged length must not make us allocate gigabytes.
    if entry.raw_len > crate::chunker::MAX_CHUNK {
        return Err(PackError::BadChunk(entry.id));
    }
    let raw = if entry.compressed {
        zstd::bulk::decompress(&stored, entry.raw_len as usize)
            .map_err(|_| PackError::BadChunk(entry.id))?
    } else {
        stored.into_owned()
    };
    if raw.len() != entry.raw_len as usize {
        return Err(PackError::BadChunk(entry.id));
    }
    Checked::new(entry.id, raw).ok_or(PackError::BadChunk(entry.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack_of(chunks: &[&[u8]]) -> (PackId, Vec<u8>, Vec<BlobEntry>) {
        let mut b = PackBuilder::default();
        for c in chunks {
            b.add(ChunkId::of(c), c).unwrap();
        }
        let (id, end) = b.end();
        (id, [b.blob_bytes(), &end].concat(), b.entries().to_vec())
    }

    /// A pack's index read from all of its bytes.
    fn read_index(pack: &[u8]) -> Result<Vec<BlobEntry>, PackError> {
        index_from_suffix(pack.len() as u64, pack).map(|found| found.expect("all bytes given"))
    }

    /// Chunk `entry` of a pack, checked.
    fn read_blob(pack: &[u8], entry: &BlobEntry) -> Result<Vec<u8>, PackError> {
        let at = entry.offset as usize;
        let end = (at + entry.stored_len as usize).min(pack.len());
        stored_blob(entry, pack[at..end].to_vec()).open()
    }

    #[test]
    fn a_pack_reads_back_its_chunks_compressed_or_not() {
        let text = b"compressible ".repeat(1000);
        let random: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let (id, bytes, entries) = pack_of(&[&text, &random, b""]);
        assert!(entries[0].compressed && entries[0].stored_len < 1000);
        assert_eq!(read_index(&bytes).unwrap(), entries);
        assert_eq!(read_blob(&bytes, &entries[0]).unwrap(), text);
        assert_eq!(read_blob(&bytes, &entries[1]).unwrap(), random);
        assert_eq!(read_blob(&bytes, &entries[2]).unwrap(), b"");
        assert_eq!(id, PackId(*blake3::hash(&bytes).as_bytes()));
    }

    #[test]
    fn a_blob_opens_only_to_its_own_bytes() {
        let data = b"twice twice twice twice twice".to_vec();
        let blob = Blob::new(ChunkId::of(&data), &data).unwrap();
        assert_eq!(blob.open().unwrap(), data);
        assert!(blob.verify());
        let mut forged = blob.clone();
        forged.id = ChunkId::of(b"something else");
        assert!(matches!(forged.open(), Err(PackError::BadChunk(_))));
        assert!(!forged.verify());
        let mut bent = blob.clone();
        bent.raw_len += 1;
        assert!(bent.open().is_err() && !bent.verify());
        let plain = Blob {
            id: ChunkId::of(b"as it is"),
            raw_len: 8,
            compressed: false,
            stored: b"as it is".to_vec(),
        };
        assert!(plain.verify());
        let flipped = Blob {
            stored: b"as it iz".to_vec(),
            ..plain.clone()
        };
        assert!(!flipped.verify() && flipped.open().is_err());
    }

    #[test]
    fn damage_is_found_in_the_index_and_in_a_blob() {
        let (_, bytes, entries) = pack_of(&[b"one chunk", b"another chunk"]);
        let mut flipped = bytes.clone();
        flipped[3] ^= 0xff; // inside the first blob
        assert!(matches!(
            read_blob(&flipped, &entries[0]),
            Err(PackError::BadChunk(_))
        ));
        assert_eq!(read_blob(&flipped, &entries[1]).unwrap(), b"another chunk");
        let mut trailer_hit = bytes.clone();
        let at = trailer_hit.len() - TAIL - 2;
        trailer_hit[at] ^= 0xff;
        assert!(matches!(
            read_index(&trailer_hit),
            Err(PackError::BadTrailer(_))
        ));
        assert!(matches!(
            read_index(&bytes[..bytes.len() - 1]),
            Err(PackError::NotAPack)
        ));
    }

    #[test]
    fn an_index_longer_than_the_bytes_read_asks_for_as_many_as_it_needs() {
        let chunks: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_le_bytes().repeat(3)).collect();
        let refs: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
        let (_, bytes, entries) = pack_of(&refs);
        let len = bytes.len() as u64;
        let need = match index_from_suffix(len, &bytes[bytes.len() - 100..]).unwrap() {
            Err(need) => need,
            Ok(_) => panic!("100 bytes cannot hold 2000 entries"),
        };
        assert!(need > 100);
        let found = index_from_suffix(len, &bytes[bytes.len() - need..]).unwrap();
        assert_eq!(found.unwrap(), entries);
    }
}
