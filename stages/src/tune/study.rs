//! `tune`: the study's search as a stage. Trials are `train` runs in worker processes (one
//! libtorch thread each, `max_concurrent` at a time); TPE suggests each configuration from the
//! finished trials, ASHA decides after every epoch, and the trial's own early-stopping rule (the
//! plateau stopper by default, as in the study) runs inside the worker.
//!
//! A study is a directory of one-file-per-event records written atomically — a trial's config,
//! every epoch result, every ASHA decision with the rung snapshot it used, the final result — so
//! the scheduler's state is on disk, not only in this process: a killed study resumes without
//! redoing finished trials, and unfinished ones restart from their last checkpoint.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::asha::{AshaParams, Decision, Rungs};
use super::space::{Config, ParamSpec, Space};
use super::tpe::{self, Observed, Rng, TpeParams};
use crate::kind::{
    Context, Events, InputSlot, OutputSlot, ParamError, Report, StageError, TypedKind,
};
use crate::table;
use crate::train::{
    DeviceName, Kernels, StopRule, TrainParams, WorkerEvent, WorkerRequest, hardware_facts,
    spawn_worker, stage_runtime, torch_runtime, worker_info,
};

#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuneParams {
    /// The search space (default: the paper's Listing 1).
    pub space: BTreeMap<String, ParamSpec>,
    /// Trials in the study.
    pub num_samples: usize,
    /// Trials at once on the CPU. Unbounded concurrency would turn TPE into random search: every
    /// suggestion would be made before any trial finished.
    pub max_concurrent: usize,
    /// Trials sharing one GPU when the trials run on CUDA (`fixed: {device: cuda}`, or `auto` on
    /// a machine with a GPU): then `trials_per_gpu` × GPUs run at once, each on the GPU with the
    /// fewest trials, in place of `max_concurrent`. The study ran 32 trials at 1/32 GPU each.
    pub trials_per_gpu: usize,
    /// Seeds the suggestions; trial i trains with seed `seed + i`.
    pub seed: u64,
    /// Hyperopt TPE's settings (`n_startup`, `gamma`, `n_ei_candidates`, `prior_weight`,
    /// `linear_forgetting`).
    pub tpe: TpeParams,
    /// ASHA's settings (`grace_period`, `reduction_factor`, `max_t`).
    pub asha: AshaParams,
    /// Epochs a trial may run at most (Ray's `max_t`).
    pub max_epochs: usize,
    /// The trials' early-stopping rule: `plateau` (Ray's TrialPlateauStopper with its defaults,
    /// which stops every trial of this metric at epoch 10, as in the study) or `patience`
    /// (the corrected rule).
    pub stopper: StopRule,
    /// Fraction of the training windows each trial trains on.
    pub subsample: f64,
    /// Train params every trial shares (device, precision, …); the space's values override.
    pub fixed: serde_json::Map<String, Value>,
    /// Top-K for Table 1's shares (the paper: 100).
    pub top_k: usize,
}

impl Default for TuneParams {
    fn default() -> Self {
        TuneParams {
            space: Space::listing1(),
            num_samples: 40,
            max_concurrent: 2,
            trials_per_gpu: 32,
            seed: 0,
            tpe: TpeParams::default(),
            asha: AshaParams::default(),
            max_epochs: 100,
            stopper: StopRule::Plateau,
            subsample: 1.0,
            fixed: serde_json::Map::new(),
            top_k: 100,
        }
    }
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), StageError> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(v).expect("serialises");
    let mut f = std::fs::File::create(&tmp).map_err(|e| StageError::io(&tmp, e))?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| StageError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StageError::io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The record of a trial's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Final {
    /// `completed` (max epochs), `stopper` (its early-stopping rule), `asha`, or `failed`.
    pub status: String,
    pub epochs: usize,
    pub val_rmse: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_rmse: f64,
    pub lr: f64,
}

/// One trial as read back from the study directory.
#[derive(Debug, Clone)]
pub struct TrialState {
    pub id: u32,
    pub config: Config,
    pub epochs: Vec<EpochRecord>,
    pub decisions: Vec<Decision>,
    pub fin: Option<Final>,
}

pub struct Study {
    pub dir: PathBuf,
}

impl Study {
    fn trial_dir(&self, id: u32) -> PathBuf {
        self.dir.join(format!("trial-{id:04}"))
    }

