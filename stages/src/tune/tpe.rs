//! Tree-structured Parzen Estimator with hyperopt's behaviour (`hyperopt.tpe.suggest`):
//! random start-up suggestions, then per parameter (univariate) a "below" and an "above"
//! adaptive Parzen estimator fitted on the trials where the parameter was active, 24 candidates
//! drawn from "below", the one with the best log-ratio kept. Constants as in hyperopt and
//! docs/src/semantics.md §11: γ = 0.25, n_below = min(⌈γ·√N⌉, 25), prior weight 1, linear forgetting 25.
//! The random numbers are magpipe's own (SplitMix64), so suggestions are deterministic for a
//! seed but not numpy's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::space::{Config, Dist, Space};

#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TpeParams {
    pub n_startup: usize,
    pub gamma: f64,
    pub n_ei_candidates: usize,
    pub prior_weight: f64,
    pub linear_forgetting: usize,
}

impl Default for TpeParams {
    fn default() -> Self {
        TpeParams {
            n_startup: 20,
            gamma: 0.25,
            n_ei_candidates: 24,
            prior_weight: 1.0,
            linear_forgetting: 25,
        }
    }
}

/// A trial as TPE sees it: its configuration and, once finished, its loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub config: Config,
    pub loss: Option<f64>,
}

/// The split's SplitMix64 with uniform and normal draws.
#[derive(Debug, Clone)]
pub struct Rng(crate::split::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(crate::split::SplitMix64(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        // Box–Muller; 1 − u keeps the logarithm finite.
        let (u, v) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n - 1)
    }
    /// An index drawn with probability proportional to `w`.
    pub fn weighted(&mut self, w: &[f64]) -> usize {
        let total: f64 = w.iter().sum();
        let mut r = self.uniform() * total;
        for (i, x) in w.iter().enumerate() {
            if r < *x {
                return i;
            }
            r -= x;
        }
        w.len() - 1
    }
}

/// hyperopt's `linear_forgetting_weights`: the newest `lf` observations weigh 1, older ones
/// ramp down linearly from 1 towards 1/N.
pub fn forgetting_weights(n: usize, lf: usize) -> Vec<f64> {
    if n < lf || lf == 0 {
        return vec![1.0; n];
    }
    let ramp_n = n - lf;
    let mut w: Vec<f64> = if ramp_n == 1 {
        vec![1.0 / n as f64]
    } else {
        (0..ramp_n)
            .map(|i| 1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp_n - 1) as f64)
            .collect()
    };
    w.extend(std::iter::repeat_n(1.0, lf));
    w
}

/// A Gaussian mixture: weights (normalised), means, sigmas.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    pub weights: Vec<f64>,
    pub mus: Vec<f64>,
    pub sigmas: Vec<f64>,
}

/// hyperopt's `adaptive_parzen_normal`: one component per observation plus the prior, each
/// observation's sigma the larger gap to its neighbours, clipped to [prior_σ / min(100, 1 + n),
/// prior_σ]; the prior keeps its own sigma.
pub fn adaptive_parzen_normal(
    obs: &[f64],
    prior_weight: f64,
    prior_mu: f64,
    prior_sigma: f64,
    lf: usize,
) -> Mixture {
    let n = obs.len();
    let (mus, mut sigmas, prior_pos, weights) = if n == 0 {
        (vec![prior_mu], vec![prior_sigma], 0, vec![prior_weight])
    } else {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| obs[a].total_cmp(&obs[b]));
        let sorted: Vec<f64> = order.iter().map(|&i| obs[i]).collect();
        let prior_pos = sorted.partition_point(|&m| m < prior_mu);
        let mut mus = sorted.clone();
        mus.insert(prior_pos, prior_mu);
        let m = mus.len();
        let mut sigmas = vec![0.0; m];
        if m == 2 {
            // One observation: hyperopt gives it half the prior's sigma.
            sigmas = if prior_pos == 0 {
                vec![prior_sigma, prior_sigma * 0.5]
            } else {
                vec![prior_sigma * 0.5, prior_sigma]
            };
        } else {
            for i in 1..m - 1 {
                sigmas[i] = (mus[i] - mus[i - 1]).max(mus[i + 1] - mus[i]);
            }
            sigmas[0] = mus[1] - mus[0];
            sigmas[m - 1] = mus[m - 1] - mus[m - 2];
        }
        let unsorted = forgetting_weights(n, lf);
        let mut weights: Vec<f64> = order.iter().map(|&i| unsorted[i]).collect();
        weights.insert(prior_pos, prior_weight);
        (mus, sigmas, prior_pos, weights)
    };
    let maxs = prior_sigma;
    let mins = prior_sigma / (1.0 + mus.len() as f64).min(100.0);
    for s in sigmas.iter_mut() {
        *s = s.clamp(mins, maxs);
    }
    sigmas[prior_pos] = prior_sigma;
    let total: f64 = weights.iter().sum();
    Mixture {
        weights: weights.iter().map(|w| w / total).collect(),
        mus,
        sigmas,
    }
}

