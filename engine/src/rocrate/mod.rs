//! A lineage as a Workflow Run RO-Crate (Provenance Run Crate profile 0.5): what a journal, an
//! archive or a referee reads without magpipe. The pipeline file is the crate's main workflow,
//! each stage a step and a tool, each stage run a `CreateAction` whose objects are its inputs and
//! param values and whose results are its outputs, copied into the crate; raw files are named
//! with their hashes (or copied, on request). Every file carries its size, its sha256 (what the
//! crate world checks) and its blake3 (what magpipe checks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::provenance::{Lineage, LineageStage};
pub use crate::remote::config::{CrateMeta, Organization, Person};
use crate::store::{OutputRecord, Store};

mod archive;
pub use archive::write_zip;

#[derive(Debug, thiserror::Error)]
pub enum CrateError {
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CrateError + '_ {
    move |err| CrateError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// What goes into the crate besides the outputs' records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Contents {
    /// Copy the raw files too (else they are named, hashed and pointed at their source).
    pub include_data: bool,
    /// Leave out outputs named `model` (trained weights: the largest files, and not always
    /// shareable).
    pub no_models: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub files: usize,
    pub bytes: u64,
    pub identifier: String,
}

/// magpipe's own entity, the instrument of the orchestration.
const MAGPIPE: &str = "#magpipe";

const PROFILES: [(&str, &str); 4] = [
    ("https://w3id.org/ro/wfrun/process/0.5", "Process Run Crate"),
    (
        "https://w3id.org/ro/wfrun/workflow/0.5",
        "Workflow Run Crate",
    ),
    (
        "https://w3id.org/ro/wfrun/provenance/0.5",
        "Provenance Run Crate",
    ),
    (
        "https://w3id.org/workflowhub/workflow-ro-crate/1.0",
        "Workflow RO-Crate",
    ),
];

/// `2026-12-05 06:41:00Z` (lineage's form) as the profiles want it: `2026-12-05T06:41:00+00:00`.
fn iso(t: &str) -> String {
    t.replacen(' ', "T", 1).replace('Z', "+00:00")
}

/// A file's size, sha256 and blake3, in one pass over it.
fn digests(path: &Path) -> Result<(u64, String, String), CrateError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        b3.update(&buf[..n]);
        size += n as u64;
    }
    let hex: String = sha
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, hex, b3.finalize().to_hex().to_string()))
}

/// One value or a list: the profiles want a single value where there is one.
fn one_or_many(ids: Vec<Value>) -> Value {
    match ids.len() {
        1 => ids.into_iter().next().expect("one"),
        _ => Value::Array(ids),
    }
}

fn id(s: &str) -> Value {
    json!({ "@id": s })
}

/// A JSON value's type as a FormalParameter's `additionalType`.
fn param_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "Integer",
        Value::Number(_) => "Float",
        Value::String(_) => "Text",
        _ => "PropertyValue",
    }
}

/// A file's media type from its extension (what the profiles ask every File to say).
fn media_type(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("parquet") => "application/vnd.apache.parquet",
        Some("json") => "application/json",
        Some("md") => "text/markdown",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("csv") => "text/csv",
        Some("txt" | "log") => "text/plain",
        Some("yaml" | "yml") => "application/yaml",
        Some("html") => "text/html",
        Some("tex") => "application/x-tex",
        Some("py") => "text/x-python",
        _ => "application/octet-stream",
    }
}

/// Adds `param` to the `exampleOfWork` of the entity `target` (a file that is one stage's
/// output and another's input is an example of both parameters).
fn add_example(graph: &mut [Value], target: &Value, param: &str) {
    let Some(want) = target["@id"].as_str() else {
        return;
    };
    if let Some(e) = graph.iter_mut().find(|e| e["@id"] == want) {
        let new = id(param);
        // Two runs of one stage (a sweep) read one file through the same parameter.
        if e["exampleOfWork"] == new
            || e["exampleOfWork"]
                .as_array()
                .is_some_and(|a| a.contains(&new))
        {
            return;
        }
        e["exampleOfWork"] = match e["exampleOfWork"].take() {
            Value::Null => new,
            Value::Array(mut a) => {
                a.push(new);
                Value::Array(a)
            }
            one => json!([one, new]),
        };
    }
}

/// Builds the crate's graph while files are copied in.
struct Builder<'a> {
    out: &'a Path,
    graph: Vec<Value>,
    /// Data entities directly under the root.
    top: Vec<String>,
    files: usize,
    bytes: u64,
    /// The FormalParameters added so far: one per stage and name, however many runs used it.
    formals: std::collections::BTreeSet<String>,
}

