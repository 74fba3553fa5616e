//! AVX2 + FMA twins (8 lanes of f32). Every function here has `#[target_feature(enable =
//! "avx2,fma")]` and is reached only through a `Fast` token made after
//! `is_x86_feature_detected!("avx2")` and `("fma")` said yes.
//!
//! `_mm256_fmadd_ps(a, b, c)` is a·b + c with one rounding, as `a.mul_add(b, c)`; add, sub, mul,
//! div are IEEE's; the MXCSR is Rust's default (round to nearest even, no FTZ/DAZ), the same
//! state the scalar code runs in. Branches of the scalar functions become lane-wise selects: every
//! branch is computed in every lane and the lane keeps the one its scalar twin would take, so
//! no lane ever sees another operation than its scalar twin does.

use std::arch::x86_64::*;

use super::{CellGrad, HB, MR, MathFn, NR, RB, StepIo};
use crate::math::{LN2_HI, LN2_LO, LOG2_E, P};

const W: usize = 8;

#[inline]
#[target_feature(enable = "avx2,fma")]
fn splat(v: f32) -> __m256 {
    _mm256_set1_ps(v)
}

/// The first `n` ≤ 8 values of `s` in lanes 0..n, zeros above.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn load(s: &[f32], n: usize) -> __m256 {
    if n == W {
        let s = &s[..W];
        // SAFETY: `s` has exactly 8 readable values (the slice above is bounds-checked).
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    } else {
        let mut t = [0.0f32; W];
        t[..n].copy_from_slice(&s[..n]);
        // SAFETY: `t` has 8 values.
        unsafe { _mm256_loadu_ps(t.as_ptr()) }
    }
}

/// Lanes 0..n of `v` into the first `n` ≤ 8 values of `s`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn store(s: &mut [f32], n: usize, v: __m256) {
    if n == W {
        let s = &mut s[..W];
        // SAFETY: `s` has exactly 8 writable values (the slice above is bounds-checked).
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    } else {
        let mut t = [0.0f32; W];
        // SAFETY: `t` has 8 values.
        unsafe { _mm256_storeu_ps(t.as_mut_ptr(), v) };
        s[..n].copy_from_slice(&t[..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// Elementary functions: crate::math lane by lane.

const SIGN: f32 = -0.0;

#[inline]
#[target_feature(enable = "avx2,fma")]
fn abs(x: __m256) -> __m256 {
    _mm256_andnot_ps(splat(SIGN), x)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn neg(x: __m256) -> __m256 {
    _mm256_xor_ps(x, splat(SIGN))
}

/// `x.round()`: to the nearest integer, halves away from zero (not the even rounding of
/// `_mm256_round_ps`). x − trunc(x) is exact, and so is trunc(x) ± 1 wherever |x − trunc(x)|
/// can reach ½ (|x| < 2²³); ±0, integers, ±∞ and NaN come out as `round` gives them.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn round_half_away(x: __m256) -> __m256 {
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
    let frac = _mm256_sub_ps(x, t);
    let step = _mm256_or_ps(splat(1.0), _mm256_and_ps(x, splat(SIGN)));
    let away = _mm256_cmp_ps::<_CMP_GE_OQ>(abs(frac), splat(0.5));
    _mm256_blendv_ps(t, _mm256_add_ps(t, step), away)
}

/// math::reduce: n = round(x·log₂e), r = x − n·ln2 in two FMAs.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn reduce(x: __m256) -> (__m256i, __m256) {
    let n = round_half_away(_mm256_mul_ps(x, splat(LOG2_E)));
    let minus_n = neg(n);
    let r = _mm256_fmadd_ps(minus_n, splat(LN2_HI), x);
    let r = _mm256_fmadd_ps(minus_n, splat(LN2_LO), r);
    (_mm256_cvttps_epi32(n), r)
}

/// math::expm1_reduced: r + r²·P(r), Horner with FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn expm1_reduced(r: __m256) -> __m256 {
    let mut p = splat(P[0]);
    for &c in &P[1..] {
        p = _mm256_fmadd_ps(p, r, splat(c));
    }
    _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r)
}

/// math::pow2: 2ⁿ from the exponent bits.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn pow2(n: __m256i) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        n,
        _mm256_set1_epi32(127),
    )))
}

