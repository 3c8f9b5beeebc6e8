//! What the fuzz targets of every crate share: an allocator that measures what a
//! decode asks for, mutations of valid encodings, and the checks themselves.
//!
//! A fuzz target here is a proptest property, so it runs in the normal test suite
//! for a bounded number of cases (`PROPTEST_CASES` raises it for a longer hunt).
//! Every decoder that reads bytes another node, a disk or an object store could
//! have written is held to three rules:
//!
//! 1. arbitrary bytes, and valid encodings mutated (bits flipped, cut short,
//!    bytes inserted, a length prefix replaced by 2^60), never make it panic;
//! 2. it never asks for absurd memory: what it holds at its peak stays within
//!    [`budget`] of the input's length (a length prefix of 2^60 must not be
//!    believed);
//! 3. whatever it accepts encodes again to bytes that decode to the same value
//!    (valid values round-trip).
//!
//! The test binary installs [`Tracking`] as its global allocator
//! (`#[global_allocator] static ALLOC: bcm_fuzzing::Tracking = bcm_fuzzing::Tracking;`);
//! [`measure`] refuses to measure without it rather than measure nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The system allocator, counting what the current thread holds while
/// [`measure`] runs on it. It never refuses an allocation: one the system cannot
/// serve (2^60 bytes) aborts the test binary with Rust's own "memory allocation of
/// N bytes failed", a failure too; one it can serve (gigabytes) is caught by the
/// peak it leaves.
pub struct Tracking;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Bytes allocated minus bytes freed on this thread since `measure` began
    /// (negative when it frees what was allocated before).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Adds `delta` bytes to the current thread's count, when measuring. Never
/// panics: during a thread's teardown its locals may be gone, and then nothing
/// is counted.
fn count(delta: isize, size: usize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LIVE.try_with(|live| {
                let now = live.get() + delta;
                live.set(now);
                let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
            });
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every call is passed to `System` unchanged; the counting touches only
// const-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize, layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize, layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize), 0);
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize, new_size);
        System.realloc(ptr, layout, new_size)
    }
}

/// What a measured call held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The most it held at once (bytes allocated and not yet freed).
    pub peak: usize,
    /// Its largest single allocation.
    pub largest: usize,
}

/// Runs `f` on this thread and says the most memory it held at once.
///
/// # Panics
/// When the test binary has not installed [`Tracking`] as its allocator.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Held) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let probe = std::hint::black_box(Box::new(0u64));
    drop(probe);
    let value = f();
    ARMED.with(|a| a.set(false));
    let held = Held {
        peak: PEAK.with(Cell::get).max(0) as usize,
        largest: LARGEST.with(Cell::get),
    };
    assert!(
        held.largest >= 8,
        "nothing was counted: install bcm_fuzzing::Tracking as this test binary's #[global_allocator]"
    );
    (value, held)
}

/// The most a decode of `input_len` bytes may hold at once: 16 MiB, plus 64
/// bytes per input byte. A sequence's length prefix is believed only as far as
/// serde's cautious preallocation goes (1 MiB per sequence being read), and
/// everything else a value holds was paid for with input; a decoder that takes
/// a length of 2^60 at its word goes far past this, or aborts.
pub fn budget(input_len: usize) -> usize {
    16 * 1024 * 1024 + 64 * input_len
}

