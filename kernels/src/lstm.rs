//! One LSTM layer in PyTorch's layout, forward and backward through time side by side. The
//! exact operations are the crate's contract (lib.rs, items 3 and 4); the functions here say
//! which part each does.
//!
//! Sequences are time-major inside ((T, B, ·), one step's rows contiguous); [`forward`] and
//! [`backward`] take and give batch-first (B, T, ·) like the worker.
//!
//! Each step has its plain reference (`Tape::step`, `cell_backward_reference`) and, on the
//! vector paths of [`crate::simd`], a twin that computes the same bits: the forward step fused
//! (recurrent product over W_hh packed once per call, gates and cell update in registers), the
//! backward cell vectorised, the per-step product dpre·W_hh over W_hh packed once per call.

use crate::math::{sigmoid, tanh};
use crate::simd::{self, CellGrad, Fast, Lhs, PackedB, PackedGates, StepIo, pool};
use crate::{Error, Result, check_input, check_len, gemm, swap_outer};

/// The weights of one layer: `w_ih` (4h × input), `w_hh` (4h × h), `b_ih`, `b_hh` (4h), gate rows
/// in the order i, f, g, o.
#[derive(Debug, Clone, Copy)]
pub struct LstmWeights<'a> {
    pub w_ih: &'a [f32],
    pub w_hh: &'a [f32],
    pub b_ih: &'a [f32],
    pub b_hh: &'a [f32],
    pub input: usize,
    pub hidden: usize,
}

impl LstmWeights<'_> {
    fn check(&self) -> Result<()> {
        if self.input == 0 || self.hidden == 0 {
            return Err(Error::Config(
                "an LSTM layer needs input and hidden sizes ≥ 1".into(),
            ));
        }
        let g = 4 * self.hidden;
        check_len("weight_ih", self.w_ih, g * self.input)?;
        check_len("weight_hh", self.w_hh, g * self.hidden)?;
        check_len("bias_ih", self.b_ih, g)?;
        check_len("bias_hh", self.b_hh, g)
    }
}

/// What forward keeps for backward, time-major. `h` and `c` hold T + 1 states: the initial one,
/// then one per step, so `h[t]` is h_{t−1} for step t (the input of its recurrent product).
#[derive(Debug, Clone)]
pub struct Tape {
    batch: usize,
    input: usize,
    hidden: usize,
    steps: usize,
    /// Inputs, (T, B, input).
    x: Vec<f32>,
    /// States, (T + 1, B, h).
    h: Vec<f32>,
    c: Vec<f32>,
    /// Activated gates i, f, g, o, (T, B, 4h).
    gates: Vec<f32>,
    /// tanh(c_t), (T, B, h).
    tanh_c: Vec<f32>,
}

impl Tape {
    /// An empty tape whose initial states are `state` (h0, c0, each B × h) or zeros.
    pub(crate) fn start(
        batch: usize,
        input: usize,
        hidden: usize,
        state: Option<(&[f32], &[f32])>,
    ) -> Tape {
        let (h, c) = match state {
            Some((h0, c0)) => (h0.to_vec(), c0.to_vec()),
            None => (vec![0.0; batch * hidden], vec![0.0; batch * hidden]),
        };
        Tape {
            batch,
            input,
            hidden,
            steps: 0,
            x: Vec::new(),
            h,
            c,
            gates: Vec::new(),
            tanh_c: Vec::new(),
        }
    }

    /// (B, T, input, hidden).
    pub fn shape(&self) -> (usize, usize, usize, usize) {
        (self.batch, self.steps, self.input, self.hidden)
    }

    /// One step's block of a (·, B, width) buffer.
    fn block(buf: &[f32], t: usize, rows: usize) -> &[f32] {
        &buf[t * rows..(t + 1) * rows]
    }

    /// The outputs h_0 … h_{T−1}, time-major (T, B, h).
    pub fn output_time_major(&self) -> &[f32] {
        &self.h[self.batch * self.hidden..]
    }

    /// The outputs, batch-first (B, T, h).
    pub fn output(&self) -> Vec<f32> {
        swap_outer(
            self.output_time_major(),
            self.steps,
            self.batch,
            self.hidden,
        )
    }

    /// The last step's output h_{T−1} (the initial h when no step has run), B × h.
    pub fn h_n(&self) -> &[f32] {
        Self::block(&self.h, self.steps, self.batch * self.hidden)
    }

