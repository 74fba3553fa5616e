//! The property tests: every SIMD twin against its scalar reference, bit for bit, on random
//! shapes (odd sizes, sizes below and above the vector width and the tiles, K across the block
//! boundaries, M and N not multiples of the micro-kernel) and random data.

use super::*;
use crate::gemm::{self, reference};

/// SplitMix64: a seeded generator for shapes and data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        crate::rng::mix(self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Values with a spread of magnitudes and both signs, so that a chain taken in another order
    /// or split would round differently.
    fn data(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u = (self.next() >> 40) as f32 / (1u32 << 24) as f32;
                let e = (self.next() % 24) as i32 - 12;
                (u - 0.5) * f32::powi(2.0, e)
            })
            .collect()
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The vector paths this CPU runs (none on a CPU without one: then only the scalar path exists).
fn vector_isas() -> Vec<Isa> {
    supported_isas()
        .into_iter()
        .filter(|&i| i != Isa::Scalar)
        .collect()
}

/// Sizes that straddle the vector width (8), the tiles (6 × 16), the blocks (K 256, M 72).
fn size(rng: &mut Rng, big: usize) -> usize {
    const EDGES: [usize; 14] = [1, 2, 3, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33, 47];
    if rng.below(4) == 0 {
        1 + rng.below(big)
    } else {
        EDGES[rng.below(EDGES.len())]
    }
}

#[test]
fn products_equal_the_reference() {
    let vec_isas = vector_isas();
    let mut rng = Rng(1);
    let mut cases = 0;
    // Unoptimised builds (where the reference's mul_add is a libm call) take fewer shapes.
    let rounds = if cfg!(debug_assertions) { 100 } else { 300 };
    for round in 0..rounds {
        let m = size(&mut rng, if round % 10 == 0 { 200 } else { 80 });
        let n = size(&mut rng, 70);
        // K below, at and across the K block (256) in a share of the cases.
        let k = match round % 5 {
            0 => KC - 2 + rng.below(5),
            1 => 2 * KC - 1 + rng.below(3),
            2 => rng.below(4),
            _ => size(&mut rng, 300),
        };
        let a = rng.data(m * k);
        let b = rng.data(n * k);
        let bias = rng.data(n);
        let c0 = rng.data(m * n);
        let mut want = [c0.clone(), c0.clone(), c0.clone(), c0.clone(), vec![0.0; n]];
        reference::matmul_abt_bias(&mut want[0], &a, &b, &bias, m, n, k);
        reference::matmul_abt_acc(&mut want[1], &a, &b, m, n, k);
        // b read as (k × n) for the two products whose right-hand side is stored that way.
        reference::matmul_ab_acc(&mut want[2], &a, &b, m, n, k);
        // a read as (k × m).
        reference::matmul_atb(&mut want[3], &a, &b, m, n, k);
        reference::sum_rows(&mut want[4], &b, k, n);
        for (&isa, threads) in vec_isas.iter().flat_map(|i| [(i, 1), (i, 2), (i, 3)]) {
            with_threads(threads, || {
                with_isa(isa, || {
                    let mut got = [c0.clone(), c0.clone(), c0.clone(), c0.clone(), vec![9.0; n]];
                    gemm::matmul_abt_bias(&mut got[0], &a, &b, &bias, m, n, k);
                    gemm::matmul_abt_acc(&mut got[1], &a, &b, m, n, k);
                    gemm::matmul_ab_acc(&mut got[2], &a, &b, m, n, k);
                    gemm::matmul_atb(&mut got[3], &a, &b, m, n, k);
                    gemm::sum_rows(&mut got[4], &b, k, n);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            bits(g),
                            bits(w),
                            "{} on {threads} threads: product {i}, m {m} n {n} k {k}",
                            isa.name()
                        );
                    }
                })
            });
            cases += 1;
        }
    }
    println!("{cases} shapes checked");
}

/// A C with a row stride wider than N, and C tiles written only where they belong.
#[test]
fn strided_c_is_left_alone_outside_the_product() {
    for isa in vector_isas() {
        let f = with_isa(isa, || fast().unwrap());
        let mut rng = Rng(2);
        let (m, n, k, ldc) = (13, 21, 40, 29);
        let a = rng.data(m * k);
        let b = rng.data(k * n);
        let c0 = rng.data(m * ldc);
        let mut got = c0.clone();
        gemm(
            f,
            &mut got,
            ldc,
            m,
            Lhs::Rows(&a, k),
            &PackedB::from_kn(f, &b, k, n),
        );
        for i in 0..m {
            let mut want = c0[i * ldc..i * ldc + n].to_vec();
            reference::matmul_ab_acc(&mut want, &a[i * k..(i + 1) * k], &b, 1, n, k);
            assert_eq!(bits(&got[i * ldc..i * ldc + n]), bits(&want));
            assert_eq!(
                bits(&got[i * ldc + n..(i + 1) * ldc]),
                bits(&c0[i * ldc + n..(i + 1) * ldc])
            );
        }
    }
}