/// math::scale: p·2ⁿ, in two steps outside the normal exponents. Lanes in range multiply by
/// 2ⁿ, then by 1, which is exact.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn scale(p: __m256, n: __m256i) -> __m256 {
    let hi = _mm256_cmpgt_epi32(n, _mm256_set1_epi32(127));
    let lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(-126), n);
    let e = _mm256_blendv_epi8(n, _mm256_add_epi32(n, _mm256_set1_epi32(64)), lo);
    let e = _mm256_blendv_epi8(e, _mm256_sub_epi32(n, _mm256_set1_epi32(127)), hi);
    let second = _mm256_blendv_ps(
        splat(1.0),
        splat(f32::powi(2.0, -64)),
        _mm256_castsi256_ps(lo),
    );
    let second = _mm256_blendv_ps(second, splat(f32::powi(2.0, 127)), _mm256_castsi256_ps(hi));
    _mm256_mul_ps(_mm256_mul_ps(p, pow2(e)), second)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn is_nan(x: __m256) -> __m256 {
    _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x)
}

/// Whether every lane of `mask` is set.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn all(mask: __m256) -> bool {
    _mm256_movemask_ps(mask) == 0xff
}

/// Whether every lane of `x` is in [lo, hi] (NaN is not).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn all_within(x: __m256, lo: f32, hi: f32) -> bool {
    all(_mm256_and_ps(
        _mm256_cmp_ps::<_CMP_GE_OQ>(x, splat(lo)),
        _mm256_cmp_ps::<_CMP_LE_OQ>(x, splat(hi)),
    ))
}

// The common cases. Each function below first checks whether every lane lies where only the
// scalar function's main branch can apply; then the other branches' values, which the selects
// would all discard, are not computed. Same bits either way (the math property test covers
// vectors of both kinds).

/// math::exp.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn exp(x: __m256) -> __m256 {
    let (n, r) = reduce(x);
    let p = _mm256_add_ps(splat(1.0), expm1_reduced(r));
    // On [−87, 88], n = round(x·log₂e) is in −126..=127: one scale, no clamp, no NaN.
    if all_within(x, -87.0, 88.0) {
        return _mm256_mul_ps(p, pow2(n));
    }
    let v = scale(p, n);
    let v = _mm256_blendv_ps(v, splat(0.0), _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(-104.0)));
    let v = _mm256_blendv_ps(
        v,
        splat(f32::INFINITY),
        _mm256_cmp_ps::<_CMP_GT_OQ>(x, splat(89.0)),
    );
    _mm256_blendv_ps(v, x, is_nan(x))
}

/// math::expm1.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn expm1(x: __m256) -> __m256 {
    let (n, r) = reduce(x);
    let q = expm1_reduced(r);
    // 2ⁿ·q + (2ⁿ − 1) for most n; exp(x) = scale(1 + q, n) beyond n = 24; q itself at n = 0.
    let t = pow2(n);
    let v = _mm256_fmadd_ps(t, q, _mm256_sub_ps(t, splat(1.0)));
    let zero_n = _mm256_cmpeq_epi32(n, _mm256_setzero_si256());
    // On [−17.5, 16.9], n ≤ 24 and no clamp applies; only ±0 (kept as given) remains.
    if all_within(x, -17.5, 16.9) {
        let v = _mm256_blendv_ps(v, q, _mm256_castsi256_ps(zero_n));
        return _mm256_blendv_ps(v, x, _mm256_cmp_ps::<_CMP_EQ_OQ>(x, _mm256_setzero_ps()));
    }
    let big = _mm256_cmpgt_epi32(n, _mm256_set1_epi32(24));
    let v = _mm256_blendv_ps(
        v,
        scale(_mm256_add_ps(splat(1.0), q), n),
        _mm256_castsi256_ps(big),
    );
    let v = _mm256_blendv_ps(v, q, _mm256_castsi256_ps(zero_n));
    let v = _mm256_blendv_ps(v, splat(-1.0), _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(-17.5)));
    let v = _mm256_blendv_ps(
        v,
        splat(f32::INFINITY),
        _mm256_cmp_ps::<_CMP_GT_OQ>(x, splat(89.0)),
    );
    let keep = _mm256_or_ps(
        is_nan(x),
        _mm256_cmp_ps::<_CMP_EQ_OQ>(x, _mm256_setzero_ps()),
    );
    _mm256_blendv_ps(v, x, keep)
}

/// math::tanh.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn tanh(x: __m256) -> __m256 {
    let a = abs(x);
    let sign = _mm256_and_ps(x, splat(SIGN));
    let em = expm1(_mm256_mul_ps(splat(2.0), a));
    let v = _mm256_div_ps(em, _mm256_add_ps(em, splat(2.0)));
    // copysign(v, x)
    let v = _mm256_or_ps(abs(v), sign);
    // |x| ≤ 9.1 and no NaN: nothing to select.
    if all(_mm256_cmp_ps::<_CMP_LE_OQ>(a, splat(9.1))) {
        return v;
    }
    let v = _mm256_blendv_ps(
        v,
        _mm256_or_ps(splat(1.0), sign),
        _mm256_cmp_ps::<_CMP_GT_OQ>(a, splat(9.1)),
    );
    _mm256_blendv_ps(v, x, is_nan(x))
}

