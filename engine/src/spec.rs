//! `pipeline.yaml` → [`RawSpec`]: syntax, the allowed keys, `${VAR:-default}` interpolation, and
//! a locator that maps a YAML path back to its line and column for error messages.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::error::SpecError;

/// A stage as written in the YAML, before any checking against its kind.
#[derive(Debug, Clone)]
pub struct RawStage {
    pub name: String,
    pub kind: String,
    pub params: Mapping,
    /// Stage keys beyond [`STAGE_KEYS`], which only a kind that declares them accepts.
    pub decl: Mapping,
    /// slot → `stage` or `stage.output` (or a list of them for a list slot), in YAML order.
    pub inputs: Vec<(String, RawInput)>,
    pub doc: Option<String>,
    /// Part of a plain `magpipe run` (false: only when named as a target, or needed by one).
    pub default: bool,
    /// Of the stages ready at once, higher starts first when `--jobs` has no free slot for all
    /// (default 0; ties keep YAML order). Scheduling only: it enters no key.
    pub priority: i64,
}

/// The keys every stage may have.
pub const STAGE_KEYS: &[&str] = &["kind", "params", "inputs", "doc", "default", "priority"];

/// What an input slot is wired to, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawInput {
    One(String),
    Many(Vec<String>),
}

/// A named set of overrides: stage → param → value, and stage → rewired inputs (the reserved
/// key `inputs:` inside a stage's overrides). A variant may `extends:` others; after parsing,
/// `overrides` and `inputs` hold the whole chain, the furthest ancestor first, so applying them
/// in order lets the nearer variant win.
#[derive(Debug, Clone)]
pub struct RawVariant {
    pub name: String,
    pub doc: Option<String>,
    /// The variants this one builds on, as written.
    pub extends: Vec<String>,
    pub overrides: Vec<Override>,
    pub inputs: Vec<(String, Vec<(String, RawInput)>)>,
}

/// One stage's param overrides, with the variant that wrote them (errors point there).
#[derive(Debug, Clone)]
pub struct Override {
    pub variant: String,
    pub stage: String,
    pub params: Mapping,
}

/// A stage's (or a variant's) `inputs:` mapping.
fn parse_inputs(
    v: Option<&Value>,
    loc: &Locator,
    at: &[&str],
) -> Result<Vec<(String, RawInput)>, SpecError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                let k = key_str(k, loc, at)?.to_string();
                let mut here: Vec<&str> = at.to_vec();
                here.push(&k);
                let bad = || {
                    loc.err(
                        &here,
                        "an input is `stage`, `stage.output`, or a list of them",
                    )
                };
                let v = match v {
                    Value::String(s) => RawInput::One(s.clone()),
                    Value::Sequence(items) => RawInput::Many(
                        items
                            .iter()
                            .map(|i| i.as_str().map(str::to_string).ok_or_else(bad))
                            .collect::<Result<_, _>>()?,
                    ),
                    _ => return Err(bad()),
                };
                Ok((k, v))
            })
            .collect(),
        Some(_) => Err(loc.err(at, "`inputs:` must map slot → `stage.output`")),
    }
}

#[derive(Debug, Clone)]
pub struct RawSpec {
    pub file: PathBuf,
    pub text: String,
    pub stages: Vec<RawStage>,
    pub variants: Vec<RawVariant>,
    /// The `executor.slurm` block, used when a run asks for `--executor slurm`.
    pub slurm: Option<SlurmConfig>,
}