    /// Held while a process reads the records and writes a decision, so trial tasks running at
    /// once (a job array) decide from the same, complete state.
    fn lock(&self) -> Result<std::fs::File, StageError> {
        let p = self.dir.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| StageError::io(&p, e))?;
        f.lock().map_err(|e| StageError::io(&p, e))?;
        Ok(f)
    }

    fn claim_path(&self, id: u32) -> PathBuf {
        self.trial_dir(id).join("claim")
    }

    fn claim(&self, id: u32) -> Option<String> {
        std::fs::read_to_string(self.claim_path(id))
            .ok()
            .map(|s| s.trim().to_string())
    }

    pub fn load(&self) -> Vec<TrialState> {
        let mut out = Vec::new();
        let mut id = 0;
        while let Some(config) = read_json::<Config>(&self.trial_dir(id).join("config.json")) {
            let d = self.trial_dir(id);
            let mut epochs = Vec::new();
            let mut decisions = Vec::new();
            // An epoch counts once its decision is on record; a resumed worker re-sends the rest.
            for e in 1.. {
                let (Some(r), Some(dec)) = (
                    read_json::<EpochRecord>(&d.join(format!("epoch-{e:03}.json"))),
                    read_json::<Decision>(&d.join(format!("asha-{e:03}.json"))),
                ) else {
                    break;
                };
                epochs.push(r);
                decisions.push(dec);
            }
            out.push(TrialState {
                id,
                config,
                epochs,
                decisions,
                fin: read_json(&d.join("final.json")),
            });
            id += 1;
        }
        out
    }

    /// The ASHA rungs, rebuilt from every decision on record.
    fn rungs(trials: &[TrialState]) -> Rungs {
        let mut r = Rungs::default();
        for t in trials {
            for d in &t.decisions {
                if let Some(m) = d.rung {
                    r.0.entry(m).or_default().insert(d.trial, d.reward);
                }
            }
        }
        r
    }
}

/// The loss TPE ranks by: the trial's last reported validation derivative RMSE.
fn last_metric(t: &TrialState) -> Option<f64> {
    t.epochs
        .last()
        .map(|e| e.val_rmse)
        .filter(|v| v.is_finite())
}

/// The training data every trial reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialData {
    pub train: PathBuf,
    pub val: PathBuf,
}

impl TrialData {
    fn of(ctx: &Context<'_>) -> Result<TrialData, StageError> {
        Ok(TrialData {
            train: ctx.input("train")?.to_path_buf(),
            val: ctx.input("val")?.to_path_buf(),
        })
    }
}

/// Suggests trial `trials.len()` with TPE from every trial on record and writes its config.
fn suggest_next(
    p: &TuneParams,
    space: &Space,
    study: &Study,
    trials: &[TrialState],
) -> Result<TrialState, StageError> {
    let id = trials.len() as u32;
    let history: Vec<Observed> = trials
        .iter()
        .map(|t| Observed {
            config: t.config.clone(),
            loss: t.fin.as_ref().and_then(|_| last_metric(t)),
        })
        .collect();
    let mut rng = Rng::new(p.seed ^ (u64::from(id) << 32) ^ 0x7475_6e65);
    let config = tpe::suggest(space, &history, &p.tpe, &mut rng);
    let d = study.trial_dir(id);
    std::fs::create_dir_all(&d).map_err(|e| StageError::io(&d, e))?;
    write_json(&d.join("config.json"), &config)?;
    Ok(TrialState {
        id,
        config,
        epochs: Vec::new(),
        decisions: Vec::new(),
        fin: None,
    })
}

/// Records one epoch of `t` and ASHA's decision on it (reward = −R: Ray maximises it), with the
/// rung snapshot the decision used.
fn record_epoch(
    p: &TuneParams,
    study: &Study,
    rungs: &mut Rungs,
    t: &mut TrialState,
    rec: EpochRecord,
) -> Result<Decision, StageError> {
    let d = study.trial_dir(t.id);
    let epoch = rec.epoch;
    write_json(&d.join(format!("epoch-{epoch:03}.json")), &rec)?;
    let dec = rungs.on_result(&p.asha, t.id, epoch as u32, -rec.val_rmse);
    write_json(&d.join(format!("asha-{epoch:03}.json")), &dec)?;
    t.epochs.retain(|e| e.epoch != epoch);
    t.epochs.push(rec);
    t.epochs.sort_by_key(|e| e.epoch);
    t.decisions.push(dec.clone());
    Ok(dec)
}

/// How a trial ended: stopped by ASHA, finished (all epochs, or its own stopper), or failed.
fn final_for(
    p: &TuneParams,
    t: &TrialState,
    stopped_by_asha: bool,
    ok: bool,
    last_err: Option<String>,
) -> Final {
    let n = t.epochs.len();
    if stopped_by_asha {
        asha_final(t)
    } else if ok {
        Final {
            status: if n >= p.max_epochs {
                "completed"
            } else {
                "stopper"
            }
            .into(),
            epochs: n,
            val_rmse: last_metric(t),
            error: None,
        }
    } else {
        Final {
            status: "failed".into(),
            epochs: n,
            val_rmse: None,
            error: Some(last_err.unwrap_or_else(|| "the worker died".into())),
        }
    }
}

fn asha_final(t: &TrialState) -> Final {
    Final {
        status: "asha".into(),
        epochs: t.epochs.len(),
        val_rmse: last_metric(t),
        error: None,
    }
}

struct Running {
    id: u32,
    child: Child,
    /// The GPU it was given, when the trials run on CUDA.
    gpu: Option<usize>,
}

enum Msg {
    Event(u32, WorkerEvent),
    Exit(u32, Option<String>),
}

