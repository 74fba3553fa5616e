//! AVX-512 twins (16 lanes of f32): avx2.rs operation for operation at twice the width, with
//! mask registers for its selects and for partial vectors. Every function here has
//! `#[target_feature(enable = "avx512f")]` and is reached only through a `Fast` token made
//! after `is_x86_feature_detected!("avx512f")` said yes (AVX-512F includes the FMA forms).
//!
//! Why a path of its own: on cores with full-width 512-bit units (AMD Zen 5, Intel Xeon) a zmm
//! FMA does twice a ymm's work per cycle, and libtorch's oneDNN and MKL use them; on the Zen 5
//! EPYC the AVX2 path trained MagFluxLSTM at 0.57× libtorch native. The general micro-kernel is
//! 6 × 32 (panels of [`NR`] = 32 columns) and the fused step takes 16 hidden units per gate
//! ([`HB`]), 4 batch rows per tile ([`RB`]).
//!
//! `_mm512_fmadd_ps` is one rounding, like `mul_add`; add, sub, mul, div are IEEE's under the
//! default MXCSR (no embedded rounding is used), so every lane does what its scalar twin does.

use std::arch::x86_64::*;

use super::{CellGrad, MR, MathFn, StepIo};
use crate::math::{LN2_HI, LN2_LO, LOG2_E, P};

const W: usize = 16;
/// Columns of the micro-kernel's tile: two zmm vectors.
pub(super) const NR: usize = 32;
/// Hidden units per tile of the fused step: one zmm vector per gate.
pub(super) const HB: usize = 16;
/// Batch rows per tile of the fused step: 16 accumulators, 4 broadcasts and a W vector.
pub(super) const RB: usize = 4;

#[inline]
#[target_feature(enable = "avx512f")]
fn splat(v: f32) -> __m512 {
    _mm512_set1_ps(v)
}

/// Lanes 0..n.
#[inline]
#[target_feature(enable = "avx512f")]
fn lanes(n: usize) -> __mmask16 {
    if n >= W { 0xffff } else { (1u16 << n) - 1 }
}

/// The first `n` ≤ 16 values of `s` in lanes 0..n, zeros above.
#[inline]
#[target_feature(enable = "avx512f")]
fn load(s: &[f32], n: usize) -> __m512 {
    let s = &s[..n];
    if n == W {
        // SAFETY: `s` has exactly 16 readable values (bounds-checked above).
        return unsafe { _mm512_loadu_ps(s.as_ptr()) };
    }
    // SAFETY: the mask covers exactly the n readable values of `s` (bounds-checked above);
    // masked-off lanes are not accessed.
    unsafe { _mm512_maskz_loadu_ps(lanes(n), s.as_ptr()) }
}

/// Lanes 0..n of `v` into the first `n` ≤ 16 values of `s`.
#[inline]
#[target_feature(enable = "avx512f")]
fn store(s: &mut [f32], n: usize, v: __m512) {
    let s = &mut s[..n];
    if n == W {
        // SAFETY: `s` has exactly 16 writable values (bounds-checked above).
        return unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) };
    }
    // SAFETY: as in `load`: only the n lanes that `s` holds are written.
    unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), lanes(n), v) }
}

// ---------------------------------------------------------------------------------------------
// Elementary functions: crate::math lane by lane (avx2.rs's selects as mask blends:
// `blend(k, a, b)` keeps b where k is set, as `_mm256_blendv_ps(a, b, k)` does).

const SIGN: u32 = 0x8000_0000;

#[inline]
#[target_feature(enable = "avx512f")]
fn sign_bits(x: __m512) -> __m512i {
    _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(SIGN as i32))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn abs(x: __m512) -> __m512 {
    _mm512_castsi512_ps(_mm512_andnot_si512(
        _mm512_set1_epi32(SIGN as i32),
        _mm512_castps_si512(x),
    ))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn neg(x: __m512) -> __m512 {
    _mm512_castsi512_ps(_mm512_xor_si512(
        _mm512_castps_si512(x),
        _mm512_set1_epi32(SIGN as i32),
    ))
}

/// |v| with the sign bits `sign` (copysign).
#[inline]
#[target_feature(enable = "avx512f")]
fn with_sign(v: __m512, sign: __m512i) -> __m512 {
    _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(abs(v)), sign))
}

