//! Ray Tune's `AsyncHyperBandScheduler` (ASHA, the stopping variant, one bracket) as docs/src/semantics.md
//! §11 describes it. Its whole state is the rewards recorded at each rung, so a study can keep
//! it in its record files and any process (or machine) can decide.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AshaParams {
    pub grace_period: u32,
    pub reduction_factor: f64,
    pub max_t: u32,
}

impl Default for AshaParams {
    fn default() -> Self {
        AshaParams {
            grace_period: 15,
            reduction_factor: 2.0,
            max_t: 100,
        }
    }
}

impl AshaParams {
    /// Milestones `grace·rf^k` for `k < int(log(max_t/grace)/log(rf) + 1)`, highest first.
    pub fn milestones(&self) -> Vec<u32> {
        let n = ((self.max_t as f64 / self.grace_period as f64).ln() / self.reduction_factor.ln()
            + 1.0) as u32;
        let mut m: Vec<u32> = (0..n)
            .map(|k| (self.grace_period as f64 * self.reduction_factor.powi(k as i32)) as u32)
            .collect();
        m.reverse();
        m
    }
}

/// What the scheduler decided for one result, with the rung it looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub trial: u32,
    pub iteration: u32,
    pub reward: f64,
    pub stop: bool,
    /// The milestone examined, if any.
    pub rung: Option<u32>,
    pub cutoff: Option<f64>,
    /// The rewards recorded at that rung before this one.
    pub snapshot: Vec<f64>,
}

/// Recorded rewards per milestone: milestone → trial → reward.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rungs(pub BTreeMap<u32, BTreeMap<u32, f64>>);

/// numpy's `nanpercentile(v, q)` with linear interpolation (NaNs ignored); None when empty.
pub fn percentile(v: &[f64], q: f64) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(s[lo] + (s[hi] - s[lo]) * (pos - lo as f64))
}

impl Rungs {
    /// Ray's `_Bracket.on_result`: at or past max_t stop; otherwise examine only the highest
    /// milestone ≤ iteration where this trial has no reward yet, compare with the
    /// (1 − 1/rf) percentile of the rewards recorded there, record the reward even when stopping.
    pub fn on_result(
        &mut self,
        p: &AshaParams,
        trial: u32,
        iteration: u32,
        reward: f64,
    ) -> Decision {
        let mut d = Decision {
            trial,
            iteration,
            reward,
            stop: false,
            rung: None,
            cutoff: None,
            snapshot: Vec::new(),
        };
        if iteration >= p.max_t {
            d.stop = true;
            return d;
        }
        for m in p.milestones() {
            let rung = self.0.entry(m).or_default();
            if iteration >= m && rung.contains_key(&trial) {
                // Decided at this rung already; lower rungs are not looked at again.
                break;
            }
            if iteration < m {
                continue;
            }
            let recorded: Vec<f64> = rung.values().copied().collect();
            let cutoff = percentile(&recorded, (1.0 - 1.0 / p.reduction_factor) * 100.0);
            d.stop = cutoff.is_some_and(|c| reward < c);
            d.rung = Some(m);
            d.cutoff = cutoff;
            d.snapshot = recorded;
            rung.insert(trial, reward);
            break;
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_study_milestones_are_60_30_15() {
        assert_eq!(AshaParams::default().milestones(), [60, 30, 15]);
        let p = AshaParams {
            grace_period: 1,
            reduction_factor: 3.0,
            max_t: 27,
        };
        assert_eq!(p.milestones(), [27, 9, 3, 1]);
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[3.0], 50.0), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.5));
        assert_eq!(percentile(&[4.0, f64::NAN, 1.0], 50.0), Some(2.5));
    }

    #[test]
    fn hand_built_sequence_of_decisions() {
        let p = AshaParams::default();
        let mut r = Rungs::default();
        // Before the first milestone nothing is examined.
        assert!(!r.on_result(&p, 0, 10, -5.0).stop);
        // The first arrival at a rung always continues, and is recorded.
        let d = r.on_result(&p, 0, 15, -5.0);
        assert_eq!((d.stop, d.rung, d.cutoff), (false, Some(15), None));
        // A worse second arrival: cutoff = median of [-5] = -5; -7 < -5 → stop, still recorded.
        let d = r.on_result(&p, 1, 15, -7.0);
        assert_eq!(
            (d.stop, d.cutoff, d.snapshot.clone()),
            (true, Some(-5.0), vec![-5.0])
        );
        // A better third: median of [-7, -5] = -6 → continue.
        let d = r.on_result(&p, 2, 15, -5.5);
        assert!(!d.stop);
        assert_eq!(d.snapshot, [-5.0, -7.0]);
        // A trial already recorded at 15 is not examined there again at 16.
        let d = r.on_result(&p, 2, 16, -100.0);
        assert_eq!((d.stop, d.rung), (false, None));
        // At 30 the trial meets the next rung (empty: continues).
        assert!(!r.on_result(&p, 2, 30, -1.0).stop);
        // max_t ends every trial.
        assert!(r.on_result(&p, 2, 100, 0.0).stop);
        // A trial that jumps straight past several milestones is examined only at the highest.
        let d = r.on_result(&p, 9, 61, -50.0);
        assert_eq!(d.rung, Some(60));
        assert!(!r.0[&30].contains_key(&9));
    }
}
