//! The engine's contract, apart from the study: two toy kinds defined here are registered into
//! the engine and run through what `magpipe run`, `status --explain`, `lineage`, `verify`,
//! `audit`, `gc`, `compare`, a sweep with seeds and the Slurm executor do, with no SolARED data
//! and no study code linked.
//!
//! This is its own program (`harness = false`): the Slurm executor runs each stage as
//! `<this program> stage-job JOB.json` on the compute node, so `main` is also the job side, as
//! the `magpipe` binary is for the study's kinds. The Slurm scenario needs a running Slurm
//! (`make test` starts one); without it it fails with the reason, it never skips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use magpipe_engine::Registry;
use magpipe_engine::events::{Event, Sink};
use magpipe_engine::exec::{self, Freshness, Outcome, RunOptions};
use magpipe_engine::executor::Choice;
use magpipe_engine::kind::{
    Context, Finished, InputSlot, Kind, Metric, Output, OutputSlot, ParamError, Report, Source,
    StageError, Typed, TypedKind,
};
use magpipe_engine::plan::Plan;
use magpipe_engine::spec::{RawSpec, SlurmConfig};
use magpipe_engine::store::Store;
use magpipe_engine::{compare, provenance, sweep};
use serde::{Deserialize, Serialize};
use serde_json::json;

// ---- the toy kinds ----------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
struct ReadParams {
    /// A raw file outside the store.
    path: String,
    /// How many times the text is repeated.
    repeat: u32,
}

/// Reads a raw file (a source: its content hash enters the key) and writes it `repeat` times.
struct ToyRead;