/// `x.round()`, halves away from zero, as avx2.rs's: trunc, then ±1 where |x − trunc| ≥ ½.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_half_away(x: __m512) -> __m512 {
    let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
    let frac = _mm512_sub_ps(x, t);
    let step = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(splat(1.0)),
        sign_bits(x),
    ));
    let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(abs(frac), splat(0.5));
    _mm512_mask_blend_ps(away, t, _mm512_add_ps(t, step))
}

/// math::reduce.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce(x: __m512) -> (__m512i, __m512) {
    let n = round_half_away(_mm512_mul_ps(x, splat(LOG2_E)));
    let minus_n = neg(n);
    let r = _mm512_fmadd_ps(minus_n, splat(LN2_HI), x);
    let r = _mm512_fmadd_ps(minus_n, splat(LN2_LO), r);
    (_mm512_cvttps_epi32(n), r)
}

/// math::expm1_reduced.
#[inline]
#[target_feature(enable = "avx512f")]
fn expm1_reduced(r: __m512) -> __m512 {
    let mut p = splat(P[0]);
    for &c in &P[1..] {
        p = _mm512_fmadd_ps(p, r, splat(c));
    }
    _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r)
}

/// math::pow2.
#[inline]
#[target_feature(enable = "avx512f")]
fn pow2(n: __m512i) -> __m512 {
    _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        n,
        _mm512_set1_epi32(127),
    )))
}

/// math::scale.
#[inline]
#[target_feature(enable = "avx512f")]
fn scale(p: __m512, n: __m512i) -> __m512 {
    let hi = _mm512_cmpgt_epi32_mask(n, _mm512_set1_epi32(127));
    let lo = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32(-126), n);
    let e = _mm512_mask_blend_epi32(lo, n, _mm512_add_epi32(n, _mm512_set1_epi32(64)));
    let e = _mm512_mask_blend_epi32(hi, e, _mm512_sub_epi32(n, _mm512_set1_epi32(127)));
    let second = _mm512_mask_blend_ps(lo, splat(1.0), splat(f32::powi(2.0, -64)));
    let second = _mm512_mask_blend_ps(hi, second, splat(f32::powi(2.0, 127)));
    _mm512_mul_ps(_mm512_mul_ps(p, pow2(e)), second)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn is_nan(x: __m512) -> __mmask16 {
    _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x)
}

/// Whether every lane of `x` is in [lo, hi] (NaN is not).
#[inline]
#[target_feature(enable = "avx512f")]
fn all_within(x: __m512, lo: f32, hi: f32) -> bool {
    let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, splat(lo));
    let le = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(x, splat(hi));
    ge & le == 0xffff
}

/// math::exp.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn exp(x: __m512) -> __m512 {
    let (n, r) = reduce(x);
    let p = _mm512_add_ps(splat(1.0), expm1_reduced(r));
    if all_within(x, -87.0, 88.0) {
        return _mm512_mul_ps(p, pow2(n));
    }
    let v = scale(p, n);
    let v = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, splat(-104.0)),
        v,
        splat(0.0),
    );
    let v = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, splat(89.0)),
        v,
        splat(f32::INFINITY),
    );
    _mm512_mask_blend_ps(is_nan(x), v, x)
}

/// math::expm1.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn expm1(x: __m512) -> __m512 {
    let (n, r) = reduce(x);
    let q = expm1_reduced(r);
    let t = pow2(n);
    let v = _mm512_fmadd_ps(t, q, _mm512_sub_ps(t, splat(1.0)));
    let zero_n = _mm512_cmpeq_epi32_mask(n, _mm512_setzero_si512());
    let zero_x = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_setzero_ps());
    if all_within(x, -17.5, 16.9) {
        let v = _mm512_mask_blend_ps(zero_n, v, q);
        return _mm512_mask_blend_ps(zero_x, v, x);
    }
    let big = _mm512_cmpgt_epi32_mask(n, _mm512_set1_epi32(24));
    let v = _mm512_mask_blend_ps(big, v, scale(_mm512_add_ps(splat(1.0), q), n));
    let v = _mm512_mask_blend_ps(zero_n, v, q);
    let v = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, splat(-17.5)),
        v,
        splat(-1.0),
    );
    let v = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, splat(89.0)),
        v,
        splat(f32::INFINITY),
    );
    _mm512_mask_blend_ps(is_nan(x) | zero_x, v, x)
}