fn spawn(
    p: &TuneParams,
    study: &Study,
    t: &TrialState,
    data: &TrialData,
    tx: &mpsc::Sender<Msg>,
    gpu: Option<usize>,
) -> Result<Running, StageError> {
    let d = study.trial_dir(t.id);
    let mut params: serde_json::Map<String, Value> = p.fixed.clone();
    for (k, v) in &t.config {
        params.insert(k.clone(), v.clone());
    }
    params.insert("epochs".into(), json!(p.max_epochs));
    params.insert(
        "early_stop".into(),
        serde_json::to_value(p.stopper).expect("rule"),
    );
    params.insert("subsample".into(), json!(p.subsample));
    // One libtorch thread per trial unless `fixed` says otherwise (the benchmark compares).
    params.entry("threads".to_string()).or_insert(json!(1));
    params
        .entry("seed".to_string())
        .or_insert(json!(p.seed.wrapping_add(u64::from(t.id))));
    let mut train: TrainParams =
        serde_json::from_value(Value::Object(params.clone())).map_err(|e| {
            StageError::Invalid(format!(
                "trial {}: not a valid training configuration: {e}",
                t.id
            ))
        })?;
    train.kernels = train.kernels();
    let out = d.join("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).map_err(|e| StageError::io(&out, e))?;
    let req = WorkerRequest {
        kind: "train".into(),
        params: serde_json::to_value(&train).expect("params"),
        inputs: [
            ("train".to_string(), data.train.clone()),
            ("val".to_string(), data.val.clone()),
        ]
        .into(),
        out_dir: out,
        checkpoint_dir: d.join("ckpt"),
        threads: train.threads,
        kernels: train.kernels,
    };
    let mut child = spawn_worker(&req, gpu)?;
    let (stdout, stderr) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let (id, tx1, tx2) = (t.id, tx.clone(), tx.clone());
    let errs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
            .last()
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(e) = serde_json::from_str::<WorkerEvent>(&line) {
                let _ = tx1.send(Msg::Event(id, e));
            }
        }
        let last = errs.join().ok().flatten();
        let _ = tx2.send(Msg::Exit(id, last));
    });
    Ok(Running {
        id: t.id,
        child,
        gpu,
    })
}

/// What a trial task needs: the study's params, its data and its directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRequest {
    pub params: TuneParams,
    pub data: TrialData,
    pub dir: PathBuf,
}

/// Runs (or resumes) the study in `dir` with its trials sent out by `launcher` as tasks that
/// each pull a trial from the study directory. The decisions are taken by the tasks under the
/// study lock, from the same records the local driver keeps.
pub fn run_study_with(
    p: &TuneParams,
    ctx: &Context<'_>,
    dir: &Path,
    launcher: &dyn crate::kind::TaskLauncher,
) -> Result<Vec<TrialState>, StageError> {
    Space::new(&p.space).map_err(StageError::Invalid)?;
    std::fs::create_dir_all(dir).map_err(|e| StageError::io(dir, e))?;
    let study = Study {
        dir: dir.to_path_buf(),
    };
    write_json(&dir.join("study.json"), p)?;
    let request = dir.join("task.json");
    write_json(
        &request,
        &TaskRequest {
            params: p.clone(),
            data: TrialData::of(ctx)?,
            dir: dir.to_path_buf(),
        },
    )?;
    // Rounds: a task that died (cancelled, time limit, node failure) leaves its trial
    // unfinished; the next round's tasks pick it up from its checkpoint.
    let rounds = 3;
    let mut failures = Vec::new();
    for round in 0..rounds {
        let remaining = {
            let _lock = study.lock()?;
            let trials = study.load();
            // No task runs between rounds: every claim left is a dead task's.
            for t in trials.iter().filter(|t| t.fin.is_none()) {
                let _ = std::fs::remove_file(study.claim_path(t.id));
            }
            p.num_samples - trials.iter().filter(|t| t.fin.is_some()).count()
        };
        if remaining == 0 {
            break;
        }
        if round > 0 {
            ctx.events.log(&format!(
                "{remaining} trials unfinished after round {round}; sending them out again"
            ));
        }
        failures = launcher.run_tasks(
            Tune::NAME,
            &request,
            remaining,
            p.max_concurrent,
            ctx.events,
        )?;
        for f in &failures {
            ctx.events.log(f);
        }
    }
    let trials = study.load();
    let done = trials.iter().filter(|t| t.fin.is_some()).count();
    if done < p.num_samples {
        return Err(StageError::Invalid(format!(
            "{done} of {} trials finished after {rounds} rounds of trial tasks; last failures: {}",
            p.num_samples,
            failures.join("; ")
        )));
    }
    Ok(trials)
}

/// How many GPUs the trials run on: 0 when they run on the CPU (their `device`, from `fixed`,
/// resolves as `train`'s does).
fn trial_gpus(p: &TuneParams, cache_dir: &Path) -> Result<usize, StageError> {
    let device = trial_device(p)?;
    if device == DeviceName::Cpu {
        return Ok(0);
    }
    let info = worker_info(cache_dir)?;
    if torch_runtime(&info, device)["device"] != "cuda" {
        return Ok(0);
    }
    Ok(info["cuda_devices"].as_u64().unwrap_or(0).max(1) as usize)
}

