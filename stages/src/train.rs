//! `train`: trains MagFluxLSTM or MagFluxEnc-Dec on the windows. The params live here, where the
//! engine checks them; the training itself runs in a `magpipe-worker` process, because only the
//! worker links libtorch (see worker/src/train.rs for the procedure).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::kind::{Context, InputSlot, OutputSlot, ParamError, Report, StageError, TypedKind};

#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelName {
    #[serde(rename = "MagFluxLSTM")]
    MagFluxLstm,
    #[serde(rename = "MagFluxEnc-Dec")]
    MagFluxEncDec,
}

#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossName {
    Value,
    Hybrid,
}

impl ModelName {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelName::MagFluxLstm => "MagFluxLSTM",
            ModelName::MagFluxEncDec => "MagFluxEnc-Dec",
        }
    }
}

impl LossName {
    /// The study's names: "hybrid" and "MSE".
    pub fn as_str(self) -> &'static str {
        match self {
            LossName::Value => "MSE",
            LossName::Hybrid => "hybrid",
        }
    }
}

#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopRule {
    /// Ray Tune's TrialPlateauStopper (std over the last `stop_num_results` values below
    /// `stop_std`, after `stop_grace` epochs): what the study's runs did.
    Plateau,
    /// Stop after `patience` epochs without a relative improvement of `min_delta`.
    Patience,
    /// Run every epoch up to `epochs`.
    None,
}

#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Single precision throughout (the study's).
    Fp32,
    /// LSTMs in bf16 from fp32 master weights (fast on CPUs with avx512_bf16/AMX).
    Bf16Mixed,
}

/// Which kernels a training's or a prediction's floats come from
/// (docs/src/guide/reproducing.md).
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// The default: `portable` for a CPU training in fp32, `native` for one on a GPU
    /// (`device: cuda`) or in `bf16-mixed`. Settled when the pipeline is read, so keys, records
    /// and `compare` show what ran. A `device: auto` training is a CPU training: the same
    /// pipeline gives the same bytes whether or not the machine has a GPU.
    Auto,
    /// libtorch's automatic dispatch: the fastest kernels this CPU (or GPU) has. The same seed
    /// gives other bytes on a CPU with other instruction sets.
    // The wire formats (a worker request, model.json) leave `native` out, so it stays serde's
    // default there; params default to `auto` explicitly.
    #[default]
    Native,
    /// magpipe's own engine (the `magpipe-kernels` crate, no libtorch): every floating-point
    /// operation in an order fixed by the shapes alone, with its own exp and tanh and
    /// counter-based randomness, so the same seed gives the same bytes on every CPU (Intel, AMD,
    /// ARM) and at any thread count. Its key names the engine and its numerics version instead
    /// of libtorch's. Its kernels run on AVX-512F, AVX2+FMA or NEON where the CPU has them,
    /// else on the scalar reference, with the same bits (docs/src/guide/reproducing.md has the
    /// measured speed). CPU only, fp32 only.
    Portable,
}

impl Kernels {
    pub fn is_native(&self) -> bool {
        *self == Kernels::Native
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kernels::Auto => "auto",
            Kernels::Native => "native",
            Kernels::Portable => "portable",
        }
    }

    /// `auto` made concrete for a run on `device` in `precision`: magpipe's own engine wherever
    /// it can run (the CPU, fp32), libtorch where only libtorch can (a GPU, bf16).
    pub fn settle(self, device: DeviceName, precision: Precision) -> Kernels {
        match (self, device, precision) {
            (Kernels::Auto, DeviceName::Cuda, _) | (Kernels::Auto, _, Precision::Bf16Mixed) => {
                Kernels::Native
            }
            (Kernels::Auto, _, _) => Kernels::Portable,
            (k, _, _) => k,
        }
    }
}

#[derive(schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceName {
    Auto,
    Cpu,
    Cuda,
}