impl RawSpec {
    pub fn load(file: &Path) -> Result<RawSpec, SpecError> {
        let text = std::fs::read_to_string(file).map_err(|e| SpecError {
            file: file.to_path_buf(),
            line: None,
            path: String::new(),
            msg: format!("cannot read the pipeline file: {e}"),
        })?;
        RawSpec::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<RawSpec, SpecError> {
        let loc = Locator {
            file: file.to_path_buf(),
            text: text.to_string(),
        };
        let doc: Value = serde_yaml::from_str(text).map_err(|e| SpecError {
            file: file.to_path_buf(),
            line: e.location().map(|l| (l.line(), l.column())),
            path: String::new(),
            msg: plain_yaml_error(&strip_location(&e.to_string())),
        })?;
        let top = doc
            .as_mapping()
            .ok_or_else(|| loc.err(&[], "the pipeline must be a mapping with `stages:`"))?;
        check_top(top, &loc)?;
        let stages_map = top
            .get("stages")
            .and_then(Value::as_mapping)
            .ok_or_else(|| {
                loc.err(
                    &["stages"],
                    "`stages:` must be a mapping of stage name → stage",
                )
            })?;
        let mut stages = Vec::new();
        for (name, body) in stages_map {
            let name = key_str(name, &loc, &["stages"])?.to_string();
            stages.push(parse_stage(name, body, &loc)?);
        }
        let mut variants = Vec::new();
        match top.get("variants") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(vm)) => {
                for (name, body) in vm {
                    let name = key_str(name, &loc, &["variants"])?.to_string();
                    variants.push(parse_variant(name, body, &loc)?);
                }
            }
            Some(_) => return Err(loc.err(&["variants"], "`variants:` must be a mapping")),
        }
        let variants = flatten_extends(&variants, &loc)?;
        let slurm = parse_executor(top.get("executor"), &loc)?;
        Ok(RawSpec {
            file: file.to_path_buf(),
            text: text.to_string(),
            stages,
            variants,
            slurm,
        })
    }

    pub fn locator(&self) -> Locator {
        Locator {
            file: self.file.clone(),
            text: self.text.clone(),
        }
    }
}

/// The top level names only keys that exist, and a version that exists.
fn check_top(top: &Mapping, loc: &Locator) -> Result<(), SpecError> {
    for k in top.keys() {
        let k = key_str(k, loc, &[])?;
        if !["version", "stages", "variants", "executor"].contains(&k) {
            return Err(loc.err(
                &[k],
                &format!(
                    "unknown top-level key `{k}` (expected stages, variants, executor, version)"
                ),
            ));
        }
    }
    if let Some(v) = top.get("version")
        && v.as_u64() != Some(1)
    {
        return Err(loc.err(&["version"], "only pipeline format version 1 exists"));
    }
    Ok(())
}

/// The body of the stage or variant at `at` (`["stages", name]`), once its name is a valid one
/// and the body a mapping (`shape` says what it must be otherwise).
fn named_mapping<'v>(
    at: &[&str; 2],
    body: &'v Value,
    loc: &Locator,
    shape: &str,
) -> Result<&'v Mapping, SpecError> {
    if !is_name(at[1]) {
        // "stages" → "stage names …", "variants" → "variant names …".
        let what = at[0].trim_end_matches('s');
        return Err(loc.err(
            at,
            &format!("{what} names use letters, digits, `_` and `-` only"),
        ));
    }
    body.as_mapping().ok_or_else(|| loc.err(at, shape))
}

fn parse_stage(name: String, body: &Value, loc: &Locator) -> Result<RawStage, SpecError> {
    let at = ["stages", name.as_str()];
    let body = named_mapping(&at, body, loc, "a stage must be a mapping with `kind:`")?;
    // Other keys are the kind's own declaration (a command stage's `run:`…); the plan checks
    // them against the kind, which the syntax does not know yet.
    let mut decl = Mapping::new();
    for (k, v) in body {
        let k = key_str(k, loc, &at)?;
        if !STAGE_KEYS.contains(&k) {
            let mut v = v.clone();
            interpolate(&mut v, loc, &[at[0], at[1], k])?;
            decl.insert(Value::String(k.to_string()), v);
        }
    }
    let kind = match body.get("kind") {
        None => return Err(loc.err(&at, "stage has no `kind:`")),
        Some(v) => v
            .as_str()
            .ok_or_else(|| {
                loc.err(
                    &[at[0], at[1], "kind"],
                    "`kind:` must be a stage kind's name (see `magpipe kinds`)",
                )
            })?
            .to_string(),
    };
    let params = match body.get("params") {
        None | Some(Value::Null) => Mapping::new(),
        Some(Value::Mapping(m)) => {
            let mut m = m.clone();
            for (k, v) in m.iter_mut() {
                let k = key_str(k, loc, &[at[0], at[1], "params"])?.to_string();
                interpolate(v, loc, &[at[0], at[1], "params", &k])?;
            }
            m
        }
        Some(_) => {
            return Err(loc.err(&[at[0], at[1], "params"], "`params:` must be a mapping"));
        }
    };
    let inputs = parse_inputs(body.get("inputs"), loc, &[at[0], at[1], "inputs"])?;
    let doc = body.get("doc").and_then(Value::as_str).map(str::to_string);
    let default = match body.get("default") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(loc.err(
                &[at[0], at[1], "default"],
                "`default:` is true or false (false: only run when named as a target)",
            ));
        }
    };
    let priority = match body.get("priority").map(Value::as_i64) {
        None => 0,
        Some(Some(p)) => p,
        Some(None) => {
            return Err(loc.err(
                &[at[0], at[1], "priority"],
                "`priority:` is an integer (of the stages ready at once, higher starts first)",
            ));
        }
    };
    Ok(RawStage {
        name,
        kind,
        params,
        decl,
        inputs,
        doc,
        default,
        priority,
    })
}

