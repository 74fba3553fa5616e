//! What a stage kind is, as the engine sees it. Stages know nothing of hashing, DAGs or the store:
//! they get typed params, the paths of their inputs, an output folder and an event sink.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A named input slot of a kind.
#[derive(Debug, Clone, Copy)]
pub struct InputSlot {
    pub name: &'static str,
    pub doc: &'static str,
}

/// A named output of a kind, fixed at compile time: one file with a fixed name. A kind whose
/// outputs depend on its params declares them as [`Output`]s instead.
#[derive(Debug, Clone, Copy)]
pub struct OutputSlot {
    pub name: &'static str,
    pub file: &'static str,
    pub doc: &'static str,
}

/// One output of a stage, as its kind declares it from the stage's params at plan time: the name
/// other stages wire to, and the file (or, with `dir`, the folder) the stage writes in its output
/// folder. A folder is stored as a tree of its files (names, sizes, content hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    pub file: String,
    pub doc: String,
    pub dir: bool,
    /// The artifact contract the output claims (e.g. `magpipe.predictions/1`): checked after
    /// the stage runs, before anything is committed, and matched against the slots it feeds.
    pub contract: Option<String>,
}

impl Output {
    pub fn file(
        name: impl Into<String>,
        file: impl Into<String>,
        doc: impl Into<String>,
    ) -> Output {
        Output {
            name: name.into(),
            file: file.into(),
            doc: doc.into(),
            dir: false,
            contract: None,
        }
    }
    pub fn dir(
        name: impl Into<String>,
        folder: impl Into<String>,
        doc: impl Into<String>,
    ) -> Output {
        Output {
            dir: true,
            ..Output::file(name, folder, doc)
        }
    }
}

impl Output {
    /// The same output, claiming `contract`.
    pub fn with_contract(self, contract: impl Into<String>) -> Output {
        Output {
            contract: Some(contract.into()),
            ..self
        }
    }

    /// Whether a stage wrote this output (a file, or a folder for a folder output) in `out_dir`.
    pub fn written_in(&self, out_dir: &Path) -> bool {
        let p = out_dir.join(&self.file);
        if self.dir { p.is_dir() } else { p.is_file() }
    }
}

impl From<&OutputSlot> for Output {
    fn from(o: &OutputSlot) -> Output {
        Output::file(o.name, o.file, o.doc)
    }
}

/// A file outside the store that a stage reads (raw data); its content hash enters the stage key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    /// Stable name used in the key (relative to the data folder), so moving the data keeps keys.
    pub name: String,
    pub path: PathBuf,
    pub role: SourceRole,
}

impl Source {
    pub fn data(name: impl Into<String>, path: impl Into<PathBuf>) -> Source {
        Source {
            name: name.into(),
            path: path.into(),
            role: SourceRole::Data,
        }
    }
}

/// What a source file is to its stage; `status --explain` words a change by it ("raw files
/// changed", "code models/ridge.py changed", "env lock changed").
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SourceRole {
    #[default]
    Data,
    /// A script or module the stage runs.
    Code,
    /// The environment it runs in: an interpreter, a lock file.
    Env,
}

impl SourceRole {
    pub fn is_data(&self) -> bool {
        *self == SourceRole::Data
    }
}

/// A contract an input slot asks of what is wired to it. For a single slot the wired output
/// must claim `contract`; for a list slot every entry must have an output named `output` that
/// claims it.
#[derive(Debug, Clone, Copy)]
pub struct InputContract {
    pub slot: &'static str,
    pub output: &'static str,
    pub contract: &'static str,
}

/// A list slot that must name the same stages as a list of the stage behind one of its single
/// inputs (the tables' predictors and the alarms' they read), checked when the plan is built,
/// so a stage left out of one list is an error naming it instead of silently missing.
#[derive(Debug, Clone, Copy)]
pub struct ListAgreement {
    /// This kind's list slot.
    pub slot: &'static str,
    /// The single input slot whose upstream stage holds the other list.
    pub via: &'static str,
    /// That stage's list slot.
    pub upstream: &'static str,
    /// Only a subset is needed (a figure of some of the models scored).
    pub subset: bool,
}

