//! Deterministic data for tests and benchmarks: seeded bytes that neither repeat
//! nor compress, the same on every machine and in every run.

/// `len` bytes from `seed` (xorshift64; not for anything secret).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
