//! `magpipe forecast`: a trained model of the pipeline, found with its whole lineage in the
//! store, run on an AR folder as an operator would see it (see `crate::forecast` for
//! the semantics). The engine resolves the model, reads and checks the data, runs the model in
//! a worker process and writes what a replay produces; it never writes to the store's objects,
//! records or refs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::alarms::{self, AlarmParams, Scored};
use crate::forecast::{
    self as fc, Choice, DataInfo, ForecastError, ForecastReport, Geometry, Live, LiveData,
    ModelFrame, ModelInfo, ReplayReport, TimelineRow,
};
use crate::kind::Events;
use crate::protocol::ProtocolParams;
use crate::scale::Scaler;
use crate::solared;
use crate::table::FLUX;
use crate::train::{
    DeviceName, Kernels, Precision, PredictParams, WorkerRequest, run_in_worker_with,
    trained_kernels,
};
use crate::window::WindowParams;
use serde_json::{Value, json};

use magpipe_engine::Registry;
use magpipe_engine::error::RunError;

/// Why a forecast or replay could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline, the store or a stage (a usage error among them).
    #[error(transparent)]
    Engine(#[from] RunError),
    /// Bad or too little data, a model of another layout.
    #[error("{0}")]
    Forecast(String),
}

impl From<magpipe_engine::error::StoreError> for Error {
    fn from(e: magpipe_engine::error::StoreError) -> Error {
        Error::Engine(e.into())
    }
}

impl From<magpipe_engine::error::SpecError> for Error {
    fn from(e: magpipe_engine::error::SpecError) -> Error {
        Error::Engine(e.into())
    }
}
use magpipe_engine::events::{Event, Sink};
use magpipe_engine::exec::{self, Freshness};
use magpipe_engine::plan::Plan;
use magpipe_engine::provenance;
use magpipe_engine::spec::RawSpec;
use magpipe_engine::store::Store;

fn usage(msg: impl Into<String>) -> Error {
    Error::Engine(RunError::Usage(msg.into()))
}

fn fail(e: ForecastError) -> Error {
    Error::Forecast(e.to_string())
}

/// A model of the pipeline, resolved down to its files and its pipeline's semantics.
pub struct Resolved {
    pub info: ModelInfo,
    pub frame: ModelFrame,
    pub weights: PathBuf,
    pub config: PathBuf,
    /// The ingest stage's data folder, where `--replay <AR number>` looks.
    pub data_dir: Option<PathBuf>,
    pub label: String,
    /// Why the model is not what `pipeline.yaml` would produce now, when it is not.
    pub stale: Option<String>,
    /// The kernels the pipeline's `predict` of this model runs on (its `kernels`, settled), so
    /// the alarms an operator gets are the ones Table 2 was scored from.
    pub kernels: Kernels,
}

/// The model's record: the one the plan would produce now when it is in the store, else the
/// one the variant last trained (with why it is stale: a forecast uses the model that exists,
/// and says so, rather than refusing because, say, the data folder has grown since).
fn model_record(
    plan: &Plan,
    store: &Store,
    i: usize,
    variant: Option<&str>,
) -> Result<(magpipe_engine::store::Record, Option<String>), Error> {
    let stage = &plan.stages[i].name;
    let selected = plan
        .select(std::slice::from_ref(stage))
        .map_err(RunError::Usage)?;
    // A forecast needs the store and the AR folder only: when the pipeline's own inputs cannot
    // be read (its data folder moved or gone), whether the model is current cannot be told,
    // and the model last trained is used with a note saying why.
    let (why, unknown) = match exec::status(plan, store, &selected) {
        Ok(status) => match status.into_iter().find(|(j, _)| *j == i).map(|(_, f)| f) {
            Some(Freshness::Fresh(r)) => return Ok((*r, None)),
            Some(Freshness::Stale { why, .. }) => (magpipe_engine::stale::joined(&why), false),
            None => ("not selected".into(), false),
        },
        Err(RunError::Stage { stage, error }) => (
            magpipe_engine::stale::StaleReason::Unknown {
                stage,
                error: error.to_string(),
            }
            .to_string(),
            true,
        ),
        Err(e) => return Err(e.into()),
    };
    let run = match variant {
        Some(v) => format!("magpipe run {stage} --variant {v}"),
        None => format!("magpipe run {stage}"),
    };
    let last = store
        .read_ref(variant, stage)
        .map(|k| store.record(&k))
        .transpose()?
        .flatten()
        .ok_or_else(|| {
            Error::Forecast(format!(
                "stage `{stage}` has never trained a model here ({why}); run `{run}` first"
            ))
        })?;
    let note = if unknown {
        format!(
            "whether `{stage}` is what pipeline.yaml would train now cannot be told ({why}); \
             forecasting with the model it last trained (key {}).",
            magpipe_engine::key::short(&last.key)
        )
    } else {
        format!(
            "`{stage}` is not what pipeline.yaml would train now ({why}); forecasting with the \
             model it last trained (key {}). `{run}` brings it up to date.",
            magpipe_engine::key::short(&last.key)
        )
    };
    Ok((last, Some(note)))
}

