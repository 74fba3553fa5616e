//! [`RawSpec`] → [`Plan`]: kinds looked up, params typed and defaulted, inputs wired, variants
//! and `--set` overrides applied, the DAG built and checked for cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::kind::{Kind, Output, ParamError, list_input_name};
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::Value as Json;
use serde_yaml::{Mapping, Value};

use crate::error::SpecError;
use crate::registry::Registry;
use crate::spec::{Locator, Override, RawInput, RawSpec, RawStage, RawVariant};
use crate::suggest::did_you_mean;

/// One input wire: `slot` reads output `output` of stage `from`.
#[derive(Debug, Clone)]
pub struct Wire {
    pub slot: String,
    pub from: usize,
    pub output: String,
    pub file: String,
}

#[derive(Clone)]
pub struct Stage {
    pub name: String,
    pub kind: Arc<dyn Kind>,
    /// Resolved params: every param, defaults filled in.
    pub params: Json,
    /// What the kind declares the stage writes, from its params.
    pub outputs: Vec<Output>,
    pub inputs: Vec<Wire>,
    pub doc: Option<String>,
    /// Part of a plain `magpipe run`.
    pub default: bool,
    /// Start order among stages ready at once (higher first); never part of a key.
    pub priority: i64,
}

/// A variant as `magpipe dag` lists it.
#[derive(Debug, Clone)]
pub struct VariantInfo {
    pub name: String,
    pub doc: Option<String>,
    pub extends: Vec<String>,
}

#[derive(Clone)]
pub struct Plan {
    pub stages: Vec<Stage>,
    pub graph: DiGraph<usize, ()>,
    /// Stage indices in a dependency order (YAML order where free).
    pub order: Vec<usize>,
    pub variant: Option<String>,
    pub variants: Vec<VariantInfo>,
    /// The pipeline's Slurm settings (defaults when it has none).
    pub slurm: crate::spec::SlurmConfig,
    /// The kinds the plan was built with.
    pub registry: Registry,
}

/// A `--set stage.param=value` override.
#[derive(Debug, Clone)]
pub struct SetOverride {
    pub stage: String,
    pub param: String,
    pub value: Value,
    pub text: String,
    /// `+stage.param=value` (Hydra's convention): adds a param the stage does not declare.
    pub add: bool,
}

impl SetOverride {
    pub fn parse(s: &str) -> Result<SetOverride, String> {
        let (lhs, rhs) = s
            .split_once('=')
            .ok_or_else(|| format!("--set {s}: expected stage.param=value"))?;
        let (add, lhs) = match lhs.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, lhs),
        };
        let (stage, param) = lhs
            .split_once('.')
            .ok_or_else(|| format!("--set {s}: expected stage.param=value"))?;
        let value: Value =
            serde_yaml::from_str(rhs).map_err(|e| format!("--set {s}: value is not YAML: {e}"))?;
        Ok(SetOverride {
            stage: stage.to_string(),
            param: param.to_string(),
            value,
            text: s.to_string(),
            add,
        })
    }
}

fn yaml_to_json(v: &Value) -> Result<Json, String> {
    Ok(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Json::Number)
                    .ok_or_else(|| format!("{f} is not a finite number"))?
            }
        }
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(items) => {
            Json::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Value::Mapping(m) => {
            let mut o = serde_json::Map::new();
            for (k, v) in m {
                let k = k.as_str().ok_or("mapping keys must be strings")?;
                o.insert(k.to_string(), yaml_to_json(v)?);
            }
            Json::Object(o)
        }
        Value::Tagged(t) => return Err(format!("YAML tags ({}) are not supported", t.tag)),
    })
}

/// Where a param value came from, for error messages.
#[derive(Clone)]
enum Origin {
    Yaml(Vec<String>),
    Set(String),
}