/// Defaults: the paper's best configuration (Table 1, MagFluxLSTM hybrid).
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    /// The architecture.
    pub model: ModelName,
    /// LSTM hidden size h.
    pub hidden: usize,
    /// Stacked LSTM layers L (the encoder's and the decoder's each).
    pub layers: usize,
    /// Dropout between LSTM layers, in training only.
    pub dropout: f64,
    /// Windows per optimiser step.
    pub batch_size: usize,
    /// Shuffle the training windows every epoch (seeded).
    pub shuffle: bool,
    /// Adam's learning rate.
    pub lr: f64,
    /// Adam's coupled L2 weight decay.
    pub weight_decay: f64,
    /// `hybrid`: value and derivative terms weighted by `alpha`; `value`: MSE on the values.
    pub loss: LossName,
    /// Weight of the value term in the hybrid loss.
    pub alpha: f64,
    /// Loss multiplier before backward; null = ×100 for hybrid, ×1 for value (published code).
    pub loss_scale: Option<f64>,
    /// Enc-Dec only: probability of feeding the true value to the next decoder step.
    pub teacher_forcing_ratio: f64,
    /// Maximum epochs.
    pub epochs: usize,
    pub early_stop: StopRule,
    /// Plateau stopper: stop when the standard deviation of the last `stop_num_results`
    /// validation metrics is below this.
    pub stop_std: f64,
    /// Plateau stopper: how many recent results it looks at.
    pub stop_num_results: usize,
    /// Plateau stopper: epochs before it may stop a run.
    pub stop_grace: usize,
    /// Patience rule: epochs without improvement before stopping.
    pub patience: usize,
    /// Patience rule: the improvement that counts.
    pub min_delta: f64,
    /// `null` draws a seed from the OS at run time (recorded in model.json): a deliberately
    /// unreproducible run, which `magpipe audit` reports.
    pub seed: Option<u64>,
    /// `auto`: a CUDA device when the worker is CUDA-linked and one is usable, else the CPU (the
    /// log says which and why); `cuda` fails with the reason when none is usable.
    pub device: DeviceName,
    /// Threads of this training: libtorch's intra-op threads, or the portable engine's, which
    /// give the same bytes at any count (1: run several trainings side by side).
    pub threads: usize,
    pub precision: Precision,
    /// Take the model's hyper-parameters from a tuning study's best configuration for this
    /// "model loss" (e.g. "MagFluxLSTM hybrid"), read from the `study` list input (`tune.best`).
    pub from_study: Option<String>,
    /// Train on this fraction of the training windows (a fixed, seeded subset), so a tuning
    /// study fits a CPU budget; validation always uses every window. Left out of the key at its
    /// default (see `key_params`), so adding it kept every existing training's key.
    pub subsample: f64,
    /// `auto` (the default: `portable` on the CPU in fp32, `native` on a GPU or in bf16-mixed),
    /// `portable` (magpipe's own engine: the same bytes from the same seed on every CPU and at
    /// any thread count; CPU only, fp32 only) or `native` (libtorch picks kernels for this CPU or
    /// GPU). Settled when the pipeline is read. Left out of the key and of model.json at
    /// `native`, so native results keep the keys and bytes they had before the engine existed.
    pub kernels: Kernels,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            model: ModelName::MagFluxLstm,
            hidden: 128,
            layers: 4,
            dropout: 0.1,
            batch_size: 64,
            shuffle: true,
            lr: 7.06e-3,
            weight_decay: 1.4e-6,
            loss: LossName::Hybrid,
            alpha: 0.7,
            loss_scale: None,
            teacher_forcing_ratio: 0.0,
            epochs: 10,
            early_stop: StopRule::Plateau,
            stop_std: 0.01,
            stop_num_results: 4,
            stop_grace: 10,
            patience: 10,
            min_delta: 1e-4,
            seed: Some(0),
            device: DeviceName::Auto,
            threads: 1,
            precision: Precision::Fp32,
            subsample: 1.0,
            from_study: None,
            kernels: Kernels::Auto,
        }
    }
}

impl TrainParams {
    /// The device the run asks for: portable kernels are CPU kernels, so `auto` means the CPU.
    pub fn device(&self) -> DeviceName {
        match self.kernels.settle(self.device, self.precision) {
            Kernels::Native => self.device,
            Kernels::Portable | Kernels::Auto => DeviceName::Cpu,
        }
    }

