//! MagFluxLSTM and MagFluxEnc-Dec (docs/src/semantics.md §9) on the scalar kernels: the same
//! parameters, names and order as `magpipe_worker::model`, the same forward (dropout between
//! stacked layers in training, the Enc-Dec decoder's teacher forcing with one caller-supplied
//! draw per step), and a hand-written backward for every parameter.
//!
//! - **MagFluxLSTM:** an L-layer LSTM (input 5, hidden h); its top layer's output at the last
//!   step goes through Linear(h → P).
//! - **MagFluxEnc-Dec:** an L-layer encoder whose final (h, c) of every layer start an L-layer
//!   decoder of input size 1, run for P single steps from the input 0.0; each step's top output
//!   goes through Linear(h → 1). In training with teacher forcing, after step t one draw shared
//!   by the batch gives step t+1 the target y_t when `draw() < ratio`, else the prediction ŷ_t,
//!   which is not detached: its gradient flows back into step t. A draw is also made after the
//!   last step (unused), as published.
//!
//! Dropout masks come from [`Model::masks`] in the order forward needs them (encoder layers
//! 0..L−1, then per decoder step its layers 0..L−1), each the shape of the layer's output in the
//! worker's batch-first layout ((B, T, h) for the encoder, (B, 1, h) for a decoder step), so
//! they are the masks the worker's portable path draws for the same key.

use crate::adam::{Adam, clip_grad_norm};
use crate::linear::{self, LinearWeights};
use crate::loss::Loss;
use crate::lstm::{self, LstmWeights, Tape};
pub use crate::param::Param;
use crate::rng::{DropoutMasks, init_uniform};
use crate::{Error, Result, check_input, swap_outer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Stacked LSTM, last step of the top layer → Linear(h → P).
    Lstm,
    /// LSTM encoder whose final states start an LSTM decoder run for P single steps.
    EncDec,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub input: usize,
    pub hidden: usize,
    pub layers: usize,
    pub dropout: f64,
    pub horizon: usize,
}

impl ModelConfig {
    fn check(&self) -> Result<()> {
        if self.input == 0 || self.hidden == 0 || self.layers == 0 || self.horizon == 0 {
            return Err(Error::Config(format!(
                "input {}, hidden {}, layers {} and horizon {} must all be at least 1",
                self.input, self.hidden, self.layers, self.horizon
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!(
                "dropout {} is outside [0, 1)",
                self.dropout
            )));
        }
        Ok(())
    }

    /// The outputs of the head: P for MagFluxLSTM, 1 (one step) for Enc-Dec.
    fn head_outputs(&self) -> usize {
        match self.arch {
            Arch::Lstm => self.horizon,
            Arch::EncDec => 1,
        }
    }

    /// (name, shape, init bound) of every parameter, in the worker's order.
    fn layout(&self) -> Vec<(String, Vec<usize>, f64)> {
        let h = self.hidden;
        // PyTorch: every LSTM weight and bias ~ U(±1/√h); Linear ~ U(±1/√fan_in), fan_in = h.
        let k = 1.0 / (h as f64).sqrt();
        let mut out = Vec::new();
        let mut stack = |name: &str, input: usize| {
            for l in 0..self.layers {
                let inp = if l == 0 { input } else { h };
                out.push((format!("{name}.weight_ih_l{l}"), vec![4 * h, inp], k));
                out.push((format!("{name}.weight_hh_l{l}"), vec![4 * h, h], k));
                out.push((format!("{name}.bias_ih_l{l}"), vec![4 * h], k));
                out.push((format!("{name}.bias_hh_l{l}"), vec![4 * h], k));
            }
        };
        stack("encoder", self.input);
        if self.arch == Arch::EncDec {
            stack("decoder", 1);
        }
        out.push(("head.weight".into(), vec![self.head_outputs(), h], k));
        out.push(("head.bias".into(), vec![self.head_outputs()], k));
        out
    }
}

/// Teacher forcing for one forward pass: targets (B, P), the ratio, and the source of uniform
/// draws in [0, 1) (the worker's `TeacherForcing`).
pub struct TeacherForcing<'a> {
    pub targets: &'a [f32],
    pub ratio: f64,
    pub draw: &'a mut dyn FnMut() -> f64,
}

/// Everything forward keeps for backward, and the predictions.
#[derive(Debug, Clone)]
pub struct Trace {
    config: ModelConfig,
    batch: usize,
    steps: usize,
    encoder: Vec<Tape>,
    /// The dropout mask applied to encoder layer l's output, time-major, for l < L − 1.
    encoder_masks: Vec<Option<Vec<f32>>>,
    decoder: Vec<Tape>,
    /// [step][layer]: the dropout mask on a decoder layer's output at a step, B × h.
    decoder_masks: Vec<Vec<Option<Vec<f32>>>>,
    /// The head's input rows: (B, h) for MagFluxLSTM; (P, B, h) for Enc-Dec, row = step·B + b.
    head_in: Vec<f32>,
    /// Enc-Dec: whether step s's input was ŷ_{s−1} (fed back, so gradient flows into it).
    fed_back: Vec<bool>,
    pred: Vec<f32>,
}

