//! Runs a plan: keys, cache lookups, independent stages concurrently on a rayon pool, outputs
//! committed to the store, events to a sink.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::kind::{Events, Report};
use rayon::prelude::*;

use crate::error::{RunError, StoreError};
use crate::events::{Event, Sink};
use crate::executor::{Choice, Executor, Local, Slurm, StageJob};
use crate::key::{FORMAT, PreImage, SourceRef};
use crate::plan::Plan;
use crate::stale::StaleReason;
use crate::store::{Claim, Record, Store};

/// The key pre-image of stage `i`, given the records of its upstream stages.
pub fn preimage(
    plan: &Plan,
    store: &Store,
    i: usize,
    done: &BTreeMap<usize, Record>,
) -> Result<PreImage, RunError> {
    let s = &plan.stages[i];
    let mut inputs = BTreeMap::new();
    for w in &s.inputs {
        let r = done
            .get(&w.from)
            .expect("upstream stages are resolved before their dependents");
        let o = r.outputs.get(&w.output).ok_or_else(|| StoreError::Record {
            path: store.record_path(&r.key),
            msg: format!("has no output `{}`", w.output),
        })?;
        inputs.insert(w.slot.clone(), o.hash.clone());
    }
    let stage_err = |error| RunError::Stage {
        stage: s.name.clone(),
        error,
    };
    let mut sources = Vec::new();
    for src in s.kind.sources(&s.params).map_err(stage_err)? {
        let (hash, size) = store.source_hash(&src.path).map_err(|e| match e {
            StoreError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
                stage_err(crate::kind::StageError::Missing(src.path.clone()))
            }
            other => other.into(),
        })?;
        sources.push(SourceRef {
            name: src.name,
            size,
            hash,
            role: src.role,
        });
    }
    Ok(PreImage {
        format: FORMAT,
        kind: s.kind.name().to_string(),
        kind_version: s.kind.version(),
        params: s.kind.key_params(&s.params),
        inputs,
        sources,
        runtime: s
            .kind
            .runtime(&s.params, &store.root.join("cache"))
            .map_err(stage_err)?,
    })
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub targets: Vec<String>,
    pub force: Vec<String>,
    pub jobs: usize,
    pub executor: Choice,
    /// Keep a failed stage's scratch folder and its log under `failed/` instead of removing them.
    pub keep_failed: bool,
    /// Look each stale stage's key up on this remote first, and take a verified hit instead of
    /// computing it.
    pub pull: Option<std::sync::Arc<crate::remote::Remote>>,
    /// With `pull`: never compute; a stage the remote lacks is skipped (`magpipe pull`).
    pub pull_only: bool,
}

#[derive(Debug)]
pub enum Outcome {
    Ran(Record, Report),
    Cached(Record),
    /// Taken from a remote, verified, into the store.
    Pulled(Record),
    Failed(Failure),
    /// Not run because an upstream stage did not finish; says which.
    Skipped(String),
}

/// A stage that failed, with the typed error (a stage's own error, a store that could not take
/// its outputs, …).
#[derive(Debug)]
pub struct Failure {
    pub stage: String,
    pub error: RunError,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // These already say which stage they stopped.
        fn names_stage(e: &RunError) -> bool {
            match e {
                RunError::Stage { .. }
                | RunError::Commit { .. }
                | RunError::Store(StoreError::MissingOutput { .. }) => true,
                RunError::Kept { error, .. } => names_stage(error),
                _ => false,
            }
        }
        if names_stage(&self.error) {
            write!(f, "{}", self.error)
        } else {
            write!(f, "stage `{}`: {}", self.stage, self.error)
        }
    }
}

pub struct RunResult {
    /// Per selected stage, in plan order.
    pub outcomes: Vec<(usize, Outcome)>,
}

impl RunResult {
    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
            .count()
    }
}

/// A stage's progress and logs as events of the run's sink (also used by `magpipe forecast`
/// for its model runs).
pub struct StageEvents<'a> {
    pub sink: &'a dyn Sink,
    pub stage: &'a str,
}