    /// The kernels this training runs with (`auto` settled).
    pub fn kernels(&self) -> Kernels {
        self.kernels.settle(self.device, self.precision)
    }

    pub fn loss_scale(&self) -> f64 {
        self.loss_scale.unwrap_or(match self.loss {
            LossName::Hybrid => 100.0,
            LossName::Value => 1.0,
        })
    }
}

/// The worker binary: $MAGPIPE_WORKER, else `magpipe-worker` beside the running executable.
pub fn worker_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MAGPIPE_WORKER") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("magpipe-worker")))
        .unwrap_or_else(|| PathBuf::from("magpipe-worker"))
}

/// What a worker request looks like on its stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRequest {
    pub kind: String,
    pub params: Value,
    pub inputs: std::collections::BTreeMap<String, PathBuf>,
    pub out_dir: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub threads: usize,
    /// The kernels the worker runs with: libtorch's, or magpipe's own engine.
    #[serde(default, skip_serializing_if = "Kernels::is_native")]
    pub kernels: Kernels,
}

/// One line a worker writes on its stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerEvent {
    Progress {
        done: u64,
        total: u64,
        unit: String,
    },
    Log {
        msg: String,
    },
    /// One finished (and checkpointed) training epoch.
    Epoch {
        epoch: usize,
        train_loss: f64,
        val_rmse: f64,
        lr: f64,
    },
    Report {
        summary: String,
        stdout: Option<String>,
        facts: Value,
    },
}

/// Starts `magpipe-worker run-stage` with piped stdio and hands it `req`; the caller reads its
/// events from stdout and its last error line from stderr.
/// `gpu` pins it to one CUDA device (`CUDA_VISIBLE_DEVICES`), where it is `cuda:0`.
pub fn spawn_worker(
    req: &WorkerRequest,
    gpu: Option<usize>,
) -> Result<std::process::Child, StageError> {
    let exe = worker_path();
    let fail = |msg: String| StageError::Invalid(format!("worker {}: {msg}", exe.display()));
    let mut cmd = Command::new(&exe);
    if let Some(g) = gpu {
        cmd.env("CUDA_VISIBLE_DEVICES", g.to_string());
    }
    let mut child = cmd
        .arg("run-stage")
        .env("MAGPIPE_PARENT_PID", std::process::id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start ({e}); build it with `make build`")))?;
    let body = serde_json::to_vec(req).expect("request serialises");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(&body)
        .map_err(|e| fail(format!("cannot send the request: {e}")))?;
    Ok(child)
}

/// Runs a request in a worker process, relaying its events; the worker's last stderr line is the
/// error when it fails.
pub fn run_in_worker(req: &WorkerRequest, ctx: &Context<'_>) -> Result<Report, StageError> {
    run_in_worker_with(req, ctx.events)
}

/// [`run_in_worker`] outside a stage (`magpipe forecast`): progress and logs go to `events`.
pub fn run_in_worker_with(
    req: &WorkerRequest,
    events: &dyn crate::kind::Events,
) -> Result<Report, StageError> {
    let exe = worker_path();
    let fail = |msg: String| StageError::Invalid(format!("worker {}: {msg}", exe.display()));
    let mut child = spawn_worker(req, None)?;
    let stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut last = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !line.trim().is_empty() {
                last = line;
            }
        }
        last
    });
    let mut report = None;
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        match serde_json::from_str::<WorkerEvent>(&line) {
            Ok(WorkerEvent::Progress { done, total, unit }) => events.progress(done, total, &unit),
            Ok(WorkerEvent::Log { msg }) => events.log(&msg),
            Ok(WorkerEvent::Epoch { .. }) => {}
            Ok(WorkerEvent::Report {
                summary,
                stdout,
                facts,
            }) => {
                report = Some(Report {
                    summary,
                    stdout,
                    facts,
                })
            }
            Err(_) => events.log(&line),
        }
    }
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    let last = err_reader.join().unwrap_or_default();
    match (status.success(), report) {
        (true, Some(r)) => Ok(r),
        (true, None) => Err(fail("finished without a report".into())),
        (false, _) => Err(fail(if last.is_empty() {
            format!("exited with {status}")
        } else {
            last.trim_start_matches("error: ").to_string()
        })),
    }
}