impl Builder<'_> {
    /// Copies `src` to `rel` in the crate and adds its File entity; returns its id.
    fn file(&mut self, src: &Path, rel: &str, extra: Value) -> Result<Value, CrateError> {
        let dst = self.out.join(rel);
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::copy(src, &dst).map_err(io(src))?;
        self.placed(rel, extra)
    }

    /// Adds the File entity of `rel`, already written into the crate; returns its id.
    fn placed(&mut self, rel: &str, extra: Value) -> Result<Value, CrateError> {
        let (size, sha256, blake3) = digests(&self.out.join(rel))?;
        let mut e = json!({
            "@id": rel,
            "@type": "File",
            "name": rel.rsplit('/').next().unwrap_or(rel),
            "contentSize": size.to_string(),
            "encodingFormat": media_type(rel),
            "sha256": sha256,
            "identifier": format!("blake3:{blake3}"),
        });
        if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        self.graph.push(e);
        self.files += 1;
        self.bytes += size;
        Ok(id(rel))
    }

    /// An output of a stage, copied from the store: a File, or a Dataset of its files.
    fn output(
        &mut self,
        store: &Store,
        folder: &str,
        stage: &str,
        name: &str,
        o: &OutputRecord,
        param: &str,
    ) -> Result<Value, CrateError> {
        let src = store.object_path(o);
        let rel = format!("{folder}/{}", o.file);
        let example = json!({ "exampleOfWork": id(param) });
        if !o.dir {
            self.top.push(rel.clone());
            return self.file(&src, &rel, example);
        }
        let mut parts = Vec::new();
        for f in &o.files {
            parts.push(self.file(&src.join(&f.path), &format!("{rel}/{}", f.path), json!({}))?);
        }
        let mut e = json!({
            "@id": format!("{rel}/"),
            "@type": "Dataset",
            "name": format!("{stage}.{name}"),
            "contentSize": o.size.to_string(),
            "identifier": format!("blake3-tree:{}", o.hash),
            "exampleOfWork": id(param),
        });
        if !parts.is_empty() {
            e["hasPart"] = one_or_many(parts);
        }
        self.graph.push(e);
        self.top.push(format!("{rel}/"));
        Ok(id(&format!("{rel}/")))
    }

    fn formal(&mut self, pid: &str, name: &str, kind: &str) {
        if !self.formals.insert(pid.to_string()) {
            return;
        }
        self.graph.push(json!({
            "@id": pid,
            "@type": "FormalParameter",
            "name": name,
            "additionalType": kind,
            "conformsTo": id("https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"),
        }));
    }
}

/// What magpipe made of a sweep's points together (the multi-seed Table 2, the pooled
/// evaluation): files of no stage, computed from outputs of the chains' runs.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// A short name (`seeds-table`): the action's id and the folder `outputs/sweep/<name>/`.
    pub name: String,
    pub description: String,
    /// What it wrote: each file with its path inside the aggregate's folder.
    pub files: Vec<(PathBuf, String)>,
    /// What it read: the (stage key, output name) of runs in the chains.
    pub reads: Vec<(String, String)>,
}

/// The stage runs of one or more chains, each once (a sweep's points share their data stages),
/// in an order where every run comes after the runs it read from.
struct Runs<'a> {
    runs: Vec<(&'a LineageStage, &'a Lineage)>,
    /// Stage names run under more than one key: their runs' ids and folders carry the key.
    several: std::collections::BTreeSet<&'a str>,
}

impl<'a> Runs<'a> {
    fn of(chains: &'a [Lineage]) -> Self {
        let mut seen = std::collections::BTreeSet::new();
        let mut runs = Vec::new();
        let mut keys: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
        // Each chain is in pipeline order, so appending what a later chain adds keeps every
        // run after its inputs (shared upstream runs were appended first).
        for l in chains {
            for s in &l.stages {
                keys.entry(&s.stage).or_default().insert(&s.key);
                if seen.insert(s.key.as_str()) {
                    runs.push((s, l));
                }
            }
        }
        let several = keys
            .into_iter()
            .filter(|(_, k)| k.len() > 1)
            .map(|(s, _)| s)
            .collect();
        Runs { runs, several }
    }

    /// `""` or `-<key prefix>`: what tells apart two runs of one stage in ids.
    fn tag(&self, s: &LineageStage) -> String {
        if self.several.contains(s.stage.as_str()) {
            format!("-{}", &s.key[..12])
        } else {
            String::new()
        }
    }

    /// The crate folder of a run's outputs.
    fn folder(&self, s: &LineageStage) -> String {
        if self.several.contains(s.stage.as_str()) {
            format!("outputs/{}/{}", s.stage, &s.key[..12])
        } else {
            format!("outputs/{}", s.stage)
        }
    }

    fn first(&self) -> String {
        self.runs
            .iter()
            .map(|(s, _)| iso(&s.started))
            .min()
            .unwrap_or_default()
    }

    fn last(&self) -> String {
        self.runs
            .iter()
            .map(|(s, _)| iso(&s.finished))
            .max()
            .unwrap_or_default()
    }
}

