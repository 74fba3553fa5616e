//! Forecast verification over scored events: contingency tables and their skill scores, the
//! percentile bootstrap over ARs (the independent unit), tiles within them and seeds, and the
//! paired permutation test between two predictors on the same events. Pure arithmetic on
//! [`Outcome`]s; the `evaluate` stage and the pooled sweep report build them from artifacts.

use serde::{Deserialize, Serialize};

use crate::split::SplitMix64;

/// What one predictor did on one scored unit: a tile, or an AR's Emergence column.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// The observed series emerges (the criterion fires on it).
    pub observed: bool,
    /// The predicted series emerges over the scored span (Table 2's alarm).
    pub alarmed: bool,
    /// Table 2's lead (h), when both emerge.
    pub lead_h: Option<i64>,
    /// Alarmed at any hour of the operational replay.
    pub op_alarmed: bool,
    /// The replay's warning lead (h): the emergence hour minus the start of the alarm in force
    /// then; `None` without an emergence or a warning.
    pub op_lead_h: Option<i64>,
    /// Over the metric window, tiles only.
    pub rmse_gauss: Option<f64>,
    pub mae_gauss: Option<f64>,
}

/// The event definitions a contingency table is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventSet {
    /// Per tile: a hit is an alarm on an emerging tile with Table 2 lead ≥ the delay.
    TileDelay,
    /// Per tile: a hit is an alarm on an emerging tile, whatever its lead.
    TileAny,
    /// Per AR, from the Emergence column, lead ≥ the delay.
    ArDelay,
    /// Per AR, any lead.
    ArAny,
    /// Per tile, the operational replay's warning lead ≥ the delay.
    TileOperational,
    /// Per AR, the operational replay's warning lead ≥ the delay.
    ArOperational,
}

impl EventSet {
    pub const ALL: [EventSet; 6] = [
        EventSet::TileDelay,
        EventSet::TileAny,
        EventSet::ArDelay,
        EventSet::ArAny,
        EventSet::TileOperational,
        EventSet::ArOperational,
    ];

    pub fn per_tile(self) -> bool {
        matches!(
            self,
            EventSet::TileDelay | EventSet::TileAny | EventSet::TileOperational
        )
    }

    /// The short name used in files (`tiles, lead ≥ 4 h`).
    pub fn name(self, delay: i64) -> String {
        match self {
            EventSet::TileDelay => format!("tiles, lead ≥ {delay} h"),
            EventSet::TileAny => "tiles, any lead".into(),
            EventSet::ArDelay => format!("ARs, lead ≥ {delay} h"),
            EventSet::ArAny => "ARs, any lead".into(),
            EventSet::TileOperational => format!("tiles, replay warning ≥ {delay} h"),
            EventSet::ArOperational => format!("ARs, replay warning ≥ {delay} h"),
        }
    }