    /// The last cell state, B × h.
    pub fn c_n(&self) -> &[f32] {
        Self::block(&self.c, self.steps, self.batch * self.hidden)
    }

    /// Room for `steps` more steps without reallocating, in buffers from the pool (the gates'
    /// too unless `gates_placed`: the caller put every step's input projection there already).
    fn reserve(&mut self, steps: usize, gates_placed: bool) {
        let (bi, bh) = (self.batch * self.input, self.batch * self.hidden);
        let gates_extra = if gates_placed { 0 } else { steps * 4 * bh };
        for (v, extra) in [
            (&mut self.x, steps * bi),
            (&mut self.h, steps * bh),
            (&mut self.c, steps * bh),
            (&mut self.gates, gates_extra),
            (&mut self.tanh_c, steps * bh),
        ] {
            if v.capacity() < v.len() + extra {
                let mut room = pool::take(v.len() + extra);
                room.extend_from_slice(v);
                pool::give(std::mem::replace(v, room));
            }
        }
    }

    /// [`Tape::step`] on a vector path, with W_hh packed by gate: the same bits, computed by
    /// the fused kernel straight into the tape. As in the reference, the input projection goes
    /// where the gates will be (`pre`; `None`: the caller put it there already), and the kernel
    /// turns it into them.
    fn step_fast(&mut self, f: Fast, w_hh: &PackedGates, x_t: &[f32], pre: Option<&[f32]>) {
        let (b, h) = (self.batch, self.hidden);
        let (bh, t) = (b * h, self.steps);
        self.x.extend_from_slice(x_t);
        self.h.resize((t + 2) * bh, 0.0);
        self.c.resize((t + 2) * bh, 0.0);
        match pre {
            Some(pre) => self.gates.extend_from_slice(pre),
            None => assert!(self.gates.len() >= (t + 1) * 4 * bh, "no input projection"),
        }
        self.tanh_c.resize((t + 1) * bh, 0.0);
        let (h_old, h_new) = self.h.split_at_mut((t + 1) * bh);
        let (c_old, c_new) = self.c.split_at_mut((t + 1) * bh);
        simd::lstm_step(
            f,
            w_hh,
            StepIo {
                batch: b,
                h_prev: &h_old[t * bh..],
                c_prev: &c_old[t * bh..],
                gates: &mut self.gates[t * 4 * bh..(t + 1) * 4 * bh],
                c: c_new,
                tanh_c: &mut self.tanh_c[t * bh..],
                h: h_new,
            },
        );
        self.steps += 1;
    }

    /// Runs one step on the input projection `xp` of this step (B × 4h, consumed as the
    /// pre-activations): adds h_{t−1}·W_hhᵀ, then the cell. The reference.
    fn step(&mut self, w: LstmWeights<'_>, x_t: &[f32], mut pre: Vec<f32>) {
        let (b, h) = (self.batch, self.hidden);
        let t = self.steps;
        let h_prev = Self::block(&self.h, t, b * h);
        // pre[b][r] = chain_k(h_{t−1}[b][k] · W_hh[r][k], init = xp[b][r]).
        gemm::matmul_abt_acc(&mut pre, h_prev, w.w_hh, b, 4 * h, h);
        let c_prev = Self::block(&self.c, t, b * h).to_vec();
        let mut h_new = vec![0.0; b * h];
        let mut c_new = vec![0.0; b * h];
        let mut tanh_c = vec![0.0; b * h];
        for row in 0..b {
            let p = &mut pre[row * 4 * h..(row + 1) * 4 * h];
            for j in 0..h {
                let i = sigmoid(p[j]);
                let f = sigmoid(p[h + j]);
                let g = tanh(p[2 * h + j]);
                let o = sigmoid(p[3 * h + j]);
                let k = row * h + j;
                // c_t = f·c_{t−1} + i·g: i·g rounded, then one FMA.
                c_new[k] = f.mul_add(c_prev[k], i * g);
                tanh_c[k] = tanh(c_new[k]);
                h_new[k] = o * tanh_c[k];
                // The activated gates overwrite the pre-activations: backward needs only these.
                (p[j], p[h + j], p[2 * h + j], p[3 * h + j]) = (i, f, g, o);
            }
        }
        self.x.extend_from_slice(x_t);
        self.h.extend_from_slice(&h_new);
        self.c.extend_from_slice(&c_new);
        self.gates.extend_from_slice(&pre);
        self.tanh_c.extend_from_slice(&tanh_c);
        self.steps += 1;
    }