/// The trials' kernels: `fixed.kernels`, else `train`'s default, settled as `train` settles
/// them (by `fixed.device` and `fixed.precision`).
fn trial_kernels(p: &TuneParams) -> Result<Kernels, StageError> {
    let kernels = match p.fixed.get("kernels") {
        Some(k) => serde_json::from_value(k.clone())
            .map_err(|e| StageError::Invalid(format!("fixed.kernels: {e}")))?,
        None => TrainParams::default().kernels,
    };
    let precision = match p.fixed.get("precision") {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| StageError::Invalid(format!("fixed.precision: {e}")))?,
        None => TrainParams::default().precision,
    };
    Ok(kernels.settle(fixed_device(p)?, precision))
}

/// `fixed.device`, else `train`'s default.
fn fixed_device(p: &TuneParams) -> Result<DeviceName, StageError> {
    match p.fixed.get("device") {
        Some(d) => serde_json::from_value(d.clone())
            .map_err(|e| StageError::Invalid(format!("fixed.device: {e}"))),
        None => Ok(TrainParams::default().device),
    }
}

/// The trials' `device`: the CPU for portable kernels, else `fixed.device`.
fn trial_device(p: &TuneParams) -> Result<DeviceName, StageError> {
    if trial_kernels(p)? == Kernels::Portable {
        return Ok(DeviceName::Cpu);
    }
    fixed_device(p)
}

/// The GPU running the fewest trials (the lowest index on a tie).
fn least_used_gpu(running: &[Running], gpus: usize) -> usize {
    (0..gpus)
        .min_by_key(|g| running.iter().filter(|r| r.gpu == Some(*g)).count())
        .unwrap_or(0)
}

/// One trial task (`magpipe task`): takes a trial from the study directory — the one this
/// task held before a requeue, else one a dead task left unfinished, else a new TPE suggestion —
/// trains it in a worker, and records each epoch with ASHA's decision under the study lock.
/// `tag` names the task in the trial's claim. Returns the trial it ran, if any was left.
pub fn run_task(
    req: &TaskRequest,
    tag: &str,
    log: &dyn Fn(&str),
) -> Result<Option<u32>, StageError> {
    let p = &req.params;
    let space = Space::new(&p.space).map_err(StageError::Invalid)?;
    let study = Study {
        dir: req.dir.clone(),
    };
    let t = {
        let _lock = study.lock()?;
        let trials = study.load();
        let open = |t: &&TrialState| t.fin.is_none();
        let mine = trials
            .iter()
            .filter(open)
            .find(|t| study.claim(t.id).as_deref() == Some(tag));
        let orphan = trials
            .iter()
            .filter(open)
            .find(|t| study.claim(t.id).is_none());
        let t = match mine.or(orphan) {
            Some(t) => t.clone(),
            None if trials.len() < p.num_samples => suggest_next(p, &space, &study, &trials)?,
            None => return Ok(None),
        };
        let claim = study.claim_path(t.id);
        std::fs::write(&claim, tag).map_err(|e| StageError::io(&claim, e))?;
        // A stop on record ends the trial (its task died between the decision and the kill).
        if t.decisions
            .iter()
            .any(|d| d.stop && d.iteration < p.asha.max_t)
        {
            write_json(&study.trial_dir(t.id).join("final.json"), &asha_final(&t))?;
            return Ok(Some(t.id));
        }
        t
    };
    let id = t.id;
    log(&format!(
        "trial {id}: {}",
        serde_json::to_string(&t.config).unwrap_or_default()
    ));
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut running = spawn(p, &study, &t, &req.data, &tx, None)?;
    drop(tx);
    let mut stopped = false;
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Event(
                _,
                WorkerEvent::Epoch {
                    epoch,
                    train_loss,
                    val_rmse,
                    lr,
                },
            ) => {
                if stopped {
                    continue;
                }
                let _lock = study.lock()?;
                if study
                    .trial_dir(id)
                    .join(format!("asha-{epoch:03}.json"))
                    .exists()
                {
                    continue;
                }
                let trials = study.load();
                let mut rungs = Study::rungs(&trials);
                let mut t = trials[id as usize].clone();
                let rec = EpochRecord {
                    epoch,
                    train_loss,
                    val_rmse,
                    lr,
                };
                let dec = record_epoch(p, &study, &mut rungs, &mut t, rec)?;
                if dec.stop && (epoch as u32) < p.asha.max_t {
                    stopped = true;
                    let _ = running.child.kill();
                }
            }
            Msg::Event(..) => {}
            Msg::Exit(_, last_err) => {
                let ok = running.child.wait().map(|s| s.success()).unwrap_or(false);
                let _lock = study.lock()?;
                let t = study.load().swap_remove(id as usize);
                let fin = final_for(p, &t, stopped, ok, last_err);
                log(&format!(
                    "trial {id}: {} after {} epochs, val R {}",
                    fin.status,
                    fin.epochs,
                    fin.val_rmse.map_or("–".into(), |v| format!("{v:.4e}"))
                ));
                write_json(&study.trial_dir(id).join("final.json"), &fin)?;
                let _ = std::fs::remove_file(study.claim_path(id));
                break;
            }
        }
    }
    Ok(Some(id))
}