impl TypedKind for ToyRead {
    type Params = ReadParams;
    const NAME: &'static str = "toy_read";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Reads a text file.";
    const INPUTS: &'static [InputSlot] = &[];
    const OUTPUTS: &'static [OutputSlot] = &[OutputSlot {
        name: "text",
        file: "text.txt",
        doc: "the text",
    }];

    fn check(p: &ReadParams) -> Result<(), ParamError> {
        if p.path.is_empty() {
            return Err(ParamError::Invalid {
                name: "path".into(),
                msg: "name the file to read".into(),
            });
        }
        Ok(())
    }
    fn key_params(p: &ReadParams) -> serde_json::Value {
        // The location stays out of the key; the file's content is in it as a source.
        json!({ "repeat": p.repeat })
    }
    fn sources(p: &ReadParams) -> Result<Vec<Source>, StageError> {
        Ok(vec![Source::data("raw.txt", PathBuf::from(&p.path))])
    }
    fn run(p: &ReadParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let path = Path::new(&p.path);
        let text = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
        let out = ctx.output("text.txt");
        std::fs::write(&out, text.repeat(p.repeat.max(1) as usize))
            .map_err(|e| StageError::io(&out, e))?;
        Ok(Report {
            summary: format!("{} bytes", text.len()),
            ..Report::default()
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
struct CountParams {
    /// One output per letter: `count_<letter>`.
    letters: Vec<String>,
    seed: u64,
}

/// Counts letters of its input: its outputs follow from its params.
struct ToyCount;

impl TypedKind for ToyCount {
    type Params = CountParams;
    const NAME: &'static str = "toy_count";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Counts letters.";
    const INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "text",
        doc: "a text",
    }];
    const OUTPUTS: &'static [OutputSlot] = &[];
    const SEED_PARAM: Option<&'static str> = Some("seed");

    fn outputs(p: &CountParams) -> Vec<Output> {
        p.letters
            .iter()
            .map(|l| {
                Output::file(
                    format!("count_{l}"),
                    format!("{l}.txt"),
                    format!("how many `{l}`"),
                )
            })
            .collect()
    }
    fn run(p: &CountParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let input = ctx.input("text")?;
        let text = std::fs::read_to_string(input).map_err(|e| StageError::io(input, e))?;
        let mut total = 0;
        for (i, l) in p.letters.iter().enumerate() {
            let n = text.matches(l.as_str()).count();
            total += n;
            let out = ctx.output(&format!("{l}.txt"));
            std::fs::write(&out, format!("{n} (seed {})\n", p.seed))
                .map_err(|e| StageError::io(&out, e))?;
            ctx.events
                .progress(i as u64 + 1, p.letters.len() as u64, "letters");
        }
        Ok(Report {
            summary: format!("{total} letters"),
            stdout: None,
            facts: json!({ "total": total }),
        })
    }
    fn metrics(p: &CountParams, run: &Finished<'_>) -> Vec<Metric> {
        let mut m = vec![Metric::summary(
            "letters counted",
            run.facts["total"].to_string(),
        )];
        for l in &p.letters {
            if let Some(text) = run
                .outputs
                .get(&format!("count_{l}"))
                .and_then(|p| std::fs::read_to_string(p).ok())
            {
                m.push(Metric::detail(
                    format!("count {l}"),
                    text.trim().to_string(),
                ));
            }
        }
        m
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
struct ChunkParams {
    /// Characters per chunk file.
    size: usize,
    /// Enters the key but not the output: changing it reruns the stage to the same folder.
    note: String,
}

/// Cuts its input into a folder of chunk files, with a subfolder: a folder output.
struct ToyChunks;

impl TypedKind for ToyChunks {
    type Params = ChunkParams;
    const NAME: &'static str = "toy_chunks";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Cuts a text into a folder of chunks.";
    const INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "text",
        doc: "a text",
    }];
    const OUTPUTS: &'static [OutputSlot] = &[];

    fn outputs(_p: &ChunkParams) -> Vec<Output> {
        vec![Output::dir(
            "chunks",
            "chunks",
            "the chunks, and meta/count.txt",
        )]
    }
    fn run(p: &ChunkParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let input = ctx.input("text")?;
        let text = std::fs::read_to_string(input).map_err(|e| StageError::io(input, e))?;
        let dir = ctx.output("chunks");
        let meta = dir.join("meta");
        std::fs::create_dir_all(&meta).map_err(|e| StageError::io(&meta, e))?;
        let chars: Vec<char> = text.chars().collect();
        let chunks: Vec<String> = chars
            .chunks(p.size.max(1))
            .map(|c| c.iter().collect())
            .collect();
        for (i, c) in chunks.iter().enumerate() {
            let f = dir.join(format!("{i:03}.txt"));
            std::fs::write(&f, c).map_err(|e| StageError::io(&f, e))?;
        }
        let f = meta.join("count.txt");
        std::fs::write(&f, chunks.len().to_string()).map_err(|e| StageError::io(&f, e))?;
        Ok(Report {
            summary: format!("{} chunks", chunks.len()),
            ..Report::default()
        })
    }
}

/// Joins a folder of chunks back into one file.
struct ToyJoin;

impl TypedKind for ToyJoin {
    type Params = ReadParams;
    const NAME: &'static str = "toy_join";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Joins a folder of chunks.";
    const INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "chunks",
        doc: "a folder of chunks",
    }];
    const OUTPUTS: &'static [OutputSlot] = &[OutputSlot {
        name: "joined",
        file: "joined.txt",
        doc: "the text again",
    }];

    fn run(_p: &ReadParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let dir = ctx.input("chunks")?;
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| StageError::io(dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        let mut text = String::new();
        for n in &names {
            text.push_str(&std::fs::read_to_string(n).map_err(|e| StageError::io(n, e))?);
        }
        let out = ctx.output("joined.txt");
        std::fs::write(&out, &text).map_err(|e| StageError::io(&out, e))?;
        Ok(Report {
            summary: format!("{} chunks joined", names.len()),
            ..Report::default()
        })
    }
}

fn registry() -> Registry {
    let kinds: Vec<Arc<dyn Kind>> = vec![
        Arc::new(Typed::<ToyRead>::default()),
        Arc::new(Typed::<ToyCount>::default()),
        Arc::new(Typed::<ToyChunks>::default()),
        Arc::new(Typed::<ToyJoin>::default()),
    ];
    let mut r = Registry::of(kinds).expect("distinct kinds");
    r.register(Arc::new(magpipe_engine::command::CommandKind))
        .expect("no toy kind is named `command`");
    r.register_contract(Arc::new(ToyLines))
        .expect("one toy contract");
    r
}

/// A toy artifact contract: a text file of integers, one per line.
struct ToyLines;