/// math::tanh.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn tanh(x: __m512) -> __m512 {
    let a = abs(x);
    let sign = sign_bits(x);
    let em = expm1(_mm512_mul_ps(splat(2.0), a));
    let v = with_sign(_mm512_div_ps(em, _mm512_add_ps(em, splat(2.0))), sign);
    let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, splat(9.1));
    let nan = is_nan(x);
    if big | nan == 0 {
        return v;
    }
    let v = _mm512_mask_blend_ps(big, v, with_sign(splat(1.0), sign));
    _mm512_mask_blend_ps(nan, v, x)
}

/// math::sigmoid.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn sigmoid(x: __m512) -> __m512 {
    let low = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, splat(-80.0));
    if low == 0 {
        return _mm512_div_ps(splat(1.0), _mm512_add_ps(splat(1.0), exp(neg(x))));
    }
    let e = exp(_mm512_mask_blend_ps(low, neg(x), x));
    let v = _mm512_div_ps(splat(1.0), _mm512_add_ps(splat(1.0), e));
    _mm512_mask_blend_ps(low, v, e)
}

/// `out[i] = func(xs[i])`, 16 at a time.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
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

/// The 6 × 32 micro-kernel (12 accumulators; `MicroKernel`'s contract with NR = 32): per p,
/// two B vectors and six broadcasts of A.
///
/// # Safety
/// The CPU has AVX-512F; a(r, p) at `a + r·rsa + p·csa` is readable for r < 6, p < kc; `b`
/// holds kc·32 readable values; `c` has 6 rows of 32 writable values at stride `ldc`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernel_6x32(
    kc: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    const { assert!(MR == 6 && NR == 2 * W) };
    // SAFETY: every offset below stays within the extents the caller guarantees.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for (r, row) in acc.iter_mut().enumerate() {
            row[0] = _mm512_loadu_ps(c.add(r * ldc));
            row[1] = _mm512_loadu_ps(c.add(r * ldc + W));
        }
        for p in 0..kc {
            let b0 = _mm512_loadu_ps(b.add(p * NR));
            let b1 = _mm512_loadu_ps(b.add(p * NR + W));
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r * rsa + p * csa));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(r * ldc), row[0]);
            _mm512_storeu_ps(c.add(r * ldc + W), row[1]);
        }
    }
}

