//! Stage keys. A key is blake3 over the canonical JSON of a [`PreImage`]: everything that can
//! change a stage's outputs, and nothing else.
//!
//! | part | what | why |
//! |---|---|---|
//! | `format` | version of this pre-image layout | a layout change must never alias old keys |
//! | `kind`, `kind_version` | the stage's code | bumping a kind's version reruns it everywhere |
//! | `params` | the kind's key params, defaults filled in | writing a default out changes nothing |
//! | `inputs` | slot → content hash of the upstream output | early cutoff: same bytes, same key |
//! | `sources` | name, size, content hash of each raw file | data edits rerun; moving the folder does not |
//! | `runtime` | facts outside the code that change results (e.g. libtorch version) | |
//!
//! Stage names are not in the key: renaming a stage, or two stages doing the same work, share it.
//! The pre-image is kept in the record so `magpipe status --explain` can say what changed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kind::SourceRole;
use crate::stale::{RawChange, StaleReason, ValueChange};

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    pub name: String,
    pub size: u64,
    pub hash: String,
    /// Absent for data files, so the keys of stages that read only data are what they were
    /// before sources had roles.
    #[serde(default, skip_serializing_if = "SourceRole::is_data")]
    pub role: SourceRole,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreImage {
    pub format: u32,
    pub kind: String,
    pub kind_version: u32,
    pub params: Value,
    pub inputs: BTreeMap<String, String>,
    pub sources: Vec<SourceRef>,
    pub runtime: Value,
}

impl PreImage {
    pub fn key(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("pre-image serialises");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// Human-readable differences from an older pre-image of the same stage.
    pub fn diff(&self, old: &PreImage) -> Vec<StaleReason> {
        let mut out = Vec::new();
        if self.kind != old.kind || self.kind_version != old.kind_version {
            out.push(StaleReason::CodeChanged {
                old_kind: old.kind.clone(),
                old_version: old.kind_version,
                kind: self.kind.clone(),
                version: self.kind_version,
            });
        }
        if self.format != old.format {
            out.push(StaleReason::KeyFormat {
                old: old.format,
                new: self.format,
            });
        }
        out.extend(diff_values(&old.params, &self.params).map(StaleReason::Param));
        for (slot, h) in &self.inputs {
            match old.inputs.get(slot) {
                Some(o) if o == h => {}
                Some(o) => out.push(StaleReason::InputChanged {
                    slot: slot.clone(),
                    old: o.clone(),
                    new: h.clone(),
                }),
                None => out.push(StaleReason::InputNew { slot: slot.clone() }),
            }
        }
        for role in [SourceRole::Data, SourceRole::Code, SourceRole::Env] {
            out.extend(diff_sources(role, &old.sources, &self.sources));
        }
        let mut runtime = Vec::new();
        diff_nested(None, &old.runtime, &self.runtime, &mut runtime);
        out.extend(runtime.into_iter().map(StaleReason::Runtime));
        out
    }
}

/// The source files of one role that changed, appeared or went between two pre-images.
fn diff_sources(role: SourceRole, old: &[SourceRef], new: &[SourceRef]) -> Vec<StaleReason> {
    let mut out = Vec::new();
    let old_src: BTreeMap<&str, &SourceRef> = old
        .iter()
        .filter(|s| s.role == role)
        .map(|s| (s.name.as_str(), s))
        .collect();
    let new_src: BTreeMap<&str, &SourceRef> = new
        .iter()
        .filter(|s| s.role == role)
        .map(|s| (s.name.as_str(), s))
        .collect();
    let changed: Vec<String> = new_src
        .iter()
        .filter(|(n, s)| old_src.get(*n).is_some_and(|o| o.hash != s.hash))
        .map(|(n, _)| n.to_string())
        .collect();
    let added: Vec<String> = new_src
        .keys()
        .filter(|n| !old_src.contains_key(*n))
        .map(|n| n.to_string())
        .collect();
    let removed: Vec<String> = old_src
        .keys()
        .filter(|n| !new_src.contains_key(*n))
        .map(|n| n.to_string())
        .collect();
    for (change, files) in [
        (RawChange::Changed, changed),
        (RawChange::Added, added),
        (RawChange::Removed, removed),
    ] {
        if !files.is_empty() {
            out.push(match role {
                SourceRole::Data => StaleReason::RawFiles { change, files },
                SourceRole::Code => StaleReason::Code { change, files },
                SourceRole::Env => StaleReason::Env { change, files },
            });
        }
    }
    out
}

pub use crate::stale::short;

/// The fields of two JSON objects that differ (or the whole values, when not objects).
/// Runtime facts nest (an interpreter's version and packages): name the leaf that changed
/// (`python.packages.six: 1.16.0 … → 1.17.0 …`), not the whole object.
fn diff_nested(at: Option<&str>, old: &Value, new: &Value, out: &mut Vec<ValueChange>) {
    let name = |k: &str| match at {
        Some(a) => format!("{a}.{k}"),
        None => k.to_string(),
    };
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => diff_nested(Some(&name(k)), ov, nv, out),
                    None => out.push(ValueChange {
                        name: Some(name(k)),
                        old: None,
                        new: Some(nv.clone()),
                    }),
                }
            }
            for (k, ov) in o.iter().filter(|(k, _)| !n.contains_key(*k)) {
                out.push(ValueChange {
                    name: Some(name(k)),
                    old: Some(ov.clone()),
                    new: None,
                });
            }
        }
        (o, n) if o != n => out.push(ValueChange {
            name: at.map(str::to_string),
            old: Some(o.clone()),
            new: Some(n.clone()),
        }),
        _ => {}
    }
}

fn diff_values(old: &Value, new: &Value) -> impl Iterator<Item = ValueChange> {
    let mut out = Vec::new();
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    ov => out.push(ValueChange {
                        name: Some(k.clone()),
                        old: ov.cloned(),
                        new: Some(nv.clone()),
                    }),
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.push(ValueChange {
                    name: Some(k.clone()),
                    old: o.get(k).cloned(),
                    new: None,
                });
            }
        }
        (o, n) if o != n => out.push(ValueChange {
            name: None,
            old: Some(o.clone()),
            new: Some(n.clone()),
        }),
        _ => {}
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pre(params: Value) -> PreImage {
        PreImage {
            format: FORMAT,
            kind: "window".into(),
            kind_version: 1,
            params,
            inputs: BTreeMap::from([("train".into(), "aa".repeat(32))]),
            sources: vec![],
            runtime: Value::Null,
        }
    }

    #[test]
    fn key_depends_on_params_not_on_map_order() {
        let a: Value = serde_json::from_str(r#"{"input":110,"horizon":12}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"horizon":12,"input":110}"#).unwrap();
        assert_eq!(pre(a.clone()).key(), pre(b).key());
        assert_ne!(pre(a).key(), pre(json!({"input": 96, "horizon": 12})).key());
    }

    #[test]
    fn diff_names_the_changed_param() {
        let d = pre(json!({"input": 96})).diff(&pre(json!({"input": 110})));
        let d: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(d, vec!["param `input`: 110 → 96".to_string()]);
    }
}