/// Runs (or resumes) the study in `dir`.
pub fn run_study(
    p: &TuneParams,
    ctx: &Context<'_>,
    dir: &Path,
) -> Result<Vec<TrialState>, StageError> {
    let space = Space::new(&p.space).map_err(StageError::Invalid)?;
    std::fs::create_dir_all(dir).map_err(|e| StageError::io(dir, e))?;
    let study = Study {
        dir: dir.to_path_buf(),
    };
    let data = TrialData::of(ctx)?;
    let gpus = trial_gpus(p, &ctx.checkpoint_dir)?;
    let slots = trial_slots(p, ctx, gpus);
    write_json(&dir.join("study.json"), p)?;
    let (mut trials, mut stopped_by_asha) = recover(p, ctx, &study)?;
    let mut rungs = Study::rungs(&trials);
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut running: Vec<Running> = Vec::new();
    loop {
        // Fill the free slots: unfinished trials first (a resume), then new suggestions.
        while running.len() < slots {
            let restart = trials
                .iter()
                .find(|t| t.fin.is_none() && !running.iter().any(|r| r.id == t.id))
                .map(|t| t.id);
            let id = match restart {
                Some(id) => id,
                None if trials.len() < p.num_samples => {
                    let t = suggest_next(p, &space, &study, &trials)?;
                    ctx.events.log(&format!(
                        "trial {}: {}",
                        t.id,
                        serde_json::to_string(&t.config).unwrap_or_default()
                    ));
                    let id = t.id;
                    trials.push(t);
                    id
                }
                None => break,
            };
            let t = trials[id as usize].clone();
            let gpu = (gpus > 0).then(|| least_used_gpu(&running, gpus));
            running.push(spawn(p, &study, &t, &data, &tx, gpu)?);
        }
        if running.is_empty() {
            break;
        }
        report_progress(p, ctx, &trials, running.len());
        let msg = rx
            .recv()
            .map_err(|_| StageError::Invalid("the trial workers went away".into()))?;
        match msg {
            Msg::Event(
                id,
                WorkerEvent::Epoch {
                    epoch,
                    train_loss,
                    val_rmse,
                    lr,
                },
            ) => {
                let rec = EpochRecord {
                    epoch,
                    train_loss,
                    val_rmse,
                    lr,
                };
                let stop = on_epoch(
                    p,
                    &study,
                    &mut rungs,
                    &mut trials,
                    &stopped_by_asha,
                    id,
                    rec,
                )?;
                if stop {
                    stopped_by_asha.insert(id);
                    if let Some(r) = running.iter_mut().find(|r| r.id == id) {
                        let _ = r.child.kill();
                    }
                }
            }
            Msg::Event(..) => {}
            Msg::Exit(id, last_err) => {
                let Some(pos) = running.iter().position(|r| r.id == id) else {
                    continue;
                };
                let mut r = running.swap_remove(pos);
                let ok = r.child.wait().map(|s| s.success()).unwrap_or(false);
                let t = &mut trials[id as usize];
                finish(
                    p,
                    ctx,
                    &study,
                    t,
                    stopped_by_asha.contains(&id),
                    ok,
                    last_err,
                )?;
            }
        }
    }
    report_progress(p, ctx, &trials, 0);
    Ok(trials)
}

/// How many trials run at once: `trials_per_gpu` on each GPU, else `max_concurrent`.
fn trial_slots(p: &TuneParams, ctx: &Context<'_>, gpus: usize) -> usize {
    if gpus > 0 {
        ctx.events.log(&format!(
            "trials on CUDA: {} per GPU × {gpus} GPU(s) at once",
            p.trials_per_gpu
        ));
        p.trials_per_gpu * gpus
    } else {
        p.max_concurrent
    }
}

/// The study's trials as a killed run left them, and those ASHA stopped. A stop decision on
/// record ends its trial, even when the engine died before it could kill the worker and write
/// `final.json`: resuming that trial would train it past its stop.
fn recover(
    p: &TuneParams,
    ctx: &Context<'_>,
    study: &Study,
) -> Result<(Vec<TrialState>, std::collections::BTreeSet<u32>), StageError> {
    let mut trials = study.load();
    let resumed = trials.iter().filter(|t| t.fin.is_some()).count();
    if !trials.is_empty() {
        ctx.events.log(&format!(
            "resuming the study: {resumed} finished trials kept, {} to restart from their checkpoints",
            trials.len() - resumed
        ));
    }
    let stopped_by_asha: std::collections::BTreeSet<u32> = trials
        .iter()
        .filter(|t| {
            t.decisions
                .iter()
                .any(|d| d.stop && d.iteration < p.asha.max_t)
        })
        .map(|t| t.id)
        .collect();
    for t in trials.iter_mut() {
        if t.fin.is_none() && stopped_by_asha.contains(&t.id) {
            let fin = asha_final(t);
            write_json(&study.trial_dir(t.id).join("final.json"), &fin)?;
            t.fin = Some(fin);
        }
    }
    Ok((trials, stopped_by_asha))
}