/// `c[j] = Σ_p a[p·lda + j]` for j < n, from 0.0 in ascending p.
///
/// # Safety
/// The CPU has AVX-512F; `c` holds n values and `a` (k − 1)·lda + n.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sum_rows(c: &mut [f32], a: &[f32], k: usize, n: usize, lda: usize) {
    let c = &mut c[..n];
    c.fill(0.0);
    for p in 0..k {
        let row = &a[p * lda..p * lda + n];
        for (cc, aa) in c.chunks_mut(W).zip(row.chunks(W)) {
            let w = cc.len();
            let v = _mm512_add_ps(load(cc, w), load(aa, w));
            store(cc, w, v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The LSTM cell.

/// The fused forward step over W_hh packed by gate in blocks of [`HB`] = 16 hidden units: tiles
/// of 4 batch rows × 16 hidden units × 4 gates (16 accumulators).
///
/// # Safety
/// The CPU has AVX-512F; `w` is `PackedGates` data for `h` with blocks of 16 and the buffers of
/// `io` have the sizes `lstm_step` asserts.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn lstm_step(w: &[f32], h: usize, mut io: StepIo<'_>) {
    const { assert!(HB == W) };
    let b = io.batch;
    for q in 0..h.div_ceil(HB) {
        let wq = &w[q * h * 4 * HB..(q + 1) * h * 4 * HB];
        let (j0, nv) = (q * HB, HB.min(h - q * HB));
        let mut b0 = 0;
        while b0 < b {
            let rows = RB.min(b - b0);
            // SAFETY: the CPU check is the caller's; `wq` has h·64 values, rows b0..b0+rows < b.
            unsafe {
                match rows {
                    4 => step_tile::<4>(wq, h, j0, nv, b0, &mut io),
                    3 => step_tile::<3>(wq, h, j0, nv, b0, &mut io),
                    2 => step_tile::<2>(wq, h, j0, nv, b0, &mut io),
                    _ => step_tile::<1>(wq, h, j0, nv, b0, &mut io),
                }
            }
            b0 += rows;
        }
    }
}

/// Rows b0..b0+R, hidden units j0..j0+nv of one step (avx2.rs's `step_tile`, 16 units wide).
///
/// # Safety
/// As [`lstm_step`], with b0 + R ≤ B and `wq` the h·64 values of the tile's hidden block.
#[inline]
#[target_feature(enable = "avx512f")]
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
    let mut acc = [[_mm512_setzero_ps(); 4]; R];
    for (r, row) in acc.iter_mut().enumerate() {
        for (g, v) in row.iter_mut().enumerate() {
            *v = load(&io.gates[(b0 + r) * g4 + g * h + j0..], nv);
        }
    }
    let hp = io.h_prev[b0 * h..].as_ptr();
    let wp = wq.as_ptr();
    for p in 0..h {
        // SAFETY: p < h, so wp + p·64 + 64 ≤ wq's end and hp + r·h + p < (b0 + R)·h (asserted).
        unsafe {
            let w4 = wp.add(p * 4 * HB);
            let mut a = [_mm512_setzero_ps(); R];
            for (r, v) in a.iter_mut().enumerate() {
                *v = _mm512_set1_ps(*hp.add(r * h + p));
            }
            for g in 0..4 {
                let wg = _mm512_loadu_ps(w4.add(g * HB));
                for (row, &av) in acc.iter_mut().zip(&a) {
                    row[g] = _mm512_fmadd_ps(av, wg, row[g]);
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
        let c = _mm512_fmadd_ps(f, load(&io.c_prev[k..], nv), _mm512_mul_ps(i, g));
        let tc = tanh(c);
        store(&mut io.c[k..], nv, c);
        store(&mut io.tanh_c[k..], nv, tc);
        store(&mut io.h[k..], nv, _mm512_mul_ps(o, tc));
        let gr = &mut io.gates[(b0 + r) * g4..(b0 + r + 1) * g4];
        for (gi, v) in [i, f, g, o].into_iter().enumerate() {
            store(&mut gr[gi * h + j0..], nv, v);
        }
    }
}

/// lstm.rs's `cell_backward`, 16 hidden units per vector (avx2.rs's, operation for operation).
///
/// # Safety
/// The CPU has AVX-512F; the buffers have the sizes `simd::cell_backward` asserts.
#[target_feature(enable = "avx512f")]
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
            let dc = _mm512_fmadd_ps(
                _mm512_mul_ps(dh, o),
                _mm512_fmadd_ps(neg(tc), tc, one),
                load(&io.dc[k..], n),
            );
            let di = _mm512_mul_ps(
                _mm512_mul_ps(dc, g),
                _mm512_mul_ps(i, _mm512_sub_ps(one, i)),
            );
            let df = _mm512_mul_ps(
                _mm512_mul_ps(dc, load(&io.c_prev[k..], n)),
                _mm512_mul_ps(f, _mm512_sub_ps(one, f)),
            );
            let dg = _mm512_mul_ps(_mm512_mul_ps(dc, i), _mm512_fmadd_ps(neg(g), g, one));
            let dout = _mm512_mul_ps(
                _mm512_mul_ps(dh, tc),
                _mm512_mul_ps(o, _mm512_sub_ps(one, o)),
            );
            store(&mut d[j..], n, di);
            store(&mut d[h + j..], n, df);
            store(&mut d[2 * h + j..], n, dg);
            store(&mut d[3 * h + j..], n, dout);
            store(&mut io.dc[k..], n, _mm512_mul_ps(dc, f));
        }
    }
}