/// Progress and log events a running stage reports.
pub trait Events: Sync {
    /// `done` of `total` units of `unit` (e.g. "ARs", "epochs").
    fn progress(&self, done: u64, total: u64, unit: &str);
    /// A line for the log (stderr), not a result.
    fn log(&self, msg: &str);
}

/// Everything a stage run sees.
pub struct Context<'a> {
    pub stage: &'a str,
    pub inputs: BTreeMap<String, PathBuf>,
    pub out_dir: &'a Path,
    /// Where a long stage keeps checkpoints that survive a crash (created by the stage if it
    /// needs one; removed by the engine once the outputs are committed).
    pub checkpoint_dir: PathBuf,
    pub threads: usize,
    pub events: &'a dyn Events,
    /// Where a kind that launches jobs (see [`Kind::launches_jobs`]) sends them; `None` runs
    /// them as local processes.
    pub launcher: Option<&'a dyn TaskLauncher>,
}

/// Runs a kind's tasks somewhere else (a Slurm job array) and waits for them. Each task runs
/// [`Kind::run_task`] of kind `kind` on `request` (`magpipe task --kind KIND REQUEST`).
pub trait TaskLauncher: Sync {
    /// Runs `count` tasks at most `concurrent` at once; returns one line per task that did not
    /// complete.
    fn run_tasks(
        &self,
        kind: &str,
        request: &Path,
        count: usize,
        concurrent: usize,
        events: &dyn Events,
    ) -> Result<Vec<String>, StageError>;
}

/// A finished stage as `compare` and `report` see it: its facts and where its outputs are.
pub struct Finished<'a> {
    pub facts: &'a Value,
    /// output name → path of the stored object.
    pub outputs: BTreeMap<String, PathBuf>,
}

/// One result a kind wants shown when variants are compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub value: String,
    /// A per-item detail (one table cell, say): listed after the summary metrics.
    pub detail: bool,
}

impl Metric {
    pub fn summary(name: impl Into<String>, value: impl Into<String>) -> Metric {
        Metric {
            name: name.into(),
            value: value.into(),
            detail: false,
        }
    }
    pub fn detail(name: impl Into<String>, value: impl Into<String>) -> Metric {
        Metric {
            name: name.into(),
            value: value.into(),
            detail: true,
        }
    }
}

/// One entry of a list input: a whole upstream stage (every output) or one of its outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The upstream stage's name, the entry's label.
    pub stage: String,
    /// output name → path.
    pub outputs: BTreeMap<String, PathBuf>,
}