fn report_progress(p: &TuneParams, ctx: &Context<'_>, trials: &[TrialState], running: usize) {
    let done = trials.iter().filter(|t| t.fin.is_some()).count();
    let early = trials
        .iter()
        .filter(|t| {
            matches!(
                t.fin.as_ref().map(|f| f.status.as_str()),
                Some("asha" | "stopper")
            )
        })
        .count();
    let best = trials
        .iter()
        .filter(|t| t.fin.is_some())
        .filter_map(last_metric)
        .fold(f64::INFINITY, f64::min);
    ctx.events.progress(
        done as u64,
        p.num_samples as u64,
        &format!(
            "trials · {running} running · {early} stopped early · best val R {}",
            if best.is_finite() {
                format!("{best:.4e}")
            } else {
                "–".into()
            }
        ),
    );
}

/// Records a trial's epoch and ASHA's decision on it; whether ASHA stops the trial now.
fn on_epoch(
    p: &TuneParams,
    study: &Study,
    rungs: &mut Rungs,
    trials: &mut [TrialState],
    stopped_by_asha: &std::collections::BTreeSet<u32>,
    id: u32,
    rec: EpochRecord,
) -> Result<bool, StageError> {
    // An epoch the worker finished between ASHA's stop and its kill does not count (it would,
    // or not, depending on how fast the kill lands).
    if stopped_by_asha.contains(&id) {
        return Ok(false);
    }
    let epoch = rec.epoch;
    if study
        .trial_dir(id)
        .join(format!("asha-{epoch:03}.json"))
        .exists()
    {
        // Re-sent by a resumed worker: recorded and decided before the crash.
        return Ok(false);
    }
    let dec = record_epoch(p, study, rungs, &mut trials[id as usize], rec)?;
    Ok(dec.stop && (epoch as u32) < p.asha.max_t)
}

/// Ends a trial whose worker exited: how it ended, said and written to `final.json`.
fn finish(
    p: &TuneParams,
    ctx: &Context<'_>,
    study: &Study,
    t: &mut TrialState,
    stopped_by_asha: bool,
    ok: bool,
    last_err: Option<String>,
) -> Result<(), StageError> {
    let fin = final_for(p, t, stopped_by_asha, ok, last_err);
    ctx.events.log(&format!(
        "trial {}: {} after {} epochs, val R {}",
        t.id,
        fin.status,
        fin.epochs,
        fin.val_rmse.map_or("–".into(), |v| format!("{v:.4e}"))
    ));
    write_json(&study.trial_dir(t.id).join("final.json"), &fin)?;
    t.fin = Some(fin);
    Ok(())
}

fn model_loss(c: &Config) -> (String, String) {
    let model = c
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("MagFluxLSTM")
        .to_string();
    let loss = match c.get("loss").and_then(Value::as_str) {
        Some("value") => "MSE",
        _ => "hybrid",
    };
    (model, loss.to_string())
}

fn cell(c: &Config, k: &str) -> String {
    c.get(k).map_or("–".into(), |v| match v {
        Value::Number(n) if n.as_f64().is_some_and(|x| x != 0.0 && x.abs() < 1e-2) => {
            format!("{:.2e}", n.as_f64().unwrap_or_default())
        }
        Value::String(s) => s.clone(),
        v => v.to_string(),
    })
}

pub struct Tune;

impl TypedKind for Tune {
    type Params = TuneParams;
    const NAME: &'static str = "tune";
    const LAUNCHES_JOBS: bool = true;
    const VERSION: u32 = 1;
    const DOC: &'static str = "The hyper-parameter search: TPE suggestions, ASHA and the plateau \
        stopper, trials as 1-thread training workers; resumable study records; the trials table \
        and Table 1 with each model × loss's share of the top trials.";
    const INPUTS: &'static [InputSlot] = crate::train::WINDOW_INPUTS;
    // The trials table holds per-epoch metrics only; the study's timings stay in its records.
    const OUTPUTS: &'static [OutputSlot] = &[
        OutputSlot {
            name: "trials",
            file: "trials.parquet",
            doc: "every trial: config, status, epochs, metric per epoch, final metric",
        },
        OutputSlot {
            name: "trials_md",
            file: "trials.md",
            doc: "the trials as Markdown, best first",
        },
        OutputSlot {
            name: "table1",
            file: "table1.md",
            doc: "Table 1: best configuration per model × loss and its share of the top-K trials",
        },
        OutputSlot {
            name: "best",
            file: "best.json",
            doc: "the best configuration per model × loss",
        },
    ];

    /// One task of the study's job array. The claim tag is the array task's id, the same after
    /// a requeue.
    fn run_task(request: &Path, tag: &str, events: &dyn Events) -> Result<String, StageError> {
        let bytes = std::fs::read(request).map_err(|e| StageError::io(request, e))?;
        let req: TaskRequest =
            serde_json::from_slice(&bytes).map_err(|e| StageError::table(request, e))?;
        Ok(match run_task(&req, tag, &|m| events.log(m))? {
            Some(id) => format!("task {tag} ran trial {id}"),
            None => format!("task {tag}: no trial left"),
        })
    }

    fn check(p: &TuneParams) -> Result<(), ParamError> {
        let bad = |name: &str, msg: String| {
            Err(ParamError::Invalid {
                name: name.into(),
                msg,
            })
        };
        if let Err(e) = Space::new(&p.space) {
            return bad("space", e);
        }
        for (name, v) in [
            ("num_samples", p.num_samples),
            ("max_concurrent", p.max_concurrent),
            ("trials_per_gpu", p.trials_per_gpu),
            ("max_epochs", p.max_epochs),
            ("top_k", p.top_k),
        ] {
            if v == 0 {
                return bad(name, "must be at least 1".into());
            }
        }
        if !(p.subsample > 0.0 && p.subsample <= 1.0) {
            return bad("subsample", "must be in (0, 1]".into());
        }
        if p.stopper == StopRule::None {
            return bad(
                "stopper",
                "a study needs a stopping rule: plateau or patience".into(),
            );
        }
        Ok(())
    }

    fn key_params(p: &TuneParams) -> Value {
        let mut v = serde_json::to_value(p).expect("params serialise");
        // Added later: out of the key at its default, so existing studies keep their keys.
        if p.trials_per_gpu == TuneParams::default().trials_per_gpu {
            v.as_object_mut()
                .expect("a struct")
                .remove("trials_per_gpu");
        }
        v
    }

    fn runtime(p: &TuneParams, cache_dir: &Path) -> Result<Value, StageError> {
        stage_runtime(trial_kernels(p)?, trial_device(p)?, cache_dir)
    }

    fn run(p: &TuneParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let dir = ctx.checkpoint_dir.join("study");
        let trials = match ctx.launcher {
            Some(l) => run_study_with(p, ctx, &dir, l)?,
            None => run_study(p, ctx, &dir)?,
        };
        write_outputs(p, ctx, &trials)
    }
}