/// A variant as written: its doc, what it extends, and per stage the params it overrides and
/// the inputs it rewires (the reserved key `inputs:`).
fn parse_variant(name: String, body: &Value, loc: &Locator) -> Result<RawVariant, SpecError> {
    let at = ["variants", name.as_str()];
    let body = named_mapping(&at, body, loc, "a variant maps stage → params to override")?;
    let mut doc = None;
    let mut extends = Vec::new();
    let mut overrides = Vec::new();
    let mut rewired = Vec::new();
    for (stage, ov) in body {
        let stage = key_str(stage, loc, &at)?.to_string();
        if stage == "doc" {
            doc = ov.as_str().map(str::to_string);
            continue;
        }
        if stage == "extends" {
            extends = parse_extends(ov, loc, &[at[0], at[1], "extends"])?;
            continue;
        }
        let mut m = ov
            .as_mapping()
            .ok_or_else(|| {
                loc.err(
                    &[at[0], at[1], &stage],
                    "overrides must be a mapping param → value",
                )
            })?
            .clone();
        if let Some(inp) = m.remove("inputs") {
            let ins = parse_inputs(Some(&inp), loc, &[at[0], at[1], &stage, "inputs"])?;
            rewired.push((stage.clone(), ins));
        }
        for (k, v) in m.iter_mut() {
            let k = key_str(k, loc, &[at[0], at[1], &stage])?.to_string();
            interpolate(v, loc, &[at[0], at[1], &stage, &k])?;
        }
        overrides.push(Override {
            variant: name.clone(),
            stage,
            params: m,
        });
    }
    Ok(RawVariant {
        name,
        doc,
        extends,
        overrides,
        inputs: rewired,
    })
}

/// `executor:`: only Slurm has settings.
fn parse_executor(v: Option<&Value>, loc: &Locator) -> Result<Option<SlurmConfig>, SpecError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Mapping(m)) => {
            for k in m.keys() {
                let k = key_str(k, loc, &["executor"])?;
                if k != "slurm" {
                    return Err(loc.err(
                        &["executor", k],
                        &format!(
                            "unknown executor `{k}` (the local one needs no settings; expected slurm)"
                        ),
                    ));
                }
            }
            match m.get("slurm") {
                None | Some(Value::Null) => Ok(None),
                Some(v) => Ok(Some(
                    serde_yaml::from_value::<SlurmConfig>(v.clone()).map_err(|e| {
                        loc.err(&["executor", "slurm"], &strip_location(&e.to_string()))
                    })?,
                )),
            }
        }
        Some(_) => Err(loc.err(&["executor"], "`executor:` must be a mapping")),
    }
}

/// serde_yaml's message in the user's terms. An integer beyond 64 bits reads "invalid type:
/// integer `…` as u128, expected any YAML value", which names Rust types, not the problem.
fn plain_yaml_error(msg: &str) -> String {
    let big = ["` as u128", "` as i128"]
        .iter()
        .find_map(|tail| msg.split_once(tail))
        .and_then(|(head, _)| head.rsplit_once("integer `"));
    match big {
        Some((path, n)) => format!(
            "{}the integer {n} is out of range: integers must lie between {} and {}",
            path.strip_suffix("invalid type: ").unwrap_or(path),
            i64::MIN,
            u64::MAX
        ),
        None => format!("invalid YAML: {msg}"),
    }
}