impl ListEntry {
    pub fn output(&self, name: &str) -> Result<&Path, StageError> {
        self.outputs.get(name).map(PathBuf::as_path).ok_or_else(|| {
            StageError::Invalid(format!(
                "list entry `{}` has no output `{name}` (has: {})",
                self.stage,
                self.outputs.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// The input name under which entry `index` of list slot `slot` reaches a stage: the position
/// and the label are part of the name, so reordering or renaming entries changes the key.
pub fn list_input_name(slot: &str, index: usize, stage: &str, output: &str) -> String {
    format!("{slot}[{index}].{stage}.{output}")
}

impl Context<'_> {
    /// The entries of list slot `slot`, in the order the pipeline lists them.
    pub fn list(&self, slot: &str) -> Vec<ListEntry> {
        let mut entries: BTreeMap<usize, ListEntry> = BTreeMap::new();
        let prefix = format!("{slot}[");
        for (name, path) in &self.inputs {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let Some((index, rest)) = rest.split_once("].") else {
                continue;
            };
            let (Ok(index), Some((stage, output))) = (index.parse(), rest.rsplit_once('.')) else {
                continue;
            };
            entries
                .entry(index)
                .or_insert_with(|| ListEntry {
                    stage: stage.to_string(),
                    outputs: BTreeMap::new(),
                })
                .outputs
                .insert(output.to_string(), path.clone());
        }
        entries.into_values().collect()
    }

    pub fn input(&self, slot: &str) -> Result<&Path, StageError> {
        self.inputs
            .get(slot)
            .map(PathBuf::as_path)
            .ok_or_else(|| StageError::Invalid(format!("input `{slot}` is not connected")))
    }

    pub fn output(&self, file: &str) -> PathBuf {
        self.out_dir.join(file)
    }
}

/// What a finished stage tells the user.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// One line for the run summary.
    pub summary: String,
    /// A result (e.g. a Markdown table) printed on stdout when the stage ran.
    pub stdout: Option<String>,
    /// Small machine-readable facts kept in the record (counts, fitted constants…).
    pub facts: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A kind's own error type (a data reader's, say), shown as it renders itself.
    #[error(transparent)]
    Domain(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Table { path: PathBuf, msg: String },
    #[error("{}: file is missing", .0.display())]
    Missing(PathBuf),
}

impl StageError {
    pub fn domain(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
        StageError::Domain(Box::new(e))
    }
    pub fn io(path: &Path, source: std::io::Error) -> StageError {
        StageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn table(path: &Path, e: impl std::fmt::Display) -> StageError {
        StageError::Table {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }
    }
}

/// A param problem, located by the name of the param.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ParamError {
    #[error("unknown param `{name}` (known: {known})")]
    Unknown { name: String, known: String },
    #[error("param `{name}`: {msg}")]
    Invalid { name: String, msg: String },
    #[error("{0}")]
    Whole(String),
}

impl ParamError {
    /// The param the error is about, if it is about one.
    pub fn param(&self) -> Option<&str> {
        match self {
            ParamError::Unknown { name, .. } | ParamError::Invalid { name, .. } => Some(name),
            ParamError::Whole(_) => None,
        }
    }
}

/// The object-safe face of a kind that the engine works with.
pub trait Kind: Send + Sync {
    fn name(&self) -> &'static str;
    /// Bumped whenever the kind's outputs change for the same params and inputs; part of every key.
    fn version(&self) -> u32;
    fn doc(&self) -> &'static str;
    fn inputs(&self) -> &'static [InputSlot];
    /// Slots that take a list: each entry names a stage (all its outputs) or one output.
    fn list_inputs(&self) -> &'static [InputSlot];
    /// The outputs of a stage with these (resolved) params; they are fixed when the plan is
    /// built, so a wire to an output the params do not declare is a plan error.
    fn outputs(&self, params: &Value) -> Vec<Output>;
    /// Outputs that record measurements of the run itself (timings), so they differ between
    /// otherwise identical runs; `magpipe audit` reports them apart.
    fn volatile_outputs(&self) -> &'static [&'static str];
    /// Whether `run` sends its own work out as jobs through `Context::launcher` (the tune
    /// study's trials) and so runs in the engine under an executor that has one.
    fn launches_jobs(&self) -> bool;
    /// Every param with its default, as JSON.
    fn defaults(&self) -> Value;
    /// Fills defaults into user params and type-checks them, naming the offending param.
    fn resolve(&self, user: &serde_json::Map<String, Value>) -> Result<Value, ParamError>;
    /// The params that enter the key (a location such as a data folder does not; its files do).
    fn key_params(&self, params: &Value) -> Value;
    /// External files read by the stage, for the key.
    fn sources(&self, params: &Value) -> Result<Vec<Source>, StageError>;
    /// Facts outside code and params that change results (e.g. the libtorch version), for the
    /// key; `cache_dir` lets a kind remember facts that are slow to find out.
    fn runtime(&self, params: &Value, cache_dir: &Path) -> Result<Value, StageError>;
    fn run(&self, params: &Value, ctx: &Context<'_>) -> Result<Report, StageError>;
    /// One task of a job array this kind sent out through [`TaskLauncher`]; `tag` names the
    /// task (stable across a requeue). Returns a line for the log.
    fn run_task(
        &self,
        request: &Path,
        tag: &str,
        events: &dyn Events,
    ) -> Result<String, StageError> {
        let _ = (request, tag, events);
        Err(StageError::Invalid(format!(
            "kind `{}` runs no tasks",
            self.name()
        )))
    }
    /// What `compare` shows of a finished stage of this kind.
    fn metrics(&self, params: &Value, finished: &Finished<'_>) -> Vec<Metric> {
        let _ = (params, finished);
        Vec::new()
    }
    /// The param that seeds this kind's randomness, if it has one: `magpipe run --seeds`
    /// sweeps it on every stage of the kind at once.
    fn seed_param(&self) -> Option<&'static str> {
        None
    }
    /// The param that picks a cross-validation fold, if the kind has one: `magpipe run
    /// --folds` sweeps it on every stage of the kind at once.
    fn fold_param(&self) -> Option<&'static str> {
        None
    }
    /// The contracts its slots ask of their inputs (checked when the plan is built).
    fn input_contracts(&self) -> &'static [InputContract] {
        &[]
    }
    /// Its list slots that must agree with an upstream stage's list (checked when the plan is
    /// built).
    fn list_agreements(&self) -> &'static [ListAgreement] {
        &[]
    }
    /// Stage keys besides `kind`, `params`, `inputs`, `doc` and `default` that a stage of this
    /// kind declares (the command kind's `run`, `code`, `env`…). They reach [`Kind::resolve`]
    /// with the params, and variants and `--set` override them like params.
    fn stage_keys(&self) -> &'static [&'static str] {
        &[]
    }
    /// The resolved params as `name → value` under the names `--set` takes, for `compare`. A kind
    /// whose own params sit in one map beside its stage keys (the command kind's `params:`) lifts
    /// them out of it.
    fn shown_params(&self, resolved: &Value) -> Vec<(String, Value)> {
        match resolved {
            Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => Vec::new(),
        }
    }
    /// Whether any slot name is an input (one `stage.output` each): the stage names its own.
    fn open_inputs(&self) -> bool {
        false
    }
    /// Checks the resolved params against the input slots the stage wires (`slots`), when the
    /// plan is built: a kind whose params name inputs (the command kind's `{inputs.NAME}`)
    /// refuses one that is not wired, as a plan error rather than when the stage runs.
    fn check_wires(&self, params: &Value, slots: &[&str]) -> Result<(), String> {
        let _ = (params, slots);
        Ok(())
    }
    /// The JSON Schema of the params (types, allowed values, the doc comments of the param
    /// struct's fields), from which `magpipe kinds --format md` writes the reference; `null`
    /// when a kind's params are free-form.
    fn params_schema(&self) -> Value {
        Value::Null
    }
}