    /// One step on the input `x_t` (B × input): its projection, then [`Tape::step`]. The
    /// decoder's way in; the same operations as a whole-sequence [`forward_time_major`].
    pub(crate) fn push(&mut self, w: LstmWeights<'_>, x_t: &[f32]) {
        let xp = input_projection(w, x_t, self.batch);
        match simd::fast() {
            Some(f) => self.step_fast(f, &PackedGates::new(f, w.w_hh, w.hidden), x_t, Some(&xp)),
            None => self.step(w, x_t, xp),
        }
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        for v in [
            &mut self.x,
            &mut self.h,
            &mut self.c,
            &mut self.gates,
            &mut self.tanh_c,
        ] {
            pool::give(std::mem::take(v));
        }
    }
}

/// `xp[n][r] = chain_k(x[n][k] · W_ih[r][k], init = b_ih[r] + b_hh[r])` for `rows` input rows.
fn input_projection(w: LstmWeights<'_>, x: &[f32], rows: usize) -> Vec<f32> {
    // Every value is written (the product starts from the bias), so stale ones do not matter.
    let mut xp = pool::scratch(rows * 4 * w.hidden);
    project_into(w, x, rows, &mut xp);
    xp
}

/// [`input_projection`] into `out` (rows × 4h, every value written).
fn project_into(w: LstmWeights<'_>, x: &[f32], rows: usize, out: &mut [f32]) {
    let bias: Vec<f32> = w.b_ih.iter().zip(w.b_hh).map(|(a, b)| a + b).collect();
    gemm::matmul_abt_bias(out, x, w.w_ih, &bias, rows, 4 * w.hidden, w.input);
}

fn check_run(w: LstmWeights<'_>, batch: usize, steps: usize) -> Result<()> {
    w.check()?;
    if batch == 0 || steps == 0 {
        return Err(Error::Empty(format!(
            "an LSTM input of batch {batch} and {steps} steps"
        )));
    }
    Ok(())
}

fn check_state(
    name: &str,
    state: Option<(&[f32], &[f32])>,
    batch: usize,
    hidden: usize,
) -> Result<()> {
    if let Some((h, c)) = state {
        check_input(&format!("{name} h"), h, batch * hidden)?;
        check_input(&format!("{name} c"), c, batch * hidden)?;
    }
    Ok(())
}

/// Runs the layer over `x` (B, T, input), from `state` = (h0, c0) (each B × h) or zeros.
pub fn forward(
    w: LstmWeights<'_>,
    x: &[f32],
    batch: usize,
    steps: usize,
    state: Option<(&[f32], &[f32])>,
) -> Result<Tape> {
    check_run(w, batch, steps)?;
    check_input("LSTM input", x, batch * steps * w.input)?;
    check_state("initial", state, batch, w.hidden)?;
    // Checked above: the transposed copy holds the same values, so it is not scanned again.
    let x_tm = swap_outer(x, batch, steps, w.input);
    Ok(forward_unchecked(w, &x_tm, batch, steps, state))
}

/// [`forward`] for a time-major input (T, B, input).
pub fn forward_time_major(
    w: LstmWeights<'_>,
    x: &[f32],
    batch: usize,
    steps: usize,
    state: Option<(&[f32], &[f32])>,
) -> Result<Tape> {
    check_run(w, batch, steps)?;
    check_input("LSTM input", x, batch * steps * w.input)?;
    check_state("initial", state, batch, w.hidden)?;
    Ok(forward_unchecked(w, x, batch, steps, state))
}

pub(crate) fn forward_unchecked(
    w: LstmWeights<'_>,
    x: &[f32],
    batch: usize,
    steps: usize,
    state: Option<(&[f32], &[f32])>,
) -> Tape {
    let mut tape = Tape::start(batch, w.input, w.hidden, state);
    let rows = batch * 4 * w.hidden;
    let x_t = |t: usize| &x[t * batch * w.input..(t + 1) * batch * w.input];
    // The input projection of all steps in one product: each element's chain is the one a
    // single step would compute.
    if let Some(f) = simd::fast() {
        // Straight into the tape, where the fused step turns each step's block into its gates.
        let mut gates = pool::scratch(steps * rows);
        project_into(w, x, steps * batch, &mut gates);
        pool::give(std::mem::replace(&mut tape.gates, gates));
        tape.reserve(steps, true);
        // W_hh packed once for all steps.
        let packed = PackedGates::new(f, w.w_hh, w.hidden);
        for t in 0..steps {
            tape.step_fast(f, &packed, x_t(t), None);
        }
        return tape;
    }
    tape.reserve(steps, false);
    let xp = input_projection(w, x, steps * batch);
    for t in 0..steps {
        tape.step(w, x_t(t), xp[t * rows..(t + 1) * rows].to_vec());
    }
    pool::give(xp);
    tape
}