impl magpipe_engine::contract::Contract for ToyLines {
    fn name(&self) -> &'static str {
        "toy.lines/1"
    }
    fn doc(&self) -> &'static str {
        "integers, one per line"
    }
    fn format(&self) -> &'static str {
        "text"
    }
    fn fields(&self) -> &'static [magpipe_engine::contract::Field] {
        &[]
    }
    fn check(&self, path: &Path, _peers: &magpipe_engine::contract::Peers) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        for (i, l) in text.lines().enumerate() {
            l.trim()
                .parse::<i64>()
                .map_err(|_| format!("line {} is not an integer: {l:?}", i + 1))?;
        }
        Ok(())
    }
}

// ---- helpers ----------------------------------------------------------------------------------

#[derive(Default)]
struct Events(Mutex<Vec<Event>>);

impl Sink for Events {
    fn emit(&self, e: Event) {
        self.0.lock().expect("events").push(e);
    }
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(text: &str) -> Project {
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("raw.txt"), text).expect("raw file");
        Project { dir }
    }
    fn raw(&self) -> PathBuf {
        self.dir.path().join("raw.txt")
    }
    fn spec(&self, letters: &str, extra: &str) -> RawSpec {
        let yaml = format!(
            "stages:\n  read:\n    kind: toy_read\n    params: {{path: {}, repeat: 2}}\n  count:\n    kind: toy_count\n    inputs: {{text: read.text}}\n    params: {{letters: [{letters}]}}\n{extra}",
            self.raw().display()
        );
        RawSpec::parse(&self.dir.path().join("pipeline.yaml"), &yaml).expect("toy pipeline parses")
    }
    fn plan(&self, letters: &str) -> Plan {
        Plan::build(&self.spec(letters, ""), &registry(), None, &[]).expect("toy plan builds")
    }
    fn store(&self, name: &str) -> Store {
        Store::open(&self.dir.path().join(name))
    }
}

fn run(plan: &Plan, store: &Store, executor: Choice) -> Vec<(String, &'static str)> {
    let opts = RunOptions {
        jobs: 2,
        executor,
        ..RunOptions::default()
    };
    let res = exec::run(plan, store, &opts, &Events::default()).expect("the run starts");
    res.outcomes
        .iter()
        .map(|(i, o)| {
            let what = match o {
                Outcome::Ran(..) => "ran",
                Outcome::Cached(_) => "cached",
                Outcome::Pulled(_) => "pulled",
                Outcome::Failed(f) => panic!("{f}"),
                Outcome::Skipped(why) => panic!("skipped: {why}"),
            };
            (plan.stages[*i].name.clone(), what)
        })
        .collect()
}

fn outcomes(pairs: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    pairs.iter().map(|(s, o)| (s.to_string(), *o)).collect()
}

/// output name → content hash of a stage's fresh record.
fn hashes(plan: &Plan, store: &Store, stage: &str) -> BTreeMap<String, String> {
    let i = plan.index(stage).expect("stage");
    match exec::status(plan, store, &plan.select(&[stage.into()]).unwrap())
        .unwrap()
        .into_iter()
        .find(|(j, _)| *j == i)
        .map(|(_, f)| f)
    {
        Some(Freshness::Fresh(r)) => r
            .outputs
            .iter()
            .map(|(n, o)| (n.clone(), o.hash.clone()))
            .collect(),
        _ => panic!("`{stage}` is not fresh"),
    }
}

fn why_stale(plan: &Plan, store: &Store) -> BTreeMap<String, Vec<String>> {
    exec::status(plan, store, &plan.order)
        .unwrap()
        .into_iter()
        .filter_map(|(i, f)| match f {
            Freshness::Fresh(_) => None,
            Freshness::Stale { why, .. } => Some((
                plan.stages[i].name.clone(),
                why.iter().map(|w| w.to_string()).collect(),
            )),
        })
        .collect()
}

// ---- the scenarios ----------------------------------------------------------------------------

/// The engine's own `command` kind and a contract, with no study linked: a shell line that
/// writes what its contract says is committed; one that does not is refused and leaves nothing.
fn a_typed_kind_describes_its_params_from_the_struct() {
    // What `magpipe kinds --format md` builds the reference from: types and doc comments.
    let schema = Typed::<ToyRead>::default().params_schema();
    let repeat = &schema["properties"]["repeat"];
    assert_eq!(repeat["type"], "integer", "{schema}");
    assert_eq!(
        repeat["description"],
        "How many times the text is repeated."
    );
    assert_eq!(schema["properties"]["path"]["type"], "string");
    let command = magpipe_engine::command::CommandKind.params_schema();
    assert!(command["properties"]["sandbox"].is_object(), "{command}");
}

