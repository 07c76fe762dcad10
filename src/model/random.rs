//! A small, fast, seedable pseudo-random stream (SplitMix64).
//!
//! Good enough for fault injection and retry jitter, and lock-free, so the
//! test server's threads can share one stream. Not for anything secret.
//!
//! Written here rather than taken from `rand`: twenty lines give the one
//! thing needed (a seedable, shareable stream of uniform numbers, the same
//! for a seed on every platform and version), where `rand` would bring its
//! own version churn of seeded outputs and a dozen crates.

use std::sync::atomic::{AtomicU64, Ordering};

/// A shared stream of uniform numbers in `[0, 1)`.
#[derive(Debug)]
pub struct Dice(AtomicU64);

impl Dice {
    /// A stream starting from `seed`: the same seed gives the same numbers.
    pub fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    /// A stream seeded from the clock and the process id.
    pub fn from_entropy() -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The next number in `[0, 1)`.
    pub fn roll(&self) -> f64 {
        (mix(self.0.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a well-spread 64-bit hash of `z`.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_are_uniform_enough_and_seeded() {
        let dice = Dice::new(7);
        let rolls: Vec<f64> = (0..10_000).map(|_| dice.roll()).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let below = rolls.iter().filter(|r| **r < 0.25).count();
        assert!((2_200..2_800).contains(&below), "{below}");
        assert_eq!(Dice::new(7).roll(), rolls[0]);
    }
}