impl Trace {
    /// The predictions, (B, P).
    pub fn pred(&self) -> &[f32] {
        &self.pred
    }

    pub fn batch(&self) -> usize {
        self.batch
    }
}

/// One optimisation step's settings (the worker's `TrainConfig` fields that a step reads).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepConfig {
    pub loss: Loss,
    /// Multiplies the loss before backward (×100 for hybrid in the study).
    pub loss_scale: f64,
    pub teacher_forcing_ratio: f64,
    /// The gradient-norm bound (1.0 in the study).
    pub clip: f64,
}

/// What a step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The unscaled loss.
    pub loss: f32,
    /// The gradient norm before clipping.
    pub grad_norm: f64,
}

#[derive(Debug, Clone)]
pub struct Model {
    config: ModelConfig,
    params: Vec<Param>,
    /// Dropout masks of the current step; the trainer keys them per step
    /// ([`DropoutMasks::begin_step`]), as with the worker's model.
    pub masks: DropoutMasks,
}

/// Gradients on the final (h, c) of every encoder layer, from the decoder they start.
type FinalStateGrads<'a> = (&'a [Vec<f32>], &'a [Vec<f32>]);

/// Which LSTM stack a layer belongs to.
#[derive(Debug, Clone, Copy)]
enum Stack {
    Encoder,
    Decoder,
}

