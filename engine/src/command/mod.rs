//! `kind: command`: any program as a stage, declared in pipeline.yaml with its inputs, outputs,
//! params, code and environment. Everything the declaration names enters the key (the code's
//! and the environment's content too), the program runs in a scratch folder under a sandbox that
//! lets it read only what it declared, and what it writes is checked against the contracts its
//! outputs claim before anything is committed.
//!
//! What the program sees (also in docs/src/guide/own-stage.md):
//! - its working directory: an empty folder of its own (`TMPDIR` and `HOME` inside it);
//! - `MAGPIPE_STAGE`: the path of a JSON file with `stage`, `params`, `inputs` (slot → path),
//!   `outputs` (name → path), `threads`, `seed` and `device`;
//! - the same as `MAGPIPE_PARAMS` (JSON), `MAGPIPE_IN_<SLOT>`, `MAGPIPE_OUT_<NAME>`,
//!   `MAGPIPE_THREADS`, `MAGPIPE_SEED`, and as `{inputs.x}`, `{outputs.x}`, `{params.x}`,
//!   `{threads}`, `{seed}` in its argv;
//! - a stderr line `magpipe: progress 3/10 epochs` moves the stage's progress bar; every other
//!   line goes to the stage's log, and the last ones into the error if the program fails.

pub mod pyenv;
pub mod sandbox;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kind::{
    Context, Events, InputSlot, Kind, Output, ParamError, Report, Source, SourceRole, StageError,
};
use sandbox::Enforcement;

/// The stage keys of a command stage (beside `kind`, `params`, `inputs`, `doc`, `default`).
pub const DECLARATION: &[&str] = &[
    "run",
    "shell",
    "code",
    "env",
    "outputs",
    "threads",
    "sandbox",
    "network",
    "timeout",
    "stall_warning",
];

/// How long a command stage may run when its `timeout:` says nothing: long enough for any
/// training this tool runs on one node, short enough that a hung program ends within a day.
pub const DEFAULT_TIMEOUT: &str = "24h";

/// How long a command may print nothing before the log says it seems stalled.
pub const DEFAULT_STALL_WARNING: &str = "10m";

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// In namespaces of its own (processes, /proc, /tmp, /dev/shm, no network unless declared)
    /// and under Landlock: read only the declared inputs, code, env and system folders; write
    /// only the scratch folder.
    #[default]
    Strict,
    /// No file or network confinement; the program's processes still end with it.
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputDecl {
    /// Relative to the stage's output folder; a trailing `/` declares a folder.
    pub path: String,
    /// The contract the output claims (`namespace.name/version`), checked before commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

/// A command stage's declaration and params, as resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// argv, run without a shell.
    #[serde(default)]
    pub run: Option<Vec<String>>,
    /// One line for `/bin/sh -c`, instead of `run`.
    #[serde(default)]
    pub shell: Option<String>,
    /// Files and folders whose content enters the key.
    #[serde(default)]
    pub code: Vec<String>,
    /// Named environment files (an interpreter, a lock file): their content, a program's
    /// version and an interpreter's installed packages enter the key, their paths do not; a lock
    /// file is checked against the packages. An argv[0] that names one runs it.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// name → `{path, schema}`: the files (or, with a trailing `/`, folders) the program must
    /// write, each optionally claiming a contract.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputDecl>,
    /// Cores the program may use: passed as `MAGPIPE_THREADS` and `{threads}`, and the Slurm
    /// job's `--cpus-per-task` unless `executor.slurm` sets one.
    #[serde(default = "one")]
    pub threads: usize,
    #[serde(default)]
    pub sandbox: SandboxMode,
    /// The program may use the network (any family, any address). Off by default: the program
    /// runs in a network namespace of its own with no device up. Recorded and shown by
    /// `lineage`; not part of the key (a result does not depend on being allowed to connect).
    #[serde(default)]
    pub network: bool,
    /// How long the program may run (`90s`, `30m`, `2h`, `1d`; `none`: no limit). Past it the program and everything it started are killed and the stage fails
    /// with the limit and the program's last line. Not part of the key.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// After this long with no line on stdout or stderr the log warns that the program seems
    /// stalled, with its last line (`none`: never). Not part of the key.
    #[serde(default = "default_stall")]
    pub stall_warning: String,
    /// The program's own params, passed on as they are.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
}

fn one() -> usize {
    1
}

fn default_timeout() -> String {
    DEFAULT_TIMEOUT.into()
}

fn default_stall() -> String {
    DEFAULT_STALL_WARNING.into()
}

impl Default for CommandParams {
    fn default() -> Self {
        CommandParams {
            run: None,
            shell: None,
            code: Vec::new(),
            env: BTreeMap::new(),
            outputs: BTreeMap::new(),
            threads: 1,
            sandbox: SandboxMode::Strict,
            network: false,
            timeout: default_timeout(),
            stall_warning: default_stall(),
            params: serde_json::Map::new(),
        }
    }
}

fn invalid(name: &str, msg: impl Into<String>) -> ParamError {
    ParamError::Invalid {
        name: name.to_string(),
        msg: msg.into(),
    }
}