/// `STAGE[@VARIANT]` → (stage, variant); `default` is no variant.
fn parse_model(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((st, v)) if v != magpipe_engine::compare::DEFAULT => (st, Some(v)),
        Some((st, _)) => (st, None),
        None => (s, None),
    }
}

fn wire_from(plan: &Plan, stage: usize, slot: &str) -> Option<usize> {
    plan.stages[stage]
        .inputs
        .iter()
        .find(|w| w.slot == slot)
        .map(|w| w.from)
}

/// The kernels the plan's `predict` of the model at stage `train` runs on: its `kernels`
/// param, settled; null follows the model (its model.json at `config`). Without a `predict`
/// stage, `predict`'s default.
fn predict_kernels(plan: &Plan, train: usize, config: &Path) -> Result<Kernels, Error> {
    let predict =
        plan.stages.iter().enumerate().find(|(j, s)| {
            s.kind.name() == "predict" && wire_from(plan, *j, "model") == Some(train)
        });
    let params: PredictParams = match predict {
        Some((_, s)) => serde_json::from_value(s.params.clone())
            .map_err(|e| usage(format!("predict params: {e}")))?,
        None => PredictParams::default(),
    };
    match params.kernels {
        Some(k) => Ok(k.settle(DeviceName::Cpu, Precision::Fp32)),
        None => trained_kernels(config).map_err(|e| Error::Forecast(e.to_string())),
    }
}

/// The train stage behind Table 2's primary predictor (the `score_alarms` stage's `primary`,
/// else its first listed predictor).
fn default_model(plan: &Plan) -> Result<String, Error> {
    let none = || {
        usage(
            "the pipeline has no score_alarms stage to take Table 2's model from; name one with --model STAGE",
        )
    };
    let a = plan
        .stages
        .iter()
        .position(|s| s.kind.name() == "score_alarms")
        .ok_or_else(none)?;
    let s = &plan.stages[a];
    let primary = s.params["primary"].as_str();
    let mut entries: Vec<(usize, usize)> = s
        .inputs
        .iter()
        .filter_map(|w| {
            let rest = w.slot.strip_prefix("predictors[")?;
            let (i, _) = rest.split_once(']')?;
            Some((i.parse().ok()?, w.from))
        })
        .collect();
    entries.sort_unstable();
    entries.dedup();
    let pick = entries
        .iter()
        .map(|&(_, from)| from)
        .find(|&from| match primary {
            Some(p) => plan.stages[from].name == p,
            None => true,
        })
        .ok_or_else(|| match primary {
            Some(p) => usage(format!(
                "Table 2's primary predictor `{p}` names no stage of `{}`'s list; name the model with --model STAGE",
                s.name
            )),
            None => none(),
        })?;
    let predictor = &plan.stages[pick];
    let train = wire_from(plan, pick, "model").ok_or_else(|| {
        usage(format!(
            "Table 2's primary predictor `{}` is a {} stage, not a model; name one with --model STAGE",
            predictor.name,
            predictor.kind.name()
        ))
    })?;
    Ok(plan.stages[train].name.clone())
}