/// The gradients of one backward call. The two bias gradients are equal (both biases enter the
/// same sum); both are given so they line up with the parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LstmGrads {
    pub w_ih: Vec<f32>,
    pub w_hh: Vec<f32>,
    pub b_ih: Vec<f32>,
    pub b_hh: Vec<f32>,
    /// ∂L/∂x, in the layout of the input given ((B, T, in) from [`backward`], (T, B, in) from
    /// [`backward_time_major`]).
    pub x: Vec<f32>,
    /// ∂L/∂h0 and ∂L/∂c0, B × h each.
    pub h0: Vec<f32>,
    pub c0: Vec<f32>,
}

/// Backpropagation through time for `tape`: `dy` is ∂L/∂output (B, T, h); `dh_n` and `dc_n` are
/// gradients on the final states (B × h each), e.g. from a decoder they initialised.
pub fn backward(
    w: LstmWeights<'_>,
    tape: &Tape,
    dy: &[f32],
    dh_n: Option<&[f32]>,
    dc_n: Option<&[f32]>,
) -> Result<LstmGrads> {
    let (b, t, h) = (tape.batch, tape.steps, tape.hidden);
    check_input("LSTM output gradient", dy, b * t * h)?;
    let mut g = backward_time_major(w, tape, &swap_outer(dy, b, t, h), dh_n, dc_n)?;
    g.x = swap_outer(&g.x, t, b, w.input);
    Ok(g)
}

/// [`backward`] with a time-major `dy` (T, B, h); the returned `x` is time-major too.
pub fn backward_time_major(
    w: LstmWeights<'_>,
    tape: &Tape,
    dy: &[f32],
    dh_n: Option<&[f32]>,
    dc_n: Option<&[f32]>,
) -> Result<LstmGrads> {
    check_run(w, tape.batch, tape.steps)?;
    if (w.input, w.hidden) != (tape.input, tape.hidden) {
        return Err(Error::Config(format!(
            "weights for input {} and hidden {} on a tape of input {} and hidden {}",
            w.input, w.hidden, tape.input, tape.hidden
        )));
    }
    let (b, h) = (tape.batch, tape.hidden);
    check_input("LSTM output gradient", dy, tape.steps * b * h)?;
    if let Some(d) = dh_n {
        check_input("final h gradient", d, b * h)?;
    }
    if let Some(d) = dc_n {
        check_input("final c gradient", d, b * h)?;
    }
    Ok(backward_unchecked(w, tape, dy, dh_n, dc_n))
}

pub(crate) fn backward_unchecked(
    w: LstmWeights<'_>,
    tape: &Tape,
    dy: &[f32],
    dh_n: Option<&[f32]>,
    dc_n: Option<&[f32]>,
) -> LstmGrads {
    let (b, h, steps) = (tape.batch, tape.hidden, tape.steps);
    let bh = b * h;
    // Every step's block is written by its cell backward before anything reads it.
    let mut dg = pool::scratch(steps * b * 4 * h);
    // The last step's total ∂L/∂h: its output gradient, plus the caller's on the final h if any.
    let mut dh = Tape::block(dy, steps - 1, bh).to_vec();
    if let Some(d) = dh_n {
        for (a, c) in dh.iter_mut().zip(d) {
            *a += c;
        }
    }
    let mut dc = dc_n.map_or_else(|| vec![0.0; bh], <[f32]>::to_vec);
    let fast = simd::fast();
    // W_hh packed once for the products dpre_t·W_hh of all steps.
    let packed = fast.map(|f| PackedB::from_kn(f, w.w_hh, 4 * h, h));
    for t in (0..steps).rev() {
        let dg_t = &mut dg[t * b * 4 * h..(t + 1) * b * 4 * h];
        cell_backward(tape, t, &dh, &mut dc, dg_t);
        // ∂L/∂h_{t−1}: the output gradient of step t−1 (0 for h0), then the recurrence.
        if t > 0 {
            dh.copy_from_slice(Tape::block(dy, t - 1, bh));
        } else {
            dh.fill(0.0);
        }
        match (fast, &packed) {
            (Some(f), Some(p)) => simd::gemm(f, &mut dh, h, b, Lhs::Rows(dg_t, 4 * h), p),
            _ => recurrent_grad(w, dg_t, &mut dh, b),
        }
    }
    let (w_ih, w_hh, bias) = param_grads(w, tape, &dg);
    // ∂L/∂x for all steps in one product (each element's chain is the per-step one).
    let x = input_grad(w, &dg, steps * b);
    pool::give(dg);
    LstmGrads {
        w_ih,
        w_hh,
        b_ih: bias.clone(),
        b_hh: bias,
        x,
        h0: dh,
        c0: dc,
    }
}

