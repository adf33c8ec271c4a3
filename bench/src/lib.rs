//! Host benchmark programs of reqmod, run by `cargo xtask bench` (see
//! `BENCH.md` at the repository root for what each one measures and the
//! latest figures).
//!
//! - `icount`: a loop of uncontended first requests on the virtual-time
//!   platform, for `valgrind --tool=callgrind` (instructions per request).
//! - `core_overhead`: nanoseconds per request on the virtual-time platform and
//!   on real threads with the Linux port's clock and locks, next to the cost of
//!   one helper spawn (`/bin/true`) with the Linux port's spawn code.
//!
//! Each prints `key value` lines on standard output for `xtask` to read.

/// `count` distinct module names, `bench-000000`, `bench-000001`, … (12 bytes,
/// about as long as `fs-ext4` or `nls-cp437`).
pub fn names(count: usize) -> Vec<String> {
    names_with_prefix("bench", count)
}

/// `count` distinct names `<prefix>-000000`, `<prefix>-000001`, …
pub fn names_with_prefix(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:06}")).collect()
}

/// The median of `values` (the mean of the two middle ones for an even
/// count); `0.0` for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A small deterministic generator (xorshift64*), so shuffles repeat exactly
/// from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is mapped to a fixed non-zero one).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
