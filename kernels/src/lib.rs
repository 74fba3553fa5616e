//! magpipe's scalar reference engine for MagFluxLSTM and MagFluxEnc-Dec
//! (docs/src/semantics.md §9–10): forward, backward, loss, gradient clipping and Adam in plain
//! Rust, with every floating-point operation in an order fixed by the shapes alone. The same
//! inputs give the same bits on every CPU; faster (SIMD, threaded) versions must reproduce
//! these bits, so the rules below are the contract they are held to.
//!
//! # The numerics contract
//!
//! 1. **f32 everywhere.** Every tensor value and every intermediate is an IEEE binary32 value.
//!    f64 appears only in scalars derived from hyper-parameters (1/(1−p), bias corrections,
//!    the loss coefficients), each computed once and rounded to f32 where it meets a tensor, in
//!    the gradient norm of [`adam::clip_grad_norm`], and in the one product that turns an initial
//!    weight's random bits into its value ([`rng::init_uniform`]).
//! 2. **Products are FMA chains in ascending k.** Every element of a dot or matrix product is
//!    `acc = init; for k in 0..K ascending { acc = a[k].mul_add(b[k], acc) }`: one fused
//!    multiply-add (a single rounding) per term, with the initial value stated at each use. No
//!    split of K, no tree or horizontal sums, no reassociation. `f32::mul_add` is a fused
//!    operation on every target (a software `fmaf`, correctly rounded, where the CPU has no FMA),
//!    so it never changes with the hardware. Sums without products (bias gradients) add in
//!    ascending index order, starting from 0.0. The kernels are in [`gemm`].
//! 3. **An LSTM layer** (PyTorch's layout: `W_ih` 4h × in, `W_hh` 4h × h, `b_ih`, `b_hh`; gate
//!    rows i = 0..h, f = h..2h, g = 2h..3h, o = 3h..4h; states zero unless given) at step t, for
//!    batch row b and gate row r:
//!    - input projection, batched over all steps:
//!      `xp[t][b][r] = chain_k(x[t][b][k] · W_ih[r][k], init = b_ih[r] + b_hh[r])`;
//!    - pre-activation: `pre[t][b][r] = chain_k(h_{t−1}[b][k] · W_hh[r][k], init = xp[t][b][r])`;
//!    - `i = σ(pre_i)`, `f = σ(pre_f)`, `g = tanh(pre_g)`, `o = σ(pre_o)`;
//!    - `c_t = f.mul_add(c_{t−1}, i * g)` (i·g rounded, then one FMA);
//!    - `h_t = o * tanh(c_t)`.
//! 4. **Backward through time** ([`lstm`]): at step t, with `dh` the total ∂L/∂h_t and `dc'` the
//!    carry ∂L/∂c_t from step t+1 (zero, or the caller's ∂L/∂c_T, at the last step):
//!    - `dc = (dh * o).mul_add(1 − tc², dc')` where `tc = tanh(c_t)` and `1 − tc² = (−tc).mul_add(tc, 1)`;
//!    - `dpre_i = (dc * g) * (i * (1 − i))`, `dpre_f = (dc * c_{t−1}) * (f * (1 − f))`,
//!      `dpre_g = (dc * i) * (−g).mul_add(g, 1)`, `dpre_o = (dh * tc) * (o * (1 − o))`;
//!    - the carry to step t−1 is `dc * f`;
//!    - `∂L/∂h_{t−1}[b][k] = chain_r(dpre_t[b][r] · W_hh[r][k], init = dy[t−1][b][k])` over the 4h gate
//!      rows ascending, with `dy` the gradient on the layer's own output (init 0 for h_{−1} = h0);
//!      at the last step `dh = dy[T−1]`, plus `dh_T` when the caller gives a gradient on the final h;
//!    - `∂L/∂x[t][b][k] = chain_r(dpre[t][b][r] · W_ih[r][k], init = 0)`.
//!    - Weight gradients reduce over K = (t, b) with index `t·B + b` ascending, one FMA chain per
//!      element starting from 0: `dW_ih[r][k] = chain(dpre[t][b][r] · x[t][b][k])`,
//!      `dW_hh[r][k] = chain(dpre[t][b][r] · h_{t−1}[b][k])`; `db_ih = db_hh = Σ dpre[t][b][r]`
//!      (plain adds, same order). A decoder run step by step is reduced as one sequence: its
//!      gradients are the same chains as if its steps had been one call.
//!    - The head ([`linear`]): `y[n][o] = chain_k(x[n][k] · W[o][k], init = b[o])`; its weight
//!      gradient reduces over its rows (for the Enc-Dec head, row = step·B + b, all steps in one
//!      chain), `dx = chain_o(dy · W, init = 0)`. Dropout multiplies by the mask (one rounding),
//!      forward and backward.
//! 5. **Elementary functions are magpipe's own** ([`math`]): exp and expm1 by Cody–Waite
//!    reduction `x = n·ln2 + r` (ln 2 split in a 9-bit head and a tail, reduced with FMA), a fixed
//!    degree-7 polynomial in r evaluated by Horner with `mul_add`, and a scale by 2ⁿ built from
//!    the exponent bits; `tanh(x) = sign(x) · em / (em + 2)` with `em = expm1(2|x|)`, ±1 beyond
//!    |x| > 9.1; `σ(x) = 1 / (1 + exp(−x))`, or `exp(x)` below x = −80 (where 1 + eˣ rounds to 1
//!    and e⁻ˣ would overflow). `f32::exp`, `f32::tanh` and libm are never called:
//!    they differ between platforms. Derivatives use the saved forward values (σ' = s(1 − s),
//!    tanh' = 1 − t²). Division and `sqrt` are IEEE (correctly rounded); there is no
//!    approximate reciprocal and no fast-math.
//! 6. **Randomness is counter-based** ([`rng`]): dropout masks are those of
//!    `magpipe_worker::model::DropoutMasks` (keyed by seed, epoch, batch, the mask's number in
//!    the step and the element's index); initial weights follow PyTorch's distributions
//!    (U(±1/√h) for every LSTM weight and bias, U(±1/√fan_in) for the head) drawn from the same
//!    hash keyed by (seed, the parameter's index, the element's index). Teacher-forcing draws come
//!    from the caller.
//! 7. **Losses** ([`loss`]): squares are summed by `acc = d.mul_add(d, acc)` in element order
//!    from 0, then divided by the element count.
//! 8. **Adam and clipping** ([`adam`]) follow `magpipe_worker::adam` operation by operation.
//!
//! 9. **SIMD paths reproduce the scalar bits** ([`simd`]). The scalar loops ([`mod@gemm::reference`],
//!    [`math`], the reference step and cell in [`lstm`]) are the specification; AVX-512F and
//!    AVX2+FMA (x86-64, detected at run time) and NEON (aarch64) twins compute the same operations with one output
//!    element per lane: each element's chain runs over k ascending inside its lane (a chain cut
//!    into K blocks continues from its stored f32 value, which is exact), never split across
//!    lanes or threads and never summed horizontally. The vector exp/expm1/tanh/sigmoid use the
//!    same reduction, polynomial and scaling, with the scalar branches as lane-wise selects, and
//!    `round` as halves away from zero. Property tests hold every twin equal to its reference
//!    bit for bit on random shapes and data; `MAGPIPE_KERNELS=scalar` (or [`simd::with_isa`])
//!    forces the reference path, which gives the same bits. Threads ([`simd::set_threads`],
//!    one unless set) split the vector path's outputs only (GEMM rows in whole 6-row panels,
//!    batch rows of a step, columns of the bias sums), never a chain, so every thread count
//!    gives the same bits (tested at 1, 2 and 3).
//!
//! Layouts: tensors are flat row-major `Vec<f32>`. The public entry points take batch-first
//! inputs (B, T, features) like the worker; inside, sequences are time-major (T, B, features)
//! so one step's rows are contiguous. Transposing moves values and computes nothing.
//!
//! Public entry points ([`model::Model`], [`lstm::forward`], [`lstm::backward`], [`linear`],
//! [`loss`], [`adam`]) return an [`Error`] for an empty batch, a non-finite input or mismatched
//! shapes, and never panic on them. The kernels in [`gemm`] trust their callers.