/// Every f32 whose bits are a multiple of `stride` (both signs), the special values, and dense
/// runs around every switch of the scalar functions.
fn math_inputs(stride: u32) -> Vec<f32> {
    let mut xs: Vec<f32> = (0..=u32::MAX / stride)
        .map(|i| f32::from_bits(i * stride))
        .collect();
    let specials = [
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        f32::MAX,
        f32::INFINITY,
        f32::NAN,
        f32::from_bits(0x7fc0_1234),
        f32::from_bits(0x7f80_0001), // signalling
        f32::EPSILON,
        1e-30,
        0.5,
        1.0,
        2.0,
    ];
    // The switches: exp's 89 and −104, expm1's −17.5 and its n = 0, ±1, 24, 25 (x ≈ (n ± ½)·ln2),
    // tanh's 9.1 and its 2|x| reductions, sigmoid's −80, the scale's −126 and 127 exponents.
    let ln2 = std::f32::consts::LN_2;
    let mut centres = vec![89.0, -104.0, -17.5, 9.1, -80.0, 88.72, -87.3, -103.97, 4.55];
    for n in [
        -151, -150, -127, -126, -125, -25, -24, -2, -1, 0, 1, 2, 24, 25, 127, 128,
    ] {
        centres.push((n as f32 + 0.5) * ln2);
        centres.push((n as f32 - 0.5) * ln2);
        centres.push(n as f32 * ln2);
        centres.push((n as f32 + 0.5) * ln2 / 2.0);
    }
    for &s in &specials {
        xs.push(s);
        xs.push(-s);
    }
    for c in centres {
        for base in [c, -c] {
            let (mut up, mut down) = (base, base);
            for _ in 0..300 {
                xs.push(up);
                xs.push(down);
                up = up.next_up();
                down = down.next_down();
            }
        }
    }
    // Small and subnormal magnitudes in every binade.
    for e in 0..=40u32 {
        let v = f32::from_bits(1 << (e.min(31)));
        xs.push(v);
        xs.push(-v);
    }
    xs
}

#[test]
fn math_equals_the_scalar_functions() {
    let mut xs = math_inputs(4093);
    // Then the same inputs shuffled: vectors whose lanes mix the common range (where the vector
    // functions skip the other branches) with edge values, besides the runs of neighbours above.
    let mut rng = Rng(3);
    let mut shuffled = xs.clone();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i + 1));
    }
    xs.extend(shuffled);
    let mut out = vec![0.0; xs.len()];
    for isa in vector_isas() {
        for func in MathFn::ALL {
            with_isa(isa, || map_math(func, &xs, &mut out));
            let f = func.scalar();
            for (&x, &y) in xs.iter().zip(&out) {
                assert_eq!(
                    y.to_bits(),
                    f(x).to_bits(),
                    "{} {func:?}({x:e} = {:#010x}): {y:e} vs scalar {:e}",
                    isa.name(),
                    x.to_bits(),
                    f(x)
                );
            }
            // Every length modulo the width: the tails go through the same lanes.
            for len in 0..20 {
                let mut short = vec![0.0; len];
                with_isa(isa, || map_math(func, &xs[..len], &mut short));
                assert_eq!(bits(&short), bits(&out[..len]));
            }
        }
        println!("{}: {} inputs × 4 functions equal", isa.name(), xs.len());
    }
}

/// A few training steps of both models with everything on (dropout, hybrid loss ×100, teacher
/// forcing, clipping, decay), on shapes off every tile and vector boundary: the vector paths end
/// with the scalar path's weights, bit for bit, and report the same losses and norms.
#[test]
fn training_steps_equal_on_every_path() {
    use crate::model::{Arch, Model, ModelConfig, StepConfig};
    use crate::{Adam, Loss};
    let train = |arch: Arch, hidden: usize| {
        let config = ModelConfig {
            arch,
            input: 5,
            hidden,
            layers: 3,
            dropout: 0.3,
            horizon: 6,
        };
        let mut m = Model::new(&config, 11).unwrap();
        let mut opt = Adam::new(m.params(), 5e-3, 1e-5);
        let step = StepConfig {
            loss: Loss::Hybrid { alpha: 0.7 },
            loss_scale: 100.0,
            teacher_forcing_ratio: 0.5,
            clip: 1.0,
        };
        let mut draws = 0u64;
        let mut draw = || {
            draws += 1;
            (crate::rng::mix(draws) >> 11) as f64 / (1u64 << 53) as f64
        };
        // Batch 7: two threads take 3 + 4 rows in the fused step, three take 3 + 3 + 1.
        let (batch, steps) = (7, 13);
        let mut rng = Rng(5);
        let mut reports = Vec::new();
        for b in 0..3u64 {
            let x: Vec<f32> = rng
                .data(batch * steps * 5)
                .iter()
                .map(|v| v * 64.0)
                .collect();
            let y = rng.data(batch * 6);
            m.masks.begin_step(3, 1, b);
            let r = m
                .train_step(&mut opt, &x, &y, batch, steps, &step, &mut draw)
                .unwrap();
            reports.push((r.loss.to_bits(), r.grad_norm.to_bits()));
        }
        let weights: Vec<Vec<u32>> = m.params().iter().map(|p| bits(&p.data)).collect();
        (reports, weights)
    };
    for arch in [Arch::Lstm, Arch::EncDec] {
        for hidden in [5, 8, 19] {
            let want = with_isa(Isa::Scalar, || train(arch, hidden));
            for isa in vector_isas() {
                for threads in [1, 2, 3] {
                    let got = with_threads(threads, || with_isa(isa, || train(arch, hidden)));
                    assert!(
                        got == want,
                        "{arch:?} h {hidden}: {} on {threads} threads differs",
                        isa.name()
                    );
                }
            }
        }
    }
}
