//! Why a stage is stale: one typed reason per difference between the key it would have now and
//! the record it last had, with one wording (`Display`) for every command that shows them, and a
//! JSON form for tools (`magpipe status --format json`).

use serde::Serialize;
use serde_json::Value;

/// A value (a param, a runtime fact) that differs between the last record and now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueChange {
    /// The field, or none when the whole value changed (not an object).
    pub name: Option<String>,
    /// Absent when the field is new.
    pub old: Option<Value>,
    /// Absent when the field was removed.
    pub new: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawChange {
    Changed,
    Added,
    Removed,
}

impl RawChange {
    fn word(self) -> &'static str {
        match self {
            RawChange::Changed => "changed",
            RawChange::Added => "added",
            RawChange::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StaleReason {
    NeverRun,
    /// An upstream stage is stale, so this stage's key cannot be known yet.
    UpstreamStale {
        stage: String,
    },
    /// The record of the current key exists, but an output object it names does not.
    OutputMissing,
    /// The stage ran before with the same key inputs, but that record is gone.
    RecordGone,
    CodeChanged {
        old_kind: String,
        old_version: u32,
        kind: String,
        version: u32,
    },
    KeyFormat {
        old: u32,
        new: u32,
    },
    Param(ValueChange),
    Runtime(ValueChange),
    InputChanged {
        slot: String,
        old: String,
        new: String,
    },
    InputNew {
        slot: String,
    },
    RawFiles {
        change: RawChange,
        files: Vec<String>,
    },
    /// Code the stage runs (a command stage's `code:`).
    Code {
        change: RawChange,
        files: Vec<String>,
    },
    /// The environment it runs in (a command stage's `env:` and program).
    Env {
        change: RawChange,
        files: Vec<String>,
    },
    /// The stage never ran in this variant; `differs` is how it differs from the default's run.
    VsDefault {
        differs: Box<StaleReason>,
    },
    /// Whether the stage is current cannot be told: computing its key failed upstream (a data
    /// folder that is gone, say).
    Unknown {
        stage: String,
        error: String,
    },
}

/// The first 12 hex digits of a hash, as keys are shown everywhere.
pub fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// Shortens a JSON value for a one-line reason.
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

fn abbreviate(list: &[String]) -> String {
    if list.len() <= 4 {
        list.join(", ")
    } else {
        format!("{} and {} more", list[..3].join(", "), list.len() - 3)
    }
}

impl ValueChange {
    fn fmt_with(&self, prefix: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.name, &self.old, &self.new) {
            (Some(k), Some(o), Some(n)) => {
                write!(f, "{prefix}`{k}`: {} → {}", compact(o), compact(n))
            }
            (Some(k), None, Some(n)) => write!(f, "{prefix}`{k}` added: {}", compact(n)),
            (Some(k), _, None) => write!(f, "{prefix}`{k}` removed"),
            (None, o, n) => write!(
                f,
                "{prefix}{} → {}",
                compact(o.as_ref().unwrap_or(&Value::Null)),
                compact(n.as_ref().unwrap_or(&Value::Null))
            ),
        }
    }
}

impl std::fmt::Display for StaleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StaleReason::NeverRun => write!(f, "never run"),
            StaleReason::UpstreamStale { stage } => write!(f, "upstream `{stage}` is stale"),
            StaleReason::OutputMissing => write!(f, "an output object of its record is missing"),
            StaleReason::RecordGone => write!(f, "its last record is gone"),
            StaleReason::CodeChanged {
                old_kind,
                old_version,
                kind,
                version,
            } => write!(
                f,
                "code changed: kind {old_kind} v{old_version} → {kind} v{version}"
            ),
            StaleReason::KeyFormat { old, new } => write!(f, "key format {old} → {new}"),
            StaleReason::Param(c) => c.fmt_with("param ", f),
            StaleReason::Runtime(c) => c.fmt_with("runtime ", f),
            StaleReason::InputChanged { slot, old, new } => {
                write!(f, "input `{slot}` changed: {} → {}", short(old), short(new))
            }
            StaleReason::InputNew { slot } => write!(f, "input `{slot}` is new"),
            StaleReason::RawFiles { change, files } => {
                write!(f, "raw files {}: {}", change.word(), abbreviate(files))
            }
            StaleReason::Code { change, files } => {
                write!(f, "code {} {}", abbreviate(files), change.word())
            }
            StaleReason::Env { change, files } => {
                write!(f, "env {} {}", abbreviate(files), change.word())
            }
            StaleReason::VsDefault { differs } => {
                write!(f, "never run in this variant; vs the default: {differs}")
            }
            StaleReason::Unknown { stage, error } => write!(f, "stage `{stage}`: {error}"),
        }
    }
}

/// The reasons as one line, the form errors carry.
pub fn joined(why: &[StaleReason]) -> String {
    why.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A reason as JSON: its typed fields plus the sentence `status` prints.
pub fn to_json(r: &StaleReason) -> Value {
    let mut v = serde_json::to_value(r).expect("reasons serialise");
    if let Value::Object(o) = &mut v {
        o.insert("text".into(), Value::String(r.to_string()));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_reason_reads_as_one_sentence_and_serialises_with_its_fields() {
        let p = StaleReason::Param(ValueChange {
            name: Some("input".into()),
            old: Some(json!(110)),
            new: Some(json!(96)),
        });
        assert_eq!(p.to_string(), "param `input`: 110 → 96");
        let v = to_json(&StaleReason::VsDefault {
            differs: Box::new(p),
        });
        assert_eq!(v["reason"], "vs_default");
        assert_eq!(v["differs"]["reason"], "param");
        assert_eq!(v["differs"]["name"], "input");
        assert_eq!(
            v["text"],
            "never run in this variant; vs the default: param `input`: 110 → 96"
        );
        let files: Vec<String> = (0..6).map(|i| format!("AR{i}/x.npz")).collect();
        let r = StaleReason::RawFiles {
            change: RawChange::Changed,
            files,
        };
        assert_eq!(
            r.to_string(),
            "raw files changed: AR0/x.npz, AR1/x.npz, AR2/x.npz and 3 more"
        );
        assert_eq!(to_json(&r)["change"], "changed");
    }
}