/// The worker's `info` (libtorch version, devices), cached per worker binary in `cache_dir`:
/// starting libtorch costs ≈0.2 s, which a fully cached run must not pay.
pub fn worker_info(cache_dir: &Path) -> Result<Value, StageError> {
    let exe = worker_path();
    let fail = |msg: String| StageError::Invalid(format!("worker {}: {msg}", exe.display()));
    let meta = std::fs::metadata(&exe)
        .map_err(|e| fail(format!("not found ({e}); build it with `make build`")))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let tag = blake3::hash(format!("{}|{}|{mtime}", exe.display(), meta.len()).as_bytes()).to_hex();
    let cached = cache_dir.join(format!("worker-{}.json", &tag[..16]));
    if let Ok(b) = std::fs::read(&cached)
        && let Ok(v) = serde_json::from_slice(&b)
    {
        return Ok(v);
    }
    let out = Command::new(&exe)
        .arg("info")
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))?;
    let _ = std::fs::create_dir_all(cache_dir);
    let tmp = cached.with_extension(format!("{}.tmp", std::process::id()));
    if std::fs::write(&tmp, &out.stdout).is_ok() {
        let _ = std::fs::rename(&tmp, &cached);
    }
    Ok(v)
}

/// What computes a training or a prediction, for its key: magpipe's own engine for `portable`
/// kernels, libtorch for `native` ([`torch_runtime`]).
pub fn stage_runtime(
    kernels: Kernels,
    device: DeviceName,
    cache_dir: &Path,
) -> Result<Value, StageError> {
    match kernels {
        Kernels::Portable => Ok(portable_runtime()),
        Kernels::Native => {
            let info = worker_info(cache_dir)?;
            if info["libtorch_version"].is_null() {
                return Err(StageError::Invalid(format!(
                    "{} asks for libtorch, and {}",
                    needs_libtorch(device),
                    NO_TORCH
                )));
            }
            Ok(torch_runtime(&info, device))
        }
        Kernels::Auto => Err(StageError::Invalid(
            "kernels `auto` reached the key unsettled (Kernels::settle)".into(),
        )),
    }
}

/// What a worker built without libtorch lacks, and how to get it (the worker says the same).
const NO_TORCH: &str = "the magpipe-worker here was built without it: `make build` installs \
    libtorch (1.2 GB) and rebuilds the worker with it";

/// Why a stage needs libtorch, in its params' words.
fn needs_libtorch(device: DeviceName) -> &'static str {
    match device {
        DeviceName::Cuda => "`device: cuda`",
        _ => "`kernels: native` (or bf16-mixed)",
    }
}

/// What enters the key of a stage on magpipe's own engine: the engine and the version of its
/// numerics contract, which is bumped whenever the engine's bits change. Nothing of libtorch or
/// the machine: the engine gives the same bits on every CPU. It never equals a libtorch runtime,
/// so results of the earlier `portable` (libtorch with pinned kernels) keep keys of their own.
pub fn portable_runtime() -> Value {
    json!({
        "engine": "magpipe-kernels",
        "numerics": magpipe_kernels::NUMERICS,
        "device": "cpu",
    })
}

/// What of the torch build and the machine enters a torch stage's key: the libtorch version and
/// the device the stage will run on; on a GPU also the GPU's name and the driver's, CUDA's and
/// cuDNN's versions, which all change results. The CPU model and instruction set do not enter
/// it (they are recorded: `facts.hardware`), so that the nodes of one cluster, or a laptop and a
/// workstation, share a cache; `magpipe audit` names them when a rerun differs. Thread counts
/// change float summation order and are params, hence in the key already.
pub fn torch_runtime(info: &Value, device: DeviceName) -> Value {
    let cuda = match device {
        DeviceName::Cpu => false,
        DeviceName::Cuda => true,
        DeviceName::Auto => info["cuda_available"].as_bool() == Some(true),
    };
    let mut v = json!({
        "libtorch": info["libtorch_version"],
        "device": if cuda { "cuda" } else { "cpu" },
    });
    if cuda {
        add_gpu(&mut v, &info["cuda"]);
    }
    v
}

