//! NEON twins (4 lanes of f32; NEON and its FMA are baseline on aarch64). The same algorithms as
//! `avx2`, lane for lane: `vfmaq_f32(c, a, b)` is c + a·b with one rounding, as
//! `a.mul_add(b, c)`; add, sub, mul, div are IEEE's and the FPCR is the default (round to nearest
//! even, no flush to zero). The fused step's 8 hidden units are two vectors per gate.

use std::arch::aarch64::*;

use super::{CellGrad, HB, MR, MathFn, NR, RB, StepIo};
use crate::math::{LN2_HI, LN2_LO, LOG2_E, P};

const W: usize = 4;

#[inline]
#[target_feature(enable = "neon")]
fn splat(v: f32) -> float32x4_t {
    vdupq_n_f32(v)
}

/// The first `n` ≤ 4 values of `s` in lanes 0..n, zeros above.
#[inline]
#[target_feature(enable = "neon")]
fn load(s: &[f32], n: usize) -> float32x4_t {
    if n == W {
        let s = &s[..W];
        // SAFETY: `s` has exactly 4 readable values (the slice above is bounds-checked).
        unsafe { vld1q_f32(s.as_ptr()) }
    } else {
        let mut t = [0.0f32; W];
        t[..n].copy_from_slice(&s[..n]);
        // SAFETY: `t` has 4 values.
        unsafe { vld1q_f32(t.as_ptr()) }
    }
}

/// Lanes 0..n of `v` into the first `n` ≤ 4 values of `s`.
#[inline]
#[target_feature(enable = "neon")]
fn store(s: &mut [f32], n: usize, v: float32x4_t) {
    if n == W {
        let s = &mut s[..W];
        // SAFETY: `s` has exactly 4 writable values (the slice above is bounds-checked).
        unsafe { vst1q_f32(s.as_mut_ptr(), v) }
    } else {
        let mut t = [0.0f32; W];
        // SAFETY: `t` has 4 values.
        unsafe { vst1q_f32(t.as_mut_ptr(), v) };
        s[..n].copy_from_slice(&t[..n]);
    }
}

/// Up to 8 values as two vectors (the fused step's hidden block).
#[inline]
#[target_feature(enable = "neon")]
fn load8(s: &[f32], n: usize) -> [float32x4_t; 2] {
    [load(s, n.min(W)), load(&s[n.min(W)..], n.saturating_sub(W))]
}

#[inline]
#[target_feature(enable = "neon")]
fn store8(s: &mut [f32], n: usize, v: [float32x4_t; 2]) {
    store(s, n.min(W), v[0]);
    store(&mut s[n.min(W)..], n.saturating_sub(W), v[1]);
}

// ---------------------------------------------------------------------------------------------
// Elementary functions: crate::math lane by lane.

#[inline]
#[target_feature(enable = "neon")]
fn select(mask: uint32x4_t, yes: float32x4_t, no: float32x4_t) -> float32x4_t {
    vbslq_f32(mask, yes, no)
}

#[inline]
#[target_feature(enable = "neon")]
fn is_nan(x: float32x4_t) -> uint32x4_t {
    vmvnq_u32(vceqq_f32(x, x))
}

/// math::reduce: n = round(x·log₂e) (`vrndaq_f32` rounds halves away from zero, as `round`),
/// r = x − n·ln2 in two FMAs.
#[inline]
#[target_feature(enable = "neon")]
fn reduce(x: float32x4_t) -> (int32x4_t, float32x4_t) {
    let n = vrndaq_f32(vmulq_f32(x, splat(LOG2_E)));
    let minus_n = vnegq_f32(n);
    let r = vfmaq_f32(x, minus_n, splat(LN2_HI));
    let r = vfmaq_f32(r, minus_n, splat(LN2_LO));
    (vcvtq_s32_f32(n), r)
}

#[inline]
#[target_feature(enable = "neon")]
fn expm1_reduced(r: float32x4_t) -> float32x4_t {
    let mut p = splat(P[0]);
    for &c in &P[1..] {
        p = vfmaq_f32(splat(c), p, r);
    }
    vfmaq_f32(r, p, vmulq_f32(r, r))
}

#[inline]
#[target_feature(enable = "neon")]
fn pow2(n: int32x4_t) -> float32x4_t {
    vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n, vdupq_n_s32(127))))
}

/// math::scale, as in `avx2::scale`.
#[inline]
#[target_feature(enable = "neon")]
fn scale(p: float32x4_t, n: int32x4_t) -> float32x4_t {
    let hi = vcgtq_s32(n, vdupq_n_s32(127));
    let lo = vcltq_s32(n, vdupq_n_s32(-126));
    let e = vbslq_s32(lo, vaddq_s32(n, vdupq_n_s32(64)), n);
    let e = vbslq_s32(hi, vsubq_s32(n, vdupq_n_s32(127)), e);
    let second = select(lo, splat(f32::powi(2.0, -64)), splat(1.0));
    let second = select(hi, splat(f32::powi(2.0, 127)), second);
    vmulq_f32(vmulq_f32(p, pow2(e)), second)
}

