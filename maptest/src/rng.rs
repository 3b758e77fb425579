//! The seeded random numbers of the stress test and the fuzzer: replayable from one seed.
//!
//! The generator is SplitMix64 (from `rand_xoshiro`): the seed is its whole state, so a run's
//! seed, printed at its start, replays it exactly (`mapstress fuzz --seed S`). On it, a few
//! draws the tests need (a number below `n`, in a range, a chance, a weighted choice), each by
//! one multiplication (Lemire's method without the rejection step: the bias, below 2^-40 for
//! the small ranges used here, does not matter to a test). These draws and the generator are
//! the same as before the crate was used, so seeds printed by earlier runs still replay.
//!
//! ```
//! use maptest::rng::Rng;
//!
//! let mut a = Rng::new(42);
//! let mut b = Rng::new(42);
//! assert_eq!(a.below(1000), b.below(1000));
//! assert!((10..=20).contains(&a.range(10, 20)));
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

/// A seeded generator.
#[derive(Clone)]
pub struct Rng(SplitMix64);

impl Rng {
    /// The generator whose whole state is `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::seed_from_u64(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `0..n` (`n > 0`), as an index.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// A number in `lo..=hi` (`lo <= hi`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        match (hi - lo).checked_add(1) {
            Some(n) => lo + self.below(n),
            None => self.next_u64(),
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `items`, each as likely.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// An index into `weights`, chosen with probability proportional to its weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }
}

/// A seed derived from `seed` and two numbers (a process, a thread, a step).
pub fn derive_seed(seed: u64, a: u64, b: u64) -> u64 {
    let mut r = Rng::new(seed ^ a.wrapping_mul(0xd6e8_feb8_6659_fd93) ^ b.rotate_left(29));
    r.next_u64();
    r.next_u64()
}

/// A seed from the clock and the process id, for runs without `--seed`.
pub fn seed_from_time() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    derive_seed(now.as_nanos() as u64, u64::from(std::process::id()), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SplitMix64 sequence the hand-written generator of earlier versions produced: seeds
    /// printed by their runs replay the same operations.
    #[test]
    fn same_sequence_as_before() {
        let mut state = 7u64;
        let mut old = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(r.next_u64(), old());
        }
        assert_eq!(derive_seed(1, 2, 3), derive_seed(1, 2, 3));
        assert_ne!(derive_seed(1, 2, 3), derive_seed(1, 3, 2));
    }

    #[test]
    fn weighted_never_picks_zero_weight() {
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            assert_ne!(r.weighted(&[3, 0, 5]), 1);
        }
    }
}
