//! Deterministic randomness: a splitmix64 [`Rng`] seeded per id and
//! Zipf-distributed picks.

use super::super::mix;

/// A cumulative distribution for Zipf-like picks among `n` items.
#[derive(Debug, Clone)]
pub(super) struct Zipf {
    cdf: Vec<u64>,
}

impl Zipf {
    pub(super) fn new(n: usize, exponent: f64) -> Zipf {
        let weights: Vec<f64> = (0..n)
            .map(|i| 1.0 / ((i + 1) as f64).powf(exponent))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                sum += w;
                ((sum / total) * (1u64 << 63) as f64) as u64
            })
            .collect();
        Zipf { cdf }
    }

    pub(super) fn pick(&self, random: u64) -> usize {
        let u = random >> 1;
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// A small deterministic random sequence (splitmix64).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn of(seed: u64, id: u64) -> Rng {
        Rng(mix(seed) ^ id.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    pub(super) fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub(super) fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}