/// A finished trial and its last validation metric.
type Ranked<'a> = Vec<(&'a TrialState, f64)>;
/// The best trial of each (model, loss) and its metric.
type Best<'a> = BTreeMap<(String, String), (&'a TrialState, f64)>;

fn write_outputs(
    p: &TuneParams,
    ctx: &Context<'_>,
    trials: &[TrialState],
) -> Result<Report, StageError> {
    let hardware = trials_hardware(p, ctx)?;
    let ranked = rank(trials);
    write_trials_parquet(p, ctx, trials)?;
    write_trials_md(p, ctx, &ranked)?;
    let best = best_per_model_loss(&ranked);
    let t1 = table1(p, trials.len(), &ranked, &best);
    let tp = ctx.output("table1.md");
    std::fs::write(&tp, &t1).map_err(|e| StageError::io(&tp, e))?;
    write_best_json(ctx, &best)?;
    Ok(Report {
        summary: summary(trials, &ranked),
        stdout: Some(t1),
        facts: json!({
            "trials": trials.len(),
            "best_val_rmse": ranked.first().map(|(_, m)| *m),
            "hardware": hardware,
        }),
    })
}

/// Where this engine's workers ran the trials (under Slurm, the nodes' own hardware is in
/// each job's log; this is the submitting machine's).
fn trials_hardware(p: &TuneParams, ctx: &Context<'_>) -> Result<Value, StageError> {
    let info = worker_info(&ctx.checkpoint_dir)?;
    Ok(hardware_facts(
        &info,
        torch_runtime(&info, trial_device(p)?)["device"] == "cuda",
    ))
}

/// The trials with a metric, best first (ties by trial id).
fn rank(trials: &[TrialState]) -> Ranked<'_> {
    let mut ranked: Ranked<'_> = trials
        .iter()
        .filter_map(|t| last_metric(t).map(|m| (t, m)))
        .collect();
    ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
    ranked
}

fn status(t: &TrialState) -> String {
    t.fin
        .as_ref()
        .map_or("unfinished".to_string(), |f| f.status.clone())
}

/// Every trial in id order: its configuration, status and per-epoch validation RMSE.
fn write_trials_parquet(
    p: &TuneParams,
    ctx: &Context<'_>,
    trials: &[TrialState],
) -> Result<(), StageError> {
    let path = ctx.output("trials.parquet");
    let mut cols = vec![Column::new(
        "trial".into(),
        trials.iter().map(|t| t.id).collect::<Vec<_>>(),
    )];
    for k in p.space.keys() {
        cols.push(Column::new(
            k.as_str().into(),
            trials
                .iter()
                .map(|t| t.config.get(k).map(|v| v.to_string()))
                .collect::<Vec<_>>(),
        ));
    }
    cols.push(Column::new(
        "status".into(),
        trials.iter().map(status).collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "epochs".into(),
        trials
            .iter()
            .map(|t| t.epochs.len() as u32)
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "val_rmse_per_epoch".into(),
        trials
            .iter()
            .map(|t| {
                t.epochs
                    .iter()
                    .map(|e| format!("{:.6e}", e.val_rmse))
                    .collect::<Vec<_>>()
                    .join(";")
            })
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "final_val_rmse".into(),
        trials.iter().map(last_metric).collect::<Vec<_>>(),
    ));
    let mut df = DataFrame::new(trials.len(), cols).map_err(|e| StageError::table(&path, e))?;
    table::write_parquet(&mut df, &path)
}

