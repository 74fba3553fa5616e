//! A search space as pipeline.yaml declares it: each parameter's distribution, and for a
//! conditional parameter the value of the parameter it depends on (paper Listing 1: the teacher
//! forcing ratio exists only for MagFluxEnc-Dec, alpha only for the hybrid loss).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One parameter's prior.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// log-uniform on [low, high] (hyperopt `hp.loguniform(log(low), log(high))`).
    Loguniform([f64; 2]),
    /// uniform on [low, high].
    Uniform([f64; 2]),
    /// one of the listed values (hyperopt `hp.choice`).
    Choice(Vec<Value>),
}

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(flatten)]
    pub dist: Dist,
    /// Active only when another parameter has this value: `{model: MagFluxEnc-Dec}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<BTreeMap<String, Value>>,
}

/// A checked space: parameters ordered so that every condition's parameter comes first.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub params: Vec<(String, ParamSpec)>,
}

/// A configuration: the active parameters only.
pub type Config = BTreeMap<String, Value>;

impl Space {
    pub fn new(raw: &BTreeMap<String, ParamSpec>) -> Result<Space, String> {
        if raw.is_empty() {
            return Err("the search space is empty".into());
        }
        for (name, p) in raw {
            match &p.dist {
                Dist::Loguniform([lo, hi]) if !(*lo > 0.0 && lo < hi && hi.is_finite()) => {
                    return Err(format!("{name}: loguniform needs 0 < low < high"));
                }
                Dist::Uniform([lo, hi]) if !(lo < hi && lo.is_finite() && hi.is_finite()) => {
                    return Err(format!("{name}: uniform needs low < high"));
                }
                Dist::Choice(v) if v.is_empty() => {
                    return Err(format!("{name}: choice needs at least one value"));
                }
                _ => {}
            }
            if let Some(w) = &p.when {
                if w.len() != 1 {
                    return Err(format!("{name}: `when` names exactly one parameter"));
                }
                let (parent, value) = w.iter().next().expect("one");
                let Some(pp) = raw.get(parent) else {
                    return Err(format!(
                        "{name}: `when` names an unknown parameter `{parent}`"
                    ));
                };
                match &pp.dist {
                    Dist::Choice(vals) if vals.contains(value) => {}
                    _ => {
                        return Err(format!(
                            "{name}: `when: {{{parent}: {value}}}` is not one of {parent}'s choices"
                        ));
                    }
                }
            }
        }
        // Parents first: repeatedly take parameters whose parent is already placed.
        let mut placed: Vec<(String, ParamSpec)> = Vec::new();
        let mut left: Vec<(&String, &ParamSpec)> = raw.iter().collect();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|(n, p)| {
                let ready = p
                    .when
                    .as_ref()
                    .is_none_or(|w| w.keys().all(|k| placed.iter().any(|(pn, _)| pn == k)));
                if ready {
                    placed.push(((*n).clone(), (*p).clone()));
                }
                !ready
            });
            if left.len() == before {
                return Err("the `when` conditions form a cycle".into());
            }
        }
        Ok(Space { params: placed })
    }

    /// Whether parameter `p` is active given the values chosen so far.
    pub fn active(p: &ParamSpec, chosen: &Config) -> bool {
        p.when
            .as_ref()
            .is_none_or(|w| w.iter().all(|(k, v)| chosen.get(k) == Some(v)))
    }

    /// The paper's Listing 1.
    pub fn listing1() -> BTreeMap<String, ParamSpec> {
        let p = |dist: Dist, when: Option<(&str, Value)>| ParamSpec {
            dist,
            when: when.map(|(k, v)| [(k.to_string(), v)].into()),
        };
        let choice = |v: &[Value]| Dist::Choice(v.to_vec());
        use serde_json::json;
        [
            ("lr", p(Dist::Loguniform([1e-5, 1e-2]), None)),
            ("weight_decay", p(Dist::Loguniform([1e-6, 1e-3]), None)),
            (
                "hidden",
                p(choice(&[2, 4, 8, 16, 32, 64, 128].map(|v| json!(v))), None),
            ),
            ("layers", p(choice(&[1, 2, 3, 4].map(|v| json!(v))), None)),
            (
                "dropout",
                p(choice(&[0.0, 0.1, 0.2, 0.3].map(|v| json!(v))), None),
            ),
            ("batch_size", p(choice(&[json!(32), json!(64)]), None)),
            ("shuffle", p(choice(&[json!(true), json!(false)]), None)),
            (
                "model",
                p(
                    choice(&[json!("MagFluxLSTM"), json!("MagFluxEnc-Dec")]),
                    None,
                ),
            ),
            (
                "teacher_forcing_ratio",
                p(
                    choice(&[0.0, 0.1, 0.15, 0.25, 0.5].map(|v| json!(v))),
                    Some(("model", json!("MagFluxEnc-Dec"))),
                ),
            ),
            ("loss", p(choice(&[json!("hybrid"), json!("value")]), None)),
            (
                "alpha",
                p(
                    choice(&[0.1, 0.3, 0.5, 0.7, 0.9].map(|v| json!(v))),
                    Some(("loss", json!("hybrid"))),
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listing1_orders_parents_first_and_reads_from_yaml() {
        let s = Space::new(&Space::listing1()).unwrap();
        let pos = |n: &str| s.params.iter().position(|(k, _)| k == n).unwrap();
        assert!(pos("model") < pos("teacher_forcing_ratio"));
        assert!(pos("loss") < pos("alpha"));
        let yaml = "lr: {loguniform: [1.0e-5, 1.0e-2]}\nalpha: {choice: [0.1, 0.9], when: {loss: hybrid}}\nloss: {choice: [hybrid, value]}\n";
        let raw: BTreeMap<String, ParamSpec> = serde_yaml::from_str(yaml).unwrap();
        let s = Space::new(&raw).unwrap();
        assert_eq!(s.params.len(), 3);
        assert!(Space::active(
            &raw["alpha"],
            &[("loss".into(), json!("hybrid"))].into()
        ));
        assert!(!Space::active(
            &raw["alpha"],
            &[("loss".into(), json!("value"))].into()
        ));
    }

    #[test]
    fn bad_spaces_are_refused() {
        let bad = |yaml: &str| {
            let raw: BTreeMap<String, ParamSpec> = serde_yaml::from_str(yaml).unwrap();
            Space::new(&raw).unwrap_err()
        };
        assert!(bad("lr: {loguniform: [0.0, 1.0]}").contains("0 < low"));
        assert!(bad("a: {choice: [1], when: {b: 2}}").contains("unknown parameter `b`"));
        assert!(bad("b: {choice: [1]}\na: {choice: [1], when: {b: 2}}").contains("not one of"));
        assert!(
            bad("a: {choice: [1], when: {b: 1}}\nb: {choice: [1], when: {a: 1}}").contains("cycle")
        );
    }
}