/// `{a.b}` placeholders of one argv word, as (group, name).
fn placeholders(word: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = word;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else { break };
        let inner = &rest[i + 1..i + j];
        match inner.split_once('.') {
            Some((g, n)) => out.push((g.to_string(), n.to_string())),
            None => out.push((inner.to_string(), String::new())),
        }
        rest = &rest[i + j + 1..];
    }
    out
}

fn env_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl CommandParams {
    /// The key the command is under (`run` or `shell`) and its words, where placeholders are.
    fn command_words(&self) -> (&'static str, Vec<&str>) {
        let words = match (&self.run, &self.shell) {
            (Some(argv), _) => argv.iter().map(String::as_str).collect(),
            (_, Some(line)) => vec![line.as_str()],
            _ => Vec::new(),
        };
        (if self.run.is_some() { "run" } else { "shell" }, words)
    }

    fn check(&self) -> Result<(), ParamError> {
        match (&self.run, &self.shell) {
            (Some(_), Some(_)) => {
                return Err(invalid("shell", "give `run:` or `shell:`, not both"));
            }
            (None, None) => {
                return Err(ParamError::Whole(
                    "a command stage needs `run: [program, args…]` or `shell: \"…\"`".into(),
                ));
            }
            (Some(argv), None) if argv.is_empty() || argv[0].is_empty() => {
                return Err(invalid("run", "names no program"));
            }
            _ => {}
        }
        if self.outputs.is_empty() {
            return Err(ParamError::Whole(
                "a command stage declares its `outputs:` (name → {path, schema})".into(),
            ));
        }
        for (name, o) in &self.outputs {
            let ok_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok_name {
                return Err(invalid(
                    "outputs",
                    format!("output name `{name}`: letters, digits, `_` and `-` only"),
                ));
            }
            let p = Path::new(o.path.trim_end_matches('/'));
            let inside = !o.path.trim_end_matches('/').is_empty()
                && p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
                && !o.path.starts_with(".work");
            if !inside {
                return Err(invalid(
                    "outputs",
                    format!(
                        "output `{name}`: path `{}` must be relative and inside the stage's folder",
                        o.path
                    ),
                ));
            }
        }
        if self.threads == 0 {
            return Err(invalid("threads", "must be at least 1"));
        }
        self.limits()?;
        for p in &self.code {
            if p.is_empty() {
                return Err(invalid("code", "an empty path"));
            }
        }
        let (at, words) = self.command_words();
        for w in words {
            for (g, n) in placeholders(w) {
                let known = match g.as_str() {
                    "params" => self.params.contains_key(&n),
                    "outputs" => self.outputs.contains_key(&n),
                    // Inputs are wired by the plan, which checks them (`check_wires`).
                    "inputs" => !n.is_empty(),
                    "threads" | "seed" | "scratch" => n.is_empty(),
                    _ => false,
                };
                if !known {
                    let what = if n.is_empty() {
                        g.clone()
                    } else {
                        format!("{g}.{n}")
                    };
                    return Err(invalid(
                        at,
                        format!(
                            "`{{{what}}}` names nothing (use {{inputs.SLOT}}, {{outputs.NAME}}, {{params.NAME}}, {{threads}}, {{seed}})"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The timeout and the stall warning, each `None` when switched off.
    fn limits(&self) -> Result<Limits, ParamError> {
        let one = |name: &str, v: &str| match v {
            "none" => Ok(None),
            t => match crate::time::parse_duration(t) {
                Ok(d) if d.is_zero() => {
                    Err(invalid(name, "must be longer than 0s (`none`: no limit)"))
                }
                Ok(d) => Ok(Some(d)),
                Err(e) => Err(invalid(name, format!("{e}, or `none`"))),
            },
        };
        Ok(Limits {
            timeout: one("timeout", &self.timeout)?,
            stall: one("stall_warning", &self.stall_warning)?,
        })
    }

    fn seed(&self) -> Value {
        self.params.get("seed").cloned().unwrap_or(Value::Null)
    }

    fn device(&self) -> String {
        self.params
            .get("device")
            .and_then(Value::as_str)
            .unwrap_or("cpu")
            .to_string()
    }

    /// The program to execute and the env name it came from, if any.
    fn program(&self) -> (String, Option<String>) {
        match (&self.run, &self.shell) {
            (Some(argv), _) => match self.env.get(&argv[0]) {
                Some(p) => (p.clone(), Some(argv[0].clone())),
                None => (argv[0].clone(), None),
            },
            _ => ("/bin/sh".to_string(), None),
        }
    }
}

/// `program` as a path: as written when it has a `/`, else looked up on `PATH`.
fn locate(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Every file of a code folder, sorted, without Python's byte-code caches (they follow from the
/// sources, and the interpreter writes them whenever it may).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StageError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| StageError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == "__pycache__" || name.ends_with(".pyc") {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// An interpreter's version line (`Python 3.11.7`), remembered by path, size and mtime so a
/// no-op run does not start the interpreter.
fn version_of(program: &Path, cache_dir: &Path) -> String {
    let Ok(meta) = std::fs::metadata(program) else {
        return String::new();
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let id = format!("{}|{}|{mtime}", program.display(), meta.len());
    let file = cache_dir.join("command-versions.json");
    let mut cache: BTreeMap<String, String> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if let Some(v) = cache.get(&id) {
        return v.clone();
    }
    let v = std::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_default();
    // An interpreter replaced just now is asked again next time (see `racily_clean`).
    if crate::store::racily_clean(&meta) {
        return v;
    }
    cache.insert(id, v.clone());
    if std::fs::create_dir_all(cache_dir).is_ok()
        && let Ok(text) = serde_json::to_vec_pretty(&cache)
    {
        let tmp = cache_dir.join(format!(".command-versions.{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &file);
        }
    }
    v
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The folders a program needs to read beside itself: its install prefix (`…/bin/python` →
/// `…`), for the written path (a venv) and the resolved one (the interpreter it links to). A
/// program outside a `bin` folder (`./tools/x.sh`) gets itself only: the folder above it may
/// be the project, store included.
fn prefixes(program: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in [
        absolute(program),
        std::fs::canonicalize(program).unwrap_or_default(),
    ] {
        if let Some(bin) = p.parent()
            && bin.file_name().is_some_and(|n| n == "bin")
            && let Some(prefix) = bin.parent()
            && prefix.parent().is_some()
        {
            out.push(prefix.to_path_buf());
        }
        if !p.as_os_str().is_empty() {
            out.push(p);
        }
    }
    out
}

/// What every process needs to read: the system's programs, libraries and configuration.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc",
    "/proc",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
];

pub struct CommandKind;

impl CommandKind {
    fn typed(params: &Value) -> Result<CommandParams, StageError> {
        serde_json::from_value(params.clone()).map_err(|e| StageError::Invalid(e.to_string()))
    }
}

/// A command's time limits (`None`: off).
#[derive(Debug, Clone, Copy)]
struct Limits {
    timeout: Option<std::time::Duration>,
    stall: Option<std::time::Duration>,
}

/// The last non-empty lines a command printed, for its error.
struct Tail(Mutex<VecDeque<String>>);

impl Tail {
    fn push(&self, line: &str) {
        let mut t = self.0.lock().expect("tail lock");
        if t.len() == 20 {
            t.pop_front();
        }
        t.push_back(line.to_string());
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("tail lock").iter().cloned().collect()
    }
}

/// `magpipe: progress 3/10 epochs` → (3, 10, "epochs").
fn progress_line(line: &str) -> Option<(u64, u64, String)> {
    let rest = line.trim().strip_prefix("magpipe: progress ")?;
    let (frac, unit) = rest.split_once(' ').unwrap_or((rest, "steps"));
    let (a, b) = frac.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?, unit.trim().to_string()))
}

impl Kind for CommandKind {
    fn name(&self) -> &'static str {
        "command"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Any program as a stage: `run:` argv (or `shell:`), `code:` and `env:` paths whose content \
         enters the key, free-form `inputs:` and `params:`, declared `outputs:` (with `schema:` \
         contracts checked before commit), run in a scratch folder in namespaces of its own and under Landlock \
         (`sandbox: strict`, or `off`), with no network unless `network: true`."
    }
    fn inputs(&self) -> &'static [InputSlot] {
        &[]
    }
    fn list_inputs(&self) -> &'static [InputSlot] {
        &[]
    }
    fn open_inputs(&self) -> bool {
        true
    }
    fn check_wires(&self, params: &Value, slots: &[&str]) -> Result<(), String> {
        let Ok(p) = Self::typed(params) else {
            return Ok(()); // the params' own check names what is wrong with them
        };
        let (at, words) = p.command_words();
        for w in words {
            for (g, n) in placeholders(w) {
                if g == "inputs" && !slots.contains(&n.as_str()) {
                    let wired = if slots.is_empty() {
                        "it wires none".to_string()
                    } else {
                        format!("its inputs: {}", slots.join(", "))
                    };
                    return Err(format!(
                        "{at}: `{{inputs.{n}}}` names no input of this stage{} ({wired})",
                        crate::suggest::did_you_mean(&n, slots.iter().copied())
                    ));
                }
            }
        }
        Ok(())
    }
    fn stage_keys(&self) -> &'static [&'static str] {
        DECLARATION
    }
    fn shown_params(&self, resolved: &Value) -> Vec<(String, Value)> {
        let Value::Object(m) = resolved else {
            return Vec::new();
        };
        let mut out: Vec<(String, Value)> = m
            .iter()
            .filter(|(k, _)| k.as_str() != "params")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(Value::Object(own)) = m.get("params") {
            out.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }
    fn outputs(&self, params: &Value) -> Vec<Output> {
        let Ok(p) = Self::typed(params) else {
            return Vec::new();
        };
        p.outputs
            .iter()
            .map(|(name, o)| {
                let file = o.path.trim_end_matches('/').to_string();
                let doc = format!("declared output `{}`", o.path);
                let out = if o.path.ends_with('/') {
                    Output::dir(name.clone(), file, doc)
                } else {
                    Output::file(name.clone(), file, doc)
                };
                match &o.schema {
                    Some(c) => out.with_contract(c.clone()),
                    None => out,
                }
            })
            .collect()
    }
    fn params_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(CommandParams)).expect("a schema serialises")
    }
    fn volatile_outputs(&self) -> &'static [&'static str] {
        &[]
    }
    fn launches_jobs(&self) -> bool {
        false
    }
    fn defaults(&self) -> Value {
        serde_json::to_value(CommandParams::default()).expect("serialises")
    }
    fn resolve(&self, user: &serde_json::Map<String, Value>) -> Result<Value, ParamError> {
        // Declaration keys are the command's; everything else is its own params.
        let mut decl = serde_json::Map::new();
        let mut params = serde_json::Map::new();
        for (k, v) in user {
            if DECLARATION.contains(&k.as_str()) {
                decl.insert(k.clone(), v.clone());
            } else {
                params.insert(k.clone(), v.clone());
            }
        }
        // Each key checked alone against the defaults, so an error names the key it is about.
        for k in DECLARATION {
            let Some(v) = decl.get(*k) else { continue };
            let mut one = serde_json::to_value(CommandParams::default())
                .expect("serialises")
                .as_object()
                .cloned()
                .unwrap_or_default();
            one.insert(k.to_string(), v.clone());
            serde_json::from_value::<CommandParams>(Value::Object(one))
                .map_err(|e| invalid(k, e.to_string()))?;
        }
        decl.insert("params".into(), Value::Object(params));
        let p: CommandParams = serde_json::from_value(Value::Object(decl))
            .map_err(|e| ParamError::Whole(e.to_string()))?;
        p.check()?;
        Ok(serde_json::to_value(&p).expect("serialises"))
    }
    fn key_params(&self, params: &Value) -> Value {
        // Flat, so `status --explain` says `param alpha`, not `param params`; the sandbox mode
        // is not in it: a command that succeeds under it writes what it would without.
        let Ok(p) = Self::typed(params) else {
            return params.clone();
        };
        let mut k = p.params.clone();
        let Value::Object(decl) = serde_json::to_value(&p).expect("serialises") else {
            unreachable!("params are a struct")
        };
        k.extend(
            decl.into_iter()
                // The env files enter by content (sources) and version (runtime), not by path.
                .filter(|(name, _)| {
                    !matches!(
                        name.as_str(),
                        "params" | "sandbox" | "network" | "env" | "timeout" | "stall_warning"
                    )
                }),
        );
        Value::Object(k)
    }
    fn sources(&self, params: &Value) -> Result<Vec<Source>, StageError> {
        let p = Self::typed(params)?;
        let mut out = Vec::new();
        for c in &p.code {
            let path = PathBuf::from(c);
            if path.is_dir() {
                let mut files = Vec::new();
                walk(&path, &mut files)?;
                for f in files {
                    let rel = f.strip_prefix(&path).unwrap_or(&f);
                    out.push(Source {
                        name: Path::new(c.trim_end_matches('/'))
                            .join(rel)
                            .display()
                            .to_string(),
                        path: f.clone(),
                        role: SourceRole::Code,
                    });
                }
            } else {
                out.push(Source {
                    name: c.clone(),
                    path,
                    role: SourceRole::Code,
                });
            }
        }
        for (name, path) in &p.env {
            out.push(Source {
                name: name.clone(),
                path: PathBuf::from(path),
                role: SourceRole::Env,
            });
        }
        let (program, from_env) = p.program();
        if from_env.is_none() {
            let path = locate(&program).ok_or_else(|| {
                StageError::Invalid(format!("program `{program}` is not on PATH"))
            })?;
            out.push(Source {
                name: "program".into(),
                path,
                role: SourceRole::Env,
            });
        }
        Ok(out)
    }
    fn runtime(&self, params: &Value, cache_dir: &Path) -> Result<Value, StageError> {
        let p = Self::typed(params)?;
        let mut facts = serde_json::Map::new();
        let (program, from_env) = p.program();
        let mut programs: Vec<(String, PathBuf)> = p
            .env
            .iter()
            .map(|(n, path)| (n.clone(), PathBuf::from(path)))
            .filter(|(_, path)| is_executable(path))
            .collect();
        if from_env.is_none()
            && let Some(path) = locate(&program)
        {
            programs.push(("program".into(), path));
        }
        // By content and version, never by location: a colleague's venv elsewhere with the same
        // interpreter and packages gives the same key.
        let mut installed = BTreeMap::new();
        let mut interpreter = None;
        for (name, path) in programs {
            let real = std::fs::canonicalize(&path).map_err(|e| StageError::io(&path, e))?;
            let mut fact = serde_json::json!({ "version": version_of(&real, cache_dir) });
            let dists = pyenv::installed(&absolute(&path), cache_dir);
            if !dists.is_empty() {
                fact["packages"] = dists
                    .iter()
                    .map(|(n, d)| {
                        (
                            n.clone(),
                            Value::from(format!("{} {}", d.version, &d.record[..16])),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                interpreter.get_or_insert_with(|| path.display().to_string());
                installed.extend(dists);
            }
            facts.insert(name, fact);
        }
        if let Some(interpreter) = interpreter {
            check_locks(&p, &installed, &interpreter)?;
        }
        Ok(Value::Object(facts))
    }
    fn seed_param(&self) -> Option<&'static str> {
        Some("seed")
    }
    fn run(&self, params: &Value, ctx: &Context<'_>) -> Result<Report, StageError> {
        let p = Self::typed(params)?;
        run_command(&p, ctx)
    }
}

/// Every lock file among the env files (an env named `lock`, or a `*.lock` or
/// `requirements*.txt` file) is satisfied by the packages installed beside the interpreter.
fn check_locks(
    p: &CommandParams,
    installed: &BTreeMap<String, pyenv::Dist>,
    interpreter: &str,
) -> Result<(), StageError> {
    for (name, path) in &p.env {
        let file = Path::new(path);
        let file_name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let lock = name.ends_with("lock")
            || file_name.ends_with(".lock")
            || (file_name.starts_with("requirements") && file_name.ends_with(".txt"));
        if !lock || is_executable(file) {
            continue;
        }
        let text = std::fs::read_to_string(file).map_err(|e| StageError::io(file, e))?;
        if let Some(why) = pyenv::unmet(&text, installed) {
            // pip refuses --require-hashes for a lock without hashes (a `pip freeze`), which the
            // docs allow: the advice is the command that installs this lock.
            let hashes = if text.contains("--hash") {
                " --require-hashes"
            } else {
                ""
            };
            return Err(StageError::Invalid(format!(
                "env `{name}` ({path}) {why} in the environment of {interpreter}; install the lock \
                 (`{interpreter} -m pip install --no-deps{hashes} -r {path}`) or update it"
            )));
        }
    }
    Ok(())
}

fn run_command(p: &CommandParams, ctx: &Context<'_>) -> Result<Report, StageError> {
    let lay = Layout::new(p, ctx)?;
    let argv = Argv::new(p, &lay)?;
    let (prepared, granted) = confine(p, &lay, &argv)?;
    let enforcement = prepared.enforcement.clone();
    if !enforcement.missing.is_empty() {
        ctx.events.log(&format!(
            "warning: sandbox: not enforced on this machine: {}",
            enforcement.missing.join("; ")
        ));
    }
    let tmpdir = ShortTmp::new(&lay.tmp, enforcement.private_tmp);
    let mut cmd = std::process::Command::new(&argv.program_path);
    cmd.args(&argv.args)
        .current_dir(&lay.work)
        .env_clear()
        .envs(environment(p, &lay, &tmpdir.dir))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    ctx.events.log(&format!(
        "running `{}` (sandbox {})",
        argv.shown,
        enforcement.describe()
    ));
    let t0 = std::time::Instant::now();
    let limits = p.limits().map_err(|e| StageError::Invalid(e.to_string()))?;
    let Streamed {
        ended,
        lines,
        timed_out,
    } = run_streaming(&prepared, &mut cmd, &argv.program, limits, ctx.events)?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(limit) = timed_out {
        return Err(StageError::Invalid(format!(
            "the command ran past its timeout of {} and was killed, with everything it started (`timeout:` in the stage sets the limit, `none` removes it); its last line: {}",
            crate::time::duration_text(limit),
            lines.last().map_or("(none)", String::as_str)
        )));
    }
    if ended.killed > 0 {
        ctx.events.log(&format!(
            "the command left {} process{} running when it exited; killed before its outputs were read",
            ended.killed,
            if ended.killed == 1 { "" } else { "es" }
        ));
    }
    if !ended.status.success() {
        return Err(StageError::Invalid(failure(
            &ended.status,
            &lines,
            &enforcement,
            &granted,
        )));
    }
    let _ = std::fs::remove_dir_all(&lay.work);
    Ok(Report {
        summary: format!(
            "`{}` ran in {seconds:.1} s, sandbox {}",
            argv.shown,
            enforcement.describe()
        ),
        stdout: None,
        facts: serde_json::json!({
            "program": argv.program_path.display().to_string(),
            "sandbox": enforcement.to_json(),
            "left_behind_killed": ended.killed,
        }),
    })
}

/// The stage's folders and files: its output folder, the scratch folder inside it (`.work`,
/// with `tmp/`), where each output goes, the inputs, and `stage.json`.
struct Layout {
    out_dir: PathBuf,
    work: PathBuf,
    tmp: PathBuf,
    outputs: BTreeMap<String, PathBuf>,
    inputs: BTreeMap<String, PathBuf>,
    stage_file: PathBuf,
    seed_text: String,
    code_abs: Vec<(String, PathBuf)>,
}

impl Layout {
    fn new(p: &CommandParams, ctx: &Context<'_>) -> Result<Layout, StageError> {
        let out_dir = absolute(ctx.out_dir);
        let work = out_dir.join(".work");
        let tmp = work.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| StageError::io(&tmp, e))?;
        let outputs: BTreeMap<String, PathBuf> = p
            .outputs
            .iter()
            .map(|(n, o)| (n.clone(), out_dir.join(o.path.trim_end_matches('/'))))
            .collect();
        for path in outputs.values() {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StageError::io(parent, e))?;
            }
        }
        let inputs: BTreeMap<String, PathBuf> = ctx
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), absolute(v)))
            .collect();
        let seed = p.seed();
        let seed_text = match &seed {
            Value::Null => String::new(),
            v => v.to_string(),
        };
        let stage_json = serde_json::json!({
            "stage": ctx.stage,
            "params": p.params,
            "inputs": inputs,
            "outputs": outputs,
            "threads": p.threads,
            "seed": seed,
            "device": p.device(),
            "scratch": work,
        });
        let stage_file = work.join("stage.json");
        std::fs::write(
            &stage_file,
            serde_json::to_string_pretty(&stage_json).expect("serialises") + "\n",
        )
        .map_err(|e| StageError::io(&stage_file, e))?;
        let code_abs = p
            .code
            .iter()
            .map(|c| (c.clone(), absolute(Path::new(c))))
            .collect();
        Ok(Layout {
            out_dir,
            work,
            tmp,
            outputs,
            inputs,
            stage_file,
            seed_text,
            code_abs,
        })
    }

    /// One argv word with its placeholders filled.
    fn fill(&self, p: &CommandParams, word: &str) -> Result<String, StageError> {
        let mut s = word.to_string();
        for (g, n) in placeholders(word) {
            let (pat, val) = match g.as_str() {
                "inputs" => (
                    format!("{{inputs.{n}}}"),
                    self.inputs
                        .get(&n)
                        .ok_or_else(|| {
                            StageError::Invalid(format!(
                                "`{{inputs.{n}}}` in the command: no input `{n}` (inputs: {})",
                                self.inputs.keys().cloned().collect::<Vec<_>>().join(", ")
                            ))
                        })?
                        .display()
                        .to_string(),
                ),
                "outputs" => (
                    format!("{{outputs.{n}}}"),
                    self.outputs[&n].display().to_string(),
                ),
                "params" => (
                    format!("{{params.{n}}}"),
                    match &p.params[&n] {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    },
                ),
                "threads" => ("{threads}".into(), p.threads.to_string()),
                "seed" => ("{seed}".into(), self.seed_text.clone()),
                "scratch" => ("{scratch}".into(), self.work.display().to_string()),
                _ => continue,
            };
            s = s.replace(&pat, &val);
        }
        Ok(s)
    }

    /// An argv word: a code path written in argv is relative to where magpipe runs, not to the
    /// scratch folder; anything else has its placeholders filled.
    fn word(&self, p: &CommandParams, w: &str) -> Result<String, StageError> {
        if let Some((_, abs)) = self.code_abs.iter().find(|(c, _)| c == w) {
            return Ok(abs.display().to_string());
        }
        if let Some((c, abs)) = self
            .code_abs
            .iter()
            .find(|(c, _)| Path::new(w).starts_with(c.trim_end_matches('/')))
        {
            let rel = Path::new(w)
                .strip_prefix(c.trim_end_matches('/'))
                .unwrap_or(Path::new(""));
            return Ok(abs.join(rel).display().to_string());
        }
        self.fill(p, w)
    }
}