/// The GPU's name and the driver's, CUDA's and cuDNN's versions, from `info`'s `cuda`.
fn add_gpu(v: &mut Value, c: &Value) {
    v["gpu"] = c["devices"][0].clone();
    v["driver_cuda"] = c["driver_cuda_version"].clone();
    v["cuda"] = c["runtime_version"].clone();
    v["cudnn"] = c["cudnn_version"].clone();
}

/// What a torch stage records about where it ran (its record's `facts.hardware`, which lineage
/// prints and audit compares), from `magpipe-worker info`'s `cpu` and `cuda`. The CPU is always
/// there: the same seed gives other weights on a CPU whose kernels use another instruction set.
pub fn hardware_facts(info: &Value, cuda: bool) -> Value {
    let (cpu, c) = (&info["cpu"], &info["cuda"]);
    let mut v = json!({
        "device": if cuda { "cuda" } else { "cpu" },
        "cpu": cpu["model"],
        "cpu_isa": format!(
            "{} (ATen {})",
            cpu["onednn_isa"].as_str().unwrap_or("unknown"),
            cpu["aten_capability"].as_str().unwrap_or("unknown")
        ),
    });
    if cuda {
        add_gpu(&mut v, c);
    }
    v
}

/// Portable kernels are magpipe's own fp32 CPU engine: it has no GPU or bf16 path, so asking
/// for either with it is an error.
pub fn check_kernels(
    kernels: Kernels,
    device: DeviceName,
    precision: Precision,
) -> Result<(), ParamError> {
    let bad = |msg: &str| {
        Err(ParamError::Invalid {
            name: "kernels".into(),
            msg: msg.into(),
        })
    };
    match (kernels, device, precision) {
        (Kernels::Portable, DeviceName::Cuda, _) => bad(
            "`portable` kernels are magpipe's own CPU engine; set device: cpu (or auto) or \
             kernels: native for a GPU",
        ),
        (Kernels::Portable, _, Precision::Bf16Mixed) => bad(
            "`portable` kernels compute in fp32 (magpipe's own engine has no bf16); set \
             precision: fp32 or kernels: native",
        ),
        _ => Ok(()),
    }
}

pub struct Train;

/// The inputs of every kind that trains: the training and validation windows.
pub const WINDOW_INPUTS: &[InputSlot] = &[
    InputSlot {
        name: "train",
        doc: "training windows (window.train)",
    },
    InputSlot {
        name: "val",
        doc: "validation windows (window.val)",
    },
];

/// The params with a study's best configuration applied, when `from_study` asks for one.
fn from_study(p: &TrainParams, ctx: &Context<'_>) -> Result<TrainParams, StageError> {
    let Some(which) = &p.from_study else {
        return Ok(p.clone());
    };
    let entries = ctx.list("study");
    let Some(e) = entries.first() else {
        return Err(StageError::Invalid(format!(
            "from_study: `{which}` needs a study: wire `study: [tune.best]` into this stage"
        )));
    };
    let path = e.output("best")?;
    let text = std::fs::read_to_string(path).map_err(|err| StageError::io(path, err))?;
    let best: Value = serde_json::from_str(&text).map_err(|err| StageError::table(path, err))?;
    let Some(cfg) = best
        .get(which)
        .and_then(|b| b.get("config"))
        .and_then(Value::as_object)
    else {
        return Err(StageError::table(
            path,
            format!(
                "no best configuration for `{which}` (the study has: {})",
                best.as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            ),
        ));
    };
    let mut v = serde_json::to_value(p).expect("params serialise");
    let o = v.as_object_mut().expect("a struct");
    // A parameter inactive in the best configuration takes its default (no teacher forcing for
    // MagFluxLSTM, α unused by the value loss).
    o.insert("teacher_forcing_ratio".into(), serde_json::json!(0.0));
    for (k, val) in cfg {
        o.insert(k.clone(), val.clone());
    }
    let q: TrainParams = serde_json::from_value(v)
        .map_err(|err| StageError::table(path, format!("`{which}`: {err}")))?;
    Train::check(&q).map_err(|err| StageError::table(path, format!("`{which}`: {err}")))?;
    Ok(q)
}