/// Step t of backpropagation through time: from the total ∂L/∂h_t (`dh`) and the carry ∂L/∂c_t
/// from step t+1 (`dc`), writes ∂L/∂pre_t into `dg` (B × 4h, gate rows i, f, g, o) and leaves
/// the carry ∂L/∂c_{t−1} in `dc`.
pub(crate) fn cell_backward(tape: &Tape, t: usize, dh: &[f32], dc: &mut [f32], dg: &mut [f32]) {
    match simd::fast() {
        Some(f) => {
            let (b, h) = (tape.batch, tape.hidden);
            simd::cell_backward(
                f,
                CellGrad {
                    batch: b,
                    hidden: h,
                    gates: Tape::block(&tape.gates, t, b * 4 * h),
                    c_prev: Tape::block(&tape.c, t, b * h),
                    tanh_c: Tape::block(&tape.tanh_c, t, b * h),
                    dh,
                    dc,
                    dg,
                },
            )
        }
        None => cell_backward_reference(tape, t, dh, dc, dg),
    }
}

/// [`cell_backward`]'s plain loop: the reference.
fn cell_backward_reference(tape: &Tape, t: usize, dh: &[f32], dc: &mut [f32], dg: &mut [f32]) {
    let (b, h) = (tape.batch, tape.hidden);
    let gates = Tape::block(&tape.gates, t, b * 4 * h);
    let c_prev = Tape::block(&tape.c, t, b * h);
    let tanh_c = Tape::block(&tape.tanh_c, t, b * h);
    for row in 0..b {
        let a = &gates[row * 4 * h..(row + 1) * 4 * h];
        let d = &mut dg[row * 4 * h..(row + 1) * 4 * h];
        for j in 0..h {
            let k = row * h + j;
            let (i, f, g, o) = (a[j], a[h + j], a[2 * h + j], a[3 * h + j]);
            let tc = tanh_c[k];
            // h_t = o·tanh(c_t): through tanh' = 1 − tc², plus the carry from step t+1.
            let dc_t = (dh[k] * o).mul_add((-tc).mul_add(tc, 1.0), dc[k]);
            // c_t = f·c_{t−1} + i·g; σ' = s(1 − s), tanh' = 1 − g².
            d[j] = (dc_t * g) * (i * (1.0 - i));
            d[h + j] = (dc_t * c_prev[k]) * (f * (1.0 - f));
            d[2 * h + j] = (dc_t * i) * (-g).mul_add(g, 1.0);
            d[3 * h + j] = (dh[k] * tc) * (o * (1.0 - o));
            dc[k] = dc_t * f;
        }
    }
}

/// `dh_prev[b][k] = chain_r(dg_t[b][r] · W_hh[r][k], init = dh_prev[b][k])`: adds the recurrent
/// gradient onto what the caller put there (the output gradient of step t−1, or 0).
pub(crate) fn recurrent_grad(w: LstmWeights<'_>, dg_t: &[f32], dh_prev: &mut [f32], batch: usize) {
    gemm::matmul_ab_acc(dh_prev, dg_t, w.w_hh, batch, w.hidden, 4 * w.hidden);
}

/// `dx[n][k] = chain_r(dg[n][r] · W_ih[r][k], init = 0)` for `rows` rows.
pub(crate) fn input_grad(w: LstmWeights<'_>, dg: &[f32], rows: usize) -> Vec<f32> {
    let mut dx = vec![0.0; rows * w.input];
    gemm::matmul_ab_acc(&mut dx, dg, w.w_ih, rows, w.input, 4 * w.hidden);
    dx
}