/// The typed side of a kind: implement this, and [`Kind`] comes for free.
pub trait TypedKind: Send + Sync {
    type Params: Serialize + DeserializeOwned + Default + schemars::JsonSchema;
    const NAME: &'static str;
    const VERSION: u32;
    const DOC: &'static str;
    const INPUTS: &'static [InputSlot];
    const LIST_INPUTS: &'static [InputSlot] = &[];
    const VOLATILE_OUTPUTS: &'static [&'static str] = &[];
    const LAUNCHES_JOBS: bool = false;
    const OUTPUTS: &'static [OutputSlot];
    const SEED_PARAM: Option<&'static str> = None;
    const FOLD_PARAM: Option<&'static str> = None;
    /// output name → the contract it claims.
    const CONTRACTS: &'static [(&'static str, &'static str)] = &[];
    const INPUT_CONTRACTS: &'static [InputContract] = &[];
    const LIST_AGREEMENTS: &'static [ListAgreement] = &[];

    /// Settles params whose default depends on others (a value that reads `auto`), after typing
    /// and before [`Self::check`], so the key, the run and `compare` all see what will run.
    fn settle(_p: &mut Self::Params) {}
    /// Checks across params (or of values serde cannot check), after typing.
    fn check(_p: &Self::Params) -> Result<(), ParamError> {
        Ok(())
    }
    fn key_params(p: &Self::Params) -> Value {
        serde_json::to_value(p).expect("params serialise")
    }
    fn sources(_p: &Self::Params) -> Result<Vec<Source>, StageError> {
        Ok(Vec::new())
    }
    fn runtime(_p: &Self::Params, _cache_dir: &Path) -> Result<Value, StageError> {
        Ok(Value::Null)
    }
    fn run(p: &Self::Params, ctx: &Context<'_>) -> Result<Report, StageError>;
    /// The outputs of a stage with params `p`: [`Self::OUTPUTS`] unless the kind says otherwise.
    fn outputs(_p: &Self::Params) -> Vec<Output> {
        Self::OUTPUTS.iter().map(Output::from).collect()
    }
    fn run_task(request: &Path, tag: &str, events: &dyn Events) -> Result<String, StageError> {
        let _ = (request, tag, events);
        Err(StageError::Invalid(format!(
            "kind `{}` runs no tasks",
            Self::NAME
        )))
    }
    fn metrics(_p: &Self::Params, _finished: &Finished<'_>) -> Vec<Metric> {
        Vec::new()
    }
}