impl TypedKind for Train {
    const CONTRACTS: &'static [(&'static str, &'static str)] =
        &[("config", crate::contract_names::MODEL_CONFIG)];
    type Params = TrainParams;
    const NAME: &'static str = "train";
    const VERSION: u32 = 2;
    // Seconds and windows/s per epoch.
    const VOLATILE_OUTPUTS: &'static [&'static str] = &["history", "history_md"];
    const SEED_PARAM: Option<&'static str> = Some("seed");
    const DOC: &'static str = "Trains MagFluxLSTM or MagFluxEnc-Dec with the study's procedure in a \
        worker process (libtorch, or magpipe's own engine with `kernels: portable`); checkpoints \
        every epoch and resumes after a crash.";
    const INPUTS: &'static [InputSlot] = WINDOW_INPUTS;
    const LIST_INPUTS: &'static [InputSlot] = &[InputSlot {
        name: "study",
        doc: "a tuning study's best configurations (tune.best), for `from_study`",
    }];
    const OUTPUTS: &'static [OutputSlot] = &[
        OutputSlot {
            name: "model",
            file: "model.safetensors",
            doc: "trained weights",
        },
        OutputSlot {
            name: "config",
            file: "model.json",
            doc: "architecture, params, parameter count, metrics, collapse flag",
        },
        OutputSlot {
            name: "history",
            file: "history.parquet",
            doc: "per epoch: train loss, val derivative RMSE, zero-slope RMSE, lr, seconds, windows/s",
        },
        OutputSlot {
            name: "history_md",
            file: "history.md",
            doc: "the history as a Markdown table",
        },
        OutputSlot {
            name: "loss_curve",
            file: "loss.png",
            doc: "training loss and validation derivative RMSE per epoch, with the zero-slope line",
        },
    ];

    fn check(p: &TrainParams) -> Result<(), ParamError> {
        let bad = |name: &str, msg: &str| {
            Err(ParamError::Invalid {
                name: name.into(),
                msg: msg.into(),
            })
        };
        for (name, v) in [
            ("hidden", p.hidden),
            ("layers", p.layers),
            ("batch_size", p.batch_size),
            ("epochs", p.epochs),
            ("threads", p.threads),
        ] {
            if v == 0 {
                return bad(name, "must be at least 1");
            }
        }
        if !(0.0..1.0).contains(&p.dropout) {
            return bad("dropout", "must be in [0, 1)");
        }
        if !(p.lr.is_finite() && p.lr > 0.0) {
            return bad("lr", "must be a positive number");
        }
        if !(p.weight_decay.is_finite() && p.weight_decay >= 0.0) {
            return bad("weight_decay", "must be ≥ 0");
        }
        if !(0.0..=1.0).contains(&p.alpha) {
            return bad("alpha", "must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&p.teacher_forcing_ratio) {
            return bad("teacher_forcing_ratio", "must be in [0, 1]");
        }
        if p.teacher_forcing_ratio > 0.0 && p.model == ModelName::MagFluxLstm {
            return bad(
                "teacher_forcing_ratio",
                "only MagFluxEnc-Dec has a decoder to feed",
            );
        }
        if !(p.subsample > 0.0 && p.subsample <= 1.0) {
            return bad("subsample", "must be in (0, 1]");
        }
        if p.loss_scale.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
            return bad("loss_scale", "must be a positive number or null");
        }
        check_kernels(p.kernels, p.device, p.precision)
    }

    fn settle(p: &mut TrainParams) {
        p.kernels = p.kernels();
    }

    fn key_params(p: &TrainParams) -> Value {
        let mut v = serde_json::to_value(p).expect("params serialise");
        let o = v.as_object_mut().expect("a struct");
        // Params added later stay out of the key at their defaults, so old keys hold.
        if p.subsample == 1.0 {
            o.remove("subsample");
        }
        if p.from_study.is_none() {
            o.remove("from_study");
        }
        if p.kernels.is_native() {
            o.remove("kernels");
        }
        v
    }

    fn runtime(p: &TrainParams, cache_dir: &Path) -> Result<Value, StageError> {
        stage_runtime(p.kernels(), p.device(), cache_dir)
    }

    fn metrics(_p: &TrainParams, run: &crate::kind::Finished<'_>) -> Vec<crate::kind::Metric> {
        let Some(v) = run.facts["val_rmse"].as_f64() else {
            return Vec::new();
        };
        let collapsed = run.facts["collapsed"].as_bool() == Some(true);
        vec![crate::kind::Metric::summary(
            "val derivative RMSE",
            format!("{v:.4e}{}", if collapsed { " (COLLAPSED)" } else { "" }),
        )]
    }

    fn run(p: &TrainParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let p = &from_study(p, ctx)?;
        let req = WorkerRequest {
            kind: Self::NAME.into(),
            params: serde_json::to_value(p).expect("params serialise"),
            inputs: ctx.inputs.clone(),
            out_dir: ctx.out_dir.to_path_buf(),
            checkpoint_dir: ctx.checkpoint_dir.clone(),
            threads: p.threads,
            kernels: p.kernels(),
        };
        run_in_worker(&req, ctx)
    }
}