fn a_command_stage_and_its_contract_need_no_study() {
    let p = Project::new("abc\n");
    let yaml = |line: &str| {
        format!(
            "stages:\n  nums:\n    kind: command\n    shell: \"{line}\"\n    outputs: {{n: {{path: n.txt, schema: toy.lines/1}}}}\n"
        )
    };
    let spec = |line: &str| {
        RawSpec::parse(&p.dir.path().join("pipeline.yaml"), &yaml(line)).expect("parses")
    };
    let store = p.store("store");
    let good = Plan::build(&spec("seq 3 > {outputs.n}"), &registry(), None, &[]).expect("plan");
    assert_eq!(
        run(&good, &store, Choice::Local),
        outcomes(&[("nums", "ran")])
    );
    assert_eq!(
        run(&good, &store, Choice::Local),
        outcomes(&[("nums", "cached")])
    );
    let bad = Plan::build(&spec("echo x > {outputs.n}"), &registry(), None, &[]).expect("plan");
    let before = std::fs::read_dir(store.root.join("records"))
        .unwrap()
        .count();
    let res = exec::run(&bad, &store, &RunOptions::default(), &Events::default()).unwrap();
    match &res.outcomes[0].1 {
        Outcome::Failed(f) => assert!(
            f.to_string()
                .contains("output n: line 1 is not an integer: \"x\" (toy.lines/1)"),
            "{f}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(store.root.join("records"))
            .unwrap()
            .count(),
        before
    );
    // A contract nobody registered is a plan error.
    let unknown = yaml("true").replace("toy.lines/1", "toy.nothing/1");
    let e = Plan::build(
        &RawSpec::parse(&p.dir.path().join("pipeline.yaml"), &unknown).unwrap(),
        &registry(),
        None,
        &[],
    )
    .err()
    .expect("refused");
    assert!(
        e.to_string()
            .contains("unknown contract `toy.nothing/1` (known: toy.lines/1)"),
        "{e}"
    );
}

fn outputs_are_declared_at_plan_time() {
    let p = Project::new("abracadabra");
    let plan = p.plan("a, b");
    let count = &plan.stages[plan.index("count").unwrap()];
    let names: Vec<&str> = count.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["count_a", "count_b"]);
    // A wire to an output the params do not declare is a plan error, located in the YAML.
    let spec = p.spec(
        "a, b",
        "  more:\n    kind: toy_count\n    inputs: {text: count.count_z}\n    params: {letters: [x]}\n",
    );
    let e = Plan::build(&spec, &registry(), None, &[])
        .err()
        .expect("an undeclared output is refused")
        .to_string();
    assert!(
        e.contains("stages.more.inputs.text")
            && e.contains("stage `count` has outputs count_a, count_b"),
        "{e}"
    );
    // A kind this registry lacks is named with the ones it has.
    let spec = RawSpec::parse(
        Path::new("pipeline.yaml"),
        "stages:\n  x:\n    kind: window\n",
    )
    .unwrap();
    let e = Plan::build(&spec, &registry(), None, &[])
        .err()
        .expect("an unknown kind is refused")
        .to_string();
    assert!(
        e.contains(
            "unknown kind `window` (known: toy_read, toy_count, toy_chunks, toy_join, command)"
        ),
        "{e}"
    );
}

