//! `magpipe-worker run-stage`: reads a [`WorkerRequest`] on stdin, runs the stage, and writes
//! [`WorkerEvent`] JSON lines on stdout (progress, logs, then the report).

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use magpipe_stages::train::{Kernels, Precision, TrainParams, WorkerEvent, WorkerRequest};
use magpipe_stages::{plot, table};
use polars::prelude::*;
use serde_json::{Value, json};

use crate::config::Epoch;
use crate::engines::Training;
use crate::host::{self, Device};
use crate::portable::PortableRun;

fn emit(e: &WorkerEvent) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(e).expect("event serialises")
    );
    let _ = out.flush();
}

fn log(msg: String) {
    emit(&WorkerEvent::Log { msg });
}

fn progress(done: u64, total: u64) {
    emit(&WorkerEvent::Progress {
        done,
        total,
        unit: "tiles".into(),
    })
}

/// Where the floats came from: the machine's facts and the kernels checked at start.
fn hardware(device: Device, cpu: &host::Cpu, cuda: &host::Cuda, kernels: Value) -> Value {
    let mut h = host::hardware(device, cpu, cuda);
    h["kernels"] = kernels;
    h
}

/// Predictions run on the CPU (see `Predict::runtime`).
fn report(summary: String, kernels: Value) -> anyhow::Result<()> {
    let hardware = hardware(Device::Cpu, &host::cpu(), &host::cuda(), kernels);
    emit(&WorkerEvent::Report {
        summary,
        stdout: None,
        facts: json!({ "hardware": hardware }),
    });
    Ok(())
}

pub fn run(req: WorkerRequest) -> anyhow::Result<()> {
    let kernels = kernels_fact(req.kernels)?;
    match req.kind.as_str() {
        "train" => train(&req, kernels),
        "predict" => report(crate::predict::run(&req, &progress)?, kernels),
        "infer" => report(crate::predict::infer(&req, &progress)?, kernels),
        k => bail!("unknown worker stage kind `{k}`"),
    }
}

/// What computes the floats, for the record: libtorch's choice on this CPU, or magpipe's own
/// engine; refuses what this worker cannot run before anything is read.
fn kernels_fact(kernels: Kernels) -> anyhow::Result<Value> {
    match kernels {
        Kernels::Auto => {
            bail!(
                "the request's kernels are `auto`: the engine settles them before it starts a worker"
            )
        }
        Kernels::Portable => Ok(crate::portable::kernels_fact()),
        #[cfg(feature = "torch")]
        Kernels::Native => Ok(host::native_kernels(&host::cpu())),
        #[cfg(not(feature = "torch"))]
        Kernels::Native => bail!(crate::NO_TORCH),
    }
}

/// Test hook: `MAGPIPE_FAULT=pause-after-epoch:N` stops after epoch N's checkpoint, so a test can
/// kill the worker there.
fn fault_pause(epoch: usize) {
    if std::env::var("MAGPIPE_FAULT")
        .ok()
        .and_then(|f| f.strip_prefix("pause-after-epoch:").map(str::to_string))
        == Some(epoch.to_string())
    {
        log(format!("paused after epoch {epoch} (MAGPIPE_FAULT)"));
        std::thread::sleep(std::time::Duration::from_secs(600));
    }
}

fn train(req: &WorkerRequest, kernels: Value) -> anyhow::Result<()> {
    let mut p: TrainParams = serde_json::from_value(req.params.clone()).context("train params")?;
    // The engine sends them settled; a request written by hand may leave `kernels` out.
    p.kernels = p.kernels();
    let (device, cpu, cuda) = choose_device(req, &p)?;
    let mut t = start(req, &p, device)?;
    resume(req, t.as_mut())?;
    let zero = t.zero_slope();
    run_epochs(req, &p, t.as_mut(), zero)?;
    let history = t.history();
    let last = history.last().expect("at least one epoch");
    let (pred_std, collapse) = collapse(&t.val_predictions()?, last.val_rmse, zero);

    let out = |f: &str| req.out_dir.join(f);
    t.save_weights(&out("model.safetensors"))?;
    write_model_json(req, &p, t.as_ref(), device, zero, pred_std, &collapse)?;
    write_history(history, zero, &out("history.parquet"), &out("history.md"))?;
    write_loss_curve(&p, t.as_ref(), zero, collapse.is_some(), &out("loss.png"))?;

    let mut summary = format!(
        "{} epochs, val derivative RMSE {:.4e} (zero-slope {:.4e}), {} params",
        history.len(),
        last.val_rmse,
        zero,
        t.param_count()
    );
    if let Some(c) = &collapse {
        summary.push_str(&format!(" — COLLAPSED: {c}"));
    }
    let hardware = hardware(device, &cpu, &cuda, kernels);
    emit(&WorkerEvent::Report {
        summary,
        stdout: None,
        facts: json!({
            "val_rmse": last.val_rmse,
            "zero_slope_rmse": zero,
            "collapsed": collapse.is_some(),
            "param_count": t.param_count(),
            "seconds": history.iter().map(|e| e.seconds).sum::<f64>(),
            "hardware": hardware,
        }),
    });
    Ok(())
}