#[inline]
#[target_feature(enable = "neon")]
fn exp(x: float32x4_t) -> float32x4_t {
    let (n, r) = reduce(x);
    let v = scale(vaddq_f32(splat(1.0), expm1_reduced(r)), n);
    let v = select(vcltq_f32(x, splat(-104.0)), splat(0.0), v);
    let v = select(vcgtq_f32(x, splat(89.0)), splat(f32::INFINITY), v);
    select(is_nan(x), x, v)
}

#[inline]
#[target_feature(enable = "neon")]
fn expm1(x: float32x4_t) -> float32x4_t {
    let (n, r) = reduce(x);
    let q = expm1_reduced(r);
    let t = pow2(n);
    let v = vfmaq_f32(vsubq_f32(t, splat(1.0)), t, q);
    let v = select(
        vcgtq_s32(n, vdupq_n_s32(24)),
        scale(vaddq_f32(splat(1.0), q), n),
        v,
    );
    let v = select(vceqq_s32(n, vdupq_n_s32(0)), q, v);
    let v = select(vcltq_f32(x, splat(-17.5)), splat(-1.0), v);
    let v = select(vcgtq_f32(x, splat(89.0)), splat(f32::INFINITY), v);
    let keep = vorrq_u32(is_nan(x), vceqq_f32(x, splat(0.0)));
    select(keep, x, v)
}

/// The sign bit of every lane.
#[inline]
#[target_feature(enable = "neon")]
fn sign_mask() -> uint32x4_t {
    vdupq_n_u32(0x8000_0000)
}

#[inline]
#[target_feature(enable = "neon")]
fn tanh(x: float32x4_t) -> float32x4_t {
    let a = vabsq_f32(x);
    let em = expm1(vmulq_f32(splat(2.0), a));
    let v = vdivq_f32(em, vaddq_f32(em, splat(2.0)));
    // copysign(v, x), and copysign(1, x) beyond 9.1.
    let v = vbslq_f32(sign_mask(), x, v);
    let one = vbslq_f32(sign_mask(), x, splat(1.0));
    let v = select(vcgtq_f32(a, splat(9.1)), one, v);
    select(is_nan(x), x, v)
}

#[inline]
#[target_feature(enable = "neon")]
fn sigmoid(x: float32x4_t) -> float32x4_t {
    let low = vcltq_f32(x, splat(-80.0));
    let e = exp(select(low, x, vnegq_f32(x)));
    let v = vdivq_f32(splat(1.0), vaddq_f32(splat(1.0), e));
    select(low, e, v)
}

/// `out[i] = func(xs[i])`, 4 at a time.
///
/// # Safety
/// None beyond the types (NEON is baseline); `unsafe` only to match the other paths.
#[target_feature(enable = "neon")]
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

/// The 6 × 16 micro-kernel with 24 accumulators (see `MicroKernel` for the contract).
///
/// # Safety
/// a(r, p) at `a + r·rsa + p·csa` is readable for r < 6, p < kc; `b` holds kc·16 readable
/// values; `c` has 6 rows of 16 writable values at stride `ldc`.
#[target_feature(enable = "neon")]
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
        let mut acc = [[splat(0.0); 4]; MR];
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = vld1q_f32(c.add(r * ldc + v * W));
            }
        }
        for p in 0..kc {
            let bp = b.add(p * NR);
            let bv = [
                vld1q_f32(bp),
                vld1q_f32(bp.add(W)),
                vld1q_f32(bp.add(2 * W)),
                vld1q_f32(bp.add(3 * W)),
            ];
            for (r, row) in acc.iter_mut().enumerate() {
                let av = vld1q_dup_f32(a.add(r * rsa + p * csa));
                for v in 0..4 {
                    row[v] = vfmaq_f32(row[v], av, bv[v]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                vst1q_f32(c.add(r * ldc + v * W), *x);
            }
        }
    }
}