impl Events for StageEvents<'_> {
    fn progress(&self, done: u64, total: u64, unit: &str) {
        self.sink.emit(Event::StageProgress {
            stage: self.stage.to_string(),
            done,
            total,
            unit: unit.to_string(),
        });
    }
    fn log(&self, msg: &str) {
        self.sink.emit(Event::StageLog {
            stage: self.stage.to_string(),
            msg: msg.to_string(),
        });
    }
}

/// Test hook: `MAGPIPE_FAULT=pause-before-record:<stage>` stops that stage after its objects are
/// committed and before its record is written, so a test can kill the process at the one moment
/// where a half-finished stage could otherwise look done.
fn fault_pause(stage: &str, sink: &dyn Sink) {
    if let Ok(f) = std::env::var("MAGPIPE_FAULT")
        && f.strip_prefix("pause-before-record:") == Some(stage)
    {
        sink.emit(Event::StageLog {
            stage: stage.to_string(),
            msg: "paused before record (MAGPIPE_FAULT)".into(),
        });
        std::thread::sleep(std::time::Duration::from_secs(600));
    }
}

/// What one stage's run needs from the scheduler.
#[derive(Clone, Copy)]
struct StageRun<'a> {
    plan: &'a Plan,
    store: &'a Store,
    executor: &'a dyn Executor,
    i: usize,
    done: &'a BTreeMap<usize, Record>,
    force: bool,
    threads: usize,
    sink: &'a dyn Sink,
    keep_failed: bool,
    remote: Option<&'a crate::remote::Remote>,
    pull_only: bool,
}

/// The stage's record from the remote, verified and in the store, or why not (the stage is then
/// computed, or skipped by `pull`): a miss other than "absent" and an unreachable remote are
/// said, never fatal.
fn pull_from(
    r: &StageRun<'_>,
    remote: &crate::remote::Remote,
    key: &str,
) -> Result<Record, String> {
    let s = &r.plan.stages[r.i];
    let say = |msg: String| {
        r.sink.emit(Event::StageLog {
            stage: s.name.clone(),
            msg,
        })
    };
    // A record must give the outputs this stage declares, or the stages after it could not
    // read them.
    let expect = |rec: &Record| -> Result<(), String> {
        let want: Vec<(&str, &str, bool)> = s
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), o.file.as_str(), o.dir))
            .collect();
        let got: Vec<(&str, &str, bool)> = rec
            .outputs
            .iter()
            .map(|(n, o)| (n.as_str(), o.file.as_str(), o.dir))
            .collect();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        if want_sorted == got {
            Ok(())
        } else {
            Err(format!(
                "its outputs ({}) are not the ones stage `{}` declares ({})",
                got.iter().map(|g| g.0).collect::<Vec<_>>().join(", "),
                s.name,
                want.iter().map(|w| w.0).collect::<Vec<_>>().join(", ")
            ))
        }
    };
    match remote.fetch(r.store, key, &expect, &|_| {}) {
        Ok(Ok(rec)) => {
            if let Some(note) = remote.open_trust_note() {
                say(note);
            }
            r.sink.emit(Event::StagePulled {
                stage: s.name.clone(),
                key: key.to_string(),
                remote: remote.name.clone(),
                signer: rec.pulled.as_ref().and_then(|p| p.signer.clone()),
            });
            Ok(rec)
        }
        Ok(Err(crate::remote::Miss::Absent)) => Err(format!(
            "{} is not on remote `{}`",
            crate::stale::short(key),
            remote.name
        )),
        Ok(Err(miss)) => {
            let why = format!(
                "remote `{}` has {} but it was not taken: {miss}",
                remote.name,
                crate::stale::short(key)
            );
            say(why.clone());
            Err(why)
        }
        Err(e) => {
            let why = format!("remote `{}` could not be read ({e})", remote.name);
            say(if r.pull_only {
                why.clone()
            } else {
                format!("{why}; computing instead")
            });
            Err(why)
        }
    }
}

/// Passes every event on and keeps one stage's log lines, for `--keep-failed`.
struct LogTee<'a> {
    inner: &'a dyn Sink,
    stage: &'a str,
    lines: std::sync::Mutex<Vec<String>>,
}