/// Finds the model `STAGE[@VARIANT]` (default: Table 2's) with its lineage, its scaler, its
/// windows' geometry, its pipeline's test protocol and alarm criterion (see [`model_record`] for
/// which record), and checks that it takes the study's feature layout.
pub fn resolve(
    spec: &RawSpec,
    registry: &Registry,
    store: &Store,
    model: Option<&str>,
) -> Result<Resolved, Error> {
    let (stage, variant) = match model {
        Some(m) => {
            let (s, v) = parse_model(m);
            (Some(s.to_string()), v)
        }
        None => (None, None),
    };
    let plan = magpipe_engine::sweep::plan_for(spec, registry, variant, &[])?;
    let stage = match stage {
        Some(s) => s,
        None => default_model(&plan)?,
    };
    let i = plan.index(&stage).ok_or_else(|| {
        usage(format!(
            "no stage `{stage}` (train stages: {})",
            plan.stages
                .iter()
                .filter(|s| s.kind.name() == "train")
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if plan.stages[i].kind.name() != "train" {
        return Err(usage(format!(
            "--model takes a train stage; `{stage}` is a {} stage",
            plan.stages[i].kind.name()
        )));
    }
    let (record, stale) = model_record(&plan, store, i, variant)?;
    let chain = provenance::record_chain(store, &record.key)?;
    // Held against a gc in another terminal while the forecast reads them; the objects are
    // checked against their hashes below, so anything removed before this is refused, not used.
    store.begin_lease("forecast")?;
    store.hold_records(&chain.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())?;
    let lineage = provenance::records_lineage(&chain, registry, variant);
    let by_key =
        |k: Option<&String>, kind: &str| -> Result<&magpipe_engine::store::Record, Error> {
            k.and_then(|k| chain.iter().find(|r| &r.key == k))
            .filter(|r| r.preimage.kind == kind)
            .ok_or_else(|| {
                Error::Forecast(format!(
                    "the record of `{stage}` has no {kind} stage upstream of its training windows"
                ))
            })
        };
    let window_rec = by_key(record.upstream.get("train"), "window")?;
    let scale_rec = by_key(window_rec.upstream.get("train"), "minmax_scale")?;
    // A forecast names the hashes of the files it used, so it checks them instead of trusting
    // the store: a damaged object is refused, not forecast with.
    let output =
        |r: &magpipe_engine::store::Record, out: &str| -> Result<(PathBuf, String), Error> {
            let o = r.outputs.get(out).ok_or_else(|| {
                Error::Forecast(format!("the record of `{}` has no output `{out}`", r.stage))
            })?;
            let path = store.object_path(o);
            let ok = path.is_file() && magpipe_engine::store::hash_file(&path)?.0 == o.hash;
            if !ok {
                return Err(Error::Forecast(format!(
                    "{}: missing, or not the bytes the record of stage `{}` holds; the store is \
                 damaged (`magpipe verify` names what, `magpipe run {}` recreates it)",
                    path.display(),
                    r.stage,
                    r.stage
                )));
            }
            Ok((path, o.hash.clone()))
        };
    let wp: WindowParams = serde_json::from_value(window_rec.preimage.params.clone())
        .map_err(|e| Error::Forecast(format!("the window record's params: {e}")))?;
    let (scaler_path, scaler_hash) = output(scale_rec, "scaler")?;
    let scaler = Scaler::read(&scaler_path).map_err(|e| Error::Forecast(e.to_string()))?;
    let (weights, weights_hash) = output(&record, "model")?;
    let (config, _) = output(&record, "config")?;
    let cfg: Value = std::fs::read_to_string(&config)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| Error::Forecast(format!("{}: not a model.json", config.display())))?;
    let arch = &cfg["architecture"];
    let (Some(model_inputs), Some(horizon)) = (arch["input"].as_u64(), arch["horizon"].as_u64())
    else {
        return Err(Error::Forecast(format!(
            "{}: no architecture input/horizon",
            config.display()
        )));
    };
    fc::check_layout(model_inputs as usize, &scaler).map_err(fail)?;
    let window = wire_from(&plan, i, "train").unwrap_or(usize::MAX);
    let protocol = plan.stages.iter().position(|s| {
        s.kind.name() == "test_protocol"
            && s.inputs
                .iter()
                .any(|w| w.slot == "index" && w.from == window)
    });
    let protocol_params: Option<ProtocolParams> = protocol
        .map(|p| serde_json::from_value(plan.stages[p].params.clone()))
        .transpose()
        .map_err(|e| usage(format!("test_protocol params: {e}")))?;
    let alarms = protocol
        .and_then(|p| {
            plan.stages.iter().find(|s| {
                s.kind.name() == "score_alarms"
                    && s.inputs.iter().any(|w| w.slot == "protocol" && w.from == p)
            })
        })
        .map(|s| serde_json::from_value::<AlarmParams>(s.params.clone()))
        .transpose()
        .map_err(|e| usage(format!("score_alarms params: {e}")))?
        .unwrap_or_default();
    let data_dir = plan
        .stages
        .iter()
        .find(|s| s.kind.name() == "ingest_solared")
        .and_then(|s| s.params["data_dir"].as_str())
        .map(PathBuf::from);
    let params = &cfg["params"];
    let model_name = params["model"].as_str().unwrap_or_default().to_string();
    let loss = match params["loss"].as_str() {
        Some("hybrid") => "hybrid",
        _ => "MSE",
    };
    let info = ModelInfo {
        stage: stage.clone(),
        variant: variant.map(str::to_string),
        key: record.key.clone(),
        trained_at: provenance::utc(record.started_unix + record.seconds),
        lineage_hash: lineage.lineage_hash.clone(),
        weights_blake3: weights_hash,
        scaler_blake3: scaler_hash,
        model: model_name.clone(),
        loss: loss.into(),
        val_rmse: cfg["val_rmse"].as_f64(),
        collapsed: cfg["collapsed"].as_bool().unwrap_or(false),
    };
    let kernels = predict_kernels(&plan, i, &config)?;
    Ok(Resolved {
        kernels,
        stale,
        label: format!("{model_name} {loss}"),
        info,
        frame: ModelFrame {
            train_input: wp.input,
            train_row: wp.row,
            target_offset: wp.target_offset,
            horizon: horizon as usize,
            protocol: protocol_params,
            alarms,
            scaler,
        },
        weights,
        config,
        data_dir,
    })
}

/// The model's outputs for the batches, reported like a stage named `label` (a bar on a
/// terminal, lines in a pipe, JSON events with `--log-format json`).
fn run_model(
    res: &Resolved,
    batches: &[fc::Batch],
    threads: usize,
    sink: &dyn Sink,
    label: &str,
) -> Result<fc::Outputs, Error> {
    let started = std::time::Instant::now();
    let key = res.info.key.clone();
    sink.emit(Event::StageStarted {
        stage: label.to_string(),
        key: key.clone(),
    });
    let out = infer(
        res,
        batches,
        threads,
        &exec::StageEvents { sink, stage: label },
    );
    sink.emit(match &out {
        Ok(_) => Event::StageFinished {
            stage: label.to_string(),
            key,
            seconds: started.elapsed().as_secs_f64(),
            summary: format!(
                "{} windows of {} tiles",
                batches.iter().map(|b| b.windows).sum::<usize>(),
                batches.len()
            ),
        },
        Err(e) => Event::StageFailed {
            stage: label.to_string(),
            error: e.to_string(),
        },
    });
    out
}

/// The model's outputs for the batches, from one worker process. The scratch folder lives in
/// the system's temp folder, so a forecast leaves the store as it was.
fn infer(
    res: &Resolved,
    batches: &[fc::Batch],
    threads: usize,
    events: &dyn Events,
) -> Result<fc::Outputs, Error> {
    let tmp = tempfile::Builder::new()
        .prefix("magpipe-forecast-")
        .tempdir()
        .map_err(|e| Error::Forecast(format!("a scratch folder: {e}")))?;
    let windows = tmp.path().join("windows.safetensors");
    fc::write_batches(&windows, batches)
        .map_err(|e| Error::Forecast(format!("{}: {e}", windows.display())))?;
    let req = WorkerRequest {
        kind: "infer".into(),
        params: json!({}),
        inputs: BTreeMap::from([
            ("model".to_string(), res.weights.clone()),
            ("config".to_string(), res.config.clone()),
            ("windows".to_string(), windows),
        ]),
        out_dir: tmp.path().to_path_buf(),
        checkpoint_dir: tmp.path().to_path_buf(),
        threads,
        kernels: res.kernels,
    };
    run_in_worker_with(&req, events).map_err(|e| Error::Forecast(e.to_string()))?;
    let ys = fc::read_f32(&tmp.path().join("outputs.safetensors"), "y").map_err(Error::Forecast)?;
    fc::outputs_of(batches, ys, res.frame.horizon).map_err(Error::Forecast)
}

/// The AR folder for `--replay` arguments: a folder, or an AR number (`11698`, `AR11698`) in
/// the pipeline's data folder.
pub fn ar_folder(arg: &str, data_dir: Option<&Path>) -> Result<PathBuf, Error> {
    let p = PathBuf::from(arg);
    if p.is_dir() {
        return Ok(p);
    }
    let n = arg.strip_prefix("AR").unwrap_or(arg);
    match (n.parse::<u32>(), data_dir) {
        (Ok(ar), Some(dir)) => Ok(dir.join(format!("AR{ar}"))),
        (Ok(_), None) => Err(usage(format!(
            "AR {arg}: the pipeline has no ingest stage to find it in; give its folder"
        ))),
        (Err(_), _) => Err(usage(format!(
            "{arg} is neither an AR folder nor an AR number"
        ))),
    }
}

/// Reads an AR folder (hours up to `at` only) and scales it.
fn load(res: &Resolved, dir: &Path, at: Option<i64>) -> Result<(u32, LiveData), Error> {
    let ar = solared::folder_ar(dir).map_err(|e| fail(e.into()))?;
    let raw = solared::load_ar_folder(dir, ar, at).map_err(|e| fail(e.into()))?;
    if raw.is_empty() {
        return Err(Error::Forecast(format!(
            "{}: no hour at or before {}",
            dir.display(),
            at.map(solared::time::format_micros).unwrap_or_default()
        )));
    }
    Ok((ar, LiveData::new(raw, &res.frame.scaler).map_err(fail)?))
}

/// The forecast at the last hour of `dir` (up to `at`).
pub fn forecast(
    res: &Resolved,
    dir: &Path,
    at: Option<i64>,
    choice: &Choice,
    threads: usize,
    sink: &dyn Sink,
) -> Result<ForecastReport, Error> {
    let (ar, data) = load(res, dir, at)?;
    let g = Geometry::new(&res.frame, choice, ar, &data.raw.times, false).map_err(fail)?;
    let last = data.len() - 1;
    data.check(&g, last, dir).map_err(fail)?;
    let batches = data.batches(&g, g.windows_to_run(last));
    let out = run_model(res, &batches, threads, sink, &format!("forecast AR{ar}"))?;
    Ok(live(res, &g, &data, &out).forecast(last, res.info.clone(), DataInfo::of(dir, &data, at)))
}

fn live<'a>(
    res: &'a Resolved,
    g: &'a Geometry,
    data: &'a LiveData,
    out: &'a fc::Outputs,
) -> Live<'a> {
    Live {
        g,
        data,
        out,
        alarms: &res.frame.alarms,
        pair: res.frame.scaler.pair(FLUX),
    }
}

/// What a replay wrote.
pub struct ReplayRun {
    pub report: ReplayReport,
    pub out_dir: PathBuf,
}

/// The default place of a model's replays: `forecasts/<stage>[@variant]/replay/` in the store.
pub fn default_out(store: &Store, info: &ModelInfo) -> PathBuf {
    let name = match &info.variant {
        Some(v) => format!("{}@{v}", info.stage),
        None => info.stage.clone(),
    };
    store
        .root
        .join("forecasts")
        .join(magpipe_engine::store::file_safe(&name))
        .join("replay")
}

/// Replays every AR hour by hour and writes the timeline (Parquet, CSV), one plot per AR, the
/// replay's Table 2 and the report (JSON, Markdown) into `out_dir`. Every AR's data is checked
/// before the model runs, and nothing is written unless every AR replays.
pub fn replay(
    res: &Resolved,
    dirs: &[PathBuf],
    choice: &Choice,
    threads: usize,
    out_dir: &Path,
    sink: &dyn Sink,
) -> Result<ReplayRun, Error> {
    let mut loaded: Vec<(Geometry, LiveData, PathBuf)> = Vec::new();
    for dir in dirs {
        let (ar, data) = load(res, dir, None)?;
        if loaded.iter().any(|(g, _, _)| g.ar == ar) {
            return Err(usage(format!("AR{ar} is listed twice")));
        }
        let mut g = Geometry::new(&res.frame, choice, ar, &data.raw.times, true)
            .map_err(|e| fail(prefix(dir, e)))?;
        g.resolve_for_replay(&res.frame, &data.raw.times)
            .map_err(|e| fail(prefix(dir, e)))?;
        data.check_replay(&g, dir).map_err(fail)?;
        loaded.push((g, data, dir.clone()));
    }
    let mut replayed = Vec::new();
    for (g, data, dir) in &loaded {
        let batches = data.batches(g, g.windows_to_run(data.len() - 1));
        let out = run_model(res, &batches, threads, sink, &format!("replay AR{}", g.ar))?;
        replayed.push(
            live(res, g, data, &out)
                .replay(DataInfo::of(dir, data, None))
                .map_err(fail)?,
        );
    }
    let ars: Vec<_> = replayed.iter().map(|r| r.ar.clone()).collect();
    let mut report = ReplayReport {
        schema: fc::REPLAY_SCHEMA,
        model: res.info.clone(),
        criterion: fc::CriterionInfo::of(&res.frame.alarms),
        successes: fc::successes(&ars, res.frame.alarms.delay_hours),
        ars,
        files: BTreeMap::new(),
    };
    write_replay(res, &mut report, &replayed, &loaded, out_dir)?;
    Ok(ReplayRun {
        report,
        out_dir: out_dir.to_path_buf(),
    })
}

fn prefix(dir: &Path, e: ForecastError) -> ForecastError {
    ForecastError::Invalid(format!("{}: {e}", dir.display()))
}

fn write_replay(
    res: &Resolved,
    report: &mut ReplayReport,
    replayed: &[fc::Replayed],
    loaded: &[(Geometry, LiveData, PathBuf)],
    out_dir: &Path,
) -> Result<(), Error> {
    let io = |p: &Path, e: &dyn std::fmt::Display| Error::Forecast(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, &e))?;
    let write = |name: &str, bytes: &[u8]| -> Result<String, Error> {
        let path = out_dir.join(name);
        magpipe_engine::fsutil::write_atomic(out_dir, &path, bytes)
            .map_err(|e| Error::Forecast(e.to_string()))?;
        Ok(path.display().to_string())
    };
    // The plots first: their paths go into the report.
    for ((a, r), (g, data, _)) in report.ars.iter_mut().zip(replayed).zip(loaded) {
        let png = out_dir.join(format!("timeline-AR{}.png", a.ar));
        let svg = out_dir.join(format!("timeline-AR{}.svg", a.ar));
        let title = format!(
            "AR{} replay — {} ({}), tiles {}",
            a.ar,
            res.label,
            res.info.stage,
            fc::tile_label(&g.tiles)
        );
        fc::timeline::draw_files(&png, &svg, a, &r.rows, data, &title)
            .map_err(|e| Error::Forecast(e.to_string()))?;
        a.files.insert("png".into(), png.display().to_string());
        a.files.insert("svg".into(), svg.display().to_string());
    }
    let rows: Vec<TimelineRow> = replayed.iter().flat_map(|r| r.rows.clone()).collect();
    let path = out_dir.join("timeline.parquet");
    let mut df = fc::timeline_frame(&rows).map_err(|e| io(&path, &e))?;
    crate::table::write_parquet(&mut df, &path).map_err(|e| io(&path, &e))?;
    report
        .files
        .insert("timeline".into(), path.display().to_string());
    let csv = fc::timeline_csv(
        replayed
            .iter()
            .zip(loaded)
            .map(|(r, (g, d, _))| (r.rows.as_slice(), g, d)),
    );
    let csv = write("timeline.csv", csv.as_bytes())?;
    report.files.insert("timeline_csv".into(), csv);
    let scored = Scored {
        tiles: replayed
            .iter()
            .flat_map(|r| r.table2.tiles.clone())
            .collect(),
        ars: replayed.iter().flat_map(|r| r.table2.ars.clone()).collect(),
    };
    let md = format!(
        "# Table 2 — {} replayed by `magpipe forecast --replay`\n\n{}\n{}\n",
        res.label,
        alarms::table2_markdown(&scored),
        alarms::success_line(&scored, res.frame.alarms.delay_hours)
    );
    let t2 = write("table2.md", md.as_bytes())?;
    report.files.insert("table2".into(), t2);
    let md_path = out_dir.join("replay.md");
    report
        .files
        .insert("report_md".into(), md_path.display().to_string());
    let json_path = out_dir.join("replay.json");
    report
        .files
        .insert("report".into(), json_path.display().to_string());
    write("replay.md", fc::replay_text(report, true).as_bytes())?;
    let json = serde_json::to_string_pretty(report).expect("the report serialises") + "\n";
    write("replay.json", json.as_bytes())?;
    Ok(())
}