/// The ranked trials as a markdown table.
fn write_trials_md(
    p: &TuneParams,
    ctx: &Context<'_>,
    ranked: &Ranked<'_>,
) -> Result<(), StageError> {
    let keys: Vec<&String> = p.space.keys().collect();
    let mut header: Vec<&str> = vec!["rank", "trial"];
    header.extend(keys.iter().map(|k| k.as_str()));
    header.extend(["status", "epochs", "final val R"]);
    let rows: Vec<Vec<String>> = ranked
        .iter()
        .enumerate()
        .map(|(i, (t, m))| {
            let mut r = vec![(i + 1).to_string(), t.id.to_string()];
            r.extend(keys.iter().map(|k| cell(&t.config, k)));
            r.push(status(t));
            r.push(t.epochs.len().to_string());
            r.push(format!("{m:.4e}"));
            r
        })
        .collect();
    let md = ctx.output("trials.md");
    std::fs::write(&md, table::markdown(&header, &rows)).map_err(|e| StageError::io(&md, e))
}

/// The first (best) trial of each (model, loss).
fn best_per_model_loss<'a>(ranked: &Ranked<'a>) -> Best<'a> {
    let mut best: Best<'a> = BTreeMap::new();
    for (t, m) in ranked {
        best.entry(model_loss(&t.config)).or_insert((t, *m));
    }
    best
}

/// Table 1: the best configuration per (model, loss) and that pair's share of the top K.
fn table1(p: &TuneParams, n_trials: usize, ranked: &Ranked<'_>, best: &Best<'_>) -> String {
    let k = p.top_k.min(ranked.len());
    let mut share: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (t, _) in ranked.iter().take(k) {
        *share.entry(model_loss(&t.config)).or_default() += 1;
    }
    let top = format!("top-{k}");
    let header = [
        "model",
        "loss",
        top.as_str(),
        "Pd",
        "h",
        "L",
        "B",
        "lr",
        "λ",
        "α",
        "Ptf",
        "shuffle",
        "trial",
        "val R",
        "epochs",
    ];
    let rows: Vec<Vec<String>> = best
        .iter()
        .map(|((model, loss), (t, m))| {
            let c = &t.config;
            vec![
                model.clone(),
                loss.clone(),
                format!(
                    "{:.0} %",
                    100.0 * *share.get(&(model.clone(), loss.clone())).unwrap_or(&0) as f64
                        / k.max(1) as f64
                ),
                cell(c, "dropout"),
                cell(c, "hidden"),
                cell(c, "layers"),
                cell(c, "batch_size"),
                cell(c, "lr"),
                cell(c, "weight_decay"),
                if loss == "MSE" {
                    "1".into()
                } else {
                    cell(c, "alpha")
                },
                cell(c, "teacher_forcing_ratio"),
                cell(c, "shuffle"),
                t.id.to_string(),
                format!("{m:.4e}"),
                t.epochs.len().to_string(),
            ]
        })
        .collect();
    let note = if k < p.top_k {
        format!(
            "\nThe study has {} finished trials, fewer than {}: shares are of the top {k}.\n",
            ranked.len(),
            p.top_k
        )
    } else {
        String::new()
    };
    format!(
        "# Table 1 — best configuration per model × loss ({n_trials} trials)\n\n{}{note}",
        table::markdown(&header, &rows)
    )
}

fn write_best_json(ctx: &Context<'_>, best: &Best<'_>) -> Result<(), StageError> {
    let best_json: BTreeMap<String, Value> = best
        .iter()
        .map(|((m, l), (t, r))| {
            (
                format!("{m} {l}"),
                json!({ "trial": t.id, "val_rmse": r, "config": t.config }),
            )
        })
        .collect();
    let bp = ctx.output("best.json");
    std::fs::write(
        &bp,
        serde_json::to_string_pretty(&best_json).expect("json") + "\n",
    )
    .map_err(|e| StageError::io(&bp, e))
}

fn summary(trials: &[TrialState], ranked: &Ranked<'_>) -> String {
    let count = |s: &str| {
        trials
            .iter()
            .filter(|t| t.fin.as_ref().is_some_and(|f| f.status == s))
            .count()
    };
    format!(
        "{} trials ({} completed, {} stopped by the stopper, {} by ASHA, {} failed); best val R {}",
        trials.len(),
        count("completed"),
        count("stopper"),
        count("asha"),
        count("failed"),
        ranked
            .first()
            .map_or("–".into(), |(_, m)| format!("{m:.4e}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_per_gpu_stays_out_of_the_key_at_its_default_and_cpu_trials_use_no_gpu() {
        let p = TuneParams::default();
        assert!(Tune::key_params(&p).get("trials_per_gpu").is_none());
        assert!(Tune::key_params(&p).get("max_concurrent").is_some());
        let q = TuneParams {
            trials_per_gpu: 8,
            ..TuneParams::default()
        };
        assert_eq!(Tune::key_params(&q)["trials_per_gpu"], 8);
        let mut cpu = TuneParams::default();
        cpu.fixed.insert("device".into(), json!("cpu"));
        // Resolved without asking the worker: a CPU study needs no GPU count.
        let nowhere = Path::new("/nonexistent/cache");
        assert_eq!(trial_gpus(&cpu, nowhere).unwrap(), 0);
        cpu.fixed.insert("device".into(), json!("tpu"));
        assert!(trial_gpus(&cpu, nowhere).is_err());
    }
}
