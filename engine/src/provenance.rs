//! Provenance: where an output came from (`lineage`), whether the store still holds what its
//! records say (`verify`), what each `magpipe run` did (`runs`), and what may be deleted (`gc`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{RunError, StoreError};
use crate::exec::{self, Freshness};
use crate::plan::Plan;
use crate::store::{OutputRecord, Record, Store, hash_file};

pub use crate::time::utc;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LineageInput {
    pub slot: String,
    pub from_stage: String,
    pub output: String,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LineageStage {
    pub stage: String,
    pub kind: String,
    pub kind_version: u32,
    pub key: String,
    pub params: Value,
    /// Params whose value differs from the kind's default.
    pub non_default: Vec<String>,
    pub inputs: Vec<LineageInput>,
    pub outputs: BTreeMap<String, OutputRecord>,
    pub runtime: Value,
    pub magpipe_version: String,
    pub git_commit: String,
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    pub summary: String,
    /// The Slurm jobs (or other executor) that ran it, when not in-process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executor: Option<crate::store::ExecInfo>,
    /// Whether a command stage's sandbox held, and at which Landlock ABI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Where it ran, as its kind reported it (`facts.hardware`: CPU model, instruction set,
    /// GPU…): not in the key, but it explains why a rerun elsewhere may differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Value>,
    /// Where this store got it from, when it was pulled from a remote, and who signed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pulled: Option<crate::store::Pulled>,
}

/// `pulled from lab (/shared/cache), signed by ci@lab:…` for a pulled record.
fn pulled_line(p: &crate::store::Pulled) -> String {
    format!(
        "pulled from {} ({}) on {}, {}",
        p.remote,
        p.url,
        utc(p.pulled_unix),
        match &p.signer {
            Some(k) => format!("signed by {k}"),
            None => "unsigned".to_string(),
        }
    )
}

/// A fact as a reader wants it: strings without their quotes.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// `facts.hardware` as one line: `key value` pairs in key order.
fn hardware_line(h: &Value) -> Option<String> {
    let o = h.as_object()?;
    Some(
        o.iter()
            .map(|(k, v)| format!("{k} {}", plain(v)))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RawFile {
    pub name: String,
    pub path: String,
    pub size: u64,
    pub blake3: String,
    pub read_by: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Lineage {
    pub target: String,
    pub output: Option<OutputRecord>,
    pub output_name: Option<String>,
    pub variant: Option<String>,
    /// From the raw data to the target, in pipeline order.
    pub stages: Vec<LineageStage>,
    pub raw_files: Vec<RawFile>,
    /// One hash for the whole chain (see [`lineage_hash`]); forecasts carry it.
    pub lineage_hash: String,
}

/// blake3 over the chain's content: every stage's kind, version, key and output hashes (by key,
/// so the order the chain was walked in does not matter) and every raw file's name inside the
/// data folder and hash. Stage names and the data folder's location stay out, as they stay out
/// of keys, so the same chain run under other names or from another folder has the same hash;
/// raw-file names stay in, as in keys, because they say which AR and channel the bytes are.
pub fn lineage_hash(stages: &[LineageStage], raw: &[RawFile]) -> String {
    let chain = serde_json::json!({
        "stages": stages
            .iter()
            .map(|s| (s.key.clone(), serde_json::json!({
                "kind": s.kind,
                "kind_version": s.kind_version,
                "outputs": s.outputs.iter().map(|(n, o)| (n.clone(), o.hash.clone())).collect::<BTreeMap<_, _>>(),
            })))
            .collect::<BTreeMap<_, _>>(),
        "raw_files": raw_names(raw),
    });
    blake3::hash(chain.to_string().as_bytes())
        .to_hex()
        .to_string()
}

/// Raw files as the lineage hash names them: by name, and a name read with two contents (each
/// model's `lock`) by name and content after its first, so a chain without such names hashes as
/// it always did.
fn raw_names(raw: &[RawFile]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in raw {
        if out.contains_key(&f.name) {
            out.insert(format!("{}@{}", f.name, f.blake3), f.blake3.clone());
        } else {
            out.insert(f.name.clone(), f.blake3.clone());
        }
    }
    out
}

/// The lineage of `stage` (optionally one output) in the current plan; every stage on the chain
/// must be fresh, as for `magpipe artifact`.
pub fn lineage(
    plan: &Plan,
    store: &Store,
    stage: &str,
    output: Option<&str>,
) -> Result<Lineage, RunError> {
    let i = plan
        .index(stage)
        .ok_or_else(|| RunError::Usage(format!("no stage `{stage}`")))?;
    let selected = plan.select(&[stage.to_string()]).map_err(RunError::Usage)?;
    let mut recs: BTreeMap<usize, Record> = BTreeMap::new();
    for (j, f) in exec::status(plan, store, &selected)? {
        match f {
            Freshness::Fresh(r) => {
                recs.insert(j, *r);
            }
            Freshness::Stale { why, .. } => {
                return Err(RunError::Stale {
                    stage: plan.stages[j].name.clone(),
                    why: crate::stale::joined(&why),
                    flags: String::new(),
                });
            }
        }
    }
    let target = &recs[&i];
    let (output_name, output_rec) = match output {
        Some(o) => {
            let r = target.outputs.get(o).ok_or_else(|| {
                RunError::Usage(format!(
                    "stage `{stage}` has no output `{o}` (outputs: {})",
                    target
                        .outputs
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            (Some(o.to_string()), Some(r.clone()))
        }
        None => (None, None),
    };
    let mut stages = Vec::new();
    let mut raw: BTreeMap<(String, String), RawFile> = BTreeMap::new();
    for &j in &selected {
        let s = &plan.stages[j];
        let r = &recs[&j];
        let non_default = non_default(&s.params, &s.kind.defaults());
        let inputs = s
            .inputs
            .iter()
            .map(|w| LineageInput {
                slot: w.slot.clone(),
                from_stage: plan.stages[w.from].name.clone(),
                output: w.output.clone(),
                hash: r.preimage.inputs.get(&w.slot).cloned().unwrap_or_default(),
            })
            .collect();
        // Records written before paths were kept: the stage is fresh, so its current sources are
        // the very files the record hashed.
        let current = exec::source_paths(s);
        add_raw(&mut raw, r, &current, &s.name);
        stages.push(lineage_stage(r, &s.name, &s.params, non_default, inputs));
    }
    let raw_files: Vec<RawFile> = raw.into_values().collect();
    Ok(Lineage {
        target: stage.to_string(),
        output: output_rec,
        output_name,
        variant: plan.variant.clone(),
        lineage_hash: lineage_hash(&stages, &raw_files),
        stages,
        raw_files,
    })
}

/// The records behind `key`, following each record's `upstream` keys; dependencies first.
pub fn record_chain(store: &Store, key: &str) -> Result<Vec<Record>, RunError> {
    fn visit(
        store: &Store,
        key: &str,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Record>,
    ) -> Result<(), RunError> {
        if !seen.insert(key.to_string()) {
            return Ok(());
        }
        let r = store
            .record(key)?
            .ok_or_else(|| RunError::Usage(format!("record {key} is missing from the store")))?;
        for up in r.upstream.values() {
            visit(store, up, seen, out)?;
        }
        out.push(r);
        Ok(())
    }
    let mut out = Vec::new();
    visit(store, key, &mut BTreeSet::new(), &mut out)?;
    Ok(out)
}

/// The lineage of the last record of `chain` (as [`record_chain`] returns it), from the records
/// alone: what the store holds, whether or not `pipeline.yaml` would still produce it.
pub fn records_lineage(
    chain: &[Record],
    registry: &crate::Registry,
    variant: Option<&str>,
) -> Lineage {
    let by_key: BTreeMap<&str, &Record> = chain.iter().map(|r| (r.key.as_str(), r)).collect();
    let mut raw: BTreeMap<(String, String), RawFile> = BTreeMap::new();
    let mut stages = Vec::new();
    for r in chain {
        let defaults = registry.get(&r.preimage.kind).map(|k| k.defaults());
        let non_default = non_default(&r.preimage.params, &defaults.unwrap_or(Value::Null));
        let inputs = r
            .preimage
            .inputs
            .iter()
            .map(|(slot, hash)| {
                let up = r.upstream.get(slot).and_then(|k| by_key.get(k.as_str()));
                LineageInput {
                    slot: slot.clone(),
                    from_stage: up.map(|u| u.stage.clone()).unwrap_or_default(),
                    output: up
                        .and_then(|u| u.outputs.iter().find(|(_, o)| &o.hash == hash))
                        .map(|(n, _)| n.clone())
                        .unwrap_or_default(),
                    hash: hash.clone(),
                }
            })
            .collect();
        add_raw(&mut raw, r, &BTreeMap::new(), &r.stage);
        stages.push(lineage_stage(
            r,
            &r.stage,
            &r.preimage.params,
            non_default,
            inputs,
        ));
    }
    let raw_files: Vec<RawFile> = raw.into_values().collect();
    Lineage {
        target: chain.last().map(|r| r.stage.clone()).unwrap_or_default(),
        output: None,
        output_name: None,
        variant: variant.map(str::to_string),
        lineage_hash: lineage_hash(&stages, &raw_files),
        stages,
        raw_files,
    }
}

/// The params that differ from the kind's defaults.
fn non_default(params: &Value, defaults: &Value) -> Vec<String> {
    match (params, defaults) {
        (Value::Object(p), Value::Object(d)) => p
            .iter()
            .filter(|(k, v)| d.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// The raw files a record read, with the paths it read them from (else `current`).
/// Raw files by name and content: two stages that read one file under one name list it once;
/// two files under one name (each model's `lock`) are both listed.
fn add_raw(
    raw: &mut BTreeMap<(String, String), RawFile>,
    r: &Record,
    current: &BTreeMap<String, String>,
    read_by: &str,
) {
    for src in &r.preimage.sources {
        raw.entry((src.name.clone(), src.hash.clone()))
            .or_insert_with(|| RawFile {
                name: src.name.clone(),
                path: r
                    .source_paths
                    .get(&src.name)
                    .or_else(|| current.get(&src.name))
                    .cloned()
                    .unwrap_or_default(),
                size: src.size,
                blake3: src.hash.clone(),
                read_by: read_by.to_string(),
            });
    }
}

fn lineage_stage(
    r: &Record,
    stage: &str,
    params: &Value,
    non_default: Vec<String>,
    inputs: Vec<LineageInput>,
) -> LineageStage {
    LineageStage {
        stage: stage.to_string(),
        kind: r.preimage.kind.clone(),
        kind_version: r.preimage.kind_version,
        key: r.key.clone(),
        params: params.clone(),
        non_default,
        inputs,
        outputs: r.outputs.clone(),
        runtime: r.preimage.runtime.clone(),
        magpipe_version: r.magpipe_version.clone(),
        git_commit: if r.git_commit.is_empty() {
            "(not recorded)".into()
        } else {
            r.git_commit.clone()
        },
        started: utc(r.started_unix),
        finished: utc(r.started_unix + r.seconds),
        seconds: r.seconds,
        summary: r.summary.clone(),
        executor: r.executor.clone(),
        sandbox: r.facts["sandbox"]["text"].as_str().map(str::to_string),
        hardware: r.facts.get("hardware").filter(|h| h.is_object()).cloned(),
        pulled: r.pulled.clone(),
    }
}

fn params_line(l: &LineageStage, max: usize) -> String {
    let Value::Object(p) = &l.params else {
        return String::new();
    };
    p.iter()
        .map(|(k, v)| {
            let mark = if l.non_default.contains(k) { "*" } else { "" };
            let v = v.to_string();
            let v = match v.char_indices().nth(max) {
                Some((cut, _)) => format!("{}…", &v[..cut]),
                None => v,
            };
            format!("{k}{mark}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn short(h: &str) -> &str {
    &h[..h.len().min(16)]
}

/// `stage:output (variant v)`, with `q` around the names (a backtick for Markdown).
fn lineage_title(l: &Lineage, q: &str) -> String {
    format!(
        "{q}{}{}{q}{}",
        l.target,
        l.output_name
            .as_ref()
            .map(|o| format!(":{o}"))
            .unwrap_or_default(),
        l.variant
            .as_ref()
            .map(|v| format!(" (variant {q}{v}{q})"))
            .unwrap_or_default()
    )
}

pub fn lineage_text(l: &Lineage) -> String {
    let mut out = format!(
        "lineage of {}\n  lineage hash {}\n",
        lineage_title(l, ""),
        l.lineage_hash
    );
    if let Some(o) = &l.output {
        out.push_str(&format!(
            "  output {}{} blake3 {} ({} bytes)\n",
            o.file,
            if o.dir { "/" } else { "" },
            o.hash,
            o.size
        ));
        for f in &o.files {
            out.push_str(&format!(
                "    {}/{} blake3 {} ({} bytes)\n",
                o.file, f.path, f.hash, f.size
            ));
        }
    }
    for s in l.stages.iter().rev() {
        out.push_str(&format!(
            "\n{} ({} v{}) key {}\n  ran {} → {} ({:.2} s), magpipe {} @ {}\n",
            s.stage,
            s.kind,
            s.kind_version,
            s.key,
            s.started,
            s.finished,
            s.seconds,
            s.magpipe_version,
            s.git_commit
        ));
        if s.runtime != Value::Null {
            out.push_str(&format!("  runtime {}\n", s.runtime));
        }
        out.push_str(&format!(
            "  params (* = not the default): {}\n",
            params_line(s, 80)
        ));
        for i in &s.inputs {
            out.push_str(&format!(
                "  in  {} ← {}.{} {}\n",
                i.slot,
                i.from_stage,
                i.output,
                short(&i.hash)
            ));
        }
        for (n, o) in &s.outputs {
            out.push_str(&format!(
                "  out {n} {}{} {} ({} bytes)\n",
                o.file,
                if o.dir { "/" } else { "" },
                short(&o.hash),
                o.size
            ));
            for f in &o.files {
                out.push_str(&format!(
                    "      {}/{} {} ({} bytes)\n",
                    o.file,
                    f.path,
                    short(&f.hash),
                    f.size
                ));
            }
        }
        out.push_str(&format!("  summary: {}\n", s.summary));
        if let Some(sb) = &s.sandbox {
            out.push_str(&format!("  sandbox {sb}\n"));
        }
        if let Some(p) = &s.pulled {
            out.push_str(&format!("  {}\n", pulled_line(p)));
        }
        if let Some(h) = s.hardware.as_ref().and_then(hardware_line) {
            out.push_str(&format!("  ran on {h}\n"));
        }
        if let Some(x) = &s.executor {
            for a in &x.attempts {
                out.push_str(&format!(
                    "  {} job {} {} on {} (exit {}), log {}\n",
                    x.executor, a.job_id, a.state, a.node, a.exit_code, a.log
                ));
            }
        }
    }
    out.push_str(&format!("\nraw files ({}):\n", l.raw_files.len()));
    for f in &l.raw_files {
        out.push_str(&format!(
            "  {} {} bytes blake3 {}\n",
            f.path, f.size, f.blake3
        ));
    }
    out
}

pub fn lineage_markdown(l: &Lineage) -> String {
    let mut out = format!(
        "## Provenance of {}\n\nLineage hash `{}`.\n\n",
        lineage_title(l, "`"),
        l.lineage_hash
    );
    if let Some(o) = &l.output {
        out.push_str(&format!(
            "Output `{}`, blake3 `{}`, {} bytes.\n\n",
            o.file, o.hash, o.size
        ));
    }
    out.push_str("| stage | kind | key | params (* = not the default) | runtime | ran (UTC) | seconds | magpipe |\n|---|---|---|---|---|---|---|---|\n");
    for s in &l.stages {
        out.push_str(&format!(
            "| {} | {} v{} | `{}` | {} | {} | {} | {:.2} | {} @ `{}` |\n",
            s.stage,
            s.kind,
            s.kind_version,
            short(&s.key),
            params_line(s, usize::MAX).replace('|', "\\|"),
            {
                let mut r = if s.runtime == Value::Null {
                    String::new()
                } else {
                    s.runtime.to_string()
                };
                if let Some(h) = s.hardware.as_ref().and_then(hardware_line) {
                    r.push_str(&format!("; ran on {h}"));
                }
                if let Some(sb) = &s.sandbox {
                    r.push_str(&format!("; sandbox {sb}"));
                }
                if let Some(p) = &s.pulled {
                    r.push_str(&format!("; {}", pulled_line(p)));
                }
                r.replace('|', "\\|")
            },
            s.started,
            s.seconds,
            s.magpipe_version,
            short(&s.git_commit)
        ));
    }
    out.push_str("\n### Inputs and outputs\n\n| stage | direction | name | blake3 | bytes |\n|---|---|---|---|---|\n");
    for s in &l.stages {
        for i in &s.inputs {
            out.push_str(&format!(
                "| {} | in ← {}.{} | {} | `{}` | |\n",
                s.stage, i.from_stage, i.output, i.slot, i.hash
            ));
        }
        for (n, o) in &s.outputs {
            out.push_str(&format!(
                "| {} | out | {n} ({}{}) | `{}` | {} |\n",
                s.stage,
                o.file,
                if o.dir { "/" } else { "" },
                o.hash,
                o.size
            ));
            for f in &o.files {
                out.push_str(&format!(
                    "| {} | out | {n}: {}/{} | `{}` | {} |\n",
                    s.stage, o.file, f.path, f.hash, f.size
                ));
            }
        }
    }
    out.push_str(&format!(
        "\n### Raw files ({})\n\n| file | path | bytes | blake3 |\n|---|---|---|---|\n",
        l.raw_files.len()
    ));
    for f in &l.raw_files {
        out.push_str(&format!(
            "| {} | {} | {} | `{}` |\n",
            f.name, f.path, f.size, f.blake3
        ));
    }
    out
}

/// Every record in the store.
pub fn all_records(store: &Store) -> Result<Vec<Record>, StoreError> {
    let dir = store.root.join("records");
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    for e in entries {
        let e = e.map_err(|err| StoreError::io(&dir, err))?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(key) = name.strip_suffix(".json")
            && let Some(r) = store.record(key)?
        {
            out.push(r);
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub records: usize,
    pub objects: usize,
    pub bytes: u64,
    pub problems: Vec<String>,
}

/// Re-hashes every object of the given records and checks that each record's inputs are the
/// outputs of the records it names upstream.
pub fn verify(store: &Store, records: &[Record]) -> Result<VerifyReport, StoreError> {
    use rayon::prelude::*;
    let mut rep = VerifyReport {
        records: records.len(),
        ..Default::default()
    };
    // Every file: a folder output's files one by one, so a problem names the file.
    let mut objects: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut folders: BTreeMap<std::path::PathBuf, Vec<String>> = BTreeMap::new();
    for r in records {
        for o in r.outputs.values() {
            let path = store.object_path(o);
            if o.dir {
                for f in &o.files {
                    objects.insert(
                        path.join(&f.path).display().to_string(),
                        (f.hash.clone(), f.size),
                    );
                }
                folders.insert(path, o.files.iter().map(|f| f.path.clone()).collect());
            } else {
                objects.insert(path.display().to_string(), (o.hash.clone(), o.size));
            }
        }
    }
    for (folder, recorded) in &folders {
        if !folder.is_dir() {
            rep.problems
                .push(format!("missing folder object {}", folder.display()));
            continue;
        }
        match crate::store::tree_files(folder) {
            Ok(present) => {
                for (rel, _) in present {
                    if !recorded.contains(&rel) {
                        rep.problems.push(format!(
                            "unrecorded file {} in folder object {}",
                            rel,
                            folder.display()
                        ));
                    }
                }
            }
            Err(e) => rep.problems.push(format!("unreadable folder object: {e}")),
        }
    }
    let checked: Vec<Option<String>> = objects
        .par_iter()
        .map(|(path, (hash, _))| {
            let p = Path::new(path);
            if !p.is_file() {
                return Some(format!("missing object {path}"));
            }
            match hash_file(p) {
                Ok((h, _)) if &h == hash => None,
                Ok((h, _)) => Some(format!(
                    "corrupted object {path}: its bytes hash to {} (recorded {})",
                    short(&h),
                    short(hash)
                )),
                Err(e) => Some(format!("unreadable object {path}: {e}")),
            }
        })
        .collect();
    rep.objects = objects.len();
    rep.bytes = objects.values().map(|(_, s)| s).sum();
    rep.problems.extend(checked.into_iter().flatten());
    for r in records {
        for (slot, up) in &r.upstream {
            let Some(u) = store.record(up)? else {
                rep.problems.push(format!(
                    "record {} ({}): upstream record {} of input `{slot}` is missing",
                    short(&r.key),
                    r.stage,
                    short(up)
                ));
                continue;
            };
            let want = r.preimage.inputs.get(slot);
            if !u.outputs.values().any(|o| Some(&o.hash) == want) {
                rep.problems.push(format!(
                    "record {} ({}): input `{slot}` is not an output of upstream record {} ({})",
                    short(&r.key),
                    r.stage,
                    short(up),
                    u.stage
                ));
            }
        }
    }
    Ok(rep)
}

/// The records on the chains of `stages` (fresh or not: whatever the refs point at).
pub fn chain_records(
    plan: &Plan,
    store: &Store,
    stages: &[String],
) -> Result<Vec<Record>, RunError> {
    let selected = plan.select(stages).map_err(RunError::Usage)?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = selected
        .iter()
        .filter_map(|&i| store.read_ref(plan.variant.as_deref(), &plan.stages[i].name))
        .collect();
    while let Some(k) = todo.pop() {
        if !seen.insert(k.clone()) {
            continue;
        }
        match store.record(&k)? {
            Some(r) => {
                todo.extend(r.upstream.values().cloned());
                out.push(r);
            }
            None => {
                return Err(RunError::Usage(format!(
                    "record {k} named by a ref is missing from the store"
                )));
            }
        }
    }
    Ok(out)
}

/// One `magpipe run`, as the run log keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunLog {
    pub started_unix: f64,
    pub seconds: f64,
    pub argv: Vec<String>,
    pub variant: Option<String>,
    pub targets: Vec<String>,
    pub ok: bool,
    pub magpipe_version: String,
    pub git_commit: String,
    /// stage → (outcome, key): `ran`, `cached`, `failed`, `skipped`.
    pub stages: BTreeMap<String, (String, Option<String>)>,
    /// The final outputs (the targets, or the stages nothing else reads): stage → output → hash.
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    /// `local` or `slurm`.
    #[serde(default = "local")]
    pub executor: String,
    /// stage → the Slurm job ids and nodes of the stages that ran as jobs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub jobs: BTreeMap<String, Vec<String>>,
}

fn local() -> String {
    "local".into()
}

pub fn append_run(store: &Store, log: &RunLog) -> Result<(), StoreError> {
    let dir = store.root.join("runs");
    fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    // A sweep logs its points from one process, possibly in the same microsecond.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        "{:020}-{}-{}.json",
        (log.started_unix * 1e6) as u64,
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    fs::write(&tmp, serde_json::to_vec_pretty(log).expect("serialises"))
        .map_err(|e| StoreError::io(&tmp, e))?;
    fs::rename(&tmp, &dest).map_err(|e| StoreError::io(&dest, e))
}

pub fn runs(store: &Store) -> Result<Vec<RunLog>, StoreError> {
    let dir = store.root.join("runs");
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(e) => e
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let p = dir.join(&n);
        let b = fs::read(&p).map_err(|e| StoreError::io(&p, e))?;
        out.push(serde_json::from_slice(&b).map_err(|e| StoreError::Record {
            path: p.clone(),
            msg: e.to_string(),
        })?);
    }
    Ok(out)
}

pub fn runs_text(logs: &[RunLog]) -> String {
    let mut out = String::from(
        "started (UTC)         secs  ran cached failed  variant     targets → final outputs\n",
    );
    for l in logs {
        let count = |what: &str| l.stages.values().filter(|(o, _)| o == what).count();
        let outs: Vec<String> = l
            .outputs
            .iter()
            .flat_map(|(s, o)| o.iter().map(move |(n, h)| format!("{s}.{n}={}", short(h))))
            .take(4)
            .collect();
        out.push_str(&format!(
            "{} {:7.1} {:4} {:6} {:6}  {:<11} {} → {}{}\n",
            utc(l.started_unix),
            l.seconds,
            count("ran"),
            count("cached"),
            count("failed"),
            l.variant.as_deref().unwrap_or("-"),
            if l.targets.is_empty() {
                "(all)".to_string()
            } else {
                l.targets.join(" ")
            },
            outs.join(" "),
            if l.ok { "" } else { "  FAILED" }
        ));
        for (stage, jobs) in &l.jobs {
            out.push_str(&format!(
                "    {stage}: {} job {}\n",
                l.executor,
                jobs.join(", ")
            ));
        }
    }
    out
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub kept_records: usize,
    pub removed_records: usize,
    pub removed_objects: usize,
    pub freed_bytes: u64,
    /// Running magpipe processes whose leases were honoured.
    pub live_leases: usize,
    /// Leases left by processes that died (removed).
    pub stale_leases: usize,
    /// Records and objects kept only because they are younger than the grace period.
    pub kept_young: usize,
}

/// The keys gc starts from: every ref, the last `keep_runs` runs and every live lease.
fn gc_roots(
    store: &Store,
    keep_runs: usize,
    held: &crate::lease::Held,
) -> Result<Vec<String>, StoreError> {
    let mut roots: Vec<String> = Vec::new();
    let refs = store.root.join("refs");
    if let Ok(variants) = fs::read_dir(&refs) {
        for v in variants.flatten() {
            for s in fs::read_dir(v.path()).into_iter().flatten().flatten() {
                if let Ok(k) = fs::read_to_string(s.path()) {
                    roots.push(k.trim().to_string());
                }
            }
        }
    }
    for l in runs(store)?.iter().rev().take(keep_runs) {
        roots.extend(l.stages.values().filter_map(|(_, k)| k.clone()));
    }
    roots.extend(held.records.iter().cloned());
    Ok(roots)
}

/// `roots` and every record upstream of them.
fn upstream_closure(
    by_key: &BTreeMap<&str, &Record>,
    roots: impl IntoIterator<Item = String>,
) -> BTreeSet<String> {
    let mut todo: Vec<String> = roots.into_iter().collect();
    let mut keep = BTreeSet::new();
    while let Some(k) = todo.pop() {
        if !keep.insert(k.clone()) {
            continue;
        }
        if let Some(r) = by_key.get(k.as_str()) {
            todo.extend(r.upstream.values().cloned());
        }
    }
    keep
}

/// Whether a path changed within `grace` of now.
fn younger_than(path: &Path, grace: std::time::Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < grace)
}

/// Removes every record and object that no ref, none of the last `keep_runs` runs and no
/// running magpipe (its lease) reaches, and that is older than `grace`. Runs, audits and
/// forecasts going on meanwhile are safe: gc holds the store's gc lock exclusively throughout,
/// and they register what they use under the shared lock (see `lease`).
pub fn gc(
    store: &Store,
    keep_runs: usize,
    grace: std::time::Duration,
    dry_run: bool,
) -> Result<GcReport, StoreError> {
    let _exclusive = crate::lease::GcLock::exclusive(&store.root)?;
    let held = crate::lease::read_all(&store.root, dry_run)?;
    let records = all_records(store)?;
    let young: BTreeSet<String> = records
        .iter()
        .filter(|r| younger_than(&store.record_path(&r.key), grace))
        .map(|r| r.key.clone())
        .collect();
    let by_key: BTreeMap<&str, &Record> = records.iter().map(|r| (r.key.as_str(), r)).collect();
    let roots = gc_roots(store, keep_runs, &held)?;
    let old_enough = upstream_closure(&by_key, roots.iter().cloned());
    let keep = upstream_closure(&by_key, roots.into_iter().chain(young.iter().cloned()));
    let mut live: BTreeSet<String> = records
        .iter()
        .filter(|r| keep.contains(&r.key))
        .flat_map(|r| r.outputs.values().map(|o| o.hash.clone()))
        .collect();
    live.extend(held.objects.iter().cloned());
    let mut rep = GcReport {
        live_leases: held.live,
        stale_leases: held.stale,
        kept_young: keep.len() - old_enough.len(),
        ..GcReport::default()
    };
    for r in &records {
        if keep.contains(&r.key) {
            rep.kept_records += 1;
        } else {
            rep.removed_records += 1;
            if !dry_run {
                let p = store.record_path(&r.key);
                fs::remove_file(&p).map_err(|e| StoreError::io(&p, e))?;
            }
        }
    }
    let objects = store.root.join("objects");
    for e in fs::read_dir(&objects).into_iter().flatten().flatten() {
        let hash = e.file_name().to_string_lossy().to_string();
        if live.contains(&hash) {
            continue;
        }
        let dir = e.path();
        if younger_than(&dir, grace) {
            rep.kept_young += 1;
            continue;
        }
        for f in fs::read_dir(&dir).into_iter().flatten().flatten() {
            // A folder object: the bytes of its files.
            if f.file_type().is_ok_and(|t| t.is_dir()) {
                for (_, p) in crate::store::tree_files(&f.path()).unwrap_or_default() {
                    rep.freed_bytes += fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                }
                continue;
            }
            rep.freed_bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
        }
        rep.removed_objects += 1;
        if !dry_run {
            // Objects are read-only files; their folder is writable, so removal works.
            fs::remove_dir_all(&dir).map_err(|err| StoreError::io(&dir, err))?;
        }
    }
    Ok(rep)
}

/// Output hashes of the final stages of a run: the targets, or the stages nothing reads.
pub fn final_outputs(
    plan: &Plan,
    selected: &[usize],
    records: &BTreeMap<usize, &Record>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let read: BTreeSet<usize> = selected.iter().flat_map(|&i| plan.deps(i)).collect();
    selected
        .iter()
        .filter(|i| !read.contains(i))
        .filter_map(|i| records.get(i).map(|r| (i, r)))
        .map(|(i, r)| {
            (
                plan.stages[*i].name.clone(),
                r.outputs
                    .iter()
                    .map(|(n, o)| (n.clone(), o.hash.clone()))
                    .collect(),
            )
        })
        .collect()
}

/// One stage of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditStage {
    pub stage: String,
    /// `identical`, `differs`, or `volatile` (only outputs that hold timings differ).
    pub verdict: String,
    pub details: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub target: String,
    pub stages: Vec<AuditStage>,
    /// The first stage (in pipeline order) whose outputs differ.
    pub first_difference: Option<String>,
}

/// Which files of two versions of a folder output differ, file by file.
fn tree_diff(old: &OutputRecord, new: &OutputRecord, a: &Path, b: &Path) -> String {
    let olds: BTreeMap<&str, &crate::store::TreeFile> =
        old.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let news: BTreeMap<&str, &crate::store::TreeFile> =
        new.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut parts = Vec::new();
    for (p, f) in &olds {
        match news.get(p) {
            None => parts.push(format!("{p} missing from the re-execution")),
            Some(g) if g.hash != f.hash => {
                parts.push(format!("{p}: {}", first_diff(&a.join(p), &b.join(p))))
            }
            Some(_) => {}
        }
    }
    for p in news.keys().filter(|p| !olds.contains_key(*p)) {
        parts.push(format!("{p} only in the re-execution"));
    }
    parts.join("; ")
}

fn first_diff(a: &Path, b: &Path) -> String {
    match (fs::read(a), fs::read(b)) {
        (Ok(x), Ok(y)) => {
            let at = x
                .iter()
                .zip(&y)
                .position(|(p, q)| p != q)
                .unwrap_or(x.len().min(y.len()));
            format!(
                "first difference at byte {at} ({} vs {} bytes)",
                x.len(),
                y.len()
            )
        }
        _ => "unreadable".into(),
    }
}

/// Re-executes the chain that produced `stage` in a scratch store and compares every output
/// byte for byte with the stored one.
pub fn audit(
    plan: &Plan,
    store: &Store,
    stage: &str,
    jobs: usize,
    sink: &dyn crate::events::Sink,
) -> Result<AuditReport, RunError> {
    let selected = plan.select(&[stage.to_string()]).map_err(RunError::Usage)?;
    // The stored chain is compared at the end: held against gc from the moment it is found.
    store.begin_lease("audit")?;
    let mut stored: BTreeMap<usize, Record> = BTreeMap::new();
    for (j, f) in exec::status(plan, store, &selected)? {
        match f {
            Freshness::Fresh(r) => {
                stored.insert(j, *r);
            }
            Freshness::Stale { why, .. } => {
                return Err(RunError::Stale {
                    stage: plan.stages[j].name.clone(),
                    why: crate::stale::joined(&why),
                    flags: String::new(),
                });
            }
        }
    }
    let scratch = store
        .root
        .join("tmp")
        .join(format!("audit-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|e| StoreError::io(&scratch, e))?;
    let fresh = Store::open(&scratch);
    // An audit re-executes here, in-process, whatever executor made the originals.
    let opts = exec::RunOptions {
        targets: vec![stage.to_string()],
        force: Vec::new(),
        jobs,
        executor: crate::executor::Choice::Local,
        ..exec::RunOptions::default()
    };
    let result = exec::run(plan, &fresh, &opts, sink);
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&scratch);
            return Err(e);
        }
    };
    let mut report = AuditReport {
        target: stage.to_string(),
        stages: Vec::new(),
        first_difference: None,
    };
    for (i, o) in &result.outcomes {
        let name = plan.stages[*i].name.clone();
        let again = match o {
            exec::Outcome::Ran(r, _) | exec::Outcome::Cached(r) | exec::Outcome::Pulled(r) => r,
            exec::Outcome::Failed(_) | exec::Outcome::Skipped(_) => {
                let detail = match o {
                    exec::Outcome::Failed(f) => f.to_string(),
                    exec::Outcome::Skipped(m) => m.clone(),
                    _ => unreachable!("matched above"),
                };
                report.stages.push(AuditStage {
                    stage: name.clone(),
                    verdict: "failed".into(),
                    details: vec![detail],
                });
                report.first_difference.get_or_insert(name);
                continue;
            }
        };
        let old = &stored[i];
        let volatile = plan.stages[*i].kind.volatile_outputs();
        let (mut hard, mut soft) = (Vec::new(), Vec::new());
        for (out, o_old) in &old.outputs {
            let Some(o_new) = again.outputs.get(out) else {
                hard.push(format!("output `{out}` missing from the re-execution"));
                continue;
            };
            if o_new.hash == o_old.hash {
                continue;
            }
            let what = if o_old.dir || o_new.dir {
                format!(
                    "{out} ({}/): {}",
                    o_old.file,
                    tree_diff(
                        o_old,
                        o_new,
                        &store.object_path(o_old),
                        &fresh.object_path(o_new)
                    )
                )
            } else {
                format!(
                    "{out} ({}): {}",
                    o_old.file,
                    first_diff(&store.object_path(o_old), &fresh.object_path(o_new))
                )
            };
            if volatile.contains(&out.as_str()) {
                soft.push(what);
            } else {
                hard.push(what);
            }
        }
        if !hard.is_empty() {
            hard.extend(hardware_then_and_now(&old.facts, &again.facts));
        }
        let verdict = if !hard.is_empty() {
            report.first_difference.get_or_insert(name.clone());
            "differs"
        } else if !soft.is_empty() {
            "volatile"
        } else {
            "identical"
        };
        hard.extend(soft.into_iter().map(|s| format!("{s} (timings; expected)")));
        report.stages.push(AuditStage {
            stage: name,
            verdict: verdict.into(),
            details: hard,
        });
    }
    let _ = fs::remove_dir_all(&scratch);
    Ok(report)
}

/// Whether the stored run and the rerun ran on the same hardware, as their kinds reported it:
/// the same seed gives other floats on a CPU whose kernels use another instruction set.
fn hardware_then_and_now(then: &Value, now: &Value) -> Option<String> {
    let (a, b) = (&then["hardware"], &now["hardware"]);
    Some(match (a.as_object(), b.as_object()) {
        (None, None) => return None,
        (Some(x), Some(y)) if x == y => format!(
            "same hardware as the stored run ({})",
            hardware_line(a).unwrap_or_default()
        ),
        (Some(x), Some(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            let diffs: Vec<String> = keys
                .into_iter()
                .filter(|k| x.get(*k) != y.get(*k))
                .map(|k| {
                    let show = |v: Option<&Value>| v.map_or("—".into(), plain);
                    format!("{k} {} → {}", show(x.get(k)), show(y.get(k)))
                })
                .collect();
            format!("other hardware than the stored run: {}", diffs.join("; "))
        }
        (None, Some(_)) => "the hardware of the stored run is not recorded".into(),
        (Some(_), None) => "the rerun did not record its hardware".into(),
    })
}

pub fn audit_text(r: &AuditReport) -> String {
    let mut out = format!(
        "audit of {}: every stage re-executed in a scratch store\n",
        r.target
    );
    for s in &r.stages {
        out.push_str(&format!("  {:<12} {}\n", s.verdict, s.stage));
        for d in &s.details {
            out.push_str(&format!("               {d}\n"));
        }
    }
    out.push_str(&match &r.first_difference {
        None => "clean: every output is byte-identical to the stored one\n".to_string(),
        Some(s) => format!("NOT reproducible: the first stage whose outputs differ is `{s}`\n"),
    });
    out
}

/// Appends this run to the store's run log; a run log that cannot be written is a warning, not a
/// failure of the run. A failed run that committed nothing leaves no trace, like the rest of the
/// store.
pub fn log_run(
    plan: &crate::plan::Plan,
    store: &Store,
    targets: &[String],
    started: std::time::SystemTime,
    result: &crate::exec::RunResult,
    executor: &str,
    argv: Vec<String>,
) {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let mut stages = std::collections::BTreeMap::new();
    let mut recs = std::collections::BTreeMap::new();
    let mut jobs = std::collections::BTreeMap::new();
    for (i, o) in &result.outcomes {
        let (what, key) = match o {
            crate::exec::Outcome::Ran(r, _) => {
                recs.insert(*i, r);
                if let Some(x) = &r.executor {
                    jobs.insert(
                        r.stage.clone(),
                        x.attempts
                            .iter()
                            .map(|a| format!("{} {} on {}", a.job_id, a.state, a.node))
                            .collect(),
                    );
                }
                ("ran", Some(r.key.clone()))
            }
            crate::exec::Outcome::Cached(r) => {
                recs.insert(*i, r);
                ("cached", Some(r.key.clone()))
            }
            crate::exec::Outcome::Pulled(r) => {
                recs.insert(*i, r);
                ("pulled", Some(r.key.clone()))
            }
            crate::exec::Outcome::Failed(_) => ("failed", None),
            crate::exec::Outcome::Skipped(_) => ("skipped", None),
        };
        stages.insert(plan.stages[*i].name.clone(), (what.to_string(), key));
    }
    let selected: Vec<usize> = result.outcomes.iter().map(|(i, _)| *i).collect();
    let log = RunLog {
        started_unix: unix(started),
        seconds: started.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0),
        argv,
        variant: plan.variant.clone(),
        targets: targets.to_vec(),
        ok: result.failed() == 0,
        magpipe_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: crate::GIT_COMMIT.to_string(),
        stages,
        outputs: final_outputs(plan, &selected, &recs),
        executor: executor.to_string(),
        jobs,
    };
    if let Err(e) = append_run(store, &log) {
        eprintln!("warning: the run log was not written: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_audit_names_the_hardware_that_changed() {
        let then =
            json!({"hardware": {"device": "cpu", "cpu": "EPYC", "cpu_isa": "avx512_core_bf16"}});
        let same = hardware_then_and_now(&then, &then).unwrap();
        assert!(
            same.starts_with(
                "same hardware as the stored run (cpu EPYC, cpu_isa avx512_core_bf16, device cpu)"
            ),
            "{same}"
        );
        let now = json!({"hardware": {"device": "cpu", "cpu": "EPYC", "cpu_isa": "avx2"}});
        assert_eq!(
            hardware_then_and_now(&then, &now).unwrap(),
            "other hardware than the stored run: cpu_isa avx512_core_bf16 → avx2"
        );
        let gpu = json!({"hardware": {"device": "cuda", "cpu": "EPYC", "cpu_isa": "avx512_core_bf16", "gpu": "H200"}});
        assert_eq!(
            hardware_then_and_now(&then, &gpu).unwrap(),
            "other hardware than the stored run: device cpu → cuda; gpu — → H200"
        );
        assert!(
            hardware_then_and_now(&json!({}), &then)
                .unwrap()
                .contains("not recorded")
        );
        // Kinds that report no hardware (data stages, commands) get no line.
        assert_eq!(hardware_then_and_now(&json!({}), &json!({"x": 1})), None);
    }
}
