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

    /// A [`Cutter`] with these sizes.
    pub fn cutter(&self) -> Cutter {
        let (mask_s, mask_l) =
            fastcdc::v2020::select_masks(self.avg as usize, fastcdc::v2020::Normalization::Level1);
        Cutter {
            sizes: *self,
            masks: (mask_s, mask_l),
            buf: vec![0; self.max as usize + READ],
        }
    }
}

/// Bytes read at a time at most, beyond the largest chunk the buffer must hold.
const READ: usize = 2 << 20;

/// Cuts streams into chunks through one buffer, reused stream after stream.
///
/// The cut points are FastCDC 2020's (normalisation level 1) as its own
/// `StreamCDC` finds them, but without its copies: `StreamCDC` moves the rest of
/// its buffer (up to the largest chunk, 8 MiB) to the front after every chunk,
/// and a backup spent a fifth of its CPU in that `memmove`. Here a chunk is cut
/// from whatever the buffer holds once that decides it (a cut found before the
/// end of the bytes at hand is the one a longer window would find: the scan is
/// the same up to it), and the buffer moves its few undecided bytes to the
/// front only when it is full.
pub struct Cutter {
    sizes: Chunker,
    masks: (u64, u64),
    buf: Vec<u8>,
}

impl Cutter {
    /// Cuts what `source` yields into chunks, in order, each handed to `each`.
    pub fn cut<R: Read>(
        &mut self,
        mut source: R,
        mut each: impl FnMut(Chunk) -> io::Result<()>,
    ) -> io::Result<()> {
        let Chunker { min, avg, max } = self.sizes;
        let (min, avg, max) = (min as usize, avg as usize, max as usize);
        let (mask_s, mask_l) = self.masks;
        let (mut start, mut end, mut eof) = (0, 0, false);
        loop {
            let window = &self.buf[start..end];
            if window.is_empty() && eof {
                return Ok(());
            }
            if !window.is_empty() {
                let (_, n) = fastcdc::v2020::cut(
                    window,
                    min,
                    avg,
                    max,
                    mask_s,
                    mask_l,
                    mask_s << 1,
                    mask_l << 1,
                );
                // Ending at the window's end decides nothing while more may come.
                if n < window.len() || window.len() >= max || eof {
                    let data = window[..n].to_vec();
                    start += n;
                    each(Chunk {
                        id: ChunkId::of(&data),
                        data,
                    })?;
                    continue;
                }
            }
            if end == self.buf.len() {
                self.buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            match source.read(&mut self.buf[end..]) {
                Ok(0) => eof = true,
                Ok(k) => end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
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
        let mut out = Vec::new();
        c.cutter()
            .cut(data, |chunk| {
                out.push(chunk);
                Ok(())
            })
            .unwrap();
        out
    }

    /// A reader that hands out at most `step` bytes a call (a pipe, a slow disk).
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(out.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn cuts_are_those_of_fastcdc_s_own_stream_whatever_the_reads() {
        let sizes = [
            small(),
            Chunker {
                min: 2048,
                avg: 8192,
                max: 16384,
            },
        ];
        for (seed, len) in [(3, 0), (4, 100), (5, 5000), (6, 70_000), (7, 3_000_000)] {
            let mut data = noise(len, seed);
            // A long run of zeros: cut at the largest size, not by content.
            if len > 1_000_000 {
                data[1_000_000..1_300_000].fill(0);
            }
            for c in &sizes {
                let theirs: Vec<usize> = fastcdc::v2020::StreamCDC::new(
                    &data[..],
                    c.min as usize,
                    c.avg as usize,
                    c.max as usize,
                )
                .map(|chunk| chunk.unwrap().length)
                .collect();
                let mut cutter = c.cutter();
                for step in [1 << 30, 100_000, 4093, 7] {
                    let mut ours = Vec::new();
                    let source = Trickle { data: &data, step };
                    cutter
                        .cut(source, |chunk| {
                            assert!(chunk.id.matches(&chunk.data));
                            ours.push(chunk.data.len());
                            Ok(())
                        })
                        .unwrap();
                    assert_eq!(ours, theirs, "{len} bytes, {c:?}, reads of {step}");
                }
            }
        }
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
