//! `split_ars`: assigns every ingested AR exactly one role: train, val, test or exclude.

use std::collections::BTreeMap;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::kind::{Context, InputSlot, OutputSlot, ParamError, Report, StageError, TypedKind};
use crate::table;

#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum SplitMode {
    /// The lists given in params (the study's split).
    #[default]
    Fixed,
    /// A seeded shuffle of every AR not excluded, cut by `fractions`.
    Random,
    /// Grouped k-fold cross-validation over the ARs not excluded: a seeded shuffle dealt into
    /// `folds` folds; fold `fold` is the test set, the next fold (cyclically) validation, the
    /// rest training.
    Kfold,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fractions {
    /// Share of the ARs in training.
    pub train: f64,
    /// Share in validation.
    pub val: f64,
    /// Share in test.
    pub test: f64,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitParams {
    pub mode: SplitMode,
    /// For `mode: fixed`: the training ARs, in the order windows are cut.
    pub train: Vec<u32>,
    /// For `mode: fixed`: the validation ARs.
    pub val: Vec<u32>,
    /// For `mode: fixed`: the test ARs.
    pub test: Vec<u32>,
    /// ARs left out of every role (every mode).
    pub exclude: Vec<u32>,
    /// Only for `mode: random`.
    pub fractions: Fractions,
    /// For `mode: random` and `mode: kfold`.
    pub seed: u64,
    /// Only for `mode: kfold`: how many folds.
    pub folds: usize,
    /// Only for `mode: kfold`: which fold is the test set (0-based; default 0). `magpipe run
    /// --folds 0..9` sweeps it.
    pub fold: Option<usize>,
}

impl Default for SplitParams {
    fn default() -> Self {
        SplitParams {
            mode: SplitMode::Fixed,
            train: Vec::new(),
            val: Vec::new(),
            test: Vec::new(),
            exclude: Vec::new(),
            fractions: Fractions {
                train: 0.72,
                val: 0.14,
                test: 0.14,
            },
            seed: 0,
            folds: DEFAULT_FOLDS,
            fold: None,
        }
    }
}

pub const DEFAULT_FOLDS: usize = 10;

pub const ROLES: [&str; 4] = ["train", "val", "test", "exclude"];

impl SplitParams {
    fn lists(&self) -> [(&'static str, &Vec<u32>); 4] {
        [
            ("train", &self.train),
            ("val", &self.val),
            ("test", &self.test),
            ("exclude", &self.exclude),
        ]
    }
}

/// SplitMix64: a tiny, fully specified generator, so a seeded split never changes with a crate
/// upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (Lemire's multiply-shift; the tiny bias is irrelevant for n ≤ 1000).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The split as role → ARs in list order.
pub type Split = BTreeMap<String, Vec<u32>>;

pub fn assign(p: &SplitParams, ars: &[u32]) -> Result<Split, StageError> {
    let mut out: Split = ROLES.iter().map(|r| (r.to_string(), Vec::new())).collect();
    for (role, list) in p.lists() {
        if let Some(ar) = list.iter().find(|ar| !ars.contains(ar)) {
            return Err(StageError::Invalid(format!(
                "params.{role} lists AR{ar}, which is not in the ingested data ({} ARs)",
                ars.len()
            )));
        }
    }
    match p.mode {
        SplitMode::Fixed => {
            for (role, list) in p.lists() {
                out.insert(role.to_string(), list.clone());
            }
            let missing: Vec<String> = ars
                .iter()
                .filter(|ar| !p.lists().iter().any(|(_, l)| l.contains(ar)))
                .map(|ar| format!("AR{ar}"))
                .collect();
            if !missing.is_empty() {
                return Err(StageError::Invalid(format!(
                    "{} ingested AR(s) have no role: {} (add them to train, val, test or exclude)",
                    missing.len(),
                    missing.join(", ")
                )));
            }
        }
        SplitMode::Random => {
            let mut pool: Vec<u32> = ars
                .iter()
                .copied()
                .filter(|a| !p.exclude.contains(a))
                .collect();
            let mut rng = SplitMix64(p.seed);
            for i in (1..pool.len()).rev() {
                pool.swap(i, rng.below(i + 1));
            }
            let n = pool.len() as f64;
            let sum = p.fractions.train + p.fractions.val + p.fractions.test;
            let n_val = (n * p.fractions.val / sum).round() as usize;
            let n_test = (n * p.fractions.test / sum).round() as usize;
            let test = pool.split_off(pool.len() - n_test.min(pool.len()));
            let val = pool.split_off(pool.len() - n_val.min(pool.len()));
            out.insert("train".into(), pool);
            out.insert("val".into(), val);
            out.insert("test".into(), test);
            out.insert("exclude".into(), p.exclude.clone());
        }
        SplitMode::Kfold => {
            let folds = kfolds(p, ars);
            let k = p.fold.unwrap_or(0);
            let val = (k + 1) % p.folds;
            let mut train: Vec<u32> = Vec::new();
            for (i, f) in folds.iter().enumerate() {
                if i != k && i != val {
                    train.extend(f);
                }
            }
            train.sort_unstable();
            out.insert("train".into(), train);
            out.insert("val".into(), folds[val].clone());
            out.insert("test".into(), folds[k].clone());
            out.insert("exclude".into(), p.exclude.clone());
        }
    }
    Ok(out)
}

/// The folds of `mode: kfold`: the ARs not excluded, ascending, shuffled with the seed and dealt
/// round-robin, so fold sizes differ by at most one; each fold ascending (the windowing order).
pub fn kfolds(p: &SplitParams, ars: &[u32]) -> Vec<Vec<u32>> {
    let mut pool: Vec<u32> = ars
        .iter()
        .copied()
        .filter(|a| !p.exclude.contains(a))
        .collect();
    pool.sort_unstable();
    let mut rng = SplitMix64(p.seed);
    for i in (1..pool.len()).rev() {
        pool.swap(i, rng.below(i + 1));
    }
    let mut folds = vec![Vec::new(); p.folds];
    for (i, ar) in pool.into_iter().enumerate() {
        folds[i % p.folds].push(ar);
    }
    for f in &mut folds {
        f.sort_unstable();
    }
    folds
}

/// Reads a split written by this stage.
pub fn read(path: &std::path::Path) -> Result<Split, StageError> {
    let df = table::read_parquet(path)?;
    let bad = |e: &dyn std::fmt::Display| StageError::table(path, e);
    let ar = df
        .column("ar")
        .and_then(|c| c.u32().cloned())
        .map_err(|e| bad(&e))?;
    let role = df
        .column("role")
        .and_then(|c| c.str().cloned())
        .map_err(|e| bad(&e))?;
    let mut out: Split = ROLES.iter().map(|r| (r.to_string(), Vec::new())).collect();
    for (a, r) in ar.no_null_iter().zip(role.no_null_iter()) {
        out.get_mut(r)
            .ok_or_else(|| bad(&format!("unknown role {r:?}")))?
            .push(a);
    }
    Ok(out)
}

pub struct SplitArs;

impl TypedKind for SplitArs {
    type Params = SplitParams;
    const NAME: &'static str = "split_ars";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Assigns every AR one role (train, val, test, exclude): the study's \
        fixed lists, a seeded random split by fractions, or fold `fold` of a seeded k-fold \
        split grouped by AR (test = the fold, validation = the next fold, training = the rest).";

    /// `folds` enters the key only in `mode: kfold`, so the keys of the other modes are the
    /// ones they had before k-fold existed.
    fn key_params(p: &SplitParams) -> serde_json::Value {
        let mut v = serde_json::to_value(p).expect("params serialise");
        if let Some(m) = v.as_object_mut() {
            if p.mode == SplitMode::Kfold {
                // Fold 0 is the default: the same split whether written or not.
                m.insert("fold".into(), p.fold.unwrap_or(0).into());
            } else {
                m.remove("folds");
                m.remove("fold");
            }
        }
        v
    }
    const FOLD_PARAM: Option<&'static str> = Some("fold");
    const INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "inventory",
        doc: "the ingest inventory (which ARs exist)",
    }];
    const OUTPUTS: &'static [OutputSlot] = &[OutputSlot {
        name: "splits",
        file: "splits.parquet",
        doc: "ar, role, position (order within the role's list)",
    }];

    fn check(p: &SplitParams) -> Result<(), ParamError> {
        let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
        for (role, list) in p.lists() {
            for &ar in list {
                if let Some(first) = seen.insert(ar, role) {
                    return Err(ParamError::Invalid {
                        name: role.into(),
                        msg: format!("AR{ar} is listed in both `{first}` and `{role}`"),
                    });
                }
            }
        }
        if p.mode != SplitMode::Kfold && p.fold.is_some() {
            return Err(ParamError::Invalid {
                name: "fold".into(),
                msg: "`fold` is only for `mode: kfold` (`magpipe run --variant kfold --folds \
                      0..9` runs every fold)"
                    .into(),
            });
        }
        if p.mode == SplitMode::Kfold {
            if p.folds < 3 {
                return Err(ParamError::Invalid {
                    name: "folds".into(),
                    msg: "k-fold needs at least 3 folds (test, validation and training)".into(),
                });
            }
            if let Some(f) = p.fold.filter(|f| *f >= p.folds) {
                return Err(ParamError::Invalid {
                    name: "fold".into(),
                    msg: format!("fold {f} is outside 0..{} ({} folds)", p.folds - 1, p.folds),
                });
            }
        }
        if p.mode != SplitMode::Fixed {
            for (role, list) in p.lists().into_iter().take(3) {
                if !list.is_empty() {
                    return Err(ParamError::Invalid {
                        name: role.into(),
                        msg: format!(
                            "mode `{}` draws the roles; give only `exclude`",
                            if p.mode == SplitMode::Random {
                                "random"
                            } else {
                                "kfold"
                            }
                        ),
                    });
                }
            }
        }
        if p.mode == SplitMode::Random {
            let f = &p.fractions;
            if [f.train, f.val, f.test]
                .iter()
                .any(|x| !x.is_finite() || *x < 0.0)
                || f.train <= 0.0
            {
                return Err(ParamError::Invalid {
                    name: "fractions".into(),
                    msg: "fractions must be finite, non-negative, with train > 0".into(),
                });
            }
        }
        Ok(())
    }

    fn run(p: &SplitParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let inv_path = ctx.input("inventory")?;
        let inv = table::read_parquet(inv_path)?;
        let ars: Vec<u32> = inv
            .column("ar")
            .and_then(|c| c.u32().cloned())
            .map_err(|e| StageError::table(inv_path, e))?
            .into_no_null_iter()
            .collect();
        let split = assign(p, &ars)?;
        let (mut ar, mut role, mut pos) = (Vec::new(), Vec::new(), Vec::new());
        for r in ROLES {
            for (i, &a) in split[r].iter().enumerate() {
                ar.push(a);
                role.push(r);
                pos.push(i as u32);
            }
        }
        let path = ctx.output("splits.parquet");
        let mut df = DataFrame::new(
            ar.len(),
            vec![
                Column::new("ar".into(), ar),
                Column::new("role".into(), role),
                Column::new("position".into(), pos),
            ],
        )
        .map_err(|e| StageError::table(&path, e))?;
        table::write_parquet(&mut df, &path)?;
        let counts: Vec<String> = ROLES
            .iter()
            .map(|r| format!("{} {r}", split[*r].len()))
            .collect();
        Ok(Report {
            summary: counts.join(", "),
            stdout: None,
            facts: json!(split),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ars() -> Vec<u32> {
        (11000..11057).collect()
    }

    fn random(seed: u64) -> SplitParams {
        SplitParams {
            mode: SplitMode::Random,
            exclude: vec![11003, 11040],
            seed,
            ..Default::default()
        }
    }

    #[test]
    fn random_split_is_seeded_complete_and_sized_by_fractions() {
        let a = assign(&random(7), &ars()).unwrap();
        assert_eq!(a, assign(&random(7), &ars()).unwrap());
        assert_ne!(a["train"], assign(&random(8), &ars()).unwrap()["train"]);
        let mut all: Vec<u32> = ROLES.iter().flat_map(|r| a[*r].clone()).collect();
        all.sort_unstable();
        assert_eq!(all, ars(), "every AR exactly once");
        assert_eq!(a["exclude"], [11003, 11040]);
        // 55 drawn ARs: round(55·0.14) = 8 val and 8 test, the rest train.
        assert_eq!(
            (a["train"].len(), a["val"].len(), a["test"].len()),
            (39, 8, 8)
        );
    }

    #[test]
    fn kfold_folds_are_disjoint_cover_every_ar_once_and_keep_training_out_of_test() {
        let mut p = SplitParams {
            mode: SplitMode::Kfold,
            exclude: vec![11003, 11040],
            seed: 3,
            ..Default::default()
        };
        let folds = kfolds(&p, &ars());
        assert_eq!(folds.len(), DEFAULT_FOLDS);
        let mut all: Vec<u32> = folds.concat();
        all.sort_unstable();
        let kept: Vec<u32> = ars()
            .into_iter()
            .filter(|a| !p.exclude.contains(a))
            .collect();
        assert_eq!(all, kept, "every AR not excluded in exactly one fold");
        assert!(
            folds.iter().all(|f| f.len() == 5 || f.len() == 6),
            "{folds:?}"
        );
        let mut tested = Vec::new();
        for k in 0..DEFAULT_FOLDS {
            p.fold = Some(k);
            SplitArs::check(&p).unwrap();
            let a = assign(&p, &ars()).unwrap();
            assert_eq!(a["test"], folds[k]);
            assert_eq!(a["val"], folds[(k + 1) % DEFAULT_FOLDS]);
            for t in &a["test"] {
                assert!(
                    !a["train"].contains(t) && !a["val"].contains(t),
                    "AR{t} of fold {k}"
                );
            }
            assert_eq!(a["exclude"], [11003, 11040]);
            assert_eq!(
                a["train"].len() + a["val"].len() + a["test"].len(),
                kept.len()
            );
            tested.extend(a["test"].clone());
        }
        tested.sort_unstable();
        assert_eq!(tested, kept, "over the folds every AR is a test AR once");
        // Another seed deals other folds; the same seed the same ones.
        assert_eq!(kfolds(&p, &ars()), folds);
        p.seed = 4;
        assert_ne!(kfolds(&p, &ars()), folds);
        p.fold = Some(10);
        assert_eq!(SplitArs::check(&p).unwrap_err().param(), Some("fold"));
        let fixed = SplitParams {
            fold: Some(1),
            ..Default::default()
        };
        assert_eq!(SplitArs::check(&fixed).unwrap_err().param(), Some("fold"));
    }

    #[test]
    fn fixed_split_rejects_unknown_and_unassigned_ars() {
        let mut p = SplitParams {
            train: ars()[..50].to_vec(),
            val: ars()[50..].to_vec(),
            ..Default::default()
        };
        assert!(assign(&p, &ars()).is_ok());
        p.test = vec![99_999];
        let e = assign(&p, &ars()).unwrap_err().to_string();
        assert!(e.contains("params.test lists AR99999"), "{e}");
        p.test.clear();
        p.val.pop();
        let e = assign(&p, &ars()).unwrap_err().to_string();
        assert!(e.contains("have no role: AR11056"), "{e}");
    }

    #[test]
    fn an_ar_in_two_lists_is_a_param_error() {
        let p = SplitParams {
            train: vec![1, 2],
            exclude: vec![2],
            ..Default::default()
        };
        let e = SplitArs::check(&p).unwrap_err();
        assert_eq!(e.param(), Some("exclude"));
    }
}