/// math::sigmoid: exp(x) below −80, else 1 / (1 + exp(−x)); one exp either way.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn sigmoid(x: __m256) -> __m256 {
    let low = _mm256_cmp_ps::<_CMP_LT_OQ>(x, splat(-80.0));
    if _mm256_movemask_ps(low) == 0 {
        // No lane below −80 (NaN included): 1 / (1 + exp(−x)) in every lane.
        return _mm256_div_ps(splat(1.0), _mm256_add_ps(splat(1.0), exp(neg(x))));
    }
    let e = exp(_mm256_blendv_ps(neg(x), x, low));
    let v = _mm256_div_ps(splat(1.0), _mm256_add_ps(splat(1.0), e));
    _mm256_blendv_ps(v, e, low)
}

/// `out[i] = func(xs[i])`, 8 at a time.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn map_math(func: MathFn, xs: &[f32], out: &mut [f32]) {
    for (x, o) in xs.chunks(W).zip(out.chunks_mut(W)) {
        let v = load(x, x.len());
        let y = match func {
            MathFn::Exp => exp(v),
            MathFn::Expm1 => expm1(v),
            MathFn::Tanh => tanh(v),
            MathFn::Sigmoid => sigmoid(v),
        };
        store(o, x.len(), y);
    }
}

// ---------------------------------------------------------------------------------------------
// Products.

/// The 6 × 16 micro-kernel (12 accumulators; see `MicroKernel` for the contract): per p, two B
/// vectors and six broadcasts of A, each accumulator one lane per output element.
///
/// # Safety
/// The CPU has AVX2 and FMA; a(r, p) at `a + r·rsa + p·csa` is readable for r < 6, p < kc; `b`
/// holds kc·16 readable values; `c` has 6 rows of 16 writable values at stride `ldc`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel_6x16(
    kc: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    const { assert!(MR == 6 && NR == 16) };
    // SAFETY: every offset below stays within the extents the caller guarantees.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for (r, row) in acc.iter_mut().enumerate() {
            row[0] = _mm256_loadu_ps(c.add(r * ldc));
            row[1] = _mm256_loadu_ps(c.add(r * ldc + W));
        }
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(p * NR));
            let b1 = _mm256_loadu_ps(b.add(p * NR + W));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(r * rsa + p * csa));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc), row[0]);
            _mm256_storeu_ps(c.add(r * ldc + W), row[1]);
        }
    }
}