/// Decodes `bytes` with `decode`, measured: fails the case when it held more than
/// [`budget`] allows (a panic inside fails it too: proptest catches it and
/// shrinks the input). Gives back what it decoded, or `None` when it refused.
pub fn decode_within_budget<T, E>(
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<Option<T>, TestCaseError> {
    decode_within(bytes, budget(bytes.len()), decode)
}

/// [`decode_within_budget`] with a budget of its own: `allowed` bytes (for a
/// decoder entitled to more, such as a chunk that may unpack to 16 MiB).
pub fn decode_within<T, E>(
    bytes: &[u8],
    allowed: usize,
    decode: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<Option<T>, TestCaseError> {
    let (decoded, held) = measure(|| decode(bytes));
    if held.peak > allowed {
        return Err(TestCaseError::fail(format!(
            "decoding {} bytes held {} bytes at once (largest allocation {}), more than the {} allowed",
            bytes.len(),
            held.peak,
            held.largest,
            allowed
        )));
    }
    Ok(decoded.ok())
}

/// The three rules for one input: `decode` neither panics nor goes past the
/// budget, and what it accepts encodes again to bytes that decode to a value
/// that encodes to the same bytes (a byte-level round trip, so that types
/// without `PartialEq` are held to it too). `encode` failing on a value its
/// own decoder accepted is a failure as well.
pub fn check_decoder<T, E: std::fmt::Debug, F: std::fmt::Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Result<Vec<u8>, F>,
) -> Result<(), TestCaseError> {
    let Some(value) = decode_within_budget(bytes, &decode)? else {
        return Ok(());
    };
    round_trips(&value, decode, encode)
}

/// `value` encodes, decodes back, and encodes to the same bytes again.
pub fn round_trips<T, E: std::fmt::Debug, F: std::fmt::Debug>(
    value: &T,
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Result<Vec<u8>, F>,
) -> Result<(), TestCaseError> {
    let once = encode(value)
        .map_err(|e| TestCaseError::fail(format!("a value that decoded does not encode: {e:?}")))?;
    let back = decode(&once).map_err(|e| {
        TestCaseError::fail(format!("its own encoding does not decode again: {e:?}"))
    })?;
    let twice = encode(&back).map_err(|e| {
        TestCaseError::fail(format!("the value decoded again does not encode: {e:?}"))
    })?;
    prop_assert_eq!(
        once,
        twice,
        "encode(decode(encode(v))) differs from encode(v)"
    );
    Ok(())
}

/// Lengths no decoder may take at their word: 2^60, the largest u64, the
/// largest u32, 2^31 and 2^40.
pub const HUGE: [u64; 5] = [1 << 60, u64::MAX, u32::MAX as u64, 1 << 31, 1 << 40];

/// `n` as postcard writes a length or an integer: LEB128, 7 bits a byte.
pub fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return out;
        }
        out.push(low | 0x80);
    }
}

/// A place in bytes of any length: a fraction of it, in 64-bit fixed point.
#[derive(Debug, Clone, Copy)]
pub struct Pos(pub u64);

impl Pos {
    /// The place in `len` items (`len` > 0): below `len`.
    pub fn index(self, len: usize) -> usize {
        ((len as u128 * self.0 as u128) >> 64) as usize
    }
}

fn pos() -> impl Strategy<Value = Pos> {
    any::<u64>().prop_map(Pos)
}