impl Plan {
    /// Builds the plan of `spec`, with a variant's and `--set` overrides applied.
    pub fn build(
        spec: &RawSpec,
        registry: &Registry,
        variant: Option<&str>,
        sets: &[SetOverride],
    ) -> Result<Plan, SpecError> {
        let loc = spec.locator();
        let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
        check_every_variant(spec, registry, &loc, &names)?;
        let chosen = chosen_variant(spec, variant)?;
        check_sets(spec, sets, &names)?;

        // Params first, for every stage: a stage's outputs follow from its params, and any stage
        // may wire to any other.
        let typed = spec
            .stages
            .iter()
            .map(|raw| typed_params(raw, registry, chosen, sets, spec, &loc))
            .collect::<Result<Vec<_>, _>>()?;
        let declared: Vec<Vec<Output>> = typed.iter().map(|(k, p)| k.outputs(p)).collect();
        check_output_contracts(spec, &declared, registry, &loc)?;

        let mut stages = Vec::with_capacity(spec.stages.len());
        // Each stage's inputs as written (after the variant), for the lists' agreement.
        let mut lists: Vec<Vec<(String, RawInput)>> = Vec::with_capacity(spec.stages.len());
        for (i, (raw, (k, resolved))) in spec.stages.iter().zip(typed).enumerate() {
            let raw_inputs = rewired_inputs(raw, chosen);
            let inputs = wire_stage(raw, k.as_ref(), &raw_inputs, &declared, &names, &loc)?;
            let slots: Vec<&str> = inputs.iter().map(|w| w.slot.as_str()).collect();
            k.check_wires(&resolved, &slots)
                .map_err(|m| loc.err(&["stages", raw.name.as_str()], &m))?;
            lists.push(raw_inputs);
            stages.push(Stage {
                name: raw.name.clone(),
                outputs: declared[i].clone(),
                kind: k,
                params: resolved,
                inputs,
                doc: raw.doc.clone(),
                default: raw.default,
                priority: raw.priority,
            });
        }
        check_list_agreements(&stages, &lists, &names, &loc)?;

        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| graph.add_node(i)).collect();
        for (i, s) in stages.iter().enumerate() {
            for w in &s.inputs {
                graph.update_edge(nodes[w.from], nodes[i], ());
            }
        }
        let order = order_or_cycle(&stages, &graph, &loc)?;
        Ok(Plan {
            stages,
            graph,
            order,
            variant: variant.map(str::to_string),
            variants: spec
                .variants
                .iter()
                .map(|v| VariantInfo {
                    name: v.name.clone(),
                    doc: v.doc.clone(),
                    extends: v.extends.clone(),
                })
                .collect(),
            slurm: spec.slurm.clone().unwrap_or_default(),
            registry: registry.clone(),
        })
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// Direct upstream stages of `i`.
    pub fn deps(&self, i: usize) -> BTreeSet<usize> {
        self.stages[i].inputs.iter().map(|w| w.from).collect()
    }