/// The program to run, its arguments, and the command line as the log shows it.
struct Argv {
    program: String,
    program_path: PathBuf,
    args: Vec<String>,
    shown: String,
}

impl Argv {
    fn new(p: &CommandParams, lay: &Layout) -> Result<Argv, StageError> {
        let (program, _) = p.program();
        let program_path =
            absolute(&locate(&program).ok_or_else(|| {
                StageError::Invalid(format!("program `{program}` is not on PATH"))
            })?);
        let args: Vec<String> = match (&p.run, &p.shell) {
            (Some(argv), _) => argv[1..]
                .iter()
                .map(|w| lay.word(p, w))
                .collect::<Result<_, _>>()?,
            (_, Some(line)) => vec!["-c".into(), lay.fill(p, line)?],
            _ => unreachable!("checked when resolved"),
        };
        let shown = std::iter::once(program.clone())
            .chain(match (&p.run, &p.shell) {
                (Some(argv), _) => argv[1..].to_vec(),
                (_, Some(line)) => vec!["-c".into(), line.clone()],
                _ => Vec::new(),
            })
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Argv {
            program,
            program_path,
            args,
            shown,
        })
    }
}

/// The sandbox for this stage, and the paths it grants (read or write), by which a failure
/// is judged a denial.
fn confine(
    p: &CommandParams,
    lay: &Layout,
    argv: &Argv,
) -> Result<(sandbox::Prepared, Vec<PathBuf>), StageError> {
    let strict = p.sandbox == SandboxMode::Strict;
    let mut read: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    read.extend(lay.inputs.values().cloned());
    read.extend(lay.code_abs.iter().map(|(_, a)| a.clone()));
    for e in p.env.values() {
        let e = absolute(Path::new(e));
        if is_executable(&e) {
            read.extend(prefixes(&e));
        } else {
            read.push(e.clone());
            read.extend(std::fs::canonicalize(&e).ok());
        }
    }
    read.extend(prefixes(&argv.program_path));
    let write = vec![lay.out_dir.clone(), PathBuf::from("/dev/null")];
    let under_tmp = |p: &PathBuf| {
        p.starts_with("/tmp") || std::fs::canonicalize(p).is_ok_and(|c| c.starts_with("/tmp"))
    };
    let prepared = sandbox::prepare(&sandbox::Ask {
        strict,
        network: p.network,
        read: &read,
        write: &write,
        private_tmp: !read.iter().chain(&write).any(under_tmp),
        writable: Some(lay.out_dir.clone()),
        tmp_link: Some(lay.tmp.clone()),
    })
    .map_err(StageError::Invalid)?;
    let mut granted = read;
    granted.extend(write);
    if prepared.enforcement.namespaces && strict {
        granted.push(PathBuf::from("/dev/shm"));
    }
    if prepared.enforcement.private_tmp {
        granted.push(PathBuf::from("/tmp"));
    }
    Ok((prepared, granted))
}

