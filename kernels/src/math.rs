//! exp, expm1, tanh and sigmoid in f32 from IEEE basic operations and FMA only, so they give the
//! same bits on every CPU (the platform's `expf`/`tanhf` do not: glibc, musl, Apple's libm and
//! SLEEF's per-ISA kernels all round differently).
//!
//! exp and expm1 reduce `x = n·ln2 + r` with n = round(x / ln 2) and |r| ≲ ln2/2 (Cody–Waite:
//! ln 2 = `LN2_HI` + `LN2_LO`, with a 9-bit head so `n·LN2_HI` and `x − n·LN2_HI` are exact),
//! approximate `e^r = 1 + r + r²·P(r)` with Cephes' degree-5 minimax P (relative error of the
//! whole below 4.2e-9 on |r| ≤ ln2/2), evaluated by Horner with `mul_add`, and scale by 2ⁿ
//! through the exponent bits. Measured errors against f64 are in the tests.

pub(crate) const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 = LN2_HI + LN2_LO; LN2_HI = 355/512 has 9 significant bits.
pub(crate) const LN2_HI: f32 = 355.0 / 512.0;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes `expf`: (e^r − 1 − r) / r² ≈ P(r), highest degree first (its decimal coefficients
/// rounded to f32; the last, 5.0000001201e-1, is 0.5 in f32).
pub(crate) const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// 2ⁿ for n in −126..=127, from the exponent bits.
fn pow2(n: i32) -> f32 {
    debug_assert!((-126..=127).contains(&n));
    f32::from_bits(((n + 127) as u32) << 23)
}

/// p·2ⁿ with a single rounding for any n the callers produce (−152..=129): outside the normal
/// exponents the scale goes in two steps, the first of which is exact.
fn scale(p: f32, n: i32) -> f32 {
    if n > 127 {
        p * pow2(n - 127) * pow2(127)
    } else if n < -126 {
        p * pow2(n + 64) * pow2(-64)
    } else {
        p * pow2(n)
    }
}

/// n = round(x·log₂e) and r = x − n·ln 2 (two FMAs; the first is exact).
fn reduce(x: f32) -> (i32, f32) {
    let n = (x * LOG2_E).round();
    let r = (-n).mul_add(LN2_HI, x);
    let r = (-n).mul_add(LN2_LO, r);
    (n as i32, r)
}

/// e^r − 1 = r + r²·P(r) for the reduced argument.
fn expm1_reduced(r: f32) -> f32 {
    let mut p = P[0];
    for &c in &P[1..] {
        p = p.mul_add(r, c);
    }
    p.mul_add(r * r, r)
}

/// eˣ. NaN stays NaN; overflow gives +∞, underflow 0 (through subnormals).
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    // Beyond these e^x is ∞ or rounds to 0 (e^−104 is below half the smallest subnormal).
    if x > 89.0 {
        return f32::INFINITY;
    }
    if x < -104.0 {
        return 0.0;
    }
    let (n, r) = reduce(x);
    scale(1.0 + expm1_reduced(r), n)
}

/// eˣ − 1, accurate near 0 (where `exp(x) − 1` would cancel). expm1(±0) = ±0.
pub fn expm1(x: f32) -> f32 {
    if x.is_nan() || x == 0.0 {
        return x;
    }
    if x > 89.0 {
        return f32::INFINITY;
    }
    // e^x < 2⁻²⁵ (half an ulp of 1) from here on, so the result rounds to −1.
    if x < -17.5 {
        return -1.0;
    }
    let (n, r) = reduce(x);
    let q = expm1_reduced(r);
    if n == 0 {
        return q;
    }
    if n > 24 {
        // The −1 is below an ulp of e^x.
        return exp(x);
    }
    // 2ⁿ(1 + q) − 1 = 2ⁿ·q + (2ⁿ − 1): 2ⁿ − 1 is exact for |n| ≤ 24, so one rounding in the FMA.
    let t = pow2(n);
    t.mul_add(q, t - 1.0)
}

/// tanh(x) = sign(x) · em / (em + 2), em = expm1(2|x|); ±1 beyond |x| > 9.1, where
/// 1 − tanh|x| < 2⁻²⁵. tanh(±0) = ±0.
pub fn tanh(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a > 9.1 {
        return 1.0f32.copysign(x);
    }
    let em = expm1(2.0 * a);
    (em / (em + 2.0)).copysign(x)
}