/// Wraps a [`TypedKind`] as a [`Kind`].
pub struct Typed<K>(pub std::marker::PhantomData<K>);

impl<K> Default for Typed<K> {
    fn default() -> Self {
        Typed(std::marker::PhantomData)
    }
}

fn typed<P: DeserializeOwned>(v: &Value) -> Result<P, ParamError> {
    serde_json::from_value(v.clone()).map_err(|e| ParamError::Whole(plain(&e.to_string())))
}

/// The range of each integer type serde names, in words.
fn int_range(ty: &str) -> Option<(i128, i128)> {
    Some(match ty {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    })
}

/// serde's type errors in the user's terms: `invalid type: string "1e400", expected f64` says
/// what Rust wanted, not what is wrong with the value written in pipeline.yaml.
fn plain(msg: &str) -> String {
    // serde's forms: "invalid type: string \"V\", expected T", "invalid value: integer `V`,
    // expected T", "invalid type: floating point `V`, expected T".
    let Some((what, ty)) = msg.rsplit_once(", expected ") else {
        return msg.to_string();
    };
    let value = what
        .split_once('`')
        .and_then(|(_, v)| v.strip_suffix('`'))
        .or_else(|| {
            what.strip_prefix("invalid type: string \"")
                .and_then(|v| v.strip_suffix('"'))
        });
    let Some(value) = value else {
        return msg.to_string();
    };
    let numeric = value.parse::<f64>().ok();
    if let Some((lo, hi)) = int_range(ty) {
        return match numeric {
            Some(_) => format!("{value} must be an integer between {lo} and {hi}"),
            None => format!(
                "must be an integer between {lo} and {hi}, not {what_}",
                what_ = what.trim_start_matches("invalid type: ")
            ),
        };
    }
    if ty == "f64" || ty == "f32" {
        return match numeric {
            Some(x) if x.is_infinite() => format!(
                "{value} is out of range for a float (the largest is about {:.1e})",
                if ty == "f32" {
                    f64::from(f32::MAX)
                } else {
                    f64::MAX
                }
            ),
            _ => format!(
                "must be a number, not {}",
                what.trim_start_matches("invalid type: ")
            ),
        };
    }
    msg.to_string()
}