/// The program's `TMPDIR`: a short name for its scratch folder's `tmp`, so the Unix sockets
/// Python's multiprocessing binds under it fit the 107-byte limit however deep the store lies:
/// [`sandbox::PRIVATE_TMPDIR`] under a private `/tmp`, else a link in the machine's `/tmp`
/// made for this run (removed with this value), else the scratch path itself.
struct ShortTmp {
    dir: String,
    link: Option<PathBuf>,
}

impl ShortTmp {
    fn new(scratch_tmp: &Path, private_tmp: bool) -> ShortTmp {
        if private_tmp {
            return ShortTmp {
                dir: sandbox::PRIVATE_TMPDIR.into(),
                link: None,
            };
        }
        Self::sweep(scratch_tmp);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        for attempt in 0..8u64 {
            let tag = &blake3::hash(format!("{}-{nanos}-{attempt}", std::process::id()).as_bytes())
                .to_hex()[..12];
            let link = PathBuf::from(format!("/tmp/magpipe-{tag}"));
            if std::os::unix::fs::symlink(scratch_tmp, &link).is_ok() {
                return ShortTmp {
                    dir: link.display().to_string(),
                    link: Some(link),
                };
            }
        }
        ShortTmp {
            dir: scratch_tmp.display().to_string(),
            link: None,
        }
    }
}