impl Sink for LogTee<'_> {
    fn emit(&self, e: Event) {
        if let Event::StageLog { stage, msg } = &e
            && stage == self.stage
            && let Ok(mut lines) = self.lines.lock()
        {
            lines.push(msg.clone());
        }
        self.inner.emit(e);
    }
}

/// Moves a failed stage's scratch folder to `failed/<stage>-<key>-<time>/scratch/` beside the
/// stage's log (`log.txt`, ending with the error), and says where in the error.
fn keep_failed(
    store: &Store,
    stage: &str,
    key: &str,
    scratch: crate::store::Scratch,
    log: &LogTee<'_>,
    error: RunError,
) -> RunError {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let at = store
        .root
        .join("failed")
        .join(format!("{stage}-{}-{stamp}", &key[..12]));
    let mut text = log.lines.lock().map(|l| l.join("\n")).unwrap_or_default();
    text.push_str(&format!("\nerror: {error}\n"));
    let kept = std::fs::create_dir_all(&at)
        .and_then(|()| std::fs::write(at.join("log.txt"), text))
        .and_then(|()| scratch.keep(&at.join("scratch")));
    match kept {
        Ok(()) => RunError::Kept {
            error: Box::new(error),
            at,
        },
        Err(e) => {
            tracing::warn!(
                "stage `{stage}`: could not keep its scratch folder in {}: {e}",
                at.display()
            );
            error
        }
    }
}

/// One stage: its key, a cache hit or its lock, then run → check → commit → record; with
/// `--keep-failed`, a failure keeps what the stage left.
fn execute(r: &StageRun<'_>) -> Result<Outcome, RunError> {
    let s = &r.plan.stages[r.i];
    let pre = preimage(r.plan, r.store, r.i, r.done)?;
    let key = pre.key();
    tracing::debug!(stage = %s.name, %key, preimage = %serde_json::to_string(&pre).unwrap_or_default(), "key");
    let _lock = match r.store.claim(&key, r.force)? {
        Claim::Hit(rec) => {
            r.sink.emit(Event::StageCached {
                stage: s.name.clone(),
                key,
            });
            return Ok(Outcome::Cached(*rec));
        }
        Claim::Miss(lock) => lock,
    };
    // `--force` means computing it here, whatever any cache holds.
    if let Some(remote) = r.remote.filter(|_| !r.force) {
        let why = match pull_from(r, remote, &key) {
            Ok(rec) => return Ok(Outcome::Pulled(rec)),
            Err(why) => why,
        };
        if r.pull_only {
            let because = why;
            r.sink.emit(Event::StageSkipped {
                stage: s.name.clone(),
                because: because.clone(),
            });
            return Ok(Outcome::Skipped(because));
        }
    }
    if let Some(prev) = &_lock.stale {
        r.sink.emit(Event::StageLog {
            stage: s.name.clone(),
            msg: format!("took over a stale lock left by a process that died holding it ({prev})"),
        });
    }
    r.sink.emit(Event::StageStarted {
        stage: s.name.clone(),
        key: key.clone(),
    });
    // Removed when dropped, whatever happens, unless kept for `--keep-failed`.
    let scratch = r.store.scratch(&key)?;
    if !r.keep_failed {
        return run_claimed(r, pre, key, &scratch);
    }
    let log = LogTee {
        inner: r.sink,
        stage: &s.name,
        lines: std::sync::Mutex::new(Vec::new()),
    };
    let teed = StageRun { sink: &log, ..*r };
    run_claimed(&teed, pre, key.clone(), &scratch)
        .map_err(|error| keep_failed(r.store, &s.name, &key, scratch, &log, error))
}