    /// The cell of the contingency table this outcome falls in.
    pub fn cell(self, o: &Outcome, delay: i64) -> Cell {
        let (hit, alarmed) = match self {
            EventSet::TileDelay | EventSet::ArDelay => {
                (o.lead_h.is_some_and(|l| l >= delay), o.alarmed)
            }
            EventSet::TileAny | EventSet::ArAny => (o.alarmed, o.alarmed),
            EventSet::TileOperational | EventSet::ArOperational => {
                (o.op_lead_h.is_some_and(|l| l >= delay), o.op_alarmed)
            }
        };
        match (o.observed, hit, alarmed) {
            (true, true, _) => Cell::Hit,
            (true, false, _) => Cell::Miss,
            (false, _, true) => Cell::FalseAlarm,
            (false, _, false) => Cell::CorrectNegative,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Hit,
    Miss,
    FalseAlarm,
    CorrectNegative,
}

/// A 2×2 table, weighted (a bootstrap replicate counts a unit as often as it drew it).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Contingency {
    pub hits: f64,
    pub misses: f64,
    pub false_alarms: f64,
    pub correct_negatives: f64,
}

impl Contingency {
    pub fn add(&mut self, c: Cell, w: f64) {
        match c {
            Cell::Hit => self.hits += w,
            Cell::Miss => self.misses += w,
            Cell::FalseAlarm => self.false_alarms += w,
            Cell::CorrectNegative => self.correct_negatives += w,
        }
    }
    fn merge(&mut self, o: &Contingency) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.false_alarms += o.false_alarms;
        self.correct_negatives += o.correct_negatives;
    }
    fn ratio(n: f64, d: f64) -> f64 {
        if d > 0.0 { n / d } else { f64::NAN }
    }
    /// Probability of detection a/(a+c); undefined without events.
    pub fn pod(&self) -> f64 {
        Self::ratio(self.hits, self.hits + self.misses)
    }
    /// False alarm ratio b/(a+b); undefined without alarms.
    pub fn far(&self) -> f64 {
        Self::ratio(self.false_alarms, self.hits + self.false_alarms)
    }
    /// Probability of false detection b/(b+d); undefined without non-events.
    pub fn pofd(&self) -> f64 {
        Self::ratio(
            self.false_alarms,
            self.false_alarms + self.correct_negatives,
        )
    }
    /// True skill statistic POD − POFD; undefined unless both events and non-events occur.
    pub fn tss(&self) -> f64 {
        self.pod() - self.pofd()
    }
    /// Heidke skill score 2(ad − bc) / ((a+c)(c+d) + (a+b)(b+d)); undefined, like TSS, unless
    /// both events and non-events occur (with one class only the formula gives 0 whatever the
    /// forecasts were).
    pub fn hss(&self) -> f64 {
        let (a, b, c, d) = (
            self.hits,
            self.false_alarms,
            self.misses,
            self.correct_negatives,
        );
        if a + c == 0.0 || b + d == 0.0 {
            return f64::NAN;
        }
        Self::ratio(2.0 * (a * d - b * c), (a + c) * (c + d) + (a + b) * (b + d))
    }
}

/// Additive sums over units, from which every statistic follows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub tables: [Contingency; 6],
    pub lead_sum: f64,
    pub lead_n: f64,
    pub rmse_sum: f64,
    pub mae_sum: f64,
    pub tiles: f64,
    pub ar_success: f64,
    pub ars: f64,
}

impl Tally {
    pub fn add_tile(&mut self, o: &Outcome, delay: i64, w: f64) {
        for (i, set) in EventSet::ALL.iter().enumerate() {
            if set.per_tile() {
                self.tables[i].add(set.cell(o, delay), w);
            }
        }
        if o.observed
            && let Some(l) = o.lead_h
        {
            self.lead_sum += w * l as f64;
            self.lead_n += w;
        }
        self.rmse_sum += w * o.rmse_gauss.unwrap_or(f64::NAN);
        self.mae_sum += w * o.mae_gauss.unwrap_or(f64::NAN);
        self.tiles += w;
    }

    pub fn add_ar(&mut self, o: &Outcome, delay: i64, w: f64) {
        for (i, set) in EventSet::ALL.iter().enumerate() {
            if !set.per_tile() {
                self.tables[i].add(set.cell(o, delay), w);
            }
        }
        self.ar_success += w * f64::from(o.observed && o.lead_h.is_some_and(|l| l >= delay));
        self.ars += w;
    }

    pub fn merge(&mut self, o: &Tally) {
        for (t, u) in self.tables.iter_mut().zip(&o.tables) {
            t.merge(u);
        }
        self.lead_sum += o.lead_sum;
        self.lead_n += o.lead_n;
        self.rmse_sum += o.rmse_sum;
        self.mae_sum += o.mae_sum;
        self.tiles += o.tiles;
        self.ar_success += o.ar_success;
        self.ars += o.ars;
    }

    pub fn table(&self, set: EventSet) -> &Contingency {
        &self.tables[EventSet::ALL.iter().position(|s| *s == set).expect("a set")]
    }

    pub fn value(&self, m: Stat) -> f64 {
        let ratio = |n: f64, d: f64| if d > 0.0 { n / d } else { f64::NAN };
        match m {
            Stat::Tss(s) => self.table(s).tss(),
            Stat::Hss(s) => self.table(s).hss(),
            Stat::Pod(s) => self.table(s).pod(),
            Stat::Far(s) => self.table(s).far(),
            Stat::Pofd(s) => self.table(s).pofd(),
            Stat::Success => ratio(self.ar_success, self.ars),
            Stat::MeanLead => ratio(self.lead_sum, self.lead_n),
            Stat::Rmse => ratio(self.rmse_sum, self.tiles),
            Stat::Mae => ratio(self.mae_sum, self.tiles),
        }
    }
}