pub mod adam;
pub mod engine;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod lstm;
pub mod math;
pub mod metrics;
pub mod model;
pub mod param;
pub mod rng;
pub mod schedule;
pub mod simd;
pub mod splitmix;
pub mod train;
pub mod weights;

#[cfg(test)]
mod testutil;

pub use adam::{Adam, clip_grad_norm};
pub use engine::NUMERICS;
pub use loss::Loss;
pub use model::{Arch, Model, ModelConfig, Param, TeacherForcing, Trace};
pub use rng::DropoutMasks;
pub use train::{Trainer, Windows};

/// What the public entry points refuse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("empty input: {0}")]
    Empty(String),
    #[error("shape mismatch: {what} has {got} values, expected {expected}")]
    Shape {
        what: String,
        expected: usize,
        got: usize,
    },
    #[error("{what} holds a non-finite value ({value}) at index {index}")]
    NonFinite {
        what: String,
        index: usize,
        value: f32,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("unknown parameter `{0}`")]
    UnknownParam(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// `Err` unless `data` has exactly `expected` values.
pub(crate) fn check_len(what: &str, data: &[f32], expected: usize) -> Result<()> {
    if data.len() == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            what: what.to_string(),
            expected,
            got: data.len(),
        })
    }
}

/// `Err` at the first NaN or infinity in `data`.
pub(crate) fn check_finite(what: &str, data: &[f32]) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
            value: data[index],
        }),
    }
}

/// Both checks: the length, then every value finite.
pub(crate) fn check_input(what: &str, data: &[f32], expected: usize) -> Result<()> {
    check_len(what, data, expected)?;
    check_finite(what, data)
}

/// (rows, inner, cols) row-major → (inner, rows, cols): (B, T, F) ↔ (T, B, F). Moves values only.
pub(crate) fn swap_outer(data: &[f32], rows: usize, inner: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for i in 0..inner {
            let src = (r * inner + i) * cols;
            let dst = (i * rows + r) * cols;
            out[dst..dst + cols].copy_from_slice(&data[src..src + cols]);
        }
    }
    out
}