fn run_status_lineage_verify_audit_gc() {
    let p = Project::new("abracadabra");
    let store = p.store("artifacts");
    let plan = p.plan("a, b");
    assert_eq!(
        run(&plan, &store, Choice::Local),
        outcomes(&[("read", "ran"), ("count", "ran")])
    );
    assert_eq!(
        run(&plan, &store, Choice::Local),
        outcomes(&[("read", "cached"), ("count", "cached")])
    );
    let a = hashes(&plan, &store, "count")["count_a"].clone();
    let i = plan.index("count").unwrap();
    let rec = match exec::status(&plan, &store, &plan.order)
        .unwrap()
        .remove(i)
        .1
    {
        Freshness::Fresh(r) => r,
        Freshness::Stale { .. } => panic!("count is stale"),
    };
    let text = std::fs::read_to_string(store.object_path(&rec.outputs["count_a"])).unwrap();
    assert_eq!(text, "10 (seed 0)\n", "five a's, twice");

    // status --explain: a changed raw file makes `read` stale, and `count` behind it.
    std::fs::write(p.raw(), "banana").unwrap();
    let why = why_stale(&plan, &store);
    assert_eq!(why["read"], ["raw files changed: raw.txt"], "{why:?}");
    assert_eq!(why["count"], ["upstream `read` is stale"], "{why:?}");
    // Early cutoff: the same bytes again make everything fresh without a run.
    std::fs::write(p.raw(), "abracadabra").unwrap();
    assert!(why_stale(&plan, &store).is_empty());
    // A param: only the stage that reads it and what follows.
    let plan3 = p.plan("a, b, r");
    assert_eq!(
        why_stale(&plan3, &store)["count"],
        ["param `letters`: [\"a\",\"b\"] → [\"a\",\"b\",\"r\"]"]
    );
    assert_eq!(
        run(&plan3, &store, Choice::Local),
        outcomes(&[("read", "cached"), ("count", "ran")])
    );
    assert_eq!(hashes(&plan3, &store, "count")["count_a"], a);

    // lineage: from one output back to the raw file, with its content hash.
    let l = provenance::lineage(&plan3, &store, "count", Some("count_r")).unwrap();
    let stages: Vec<&str> = l.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(stages, ["read", "count"]);
    assert_eq!(l.raw_files.len(), 1);
    assert_eq!(l.raw_files[0].name, "raw.txt");
    assert_eq!(
        l.raw_files[0].blake3,
        blake3::hash(b"abracadabra").to_hex().to_string()
    );
    assert_eq!(l.output_name.as_deref(), Some("count_r"));

    // verify: clean, then a flipped byte in one object is named.
    let records = provenance::all_records(&store).unwrap();
    assert!(
        provenance::verify(&store, &records)
            .unwrap()
            .problems
            .is_empty()
    );
    let r_obj = {
        let r = hashes(&plan3, &store, "count");
        store.root.join("objects").join(&r["count_r"]).join("r.txt")
    };
    let good = std::fs::read(&r_obj).unwrap();
    let mut bad = good.clone();
    bad[0] ^= 1;
    make_writable(&r_obj);
    std::fs::write(&r_obj, &bad).unwrap();
    let rep = provenance::verify(&store, &records).unwrap();
    assert!(
        rep.problems.iter().any(|m| m.contains("r.txt")),
        "{:?}",
        rep.problems
    );
    std::fs::write(&r_obj, &good).unwrap();
    assert!(
        provenance::verify(&store, &records)
            .unwrap()
            .problems
            .is_empty()
    );

    // audit: the chain re-executed in a scratch store gives the same bytes.
    let audit = provenance::audit(&plan3, &store, "count", 1, &Events::default()).unwrap();
    assert_eq!(audit.first_difference, None, "{audit:?}");
    let verdicts: Vec<&str> = audit.stages.iter().map(|s| s.verdict.as_str()).collect();
    assert_eq!(verdicts, ["identical", "identical"]);

    // gc: the first `count` record is no longer referenced and goes; what plan3 uses stays.
    // While this process's store holds its lease, what it used is kept: gc as a new process.
    let root = store.root.clone();
    drop(store);
    let store = Store::open(&root);
    let gc = provenance::gc(&store, 0, std::time::Duration::ZERO, false).unwrap();
    assert_eq!(gc.removed_records, 1, "{gc:?}");
    assert!(why_stale(&plan3, &store).is_empty());
    let left = provenance::all_records(&store).unwrap();
    assert!(
        provenance::verify(&store, &left)
            .unwrap()
            .problems
            .is_empty()
    );
}

fn make_writable(path: &Path) {
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(path, perm).unwrap();
}

