//! Counter-based randomness: every random number is a hash of what it is for (seed, step, mask,
//! element), never the state of a generator, so it depends on nothing but the seed and the
//! shapes — not on threads, CPU or library — and a resumed run draws what an uninterrupted one
//! would.
//!
//! Dropout masks are bit for bit those of `magpipe_worker::model::DropoutMasks` (the worker's
//! portable path): the same hash, keys, threshold and scale. Initial weights use the same hash
//! keyed by (seed, parameter index, element index); see [`init_uniform`].

use std::cell::Cell;

/// SplitMix64's finaliser: a bijective 64-bit mix that turns counters into independent-looking
/// uniform bits (the worker's `mix`).
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stride between the counters of consecutive elements (2⁶⁴/φ, SplitMix64's increment).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The top 24 bits of element `i`'s hash under `key`: a uniform integer in 0..2²⁴.
fn bits24(key: u64, i: u64) -> u64 {
    mix(key.wrapping_add(i.wrapping_mul(GOLDEN_GAMMA))) >> 40
}

/// Dropout masks of one optimisation step, as the worker draws them: the step's key comes from
/// (seed, epoch, batch), each mask's from the step's key and its number within the step (1, 2, …
/// in the order forward asks), each element's draw from the mask's key and the element's index.
#[derive(Debug, Clone, Default)]
pub struct DropoutMasks {
    step_key: Cell<u64>,
    drawn: Cell<u64>,
}

impl DropoutMasks {
    /// Keys the masks of one optimisation step (the worker's `begin_step`).
    pub fn begin_step(&self, seed: u64, epoch: u64, batch: u64) {
        self.step_key.set(mix(
            mix(seed ^ 0x4452_4f50_4f55_5400) ^ mix((epoch << 32) | batch)
        ));
        self.drawn.set(0);
    }

    /// The next mask of this step, `n` values in the row-major order of the tensor it multiplies:
    /// each element is kept with probability 1 − p and scaled by 1/(1 − p), else 0.
    pub fn next(&self, n: usize, p: f64) -> Vec<f32> {
        let key = mix(self.step_key.get() ^ mix(self.drawn.get().wrapping_add(1)));
        self.drawn.set(self.drawn.get() + 1);
        // Keep when the 24 bits, read as a fraction, are at least p: a float uniform draw
        // compared with p, without float rounding in the comparison.
        let threshold = (p * f64::from(1u32 << 24)).ceil() as u64;
        let scale = (1.0 / (1.0 - p)) as f32;
        (0..n as u64)
            .map(|i| {
                if bits24(key, i) >= threshold {
                    scale
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// `n` initial values for parameter number `param` (its index in the model's parameter order):
/// element i is `(u·2⁻²³ − 1) · bound` rounded to f32, with `u = bits24(key, i)` and
/// `key = mix(mix(seed ^ "INIT") ^ mix(param + 1))`, so uniform on [−bound, bound) in steps of
/// bound·2⁻²³, like PyTorch's `uniform_(−bound, bound)` (which draws 24 bits too). The product is
/// one f64 multiplication, exact but for the final rounding, so the values are the same
/// everywhere.
pub fn init_uniform(seed: u64, param: u64, n: usize, bound: f64) -> Vec<f32> {
    let key = mix(mix(seed ^ 0x494e_4954_0000_0000) ^ mix(param.wrapping_add(1)));
    (0..n as u64)
        .map(|i| ((bits24(key, i) as f64 * f64::powi(2.0, -23) - 1.0) * bound) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_matches_splitmix64() {
        // SplitMix64 seeded with 0 outputs mix(γ) first: 0xe220a8397b1dcdaf (the reference
        // implementation's first value).
        assert_eq!(mix(GOLDEN_GAMMA), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn masks_keep_the_right_share_scale_and_repeat_per_step() {
        let m = DropoutMasks::default();
        m.begin_step(7, 3, 11);
        let a = m.next(100_000, 0.3);
        let b = m.next(100_000, 0.3);
        assert_ne!(a, b, "the second mask of a step is another draw");
        let kept = a.iter().filter(|&&v| v != 0.0).count() as f64 / 1e5;
        assert!((kept - 0.7).abs() < 0.01, "kept {kept}");
        let scale = (1.0f64 / 0.7) as f32;
        assert!(a.iter().all(|&v| v == 0.0 || v == scale));
        // Re-keying the same step gives the same masks; another batch gives others.
        m.begin_step(7, 3, 11);
        assert_eq!(m.next(100_000, 0.3), a);
        m.begin_step(7, 3, 12);
        assert_ne!(m.next(100_000, 0.3), a);
        // p = 0 keeps everything at scale 1.
        assert!(m.next(1000, 0.0).iter().all(|&v| v == 1.0));
    }

    /// Pins the keying (seed, epoch, batch, mask number, element index): a value computed from
    /// the worker's definition by hand for the first draws.
    #[test]
    fn mask_keying_by_hand() {
        let m = DropoutMasks::default();
        m.begin_step(1, 2, 3);
        let step = mix(mix(1 ^ 0x4452_4f50_4f55_5400) ^ mix((2 << 32) | 3));
        let key = mix(step ^ mix(1));
        let mask = m.next(64, 0.5);
        for (i, &v) in mask.iter().enumerate() {
            let u = mix(key.wrapping_add((i as u64).wrapping_mul(GOLDEN_GAMMA))) >> 40;
            assert_eq!(v, if u >= 1 << 23 { 2.0 } else { 0.0 }, "element {i}");
        }
    }

    #[test]
    fn init_is_uniform_in_bounds_and_keyed_by_parameter() {
        let a = init_uniform(0, 0, 50_000, 0.25);
        assert!(a.iter().all(|&v| (-0.25..0.25).contains(&v)));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / 5e4;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 5e4;
        assert!(mean.abs() < 0.003, "mean {mean}");
        // U(±k) has variance k²/3.
        assert!((var - 0.0625 / 3.0).abs() < 0.001, "variance {var}");
        assert_ne!(init_uniform(0, 1, 10, 0.25), a[..10]);
        assert_ne!(init_uniform(1, 0, 10, 0.25), a[..10]);
        assert_eq!(init_uniform(0, 0, 10, 0.25), a[..10]);
    }
}