/// A statistic with an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Tss(EventSet),
    Hss(EventSet),
    Pod(EventSet),
    Far(EventSet),
    Pofd(EventSet),
    /// Share of ARs whose Emergence lead is ≥ the delay (Table 2's "successful ARs").
    Success,
    /// Mean Table 2 lead over the alarmed emerging tiles.
    MeanLead,
    /// Mean over tiles of the per-tile RMSE (Gauss) over the metric window.
    Rmse,
    Mae,
}

impl Stat {
    pub fn name(self, delay: i64) -> String {
        match self {
            Stat::Tss(s) => format!("TSS ({})", s.name(delay)),
            Stat::Hss(s) => format!("HSS ({})", s.name(delay)),
            Stat::Pod(s) => format!("POD ({})", s.name(delay)),
            Stat::Far(s) => format!("FAR ({})", s.name(delay)),
            Stat::Pofd(s) => format!("POFD ({})", s.name(delay)),
            Stat::Success => format!("success rate (ARs, lead ≥ {delay} h)"),
            Stat::MeanLead => "mean lead (h, alarmed emerging tiles)".into(),
            Stat::Rmse => "RMSE (G, metric window)".into(),
            Stat::Mae => "MAE (G, metric window)".into(),
        }
    }

    /// The statistics every predictor is given an interval for.
    pub fn reported() -> Vec<Stat> {
        let mut v = Vec::new();
        for s in EventSet::ALL {
            v.extend([
                Stat::Tss(s),
                Stat::Hss(s),
                Stat::Pod(s),
                Stat::Far(s),
                Stat::Pofd(s),
            ]);
        }
        v.extend([Stat::Success, Stat::MeanLead, Stat::Rmse, Stat::Mae]);
        v
    }

    /// The statistics the paired comparison reports: the four.
    pub const PAIRED: [Stat; 4] = [
        Stat::Tss(EventSet::TileDelay),
        Stat::Success,
        Stat::MeanLead,
        Stat::Rmse,
    ];
}

/// One AR's outcomes: per seed, per predictor, the Emergence outcome and the tiles' (the same
/// tiles for every predictor and seed).
#[derive(Debug, Clone)]
pub struct ArUnit {
    pub ar: u32,
    pub fold: Option<u64>,
    pub tiles: Vec<u32>,
    /// `[seed][predictor]` → (Emergence, tiles in `tiles` order).
    pub cells: Vec<Vec<(Outcome, Vec<Outcome>)>>,
}

/// Every outcome of an evaluation, aligned: predictors × seeds × ARs × tiles.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub predictors: Vec<String>,
    pub primary: usize,
    pub seeds: Vec<Option<u64>>,
    pub ars: Vec<ArUnit>,
    pub delay: i64,
}

/// How a resample is drawn and how many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resampling {
    /// Bootstrap replicates.
    pub resamples: usize,
    /// Random permutations when exact enumeration (2^ARs) is larger.
    pub permutations: usize,
    pub seed: u64,
    /// Central coverage of the intervals.
    pub level: f64,
}

impl Default for Resampling {
    fn default() -> Self {
        Resampling {
            resamples: 2000,
            permutations: 10_000,
            seed: 0,
            level: 0.95,
        }
    }
}

/// A point estimate and its percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    /// Replicates in which the statistic was defined.
    pub defined: usize,
}

/// A paired comparison of the primary predictor against another: Δ = primary − other.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Paired {
    pub delta: Estimate,
    /// Two-sided permutation p-value (swapping the two predictors' outcomes per AR).
    pub p_value: f64,
    /// Whether every one of the 2^ARs swaps was enumerated.
    pub exact: bool,
}

/// Which units a replicate drew: (seed, AR, tiles), repeated as drawn.
type Draw = Vec<(usize, usize, Vec<usize>)>;

impl Dataset {
    pub fn tile_count(&self) -> usize {
        self.ars.iter().map(|a| a.tiles.len()).sum()
    }

    fn full(&self) -> Draw {
        let mut d = Vec::new();
        for s in 0..self.seeds.len() {
            for (a, u) in self.ars.iter().enumerate() {
                d.push((s, a, (0..u.tiles.len()).collect()));
            }
        }
        d
    }