/// The logistic function 1 / (1 + e⁻ˣ), 1 for large x. Below x = −80 it is eˣ itself (1 + eˣ
/// rounds to 1 there), which keeps its relative accuracy where e⁻ˣ would overflow.
pub fn sigmoid(x: f32) -> f32 {
    if x < -80.0 {
        return exp(x);
    }
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fnv1a;

    /// |a − reference| in units of the f32 ulp at the reference value (2⁻¹⁴⁹ in the subnormals).
    fn ulps(a: f32, reference: f64) -> f64 {
        if a as f64 == reference || (a.is_infinite() && reference as f32 == a) {
            return 0.0;
        }
        let e = if reference == 0.0 {
            -126
        } else {
            (((reference.abs().to_bits() >> 52) & 0x7ff) as i64 - 1023).max(-126)
        };
        (a as f64 - reference).abs() / 2f64.powi(e as i32 - 23)
    }

    /// Every f32 in [lo, hi] whose bits are a multiple of `stride` apart, both signs, plus the
    /// ends.
    fn grid(hi: f32, stride: u32) -> Vec<f32> {
        let mut out = vec![hi, -hi];
        let mut bits = 0u32;
        while bits <= hi.to_bits() {
            let v = f32::from_bits(bits);
            out.push(v);
            out.push(-v);
            bits += stride;
        }
        out
    }

    /// The worst error over `xs` and where it is.
    fn worst(xs: &[f32], f: fn(f32) -> f32, reference: fn(f64) -> f64) -> (f64, f32) {
        let mut w = (0.0, 0.0);
        for &x in xs {
            let e = ulps(f(x), reference(x as f64));
            if e > w.0 {
                w = (e, x);
            }
        }
        w
    }

    /// (name, the grid's largest |x|, the function, its f64 reference, the bound in ulp).
    type Case = (&'static str, f32, fn(f32) -> f32, fn(f64) -> f64, f64);

    #[test]
    fn accuracy_against_f64() {
        // About 2.2 million points per function over the whole interesting range.
        let cases: [Case; 4] = [
            ("exp", 104.0, exp, f64::exp, 1.5),
            ("expm1", 104.0, expm1, f64::exp_m1, 1.5),
            ("tanh", 12.0, tanh, f64::tanh, 2.5),
            ("sigmoid", 120.0, sigmoid, |x| 1.0 / (1.0 + (-x).exp()), 2.5),
        ];
        for (name, hi, f, reference, bound) in cases {
            let (e, at) = worst(&grid(hi, 977), f, reference);
            println!("{name}: max error {e:.3} ulp (at x = {at:e})");
            assert!(e <= bound, "{name}: {e} ulp at {at}");
        }
    }

    #[test]
    fn dense_around_the_switches() {
        // Every third f32 in narrow windows around the switches n = 0 ↔ ±1 ↔ ±2 of the reduction
        // (x ≈ ±ln2/2, ±3·ln2/2) and those of tanh's argument 2x. The grids of the other tests
        // cover small |x| in every binade.
        let windows = [
            (0.33f32, 0.36f32),
            (-0.36, -0.33),
            (1.02, 1.06),
            (-1.06, -1.02),
            (0.16, 0.18),
            (0.5, 0.53),
        ];
        for &(lo, hi) in &windows {
            let mut xs = Vec::new();
            let mut x = lo;
            while x <= hi {
                xs.push(x);
                x = x.next_up();
            }
            let xs: Vec<f32> = xs.into_iter().step_by(3).collect();
            for (name, f, r, bound) in [
                (
                    "exp",
                    exp as fn(f32) -> f32,
                    f64::exp as fn(f64) -> f64,
                    1.5,
                ),
                ("expm1", expm1, f64::exp_m1, 1.5),
                ("tanh", tanh, f64::tanh, 2.5),
            ] {
                let (e, at) = worst(&xs, f, r);
                assert!(e <= bound, "{name} in [{lo}, {hi}]: {e} ulp at {at}");
            }
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert!(ulps(exp(88.72), f64::from(88.72f32).exp()) <= 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert!(
            exp(-103.0) > 0.0 && exp(-103.0) < f32::MIN_POSITIVE,
            "subnormal"
        );
        assert!(exp(f32::NAN).is_nan());

        assert_eq!(expm1(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(expm1(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(expm1(1e-30), 1e-30);
        assert_eq!(expm1(-50.0), -1.0);
        assert_eq!(expm1(f32::NEG_INFINITY), -1.0);
        assert_eq!(expm1(f32::INFINITY), f32::INFINITY);
        assert!(expm1(f32::NAN).is_nan());

        assert_eq!(tanh(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh(1e-30), 1e-30);
        assert_eq!(tanh(f32::from_bits(1)), f32::from_bits(1), "subnormal");
        assert_eq!(tanh(20.0), 1.0);
        assert_eq!(tanh(-20.0), -1.0);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert!(tanh(f32::NAN).is_nan());
        // Odd, exactly.
        for x in [0.1f32, 0.7, 1.3, 4.0, 9.0] {
            assert_eq!(tanh(-x), -tanh(x));
        }

        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(-0.0), 0.5);
        assert_eq!(sigmoid(200.0), 1.0);
        assert_eq!(sigmoid(-200.0), 0.0);
        assert!(ulps(sigmoid(-85.0), (-85f64).exp()) <= 1.0);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    /// The bits of all four functions over a fixed grid. A port (SIMD, another CPU) must
    /// reproduce them exactly, so a change here means the functions changed, not that a
    /// tolerance needs widening. Measured the same on x86-64 (AMD EPYC; debug, release and
    /// `-C target-cpu=native`) and on aarch64 under qemu-aarch64.
    #[test]
    fn golden_bits() {
        let xs = grid(104.0, 4099);
        let mut bits = Vec::with_capacity(xs.len() * 16);
        for &x in &xs {
            for v in [exp(x), expm1(x), tanh(x), sigmoid(x)] {
                bits.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
        assert_eq!(fnv1a(&bits), GOLDEN_MATH, "{:#018x}", fnv1a(&bits));
    }

    const GOLDEN_MATH: u64 = 0x009a_35d9_73eb_3eed;
}