impl ShortTmp {
    /// Removes this user's links of killed runs (a killed magpipe removes none): those whose
    /// scratch folder is gone. Once per process: a run of many stages reads /tmp once.
    fn sweep(ours: &Path) {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| Self::sweep_now(ours));
    }

    fn sweep_now(ours: &Path) {
        use std::os::unix::fs::MetadataExt;
        // The scratch folder is this process's, so its owner is this user.
        let Ok(uid) = std::fs::metadata(ours).map(|m| m.uid()) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir("/tmp") else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let is_ours = name
                .to_str()
                .is_some_and(|n| n.len() == "magpipe-".len() + 12 && n.starts_with("magpipe-"));
            let path = e.path();
            if is_ours
                && std::fs::symlink_metadata(&path)
                    .is_ok_and(|m| m.file_type().is_symlink() && m.uid() == uid)
                && std::fs::metadata(&path).is_err()
            {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

impl Drop for ShortTmp {
    fn drop(&mut self) {
        if let Some(l) = &self.link {
            let _ = std::fs::remove_file(l);
        }
    }
}

/// The program's whole environment: nothing of magpipe's but `PATH`.
fn environment(p: &CommandParams, lay: &Layout, tmpdir: &str) -> Vec<(String, String)> {
    let threads = p.threads.to_string();
    let mut envs: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        ),
        ("LANG".into(), "C.UTF-8".into()),
        ("HOME".into(), lay.work.display().to_string()),
        ("TMPDIR".into(), tmpdir.to_string()),
        ("PYTHONNOUSERSITE".into(), "1".into()),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ("PYTHONHASHSEED".into(), "0".into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("OMP_NUM_THREADS".into(), threads.clone()),
        ("OPENBLAS_NUM_THREADS".into(), threads.clone()),
        ("MKL_NUM_THREADS".into(), threads.clone()),
        ("MAGPIPE_THREADS".into(), threads),
        ("MAGPIPE_STAGE".into(), lay.stage_file.display().to_string()),
        (
            "MAGPIPE_PARAMS".into(),
            Value::Object(p.params.clone()).to_string(),
        ),
        ("MAGPIPE_SEED".into(), lay.seed_text.clone()),
        ("MAGPIPE_DEVICE".into(), p.device()),
    ];
    for (k, v) in &lay.inputs {
        envs.push((
            format!("MAGPIPE_IN_{}", env_name(k)),
            v.display().to_string(),
        ));
    }
    for (k, v) in &lay.outputs {
        envs.push((
            format!("MAGPIPE_OUT_{}", env_name(k)),
            v.display().to_string(),
        ));
    }
    envs
}

/// How a confined program's run ended, as the watcher saw it.
struct Streamed {
    ended: sandbox::Ended,
    /// The last lines that judge a failure (stderr's, else stdout's).
    lines: Vec<String>,
    /// Killed for running past this limit.
    timed_out: Option<std::time::Duration>,
}

/// The moment of the last line a program printed, and that line, shared by the readers and
/// the watcher.
struct LastLine(Mutex<(std::time::Instant, String)>);

impl LastLine {
    fn saw(&self, line: &str) {
        let mut l = self.0.lock().expect("last line lock");
        l.0 = std::time::Instant::now();
        if !line.trim().is_empty() {
            l.1 = line.to_string();
        }
    }
    fn get(&self) -> (std::time::Instant, String) {
        self.0.lock().expect("last line lock").clone()
    }
}

/// Starts the program confined, streams its stdout and stderr into the stage's log (progress
/// lines move the bar), and waits until it and everything it started are gone: killed, all of
/// them, once it runs past its timeout; a warning in the log whenever it prints nothing for
/// the stall period.
fn run_streaming(
    prepared: &sandbox::Prepared,
    cmd: &mut std::process::Command,
    program: &str,
    limits: Limits,
    events: &dyn Events,
) -> Result<Streamed, StageError> {
    let mut running = prepared
        .spawn(cmd)
        .map_err(|e| StageError::Invalid(format!("cannot start `{program}`: {e}")))?;
    // Apart, so the line a failure is judged by does not depend on how two threads interleave:
    // a program's error is on stderr; stdout's last line counts only when stderr has none.
    let out_tail = Tail(Mutex::new(VecDeque::new()));
    let err_tail = Tail(Mutex::new(VecDeque::new()));
    let last = LastLine(Mutex::new((std::time::Instant::now(), String::new())));
    let stdout = running.child.stdout.take().expect("piped");
    let stderr = running.child.stderr.take().expect("piped");
    let killer = running.killer();
    let mut timed_out = None;
    let ended = std::thread::scope(|s| {
        s.spawn(|| {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                last.saw(&line);
                events.log(&line);
                if !line.trim().is_empty() {
                    out_tail.push(&line);
                }
            }
        });
        s.spawn(|| {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                last.saw(&line);
                if let Some((done, total, unit)) = progress_line(&line) {
                    events.progress(done, total, &unit);
                    continue;
                }
                events.log(&line);
                if !line.trim().is_empty() {
                    err_tail.push(&line);
                }
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let _ = tx.send(running.wait());
        });
        watch(&rx, &killer, limits, &last, events, &mut timed_out)
    })
    .map_err(|e| StageError::Invalid(format!("waiting for `{program}`: {e}")))?;
    let lines = match err_tail.lines() {
        l if l.is_empty() => out_tail.lines(),
        l => l,
    };
    Ok(Streamed {
        ended,
        lines,
        timed_out,
    })
}