/// One change to a valid encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip one bit.
    Flip(Pos, u8),
    /// Set one byte.
    Set(Pos, u8),
    /// Cut the bytes short.
    Truncate(Pos),
    /// Insert arbitrary bytes.
    Insert(Pos, Vec<u8>),
    /// Remove up to this many bytes.
    Remove(Pos, u8),
    /// Put one of [`HUGE`] as a varint in place of the varint starting there
    /// (where postcard keeps its lengths and integers).
    HugeVarint(Pos, Pos),
    /// Overwrite 4 or 8 bytes with one of [`HUGE`], little-endian (where the
    /// fixed-width headers of packs, manifests and log segments keep theirs).
    HugeFixed(Pos, Pos, bool),
    /// Repeat a stretch of the bytes in place.
    Repeat(Pos, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (pos(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        2 => (pos(), any::<u8>()).prop_map(|(at, b)| Mutation::Set(at, b)),
        1 => pos().prop_map(Mutation::Truncate),
        1 => (pos(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        1 => (pos(), 1u8..16).prop_map(|(at, n)| Mutation::Remove(at, n)),
        3 => (pos(), pos()).prop_map(|(at, which)| Mutation::HugeVarint(at, which)),
        2 => (pos(), pos(), any::<bool>())
            .prop_map(|(at, which, wide)| Mutation::HugeFixed(at, which, wide)),
        1 => (pos(), 1u8..32).prop_map(|(at, n)| Mutation::Repeat(at, n)),
    ]
}

impl Mutation {
    /// Applies the change (a change that does not fit leaves the bytes as they are).
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        if len == 0 {
            if let Mutation::Insert(_, b) = self {
                bytes.extend_from_slice(b);
            }
            return;
        }
        match self {
            Mutation::Flip(at, bit) => bytes[at.index(len)] ^= 1 << bit,
            Mutation::Set(at, b) => bytes[at.index(len)] = *b,
            Mutation::Truncate(at) => bytes.truncate(at.index(len)),
            Mutation::Insert(at, b) => {
                let at = at.index(len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(at, n) => {
                let at = at.index(len);
                let end = (at + *n as usize).min(len);
                bytes.drain(at..end);
            }
            Mutation::HugeVarint(at, which) => {
                let at = at.index(len);
                // The varint there: its continuation bytes, then the last one.
                let mut end = at;
                while end < len && bytes[end] & 0x80 != 0 {
                    end += 1;
                }
                let end = (end + 1).min(len);
                bytes.splice(at..end, varint(HUGE[which.index(HUGE.len())]));
            }
            Mutation::HugeFixed(at, which, wide) => {
                let n = HUGE[which.index(HUGE.len())];
                let le = n.to_le_bytes();
                let width = if *wide { 8 } else { 4 };
                let at = at.index(len);
                let end = (at + width).min(len);
                bytes[at..end].copy_from_slice(&le[..end - at]);
            }
            Mutation::Repeat(at, n) => {
                let at = at.index(len);
                let end = (at + *n as usize).min(len);
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
}

/// One of `seeds` (valid encodings) with one to four [`Mutation`]s applied.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(
        !seeds.is_empty(),
        "mutations need a valid encoding to start from"
    );
    (
        proptest::sample::select(seeds),
        proptest::collection::vec(mutation(), 1..5),
    )
        .prop_map(|(mut bytes, changes)| {
            for m in &changes {
                m.apply(&mut bytes);
            }
            bytes
        })
}

/// The encoding of a value nested `depth` levels deep in itself: `once` encodes
/// one level around `leaf` and ends with `leaf`'s encoding (a batch of one
/// batch), so its part before `leaf` is one level more. A decoder that
/// recurses without a bound overflows its stack on this.
pub fn nested(leaf: &[u8], once: &[u8], depth: usize) -> Vec<u8> {
    let level = once
        .strip_suffix(leaf)
        .expect("the encoding of one level ends with the leaf's");
    let mut out = level.repeat(depth);
    out.extend_from_slice(leaf);
    out
}

/// Arbitrary bytes, up to `max` of them.
pub fn garbage(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// The number of cases a target runs in the normal suite: `cases`, or
/// `PROPTEST_CASES` when set (for a longer hunt).
pub fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // A failure is kept as a regression test by hand, in the target's file,
        // not in a file proptest writes beside it.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: Tracking = Tracking;

    #[test]
    fn varints_are_postcards() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(127), [127]);
        assert_eq!(varint(128), [0x80, 1]);
        assert_eq!(varint(u64::MAX).len(), 10);
    }

    #[test]
    fn measure_sees_what_is_held_and_not_what_was_freed() {
        let ((), held) = measure(|| {
            let a = vec![0u8; 1 << 20];
            drop(std::hint::black_box(a));
            let b = std::hint::black_box(vec![0u8; 1 << 10]);
            drop(b);
        });
        assert!(
            held.peak >= 1 << 20 && held.peak < (1 << 20) + 4096,
            "{held:?}"
        );
        assert_eq!(held.largest, 1 << 20);
    }

    #[test]
    fn a_decoder_that_believes_a_length_is_caught() {
        let believer = |b: &[u8]| -> Result<Vec<u8>, ()> {
            let n = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
            let mut v = Vec::with_capacity(n);
            v.extend_from_slice(&b[4..]);
            Ok(v)
        };
        let mut bytes = 1u32.to_le_bytes().to_vec();
        bytes.push(7);
        assert!(decode_within_budget(&bytes, believer).unwrap().is_some());
        let bytes = (1u32 << 30).to_le_bytes();
        assert!(decode_within_budget(&bytes, believer).is_err());
    }

    #[test]
    fn a_huge_varint_replaces_the_varint_where_it_lands() {
        let mut bytes = vec![1, 0x81, 0x01, 2];
        Mutation::HugeVarint(Pos(u64::MAX / 3), Pos(0)).apply(&mut bytes);
        assert_eq!(bytes, [&[1][..], &varint(1 << 60), &[2]].concat());
    }
}
