//! Content-defined chunking (FastCDC 2020): cut points depend on the bytes, not on
//! their offsets, so an insertion early in a file changes the chunks around it
//! and leaves the rest alike, and deduplication finds them again.

use std::io::{self, Read};

use crate::id::ChunkId;

/// No chunk is larger than this (FastCDC's own largest maximum, 16 MiB).
pub const MAX_CHUNK: u32 = fastcdc::v2020::MAXIMUM_MAX as u32;

/// One chunk of a file: its bytes and their id.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub id: ChunkId,
    pub data: Vec<u8>,
}

/// Chunk sizes: between `min` and `max` bytes, `avg` on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunker {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for Chunker {
    /// 512 KiB to 8 MiB, 1 MiB on average (as restic cuts): few enough chunks that
    /// the index of a terabyte fits in memory, small enough to deduplicate well.
    fn default() -> Chunker {
        Chunker {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        }
    }
}

impl Chunker {
    /// Whether the sizes are ones FastCDC can cut to (it only checks them in
    /// debug builds): `min <= avg <= max`, each within the algorithm's bounds.
    pub fn check(&self) -> Result<(), String> {
        use fastcdc::v2020 as cdc;
        let within = |name: &str, v: u32, lo: usize, hi: usize| {
            if (lo..=hi).contains(&(v as usize)) {
                Ok(())
            } else {
                Err(format!("chunk size {name} = {v} is outside {lo}..={hi}"))
            }
        };
        within("min", self.min, cdc::MINIMUM_MIN, cdc::MINIMUM_MAX)?;
        within("avg", self.avg, cdc::AVERAGE_MIN, cdc::AVERAGE_MAX)?;
        within("max", self.max, cdc::MAXIMUM_MIN, cdc::MAXIMUM_MAX)?;
        if self.min <= self.avg && self.avg <= self.max {
            Ok(())
        } else {
            Err(format!(
                "chunk sizes must grow: min {} <= avg {} <= max {}",
                self.min, self.avg, self.max
            ))
        }
    }

    /// Cuts what `source` yields into chunks, in order, each read once.
    pub fn chunks<R: Read>(&self, source: R) -> impl Iterator<Item = io::Result<Chunk>> {
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        fastcdc::v2020::StreamCDC::new(source, min, avg, max).map(|c| {
            let c = c.map_err(io::Error::from)?;
            Ok(Chunk {
                id: ChunkId::of(&c.data),
                data: c.data,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::noise;

    /// Cut by fastcdc 5.0.0 (v2020) from `noise(300_000, 7)`, sizes 4/16/64 KiB.
    const EXPECTED_CUTS: &[usize] = &[
        6433, 18568, 17156, 31989, 18536, 17940, 21340, 19565, 24478, 13596, 14393, 22344, 11574,
        20910, 8641, 20566, 11971,
    ];

    fn small() -> Chunker {
        Chunker {
            min: 4 * 1024,
            avg: 16 * 1024,
            max: 64 * 1024,
        }
    }

    fn cut(c: &Chunker, data: &[u8]) -> Vec<Chunk> {
        c.chunks(data).collect::<io::Result<Vec<_>>>().unwrap()
    }

    #[test]
    fn chunks_put_back_together_are_the_input_and_respect_the_sizes() {
        let data = noise(1_000_000, 1);
        let chunks = cut(&small(), &data);
        assert!(chunks.len() > 20, "{} chunks", chunks.len());
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(joined, data);
        for c in &chunks[..chunks.len() - 1] {
            assert!((4 * 1024..=64 * 1024).contains(&c.data.len()));
            assert!(c.id.matches(&c.data));
        }
        assert!(cut(&small(), &[]).is_empty());
    }

    #[test]
    fn cut_points_are_those_of_fastcdc_2020_as_pinned() {
        // If this fails, the chunker changed: every chunk of every older backup
        // would be stored again. Change it only on purpose, with a note.
        let data = noise(300_000, 7);
        let lens: Vec<usize> = cut(&small(), &data).iter().map(|c| c.data.len()).collect();
        assert_eq!(lens, EXPECTED_CUTS);
    }

    #[test]
    fn sizes_fastcdc_cannot_cut_to_are_refused() {
        assert!(Chunker::default().check().is_ok());
        assert!(small().check().is_ok());
        let bad = [(16, 1024, 4096), (4096, 2048, 8192), (4096, 8192, 32 << 20)];
        for (min, avg, max) in bad {
            assert!(
                Chunker { min, avg, max }.check().is_err(),
                "{min} {avg} {max}"
            );
        }
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let data = noise(1_000_000, 2);
        let mut edited = data[..500_000].to_vec();
        edited.extend_from_slice(b"a few new bytes in the middle");
        edited.extend_from_slice(&data[500_000..]);
        let before: std::collections::HashSet<ChunkId> =
            cut(&small(), &data).iter().map(|c| c.id).collect();
        let after = cut(&small(), &edited);
        let kept = after.iter().filter(|c| before.contains(&c.id)).count();
        assert!(
            kept + 3 >= after.len(),
            "{kept} of {} chunks found again",
            after.len()
        );
    }
}