fn a_sweep_over_seeds_shares_what_it_can_and_compares() {
    let p = Project::new("abracadabra");
    let store = p.store("artifacts");
    let spec = p.spec("a", "");
    let reg = registry();
    let points = sweep::expand(&[]).unwrap();
    let plans = sweep::point_plans(
        &spec,
        &reg,
        None,
        &points,
        &[(sweep::Dimension::Seed, vec![1, 2])],
    )
    .unwrap();
    let labels: Vec<&str> = plans.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["seed=1", "seed=2"]);
    let results = sweep::run_points(&plans, 2, &Events::default(), &|plan, sink| {
        let opts = RunOptions {
            jobs: 1,
            ..RunOptions::default()
        };
        exec::run(plan, &store, &opts, sink).expect("a point runs")
    });
    // `read` has no seed: both points share one record of it.
    let key = |k: usize, stage: &str| -> String {
        let plan = &plans[k].plan;
        let i = plan.index(stage).unwrap();
        results[k]
            .outcomes
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, o)| match o {
                Outcome::Ran(r, _) | Outcome::Cached(r) | Outcome::Pulled(r) => r.key.clone(),
                _ => panic!("{stage} did not finish"),
            })
            .unwrap()
    };
    assert_eq!(key(0, "read"), key(1, "read"));
    assert_ne!(key(0, "count"), key(1, "count"));
    // The point names resolve again as variants, and compare shows what the kind reports.
    let named: Vec<(String, Plan)> = plans
        .iter()
        .map(|pp| {
            let name = pp.plan.variant.clone().unwrap();
            let plan = sweep::plan_for(&spec, &reg, Some(&name), &[]).unwrap();
            (name, plan)
        })
        .collect();
    assert_eq!(named[0].0, "default+seed=1");
    let c = compare::compare(&named, &store).unwrap();
    let params: Vec<&str> = c.params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(params, ["count.seed"]);
    let metric = |name: &str| {
        c.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no metric {name}: {:?}", c.metrics))
    };
    assert_eq!(
        metric("count: letters counted"),
        [Some("10".to_string()), Some("10".to_string())]
    );
    assert_eq!(
        metric("count: count a"),
        [
            Some("10 (seed 1)".to_string()),
            Some("10 (seed 2)".to_string())
        ]
    );
    // Details come after the summary metrics.
    assert_eq!(c.metrics.last().unwrap().0, "count: count a");
}