/// `c[j] = Σ_p a[p·lda + j]` for j < n, from 0.0 in ascending p.
///
/// # Safety
/// The CPU has AVX2 and FMA; `c` holds n values and `a` (k − 1)·lda + n.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn sum_rows(c: &mut [f32], a: &[f32], k: usize, n: usize, lda: usize) {
    let c = &mut c[..n];
    c.fill(0.0);
    for p in 0..k {
        let row = &a[p * lda..p * lda + n];
        for (cc, aa) in c.chunks_mut(W).zip(row.chunks(W)) {
            let w = cc.len();
            let v = _mm256_add_ps(load(cc, w), load(aa, w));
            store(cc, w, v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The LSTM cell.

/// The fused forward step over W_hh packed by gate (`PackedGates`): tiles of 3 batch rows × 8
/// hidden units × 4 gates (12 accumulators).
///
/// # Safety
/// The CPU has AVX2 and FMA; `w` is `PackedGates` data for `h` and the buffers of `io` have the
/// sizes `lstm_step` asserts.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn lstm_step(w: &[f32], h: usize, mut io: StepIo<'_>) {
    const { assert!(HB == W && RB == 3) };
    let b = io.batch;
    for q in 0..h.div_ceil(HB) {
        let wq = &w[q * h * 4 * HB..(q + 1) * h * 4 * HB];
        let (j0, nv) = (q * HB, HB.min(h - q * HB));
        let mut b0 = 0;
        while b0 < b {
            let rows = RB.min(b - b0);
            // SAFETY: the CPU check is the caller's; `wq` has h·32 values, rows b0..b0+rows < b.
            unsafe {
                match rows {
                    3 => step_tile::<3>(wq, h, j0, nv, b0, &mut io),
                    2 => step_tile::<2>(wq, h, j0, nv, b0, &mut io),
                    _ => step_tile::<1>(wq, h, j0, nv, b0, &mut io),
                }
            }
            b0 += rows;
        }
    }
}

/// Rows b0..b0+R, hidden units j0..j0+nv of one step.
///
/// # Safety
/// As [`lstm_step`], with b0 + R ≤ B and `wq` the h·32 values of the tile's hidden block.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn step_tile<const R: usize>(
    wq: &[f32],
    h: usize,
    j0: usize,
    nv: usize,
    b0: usize,
    io: &mut StepIo<'_>,
) {
    let g4 = 4 * h;
    assert!(wq.len() == h * 4 * HB && (b0 + R) * h <= io.h_prev.len());
    // The chains' init: the input projection of each gate's rows, where the gates will go.
    let mut acc = [[_mm256_setzero_ps(); 4]; R];
    for (r, row) in acc.iter_mut().enumerate() {
        for (g, v) in row.iter_mut().enumerate() {
            *v = load(&io.gates[(b0 + r) * g4 + g * h + j0..], nv);
        }
    }
    let hp = io.h_prev[b0 * h..].as_ptr();
    let wp = wq.as_ptr();
    for p in 0..h {
        // SAFETY: p < h, so wp + p·32 + 32 ≤ wq's end and hp + r·h + p < (b0 + R)·h (asserted).
        unsafe {
            // Three broadcasts held, each gate's W vector loaded once and used by every row:
            // 12 accumulators + 3 + 1 = 16 registers, none spilled.
            let w4 = wp.add(p * 4 * HB);
            let mut a = [_mm256_setzero_ps(); R];
            for (r, v) in a.iter_mut().enumerate() {
                *v = _mm256_broadcast_ss(&*hp.add(r * h + p));
            }
            for g in 0..4 {
                let wg = _mm256_loadu_ps(w4.add(g * HB));
                for (row, &av) in acc.iter_mut().zip(&a) {
                    row[g] = _mm256_fmadd_ps(av, wg, row[g]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let i = sigmoid(row[0]);
        let f = sigmoid(row[1]);
        let g = tanh(row[2]);
        let o = sigmoid(row[3]);
        let k = (b0 + r) * h + j0;
        // c_t = f·c_{t−1} + i·g (i·g rounded, then one FMA); h_t = o·tanh(c_t).
        let c = _mm256_fmadd_ps(f, load(&io.c_prev[k..], nv), _mm256_mul_ps(i, g));
        let tc = tanh(c);
        store(&mut io.c[k..], nv, c);
        store(&mut io.tanh_c[k..], nv, tc);
        store(&mut io.h[k..], nv, _mm256_mul_ps(o, tc));
        let gr = &mut io.gates[(b0 + r) * g4..(b0 + r + 1) * g4];
        for (gi, v) in [i, f, g, o].into_iter().enumerate() {
            store(&mut gr[gi * h + j0..], nv, v);
        }
    }
}

/// lstm.rs's `cell_backward`, 8 hidden units per vector.
///
/// # Safety
/// The CPU has AVX2 and FMA; the buffers have the sizes `simd::cell_backward` asserts.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn cell_backward(io: CellGrad<'_>) {
    let (b, h) = (io.batch, io.hidden);
    let one = splat(1.0);
    for row in 0..b {
        let a = &io.gates[row * 4 * h..(row + 1) * 4 * h];
        let d = &mut io.dg[row * 4 * h..(row + 1) * 4 * h];
        for j in (0..h).step_by(W) {
            let n = W.min(h - j);
            let k = row * h + j;
            let (i, f) = (load(&a[j..], n), load(&a[h + j..], n));
            let (g, o) = (load(&a[2 * h + j..], n), load(&a[3 * h + j..], n));
            let tc = load(&io.tanh_c[k..], n);
            let dh = load(&io.dh[k..], n);
            // dc = (dh·o)·(1 − tc²) + dc', with 1 − tc² = (−tc)·tc + 1.
            let dc = _mm256_fmadd_ps(
                _mm256_mul_ps(dh, o),
                _mm256_fmadd_ps(neg(tc), tc, one),
                load(&io.dc[k..], n),
            );
            let di = _mm256_mul_ps(
                _mm256_mul_ps(dc, g),
                _mm256_mul_ps(i, _mm256_sub_ps(one, i)),
            );
            let df = _mm256_mul_ps(
                _mm256_mul_ps(dc, load(&io.c_prev[k..], n)),
                _mm256_mul_ps(f, _mm256_sub_ps(one, f)),
            );
            let dg = _mm256_mul_ps(_mm256_mul_ps(dc, i), _mm256_fmadd_ps(neg(g), g, one));
            let dout = _mm256_mul_ps(
                _mm256_mul_ps(dh, tc),
                _mm256_mul_ps(o, _mm256_sub_ps(one, o)),
            );
            store(&mut d[j..], n, di);
            store(&mut d[h + j..], n, df);
            store(&mut d[2 * h + j..], n, dg);
            store(&mut d[3 * h + j..], n, dout);
            store(&mut io.dc[k..], n, _mm256_mul_ps(dc, f));
        }
    }
}