/// One hash for the crate: the chain's lineage hash, or for a sweep the blake3 of its points'
/// lineage hashes (sorted, so the order the points were given in does not matter).
fn identifier(chains: &[Lineage]) -> String {
    if let [one] = chains {
        return format!("magpipe-lineage:{}", one.lineage_hash);
    }
    let mut hashes: Vec<&str> = chains.iter().map(|l| l.lineage_hash.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    format!(
        "magpipe-sweep:{}",
        blake3::hash(hashes.join("\n").as_bytes()).to_hex()
    )
}

/// Writes the crate of `chains` (one stage's chain, or the same stage's chain in every point of
/// a sweep) and of what was made of them together into `out` (which must not exist or be
/// empty): `pipeline` is the pipeline file the chains were planned from.
pub fn export(
    chains: &[Lineage],
    aggregates: &[Aggregate],
    store: &Store,
    pipeline: &Path,
    meta: &CrateMeta,
    contents: Contents,
    out: &Path,
) -> Result<Written, CrateError> {
    let Some(license) = meta.license.as_deref().filter(|s| !s.trim().is_empty()) else {
        return Err(CrateError::Refused(
            "a crate needs a licence (the RO-Crate profiles require one): pass --license \
             (an SPDX id such as CC-BY-4.0) or set export.license in .magpipe/config.yaml"
                .into(),
        ));
    };
    let Some(target) = chains.first().map(|l| l.target.clone()) else {
        return Err(CrateError::Refused("nothing to export".into()));
    };
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(CrateError::Refused(format!(
            "{} exists and is not empty: a crate is written into a new folder",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut b = Builder {
        out,
        graph: Vec::new(),
        top: Vec::new(),
        files: 0,
        bytes: 0,
        formals: Default::default(),
    };
    let url = meta.url.clone();
    let runs = Runs::of(chains);

    // The workflow and its language.
    b.file(
        pipeline,
        "pipeline.yaml",
        json!({"encodingFormat": "application/yaml"}),
    )?;
    // The File entity becomes the workflow: more types, the same id.
    let wf = b.graph.pop().expect("just added");

    let (raw_ids, read_by) = raw_entities(&mut b, chains, contents)?;
    let (produced, controls, mut run_ids, final_results) =
        run_entities(&mut b, store, &runs, &read_by, contents)?;
    let (tools, steps) = tool_entities(&mut b, &runs, url.as_deref());
    workflow_entities(&mut b, wf, &runs, tools, steps, url.as_deref());
    let mut results = final_results;
    for a in aggregates {
        let (action, made) = aggregate_entities(&mut b, a, &produced, &runs.last())?;
        run_ids.push(id(&action));
        results.extend(made);
    }
    whole_run_entities(&mut b, chains, &runs, raw_ids, controls, results);
    record_files(&mut b, &runs, store)?;
    let identifier = identifier(chains);
    let readme = readme(&target, chains.len(), &identifier);
    std::fs::write(out.join("README.md"), &readme).map_err(io(out))?;
    b.placed("README.md", json!({"about": id("./")}))?;
    let root = root_entities(
        &mut b,
        meta,
        license,
        &target,
        chains.len(),
        &identifier,
        &runs,
        run_ids,
    );
    write_metadata(b, root, out, identifier)
}

/// Every run of the chains: its entities, its outputs copied in, and the ControlAction that
/// orchestrated it. Returns each output's crate id by (stage key, output name), the control
/// actions, the runs' ids, and the outputs of each chain's last stage.
#[allow(clippy::type_complexity)]
fn run_entities(
    b: &mut Builder<'_>,
    store: &Store,
    runs: &Runs<'_>,
    read_by: &[(String, Value)],
    contents: Contents,
) -> Result<
    (
        BTreeMap<(String, String), Value>,
        Vec<Value>,
        Vec<Value>,
        Vec<Value>,
    ),
    CrateError,
> {
    // (stage key, output) → the crate id of that output, for the inputs of later runs.
    let mut produced: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut controls = Vec::new();
    let mut run_ids = Vec::new();
    let mut finals = Vec::new();
    for (s, l) in &runs.runs {
        let raw: Vec<Value> = read_by
            .iter()
            .filter(|(by, _)| *by == s.stage)
            .map(|(_, v)| v.clone())
            .collect();
        let (run, outs) = stage_entities(b, store, s, l, runs, &produced, &raw, contents)?;
        for (name, v) in outs {
            if s.stage == l.target && !finals.contains(&v) {
                finals.push(v.clone());
            }
            produced.insert((s.key.clone(), name), v);
        }
        let control = format!("#control-{}{}", s.stage, runs.tag(s));
        b.graph.push(json!({
            "@id": control,
            "@type": "ControlAction",
            "name": format!("orchestrate {}", s.stage),
            "instrument": id(&format!("#step-{}", s.stage)),
            "object": id(&run),
            "actionStatus": "http://schema.org/CompletedActionStatus",
        }));
        controls.push(id(&control));
        run_ids.push(id(&run));
    }
    // A chain's last stage may have left every output out (--no-models on a training).
    Ok((produced, controls, run_ids, finals))
}

/// Each stage's tool and step, once however many runs it had, with the parameters its runs
/// used; in the order the stages first ran.
fn tool_entities(
    b: &mut Builder<'_>,
    runs: &Runs<'_>,
    url: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    let mut names: Vec<&LineageStage> = Vec::new();
    for (s, _) in &runs.runs {
        if !names.iter().any(|n| n.stage == s.stage) {
            names.push(s);
        }
    }
    let (mut tools, mut steps) = (Vec::new(), Vec::new());
    for (pos, s) in names.iter().enumerate() {
        let (tool, step) = (format!("#stage-{}", s.stage), format!("#step-{}", s.stage));
        let mine = |prefix: &str, out: bool| -> Vec<Value> {
            b.formals
                .iter()
                .filter(|f| f.starts_with(prefix) && f.contains("-out-") == out)
                .map(|f| id(f))
                .collect()
        };
        let prefix = format!("#param-{}-", s.stage);
        let (formal_in, formal_out) = (mine(&prefix, false), mine(&prefix, true));
        let mut app = json!({
            "@id": tool,
            "@type": "SoftwareApplication",
            "name": s.stage,
            "description": format!("magpipe kind `{}` v{}", s.kind, s.kind_version),
            "softwareVersion": s.kind_version.to_string(),
        });
        if let Some(u) = url {
            app["url"] = json!(u);
        }
        if !formal_in.is_empty() {
            app["input"] = one_or_many(formal_in);
        }
        if !formal_out.is_empty() {
            app["output"] = one_or_many(formal_out);
        }
        b.graph.push(app);
        b.graph.push(json!({
            "@id": step,
            "@type": "HowToStep",
            "name": s.stage,
            "position": pos.to_string(),
            "workExample": id(&tool),
        }));
        tools.push(id(&tool));
        steps.push(id(&step));
    }
    (tools, steps)
}

/// A file made from the points of a sweep together: copied under `outputs/sweep/<name>/`, and
/// the action that made it from the runs' outputs, by magpipe. Returns the action's id and
/// the files' ids.
fn aggregate_entities(
    b: &mut Builder<'_>,
    a: &Aggregate,
    produced: &BTreeMap<(String, String), Value>,
    after: &str,
) -> Result<(String, Vec<Value>), CrateError> {
    let mut made = Vec::new();
    for (src, rel) in &a.files {
        let path = format!("outputs/sweep/{}/{rel}", a.name);
        made.push(b.file(src, &path, json!({}))?);
        b.top.push(path);
    }
    let objects: Vec<Value> = a
        .reads
        .iter()
        .filter_map(|k| produced.get(k).cloned())
        .collect();
    let action = format!("#aggregate-{}", a.name);
    // Made when the crate was written, from results that were all there by then.
    let now = iso(&crate::time::utc(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default(),
    ));
    let when = if now.as_str() < after {
        after.to_string()
    } else {
        now
    };
    let mut e = json!({
        "@id": action,
        "@type": "CreateAction",
        "name": a.name,
        "description": a.description,
        "instrument": id(MAGPIPE),
        "startTime": when,
        "endTime": when,
        "actionStatus": "http://schema.org/CompletedActionStatus",
    });
    if !objects.is_empty() {
        e["object"] = one_or_many(objects);
    }
    if !made.is_empty() {
        e["result"] = one_or_many(made.clone());
    }
    b.graph.push(e);
    Ok((action, made))
}

/// The run of the whole chain (or sweep), and magpipe orchestrating it.
fn whole_run_entities(
    b: &mut Builder<'_>,
    chains: &[Lineage],
    runs: &Runs<'_>,
    raw_ids: Vec<Value>,
    controls: Vec<Value>,
    results: Vec<Value>,
) {
    let (first, last) = (runs.first(), runs.last());
    let target = chains
        .first()
        .map(|l| l.target.as_str())
        .unwrap_or_default();
    let variants: Vec<&str> = chains.iter().filter_map(|l| l.variant.as_deref()).collect();
    let (name, description) = if chains.len() == 1 {
        (
            format!("magpipe run of {target}"),
            format!(
                "the chain of stage `{target}`{}",
                variants
                    .first()
                    .map(|v| format!(", variant {v}"))
                    .unwrap_or_default()
            ),
        )
    } else {
        (
            format!("magpipe sweep of {target} over {} points", chains.len()),
            format!(
                "the chain of stage `{target}` in each point of a sweep: {}",
                variants.join(", ")
            ),
        )
    };
    let mut whole = json!({
        "@id": "#run",
        "@type": "CreateAction",
        "name": name,
        "description": description,
        "instrument": id("pipeline.yaml"),
        "startTime": first,
        "endTime": last,
        "actionStatus": "http://schema.org/CompletedActionStatus",
        "result": one_or_many(results),
    });
    if !raw_ids.is_empty() {
        whole["object"] = one_or_many(raw_ids);
    }
    b.graph.push(whole);
    b.graph.push(json!({
        "@id": "#organize",
        "@type": "OrganizeAction",
        "name": "magpipe orchestration",
        "instrument": id(MAGPIPE),
        "object": one_or_many(controls),
        "result": id("#run"),
        "startTime": first,
        "endTime": last,
        "actionStatus": "http://schema.org/CompletedActionStatus",
    }));
}

/// The licence, the profiles, the people, and the root Dataset that names them all.
#[allow(clippy::too_many_arguments)]
fn root_entities(
    b: &mut Builder<'_>,
    meta: &CrateMeta,
    license: &str,
    target: &str,
    points: usize,
    identifier: &str,
    runs: &Runs<'_>,
    run_ids: Vec<Value>,
) -> Value {
    let license_id = if license.contains("://") {
        license.to_string()
    } else {
        format!("https://spdx.org/licenses/{license}")
    };
    b.graph.push(
        json!({"@id": license_id, "@type": "CreativeWork", "name": license, "identifier": license}),
    );
    for (pid, name) in PROFILES {
        b.graph.push(json!({"@id": pid, "@type": "CreativeWork", "name": name, "version": pid.rsplit('/').next().unwrap_or_default()}));
    }
    let mut authors = Vec::new();
    for (i, p) in meta.authors.iter().enumerate() {
        let pid = p.id.clone().unwrap_or_else(|| format!("#author-{i}"));
        let mut e = json!({"@id": pid, "@type": "Person", "name": p.name});
        if let Some(org) = &meta.publisher {
            e["affiliation"] = id(&org.url);
        }
        b.graph.push(e);
        authors.push(id(&pid));
    }
    // Who ran it: the first author, on every action not computed elsewhere (a pulled run's
    // agent is its signer; the exporter is the crate's author).
    if let Some(first) = authors.first() {
        for e in b.graph.iter_mut() {
            let t = e["@type"].as_str().unwrap_or_default();
            if (t == "CreateAction" || t == "OrganizeAction") && e.get("agent").is_none() {
                e["agent"] = first.clone();
            }
        }
    }
    let mut mentions = vec![id("#run")];
    mentions.extend(run_ids);
    let of = if points == 1 {
        format!("stage `{target}`")
    } else {
        format!("stage `{target}` in {points} sweep points")
    };
    let mut root = json!({
        "@id": "./",
        "@type": "Dataset",
        "name": format!("Provenance of {target}"),
        "description": meta.description.clone().unwrap_or_else(|| format!(
            "The results of magpipe {of} and the chain of stage runs that produced them, down to the raw files."
        )),
        "identifier": identifier,
        "datePublished": runs.last(),
        "license": id(&license_id),
        "conformsTo": PROFILES.iter().map(|(p, _)| id(p)).collect::<Vec<_>>(),
        "mainEntity": id("pipeline.yaml"),
        "mentions": mentions,
    });
    if !authors.is_empty() {
        root["author"] = one_or_many(authors);
    }
    if let Some(org) = &meta.publisher {
        root["publisher"] = id(&org.url);
        b.graph.push(
            json!({"@id": org.url, "@type": "Organization", "name": org.name, "url": org.url}),
        );
    }
    // Everything copied in is part of the root (a folder output's files through its Dataset).
    let mut parts = vec![id("pipeline.yaml"), id("README.md")];
    parts.extend(b.top.iter().map(|t| id(t)));
    root["hasPart"] = one_or_many(parts);
    root
}

/// `ro-crate-metadata.json`: the metadata descriptor, the root, then everything else.
fn write_metadata(
    b: Builder<'_>,
    root: Value,
    out: &Path,
    identifier: String,
) -> Result<Written, CrateError> {
    let mut graph = vec![
        json!({
            "@id": "ro-crate-metadata.json",
            "@type": "CreativeWork",
            "about": id("./"),
            "conformsTo": [id("https://w3id.org/ro/crate/1.1"), id("https://w3id.org/workflowhub/workflow-ro-crate/1.0")],
        }),
        root,
    ];
    graph.extend(b.graph);
    let doc = json!({
        "@context": [
            "https://w3id.org/ro/crate/1.1/context",
            {
                "sha256": "https://w3id.org/ro/terms/workflow-run#sha256",
                "environment": "https://w3id.org/ro/terms/workflow-run#environment",
            },
        ],
        "@graph": graph,
    });
    let path = out.join("ro-crate-metadata.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&doc).expect("serialises") + "\n",
    )
    .map_err(io(&path))?;
    Ok(Written {
        // The files listed with their digests, as `verify --crate` counts them (the metadata
        // file lists them and is not one of them).
        files: b.files,
        bytes: b.bytes,
        identifier,
    })
}

/// The raw files' entities, each once however many chains read it: a command stage's (its
/// program, code and lock file) copied in always, since the crate is the place to read what
/// ran; data files only with `--include-data`, else named, sized and hashed. Returns their
/// ids, and each with the stage that read it.
#[allow(clippy::type_complexity)]
fn raw_entities(
    b: &mut Builder<'_>,
    chains: &[Lineage],
    contents: Contents,
) -> Result<(Vec<Value>, Vec<(String, Value)>), CrateError> {
    let mut raw_ids = Vec::new();
    let mut read_by: Vec<(String, Value)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let files = chains
        .iter()
        .flat_map(|l| l.raw_files.iter().map(move |f| (l, f)));
    for (l, f) in files {
        if !seen.insert((f.read_by.clone(), f.name.clone(), f.blake3.clone())) {
            continue;
        }
        let pid = format!("#raw-{}", raw_ids.len());
        let code = l
            .stages
            .iter()
            .any(|s| s.stage == f.read_by && s.kind == "command");
        if code || contents.include_data {
            let folder = if code { "code" } else { "data" };
            let mut rel = format!("{folder}/{}", f.name);
            // Two chains may read one name with other bytes (a program edited between points
            // is another key): the first keeps the plain name.
            if b.out.join(&rel).exists() {
                rel = format!("{folder}/{}/{}", &f.blake3[..12], f.name);
            }
            let v = b.file(Path::new(&f.path), &rel, json!({}))?;
            b.top.push(rel);
            read_by.push((f.read_by.clone(), v.clone()));
            raw_ids.push(v);
        } else {
            b.graph.push(json!({
                "@id": pid,
                "@type": "CreativeWork",
                "name": f.name,
                "description": format!("raw input read by stage `{}` (not copied; --include-data copies it)", f.read_by),
                "contentSize": f.size.to_string(),
                "identifier": format!("blake3:{}", f.blake3),
            }));
            read_by.push((f.read_by.clone(), id(&pid)));
            raw_ids.push(id(&pid));
        }
    }

    Ok((raw_ids, read_by))
}

/// The store's own records of the runs, under `magpipe/records/`, so `magpipe import crate`
/// can rebuild a store from the crate.
fn record_files(b: &mut Builder<'_>, runs: &Runs<'_>, store: &Store) -> Result<(), CrateError> {
    for (st, _) in &runs.runs {
        let rec = store
            .record(&st.key)
            .map_err(|e| CrateError::Refused(e.to_string()))?
            .ok_or_else(|| {
                CrateError::Refused(format!("record {} is missing from the store", st.key))
            })?;
        let rel = format!("magpipe/records/{}.json", st.key);
        let path = b.out.join(&rel);
        std::fs::create_dir_all(path.parent().expect("in records/")).map_err(io(&path))?;
        // A pulled record keeps where it came from and its signature, so `import crate` gives
        // the signer back to `lineage` (the signature still verifies over the record without it).
        let bytes = serde_json::to_vec_pretty(&rec).expect("serialises");
        std::fs::write(&path, &bytes).map_err(io(&path))?;
        b.placed(&rel, json!({
            "description": format!("magpipe's record of the run of stage `{}` (key {})", st.stage, st.key),
        }))?;
        b.top.push(rel);
    }

    Ok(())
}

/// The pipeline file's entity made the main workflow (its steps and tools), its language, and
/// magpipe itself.
fn workflow_entities(
    b: &mut Builder<'_>,
    mut wf: Value,
    runs: &Runs<'_>,
    tools: Vec<Value>,
    steps: Vec<Value>,
    url: Option<&str>,
) {
    let newest = runs
        .runs
        .iter()
        .map(|(s, _)| *s)
        .max_by(|a, b| a.finished.cmp(&b.finished));
    let version = newest
        .map(|s| s.magpipe_version.clone())
        .unwrap_or_default();
    let o = wf.as_object_mut().expect("an entity");
    o.insert(
        "@type".into(),
        json!([
            "File",
            "SoftwareSourceCode",
            "ComputationalWorkflow",
            "HowTo"
        ]),
    );
    o.insert("name".into(), json!("pipeline.yaml"));
    // The file's content is its version: a pipeline has no release numbers.
    let version_of_file = o["identifier"]
        .as_str()
        .map(|h| h.chars().take("blake3:".len() + 16).collect::<String>())
        .unwrap_or_default();
    o.insert("version".into(), json!(version_of_file));
    o.insert("programmingLanguage".into(), id("#magpipe-pipeline-yaml"));
    o.insert(
        "conformsTo".into(),
        id("https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE"),
    );
    o.insert("hasPart".into(), one_or_many(tools));
    o.insert("step".into(), one_or_many(steps));
    if let Some(u) = url {
        o.insert("url".into(), json!(u));
    }
    b.graph.push(wf);
    b.graph.push(json!({
        "@id": "#magpipe-pipeline-yaml",
        "@type": "ComputerLanguage",
        "name": "magpipe pipeline YAML",
        "alternateName": "magpipe",
        "version": version,
    }));
    let mut app = json!({
        "@id": MAGPIPE,
        "@type": "SoftwareApplication",
        "name": "magpipe",
        "softwareVersion": version,
        "identifier": newest.map(|s| format!("git:{}", s.git_commit)).unwrap_or_default(),
    });
    if let Some(u) = url {
        app["url"] = json!(u);
    }
    b.graph.push(app);
}

/// One stage run: its parameter values, its outputs copied in, the facts of where it ran, and
/// its CreateAction. Its tool's FormalParameters are added once per stage (`Builder::formal`).
/// Returns the run's id and its outputs' crate ids by output name.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn stage_entities(
    b: &mut Builder<'_>,
    store: &Store,
    s: &LineageStage,
    chain: &Lineage,
    runs: &Runs<'_>,
    produced: &BTreeMap<(String, String), Value>,
    raw: &[Value],
    contents: Contents,
) -> Result<(String, Vec<(String, Value)>), CrateError> {
    let tag = runs.tag(s);
    let run = format!("#run-{}{tag}", s.stage);
    // The raw files this stage read (data, or a command stage's code) are its inputs too.
    let mut objects: Vec<Value> = raw.to_vec();
    for i in &s.inputs {
        // Within one chain a stage name is one run: its key says which output this is.
        let Some(from) = chain.stages.iter().find(|u| u.stage == i.from_stage) else {
            continue;
        };
        // An input left out of the crate (a model, with --no-models) has no entity to describe.
        let Some(v) = produced.get(&(from.key.clone(), i.output.clone())) else {
            continue;
        };
        let pid = format!("#param-{}-in-{}", s.stage, i.slot);
        let kind = if v["@id"].as_str().is_some_and(|x| x.ends_with('/')) {
            "Dataset"
        } else {
            "File"
        };
        b.formal(&pid, &i.slot, kind);
        add_example(&mut b.graph, v, &pid);
        objects.push(v.clone());
    }
    if let Some(o) = s.params.as_object() {
        for (name, v) in o {
            let pid = format!("#param-{}-{name}", s.stage);
            b.formal(&pid, name, param_type(v));
            let vid = format!("#pv-{}{tag}-{name}", s.stage);
            b.graph.push(json!({
                "@id": vid,
                "@type": "PropertyValue",
                "name": name,
                "value": match v { Value::String(t) => t.clone(), other => other.to_string() },
                "exampleOfWork": id(&pid),
            }));
            objects.push(id(&vid));
        }
    }
    let mut results = Vec::new();
    let mut outs = Vec::new();
    let folder = runs.folder(s);
    for (name, o) in &s.outputs {
        // Left out of the crate, it has no entity for a parameter to describe.
        if contents.no_models && name == "model" {
            continue;
        }
        let pid = format!("#param-{}-out-{name}", s.stage);
        b.formal(&pid, name, if o.dir { "Dataset" } else { "File" });
        let v = b.output(store, &folder, &s.stage, name, o, &pid)?;
        results.push(v.clone());
        outs.push((name.clone(), v));
    }
    let env = environment(b, s, &tag);
    let mut action = json!({
        "@id": run,
        "@type": "CreateAction",
        "name": format!("run of stage {}", s.stage),
        "description": s.summary,
        "instrument": id(&format!("#stage-{}", s.stage)),
        "identifier": s.key,
        "startTime": iso(&s.started),
        "endTime": iso(&s.finished),
        "actionStatus": "http://schema.org/CompletedActionStatus",
        "environment": one_or_many(env),
    });
    if !objects.is_empty() {
        action["object"] = one_or_many(objects);
    }
    if !results.is_empty() {
        action["result"] = one_or_many(results);
    }
    if let Some(agent) = signer_entity(b, s) {
        action["agent"] = agent;
    }
    b.graph.push(action);
    Ok((run, outs))
}

/// The Person who computed a pulled run: the key that signed its record (once per key), as
/// the run's agent. `None` for a run computed here (its agent is the crate's first author) or
/// pulled unsigned (nobody vouches for it; its environment says so).
fn signer_entity(b: &mut Builder<'_>, s: &LineageStage) -> Option<Value> {
    let key = s.pulled.as_ref()?.signer.as_deref()?;
    let pid = format!("#signer-{}", crate::remote::signer_id(key));
    if !b.graph.iter().any(|e| e["@id"] == pid.as_str()) {
        let name = key.rsplit_once(':').map_or(key, |(n, _)| n);
        b.graph.push(json!({
            "@id": pid,
            "@type": "Person",
            "name": name,
            "identifier": key,
            "description": "the holder of this ed25519 public key (name:base64), whose signature over the run's record verified when it was pulled",
        }));
    }
    Some(id(&pid))
}

/// What changed the floats of a run (its key, magpipe's commit, the runtime and the hardware),
/// as PropertyValues for its `environment`.
fn environment(b: &mut Builder<'_>, s: &LineageStage, tag: &str) -> Vec<Value> {
    let mut env = Vec::new();
    let mut facts: Vec<(String, Value)> = vec![
        ("key".into(), json!(s.key)),
        ("magpipe_git_commit".into(), json!(s.git_commit)),
    ];
    if let Some(rt) = s.runtime.as_object() {
        facts.extend(rt.iter().map(|(k, v)| (format!("runtime.{k}"), v.clone())));
    }
    if let Some(h) = s.hardware.as_ref().and_then(Value::as_object) {
        facts.extend(h.iter().map(|(k, v)| (format!("hardware.{k}"), v.clone())));
    }
    // A pulled result was computed elsewhere: by whom (the signer) and how it came here.
    if let Some(p) = &s.pulled {
        facts.push(("pulled.remote".into(), Value::String(p.remote.clone())));
        facts.push(("pulled.url".into(), Value::String(p.url.clone())));
        facts.push((
            "pulled.time".into(),
            Value::String(crate::time::utc(p.pulled_unix)),
        ));
        facts.push((
            "pulled.signer".into(),
            Value::String(p.signer.clone().unwrap_or_else(|| "unsigned".into())),
        ));
    }
    for (k, v) in facts {
        let eid = format!("#env-{}{tag}-{}", s.stage, k.replace('.', "-"));
        b.graph.push(json!({
            "@id": eid,
            "@type": "PropertyValue",
            "name": k,
            "value": match v { Value::String(t) => t, other => other.to_string() },
        }));
        env.push(id(&eid));
    }
    env
}

fn readme(target: &str, points: usize, identifier: &str) -> String {
    let what = if points == 1 {
        format!("every stage run that produced `{target}`")
    } else {
        format!(
            "every stage run that produced `{target}` in each of the {points} points of a sweep \
             (a run the points share appears once; what magpipe made of the points together, \
             under `outputs/sweep/`)"
        )
    };
    format!(
        "# Provenance of `{target}`\n\n\
         This folder is a Workflow Run RO-Crate (Provenance Run Crate 0.5) written by `magpipe \
         export crate`: `ro-crate-metadata.json` describes the workflow (`pipeline.yaml`), \
         {what}, with its inputs, parameter values, outputs and the machine facts that changed \
         its floats, and every raw file by name and hash.\n\n\
         Its identifier is `{identifier}`.\n\n\
         Every file lists its `sha256` in `ro-crate-metadata.json`, so `sha256sum` checks each \
         one without magpipe; any JSON-LD reader reads the rest. With magpipe, `magpipe verify \
         --crate .` re-hashes every file and follows the chain of actions.\n",
    )
}

/// What `verify --crate` found: every file the crate lists re-hashed, the chain of actions
/// followed.
#[derive(Debug, Clone, Default)]
pub struct CrateReport {
    pub files: usize,
    pub bytes: u64,
    pub actions: usize,
    pub problems: Vec<String>,
}

fn ids(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().flat_map(ids).collect(),
        Value::Object(o) => o
            .get("@id")
            .and_then(Value::as_str)
            .map(|s| vec![s.to_string()])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Checks a crate (a folder, or a zip of one) without a store: each listed file's size, sha256
/// and blake3, and that every object of every stage run is a param value, a raw file, or the
/// result of a run that ended before it started. A crate that cannot be read at all is an
/// error; what differs is a problem, one line each, naming the file or the action.
pub fn verify(path: &Path) -> Result<CrateReport, CrateError> {
    verify_dir(&archive::open(path)?.dir, path)
}

/// `shown` is the crate as the user named it (a zip's folder is a private one).
fn verify_dir(dir: &Path, shown: &Path) -> Result<CrateReport, CrateError> {
    let meta = dir.join("ro-crate-metadata.json");
    let named = shown.join("ro-crate-metadata.json");
    let text = std::fs::read(&meta).map_err(io(&named))?;
    let doc: Value = serde_json::from_slice(&text)
        .map_err(|e| CrateError::Refused(format!("{}: not JSON: {e}", named.display())))?;
    let Some(graph) = doc["@graph"].as_array() else {
        return Err(CrateError::Refused(format!(
            "{}: no @graph: not an RO-Crate",
            named.display()
        )));
    };
    let mut rep = CrateReport::default();
    for e in graph {
        let (Some(rel), Some(want)) = (e["@id"].as_str(), e["sha256"].as_str()) else {
            continue;
        };
        // Only paths inside the crate: an id that climbs out names no file of the crate.
        if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
            rep.problems
                .push(format!("{rel}: not a path inside the crate"));
            continue;
        }
        let path = dir.join(rel);
        if !path.is_file() {
            rep.problems.push(format!("{rel}: listed, but missing"));
            continue;
        }
        let (size, sha256, b3) = digests(&path)?;
        rep.files += 1;
        rep.bytes += size;
        if e["contentSize"].as_str() != Some(size.to_string().as_str()) {
            rep.problems.push(format!(
                "{rel}: {size} bytes, the crate says {}",
                e["contentSize"]
            ));
        }
        if sha256 != want {
            rep.problems.push(format!(
                "{rel}: sha256 {sha256}, the crate says {want}: the file was changed"
            ));
        }
        if let Some(said) = e["identifier"]
            .as_str()
            .and_then(|s| s.strip_prefix("blake3:"))
            && said != b3
        {
            rep.problems
                .push(format!("{rel}: blake3 {b3}, the crate says {said}"));
        }
    }
    chain(graph, &mut rep);
    Ok(rep)
}

/// Every stage run's objects come from somewhere: a param value, a raw file (an object of the
/// whole run), or a run that ended no later than this one started.
fn chain(graph: &[Value], rep: &mut CrateReport) {
    let by_id: BTreeMap<&str, &Value> = graph
        .iter()
        .filter_map(|e| e["@id"].as_str().map(|i| (i, e)))
        .collect();
    let raw: Vec<String> = by_id
        .get("#run")
        .map(|r| ids(&r["object"]))
        .unwrap_or_default();
    let runs: Vec<&Value> = graph
        .iter()
        .filter(|e| e["@type"] == "CreateAction" && e["@id"] != "#run")
        .collect();
    // output id → (the run that made it, when it ended)
    let mut made: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    for r in &runs {
        for o in ids(&r["result"]) {
            let run = r["@id"].as_str().unwrap_or_default();
            let end = r["endTime"].as_str().unwrap_or_default();
            if let Some((other, _)) = made.insert(o.clone(), (run, end)) {
                rep.problems
                    .push(format!("{o}: the result of both {other} and {run}"));
            }
        }
    }
    for r in &runs {
        rep.actions += 1;
        let run = r["@id"].as_str().unwrap_or_default();
        let start = r["startTime"].as_str().unwrap_or_default();
        for o in ids(&r["object"]) {
            let is_value = by_id
                .get(o.as_str())
                .is_some_and(|e| e["@type"] == "PropertyValue");
            if is_value || raw.contains(&o) {
                continue;
            }
            match made.get(&o) {
                // ISO times with one offset compare as strings.
                Some((_, end)) if *end <= start => {}
                Some((by, _)) => rep.problems.push(format!(
                    "{run}: its input {o} is the result of {by}, which ended after {run} started"
                )),
                None => rep.problems.push(format!(
                    "{run}: its input {o} is neither a raw file nor the result of an earlier run"
                )),
            }
        }
    }
}

/// What `import crate` brought into a store.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub records: usize,
    pub objects: usize,
    /// Records left out because the crate lacks their outputs (`--no-models`), with the reason.
    pub skipped: Vec<String>,
}

/// Brings a crate's records and outputs into `store`, so `magpipe audit` can re-execute the
/// chain: the crate must verify clean first; each record's key must be the hash of its
/// pre-image and its paths plain; each output enters the store re-hashed, and its record only
/// after all of its outputs. `path` is a crate folder or a zip of one.
pub fn import(path: &Path, store: &Store) -> Result<Imported, CrateError> {
    let opened = archive::open(path)?;
    let dir = opened.dir.as_path();
    let rep = verify_dir(dir, path)?;
    if let Some(first) = rep.problems.first() {
        return Err(CrateError::Refused(format!(
            "{}: the crate does not verify ({} problems; the first: {first}); `magpipe verify --crate` lists them",
            path.display(),
            rep.problems.len()
        )));
    }
    let records_dir = dir.join("magpipe/records");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&records_dir)
        .map_err(io(&records_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    let mut records = Vec::new();
    for file in &names {
        // Named as the user knows the crate, not by where a zip was unpacked.
        let shown = format!(
            "{}: {}",
            path.display(),
            file.strip_prefix(dir).unwrap_or(file).display()
        );
        let text = std::fs::read(file).map_err(io(file))?;
        let rec: crate::store::Record = serde_json::from_slice(&text)
            .map_err(|e| CrateError::Refused(format!("{shown}: not a magpipe record: {e}")))?;
        rec.check_paths()
            .map_err(|e| CrateError::Refused(format!("{shown}: {e}")))?;
        if rec.preimage.key() != rec.key {
            return Err(CrateError::Refused(format!(
                "{shown}: its key {} is not the hash of its pre-image ({}): the record was changed",
                rec.key,
                rec.preimage.key()
            )));
        }
        records.push(rec);
    }
    let mut done = Imported::default();
    for rec in records {
        // A stage run under several keys (a sweep) has its outputs in a folder per key.
        let tagged = dir.join("outputs").join(&rec.stage).join(&rec.key[..12]);
        let folder = if tagged.is_dir() {
            tagged
        } else {
            dir.join("outputs").join(&rec.stage)
        };
        let src = |o: &OutputRecord| folder.join(&o.file);
        if let Some((name, _)) = rec.outputs.iter().find(|(_, o)| !src(o).exists()) {
            done.skipped.push(format!(
                "{} (key {}): its output `{name}` is not in the crate",
                rec.stage,
                &rec.key[..12]
            ));
            continue;
        }
        for (name, o) in &rec.outputs {
            let got = if o.dir {
                store.commit_dir(&src(o), &o.file)
            } else {
                store.commit_object(&src(o), &o.file)
            }
            .map_err(|e| CrateError::Refused(e.to_string()))?;
            if got.hash != o.hash {
                return Err(CrateError::Refused(format!(
                    "{}: output `{name}` hashes to {}, its record says {}",
                    rec.stage, got.hash, o.hash
                )));
            }
            done.objects += 1;
        }
        store
            .write_record(&rec)
            .map_err(|e| CrateError::Refused(e.to_string()))?;
        done.records += 1;
    }
    Ok(done)
}