/// The run, on the engine its kernels name: libtorch for `native`, magpipe's own for
/// `portable`.
fn start(
    req: &WorkerRequest,
    p: &TrainParams,
    device: Device,
) -> anyhow::Result<Box<dyn Training>> {
    Ok(match p.kernels {
        #[cfg(feature = "torch")]
        Kernels::Native | Kernels::Auto => {
            Box::new(crate::native::NativeRun::start(req, p, device.into())?)
        }
        // Refused by `kernels_fact` before this.
        #[cfg(not(feature = "torch"))]
        Kernels::Native | Kernels::Auto => {
            let _ = device;
            bail!(crate::NO_TORCH)
        }
        Kernels::Portable => Box::new(PortableRun::start(req, p)?),
    })
}

/// Checks the kernels the request and its params name, sets the threads and picks the device,
/// saying which and why.
fn choose_device(
    req: &WorkerRequest,
    p: &TrainParams,
) -> anyhow::Result<(Device, host::Cpu, host::Cuda)> {
    if p.kernels != req.kernels {
        bail!(
            "the request's kernels ({}) are not its params' ({})",
            req.kernels.as_str(),
            p.kernels.as_str()
        );
    }
    magpipe_stages::train::check_kernels(p.kernels, p.device, p.precision)
        .map_err(|e| anyhow!("{e}"))?;
    let (cpu, cuda) = (host::cpu(), host::cuda());
    let (device, why) = host::pick(p.device(), &cuda).map_err(|e| anyhow!(e))?;
    let (why, kernels) = match p.kernels {
        Kernels::Native | Kernels::Auto => {
            #[cfg(feature = "torch")]
            tch::set_num_threads(req.threads.max(1) as i32);
            (why, cpu.onednn_isa.clone())
        }
        Kernels::Portable => (
            "device cpu (portable kernels are CPU kernels)".to_string(),
            magpipe_kernels::engine::describe(),
        ),
    };
    log(format!(
        "{why}; {} thread{} on {} ({kernels})",
        req.threads.max(1),
        if req.threads > 1 { "s" } else { "" },
        cpu.model,
    ));
    if let Some(w) = host::bf16_warning(p.precision == Precision::Bf16Mixed, device, &cpu) {
        log(w);
    }
    Ok((device, cpu, cuda))
}

/// Continues from the stage's checkpoint, if it has one.
fn resume(req: &WorkerRequest, t: &mut dyn Training) -> anyhow::Result<()> {
    std::fs::create_dir_all(&req.checkpoint_dir).context("checkpoint folder")?;
    if !t.load_checkpoint(&req.checkpoint_dir)? {
        return Ok(());
    }
    log(format!(
        "resuming after epoch {} from its checkpoint",
        t.history().len()
    ));
    // Re-sent in case the driver died before recording them (a tune study skips the ones it
    // has).
    for e in t.history() {
        emit(&WorkerEvent::Epoch {
            epoch: e.epoch,
            train_loss: e.train_loss,
            val_rmse: e.val_rmse,
            lr: e.lr,
        });
    }
    Ok(())
}

/// Trains epoch by epoch until the trainer is done, with progress, a log line, a checkpoint and
/// an event after each epoch.
fn run_epochs(
    req: &WorkerRequest,
    p: &TrainParams,
    t: &mut dyn Training,
    zero: f64,
) -> anyhow::Result<()> {
    let batches = t.train_windows().div_ceil(p.batch_size) as u64;
    let total = batches * p.epochs as u64;
    let step = (batches / 50).max(1);
    while !t.done() {
        let before = t.history().len() as u64 * batches;
        let epoch = t.history().len() + 1;
        let last = t
            .history()
            .last()
            .map(|e| {
                format!(
                    ", val R {:.3e}, {:.0} windows/s",
                    e.val_rmse, e.windows_per_s
                )
            })
            .unwrap_or_default();
        let e = t.epoch(&mut |b, _, loss| {
            if (b as u64).is_multiple_of(step) {
                emit(&WorkerEvent::Progress {
                    done: before + b as u64,
                    total,
                    unit: format!(
                        "batches · epoch {epoch}/{} · loss {loss:.3e}{last}",
                        p.epochs
                    ),
                });
            }
        })?;
        log(format!(
            "epoch {}/{}: train loss {:.4e}, val derivative RMSE {:.4e} (zero-slope {:.4e}), lr {:.3e}, {:.0} windows/s",
            e.epoch, p.epochs, e.train_loss, e.val_rmse, zero, e.lr, e.windows_per_s
        ));
        t.save_checkpoint(&req.checkpoint_dir)?;
        emit(&WorkerEvent::Epoch {
            epoch: e.epoch,
            train_loss: e.train_loss,
            val_rmse: e.val_rmse,
            lr: e.lr,
        });
        fault_pause(e.epoch);
    }
    Ok(())
}

