//! Helpers for the unit tests: deterministic data and the finite-difference gradient check.

/// FNV-1a over bytes: a dependency-free fingerprint for golden-bits tests.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The bits of many f32 slices, fingerprinted.
pub fn fingerprint<'a>(slices: impl IntoIterator<Item = &'a [f32]>) -> u64 {
    let mut bytes = Vec::new();
    for s in slices {
        for v in s {
            bytes.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    fnv1a(&bytes)
}

/// `n` values uniform in [−scale, scale) from SplitMix64 bits (exact multiples of scale·2⁻²³).
pub fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let u = crate::rng::mix(state) >> 40;
            (u as f32 / (1u32 << 23) as f32 - 1.0) * scale
        })
        .collect()
}

/// Σ wᵢ·yᵢ in f64: a scalar objective whose gradient with respect to y is w.
pub fn dot(w: &[f32], y: &[f32]) -> f64 {
    assert_eq!(w.len(), y.len());
    w.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Central differences of `f` at `x` against `analytic`, element by element, with one
/// Richardson step ((4·D(h) − D(2h)) / 3, error O(h⁴)) so that h can be large enough to keep the
/// f32 rounding noise of `f` small. Fails unless `max|fd − analytic| / max|analytic| ≤ tol` and
/// the gradient is not identically zero (so the check cannot pass vacuously). Returns the
/// measured ratio.
pub fn check_grad(
    name: &str,
    x: &[f32],
    analytic: &[f32],
    h: f32,
    tol: f64,
    mut f: impl FnMut(&[f32]) -> f64,
) -> f64 {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient shape");
    let mut probe = x.to_vec();
    // The central difference with step `step`, using the steps actually taken after rounding.
    let mut central = |probe: &mut Vec<f32>, i: usize, step: f32| {
        probe[i] = x[i] + step;
        let (up, hp) = (f(probe), (probe[i] - x[i]) as f64);
        probe[i] = x[i] - step;
        let (down, hm) = (f(probe), (x[i] - probe[i]) as f64);
        probe[i] = x[i];
        (up - down) / (hp + hm)
    };
    let mut worst = 0.0f64;
    let mut scale = 0.0f64;
    for (i, &a) in analytic.iter().enumerate() {
        let fd = (4.0 * central(&mut probe, i, h) - central(&mut probe, i, 2.0 * h)) / 3.0;
        worst = worst.max((fd - a as f64).abs());
        scale = scale.max((a as f64).abs()).max(fd.abs());
    }
    assert!(scale > 0.0, "{name}: the gradient is identically zero");
    let rel = worst / scale;
    println!("{name}: finite differences within {rel:.2e} of max |gradient| {scale:.3e}");
    assert!(rel <= tol, "{name}: relative error {rel:.3e} > {tol:e}");
    rel
}