    /// ARs, then tiles within each drawn AR, with replacement; then, within each drawn AR, its
    /// seeds (as many as there are, with replacement, the same tiles for each). Seeds are nested
    /// in the AR draw, not drawn beside it: the ARs are the independent unit (drawing S seeds ×
    /// the ARs counted each AR S times and shrank the intervals). The seeds come from a stream
    /// of their own (`seeds`), so the AR and tile draws are the ones a single run makes: a
    /// predictor whose outcomes do not change with the seed gets exactly one run's interval.
    fn resample(&self, rng: &mut SplitMix64, seeds: &mut SplitMix64) -> Draw {
        let ns = self.seeds.len();
        let mut d = Vec::new();
        for _ in 0..self.ars.len() {
            let a = rng.below(self.ars.len());
            let n = self.ars[a].tiles.len();
            let tiles: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
            if ns == 1 {
                d.push((0, a, tiles));
                continue;
            }
            for _ in 0..ns {
                d.push((seeds.below(ns), a, tiles.clone()));
            }
        }
        d
    }

    fn tally(&self, p: usize, draw: &Draw) -> Tally {
        let mut t = Tally::default();
        for (s, a, tiles) in draw {
            let (ar, ts) = &self.ars[*a].cells[*s][p];
            t.add_ar(ar, self.delay, 1.0);
            for &i in tiles {
                t.add_tile(&ts[i], self.delay, 1.0);
            }
        }
        t
    }

    /// Every predictor's tally on all units.
    pub fn tallies(&self) -> Vec<Tally> {
        let full = self.full();
        (0..self.predictors.len())
            .map(|p| self.tally(p, &full))
            .collect()
    }

    /// Intervals for every predictor and statistic, and the paired Δ against the primary, from
    /// one set of replicates (the same draw for every predictor, so the Δ are paired).
    pub fn bootstrap(
        &self,
        stats: &[Stat],
        r: &Resampling,
    ) -> (Vec<Vec<Estimate>>, Vec<Vec<Estimate>>) {
        let point = self.tallies();
        let np = self.predictors.len();
        let mut rng = SplitMix64(r.seed);
        let mut seed_rng = SplitMix64(r.seed ^ 0x5345_4544_5321);
        let mut reps: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); stats.len()]; np];
        let mut deltas: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); stats.len()]; np];
        for _ in 0..r.resamples {
            let draw = self.resample(&mut rng, &mut seed_rng);
            let t: Vec<Tally> = (0..np).map(|p| self.tally(p, &draw)).collect();
            let primary: Vec<f64> = stats.iter().map(|&m| t[self.primary].value(m)).collect();
            for (p, tp) in t.iter().enumerate() {
                for (i, &m) in stats.iter().enumerate() {
                    let v = tp.value(m);
                    let d = primary[i] - v;
                    if v.is_finite() {
                        reps[p][i].push(v);
                    }
                    if d.is_finite() {
                        deltas[p][i].push(d);
                    }
                }
            }
        }
        let est = |v: f64, xs: &mut Vec<f64>| {
            let (low, high) = interval(xs, r.level);
            Estimate {
                value: v,
                low,
                high,
                defined: xs.len(),
            }
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        for p in 0..np {
            let mut ap = Vec::new();
            let mut bp = Vec::new();
            for (i, &m) in stats.iter().enumerate() {
                ap.push(est(point[p].value(m), &mut reps[p][i]));
                bp.push(est(
                    point[self.primary].value(m) - point[p].value(m),
                    &mut deltas[p][i],
                ));
            }
            a.push(ap);
            b.push(bp);
        }
        (a, b)
    }

    /// Two-sided permutation p-value of Δ(stat) = primary − `other`: under the null the two
    /// predictors are exchangeable, so each AR (all its seeds and tiles together, the
    /// independent unit) swaps their outcomes with probability ½. Every swap pattern is
    /// enumerated when there are at most 2^`exact_limit` (12 ARs); else `r.permutations`
    /// random ones, with the observed pattern counted (p ≥ 1/(N+1)).
    pub fn permutation_p(&self, other: usize, stat: Stat, r: &Resampling) -> (f64, bool) {
        let per_ar: Vec<(Tally, Tally)> = (0..self.ars.len())
            .map(|a| {
                let d: Draw = (0..self.seeds.len())
                    .map(|s| (s, a, (0..self.ars[a].tiles.len()).collect()))
                    .collect();
                (self.tally(self.primary, &d), self.tally(other, &d))
            })
            .collect();
        let delta = |swap: &dyn Fn(usize) -> bool| {
            let (mut x, mut y) = (Tally::default(), Tally::default());
            for (a, (tp, to)) in per_ar.iter().enumerate() {
                if swap(a) {
                    x.merge(to);
                    y.merge(tp);
                } else {
                    x.merge(tp);
                    y.merge(to);
                }
            }
            x.value(stat) - y.value(stat)
        };
        let n = self.ars.len();
        let observed = delta(&|_| false);
        if !observed.is_finite() {
            return (f64::NAN, n <= EXACT_LIMIT);
        }
        // A tolerance, so sums that differ only by rounding count as ties.
        let tol = 1e-9 * observed.abs().max(1.0);
        let extreme = |d: f64| d.is_finite() && d.abs() >= observed.abs() - tol;
        if n <= EXACT_LIMIT {
            let total = 1usize << n;
            let hits = (0..total)
                .filter(|mask| extreme(delta(&|a| mask >> a & 1 == 1)))
                .count();
            return (hits as f64 / total as f64, true);
        }
        let mut rng = SplitMix64(r.seed ^ 0x5045_524d);
        let mut hits = 1;
        for _ in 0..r.permutations {
            let mask: Vec<bool> = (0..n).map(|_| rng.next_u64() >> 63 == 1).collect();
            hits += usize::from(extreme(delta(&|a| mask[a])));
        }
        (hits as f64 / (r.permutations + 1) as f64, false)
    }
}

