//! SplitMix64 as a sequential generator: the trainer's shuffling and teacher-forcing draws,
//! which the worker's libtorch trainer takes from `magpipe_stages::split::SplitMix64`. This is
//! the same algorithm, copied so the engine needs no other magpipe crate; worker tests hold the
//! two to the same sequence. Its state is one `u64`, serialised as a number, so a checkpoint
//! carries it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        crate::rng::mix(self.0)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift, as the worker's).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in [0, 1) from the top 53 bits (the trainer's teacher-forcing draw).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_sequence() {
        // SplitMix64 seeded with 0: the reference implementation's first outputs.
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
        let mut r = SplitMix64(7);
        let u: Vec<f64> = (0..1000).map(|_| r.uniform()).collect();
        assert!(u.iter().all(|v| (0.0..1.0).contains(v)));
        assert!((0..1000).map(|_| r.below(10)).all(|i| i < 10));
    }
}