/// The spread of the validation predictions, and why the run collapsed if it did
/// (docs/src/semantics.md §18): its metric does not beat the zero-slope predictor, or its
/// predictions barely vary.
fn collapse(preds: &[f32], val_rmse: f64, zero: f64) -> (f64, Option<String>) {
    let mean = preds.iter().map(|&v| f64::from(v)).sum::<f64>() / preds.len() as f64;
    let pred_std = (preds
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / preds.len() as f64)
        .sqrt();
    let collapse = if val_rmse >= zero * (1.0 - 1e-3) {
        Some(format!(
            "val derivative RMSE {val_rmse:.4e} does not beat the zero-slope predictor's {zero:.4e}"
        ))
    } else if pred_std < 1e-4 {
        Some(format!(
            "predictions barely vary (std {pred_std:.2e} in scaled units)"
        ))
    } else {
        None
    };
    (pred_std, collapse)
}

fn write_model_json(
    req: &WorkerRequest,
    p: &TrainParams,
    t: &dyn Training,
    device: Device,
    zero: f64,
    pred_std: f64,
    collapse: &Option<String>,
) -> anyhow::Result<()> {
    let history = t.history();
    let last = history.last().expect("at least one epoch");
    let mut params = serde_json::to_value(p)?;
    if p.kernels.is_native() {
        // model.json of a native run keeps the bytes it had before `kernels` existed.
        params.as_object_mut().expect("a struct").remove("kernels");
    }
    let mut cfg = json!({
        "params": params,
        "architecture": t.config().model,
        "param_count": t.param_count(),
        "epochs_run": history.len(),
        "stopped_early": t.stopped(),
        "val_rmse": last.val_rmse,
        "zero_slope_rmse": zero,
        "val_prediction_std": pred_std,
        "collapsed": collapse.is_some(),
        "collapse_reason": collapse,
        "device": format!("{device:?}"),
        "threads": req.threads,
    });
    if p.seed.is_none() {
        // Only an unseeded run needs its drawn seed written down; seeded runs keep their bytes.
        cfg["drawn_seed"] = json!(t.config().seed);
    }
    let path = req.out_dir.join("model.json");
    std::fs::write(path, serde_json::to_string_pretty(&cfg)? + "\n").context("model.json")
}

fn write_loss_curve(
    p: &TrainParams,
    t: &dyn Training,
    zero: f64,
    collapsed: bool,
    path: &Path,
) -> anyhow::Result<()> {
    let points: Vec<plot::CurvePoint> = t
        .history()
        .iter()
        .map(|e| plot::CurvePoint {
            epoch: e.epoch,
            train_loss: e.train_loss,
            val_rmse: e.val_rmse,
            lr: e.lr,
        })
        .collect();
    let title = format!(
        "{} {} loss, h={} L={} B={} lr={:.2e} seed {}{}",
        p.model.as_str(),
        p.loss.as_str(),
        p.hidden,
        p.layers,
        p.batch_size,
        p.lr,
        t.config().seed,
        if collapsed { " — COLLAPSED" } else { "" }
    );
    plot::loss_curve(path, &title, &points, zero)?;
    Ok(())
}

fn write_history(h: &[Epoch], zero: f64, parquet: &Path, md: &Path) -> anyhow::Result<()> {
    let col = |name: &str, f: fn(&Epoch) -> f64| {
        Column::new(name.into(), h.iter().map(f).collect::<Vec<_>>())
    };
    let mut df = DataFrame::new(
        h.len(),
        vec![
            Column::new(
                "epoch".into(),
                h.iter().map(|e| e.epoch as u32).collect::<Vec<_>>(),
            ),
            col("train_loss", |e| e.train_loss),
            col("val_rmse", |e| e.val_rmse),
            Column::new("zero_slope_rmse".into(), vec![zero; h.len()]),
            col("lr", |e| e.lr),
            col("seconds", |e| e.seconds),
            col("windows_per_s", |e| e.windows_per_s),
        ],
    )?;
    table::write_parquet(&mut df, parquet).map_err(|e| anyhow!("{e}"))?;
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|e| {
            vec![
                e.epoch.to_string(),
                format!("{:.4e}", e.train_loss),
                format!("{:.4e}", e.val_rmse),
                format!("{zero:.4e}"),
                format!("{:.3e}", e.lr),
                format!("{:.1}", e.seconds),
                format!("{:.0}", e.windows_per_s),
            ]
        })
        .collect();
    let text = table::markdown(
        &[
            "epoch",
            "train loss",
            "val derivative RMSE",
            "zero-slope RMSE",
            "lr",
            "seconds",
            "windows/s",
        ],
        &rows,
    );
    std::fs::write(md, text).context("history.md")?;
    Ok(())
}