impl Model {
    /// A model with PyTorch's initial distributions drawn from the counter-based generator:
    /// parameter number i (in [`Model::params`] order) gets `init_uniform(seed, i, n, bound)`.
    pub fn new(config: &ModelConfig, seed: u64) -> Result<Model> {
        config.check()?;
        let params = config
            .layout()
            .into_iter()
            .enumerate()
            .map(|(i, (name, shape, bound))| {
                let n = shape.iter().product();
                Param {
                    name,
                    shape,
                    data: init_uniform(seed, i as u64, n, bound),
                }
            })
            .collect();
        Ok(Model {
            config: config.clone(),
            params,
            masks: DropoutMasks::default(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The parameters in the worker's order: encoder layers (weight_ih, weight_hh, bias_ih,
    /// bias_hh each), decoder layers for Enc-Dec, head weight and bias.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Replaces a parameter's values (e.g. with libtorch's, to compare the two).
    pub fn set_param(&mut self, name: &str, data: &[f32]) -> Result<()> {
        let p = self
            .params
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::UnknownParam(name.to_string()))?;
        check_input(name, data, p.data.len())?;
        p.data.copy_from_slice(data);
        Ok(())
    }

    /// Layer `l` of a stack.
    fn layer(&self, stack: Stack, l: usize) -> LstmWeights<'_> {
        let (base, input) = match stack {
            Stack::Encoder => (0, self.config.input),
            Stack::Decoder => (4 * self.config.layers, 1),
        };
        let p = &self.params[base + 4 * l..base + 4 * l + 4];
        LstmWeights {
            w_ih: &p[0].data,
            w_hh: &p[1].data,
            b_ih: &p[2].data,
            b_hh: &p[3].data,
            input: if l == 0 { input } else { self.config.hidden },
            hidden: self.config.hidden,
        }
    }

    fn head(&self) -> LinearWeights<'_> {
        let n = self.params.len();
        LinearWeights {
            w: &self.params[n - 2].data,
            b: &self.params[n - 1].data,
            input: self.config.hidden,
            output: self.config.head_outputs(),
        }
    }

    /// The next dropout mask for layer `l`'s output of `rows` × h values, when dropout applies
    /// there: in training, p > 0, and not after the top layer.
    fn dropout_mask(&self, l: usize, train: bool, rows: usize) -> Option<Vec<f32>> {
        let c = &self.config;
        (train && c.dropout > 0.0 && l + 1 < c.layers)
            .then(|| self.masks.next(rows * c.hidden, c.dropout))
    }

    /// `x` (B, T, input) → predictions (B, P), in a [`Trace`] for backward. `train` switches
    /// dropout on; teacher forcing applies to Enc-Dec in training only (no draws otherwise).
    pub fn forward(
        &self,
        x: &[f32],
        batch: usize,
        steps: usize,
        train: bool,
        tf: Option<TeacherForcing<'_>>,
    ) -> Result<Trace> {
        let c = &self.config;
        if batch == 0 || steps == 0 {
            return Err(Error::Empty(format!(
                "a model input of batch {batch} and {steps} steps"
            )));
        }
        check_input("model input", x, batch * steps * c.input)?;
        let tf = tf.filter(|_| train && c.arch == Arch::EncDec);
        if let Some(f) = &tf {
            check_input("teacher-forcing targets", f.targets, batch * c.horizon)?;
            if !f.ratio.is_finite() {
                return Err(Error::Config(format!("teacher-forcing ratio {}", f.ratio)));
            }
        }
        let x_tm = swap_outer(x, batch, steps, c.input);
        let (encoder, encoder_masks) = self.encode(x_tm, batch, steps, train);
        let mut trace = Trace {
            config: c.clone(),
            batch,
            steps,
            encoder,
            encoder_masks,
            decoder: Vec::new(),
            decoder_masks: Vec::new(),
            head_in: Vec::new(),
            fed_back: Vec::new(),
            pred: Vec::new(),
        };
        match c.arch {
            Arch::Lstm => {
                // The top layer's output at the last step (no dropout after the top layer).
                trace.head_in = trace.encoder[c.layers - 1].h_n().to_vec();
                trace.pred = linear::forward_unchecked(self.head(), &trace.head_in, batch);
            }
            Arch::EncDec => self.decode(&mut trace, train, tf),
        }
        Ok(trace)
    }

    /// The encoder stack over the time-major input; each layer's output, times its dropout mask
    /// when there is one, is the next layer's input.
    fn encode(
        &self,
        x_tm: Vec<f32>,
        batch: usize,
        steps: usize,
        train: bool,
    ) -> (Vec<Tape>, Vec<Option<Vec<f32>>>) {
        let h = self.config.hidden;
        let mut input = x_tm;
        let (mut tapes, mut masks) = (Vec::new(), Vec::new());
        for l in 0..self.config.layers {
            let tape =
                lstm::forward_unchecked(self.layer(Stack::Encoder, l), &input, batch, steps, None);
            // Drawn in the worker's (B, T, h) order, kept time-major like the output.
            let mask = self
                .dropout_mask(l, train, batch * steps)
                .map(|m| swap_outer(&m, batch, steps, h));
            input = apply_mask(tape.output_time_major(), mask.as_deref());
            tapes.push(tape);
            masks.push(mask);
        }
        (tapes, masks)
    }

    /// The Enc-Dec decoder: P single steps of the decoder stack and the head, each step's input
    /// the previous prediction or, when forced, the previous target.
    fn decode(&self, trace: &mut Trace, train: bool, mut tf: Option<TeacherForcing<'_>>) {
        let (b, h, p) = (trace.batch, self.config.hidden, self.config.horizon);
        let mut tapes: Vec<Tape> = trace
            .encoder
            .iter()
            .enumerate()
            .map(|(l, enc)| {
                Tape::start(
                    b,
                    if l == 0 { 1 } else { h },
                    h,
                    Some((enc.h_n(), enc.c_n())),
                )
            })
            .collect();
        let mut pred_sb = Vec::with_capacity(p * b); // (P, B)
        let mut fed_back = vec![false; p];
        let mut input = vec![0.0f32; b]; // step 1's input is 0.0
        for s in 0..p {
            let mut step_masks = Vec::with_capacity(tapes.len());
            for (l, tape) in tapes.iter_mut().enumerate() {
                tape.push(self.layer(Stack::Decoder, l), &input);
                let mask = self.dropout_mask(l, train, b);
                input = apply_mask(tape.h_n(), mask.as_deref());
                step_masks.push(mask);
            }
            let y = linear::forward_unchecked(self.head(), &input, b);
            trace.head_in.extend_from_slice(&input);
            pred_sb.extend_from_slice(&y);
            trace.decoder_masks.push(step_masks);
            // One draw per step for the whole batch, also after the last step (as published).
            let forced = tf.as_mut().is_some_and(|f| (f.draw)() < f.ratio);
            input = match &tf {
                Some(f) if forced => (0..b).map(|i| f.targets[i * p + s]).collect(),
                _ => y,
            };
            if s + 1 < p {
                fed_back[s + 1] = !forced;
            }
        }
        trace.decoder = tapes;
        trace.fed_back = fed_back;
        trace.pred = swap_outer(&pred_sb, p, b, 1);
    }

    /// The gradient of every parameter (parallel to [`Model::params`]) for the gradient `dpred`
    /// (B, P) on the predictions of `trace`, which this model's forward must have produced
    /// with its current weights.
    pub fn backward(&self, trace: &Trace, dpred: &[f32]) -> Result<Vec<Vec<f32>>> {
        if trace.config != self.config {
            return Err(Error::Config(
                "the trace comes from a model of another configuration".into(),
            ));
        }
        check_input(
            "prediction gradient",
            dpred,
            trace.batch * self.config.horizon,
        )?;
        let mut grads = vec![Vec::new(); self.params.len()];
        match self.config.arch {
            Arch::Lstm => self.backward_lstm(trace, dpred, &mut grads),
            Arch::EncDec => self.backward_encdec(trace, dpred, &mut grads),
        }
        Ok(grads)
    }

    fn set_head_grads(&self, grads: &mut [Vec<f32>], head_in: &[f32], dy: &[f32], rows: usize) {
        let (dw, db) = linear::param_grads(self.head(), head_in, dy, rows);
        let n = grads.len();
        grads[n - 2] = dw;
        grads[n - 1] = db;
    }

    fn backward_lstm(&self, trace: &Trace, dpred: &[f32], grads: &mut [Vec<f32>]) {
        let (b, t, h) = (trace.batch, trace.steps, self.config.hidden);
        self.set_head_grads(grads, &trace.head_in, dpred, b);
        // Only the last step of the top layer reaches the head.
        let mut dy = vec![0.0; t * b * h];
        dy[(t - 1) * b * h..].copy_from_slice(&linear::input_grad(self.head(), dpred, b));
        self.backward_encoder(trace, dy, None, grads);
    }

    /// Backward through the encoder stack from the top layer's output gradient `dy_top`
    /// (time-major) and, for Enc-Dec, the gradients on every layer's final (h, c).
    fn backward_encoder(
        &self,
        trace: &Trace,
        dy_top: Vec<f32>,
        final_states: Option<FinalStateGrads<'_>>,
        grads: &mut [Vec<f32>],
    ) {
        let mut dy = dy_top;
        for l in (0..self.config.layers).rev() {
            let (dh_n, dc_n) = match final_states {
                Some((dh, dc)) => (Some(dh[l].as_slice()), Some(dc[l].as_slice())),
                None => (None, None),
            };
            let g = lstm::backward_unchecked(
                self.layer(Stack::Encoder, l),
                &trace.encoder[l],
                &dy,
                dh_n,
                dc_n,
            );
            grads[4 * l..4 * l + 4].clone_from_slice(&[g.w_ih, g.w_hh, g.b_ih, g.b_hh]);
            if l > 0 {
                // Layer l's input was layer l−1's output times its mask.
                dy = apply_mask(&g.x, trace.encoder_masks[l - 1].as_deref());
            }
        }
    }

    fn backward_encdec(&self, trace: &Trace, dpred: &[f32], grads: &mut [Vec<f32>]) {
        let c = &self.config;
        let (b, h, p, layers) = (trace.batch, c.hidden, c.horizon, c.layers);
        let g4 = b * 4 * h; // one step's gate gradients
        let mut dg = vec![vec![0.0f32; p * g4]; layers];
        // The carries ∂L/∂c; the decoder's final states feed nothing, so they start at 0.
        let mut dc = vec![vec![0.0f32; b * h]; layers];
        let mut dyhat = vec![0.0f32; p * b]; // (P, B), the head's rows
        let mut d_input = vec![0.0f32; b]; // ∂L/∂(input of step s + 1)
        for s in (0..p).rev() {
            // ∂L/∂ŷ_s: the loss's, plus what step s+1 sent back when ŷ_s was its input.
            for i in 0..b {
                let g = dpred[i * p + s];
                dyhat[s * b + i] = if s + 1 < p && trace.fed_back[s + 1] {
                    g + d_input[i]
                } else {
                    g
                };
            }
            let mut dy = linear::input_grad(self.head(), &dyhat[s * b..(s + 1) * b], b);
            for l in (0..layers).rev() {
                let w = self.layer(Stack::Decoder, l);
                // The total ∂L/∂h_s: the output gradient, then the recurrence from step s+1
                // (the sequence backward's order: init dy, chain over dpre_{s+1}·W_hh).
                let mut dh = dy;
                if s + 1 < p {
                    lstm::recurrent_grad(w, &dg[l][(s + 1) * g4..(s + 2) * g4], &mut dh, b);
                }
                let dg_s = &mut dg[l][s * g4..(s + 1) * g4];
                lstm::cell_backward(&trace.decoder[l], s, &dh, &mut dc[l], dg_s);
                let dx = lstm::input_grad(w, dg_s, b);
                if l > 0 {
                    dy = apply_mask(&dx, trace.decoder_masks[s][l - 1].as_deref());
                } else {
                    d_input = dx;
                    dy = Vec::new();
                }
            }
        }
        // The decoder's initial states are the encoder's final ones: ∂L/∂h0 = chain(dpre_0·W_hh)
        // from 0, ∂L/∂c0 the carry left after step 0.
        let dh0: Vec<Vec<f32>> = (0..layers)
            .map(|l| {
                let mut d = vec![0.0; b * h];
                lstm::recurrent_grad(self.layer(Stack::Decoder, l), &dg[l][..g4], &mut d, b);
                d
            })
            .collect();
        let base = 4 * layers;
        for (l, dg) in dg.iter().enumerate() {
            // One reduction over all P steps (K = s·B + b), as if the steps were one call.
            let (w_ih, w_hh, bias) =
                lstm::param_grads(self.layer(Stack::Decoder, l), &trace.decoder[l], dg);
            let i = base + 4 * l;
            grads[i..i + 4].clone_from_slice(&[w_ih, w_hh, bias.clone(), bias]);
        }
        self.set_head_grads(grads, &trace.head_in, &dyhat, p * b);
        // The encoder's outputs feed nothing; only its final states do.
        let dy_top = vec![0.0; trace.steps * b * h];
        self.backward_encoder(trace, dy_top, Some((&dh0, &dc)), grads);
    }

    /// One Adam step on the parameters with `grads` (parallel to [`Model::params`]).
    pub fn update(&mut self, opt: &mut Adam, grads: &[Vec<f32>]) -> Result<()> {
        opt.step(&mut self.params, grads)
    }

    /// Predictions (B, P) in evaluation mode: no dropout, no teacher forcing.
    pub fn predict(&self, x: &[f32], batch: usize, steps: usize) -> Result<Vec<f32>> {
        Ok(self.forward(x, batch, steps, false, None)?.pred)
    }

    /// One optimisation step as the worker's `Trainer::step` takes it: forward in training mode
    /// (teacher forcing from `draw` for Enc-Dec), the loss, backward of `loss_scale × loss`,
    /// clipping, Adam. The caller keys [`Model::masks`] for the step first.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &mut self,
        opt: &mut Adam,
        x: &[f32],
        y: &[f32],
        batch: usize,
        steps: usize,
        cfg: &StepConfig,
        draw: &mut dyn FnMut() -> f64,
    ) -> Result<StepReport> {
        let p = self.config.horizon;
        check_input("targets", y, batch * p)?;
        let tf = TeacherForcing {
            targets: y,
            ratio: cfg.teacher_forcing_ratio,
            draw,
        };
        let trace = self.forward(x, batch, steps, true, Some(tf))?;
        let loss = cfg.loss.value(trace.pred(), y, batch, p)?;
        let dpred = cfg.loss.grad(trace.pred(), y, batch, p, cfg.loss_scale)?;
        let mut grads = self.backward(&trace, &dpred)?;
        let grad_norm = clip_grad_norm(&mut grads, cfg.clip);
        self.update(opt, &grads)?;
        Ok(StepReport { loss, grad_norm })
    }
}