/// Waits for the program's end (from `rx`), checking once a second whether it ran past its
/// timeout (then kills it and everything it started, and keeps waiting for the end) or has
/// been silent for the stall period (then says so, once per silence).
fn watch(
    rx: &std::sync::mpsc::Receiver<std::io::Result<sandbox::Ended>>,
    killer: &sandbox::Killer,
    limits: Limits,
    last: &LastLine,
    events: &dyn Events,
    timed_out: &mut Option<std::time::Duration>,
) -> std::io::Result<sandbox::Ended> {
    let t0 = std::time::Instant::now();
    let mut warned_at: Option<std::time::Instant> = None;
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(ended) => return ended,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(std::io::Error::other("the waiting thread ended"));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(limit) = limits.timeout
            && timed_out.is_none()
            && t0.elapsed() >= limit
        {
            *timed_out = Some(limit);
            killer.kill();
            continue;
        }
        if let Some(stall) = limits.stall {
            let (at, line) = last.get();
            if at.elapsed() >= stall && warned_at != Some(at) {
                warned_at = Some(at);
                let left = limits.timeout.map_or(String::new(), |l| {
                    format!(
                        "; it is killed at its timeout, in {}",
                        crate::time::duration_text(l.saturating_sub(t0.elapsed()))
                    )
                });
                events.log(&format!(
                    "warning: the command has printed nothing for {}{}{left} (stall_warning: sets this period)",
                    crate::time::duration_text(at.elapsed()),
                    if line.is_empty() {
                        String::new()
                    } else {
                        format!(" since `{line}`")
                    }
                ));
            }
        }
    }
}