/// Params of `predict`.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictParams {
    /// Name in tables and figures (default: "<model> <loss>", e.g. "MagFluxLSTM hybrid").
    pub label: Option<String>,
    /// libtorch intra-op threads of the model run (portable kernels give the same bytes at any
    /// count).
    pub threads: usize,
    /// The kernels of the model run: `auto` (the default) and `portable` run it on magpipe's own
    /// engine, whatever trained it (a prediction always runs on the CPU in fp32), so Table 2 is
    /// the same bytes on every machine; `native` on libtorch; null on the kernels the model was
    /// trained with (its model.json). Left out of the key when null (the model's own kernels are
    /// in its model.json, an input).
    pub kernels: Option<Kernels>,
}

impl Default for PredictParams {
    fn default() -> Self {
        PredictParams {
            label: None,
            threads: 1,
            kernels: Some(Kernels::Auto),
        }
    }
}

/// The kernels a trained model was trained with, from its model.json (`params.kernels`, absent
/// when `native`).
pub fn trained_kernels(config: &Path) -> Result<Kernels, StageError> {
    let text = std::fs::read_to_string(config).map_err(|e| StageError::io(config, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| StageError::table(config, e))?;
    match v["params"].get("kernels") {
        None | Some(Value::Null) => Ok(Kernels::Native),
        Some(k) => serde_json::from_value(k.clone())
            .map_err(|e| StageError::table(config, format!("params.kernels: {e}"))),
    }
}

pub struct Predict;

impl TypedKind for Predict {
    const CONTRACTS: &'static [(&'static str, &'static str)] =
        crate::contract_names::PREDICTOR_CONTRACTS;
    type Params = PredictParams;
    const NAME: &'static str = "predict";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Runs a trained model over the test protocol (rolling windows per \
        scored tile, eval mode), recalibrates and denormalises; per-tile and per-AR metrics in Gauss.";
    const INPUTS: &'static [InputSlot] = &[
        InputSlot {
            name: "model",
            doc: "trained weights (train.model)",
        },
        InputSlot {
            name: "config",
            doc: "the training run's model.json (train.config)",
        },
        crate::protocol::PROTOCOL_SLOT,
        crate::protocol::TEST_SLOT,
        crate::protocol::SCALER_SLOT,
    ];
    const OUTPUTS: &'static [OutputSlot] = crate::protocol::PREDICTOR_OUTPUTS;

    fn check(p: &PredictParams) -> Result<(), ParamError> {
        if p.threads == 0 {
            return Err(ParamError::Invalid {
                name: "threads".into(),
                msg: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    fn settle(p: &mut PredictParams) {
        if p.kernels == Some(Kernels::Auto) {
            p.kernels = Some(Kernels::Portable);
        }
    }

    fn key_params(p: &PredictParams) -> Value {
        let mut v = serde_json::to_value(p).expect("params serialise");
        if p.kernels.is_none() {
            v.as_object_mut().expect("a struct").remove("kernels");
        }
        v
    }

    fn runtime(p: &PredictParams, cache_dir: &Path) -> Result<Value, StageError> {
        // Inference over a few hundred windows: the CPU, always, so Table 2 does not depend on
        // whether a GPU trained the model. With `kernels: null` the engine follows the model's
        // model.json, which the key holds as an input but this cannot read: the libtorch
        // runtime stays in such a key, which at worst reruns a portable prediction after a
        // libtorch upgrade.
        stage_runtime(
            p.kernels.map_or(Kernels::Native, |k| {
                k.settle(DeviceName::Cpu, Precision::Fp32)
            }),
            DeviceName::Cpu,
            cache_dir,
        )
    }

    fn metrics(_p: &PredictParams, run: &crate::kind::Finished<'_>) -> Vec<crate::kind::Metric> {
        crate::protocol::predictor_metrics(run)
    }

    fn run(p: &PredictParams, ctx: &Context<'_>) -> Result<Report, StageError> {
        let kernels = match p.kernels {
            Some(k) => k.settle(DeviceName::Cpu, Precision::Fp32),
            None => trained_kernels(ctx.input("config")?)?,
        };
        let req = WorkerRequest {
            kind: Self::NAME.into(),
            params: serde_json::to_value(p).expect("params serialise"),
            inputs: ctx.inputs.clone(),
            out_dir: ctx.out_dir.to_path_buf(),
            checkpoint_dir: ctx.checkpoint_dir.clone(),
            threads: p.threads,
            kernels,
        };
        run_in_worker(&req, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(gpu: bool) -> Value {
        json!({
            "libtorch_version": "2.13.0+cu130",
            "cuda_available": gpu,
            "cuda_devices": if gpu { 1 } else { 0 },
            "cuda": {
                "devices": if gpu { json!(["NVIDIA H200"]) } else { json!([]) },
                "driver_cuda_version": if gpu { json!("13.0") } else { Value::Null },
                "runtime_version": "13.0",
                "cudnn_version": "9.20.0",
            },
            "cpu": {"model": "any", "onednn_isa": "avx2"},
        })
    }

    #[test]
    fn a_cpu_key_holds_libtorch_and_device_only_and_a_gpu_key_its_versions() {
        let cpu = json!({"libtorch": "2.13.0+cu130", "device": "cpu"});
        // The CPU model and ISA never enter the key; on a CPU the runtime is what it always was.
        assert_eq!(torch_runtime(&info(false), DeviceName::Auto), cpu);
        assert_eq!(torch_runtime(&info(true), DeviceName::Cpu), cpu);
        let gpu = json!({
            "libtorch": "2.13.0+cu130", "device": "cuda", "gpu": "NVIDIA H200",
            "driver_cuda": "13.0", "cuda": "13.0", "cudnn": "9.20.0",
        });
        assert_eq!(torch_runtime(&info(true), DeviceName::Auto), gpu);
        assert_eq!(torch_runtime(&info(true), DeviceName::Cuda), gpu);
    }

    #[test]
    fn a_portable_key_names_the_engine_and_its_numerics_never_libtorch() {
        let dir = tempfile::tempdir().unwrap();
        // No worker is asked: the engine's runtime depends on nothing of libtorch.
        let r = stage_runtime(Kernels::Portable, DeviceName::Auto, dir.path()).unwrap();
        assert_eq!(
            r,
            json!({"engine": "magpipe-kernels", "numerics": magpipe_kernels::NUMERICS, "device": "cpu"})
        );
        assert!(r.get("libtorch").is_none());
        assert_ne!(r, torch_runtime(&info(false), DeviceName::Cpu));
    }

    #[test]
    fn the_hardware_record_names_the_cpu_always_and_the_gpu_on_cuda() {
        let mut i = info(true);
        i["cpu"]["aten_capability"] = json!("AVX2");
        assert_eq!(
            hardware_facts(&i, false),
            json!({"device": "cpu", "cpu": "any", "cpu_isa": "avx2 (ATen AVX2)"})
        );
        assert_eq!(
            hardware_facts(&i, true),
            json!({
                "device": "cuda", "cpu": "any", "cpu_isa": "avx2 (ATen AVX2)", "gpu": "NVIDIA H200",
                "driver_cuda": "13.0", "cuda": "13.0", "cudnn": "9.20.0",
            })
        );
    }
}
