//! The cross-machine proof of `kernels: portable`: a few training steps of each model kind
//! (dropout, hybrid loss, Adam, clipping, shuffling, teacher forcing) on a generated fixture,
//! through the worker process as the engine starts it, must give weights whose blake3 is the
//! constant below, whatever x86-64 CPU runs the test.
//!
//! CPUs this test has passed on (model, the instruction sets that matter; add each new one):
//! - Intel Xeon (AVX2, FMA, AVX-512, AVX512-BF16, AMX; libtorch's native kernels there are AVX-512
//!   and oneDNN's `avx512_core_amx`), 2026-12-05
//!
//! If it fails on a CPU not in the list, the pins do not make that CPU's kernels agree with the
//! others': that is a finding about the pins, not a flaky test (docs/src/guide/reproducing.md).

use std::path::Path;
use std::process::{Command, Stdio};

use magpipe_stages::split::SplitMix64;
use magpipe_stages::train::{Kernels, WorkerRequest};
use serde_json::{Value, json};
use tch::Tensor;

/// blake3 of model.safetensors after training under `portable` (see the module's comment).
const GOLDEN_LSTM: &str = "cbf8f97eca42798d4f08355aeb262ae9272e1d42ee0f004c9adb3c175cb85ac6";
const GOLDEN_ENCDEC: &str = "0db8494d0c2e9cf488483c553fe1af278e8f56441612db7dd3ff89f260a84078";

/// Windows whose every value is a multiple of 2⁻²⁴ in [−0.5, 0.5): exact in f32, computed the
/// same way on any machine (no libm), with targets that follow the inputs' last step so the
/// models have something to learn.
fn write_windows(path: &Path, n: i64, w: i64, horizon: i64, seed: u64) {
    let mut rng = SplitMix64(seed);
    let mut u = || ((rng.next_u64() >> 40) as f32) / (1u32 << 24) as f32 - 0.5;
    let x: Vec<f32> = (0..n * w * 5).map(|_| u()).collect();
    let mut y = Vec::with_capacity((n * horizon) as usize);
    for i in 0..n {
        let last = x[((i * w + w - 1) * 5) as usize];
        for h in 0..horizon {
            y.push(last * 0.5 + h as f32 / 64.0 + u() / 8.0);
        }
    }
    let x = Tensor::from_slice(&x).view([n, w, 5]);
    let y = Tensor::from_slice(&y).view([n, horizon]);
    Tensor::write_safetensors(&[("x", &x), ("y", &y)], path).unwrap();
}

fn params(model: &str, kernels: Kernels, threads: usize) -> Value {
    let mut p = json!({
        "model": model,
        "layers": 3,
        "dropout": 0.3,
        "batch_size": 16,
        "lr": 5e-3,
        "weight_decay": 1e-5,
        "loss": "hybrid",
        "alpha": 0.7,
        "epochs": 2,
        "early_stop": "none",
        "seed": 7,
        "device": "cpu",
        "threads": threads,
        "kernels": kernels,
    });
    if model == "MagFluxEnc-Dec" {
        p["hidden"] = json!(12);
        p["teacher_forcing_ratio"] = json!(0.5);
    } else {
        p["hidden"] = json!(16);
    }
    p
}

#[derive(Debug)]
struct Run {
    weights: String,
    facts: Value,
}