fn strip_location(msg: &str) -> String {
    // serde_yaml appends " at line L column C"; the location is printed in front instead.
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// `extends: quick` or `extends: [quick, gpu]` (later ones win over earlier ones).
fn parse_extends(v: &Value, loc: &Locator, at: &[&str]) -> Result<Vec<String>, SpecError> {
    let one = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| loc.err(at, "`extends:` names a variant, or a list of variants"))
    };
    match v {
        Value::Sequence(items) => items.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

/// Each variant with its ancestors' overrides and rewirings before its own. Unknown parents and
/// cycles are refused here, at plan time, whichever variant runs.
fn flatten_extends(variants: &[RawVariant], loc: &Locator) -> Result<Vec<RawVariant>, SpecError> {
    fn visit<'a>(
        v: &'a RawVariant,
        all: &'a [RawVariant],
        loc: &Locator,
        path: &mut Vec<&'a str>,
        out: &mut RawVariant,
    ) -> Result<(), SpecError> {
        path.push(&v.name);
        for parent in &v.extends {
            let at = ["variants", v.name.as_str(), "extends"];
            if let Some(i) = path.iter().position(|p| p == parent) {
                let mut cycle: Vec<&str> = path[i..].to_vec();
                cycle.push(parent);
                return Err(loc.err(
                    &at,
                    &format!(
                        "variants extend each other in a cycle: {}",
                        cycle.join(" → ")
                    ),
                ));
            }
            let Some(p) = all.iter().find(|x| &x.name == parent) else {
                let names = all.iter().map(|x| x.name.as_str());
                return Err(loc.err(
                    &at,
                    &format!(
                        "extends an unknown variant `{parent}`{} (variants: {})",
                        crate::suggest::did_you_mean(parent, names.clone()),
                        names.collect::<Vec<_>>().join(", ")
                    ),
                ));
            };
            visit(p, all, loc, path, out)?;
        }
        out.overrides.extend(v.overrides.iter().cloned());
        out.inputs.extend(v.inputs.iter().cloned());
        path.pop();
        Ok(())
    }
    variants
        .iter()
        .map(|v| {
            let mut out = RawVariant {
                overrides: Vec::new(),
                inputs: Vec::new(),
                ..v.clone()
            };
            visit(v, variants, loc, &mut Vec::new(), &mut out)?;
            Ok(out)
        })
        .collect()
}

fn key_str<'a>(k: &'a Value, loc: &Locator, at: &[&str]) -> Result<&'a str, SpecError> {
    k.as_str()
        .ok_or_else(|| loc.err(at, &format!("keys must be strings, found {k:?}")))
}

/// Expands `${VAR}` and `${VAR:-default}` in every string below `v`; `$$` is a literal `$`.
fn interpolate(v: &mut Value, loc: &Locator, at: &[&str]) -> Result<(), SpecError> {
    match v {
        Value::String(s) => {
            *s = expand(s, &|name| std::env::var(name).ok()).map_err(|m| loc.err(at, &m))?;
        }
        Value::Sequence(items) => {
            for i in items {
                interpolate(i, loc, at)?;
            }
        }
        Value::Mapping(m) => {
            for (_, i) in m.iter_mut() {
                interpolate(i, loc, at)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Stage and variant names become folder names in the store, so they never hold `/` or `..`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("${") {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {s:?}"))?;
            let inner = &r[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad variable name {name:?} in {s:?}"));
            }
            match (env(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                    ));
                }
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Finds where a YAML path (mapping keys from the top) is written, for error messages. It reads
/// block-style mappings; inside flow style (`{a: 1}`) it falls back to the nearest enclosing key.
#[derive(Debug, Clone)]
pub struct Locator {
    pub file: PathBuf,
    pub text: String,
}

impl Locator {
    pub fn find(&self, path: &[&str]) -> Option<(usize, usize)> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.find_exact(&path[..n]))
    }

    fn find_exact(&self, path: &[&str]) -> Option<(usize, usize)> {
        let mut stack: Vec<(usize, String)> = Vec::new();
        for (ln, line) in self.text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            let Some(colon) = key_end(trimmed) else {
                continue;
            };
            let key = key_text(trimmed[..colon].trim());
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            stack.push((indent, key.to_string()));
            if stack.len() == path.len() && stack.iter().zip(path).all(|((_, k), p)| k == p) {
                return Some((ln + 1, indent + 1));
            }
        }
        None
    }

    pub fn err(&self, path: &[&str], msg: &str) -> SpecError {
        SpecError {
            file: self.file.clone(),
            line: self.find(path),
            path: path.join("."),
            msg: msg.to_string(),
        }
    }
}

/// A block key as YAML reads it: double-quoted keys with their escapes decoded (`"a\0b"` is
/// the name with a NUL), single-quoted ones with `''` as `'`.
fn key_text(raw: &str) -> String {
    if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            let hex = |chars: &mut std::str::Chars, n: usize| {
                let h: String = chars.by_ref().take(n).collect();
                u32::from_str_radix(&h, 16).ok().and_then(char::from_u32)
            };
            let decoded = match chars.next() {
                Some('0') => Some('\0'),
                Some('a') => Some('\x07'),
                Some('b') => Some('\x08'),
                Some('t' | '\t') => Some('\t'),
                Some('n') => Some('\n'),
                Some('v') => Some('\x0b'),
                Some('f') => Some('\x0c'),
                Some('r') => Some('\r'),
                Some('e') => Some('\x1b'),
                Some(' ') => Some(' '),
                Some('"') => Some('"'),
                Some('/') => Some('/'),
                Some('\\') => Some('\\'),
                Some('N') => Some('\u{85}'),
                Some('_') => Some('\u{a0}'),
                Some('L') => Some('\u{2028}'),
                Some('P') => Some('\u{2029}'),
                Some('x') => hex(&mut chars, 2),
                Some('u') => hex(&mut chars, 4),
                Some('U') => hex(&mut chars, 8),
                _ => None,
            };
            match decoded {
                Some(d) => out.push(d),
                // Not valid YAML; serde_yaml has refused it before any lookup.
                None => return inner.to_string(),
            }
        }
        return out;
    }
    if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return inner.replace("''", "'");
    }
    raw.to_string()
}