fn folder_outputs_are_trees_of_files() {
    let p = Project::new("abracadabra");
    let store = p.store("artifacts");
    let chunks = |note: &str| {
        let spec = p.spec(
            "a",
            &format!(
                "  chunks:\n    kind: toy_chunks\n    inputs: {{text: read.text}}\n    params: {{size: 5, note: {note}}}\n  join:\n    kind: toy_join\n    inputs: {{chunks: chunks.chunks}}\n    params: {{path: unused}}\n"
            ),
        );
        Plan::build(&spec, &registry(), None, &[]).expect("plan")
    };
    let plan = chunks("first");
    run(&plan, &store, Choice::Local);
    let i = plan.index("chunks").unwrap();
    let rec = match exec::status(&plan, &store, &plan.order)
        .unwrap()
        .remove(i)
        .1
    {
        Freshness::Fresh(r) => r,
        Freshness::Stale { .. } => panic!("chunks is stale"),
    };
    let o = &rec.outputs["chunks"];
    assert!(o.dir);
    let paths: Vec<&str> = o.files.iter().map(|f| f.path.as_str()).collect();
    // "abracadabra" twice: 22 characters in chunks of 5.
    assert_eq!(
        paths,
        [
            "000.txt",
            "001.txt",
            "002.txt",
            "003.txt",
            "004.txt",
            "meta/count.txt"
        ]
    );
    assert_eq!(o.size, 23, "22 characters and the count `5`");
    assert_eq!(o.hash, magpipe_engine::store::tree_hash(&o.files));
    let folder = store.object_path(o);
    assert_eq!(
        std::fs::read_to_string(folder.join("meta/count.txt")).unwrap(),
        "5"
    );
    let joined = hashes(&plan, &store, "join")["joined"].clone();
    assert_eq!(
        joined,
        blake3::hash(b"abracadabraabracadabra").to_hex().to_string()
    );

    // Lineage lists the folder file by file.
    let l = provenance::lineage(&plan, &store, "chunks", Some("chunks")).unwrap();
    let text = provenance::lineage_text(&l);
    assert!(text.contains("output chunks/ blake3"), "{text}");
    assert!(text.contains("chunks/meta/count.txt blake3"), "{text}");

    // Early cutoff: a param that changes the key but not the folder reruns `chunks` alone.
    let plan2 = chunks("second");
    let ran = run(&plan2, &store, Choice::Local);
    assert_eq!(
        ran,
        outcomes(&[
            ("read", "cached"),
            ("count", "cached"),
            ("chunks", "ran"),
            ("join", "cached")
        ])
    );

    // Audit compares the folder file by file.
    let audit = provenance::audit(&plan2, &store, "join", 1, &Events::default()).unwrap();
    assert_eq!(audit.first_difference, None, "{audit:?}");

    // verify names the one file of the folder whose byte flipped, and a file added to it.
    let records = provenance::all_records(&store).unwrap();
    assert!(
        provenance::verify(&store, &records)
            .unwrap()
            .problems
            .is_empty()
    );
    let f = folder.join("002.txt");
    let good = std::fs::read(&f).unwrap();
    let mut bad = good.clone();
    bad[1] ^= 1;
    make_writable(&f);
    std::fs::write(&f, &bad).unwrap();
    std::fs::write(folder.join("stray.txt"), "x").unwrap();
    let problems = provenance::verify(&store, &records).unwrap().problems;
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|m| m.contains("corrupted object") && m.contains("chunks/002.txt:")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|m| m.contains("unrecorded file stray.txt")),
        "{problems:?}"
    );
    // A damaged folder is no cache hit: it is moved aside and its stage rebuilds it.
    let why = why_stale(&plan2, &store);
    assert_eq!(
        why["chunks"],
        ["an output object of its record is missing"],
        "{why:?}"
    );
    assert_eq!(
        run(&plan2, &store, Choice::Local),
        outcomes(&[
            ("read", "cached"),
            ("count", "cached"),
            ("chunks", "ran"),
            ("join", "cached")
        ])
    );
    assert_eq!(std::fs::read(folder.join("002.txt")).unwrap(), good);
    let records = provenance::all_records(&store).unwrap();
    assert!(
        provenance::verify(&store, &records)
            .unwrap()
            .problems
            .is_empty()
    );
    // gc removes the folder objects nothing reaches any more, and keeps the live one.
    provenance::gc(&store, 0, std::time::Duration::ZERO, false).unwrap();
    assert!(folder.join("meta/count.txt").is_file());
}

fn the_slurm_executor_runs_toy_stages_to_the_same_bytes() {
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    let ping = std::process::Command::new("scontrol").arg("ping").output();
    assert!(
        matches!(&ping, Ok(o) if o.status.success()),
        "this scenario needs a running Slurm (SLURM_CONF={conf:?}); `make test` starts one with \
         .ci/slurm/start.sh: {ping:?}"
    );
    let p = Project::new("abracadabra");
    let plan = p.plan("a, b");
    let local = p.store("local");
    run(&plan, &local, Choice::Local);
    let slurm = p.store("slurm");
    let config = SlurmConfig {
        poll_seconds: 0.2,
        ..SlurmConfig::default()
    };
    assert_eq!(
        run(&plan, &slurm, Choice::Slurm(config.clone())),
        outcomes(&[("read", "ran"), ("count", "ran")])
    );
    for stage in ["read", "count"] {
        assert_eq!(
            hashes(&plan, &slurm, stage),
            hashes(&plan, &local, stage),
            "{stage}"
        );
    }
    let i = plan.index("count").unwrap();
    match exec::status(&plan, &slurm, &plan.order)
        .unwrap()
        .remove(i)
        .1
    {
        Freshness::Fresh(r) => {
            let exec = serde_json::to_value(&r.executor).unwrap();
            assert_eq!(exec["executor"], "slurm", "{exec}");
        }
        Freshness::Stale { .. } => panic!("count is stale"),
    }
    assert_eq!(
        run(&plan, &slurm, Choice::Slurm(config)),
        outcomes(&[("read", "cached"), ("count", "cached")])
    );
}

