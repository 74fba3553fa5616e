//! Learning-rate scheduling and early stopping with the exact semantics the study's runs had
//! (docs/src/semantics.md §10–11): PyTorch's `ReduceLROnPlateau` and Ray Tune's `TrialPlateauStopper`,
//! plus a plain patience rule. Pure Rust, so they are tested on hand-computed sequences.

/// PyTorch `ReduceLROnPlateau(mode="min", threshold_mode="rel")`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReduceLrOnPlateau {
    pub factor: f64,
    pub patience: usize,
    pub threshold: f64,
    pub cooldown: usize,
    pub min_lr: f64,
    pub eps: f64,
    best: f64,
    bad_epochs: usize,
    cooldown_left: usize,
}

impl ReduceLrOnPlateau {
    /// The study's settings: factor 0.2, patience 10, threshold 1e-4 (relative), no cooldown.
    pub fn study() -> Self {
        Self::new(0.2, 10, 1e-4, 0, 0.0, 1e-8)
    }

    pub fn new(
        factor: f64,
        patience: usize,
        threshold: f64,
        cooldown: usize,
        min_lr: f64,
        eps: f64,
    ) -> Self {
        ReduceLrOnPlateau {
            factor,
            patience,
            threshold,
            cooldown,
            min_lr,
            eps,
            best: f64::INFINITY,
            bad_epochs: 0,
            cooldown_left: 0,
        }
    }

    /// Steps once with the epoch's metric; returns the learning rate to use next.
    pub fn step(&mut self, metric: f64, lr: f64) -> f64 {
        if metric < self.best * (1.0 - self.threshold) {
            self.best = metric;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.bad_epochs = 0;
        }
        if self.bad_epochs > self.patience {
            self.cooldown_left = self.cooldown;
            self.bad_epochs = 0;
            let new = (lr * self.factor).max(self.min_lr);
            // PyTorch skips reductions smaller than eps.
            if lr - new > self.eps {
                return new;
            }
        }
        lr
    }
}

/// Ray Tune's `TrialPlateauStopper(metric, std=0.01, num_results=4, grace_period=10)` without a
/// threshold: stop once at least `grace` results were seen and the population standard
/// deviation of the last `num_results` is below `std`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlateauStopper {
    pub std: f64,
    pub num_results: usize,
    pub grace: usize,
    seen: usize,
    window: std::collections::VecDeque<f64>,
}

impl PlateauStopper {
    pub fn study() -> Self {
        Self::new(0.01, 4, 10)
    }

    pub fn new(std: f64, num_results: usize, grace: usize) -> Self {
        PlateauStopper {
            std,
            num_results,
            grace,
            seen: 0,
            window: Default::default(),
        }
    }

    /// Records one result; true when the trial should stop now.
    pub fn record(&mut self, metric: f64) -> bool {
        self.seen += 1;
        self.window.push_back(metric);
        if self.window.len() > self.num_results {
            self.window.pop_front();
        }
        if self.seen < self.grace || self.window.len() < self.num_results {
            return false;
        }
        let n = self.window.len() as f64;
        let mean = self.window.iter().sum::<f64>() / n;
        let var = self.window.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        var.sqrt() < self.std
    }
}

/// Stop after `patience` epochs without a relative improvement of `min_delta`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PatienceStopper {
    pub patience: usize,
    pub min_delta: f64,
    best: f64,
    bad: usize,
}

impl PatienceStopper {
    pub fn new(patience: usize, min_delta: f64) -> Self {
        PatienceStopper {
            patience,
            min_delta,
            best: f64::INFINITY,
            bad: 0,
        }
    }

    pub fn record(&mut self, metric: f64) -> bool {
        if metric < self.best * (1.0 - self.min_delta) {
            self.best = metric;
            self.bad = 0;
        } else {
            self.bad += 1;
        }
        self.bad >= self.patience
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateau_scheduler_cuts_after_eleven_bad_epochs_never_within_ten() {
        let mut s = ReduceLrOnPlateau::study();
        let mut lr = 7e-3;
        // One improvement, then a flat metric: bad epochs 1..=10 keep lr, the 11th cuts it.
        assert_eq!(s.step(1.0, lr), lr);
        for epoch in 2..=11 {
            lr = s.step(1.0, lr);
            assert_eq!(lr, 7e-3, "epoch {epoch}");
        }
        lr = s.step(1.0, lr);
        assert!((lr - 1.4e-3).abs() < 1e-15);
        // The count restarted: ten more bad epochs keep the new rate.
        for _ in 0..10 {
            lr = s.step(1.0, lr);
        }
        assert!((lr - 1.4e-3).abs() < 1e-15);
    }

    #[test]
    fn plateau_scheduler_uses_a_relative_threshold() {
        let mut s = ReduceLrOnPlateau::new(0.5, 0, 1e-4, 0, 0.0, 1e-8);
        assert_eq!(s.step(1.0, 1.0), 1.0);
        // 1 − 0.5e-4 is not below 1·(1 − 1e-4): a bad epoch, and patience 0 cuts at once.
        assert_eq!(s.step(1.0 - 0.5e-4, 1.0), 0.5);
        // 0.99 is a real improvement.
        assert_eq!(s.step(0.99, 0.5), 0.5);
    }

    #[test]
    fn plateau_stopper_waits_for_grace_and_four_results() {
        let mut s = PlateauStopper::study();
        // The study's metric is ~1e-3, so the std rule fires as soon as it may: epoch 10.
        let stops: Vec<bool> = (1..=12).map(|e| s.record(1e-3 + e as f64 * 1e-5)).collect();
        assert_eq!(stops.iter().position(|&b| b), Some(9));
        // A metric still moving by more than 0.01 never stops.
        let mut s = PlateauStopper::study();
        assert!((0..30).all(|e| !s.record(e as f64 * 0.02)));
        // Population std: [0, 0, 0, 0.04] has std 0.0173 (≥ 0.01), sample std would differ.
        let mut s = PlateauStopper::new(0.01, 4, 1);
        for x in [0.0, 0.0, 0.0] {
            s.record(x);
        }
        assert!(!s.record(0.04));
        let mut s = PlateauStopper::new(0.018, 4, 1);
        for x in [0.0, 0.0, 0.0] {
            s.record(x);
        }
        assert!(s.record(0.04));
    }

    #[test]
    fn patience_stopper_counts_epochs_without_improvement() {
        let mut s = PatienceStopper::new(3, 0.0);
        let out: Vec<bool> = [5.0, 4.0, 4.0, 4.5, 4.0, 3.0]
            .iter()
            .map(|&m| s.record(m))
            .collect();
        assert_eq!(out, [false, false, false, false, true, false]);
    }
}