/// Trains in a worker started with the environment the engine gives it (`env` replaces it when
/// a test takes a pin away); Err is the worker's last stderr line.
fn train(
    dir: &Path,
    model: &str,
    kernels: Kernels,
    threads: usize,
    env: Option<Vec<(&str, &str)>>,
) -> Result<Run, String> {
    let (train, val) = (dir.join("train.safetensors"), dir.join("val.safetensors"));
    if !train.exists() {
        write_windows(&train, 96, 24, 6, 1);
        write_windows(&val, 32, 24, 6, 2);
    }
    let out = tempfile::tempdir_in(dir).unwrap();
    let req = WorkerRequest {
        kind: "train".into(),
        params: params(model, kernels, threads),
        inputs: [("train".to_string(), train), ("val".to_string(), val)].into(),
        out_dir: out.path().to_path_buf(),
        checkpoint_dir: out.path().join("ckpt"),
        threads,
        kernels,
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_magpipe-worker"));
    match env {
        Some(vars) => {
            cmd.env_clear().envs(vars);
        }
        None => {
            cmd.envs(kernels.worker_env().iter().copied());
        }
    }
    let mut child = cmd
        .arg("run-stage")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &req).unwrap();
    let o = child.wait_with_output().unwrap();
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(err.lines().last().unwrap_or_default().to_string());
    }
    let report = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|e| e.get("report").cloned())
        .expect("a report");
    let bytes = std::fs::read(out.path().join("model.safetensors")).unwrap();
    Ok(Run {
        weights: blake3::hash(&bytes).to_hex().to_string(),
        facts: report["facts"].clone(),
    })
}

fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim())
        .to_string();
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| {
            ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"]
                .into_iter()
                .filter(|f| l.split_whitespace().any(|g| g == *f))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    format!("{model} ({flags})")
}

fn golden(model: &str, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    for threads in [1, 2] {
        let run = train(dir.path(), model, Kernels::Portable, threads, None).unwrap();
        let kernels = run.facts["hardware"]["kernels"]
            .as_str()
            .unwrap_or_default();
        assert!(kernels.starts_with("portable:"), "{}", run.facts);
        assert_eq!(
            run.weights,
            want,
            "{model}, portable kernels, {threads} thread(s), on {}: other weights than on the \
             CPUs listed in worker/tests/golden.rs",
            cpu()
        );
    }
}

#[test]
fn portable_magfluxlstm_gives_the_golden_weights() {
    golden("MagFluxLSTM", GOLDEN_LSTM);
}

#[test]
fn portable_magfluxencdec_gives_the_golden_weights() {
    golden("MagFluxEnc-Dec", GOLDEN_ENCDEC);
}

#[test]
fn native_kernels_are_another_computation_with_its_own_record() {
    let dir = tempfile::tempdir().unwrap();
    let native = train(dir.path(), "MagFluxLSTM", Kernels::Native, 1, None).unwrap();
    let portable = train(dir.path(), "MagFluxLSTM", Kernels::Portable, 1, None).unwrap();
    assert_ne!(native.weights, portable.weights);
    let said = |r: &Run| r.facts["hardware"]["kernels"].as_str().unwrap().to_string();
    assert!(
        said(&native).starts_with("native: ATen "),
        "{}",
        said(&native)
    );
    assert_eq!(
        said(&portable),
        "portable: ATen AVX2, MKL COMPATIBLE, oneDNN off, dropout masks magpipe's"
    );
}

#[test]
fn a_pin_missing_from_the_environment_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (dropped, _) in magpipe_stages::train::PORTABLE_ENV {
        let env: Vec<(&str, &str)> = Kernels::Portable
            .worker_env()
            .iter()
            .copied()
            .filter(|(k, _)| k != dropped)
            .collect();
        let err = train(dir.path(), "MagFluxLSTM", Kernels::Portable, 1, Some(env))
            .err()
            .unwrap_or_else(|| panic!("trained without {dropped}"));
        assert!(err.contains(dropped), "{dropped}: {err}");
    }
    // A pin set to another value is refused too, before it can change a float.
    let mut env: Vec<(&str, &str)> = Kernels::Portable.worker_env().to_vec();
    env.retain(|(k, _)| *k != "MKL_CBWR");
    env.push(("MKL_CBWR", "AVX2"));
    let err = train(dir.path(), "MagFluxLSTM", Kernels::Portable, 1, Some(env)).unwrap_err();
    assert!(err.contains("MKL_CBWR=AVX2"), "{err}");
}