/// x · mask elementwise (one rounding each), or x itself without a mask.
fn apply_mask(x: &[f32], mask: Option<&[f32]>) -> Vec<f32> {
    match mask {
        Some(m) => x.iter().zip(m).map(|(a, b)| a * b).collect(),
        None => x.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, fingerprint, values};

    fn cfg(arch: Arch, hidden: usize, layers: usize, dropout: f64, horizon: usize) -> ModelConfig {
        ModelConfig {
            arch,
            input: 5,
            hidden,
            layers,
            dropout,
            horizon,
        }
    }

    /// The worker's independent count: 4h(in + h) + 8h per LSTM layer, plus the head.
    fn expected_count(c: &ModelConfig) -> usize {
        let (h, l) = (c.hidden, c.layers);
        let lstm = |inp: usize| 4 * h * (inp + h) + 8 * h + (l - 1) * (4 * h * 2 * h + 8 * h);
        match c.arch {
            Arch::Lstm => lstm(5) + h * c.horizon + c.horizon,
            Arch::EncDec => lstm(5) + lstm(1) + h + 1,
        }
    }

    #[test]
    fn parameters_of_the_table_1_models() {
        for (c, n) in [
            (cfg(Arch::Lstm, 128, 4, 0.1, 12), 466_956),
            (cfg(Arch::Lstm, 64, 1, 0.2, 12), 18_956),
            (cfg(Arch::EncDec, 32, 4, 0.3, 12), 60_193),
            (cfg(Arch::EncDec, 64, 4, 0.2, 12), 235_073),
        ] {
            let m = Model::new(&c, 0).unwrap();
            let total: usize = m.params().iter().map(|p| p.data.len()).sum();
            assert_eq!(total, n, "{c:?}");
            assert_eq!(total, expected_count(&c));
            for p in m.params() {
                assert_eq!(
                    p.data.len(),
                    p.shape.iter().product::<usize>(),
                    "{}",
                    p.name
                );
            }
        }
        let m = Model::new(&cfg(Arch::EncDec, 8, 2, 0.0, 12), 0).unwrap();
        let names: Vec<&str> = m.params().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "encoder.weight_ih_l0",
                "encoder.weight_hh_l0",
                "encoder.bias_ih_l0",
                "encoder.bias_hh_l0",
                "encoder.weight_ih_l1",
                "encoder.weight_hh_l1",
                "encoder.bias_ih_l1",
                "encoder.bias_hh_l1",
                "decoder.weight_ih_l0",
                "decoder.weight_hh_l0",
                "decoder.bias_ih_l0",
                "decoder.bias_hh_l0",
                "decoder.weight_ih_l1",
                "decoder.weight_hh_l1",
                "decoder.bias_ih_l1",
                "decoder.bias_hh_l1",
                "head.weight",
                "head.bias",
            ]
        );
        assert_eq!(m.params()[8].shape, [32, 1]);
        assert_eq!(m.params()[16].shape, [1, 8]);
    }

    #[test]
    fn init_bounds_and_seeds() {
        let c = cfg(Arch::Lstm, 16, 2, 0.0, 12);
        let a = Model::new(&c, 0).unwrap();
        for p in a.params() {
            // U(±1/√16) for the LSTM and the head (fan_in 16).
            let max = p.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(max <= 0.25 && max > 0.2, "{}: {max}", p.name);
        }
        assert_eq!(Model::new(&c, 0).unwrap().params(), a.params());
        assert_ne!(Model::new(&c, 1).unwrap().params(), a.params());
        // Two parameters of one shape are different draws.
        assert_ne!(a.params()[2].data, a.params()[3].data);
    }

    /// Forward, loss and gradient of `scale × hybrid loss` with everything that a training step
    /// has: dropout masks keyed per call, teacher forcing from a fixed draw sequence.
    struct Case {
        model: Model,
        x: Vec<f32>,
        y: Vec<f32>,
        batch: usize,
        steps: usize,
        ratio: Option<f64>,
        train: bool,
    }

    impl Case {
        fn new(c: ModelConfig, ratio: Option<f64>, train: bool) -> Case {
            let (batch, steps) = (2, 4);
            let mut model = Model::new(&c, 3).unwrap();
            // Larger weights than the init so every gate works away from its linear part; the
            // decoder's input weights and the head larger still, so that a fed-back prediction
            // moves the next step's by a good share (with 0.7 its gradient would be ~1 %).
            for (i, p) in model.params.iter_mut().enumerate() {
                let big = p.name == "decoder.weight_ih_l0" || p.name == "head.weight";
                p.data = values(100 + i as u64, p.data.len(), if big { 2.5 } else { 0.7 });
            }
            Case {
                x: values(7, batch * steps * c.input, 1.0),
                y: values(8, batch * c.horizon, 1.0),
                model,
                batch,
                steps,
                ratio,
                train,
            }
        }

        fn trace(&self, model: &Model) -> Trace {
            model.masks.begin_step(11, 1, 0);
            // Alternating draws: forced, fed back, forced, … when the ratio is 0.5.
            let mut k = 0;
            let mut draw = || {
                k += 1;
                if k % 2 == 1 { 0.25 } else { 0.75 }
            };
            let tf = self.ratio.map(|ratio| TeacherForcing {
                targets: &self.y,
                ratio,
                draw: &mut draw,
            });
            model
                .forward(&self.x, self.batch, self.steps, self.train, tf)
                .unwrap()
        }

        fn loss(&self, model: &Model) -> f64 {
            let t = self.trace(model);
            let l = Loss::Hybrid { alpha: 0.6 };
            100.0
                * l.value(t.pred(), &self.y, self.batch, model.config.horizon)
                    .unwrap() as f64
        }

        /// Every parameter's gradient against finite differences, within `tol` of the tensor's
        /// largest gradient.
        fn check(&self, label: &str, tol: f64) {
            let t = self.trace(&self.model);
            let p = self.model.config.horizon;
            let dpred = Loss::Hybrid { alpha: 0.6 }
                .grad(t.pred(), &self.y, self.batch, p, 100.0)
                .unwrap();
            let grads = self.model.backward(&t, &dpred).unwrap();
            for (i, param) in self.model.params.iter().enumerate() {
                check_grad(
                    &format!("{label} {}", param.name),
                    &param.data,
                    &grads[i],
                    4e-2,
                    tol,
                    |v| {
                        let mut m = self.model.clone();
                        m.params[i].data.copy_from_slice(v);
                        self.loss(&m)
                    },
                );
            }
        }
    }

    #[test]
    fn lstm_gradients_match_finite_differences() {
        Case::new(cfg(Arch::Lstm, 3, 3, 0.0, 3), None, false).check("lstm eval", 5e-3);
        Case::new(cfg(Arch::Lstm, 3, 2, 0.4, 3), None, true).check("lstm dropout", 5e-3);
    }

    #[test]
    fn encdec_gradients_match_finite_differences() {
        // Fully autoregressive: gradients flow through every fed-back prediction.
        Case::new(cfg(Arch::EncDec, 3, 2, 0.0, 4), None, true).check("encdec free", 5e-3);
        // Teacher forcing on alternate steps, with dropout in both stacks.
        Case::new(cfg(Arch::EncDec, 3, 2, 0.4, 4), Some(0.5), true).check("encdec forced", 5e-3);
        // Three layers: a middle layer in both stacks.
        Case::new(cfg(Arch::EncDec, 4, 3, 0.2, 4), Some(0.5), true).check("encdec 3 layers", 5e-3);
    }

    #[test]
    fn teacher_forcing_draws_and_inputs() {
        let c = cfg(Arch::EncDec, 4, 1, 0.0, 5);
        let m = Model::new(&c, 2).unwrap();
        let x = values(1, 2 * 6 * 5, 1.0);
        let y1 = vec![0.0; 10];
        let mut y2 = y1.clone();
        y2[0] = 5.0; // row 0, step 0's target: step 1's input when forced
        let run = |y: &[f32], ratio: f64, train: bool| {
            let mut n = 0;
            let mut draw = || {
                n += 1;
                0.5
            };
            let tf = TeacherForcing {
                targets: y,
                ratio,
                draw: &mut draw,
            };
            let p = m.forward(&x, 2, 6, train, Some(tf)).unwrap().pred;
            (p, n)
        };
        let (a, n) = run(&y1, 1.0, true);
        let (b, _) = run(&y2, 1.0, true);
        assert_eq!(n, 5, "one draw per step, the last one included");
        assert_eq!(a[0], b[0]);
        assert_ne!(a[1], b[1]);
        assert_eq!(a[5..], b[5..], "row 1 is untouched");
        // Ratio 0.5 against draws of 0.5: never forced. Ratio 0: targets unused.
        assert_eq!(run(&y2, 0.5, true).0, run(&y1, 0.0, true).0);
        // Evaluation: no draws, targets unused.
        let (e, n) = run(&y2, 1.0, false);
        assert_eq!(n, 0);
        assert_eq!(e, m.predict(&x, 2, 6).unwrap());
        // MagFluxLSTM ignores teacher forcing.
        let l = Model::new(&cfg(Arch::Lstm, 4, 1, 0.0, 5), 2).unwrap();
        let mut n = 0;
        let mut draw = || {
            n += 1;
            0.0
        };
        let tf = TeacherForcing {
            targets: &y2,
            ratio: 1.0,
            draw: &mut draw,
        };
        let p = l.forward(&x, 2, 6, true, Some(tf)).unwrap().pred;
        assert_eq!(n, 0);
        assert_eq!(p, l.predict(&x, 2, 6).unwrap());
    }

    #[test]
    fn eval_is_deterministic_and_train_applies_keyed_dropout() {
        for arch in [Arch::Lstm, Arch::EncDec] {
            let m = Model::new(&cfg(arch, 8, 3, 0.5, 6), 1).unwrap();
            let x = values(2, 4 * 7 * 5, 1.0);
            assert_eq!(m.predict(&x, 4, 7).unwrap(), m.predict(&x, 4, 7).unwrap());
            let train = |step: u64| {
                m.masks.begin_step(5, 1, step);
                m.forward(&x, 4, 7, true, None).unwrap().pred
            };
            assert_eq!(train(0), train(0), "{arch:?}: same key, same masks");
            assert_ne!(train(0), train(1), "{arch:?}: another batch, other masks");
            assert_ne!(train(0), m.predict(&x, 4, 7).unwrap());
        }
        // One layer: nothing to drop.
        let m = Model::new(&cfg(Arch::Lstm, 8, 1, 0.5, 6), 1).unwrap();
        let x = values(2, 4 * 7 * 5, 1.0);
        assert_eq!(
            m.forward(&x, 4, 7, true, None).unwrap().pred,
            m.predict(&x, 4, 7).unwrap()
        );
    }

    #[test]
    fn sequence_length_is_free_and_rows_independent() {
        let m = Model::new(&cfg(Arch::EncDec, 6, 2, 0.0, 4), 9).unwrap();
        let x = values(3, 3 * 10 * 5, 1.0);
        let all = m.predict(&x, 3, 10).unwrap();
        for r in 0..3 {
            assert_eq!(
                m.predict(&x[r * 50..(r + 1) * 50], 1, 10).unwrap(),
                all[r * 4..(r + 1) * 4]
            );
        }
        assert_eq!(m.predict(&x[..5 * 3], 1, 3).unwrap().len(), 4);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            Model::new(&cfg(Arch::Lstm, 0, 1, 0.0, 3), 0),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Model::new(&cfg(Arch::Lstm, 4, 1, 1.0, 3), 0),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Model::new(&cfg(Arch::Lstm, 4, 1, f64::NAN, 3), 0),
            Err(Error::Config(_))
        ));
        let mut m = Model::new(&cfg(Arch::EncDec, 4, 2, 0.0, 3), 0).unwrap();
        assert!(matches!(m.predict(&[], 0, 5), Err(Error::Empty(_))));
        assert!(matches!(m.predict(&[0.0; 10], 2, 0), Err(Error::Empty(_))));
        assert!(matches!(
            m.predict(&[0.0; 49], 2, 5),
            Err(Error::Shape {
                expected: 50,
                got: 49,
                ..
            })
        ));
        let mut x = vec![0.0; 50];
        x[17] = f32::NAN;
        assert!(matches!(
            m.predict(&x, 2, 5),
            Err(Error::NonFinite { index: 17, .. })
        ));
        let x = vec![0.0; 50];
        let mut draw = || 0.0;
        let tf = TeacherForcing {
            targets: &[0.0; 5],
            ratio: 0.5,
            draw: &mut draw,
        };
        assert!(matches!(
            m.forward(&x, 2, 5, true, Some(tf)),
            Err(Error::Shape { .. })
        ));
        let t = m.forward(&x, 2, 5, false, None).unwrap();
        assert!(matches!(
            m.backward(&t, &[0.0; 5]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            m.backward(&t, &[f32::NAN; 6]),
            Err(Error::NonFinite { .. })
        ));
        let other = Model::new(&cfg(Arch::EncDec, 4, 1, 0.0, 3), 0).unwrap();
        assert!(matches!(
            other.backward(&t, &[0.0; 6]),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            m.set_param("encoder.weight_ih_l9", &[0.0]),
            Err(Error::UnknownParam(_))
        ));
        assert!(matches!(
            m.set_param("head.bias", &[0.0, 1.0]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            m.set_param("head.bias", &[f32::INFINITY]),
            Err(Error::NonFinite { .. })
        ));
        m.set_param("head.bias", &[0.5]).unwrap();
        assert_eq!(m.params().last().unwrap().data, [0.5]);
        let mut opt = Adam::new(m.params(), 1e-3, 0.0);
        let step = StepConfig {
            loss: Loss::Value,
            loss_scale: 1.0,
            teacher_forcing_ratio: 0.0,
            clip: 1.0,
        };
        let before = m.params().to_vec();
        assert!(matches!(
            m.train_step(&mut opt, &x, &[0.0; 5], 2, 5, &step, &mut || 0.0),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            m.train_step(&mut opt, &x, &[f32::NAN; 6], 2, 5, &step, &mut || 0.0),
            Err(Error::NonFinite { .. })
        ));
        assert_eq!(m.params(), before, "a refused step changes nothing");
        assert_eq!(opt.step, 0);
    }

    /// Three training steps of each model with everything on (dropout, hybrid loss ×100,
    /// teacher forcing, clipping, weight decay), fingerprinted: the bits this reference gives.
    /// A faster engine (SIMD, threads) must give the same; a change here is a change in the
    /// numerics, never a tolerance to widen. Measured the same on x86-64 (AMD EPYC; debug,
    /// release and `-C target-cpu=native`) and on aarch64 under qemu-aarch64.
    #[test]
    fn golden_training_bits() {
        let mut prints = Vec::new();
        for arch in [Arch::Lstm, Arch::EncDec] {
            let c = cfg(arch, 8, 3, 0.3, 6);
            let mut m = Model::new(&c, 7).unwrap();
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
            for b in 0..3u64 {
                let x = values(10 + b, 4 * 9 * 5, 1.0);
                let y = values(20 + b, 4 * 6, 1.0);
                m.masks.begin_step(7, 1, b);
                let r = m
                    .train_step(&mut opt, &x, &y, 4, 9, &step, &mut draw)
                    .unwrap();
                assert!(r.loss.is_finite() && r.grad_norm > 0.0);
            }
            prints.push(fingerprint(m.params().iter().map(|p| p.data.as_slice())));
        }
        println!("golden: {:#018x} {:#018x}", prints[0], prints[1]);
        assert_eq!(prints, [GOLDEN_LSTM, GOLDEN_ENCDEC]);
    }

    const GOLDEN_LSTM: u64 = 0x76e8_caf6_cf6c_0e61;
    const GOLDEN_ENCDEC: u64 = 0x3975_c37c_f1e3_7e5d;
}