    /// The targets and everything they need, in plan order; all stages when `targets` is empty.
    pub fn select(&self, targets: &[String]) -> Result<Vec<usize>, String> {
        let mut want = BTreeSet::new();
        let mut todo = Vec::new();
        // Without targets: every stage that is part of a plain run, and what it needs.
        if targets.is_empty() {
            todo.extend((0..self.stages.len()).filter(|&i| self.stages[i].default));
        }
        for t in targets {
            let i = self.index(t).ok_or_else(|| {
                format!(
                    "no stage `{t}` (stages: {})",
                    self.stages
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            todo.push(i);
        }
        while let Some(i) = todo.pop() {
            if want.insert(i) {
                todo.extend(self.deps(i));
            }
        }
        Ok(self
            .order
            .iter()
            .copied()
            .filter(|i| want.contains(i))
            .collect())
    }
}

/// Every variant's overrides against its stages' kinds, whichever variant runs, so a typo never
/// waits for its day.
fn check_every_variant(
    spec: &RawSpec,
    registry: &Registry,
    loc: &Locator,
    names: &[&str],
) -> Result<(), SpecError> {
    for v in &spec.variants {
        let touched: BTreeSet<&str> = v.overrides.iter().map(|o| o.stage.as_str()).collect();
        for stage in touched {
            let Some(raw) = spec.stages.iter().find(|s| s.name == stage) else {
                let o = v.overrides.iter().find(|o| o.stage == stage);
                return Err(loc.err(
                    &["variants", o.map_or(&v.name, |o| &o.variant), stage],
                    &format!(
                        "no stage `{stage}`{} (stages: {})",
                        did_you_mean(stage, names.iter().copied()),
                        names.join(", ")
                    ),
                ));
            };
            let Some(k) = registry.get(&raw.kind) else {
                continue;
            };
            let mut merged = raw.params.clone();
            merged.extend(raw.decl.clone());
            let mut origins = BTreeMap::new();
            for o in v.overrides.iter().filter(|o| o.stage == stage) {
                apply_variant(&mut merged, &mut origins, o);
            }
            resolve(k.as_ref(), &merged, loc, &raw.name, &origins)?;
        }
    }
    Ok(())
}

/// The name of the pipeline as written, where a variant's name is expected (`compare default
/// quick`, `--variant default`, sweep points).
pub const DEFAULT_VARIANT: &str = "default";

/// The variant named by `--variant`, if any.
fn chosen_variant<'s>(
    spec: &'s RawSpec,
    variant: Option<&str>,
) -> Result<Option<&'s RawVariant>, SpecError> {
    let Some(name) = variant else {
        return Ok(None);
    };
    // `default` names the pipeline as written, as `compare default quick` and sweeps already
    // call it, unless the file declares a variant of that name.
    if name == DEFAULT_VARIANT && !spec.variants.iter().any(|v| v.name == name) {
        return Ok(None);
    }
    spec.variants
        .iter()
        .find(|v| v.name == name)
        .map(Some)
        .ok_or_else(|| SpecError {
            file: spec.file.clone(),
            line: None,
            path: String::new(),
            msg: format!(
                "no variant `{name}`{} (variants: default, {})",
                did_you_mean(name, spec.variants.iter().map(|v| v.name.as_str())),
                spec.variants
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// Every `--set` names a stage of the pipeline.
fn check_sets(spec: &RawSpec, sets: &[SetOverride], names: &[&str]) -> Result<(), SpecError> {
    for s in sets {
        if !names.contains(&s.stage.as_str()) {
            return Err(SpecError {
                file: spec.file.clone(),
                line: None,
                path: String::new(),
                msg: format!(
                    "--set {}: no stage `{}`{} (stages: {})",
                    s.text,
                    s.stage,
                    did_you_mean(&s.stage, names.iter().copied()),
                    names.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// A stage's kind and its params resolved against it: as written, then its stage keys, the
/// chosen variant's overrides and the `--set`s, each remembered by where it came from.
fn typed_params(
    raw: &RawStage,
    registry: &Registry,
    chosen: Option<&RawVariant>,
    sets: &[SetOverride],
    spec: &RawSpec,
    loc: &Locator,
) -> Result<(Arc<dyn Kind>, Json), SpecError> {
    let at = ["stages", raw.name.as_str()];
    let k = registry.get(&raw.kind).cloned().ok_or_else(|| {
        loc.err(
            &[at[0], at[1], "kind"],
            &format!("unknown kind `{}` (known: {})", raw.kind, registry.names()),
        )
    })?;
    let mut params = raw.params.clone();
    let mut origins: BTreeMap<String, Origin> = BTreeMap::new();
    for (pk, _) in &raw.params {
        let pk = pk.as_str().unwrap_or_default().to_string();
        if k.stage_keys().contains(&pk.as_str()) {
            return Err(loc.err(
                &[at[0], at[1], "params", &pk],
                &format!(
                    "`{pk}` is a stage key of kind `{}`: write it beside `kind:`, not under `params:`",
                    k.name()
                ),
            ));
        }
        origins.insert(
            pk.clone(),
            Origin::Yaml(vec![at[0].into(), at[1].into(), "params".into(), pk]),
        );
    }
    for (dk, dv) in &raw.decl {
        let dk = dk.as_str().unwrap_or_default().to_string();
        if !k.stage_keys().contains(&dk.as_str()) {
            let expected: Vec<&str> = crate::spec::STAGE_KEYS
                .iter()
                .chain(k.stage_keys())
                .copied()
                .collect();
            return Err(loc.err(
                &[at[0], at[1], &dk],
                &format!(
                    "unknown stage key `{dk}` (expected {})",
                    expected.join(", ")
                ),
            ));
        }
        origins.insert(
            dk.clone(),
            Origin::Yaml(vec![at[0].into(), at[1].into(), dk.clone()]),
        );
        params.insert(Value::String(dk), dv.clone());
    }
    if let Some(v) = chosen {
        for o in v.overrides.iter().filter(|o| o.stage == raw.name) {
            apply_variant(&mut params, &mut origins, o);
        }
    }
    for s in sets.iter().filter(|s| s.stage == raw.name) {
        check_declared(k.as_ref(), &params, s, &spec.file)?;
        origins.insert(s.param.clone(), Origin::Set(s.text.clone()));
        params.insert(Value::String(s.param.clone()), s.value.clone());
    }
    let resolved = resolve(k.as_ref(), &params, loc, &raw.name, &origins)?;
    Ok((k, resolved))
}

/// Every output's contract is one the registry knows.
fn check_output_contracts(
    spec: &RawSpec,
    declared: &[Vec<Output>],
    registry: &Registry,
    loc: &Locator,
) -> Result<(), SpecError> {
    for (raw, outs) in spec.stages.iter().zip(declared) {
        for o in outs {
            if let Some(c) = &o.contract
                && registry.contract(c).is_none()
            {
                let known: Vec<&str> = registry.contracts().map(|c| c.name()).collect();
                return Err(loc.err(
                    &["stages", &raw.name, "outputs", &o.name],
                    &format!(
                        "output `{}`: unknown contract `{c}` (known: {})",
                        o.name,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A stage's inputs as written, rewired by the chosen variant (e.g. train from a tuning study's
/// best configurations).
fn rewired_inputs(raw: &RawStage, chosen: Option<&RawVariant>) -> Vec<(String, RawInput)> {
    let mut raw_inputs = raw.inputs.clone();
    if let Some(v) = chosen {
        for (stage, ins) in &v.inputs {
            if stage != &raw.name {
                continue;
            }
            for (slot, src) in ins {
                match raw_inputs.iter_mut().find(|(s, _)| s == slot) {
                    Some(e) => e.1 = src.clone(),
                    None => raw_inputs.push((slot.clone(), src.clone())),
                }
            }
        }
    }
    raw_inputs
}

/// A stage's wires: each input slot checked against its kind and wired to the outputs it names,
/// the contracts checked, and every input the kind needs present.
fn wire_stage(
    raw: &RawStage,
    k: &dyn Kind,
    raw_inputs: &[(String, RawInput)],
    declared: &[Vec<Output>],
    names: &[&str],
    loc: &Locator,
) -> Result<Vec<Wire>, SpecError> {
    let at = ["stages", raw.name.as_str()];
    let mut inputs = Vec::new();
    for (slot, src) in raw_inputs {
        let here = [at[0], at[1], "inputs", slot.as_str()];
        let single = k.open_inputs() || k.inputs().iter().any(|s| s.name == slot);
        let list = k.list_inputs().iter().any(|s| s.name == slot);
        if !single && !list {
            return Err(loc.err(
                &here,
                &format!(
                    "kind `{}` has no input `{slot}` (inputs: {})",
                    k.name(),
                    k.inputs()
                        .iter()
                        .chain(k.list_inputs())
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        match src {
            RawInput::One(src) if single => {
                let (from, outs) = wire_ref(declared, names, loc, &here, src, false)?;
                let out = outs[0];
                inputs.push(Wire {
                    slot: slot.clone(),
                    from,
                    output: out.name.clone(),
                    file: out.file.clone(),
                });
            }
            RawInput::Many(_) if single => {
                return Err(loc.err(
                    &here,
                    &format!("input `{slot}` takes one `stage.output`, not a list"),
                ));
            }
            RawInput::One(one) => list_wires(
                declared,
                names,
                loc,
                &here,
                slot,
                std::slice::from_ref(one),
                &mut inputs,
            )?,
            RawInput::Many(many) => {
                list_wires(declared, names, loc, &here, slot, many, &mut inputs)?
            }
        }
    }
    check_contracts(k, &inputs, raw_inputs, declared, names, loc, &at)?;
    for slot in k.inputs() {
        if !inputs.iter().any(|w| w.slot == slot.name) {
            return Err(loc.err(
                &at,
                &format!(
                    "missing input `{}` ({}) for kind `{}`",
                    slot.name,
                    slot.doc,
                    k.name()
                ),
            ));
        }
    }
    Ok(inputs)
}

/// Resolves `stage` or `stage.output` to the stage index and the outputs it names: the one
/// named output, the only output of a single-output stage, or (`whole`) every output.
fn wire_ref<'d>(
    declared: &'d [Vec<Output>],
    names: &[&str],
    loc: &Locator,
    here: &[&str],
    src: &str,
    whole: bool,
) -> Result<(usize, Vec<&'d Output>), SpecError> {
    let (from_name, out_name) = match src.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (src, None),
    };
    let from = names.iter().position(|n| *n == from_name).ok_or_else(|| {
        loc.err(
            here,
            &format!("no stage `{from_name}` (stages: {})", names.join(", ")),
        )
    })?;
    let outs = &declared[from];
    let picked: Vec<&Output> = match out_name {
        Some(o) => outs.iter().filter(|s| s.name == o).collect(),
        None if whole || outs.len() == 1 => outs.iter().collect(),
        None => Vec::new(),
    };
    if picked.is_empty() {
        return Err(loc.err(
            here,
            &format!(
                "`{src}`: stage `{from_name}` has outputs {}; name one as `{from_name}.<output>`",
                outs.iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok((from, picked))
}

/// A `--set` overrides a param the stage has (in pipeline.yaml, its variant or its kind's
/// defaults) unless it says `+stage.param=…`: a misspelt param would otherwise be accepted (a
/// command stage passes any param on) and rerun the stage for nothing.
fn check_declared(
    k: &dyn Kind,
    params: &Mapping,
    s: &SetOverride,
    file: &std::path::Path,
) -> Result<(), SpecError> {
    let defaults = k.defaults();
    let keys = k.stage_keys();
    let mut known: Vec<&str> = params
        .keys()
        .filter_map(Value::as_str)
        .filter(|n| !keys.contains(n))
        .collect();
    if let Json::Object(d) = &defaults {
        known.extend(
            d.keys()
                .map(String::as_str)
                .filter(|n| *n != "params" && !keys.contains(n)),
        );
    }
    if s.add || known.contains(&s.param.as_str()) || keys.contains(&s.param.as_str()) {
        return Ok(());
    }
    known.sort_unstable();
    known.dedup();
    let listed = match (known.is_empty(), keys.is_empty()) {
        (_, true) => format!("params: {}", known.join(", ")),
        (true, false) => format!("params: none; stage keys: {}", keys.join(", ")),
        (false, false) => format!(
            "params: {}; stage keys: {}",
            known.join(", "),
            keys.join(", ")
        ),
    };
    Err(SpecError {
        file: file.to_path_buf(),
        line: None,
        path: String::new(),
        msg: format!(
            "--set {}: stage `{}` has no param `{}`{} ({listed}); to add one, write --set +{}.{}=…",
            s.text,
            s.stage,
            s.param,
            did_you_mean(&s.param, known.iter().chain(keys).copied()),
            s.stage,
            s.param
        ),
    })
}

/// The stages a list slot names (`stage` or `stage.output` entries), in order.
fn listed<'a>(inputs: &'a [(String, RawInput)], slot: &str) -> Vec<&'a str> {
    match inputs.iter().find(|(s, _)| s == slot).map(|(_, r)| r) {
        Some(RawInput::One(e)) => vec![e.split_once('.').map_or(e.as_str(), |(a, _)| a)],
        Some(RawInput::Many(m)) => m
            .iter()
            .map(|e| e.split_once('.').map_or(e.as_str(), |(a, _)| a))
            .collect(),
        None => Vec::new(),
    }
}

/// Every [`crate::kind::ListAgreement`]: a list slot names the stages the upstream stage's list
/// names (or, for a subset, only such stages); the error names the stage that is missing.
fn check_list_agreements(
    stages: &[Stage],
    lists: &[Vec<(String, RawInput)>],
    names: &[&str],
    loc: &Locator,
) -> Result<(), SpecError> {
    for (i, s) in stages.iter().enumerate() {
        for a in s.kind.list_agreements() {
            let Some(w) = s.inputs.iter().find(|w| w.slot == a.via) else {
                continue;
            };
            let here = listed(&lists[i], a.slot);
            let there = listed(&lists[w.from], a.upstream);
            let at = ["stages", names[i], "inputs", a.slot];
            if let Some(extra) = here.iter().find(|h| !there.contains(h)) {
                return Err(loc.err(
                    &at,
                    &format!(
                        "`{extra}` is listed here but not in `{}`'s `{}`, which this stage reads \
                         through `{}`: list it there too",
                        names[w.from], a.upstream, a.via
                    ),
                ));
            }
            if !a.subset
                && let Some(missing) = there.iter().find(|t| !here.contains(t))
            {
                return Err(loc.err(
                    &at,
                    &format!(
                        "`{missing}` is in `{}`'s `{}` but missing here, so this stage would \
                         leave it out: list it here too",
                        names[w.from], a.upstream
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The contracts a kind's slots ask of what is wired to them: a single slot's output must claim
/// the contract; every entry of a list slot must have the named output, claiming it.
fn check_contracts(
    k: &dyn Kind,
    inputs: &[Wire],
    raw_inputs: &[(String, RawInput)],
    declared: &[Vec<Output>],
    names: &[&str],
    loc: &Locator,
    at: &[&str; 2],
) -> Result<(), SpecError> {
    for ic in k.input_contracts() {
        let here = [at[0], at[1], "inputs", ic.slot];
        let claims = |from: usize, output: &str| {
            declared[from]
                .iter()
                .find(|o| o.name == output)
                .and_then(|o| o.contract.clone())
        };
        let list = k.list_inputs().iter().any(|s| s.name == ic.slot);
        if !list {
            if let Some(w) = inputs.iter().find(|w| w.slot == ic.slot) {
                let has = claims(w.from, &w.output);
                if has.as_deref() != Some(ic.contract) {
                    return Err(loc.err(
                        &here,
                        &format!(
                            "input `{}` needs {}; `{}.{}` carries {}",
                            ic.slot,
                            ic.contract,
                            names[w.from],
                            w.output,
                            has.unwrap_or_else(|| "no contract".into())
                        ),
                    ));
                }
            }
            continue;
        }
        let Some((_, entries)) = raw_inputs.iter().find(|(s, _)| s == ic.slot) else {
            continue;
        };
        let entries = match entries {
            RawInput::One(e) => std::slice::from_ref(e),
            RawInput::Many(m) => m.as_slice(),
        };
        for (i, e) in entries.iter().enumerate() {
            let stage = e.split_once('.').map_or(e.as_str(), |(a, _)| a);
            let Some(from) = names.iter().position(|n| *n == stage) else {
                continue;
            };
            let wired = inputs
                .iter()
                .any(|w| w.slot == list_input_name(ic.slot, i, stage, ic.output));
            let has = claims(from, ic.output);
            if !wired || has.as_deref() != Some(ic.contract) {
                return Err(loc.err(
                    &here,
                    &format!(
                        "entry `{e}` of `{}` needs an output `{}` carrying {} ({})",
                        ic.slot,
                        ic.output,
                        ic.contract,
                        match (wired, has) {
                            (false, _) => format!(
                                "`{stage}` has {}",
                                declared[from]
                                    .iter()
                                    .map(|o| o.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            (true, Some(c)) => format!("it carries {c}"),
                            (true, None) => "it carries no contract".into(),
                        }
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The wires of a list slot: entry `i` naming a whole stage brings every output of it.
fn list_wires(
    declared: &[Vec<Output>],
    names: &[&str],
    loc: &Locator,
    here: &[&str],
    slot: &str,
    entries: &[String],
    inputs: &mut Vec<Wire>,
) -> Result<(), SpecError> {
    for (i, src) in entries.iter().enumerate() {
        let (from, outs) = wire_ref(declared, names, loc, here, src, true)?;
        for out in outs {
            inputs.push(Wire {
                slot: list_input_name(slot, i, names[from], &out.name),
                from,
                output: out.name.clone(),
                file: out.file.clone(),
            });
        }
    }
    Ok(())
}

/// Applies one variant's overrides of one stage, remembering where each value was written.
fn apply_variant(params: &mut Mapping, origins: &mut BTreeMap<String, Origin>, o: &Override) {
    for (pk, pv) in &o.params {
        let pk = pk.as_str().unwrap_or_default().to_string();
        let at = vec![
            "variants".into(),
            o.variant.clone(),
            o.stage.clone(),
            pk.clone(),
        ];
        origins.insert(pk.clone(), Origin::Yaml(at));
        params.insert(Value::String(pk), pv.clone());
    }
}

fn resolve(
    k: &dyn Kind,
    params: &Mapping,
    loc: &Locator,
    stage: &str,
    origins: &BTreeMap<String, Origin>,
) -> Result<Json, SpecError> {
    let where_ = |param: Option<&str>| -> (Option<Vec<String>>, Option<String>) {
        match param.and_then(|p| origins.get(p)) {
            Some(Origin::Yaml(p)) => (Some(p.clone()), None),
            Some(Origin::Set(t)) => (None, Some(t.clone())),
            None => (
                Some(vec!["stages".into(), stage.into(), "params".into()]),
                None,
            ),
        }
    };
    let fail = |param: Option<&str>, msg: String| -> SpecError {
        match where_(param) {
            (_, Some(set)) => SpecError {
                file: loc.file.clone(),
                line: None,
                path: String::new(),
                msg: format!("--set {set}: {msg}"),
            },
            (Some(p), None) => {
                let p: Vec<&str> = p.iter().map(String::as_str).collect();
                loc.err(&p, &msg)
            }
            (None, None) => loc.err(&[], &msg),
        }
    };
    let mut user = serde_json::Map::new();
    for (pk, pv) in params {
        let name = pk.as_str().unwrap_or_default();
        let v = yaml_to_json(pv).map_err(|m| fail(Some(name), m))?;
        user.insert(name.to_string(), v);
    }
    k.resolve(&user).map_err(|e: ParamError| {
        let msg = match &e {
            ParamError::Unknown { .. } => format!("{e} for kind `{}`", k.name()),
            // A declaration (a command's `run:`) is written beside `kind:`, so it is named so.
            ParamError::Invalid { name, msg } if k.stage_keys().contains(&name.as_str()) => {
                format!("stage key `{name}`: {msg}")
            }
            _ => e.to_string(),
        };
        fail(e.param(), msg)
    })
}

fn order_or_cycle(
    stages: &[Stage],
    g: &DiGraph<usize, ()>,
    loc: &Locator,
) -> Result<Vec<usize>, SpecError> {
    // Kahn's algorithm, always taking the earliest ready stage in YAML order, so the order is
    // the one a reader of the file expects.
    let n = stages.len();
    let mut indeg: Vec<usize> = (0..n)
        .map(|i| {
            g.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for j in g.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Outgoing) {
            indeg[j.index()] -= 1;
            if indeg[j.index()] == 0 {
                ready.insert(j.index());
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Name one cycle: walk back along unresolved inputs until a stage repeats.
    let stuck: BTreeSet<usize> = (0..n).filter(|i| !order.contains(i)).collect();
    let start = *stuck.first().expect("a stuck stage");
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = stages[cur]
            .inputs
            .iter()
            .map(|w| w.from)
            .find(|f| stuck.contains(f))
            .expect("a stuck stage has a stuck input");
        if let Some(p) = path.iter().position(|&x| x == next) {
            // `path` follows "reads from"; reversed it is the direction data flows.
            let mut cyc: Vec<&str> = path[p..]
                .iter()
                .rev()
                .map(|&i| stages[i].name.as_str())
                .collect();
            let first = cyc[0];
            cyc.push(first);
            return Err(loc.err(
                &["stages", first, "inputs"],
                &format!("dependency cycle: {}", cyc.join(" → ")),
            ));
        }
        path.push(next);
        cur = next;
    }
}
