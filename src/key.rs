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

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRef {
    pub name: String,
    pub size: u64,
    pub hash: String,
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
    pub fn diff(&self, old: &PreImage) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != old.kind || self.kind_version != old.kind_version {
            out.push(format!(
                "code changed: kind {} v{} → {} v{}",
                old.kind, old.kind_version, self.kind, self.kind_version
            ));
        }
        if self.format != old.format {
            out.push(format!("key format {} → {}", old.format, self.format));
        }
        diff_values("param ", &old.params, &self.params, &mut out);
        for (slot, h) in &self.inputs {
            match old.inputs.get(slot) {
                Some(o) if o == h => {}
                Some(o) => out.push(format!(
                    "input `{slot}` changed: {} → {}",
                    short(o),
                    short(h)
                )),
                None => out.push(format!("input `{slot}` is new")),
            }
        }
        let old_src: BTreeMap<&str, &SourceRef> =
            old.sources.iter().map(|s| (s.name.as_str(), s)).collect();
        let new_src: BTreeMap<&str, &SourceRef> =
            self.sources.iter().map(|s| (s.name.as_str(), s)).collect();
        let changed: Vec<&str> = new_src
            .iter()
            .filter(|(n, s)| old_src.get(*n).is_some_and(|o| o.hash != s.hash))
            .map(|(n, _)| *n)
            .collect();
        let added: Vec<&str> = new_src
            .keys()
            .filter(|n| !old_src.contains_key(*n))
            .copied()
            .collect();
        let removed: Vec<&str> = old_src
            .keys()
            .filter(|n| !new_src.contains_key(*n))
            .copied()
            .collect();
        for (what, list) in [("changed", changed), ("added", added), ("removed", removed)] {
            if !list.is_empty() {
                out.push(format!("raw files {what}: {}", abbreviate(&list)));
            }
        }
        diff_values("runtime ", &old.runtime, &self.runtime, &mut out);
        out
    }
}

fn abbreviate(list: &[&str]) -> String {
    if list.len() <= 4 {
        list.join(", ")
    } else {
        format!("{} and {} more", list[..3].join(", "), list.len() - 3)
    }
}

pub fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

fn diff_values(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov) => {
                        out.push(format!("{prefix}`{k}`: {} → {}", compact(ov), compact(nv)))
                    }
                    None => out.push(format!("{prefix}`{k}` added: {}", compact(nv))),
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.push(format!("{prefix}`{k}` removed"));
            }
        }
        (o, n) if o != n => out.push(format!("{prefix}{} → {}", compact(o), compact(n))),
        _ => {}
    }
}

fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
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
        assert_eq!(d, vec!["param `input`: 110 → 96".to_string()]);
    }
}