/// Of the stages ready at once, `--jobs` slots go to the highest `priority:` first and to YAML
/// order among equals; a dependency still comes first, and the priority enters no key.
fn ready_stages_start_by_priority() {
    let p = Project::new("x");
    // `c` and `d` get the given priorities; `d` reads `a`, so it can only start after `a`.
    let yaml = |prio_c: &str, prio_d: &str| {
        let stage = |name: &str, shell: &str, extra: &str| {
            format!(
                "  {name}:\n    kind: command\n    shell: \"{shell} > {{outputs.o}}\"\n    outputs: {{o: {{path: {name}.txt}}}}\n{extra}"
            )
        };
        let mut y = String::from("stages:\n");
        y += &stage("a", "echo a", "");
        y += &stage("b", "echo b", "");
        y += &stage("c", "echo c", prio_c);
        let d = format!("    inputs: {{i: a.o}}\n{prio_d}");
        y += &stage("d", "cat {inputs.i}", &d);
        y
    };
    let plan = |text: &str| {
        let spec = RawSpec::parse(&p.dir.path().join("pipeline.yaml"), text).expect("parses");
        Plan::build(&spec, &registry(), None, &[]).expect("plan")
    };
    let started = |plan: &Plan, store: &Store, jobs: usize| {
        let events = Events::default();
        let opts = RunOptions {
            jobs,
            ..RunOptions::default()
        };
        exec::run(plan, store, &opts, &events).expect("the run starts");
        events
            .0
            .into_inner()
            .expect("events")
            .into_iter()
            .filter_map(|e| match e {
                Event::StageStarted { stage, .. } => Some(stage),
                _ => None,
            })
            .collect::<Vec<String>>()
    };
    let with = plan(&yaml("    priority: 5\n", "    priority: 9\n"));
    assert_eq!(with.stages[with.index("c").unwrap()].priority, 5);
    assert_eq!(with.stages[with.index("d").unwrap()].priority, 9);
    assert_eq!(
        started(&with, &p.store("one"), 1),
        ["c", "a", "d", "b"],
        "one slot: c outranks a and b; d outranks b once a is done"
    );
    let without = plan(&yaml("", ""));
    assert_eq!(
        started(&without, &p.store("plain"), 1),
        ["a", "b", "c", "d"]
    );
    // Scheduling only: the same stages without priorities are the cached ones.
    let store = p.store("one");
    assert_eq!(
        run(&without, &store, Choice::Local),
        outcomes(&[
            ("a", "cached"),
            ("b", "cached"),
            ("c", "cached"),
            ("d", "cached")
        ])
    );
    let bad = yaml("    priority: high\n", "");
    let e = RawSpec::parse(&p.dir.path().join("pipeline.yaml"), &bad).expect_err("refused");
    assert!(
        e.to_string().contains("stages.c.priority") && e.to_string().contains("is an integer"),
        "{e}"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // The job side of the Slurm executor: this program is what it runs on the node.
    if args.get(1).map(String::as_str) == Some("stage-job") {
        let job = Path::new(args.get(2).map(String::as_str).unwrap_or_default());
        std::process::exit(magpipe_engine::executor::stage_job_main(&registry(), job));
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    let scenarios: [(&str, fn()); 8] = [
        (
            "a_typed_kind_describes_its_params_from_the_struct",
            a_typed_kind_describes_its_params_from_the_struct,
        ),
        (
            "a_command_stage_and_its_contract_need_no_study",
            a_command_stage_and_its_contract_need_no_study,
        ),
        (
            "outputs_are_declared_at_plan_time",
            outputs_are_declared_at_plan_time,
        ),
        (
            "run_status_lineage_verify_audit_gc",
            run_status_lineage_verify_audit_gc,
        ),
        (
            "a_sweep_over_seeds_shares_what_it_can_and_compares",
            a_sweep_over_seeds_shares_what_it_can_and_compares,
        ),
        (
            "ready_stages_start_by_priority",
            ready_stages_start_by_priority,
        ),
        (
            "folder_outputs_are_trees_of_files",
            folder_outputs_are_trees_of_files,
        ),
        (
            "the_slurm_executor_runs_toy_stages_to_the_same_bytes",
            the_slurm_executor_runs_toy_stages_to_the_same_bytes,
        ),
    ];
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, f) in scenarios {
        if filter.is_some_and(|want| !name.contains(want.as_str())) {
            continue;
        }
        ran += 1;
        match std::panic::catch_unwind(f) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}