impl<K: TypedKind> Kind for Typed<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn version(&self) -> u32 {
        K::VERSION
    }
    fn doc(&self) -> &'static str {
        K::DOC
    }
    fn inputs(&self) -> &'static [InputSlot] {
        K::INPUTS
    }
    fn list_inputs(&self) -> &'static [InputSlot] {
        K::LIST_INPUTS
    }
    fn outputs(&self, params: &Value) -> Vec<Output> {
        let outs = match typed(params) {
            Ok(p) => K::outputs(&p),
            Err(_) => K::OUTPUTS.iter().map(Output::from).collect(),
        };
        outs.into_iter()
            .map(|o| match K::CONTRACTS.iter().find(|(n, _)| *n == o.name) {
                Some((_, c)) => o.with_contract(*c),
                None => o,
            })
            .collect()
    }
    fn volatile_outputs(&self) -> &'static [&'static str] {
        K::VOLATILE_OUTPUTS
    }
    fn launches_jobs(&self) -> bool {
        K::LAUNCHES_JOBS
    }
    fn defaults(&self) -> Value {
        serde_json::to_value(K::Params::default()).expect("default params serialise")
    }

    fn resolve(&self, user: &serde_json::Map<String, Value>) -> Result<Value, ParamError> {
        let defaults = self.defaults();
        let Value::Object(base) = &defaults else {
            unreachable!("params are a struct")
        };
        // Type-check one param at a time against the defaults, so an error names its param.
        for (name, value) in user {
            if !base.contains_key(name) {
                return Err(ParamError::Unknown {
                    name: name.clone(),
                    known: base.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
            let mut one = base.clone();
            one.insert(name.clone(), value.clone());
            typed::<K::Params>(&Value::Object(one)).map_err(|e| ParamError::Invalid {
                name: name.clone(),
                msg: match e {
                    ParamError::Whole(m) => m,
                    other => other.to_string(),
                },
            })?;
        }
        let mut merged = base.clone();
        merged.extend(user.clone());
        let mut p: K::Params = typed(&Value::Object(merged))?;
        K::settle(&mut p);
        K::check(&p)?;
        // Re-serialising gives the canonical form: every field present, defaults filled in.
        Ok(serde_json::to_value(&p).expect("params serialise"))
    }

    fn key_params(&self, params: &Value) -> Value {
        K::key_params(&typed(params).expect("resolved params"))
    }

    fn sources(&self, params: &Value) -> Result<Vec<Source>, StageError> {
        K::sources(&typed(params).map_err(|e| StageError::Invalid(e.to_string()))?)
    }

    fn runtime(&self, params: &Value, cache_dir: &Path) -> Result<Value, StageError> {
        K::runtime(
            &typed(params).map_err(|e| StageError::Invalid(e.to_string()))?,
            cache_dir,
        )
    }

    fn run(&self, params: &Value, ctx: &Context<'_>) -> Result<Report, StageError> {
        K::run(
            &typed(params).map_err(|e| StageError::Invalid(e.to_string()))?,
            ctx,
        )
    }

    fn run_task(
        &self,
        request: &Path,
        tag: &str,
        events: &dyn Events,
    ) -> Result<String, StageError> {
        K::run_task(request, tag, events)
    }

    fn metrics(&self, params: &Value, finished: &Finished<'_>) -> Vec<Metric> {
        match typed(params) {
            Ok(p) => K::metrics(&p, finished),
            Err(_) => Vec::new(),
        }
    }

    fn seed_param(&self) -> Option<&'static str> {
        K::SEED_PARAM
    }
    fn fold_param(&self) -> Option<&'static str> {
        K::FOLD_PARAM
    }

    fn input_contracts(&self) -> &'static [InputContract] {
        K::INPUT_CONTRACTS
    }
    fn list_agreements(&self) -> &'static [ListAgreement] {
        K::LIST_AGREEMENTS
    }
    fn params_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(K::Params)).expect("a schema serialises")
    }
}