/// `c[j] = Σ_p a[p·lda + j]` for j < n, from 0.0 in ascending p.
///
/// # Safety
/// `c` holds n values and `a` (k − 1)·lda + n.
#[target_feature(enable = "neon")]
pub(super) unsafe fn sum_rows(c: &mut [f32], a: &[f32], k: usize, n: usize, lda: usize) {
    let c = &mut c[..n];
    c.fill(0.0);
    for p in 0..k {
        let row = &a[p * lda..p * lda + n];
        for (cc, aa) in c.chunks_mut(W).zip(row.chunks(W)) {
            let w = cc.len();
            let v = vaddq_f32(load(cc, w), load(aa, w));
            store(cc, w, v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The LSTM cell.

/// The fused forward step: tiles of 3 batch rows × 8 hidden units × 4 gates (24 accumulators).
///
/// # Safety
/// `w` is `PackedGates` data for `h` and the buffers of `io` have the sizes `lstm_step` asserts.
#[target_feature(enable = "neon")]
pub(super) unsafe fn lstm_step(w: &[f32], h: usize, mut io: StepIo<'_>) {
    const { assert!(HB == 2 * W && RB == 3) };
    let b = io.batch;
    for q in 0..h.div_ceil(HB) {
        let wq = &w[q * h * 4 * HB..(q + 1) * h * 4 * HB];
        let (j0, nv) = (q * HB, HB.min(h - q * HB));
        let mut b0 = 0;
        while b0 < b {
            let rows = RB.min(b - b0);
            match rows {
                3 => step_tile::<3>(wq, h, j0, nv, b0, &mut io),
                2 => step_tile::<2>(wq, h, j0, nv, b0, &mut io),
                _ => step_tile::<1>(wq, h, j0, nv, b0, &mut io),
            }
            b0 += rows;
        }
    }
}

/// Rows b0..b0+R, hidden units j0..j0+nv of one step.
#[inline]
#[target_feature(enable = "neon")]
fn step_tile<const R: usize>(
    wq: &[f32],
    h: usize,
    j0: usize,
    nv: usize,
    b0: usize,
    io: &mut StepIo<'_>,
) {
    let g4 = 4 * h;
    assert!(wq.len() == h * 4 * HB && (b0 + R) * h <= io.h_prev.len());
    let mut acc = [[[splat(0.0); 2]; 4]; R];
    for (r, row) in acc.iter_mut().enumerate() {
        for (g, v) in row.iter_mut().enumerate() {
            *v = load8(&io.gates[(b0 + r) * g4 + g * h + j0..], nv);
        }
    }
    let hp = io.h_prev[b0 * h..].as_ptr();
    let wp = wq.as_ptr();
    for p in 0..h {
        // SAFETY: p < h, so wp + p·32 + 32 ≤ wq's end and hp + r·h + p < (b0 + R)·h (asserted).
        unsafe {
            let w4 = wp.add(p * 4 * HB);
            for g in 0..4 {
                let wg = [vld1q_f32(w4.add(g * HB)), vld1q_f32(w4.add(g * HB + W))];
                for (r, row) in acc.iter_mut().enumerate() {
                    let a = vld1q_dup_f32(hp.add(r * h + p));
                    row[g][0] = vfmaq_f32(row[g][0], a, wg[0]);
                    row[g][1] = vfmaq_f32(row[g][1], a, wg[1]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let k = (b0 + r) * h + j0;
        let c_prev = load8(&io.c_prev[k..], nv);
        let mut out = [[splat(0.0); 2]; 7];
        for v in 0..2 {
            let i = sigmoid(row[0][v]);
            let f = sigmoid(row[1][v]);
            let g = tanh(row[2][v]);
            let o = sigmoid(row[3][v]);
            let c = vfmaq_f32(vmulq_f32(i, g), f, c_prev[v]);
            let tc = tanh(c);
            for (slot, x) in [i, f, g, o, c, tc, vmulq_f32(o, tc)]
                .into_iter()
                .enumerate()
            {
                out[slot][v] = x;
            }
        }
        let gr = &mut io.gates[(b0 + r) * g4..(b0 + r + 1) * g4];
        for gi in 0..4 {
            store8(&mut gr[gi * h + j0..], nv, out[gi]);
        }
        store8(&mut io.c[k..], nv, out[4]);
        store8(&mut io.tanh_c[k..], nv, out[5]);
        store8(&mut io.h[k..], nv, out[6]);
    }
}

/// lstm.rs's `cell_backward`, 4 hidden units per vector.
///
/// # Safety
/// The buffers have the sizes `simd::cell_backward` asserts.
#[target_feature(enable = "neon")]
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
            let dc = vfmaq_f32(
                load(&io.dc[k..], n),
                vmulq_f32(dh, o),
                vfmaq_f32(one, vnegq_f32(tc), tc),
            );
            let di = vmulq_f32(vmulq_f32(dc, g), vmulq_f32(i, vsubq_f32(one, i)));
            let df = vmulq_f32(
                vmulq_f32(dc, load(&io.c_prev[k..], n)),
                vmulq_f32(f, vsubq_f32(one, f)),
            );
            let dg = vmulq_f32(vmulq_f32(dc, i), vfmaq_f32(one, vnegq_f32(g), g));
            let dout = vmulq_f32(vmulq_f32(dh, tc), vmulq_f32(o, vsubq_f32(one, o)));
            store(&mut d[j..], n, di);
            store(&mut d[h + j..], n, df);
            store(&mut d[2 * h + j..], n, dg);
            store(&mut d[3 * h + j..], n, dout);
            store(&mut io.dc[k..], n, vmulq_f32(dc, f));
        }
    }
}