impl Mixture {
    /// A draw truncated to [low, high] (rejection, as hyperopt's GMM1 sampler).
    pub fn sample(&self, rng: &mut Rng, low: f64, high: f64) -> f64 {
        for _ in 0..10_000 {
            let k = rng.weighted(&self.weights);
            let x = self.mus[k] + self.sigmas[k] * rng.normal();
            if (low..=high).contains(&x) {
                return x;
            }
        }
        // Unreachable in practice: the prior component alone puts mass inside the bounds.
        (low + high) / 2.0
    }

    /// Log density up to the truncation constant, which cancels in the below/above ratio's argmax.
    pub fn log_pdf(&self, x: f64) -> f64 {
        let p: f64 = self
            .weights
            .iter()
            .zip(&self.mus)
            .zip(&self.sigmas)
            .map(|((w, m), s)| {
                let z = (x - m) / s;
                w * (-0.5 * z * z).exp() / (s * (2.0 * std::f64::consts::PI).sqrt())
            })
            .sum();
        p.max(1e-300).ln()
    }
}

/// hyperopt's categorical posterior: weighted counts of the observed indices plus
/// `prior_weight` × the uniform prior, normalised.
pub fn categorical_posterior(
    obs: &[usize],
    upper: usize,
    prior_weight: f64,
    lf: usize,
) -> Vec<f64> {
    let w = forgetting_weights(obs.len(), lf);
    let mut counts = vec![prior_weight / upper as f64; upper];
    for (&o, wi) in obs.iter().zip(&w) {
        counts[o] += wi;
    }
    let total: f64 = counts.iter().sum();
    counts.iter().map(|c| c / total).collect()
}

/// The internal value of a parameter in a configuration: the choice index, log(x) for
/// log-uniform, x for uniform.
fn internal(dist: &Dist, v: &Value) -> Option<f64> {
    match dist {
        Dist::Choice(vals) => vals.iter().position(|c| c == v).map(|i| i as f64),
        Dist::Loguniform(_) => v.as_f64().filter(|x| *x > 0.0).map(f64::ln),
        Dist::Uniform(_) => v.as_f64(),
    }
}

fn bounds(dist: &Dist) -> (f64, f64) {
    match dist {
        Dist::Loguniform([lo, hi]) => (lo.ln(), hi.ln()),
        Dist::Uniform([lo, hi]) => (*lo, *hi),
        Dist::Choice(v) => (0.0, v.len() as f64),
    }
}

fn external(dist: &Dist, x: f64) -> Value {
    match dist {
        Dist::Choice(vals) => vals[x as usize].clone(),
        Dist::Loguniform(_) => serde_json::json!(x.exp()),
        Dist::Uniform(_) => serde_json::json!(x),
    }
}

/// A draw from the prior, active parameters only.
pub fn random(space: &Space, rng: &mut Rng) -> Config {
    let mut c = Config::new();
    for (name, p) in &space.params {
        if !Space::active(p, &c) {
            continue;
        }
        let x = match &p.dist {
            Dist::Choice(v) => rng.below(v.len()) as f64,
            d => {
                let (lo, hi) = bounds(d);
                lo + (hi - lo) * rng.uniform()
            }
        };
        c.insert(name.clone(), external(&p.dist, x));
    }
    c
}