/// Run → check → commit → record, for a claimed key in its scratch folder.
fn run_claimed(
    r: &StageRun<'_>,
    pre: crate::key::PreImage,
    key: String,
    scratch: &std::path::Path,
) -> Result<Outcome, RunError> {
    let s = &r.plan.stages[r.i];
    let checkpoint_dir = r.store.root.join("checkpoints").join(&key);
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let t0 = Instant::now();
    let ran = run_job(r, scratch, &checkpoint_dir)?;
    let seconds = t0.elapsed().as_secs_f64();
    check_outputs(r, &ran.out_dir)?;
    let outputs = commit_outputs(r, &ran.out_dir)?;
    fault_pause(&s.name, r.sink);
    let record = Record {
        key: key.clone(),
        stage: s.name.clone(),
        preimage: pre,
        outputs,
        started_unix,
        seconds,
        magpipe_version: env!("CARGO_PKG_VERSION").to_string(),
        summary: ran.report.summary.clone(),
        facts: ran.report.facts.clone(),
        git_commit: crate::GIT_COMMIT.to_string(),
        upstream: s
            .inputs
            .iter()
            .map(|w| (w.slot.clone(), r.done[&w.from].key.clone()))
            .collect(),
        source_paths: source_paths(s),
        executor: ran.info,
        pulled: None,
    };
    r.store.write_record(&record)?;
    r.store.remove_checkpoints(&checkpoint_dir);
    r.sink.emit(Event::StageFinished {
        stage: s.name.clone(),
        key,
        seconds,
        summary: ran.report.summary.clone(),
    });
    Ok(Outcome::Ran(record, ran.report))
}

/// Hands the stage to the executor with its inputs (the upstream objects) and scratch folder.
fn run_job(
    r: &StageRun<'_>,
    scratch: &std::path::Path,
    checkpoint_dir: &std::path::Path,
) -> Result<crate::executor::Ran, RunError> {
    let s = &r.plan.stages[r.i];
    let inputs: BTreeMap<String, PathBuf> = s
        .inputs
        .iter()
        .map(|w| {
            let o = &r.done[&w.from].outputs[&w.output];
            (w.slot.clone(), r.store.object_path(o))
        })
        .collect();
    let events = StageEvents {
        sink: r.sink,
        stage: &s.name,
    };
    let job = StageJob {
        stage: s.name.clone(),
        kind: s.kind.name().to_string(),
        params: s.params.clone(),
        inputs,
        out_dir: scratch.to_path_buf(),
        checkpoint_dir: checkpoint_dir.to_path_buf(),
        threads: r.threads,
        attempt: 0,
    };
    r.executor
        .run_stage(s.kind.as_ref(), job, &events)
        .map_err(|error| RunError::Stage {
            stage: s.name.clone(),
            error,
        })
}

/// Every declared output is there and of its declared type (a link, FIFO, socket or device is
/// refused with what it is, and never followed), and satisfies the contract it claims, before
/// anything of the stage is committed.
fn check_outputs(r: &StageRun<'_>, out_dir: &std::path::Path) -> Result<(), RunError> {
    let s = &r.plan.stages[r.i];
    let invalid = |msg: String| RunError::Stage {
        stage: s.name.clone(),
        error: crate::kind::StageError::Invalid(msg),
    };
    for o in &s.outputs {
        // The folders on the way (`sub/` of `sub/x.txt`) must be folders too: a link there would
        // make magpipe, which runs unconfined, read through it.
        let mut at = out_dir.to_path_buf();
        let parts: Vec<_> = std::path::Path::new(&o.file).components().collect();
        for c in &parts[..parts.len().saturating_sub(1)] {
            at.push(c);
            if let Ok(m) = std::fs::symlink_metadata(&at)
                && !m.is_dir()
            {
                return Err(invalid(format!(
                    "output `{}` ({}): {} is {}, not a folder; it was not committed",
                    o.name,
                    o.file,
                    at.strip_prefix(out_dir).unwrap_or(&at).display(),
                    crate::store::file_type_name(&m.file_type())
                )));
            }
        }
        let m = match std::fs::symlink_metadata(out_dir.join(&o.file)) {
            Ok(m) => m,
            Err(_) => {
                return Err(StoreError::MissingOutput {
                    stage: s.name.clone(),
                    file: o.file.clone(),
                }
                .into());
            }
        };
        let (ok, want) = if o.dir {
            (m.is_dir(), "a folder")
        } else {
            (m.is_file(), "a regular file")
        };
        if !ok {
            return Err(invalid(format!(
                "output `{}` ({}) is {}, not {want}; it was not committed",
                o.name,
                o.file,
                crate::store::file_type_name(&m.file_type())
            )));
        }
    }
    let peers = crate::contract::Peers {
        inputs: s
            .inputs
            .iter()
            .map(|w| {
                let claims = r.plan.stages[w.from]
                    .outputs
                    .iter()
                    .find(|o| o.name == w.output)
                    .and_then(|o| o.contract.clone());
                let o = &r.done[&w.from].outputs[&w.output];
                (claims, r.store.object_path(o))
            })
            .collect(),
    };
    for o in &s.outputs {
        let Some(name) = &o.contract else { continue };
        let c =
            r.plan.registry.contract(name).ok_or_else(|| {
                invalid(format!("output {}: no contract `{name}` is known", o.name))
            })?;
        c.check(&out_dir.join(&o.file), &peers)
            .map_err(|m| invalid(format!("output {}: {m} ({name})", o.name)))?;
    }
    Ok(())
}

