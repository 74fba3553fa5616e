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
        stage: &str,
        name: &str,
        o: &OutputRecord,
        param: &str,
    ) -> Result<Value, CrateError> {
        let src = store.object_path(o);
        let rel = format!("outputs/{stage}/{}", o.file);
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

    fn formal(&mut self, pid: &str, name: &str, kind: &str) -> Value {
        self.graph.push(json!({
            "@id": pid,
            "@type": "FormalParameter",
            "name": name,
            "additionalType": kind,
            "conformsTo": id("https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"),
        }));
        id(pid)
    }
}

/// Writes the crate of `l` into `out` (which must not exist or be empty): `pipeline` is the
/// pipeline file the chain was planned from.
pub fn export(
    l: &Lineage,
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
    };
    let url = meta.url.clone();

    // The workflow and its language.
    b.file(
        pipeline,
        "pipeline.yaml",
        json!({"encodingFormat": "application/yaml"}),
    )?;
    // The File entity becomes the workflow: more types, the same id.
    let wf = b.graph.pop().expect("just added");

    let (raw_ids, read_by) = raw_entities(&mut b, l, contents)?;

    let mut steps = Vec::new();
    let mut tools = Vec::new();
    let mut runs = Vec::new();
    let mut controls = Vec::new();
    // (stage, output) → the crate id of that output, for the inputs of later stages.
    let mut produced: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut final_results = Vec::new();
    for (pos, s) in l.stages.iter().enumerate() {
        let raw: Vec<Value> = read_by
            .iter()
            .filter(|(by, _)| *by == s.stage)
            .map(|(_, v)| v.clone())
            .collect();
        let (run, tool, step, outs) = stage_entities(
            &mut b,
            store,
            s,
            pos,
            &produced,
            &raw,
            contents,
            url.as_deref(),
        )?;
        for (name, v) in outs {
            if pos + 1 == l.stages.len() {
                final_results.push(v.clone());
            }
            produced.insert((s.stage.clone(), name), v);
        }
        steps.push(id(&step));
        tools.push(id(&tool));
        let control = format!("#control-{}", s.stage);
        b.graph.push(json!({
            "@id": control,
            "@type": "ControlAction",
            "name": format!("orchestrate {}", s.stage),
            "instrument": id(&step),
            "object": id(&run),
            "actionStatus": "http://schema.org/CompletedActionStatus",
        }));
        controls.push(id(&control));
        runs.push(id(&run));
    }

    workflow_entities(&mut b, wf, l, tools, steps, url.as_deref());

    // The run of the whole chain, and magpipe orchestrating it.
    let first = l
        .stages
        .first()
        .map(|s| iso(&s.started))
        .unwrap_or_default();
    let last = l
        .stages
        .iter()
        .map(|s| iso(&s.finished))
        .max()
        .unwrap_or_default();
    let mut whole = json!({
        "@id": "#run",
        "@type": "CreateAction",
        "name": format!("magpipe run of {}", l.target),
        "description": format!("the chain of stage `{}`{}", l.target, l.variant.as_ref().map(|v| format!(", variant {v}")).unwrap_or_default()),
        "instrument": id("pipeline.yaml"),
        "startTime": first,
        "endTime": last,
        "actionStatus": "http://schema.org/CompletedActionStatus",
        "result": one_or_many(final_results),
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

    record_files(&mut b, l, store)?;

    // README, licence, people, profiles, and the root.
    let readme = readme(l);
    std::fs::write(out.join("README.md"), &readme).map_err(io(out))?;
    b.placed("README.md", json!({"about": id("./")}))?;
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
    // Who ran it: the first author, on every action.
    if let Some(first) = authors.first() {
        for e in b.graph.iter_mut() {
            let t = e["@type"].as_str().unwrap_or_default();
            if t == "CreateAction" || t == "OrganizeAction" {
                e["agent"] = first.clone();
            }
        }
    }
    let mut mentions = vec![id("#run")];
    mentions.extend(runs.iter().cloned());
    let mut root = json!({
        "@id": "./",
        "@type": "Dataset",
        "name": format!("Provenance of {}", l.target),
        "description": meta.description.clone().unwrap_or_else(|| format!(
            "The results of magpipe stage `{}` and the chain of stage runs that produced them, down to the raw files.",
            l.target
        )),
        "identifier": format!("magpipe-lineage:{}", l.lineage_hash),
        "datePublished": last,
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
        files: b.files + 2,
        bytes: b.bytes,
        identifier: l.lineage_hash.clone(),
    })
}

/// The raw files' entities: a command stage's (its program, code and lock file) copied in
/// always, since the crate is the place to read what ran; data files only with
/// `--include-data`, else named, sized and hashed. Returns their ids, and each with the stage
/// that read it.
#[allow(clippy::type_complexity)]
fn raw_entities(
    b: &mut Builder<'_>,
    l: &Lineage,
    contents: Contents,
) -> Result<(Vec<Value>, Vec<(String, Value)>), CrateError> {
    let mut raw_ids = Vec::new();
    let mut read_by: Vec<(String, Value)> = Vec::new();
    for (i, f) in l.raw_files.iter().enumerate() {
        let pid = format!("#raw-{i}");
        let code = l
            .stages
            .iter()
            .any(|s| s.stage == f.read_by && s.kind == "command");
        if code || contents.include_data {
            let rel = format!("{}/{}", if code { "code" } else { "data" }, f.name);
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

/// The store's own records of the chain, under `magpipe/records/`, so `magpipe import crate`
/// can rebuild a store from the crate.
fn record_files(b: &mut Builder<'_>, l: &Lineage, store: &Store) -> Result<(), CrateError> {
    for st in &l.stages {
        let rec = store
            .record(&st.key)
            .map_err(|e| CrateError::Refused(e.to_string()))?
            .ok_or_else(|| {
                CrateError::Refused(format!("record {} is missing from the store", st.key))
            })?;
        let rel = format!("magpipe/records/{}.json", st.key);
        let path = b.out.join(&rel);
        std::fs::create_dir_all(path.parent().expect("in records/")).map_err(io(&path))?;
        let mut rec = rec;
        // Where this store pulled it from is this store's business, not the crate's.
        rec.pulled = None;
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
    l: &Lineage,
    tools: Vec<Value>,
    steps: Vec<Value>,
    url: Option<&str>,
) {
    let version = l
        .stages
        .last()
        .map(|s| s.magpipe_version.clone())
        .unwrap_or_default();
    // The file's content is its version: a pipeline has no release numbers.
    let version_of_file = wf["identifier"]
        .as_str()
        .map(|h| h.chars().take("blake3:".len() + 16).collect::<String>())
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
        "identifier": l.stages.last().map(|s| format!("git:{}", s.git_commit)).unwrap_or_default(),
    });
    if let Some(u) = url {
        app["url"] = json!(u);
    }
    b.graph.push(app);
}

/// A stage's tool, step and run; returns their ids and its outputs' crate ids by output name.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn stage_entities(
    b: &mut Builder<'_>,
    store: &Store,
    s: &LineageStage,
    pos: usize,
    produced: &BTreeMap<(String, String), Value>,
    raw: &[Value],
    contents: Contents,
    url: Option<&str>,
) -> Result<(String, String, String, Vec<(String, Value)>), CrateError> {
    let (tool, step, run) = (
        format!("#stage-{}", s.stage),
        format!("#step-{}", s.stage),
        format!("#run-{}", s.stage),
    );
    let mut formal_in = Vec::new();
    let mut formal_out = Vec::new();
    // The raw files this stage read (data, or a command stage's code) are its inputs too.
    let mut objects: Vec<Value> = raw.to_vec();
    for i in &s.inputs {
        // An input left out of the crate (a model, with --no-models) has no entity to describe.
        let Some(v) = produced.get(&(i.from_stage.clone(), i.output.clone())) else {
            continue;
        };
        let pid = format!("#param-{}-in-{}", s.stage, i.slot);
        let kind = if v["@id"].as_str().is_some_and(|x| x.ends_with('/')) {
            "Dataset"
        } else {
            "File"
        };
        formal_in.push(b.formal(&pid, &i.slot, kind));
        add_example(&mut b.graph, v, &pid);
        objects.push(v.clone());
    }
    if let Some(o) = s.params.as_object() {
        for (name, v) in o {
            let pid = format!("#param-{}-{name}", s.stage);
            formal_in.push(b.formal(&pid, name, param_type(v)));
            let vid = format!("#pv-{}-{name}", s.stage);
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
    for (name, o) in &s.outputs {
        // Left out of the crate, it has no entity for a parameter to describe.
        if contents.no_models && name == "model" {
            continue;
        }
        let pid = format!("#param-{}-out-{name}", s.stage);
        formal_out.push(b.formal(&pid, name, if o.dir { "Dataset" } else { "File" }));
        let v = b.output(store, &s.stage, name, o, &pid)?;
        results.push(v.clone());
        outs.push((name.clone(), v));
    }
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
    // What changed the floats, as the environment of the run.
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
    for (k, v) in facts {
        let eid = format!("#env-{}-{}", s.stage, k.replace('.', "-"));
        b.graph.push(json!({
            "@id": eid,
            "@type": "PropertyValue",
            "name": k,
            "value": match v { Value::String(t) => t, other => other.to_string() },
        }));
        env.push(id(&eid));
    }
    let mut action = json!({
        "@id": run,
        "@type": "CreateAction",
        "name": format!("run of stage {}", s.stage),
        "description": s.summary,
        "instrument": id(&tool),
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
    b.graph.push(action);
    Ok((run, tool, step, outs))
}

fn readme(l: &Lineage) -> String {
    format!(
        "# Provenance of `{target}`\n\n\
         This folder is a Workflow Run RO-Crate (Provenance Run Crate 0.5) written by `magpipe \
         export crate`: `ro-crate-metadata.json` describes the workflow (`pipeline.yaml`), every \
         stage run that produced `{target}` with its inputs, parameter values, outputs and the \
         machine facts that changed its floats, and every raw file by name and hash.\n\n\
         Its identifier is the chain's lineage hash, `{hash}`.\n\n\
         Every file lists its `sha256` in `ro-crate-metadata.json`, so `sha256sum` checks each \
         one without magpipe; any JSON-LD reader reads the rest. With magpipe, `magpipe verify \
         --crate .` re-hashes every file and follows the chain of actions.\n",
        target = l.target,
        hash = l.lineage_hash
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

/// Checks a crate folder without a store: each listed file's size, sha256 and blake3, and that
/// every object of every stage run is a param value, a raw file, or the result of a run that
/// ended before it started. A crate that cannot be read at all is an error; what differs is a
/// problem, one line each, naming the file or the action.
pub fn verify(dir: &Path) -> Result<CrateReport, CrateError> {
    let meta = dir.join("ro-crate-metadata.json");
    let text = std::fs::read(&meta).map_err(io(&meta))?;
    let doc: Value = serde_json::from_slice(&text)
        .map_err(|e| CrateError::Refused(format!("{}: not JSON: {e}", meta.display())))?;
    let Some(graph) = doc["@graph"].as_array() else {
        return Err(CrateError::Refused(format!(
            "{}: no @graph: not an RO-Crate",
            meta.display()
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
/// after all of its outputs.
pub fn import(dir: &Path, store: &Store) -> Result<Imported, CrateError> {
    let rep = verify(dir)?;
    if let Some(first) = rep.problems.first() {
        return Err(CrateError::Refused(format!(
            "{}: the crate does not verify ({} problems; the first: {first}); `magpipe verify --crate` lists them",
            dir.display(),
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
    for path in &names {
        let text = std::fs::read(path).map_err(io(path))?;
        let rec: crate::store::Record = serde_json::from_slice(&text).map_err(|e| {
            CrateError::Refused(format!("{}: not a magpipe record: {e}", path.display()))
        })?;
        rec.check_paths()
            .map_err(|e| CrateError::Refused(format!("{}: {e}", path.display())))?;
        if rec.preimage.key() != rec.key {
            return Err(CrateError::Refused(format!(
                "{}: its key {} is not the hash of its pre-image ({}): the record was changed",
                path.display(),
                rec.key,
                rec.preimage.key()
            )));
        }
        records.push(rec);
    }
    let mut done = Imported::default();
    for rec in records {
        let src = |o: &OutputRecord| dir.join("outputs").join(&rec.stage).join(&o.file);
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