/// The one line a failed command gets: its own last error, or, when that error says a path was
/// refused and the path is outside everything the sandbox granted, that the sandbox denied it.
fn failure(
    status: &std::process::ExitStatus,
    lines: &[String],
    enforcement: &Enforcement,
    granted: &[PathBuf],
) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".into(),
    };
    let last = lines.last().cloned().unwrap_or_default();
    let denied = enforcement
        .enforced()
        .then(|| denied_path(&last, granted))
        .flatten();
    match denied {
        // A write: the file system is read-only there (EROFS), or the file does not exist yet.
        Some(path)
            if last.contains("Read-only file system")
                || last.contains("EROFS")
                || !Path::new(&path).exists() =>
        {
            format!(
                "the command was denied writing {path}, outside its scratch folder (sandbox); write it under the scratch folder ({{scratch}}, $TMPDIR) or declare it as an output ({how}: {last})"
            )
        }
        Some(path) => format!(
            "the command was denied a file it did not declare (sandbox): {path}; declare it under inputs or code, or set sandbox: off ({how}: {last})"
        ),
        None if last.is_empty() => format!("the command {how}"),
        None => format!("the command {how}: {last}"),
    }
}

/// The path a program's final error line says was refused, when the sandbox granted nothing
/// at or above it. Only that line counts: a warning earlier in the log that mentions a
/// permission is not the program's failure.
fn denied_path(last: &str, granted: &[PathBuf]) -> Option<String> {
    // EROFS too: outside its folder the program's mount tree is read-only.
    let refused = [
        "Permission denied",
        "PermissionError",
        "Operation not permitted",
        "EACCES",
        "Read-only file system",
        "EROFS",
    ]
    .iter()
    .any(|w| last.contains(w));
    if !refused {
        return None;
    }
    last.split(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '`')
        .map(|t| t.trim_end_matches([':', ',', ';', ')']))
        .filter(|t| t.starts_with('/'))
        .find(|t| {
            let path = Path::new(t);
            !granted.iter().any(|g| path.starts_with(g))
        })
        .map(str::to_string)
}