/// ARs up to which the permutation test enumerates every swap pattern.
pub const EXACT_LIMIT: usize = 12;

/// The central `level` percentile interval (linear interpolation, NumPy's default); NaN when
/// nothing is defined.
pub fn interval(xs: &mut [f64], level: f64) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    xs.sort_by(f64::total_cmp);
    let a = (1.0 - level) / 2.0;
    (quantile(xs, a), quantile(xs, 1.0 - a))
}

/// Quantile of sorted values, linear interpolation.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(a: f64, b: f64, c: f64, d: f64) -> Contingency {
        Contingency {
            hits: a,
            false_alarms: b,
            misses: c,
            correct_negatives: d,
        }
    }

    #[test]
    fn scores_match_hand_computed_tables() {
        // a=6 b=2 c=3 d=24: POD 6/9, FAR 2/8, POFD 2/26, TSS 6/9 − 2/26,
        // HSS 2(144 − 6)/(9·27 + 8·26) = 276/451.
        let t = table(6.0, 2.0, 3.0, 24.0);
        assert!((t.pod() - 6.0 / 9.0).abs() < 1e-12);
        assert!((t.far() - 0.25).abs() < 1e-12);
        assert!((t.pofd() - 2.0 / 26.0).abs() < 1e-12);
        assert!((t.tss() - (6.0 / 9.0 - 2.0 / 26.0)).abs() < 1e-12);
        assert!((t.hss() - 276.0 / 451.0).abs() < 1e-12);
        // A perfect forecast: TSS = HSS = 1.
        let p = table(5.0, 0.0, 0.0, 30.0);
        assert_eq!((p.tss(), p.hss(), p.far()), (1.0, 1.0, 0.0));
    }

    #[test]
    fn degenerate_tables_are_undefined_not_zero() {
        // No events: POD, TSS undefined; the false alarms still give POFD and FAR.
        let t = table(0.0, 3.0, 0.0, 7.0);
        assert!(t.pod().is_nan() && t.tss().is_nan());
        assert!((t.pofd() - 0.3).abs() < 1e-12);
        assert_eq!(t.far(), 1.0);
        // No alarms: FAR undefined, POD = POFD = 0, so TSS = HSS = 0 (no skill).
        let t = table(0.0, 0.0, 4.0, 6.0);
        assert!(t.far().is_nan());
        assert_eq!((t.pod(), t.pofd(), t.tss(), t.hss()), (0.0, 0.0, 0.0, 0.0));
        // No non-events (every AR emerges): POFD and TSS undefined.
        let t = table(3.0, 0.0, 2.0, 0.0);
        assert!(t.pofd().is_nan() && t.tss().is_nan() && t.hss().is_nan());
        assert!(table(0.0, 0.0, 0.0, 0.0).hss().is_nan());
    }

    #[test]
    fn each_event_set_puts_an_outcome_in_its_cell() {
        let late = Outcome {
            observed: true,
            alarmed: true,
            lead_h: Some(2),
            op_alarmed: true,
            op_lead_h: Some(5),
            ..Default::default()
        };
        assert_eq!(EventSet::TileDelay.cell(&late, 4), Cell::Miss);
        assert_eq!(EventSet::TileAny.cell(&late, 4), Cell::Hit);
        assert_eq!(EventSet::TileOperational.cell(&late, 4), Cell::Hit);
        let ilap = Outcome {
            alarmed: true,
            ..Default::default()
        };
        assert_eq!(EventSet::TileDelay.cell(&ilap, 4), Cell::FalseAlarm);
        assert_eq!(
            EventSet::TileOperational.cell(&ilap, 4),
            Cell::CorrectNegative
        );
        let quiet = Outcome::default();
        assert_eq!(EventSet::ArAny.cell(&quiet, 4), Cell::CorrectNegative);
    }

    /// `n` ARs of 7 tiles; tile t of AR a emerges when (a + t) % 3 == 0 (so a mix of events and
    /// non-events); each predictor says what it does on (ar, tile, observed).
    /// What a synthetic predictor does on (ar, tile, observed).
    type Behaviour = fn(usize, usize, bool) -> Outcome;

    fn synthetic(n: usize, predictors: &[(&str, Behaviour)]) -> Dataset {
        let ars = (0..n)
            .map(|a| {
                let per: Vec<(Outcome, Vec<Outcome>)> = predictors
                    .iter()
                    .map(|(_, f)| {
                        let tiles: Vec<Outcome> =
                            (0..7).map(|t| f(a, t, (a + t).is_multiple_of(3))).collect();
                        let em = Outcome {
                            observed: tiles.iter().any(|o| o.observed),
                            alarmed: tiles.iter().any(|o| o.alarmed),
                            lead_h: tiles.iter().filter_map(|o| o.lead_h).max(),
                            ..Default::default()
                        };
                        (em, tiles)
                    })
                    .collect();
                ArUnit {
                    ar: 20_000 + a as u32,
                    fold: None,
                    tiles: (1..=7).collect(),
                    cells: vec![per],
                }
            })
            .collect();
        Dataset {
            predictors: predictors.iter().map(|(n, _)| n.to_string()).collect(),
            primary: 0,
            seeds: vec![None],
            ars,
            delay: 4,
        }
    }

    /// Copies the observed series: every emergence alarmed 12 h ahead, no false alarm, no error.
    fn oracle(_: usize, _: usize, observed: bool) -> Outcome {
        Outcome {
            observed,
            alarmed: observed,
            lead_h: observed.then_some(12),
            op_alarmed: observed,
            op_lead_h: observed.then_some(11),
            rmse_gauss: Some(0.0),
            mae_gauss: Some(0.0),
        }
    }

    /// Alarms every third tile whatever happens, late, with an error.
    fn guesser(a: usize, t: usize, observed: bool) -> Outcome {
        let alarmed = (a + 2 * t).is_multiple_of(3);
        Outcome {
            observed,
            alarmed,
            lead_h: (observed && alarmed).then_some(2),
            op_alarmed: alarmed,
            op_lead_h: (observed && alarmed).then_some(1),
            rmse_gauss: Some(5.0 + t as f64),
            mae_gauss: Some(4.0),
        }
    }

    #[test]
    fn the_permutation_p_value_is_one_for_identical_predictors_and_small_for_the_truth() {
        let r = Resampling::default();
        let same = synthetic(10, &[("a", guesser), ("b", guesser)]);
        for m in Stat::PAIRED {
            let (p, exact) = same.permutation_p(1, m, &r);
            assert!(exact, "10 ARs are enumerated");
            assert_eq!(p, 1.0, "{m:?}");
        }
        let truth = synthetic(10, &[("oracle", oracle), ("guess", guesser)]);
        for m in Stat::PAIRED {
            let (p, _) = truth.permutation_p(1, m, &r);
            // Only the two patterns swapping all or none of the 10 ARs are as extreme.
            assert!(p <= 2.0 / 1024.0 + 1e-12, "{m:?}: p = {p}");
        }
        // 20 ARs: random swaps, p ≥ 1/(N + 1) and still small.
        let big = synthetic(20, &[("oracle", oracle), ("guess", guesser)]);
        let (p, exact) = big.permutation_p(1, Stat::Tss(EventSet::TileDelay), &r);
        assert!(
            !exact && p >= 1.0 / (r.permutations + 1) as f64 && p < 0.01,
            "p = {p}"
        );
    }

    #[test]
    fn seeds_that_change_nothing_leave_the_intervals_of_one_run() {
        let one = synthetic(8, &[("oracle", oracle), ("guess", guesser)]);
        let mut three = one.clone();
        three.seeds = vec![Some(0), Some(1), Some(2)];
        for a in &mut three.ars {
            a.cells = vec![a.cells[0].clone(); 3];
        }
        let r = Resampling {
            resamples: 400,
            ..Resampling::default()
        };
        let stats = Stat::PAIRED;
        let (a1, d1) = one.bootstrap(&stats, &r);
        let (a3, d3) = three.bootstrap(&stats, &r);
        let close = |x: f64, y: f64| (x.is_nan() && y.is_nan()) || (x - y).abs() < 1e-12;
        for p in 0..2 {
            for i in 0..stats.len() {
                for (e1, e3) in [(a1[p][i], a3[p][i]), (d1[p][i], d3[p][i])] {
                    assert!(
                        close(e1.value, e3.value)
                            && close(e1.low, e3.low)
                            && close(e1.high, e3.high),
                        "{:?} of predictor {p}: one run {e1:?}, three identical seeds {e3:?}",
                        stats[i]
                    );
                }
            }
        }
        // A predictor that does change with the seed still draws its seeds' outcomes.
        let mut varied = three.clone();
        for (k, a) in varied.ars.iter_mut().enumerate() {
            a.cells[1][1] = a.cells[0][0].clone();
            a.cells[2][1].0.alarmed = k % 2 == 0;
        }
        let (av, _) = varied.bootstrap(&stats, &r);
        assert_ne!(
            format!("{:?}", av[1]),
            format!("{:?}", a3[1]),
            "the second predictor's seeds differ now"
        );
    }

    #[test]
    fn the_bootstrap_is_deterministic_with_its_seed_and_covers_the_estimate() {
        let d = synthetic(8, &[("oracle", oracle), ("guess", guesser)]);
        let stats = Stat::reported();
        let r = Resampling {
            resamples: 300,
            ..Resampling::default()
        };
        let (a, da) = d.bootstrap(&stats, &r);
        let (b, db) = d.bootstrap(&stats, &r);
        // Compared as text: an undefined statistic is NaN, which equals nothing.
        let text = |x: &dyn std::fmt::Debug| format!("{x:?}");
        assert_eq!(
            text(&(&a, &da)),
            text(&(&b, &db)),
            "the same seed, the same intervals"
        );
        let (c, _) = d.bootstrap(&stats, &Resampling { seed: 1, ..r });
        assert_ne!(text(&a), text(&c), "another seed, other draws");
        for (p, row) in a.iter().enumerate() {
            for (e, m) in row.iter().zip(&stats) {
                if e.value.is_finite() && e.defined > 0 {
                    assert!(
                        e.low <= e.value + 1e-12 && e.value <= e.high + 1e-12,
                        "{p} {m:?}: {e:?}"
                    );
                }
            }
        }
        // The guesser's TSS is below the oracle's 1, and its Δ interval excludes 0.
        let i = stats
            .iter()
            .position(|s| *s == Stat::Tss(EventSet::TileDelay))
            .unwrap();
        assert_eq!(a[0][i].value, 1.0);
        assert!(da[1][i].value > 0.5 && da[1][i].low > 0.0, "{:?}", da[1][i]);
        assert_eq!(da[0][i].value, 0.0, "the primary against itself");
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&xs, 0.5), 2.5);
        assert_eq!(quantile(&xs, 0.25), 1.75);
        assert_eq!(quantile(&xs, 1.0), 4.0);
        let mut v = vec![3.0, 1.0, 2.0];
        assert_eq!(interval(&mut v, 0.5), (1.5, 2.5));
    }
}