/// The byte index of the `:` ending a block-mapping key on this line, if it starts with one.
fn key_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') if i == 0 => quote = Some(c),
            (None, '#') => return None,
            (None, ':') if s[i + 1..].is_empty() || s[i + 1..].starts_with([' ', '\t']) => {
                return Some(i);
            }
            (None, '{' | '[') if i == 0 => return None,
            _ => {}
        }
    }
    None
}

/// The `executor.slurm` block of pipeline.yaml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// `--time`, e.g. `"2:00:00"`.
    pub time: Option<String>,
    /// `--cpus-per-task`; default: the stage's thread count.
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. `"8G"`.
    pub mem: Option<String>,
    /// `--gpus`.
    pub gpus: Option<u32>,
    /// More sbatch flags, passed as given.
    pub sbatch_args: Vec<String>,
    /// Attempts after the first when a job fails without a result (time limit, cancel, node
    /// failure, a crashed worker). A stage that reports its own error is not retried.
    pub retries: u32,
    /// Seconds between status queries (one `scontrol` call per interval for the whole run).
    pub poll_seconds: f64,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: None,
            account: None,
            time: None,
            cpus_per_task: None,
            mem: None,
            gpus: None,
            sbatch_args: Vec::new(),
            retries: 2,
            poll_seconds: 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_with_defaults_and_escapes() {
        let env = |n: &str| (n == "SET").then(|| "/data".to_string());
        assert_eq!(expand("${SET:-x}/a", &env).unwrap(), "/data/a");
        assert_eq!(
            expand("${UNSET:-data/solared}", &env).unwrap(),
            "data/solared"
        );
        assert_eq!(expand("cost $$5", &env).unwrap(), "cost $5");
        assert!(
            expand("${UNSET}", &env)
                .unwrap_err()
                .contains("UNSET is not set")
        );
        assert!(expand("${OPEN", &env).is_err());
    }

    #[test]
    fn locator_finds_nested_block_keys() {
        let text = "stages:\n  ingest:\n    kind: ingest_solared\n  window:\n    # note\n    kind: window\n    params:\n      input: 110\n      inputs: {a: b}\n";
        let loc = Locator {
            file: "p.yaml".into(),
            text: text.into(),
        };
        assert_eq!(
            loc.find(&["stages", "window", "params", "input"]),
            Some((8, 7))
        );
        assert_eq!(loc.find(&["stages", "ingest", "kind"]), Some((3, 5)));
        // Inside flow style: the nearest enclosing key.
        assert_eq!(
            loc.find(&["stages", "window", "params", "inputs", "a"]),
            Some((9, 7))
        );
    }
}