/// (dW_ih, dW_hh, db): reductions over K = t·B + b ascending of `dg` (T, B, 4h) against the
/// inputs and the previous states the tape saved.
pub(crate) fn param_grads(
    w: LstmWeights<'_>,
    tape: &Tape,
    dg: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (h, rows) = (tape.hidden, tape.steps * tape.batch);
    let mut w_ih = vec![0.0; 4 * h * w.input];
    gemm::matmul_atb(&mut w_ih, dg, &tape.x, 4 * h, w.input, rows);
    // h[0..T] are the states h_{t−1} that step t multiplied by W_hh.
    let mut w_hh = vec![0.0; 4 * h * h];
    gemm::matmul_atb(&mut w_hh, dg, &tape.h[..rows * h], 4 * h, h, rows);
    let mut bias = vec![0.0; 4 * h];
    gemm::sum_rows(&mut bias, dg, rows, 4 * h);
    (w_ih, w_hh, bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, dot, values};

    struct Layer {
        w_ih: Vec<f32>,
        w_hh: Vec<f32>,
        b_ih: Vec<f32>,
        b_hh: Vec<f32>,
        input: usize,
        hidden: usize,
    }

    impl Layer {
        fn new(input: usize, hidden: usize, seed: u64) -> Layer {
            Layer {
                w_ih: values(seed, 4 * hidden * input, 0.6),
                w_hh: values(seed + 1, 4 * hidden * hidden, 0.6),
                b_ih: values(seed + 2, 4 * hidden, 0.6),
                b_hh: values(seed + 3, 4 * hidden, 0.6),
                input,
                hidden,
            }
        }
        fn weights(&self) -> LstmWeights<'_> {
            LstmWeights {
                w_ih: &self.w_ih,
                w_hh: &self.w_hh,
                b_ih: &self.b_ih,
                b_hh: &self.b_hh,
                input: self.input,
                hidden: self.hidden,
            }
        }
    }

    /// One step by hand with h = 1, in = 1: every gate pre-activation is x·w + b + h0·u.
    #[test]
    fn one_step_by_hand() {
        let l = Layer {
            w_ih: vec![0.5, -0.5, 1.0, 2.0],
            w_hh: vec![0.25, 0.25, -1.0, 0.5],
            b_ih: vec![0.0, 1.0, 0.0, -1.0],
            b_hh: vec![0.125, 0.0, 0.5, 0.0],
            input: 1,
            hidden: 1,
        };
        let (x, h0, c0) = (0.75f32, 0.5f32, -2.0f32);
        let tape = forward(l.weights(), &[x], 1, 1, Some((&[h0], &[c0]))).unwrap();
        let pre = |r: usize| {
            (x as f64) * l.w_ih[r] as f64
                + l.b_ih[r] as f64
                + l.b_hh[r] as f64
                + h0 as f64 * l.w_hh[r] as f64
        };
        let s = |z: f64| 1.0 / (1.0 + (-z).exp());
        let (i, f, g, o) = (s(pre(0)), s(pre(1)), pre(2).tanh(), s(pre(3)));
        let c = f * c0 as f64 + i * g;
        let h = o * c.tanh();
        assert!(
            (tape.c_n()[0] as f64 - c).abs() < 1e-6,
            "{} vs {c}",
            tape.c_n()[0]
        );
        assert!(
            (tape.h_n()[0] as f64 - h).abs() < 1e-6,
            "{} vs {h}",
            tape.h_n()[0]
        );
        assert_eq!(tape.output(), vec![tape.h_n()[0]]);
    }

    /// Finite differences for every gradient the layer gives, with a loss on the outputs and on
    /// both final states, from a given initial state, over several steps.
    #[test]
    fn gradients_match_finite_differences() {
        let (b, t, input, hidden) = (2, 5, 3, 4);
        let l = Layer::new(input, hidden, 10);
        let x = values(20, b * t * input, 1.0);
        let h0 = values(21, b * hidden, 0.5);
        let c0 = values(22, b * hidden, 0.5);
        let wy = values(23, b * t * hidden, 1.0);
        let wh = values(24, b * hidden, 1.0);
        let wc = values(25, b * hidden, 1.0);
        let tape = forward(l.weights(), &x, b, t, Some((&h0, &c0))).unwrap();
        let g = backward(l.weights(), &tape, &wy, Some(&wh), Some(&wc)).unwrap();
        assert_eq!(g.b_ih, g.b_hh);
        let objective = |w: LstmWeights<'_>, x: &[f32], h0: &[f32], c0: &[f32]| {
            let tape = forward(w, x, b, t, Some((h0, c0))).unwrap();
            dot(&wy, &tape.output()) + dot(&wh, tape.h_n()) + dot(&wc, tape.c_n())
        };
        let lw = l.weights();
        let (hs, tol) = (1e-2, 2e-3);
        check_grad("lstm dW_ih", &l.w_ih, &g.w_ih, hs, tol, |p| {
            objective(LstmWeights { w_ih: p, ..lw }, &x, &h0, &c0)
        });
        check_grad("lstm dW_hh", &l.w_hh, &g.w_hh, hs, tol, |p| {
            objective(LstmWeights { w_hh: p, ..lw }, &x, &h0, &c0)
        });
        check_grad("lstm db_ih", &l.b_ih, &g.b_ih, hs, tol, |p| {
            objective(LstmWeights { b_ih: p, ..lw }, &x, &h0, &c0)
        });
        check_grad("lstm db_hh", &l.b_hh, &g.b_hh, hs, tol, |p| {
            objective(LstmWeights { b_hh: p, ..lw }, &x, &h0, &c0)
        });
        check_grad("lstm dx", &x, &g.x, hs, tol, |p| objective(lw, p, &h0, &c0));
        check_grad("lstm dh0", &h0, &g.h0, hs, tol, |p| {
            objective(lw, &x, p, &c0)
        });
        check_grad("lstm dc0", &c0, &g.c0, hs, tol, |p| {
            objective(lw, &x, &h0, p)
        });
    }

    /// The decoder's way (one step at a time, projection per step) is the sequence's, bit for bit.
    #[test]
    fn step_by_step_equals_the_whole_sequence() {
        let (b, t, input, hidden) = (3, 6, 2, 5);
        let l = Layer::new(input, hidden, 30);
        let x_tm = values(31, t * b * input, 1.0);
        let whole = forward_time_major(l.weights(), &x_tm, b, t, None).unwrap();
        let mut steps = Tape::start(b, input, hidden, None);
        for s in 0..t {
            steps.push(l.weights(), &x_tm[s * b * input..(s + 1) * b * input]);
        }
        assert_eq!(whole.output_time_major(), steps.output_time_major());
        assert_eq!(whole.c_n(), steps.c_n());
        assert_eq!(whole.gates, steps.gates);
    }

    /// Batch rows are independent: row b of a batch gives the bits row b gives alone.
    #[test]
    fn batch_rows_are_independent() {
        let (b, t, input, hidden) = (3, 4, 2, 3);
        let l = Layer::new(input, hidden, 40);
        let x = values(41, b * t * input, 1.0);
        let all = forward(l.weights(), &x, b, t, None).unwrap().output();
        for r in 0..b {
            let one = forward(
                l.weights(),
                &x[r * t * input..(r + 1) * t * input],
                1,
                t,
                None,
            )
            .unwrap();
            assert_eq!(one.output(), all[r * t * hidden..(r + 1) * t * hidden]);
        }
    }

    /// Everything a tape holds, as bits.
    fn tape_bits(t: &Tape) -> Vec<Vec<u32>> {
        [&t.x, &t.h, &t.c, &t.gates, &t.tanh_c]
            .iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    }

    fn grad_bits(g: &LstmGrads) -> Vec<Vec<u32>> {
        [&g.w_ih, &g.w_hh, &g.b_ih, &g.b_hh, &g.x, &g.h0, &g.c0]
            .iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect())
            .collect()
    }

    /// Forward (whole sequence and step by step) and backward on every vector path give the
    /// scalar reference's bits: random shapes around the tiles (3 batch rows × 8 hidden units in
    /// the fused step, 6 × 16 in the products), with and without initial states and final-state
    /// gradients, and pre-activations large enough to reach the gates' saturated branches.
    #[test]
    fn vector_paths_equal_the_reference() {
        let vector: Vec<simd::Isa> = simd::supported_isas()
            .into_iter()
            .filter(|&i| i != simd::Isa::Scalar)
            .collect();
        let mut seed = 1000u64;
        for round in 0..60 {
            let pick = |s: u64, options: &[usize]| {
                options[(crate::rng::mix(s) % options.len() as u64) as usize]
            };
            let b = pick(seed, &[1, 2, 3, 4, 5, 7, 9, 13]);
            let t = pick(seed + 1, &[1, 2, 3, 6]);
            let input = pick(seed + 2, &[1, 2, 5, 8, 17]);
            let hidden = pick(seed + 3, &[1, 3, 7, 8, 9, 16, 17, 24, 33]);
            // Weights up to ±3 push some pre-activations past the functions' switches.
            let scale = if round % 3 == 0 { 3.0 } else { 0.6 };
            let mut l = Layer::new(input, hidden, seed + 4);
            for v in [&mut l.w_ih, &mut l.w_hh, &mut l.b_ih, &mut l.b_hh] {
                v.iter_mut().for_each(|x| *x *= scale / 0.6);
            }
            let x = values(seed + 5, b * t * input, 2.0);
            let h0 = values(seed + 6, b * hidden, 1.0);
            let c0 = values(seed + 7, b * hidden, 4.0);
            let dy = values(seed + 8, b * t * hidden, 1.0);
            let dh_n = values(seed + 9, b * hidden, 1.0);
            let dc_n = values(seed + 10, b * hidden, 1.0);
            seed += 11;
            let state = (round % 2 == 0).then_some((h0.as_slice(), c0.as_slice()));
            let finals = round % 4 < 2;
            let run = || {
                let w = l.weights();
                let tape = forward(w, &x, b, t, state).unwrap();
                let g = backward(
                    w,
                    &tape,
                    &dy,
                    finals.then_some(dh_n.as_slice()),
                    finals.then_some(dc_n.as_slice()),
                )
                .unwrap();
                // The decoder's way: one step at a time from the same state.
                let x_tm = swap_outer(&x, b, t, input);
                let mut steps = Tape::start(b, input, hidden, state);
                for s in 0..t {
                    steps.push(w, &x_tm[s * b * input..(s + 1) * b * input]);
                }
                (tape_bits(&tape), grad_bits(&g), tape_bits(&steps))
            };
            let want = simd::with_isa(simd::Isa::Scalar, run);
            for &isa in &vector {
                let threads = 1 + round % 3;
                let got = simd::with_threads(threads, || simd::with_isa(isa, run));
                let what = format!(
                    "{} on {threads} threads, b {b} t {t} in {input} h {hidden}",
                    isa.name()
                );
                assert_eq!(got.0, want.0, "{what}: forward");
                assert_eq!(got.1, want.1, "{what}: backward");
                assert_eq!(got.2, want.2, "{what}: step by step");
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let l = Layer::new(2, 3, 50);
        let w = l.weights();
        assert!(matches!(forward(w, &[], 0, 4, None), Err(Error::Empty(_))));
        assert!(matches!(forward(w, &[], 2, 0, None), Err(Error::Empty(_))));
        assert!(matches!(
            forward(w, &[0.0; 7], 1, 4, None),
            Err(Error::Shape {
                expected: 8,
                got: 7,
                ..
            })
        ));
        let mut x = vec![0.0; 8];
        x[5] = f32::NAN;
        assert!(matches!(
            forward(w, &x, 1, 4, None),
            Err(Error::NonFinite { index: 5, .. })
        ));
        assert!(matches!(
            forward(w, &[0.0; 8], 1, 4, Some((&[0.0; 3], &[0.0; 2]))),
            Err(Error::Shape { .. })
        ));
        let bad = LstmWeights {
            w_hh: &l.w_hh[1..],
            ..w
        };
        assert!(matches!(
            forward(bad, &[0.0; 8], 1, 4, None),
            Err(Error::Shape { .. })
        ));
        let tape = forward(w, &[0.0; 8], 1, 4, None).unwrap();
        assert!(matches!(
            backward(w, &tape, &[0.0; 11], None, None),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            backward(w, &tape, &[0.0; 12], Some(&[f32::NAN; 3]), None),
            Err(Error::NonFinite { .. })
        ));
        let other = Layer::new(3, 3, 51);
        assert!(matches!(
            backward(other.weights(), &tape, &[0.0; 12], None, None),
            Err(Error::Config(_))
        ));
    }
}