/// Copies the outputs into the store: fsynced and hashed in parallel, since the fsync of a
/// large one dominates otherwise.
fn commit_outputs(
    r: &StageRun<'_>,
    out_dir: &std::path::Path,
) -> Result<BTreeMap<String, crate::store::OutputRecord>, RunError> {
    let s = &r.plan.stages[r.i];
    let committed = s
        .outputs
        .par_iter()
        .map(|o| {
            Ok((
                o.name.clone(),
                if o.dir {
                    r.store.commit_dir(&out_dir.join(&o.file), &o.file)?
                } else {
                    r.store.commit_object(&out_dir.join(&o.file), &o.file)?
                },
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(committed.into_iter().collect())
}

/// raw-file name → the path it was read from, for the record (and lineage).
pub(crate) fn source_paths(s: &crate::plan::Stage) -> BTreeMap<String, String> {
    s.kind
        .sources(&s.params)
        .unwrap_or_default()
        .into_iter()
        .map(|src| {
            let path = std::fs::canonicalize(&src.path).unwrap_or(src.path);
            (src.name, path.display().to_string())
        })
        .collect()
}

/// Runs the selected stages (the targets and what they need): each is cached, pulled or run,
/// in dependency order, `jobs` at a time; then moves their refs.
pub fn run(
    plan: &Plan,
    store: &Store,
    opts: &RunOptions,
    sink: &dyn Sink,
) -> Result<RunResult, RunError> {
    let selected = plan.select(&opts.targets).map_err(RunError::Usage)?;
    for f in &opts.force {
        if plan.index(f).is_none() {
            return Err(RunError::Usage(format!("--force {f}: no such stage")));
        }
    }
    let jobs = opts.jobs.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("magpipe-{i}"))
        .build()
        .map_err(|e| RunError::Usage(format!("cannot start {jobs} worker threads: {e}")))?;
    let executor = executor_for(&opts.executor, store)?;
    // Held until the run returns: gc keeps what this run validates and commits meanwhile.
    store.begin_lease("run")?;
    let t0 = Instant::now();
    sink.emit(Event::RunStarted {
        stages: selected.len(),
        variant: plan.variant.clone(),
    });
    let sched = Scheduler {
        plan,
        store,
        opts,
        sink,
        executor: executor.as_ref(),
        jobs,
    };
    let mut outcomes = pool.in_place_scope(|scope| sched.run_all(scope, &selected));
    let result = RunResult {
        outcomes: selected
            .iter()
            .map(|i| {
                (
                    *i,
                    outcomes
                        .remove(i)
                        .expect("every selected stage has an outcome"),
                )
            })
            .collect(),
    };
    let count = |f: fn(&Outcome) -> bool| result.outcomes.iter().filter(|(_, o)| f(o)).count();
    sink.emit(Event::RunFinished {
        ran: count(|o| matches!(o, Outcome::Ran(..))),
        cached: count(|o| matches!(o, Outcome::Cached(_))),
        pulled: count(|o| matches!(o, Outcome::Pulled(_))),
        failed: count(|o| matches!(o, Outcome::Failed(_))),
        skipped: count(|o| matches!(o, Outcome::Skipped(_))),
        seconds: t0.elapsed().as_secs_f64(),
    });
    move_refs(plan, store, &result)?;
    if result.failed() == 0 {
        store.save_source_cache()?;
    }
    Ok(result)
}

/// The executor `--executor` chose; a Slurm one logs under the store, named by this run.
fn executor_for(choice: &Choice, store: &Store) -> Result<Box<dyn Executor>, RunError> {
    Ok(match choice {
        Choice::Local => Box::new(Local),
        Choice::Slurm(cfg) => {
            let run_id = format!(
                "{}-{}",
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                std::process::id()
            );
            Box::new(
                Slurm::new(cfg.clone(), &run_id, store.root.join("logs").join("slurm"))
                    .map_err(|e| RunError::Executor(e.to_string()))?,
            )
        }
    })
}

/// What a run's stages share while they are scheduled.
struct Scheduler<'a> {
    plan: &'a Plan,
    store: &'a Store,
    opts: &'a RunOptions,
    sink: &'a dyn Sink,
    executor: &'a dyn Executor,
    jobs: usize,
}

impl<'a> Scheduler<'a> {
    /// Runs every selected stage once its inputs are done, at most `jobs` at a time; a stage
    /// whose upstream failed or was skipped is skipped. Returns each stage's outcome.
    fn run_all<'s>(
        &'s self,
        scope: &rayon::Scope<'s>,
        selected: &[usize],
    ) -> BTreeMap<usize, Outcome> {
        let mut done: BTreeMap<usize, Record> = BTreeMap::new();
        let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
        let mut started = std::collections::BTreeSet::new();
        let mut running = 0usize;
        let (tx, rx) = mpsc::channel::<(usize, Result<Outcome, RunError>)>();
        loop {
            let ready = self.ready(selected, &done, &mut outcomes, &started);
            for (i, deps) in ready.into_iter().take(self.jobs.saturating_sub(running)) {
                started.insert(i);
                running += 1;
                let ups: BTreeMap<usize, Record> =
                    deps.iter().map(|d| (*d, done[d].clone())).collect();
                let tx = tx.clone();
                scope.spawn(move |_| {
                    let _ = tx.send((i, self.execute(i, &ups)));
                });
            }
            if running == 0 {
                break;
            }
            let (i, r) = rx.recv().expect("a running stage reports back");
            running -= 1;
            let o = self.outcome(i, r);
            if let Outcome::Ran(rec, _) | Outcome::Cached(rec) | Outcome::Pulled(rec) = &o {
                done.insert(i, rec.clone());
            }
            outcomes.insert(i, o);
        }
        outcomes
    }

    /// The stages whose inputs are all done and that have not started, highest priority first
    /// (plan order among equals), with their inputs; a stage whose upstream failed or was
    /// skipped is skipped here, saying which. Queueing them all on the pool would start them in
    /// plan order whatever their priority, so the caller starts only as many as it has room
    /// for.
    fn ready(
        &self,
        selected: &[usize],
        done: &BTreeMap<usize, Record>,
        outcomes: &mut BTreeMap<usize, Outcome>,
        started: &std::collections::BTreeSet<usize>,
    ) -> Vec<(usize, std::collections::BTreeSet<usize>)> {
        let plan = self.plan;
        let mut ready = Vec::new();
        for &i in selected {
            if outcomes.contains_key(&i) || started.contains(&i) {
                continue;
            }
            let deps = plan.deps(i);
            if let Some(bad) = deps.iter().find(|d| {
                matches!(
                    outcomes.get(d),
                    Some(Outcome::Failed(_) | Outcome::Skipped(_))
                )
            }) {
                let because = format!("upstream `{}` did not finish", plan.stages[*bad].name);
                self.sink.emit(Event::StageSkipped {
                    stage: plan.stages[i].name.clone(),
                    because: because.clone(),
                });
                outcomes.insert(i, Outcome::Skipped(because));
                continue;
            }
            if !deps.iter().all(|d| done.contains_key(d)) {
                continue;
            }
            ready.push((i, deps));
        }
        ready.sort_by_key(|(i, _)| std::cmp::Reverse(plan.stages[*i].priority));
        ready
    }

    fn execute(&self, i: usize, ups: &BTreeMap<usize, Record>) -> Result<Outcome, RunError> {
        let opts = self.opts;
        execute(&StageRun {
            plan: self.plan,
            store: self.store,
            executor: self.executor,
            i,
            done: ups,
            force: opts.force.contains(&self.plan.stages[i].name),
            threads: self.jobs,
            sink: self.sink,
            keep_failed: opts.keep_failed,
            remote: opts.pull.as_deref(),
            pull_only: opts.pull_only,
        })
    }

    /// A stage's outcome; a store failure (a full disk, say) happens outside the stage's own
    /// code, and the failure still says which stage it stopped.
    fn outcome(&self, i: usize, r: Result<Outcome, RunError>) -> Outcome {
        match r {
            Ok(o) => o,
            Err(error) => {
                let failure = Failure {
                    stage: self.plan.stages[i].name.clone(),
                    error,
                };
                self.sink.emit(Event::StageFailed {
                    stage: failure.stage.clone(),
                    error: failure.to_string(),
                });
                Outcome::Failed(failure)
            }
        }
    }
}

/// Points each finished stage's ref at the key it finished under.
fn move_refs(plan: &Plan, store: &Store, result: &RunResult) -> Result<(), RunError> {
    for (i, o) in &result.outcomes {
        if let Outcome::Ran(r, _) | Outcome::Cached(r) | Outcome::Pulled(r) = o {
            let stage = &plan.stages[*i].name;
            let written = store.write_ref(plan.variant.as_deref(), stage, &r.key);
            match written {
                Ok(()) => {}
                // A failed stage is the news; a ref that could not follow it (the same full
                // disk, say) only makes `status --explain` less precise.
                Err(e) if result.failed() > 0 => {
                    tracing::warn!("stage `{stage}`: ref not updated: {e}");
                }
                Err(error) => {
                    return Err(RunError::Commit {
                        stage: stage.clone(),
                        error,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Freshness of one stage, as `magpipe status` reports it.
pub enum Freshness {
    Fresh(Box<Record>),
    Stale {
        key: Option<String>,
        why: Vec<StaleReason>,
    },
}

/// Resolves every selected stage's key without running anything.
pub fn status(
    plan: &Plan,
    store: &Store,
    selected: &[usize],
) -> Result<Vec<(usize, Freshness)>, RunError> {
    let mut done: BTreeMap<usize, Record> = BTreeMap::new();
    let mut out = Vec::new();
    for &i in selected {
        let s = &plan.stages[i];
        if let Some(d) = plan.deps(i).into_iter().find(|d| !done.contains_key(d)) {
            out.push((
                i,
                Freshness::Stale {
                    key: None,
                    why: vec![StaleReason::UpstreamStale {
                        stage: plan.stages[d].name.clone(),
                    }],
                },
            ));
            continue;
        }
        let pre = preimage(plan, store, i, &done)?;
        let key = pre.key();
        if let Some(r) = store.complete_record(&key)? {
            done.insert(i, r.clone());
            out.push((i, Freshness::Fresh(Box::new(r))));
            continue;
        }
        let mut why = Vec::new();
        if store.record(&key)?.is_some() {
            why.push(StaleReason::OutputMissing);
        }
        // Compare with this variant's last run of the stage, else with the default's, so a new
        // variant's first status already says how it differs.
        let last = |variant: Option<&str>| -> Result<Option<Record>, RunError> {
            Ok(store
                .read_ref(variant, &s.name)
                .map(|k| store.record(&k))
                .transpose()?
                .flatten())
        };
        let (old, vs_default) = match (last(plan.variant.as_deref())?, plan.variant.is_some()) {
            (Some(r), _) => (Some(r), false),
            (None, true) => (last(None)?, true),
            (None, false) => (None, false),
        };
        match old {
            Some(old) => {
                let d = pre.diff(&old.preimage);
                if d.is_empty() && why.is_empty() {
                    why.push(StaleReason::RecordGone);
                }
                why.extend(d.into_iter().enumerate().map(|(i, w)| {
                    if i == 0 && vs_default {
                        StaleReason::VsDefault {
                            differs: Box::new(w),
                        }
                    } else {
                        w
                    }
                }));
            }
            None => why.push(StaleReason::NeverRun),
        }
        out.push((
            i,
            Freshness::Stale {
                key: Some(key),
                why,
            },
        ));
    }
    Ok(out)
}