/// The next configuration. `history` is every trial created so far (finished ones carry their
/// loss), in creation order; `rng` should be seeded from the study seed and the trial number so
/// a sequential study is reproducible.
pub fn suggest(space: &Space, history: &[Observed], p: &TpeParams, rng: &mut Rng) -> Config {
    let done: Vec<(usize, f64)> = history
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.loss.filter(|l| l.is_finite()).map(|l| (i, l)))
        .collect();
    if history.len() < p.n_startup || done.is_empty() {
        return random(space, rng);
    }
    let n_below = ((p.gamma * (done.len() as f64).sqrt()).ceil() as usize).min(p.linear_forgetting);
    let mut ranked = done.clone();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let below: std::collections::BTreeSet<usize> =
        ranked.iter().take(n_below).map(|(i, _)| *i).collect();
    let mut c = Config::new();
    for (name, spec) in &space.params {
        if !Space::active(spec, &c) {
            continue;
        }
        // Observations of this parameter, in trial order, from finished trials where it was active.
        let (mut ob, mut oa) = (Vec::new(), Vec::new());
        for &(i, _) in &done {
            if let Some(x) = history[i]
                .config
                .get(name)
                .and_then(|v| internal(&spec.dist, v))
            {
                if below.contains(&i) {
                    ob.push(x);
                } else {
                    oa.push(x);
                }
            }
        }
        let x = match &spec.dist {
            Dist::Choice(vals) => {
                let k = vals.len();
                let to_idx = |v: &[f64]| v.iter().map(|&x| x as usize).collect::<Vec<_>>();
                let pb =
                    categorical_posterior(&to_idx(&ob), k, p.prior_weight, p.linear_forgetting);
                let pa =
                    categorical_posterior(&to_idx(&oa), k, p.prior_weight, p.linear_forgetting);
                let mut best = (f64::NEG_INFINITY, 0usize);
                for _ in 0..p.n_ei_candidates {
                    let cand = rng.weighted(&pb);
                    let score = pb[cand].ln() - pa[cand].ln();
                    if score > best.0 {
                        best = (score, cand);
                    }
                }
                best.1 as f64
            }
            d => {
                let (lo, hi) = bounds(d);
                let (mu, sigma) = (0.5 * (lo + hi), hi - lo);
                let mb =
                    adaptive_parzen_normal(&ob, p.prior_weight, mu, sigma, p.linear_forgetting);
                let ma =
                    adaptive_parzen_normal(&oa, p.prior_weight, mu, sigma, p.linear_forgetting);
                let mut best = (f64::NEG_INFINITY, mu);
                for _ in 0..p.n_ei_candidates {
                    let cand = mb.sample(rng, lo, hi);
                    let score = mb.log_pdf(cand) - ma.log_pdf(cand);
                    if score > best.0 {
                        best = (score, cand);
                    }
                }
                best.1
            }
        };
        c.insert(name.clone(), external(&spec.dist, x));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::space::ParamSpec;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn forgetting_weights_match_hyperopt() {
        assert_eq!(forgetting_weights(3, 25), [1.0; 3]);
        let w = forgetting_weights(30, 25);
        assert_eq!(w.len(), 30);
        // numpy.linspace(1/30, 1, 5) then 25 ones.
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
        assert!((w[4] - 1.0).abs() < 1e-12);
        assert!((w[2] - (1.0 / 30.0 + (1.0 - 1.0 / 30.0) * 0.5)).abs() < 1e-12);
        assert!(w[5..].iter().all(|&x| x == 1.0));
    }

    #[test]
    fn parzen_estimator_matches_hyperopt_by_hand() {
        // No observation: the prior alone.
        let m = adaptive_parzen_normal(&[], 1.0, 0.5, 1.0, 25);
        assert_eq!(
            (m.mus, m.sigmas, m.weights),
            (vec![0.5], vec![1.0], vec![1.0])
        );
        // One observation below the prior mean: it gets half the prior's sigma.
        let m = adaptive_parzen_normal(&[0.2], 1.0, 0.5, 1.0, 25);
        assert_eq!(m.mus, [0.2, 0.5]);
        assert_eq!(m.sigmas, [0.5, 1.0]);
        // Three observations: mus sorted with the prior inserted; inner sigmas = larger gap,
        // clipped to [1/min(100, 1+4), 1] = [0.2, 1]; the prior keeps sigma 1.
        let m = adaptive_parzen_normal(&[0.9, 0.1, 0.3], 1.0, 0.5, 1.0, 25);
        assert_eq!(m.mus, [0.1, 0.3, 0.5, 0.9]);
        let want = [0.2, 0.2, 1.0, 0.4];
        for (a, b) in m.sigmas.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{:?}", m.sigmas);
        }
        assert!(m.weights.iter().all(|w| (w - 0.25).abs() < 1e-12));
    }

    #[test]
    fn categorical_posterior_adds_the_prior() {
        let p = categorical_posterior(&[0, 0, 2], 4, 1.0, 25);
        // counts [2.25, 0.25, 1.25, 0.25] / 4
        let want = [2.25, 0.25, 1.25, 0.25].map(|c| c / 4.0);
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    /// A conditional test function: the branch `kind: a` has a continuous optimum at u = 0.7,
    /// `kind: b` a worse discrete one; lr is best at 1e-3.
    fn space() -> Space {
        let yaml = "lr: {loguniform: [1.0e-5, 1.0e-1]}\nkind: {choice: [a, b]}\nu: {uniform: [0.0, 1.0], when: {kind: a}}\nc: {choice: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], when: {kind: b}}\nk2: {choice: [0, 1, 2, 3]}\n";
        let raw: BTreeMap<String, ParamSpec> = serde_yaml::from_str(yaml).unwrap();
        Space::new(&raw).unwrap()
    }

    fn objective(c: &Config) -> f64 {
        let lr = c["lr"].as_f64().unwrap();
        let k2 = c["k2"].as_f64().unwrap();
        let base = (lr.log10() + 3.0).powi(2) / 4.0 + (k2 - 2.0).powi(2) / 10.0;
        match c["kind"].as_str().unwrap() {
            "a" => base + 4.0 * (c["u"].as_f64().unwrap() - 0.7).powi(2),
            _ => base + 0.3 + (c["c"].as_f64().unwrap() - 6.0).powi(2) / 20.0,
        }
    }

    fn study(seed: u64, n: usize, tpe: bool) -> (f64, Vec<Config>) {
        let s = space();
        let p = TpeParams::default();
        let mut hist: Vec<Observed> = Vec::new();
        for t in 0..n {
            let mut rng = Rng::new(seed.wrapping_mul(0x1000_0001) ^ t as u64);
            let c = if tpe {
                suggest(&s, &hist, &p, &mut rng)
            } else {
                random(&s, &mut rng)
            };
            let loss = objective(&c);
            hist.push(Observed {
                config: c,
                loss: Some(loss),
            });
        }
        let best = hist
            .iter()
            .filter_map(|o| o.loss)
            .fold(f64::INFINITY, f64::min);
        (best, hist.into_iter().map(|o| o.config).collect())
    }

    #[test]
    fn tpe_beats_random_search_over_seeds_and_never_samples_inactive_params() {
        let seeds: Vec<u64> = (1..=12).collect();
        let (mut wins, mut sum_tpe, mut sum_rand) = (0, 0.0, 0.0);
        for &s in &seeds {
            let (bt, configs) = study(s, 80, true);
            let (br, _) = study(s, 80, false);
            wins += (bt < br) as usize;
            sum_tpe += bt;
            sum_rand += br;
            for c in &configs {
                match c["kind"].as_str().unwrap() {
                    "a" => assert!(c.contains_key("u") && !c.contains_key("c"), "{c:?}"),
                    _ => assert!(c.contains_key("c") && !c.contains_key("u"), "{c:?}"),
                }
            }
        }
        assert!(wins >= 9, "TPE won only {wins} of {} seeds", seeds.len());
        assert!(
            sum_tpe < 0.6 * sum_rand,
            "mean best: TPE {sum_tpe}, random {sum_rand}"
        );
    }

    #[test]
    fn a_seeded_sequential_study_is_deterministic() {
        assert_eq!(study(7, 30, true).1, study(7, 30, true).1);
        assert_ne!(study(7, 30, true).1, study(8, 30, true).1);
        let (_, first) = study(3, 25, true);
        // The first 20 are start-up draws from the prior, identical to random search's.
        assert_eq!(first[..20], study(3, 20, false).1[..]);
        let _ = json!(0);
    }
}
