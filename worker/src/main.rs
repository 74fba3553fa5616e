//! `magpipe-worker`: the process in which stages that need libtorch run. The engine binary never
//! links libtorch (its start-up alone costs ≈0.2 s), so it stays fast when everything is cached.
//!
//! `magpipe-worker info` prints the libtorch build facts that enter the keys of torch stages, and
//! what the machine offers it (CPU, instruction sets, CUDA build, driver, devices, cuDNN).

use anyhow::bail;
use serde::Serialize;

use magpipe_stages::train::Kernels;
use magpipe_worker::host;

#[derive(Serialize)]
struct Info {
    worker_version: &'static str,
    /// null in a worker built without libtorch (it runs `kernels: portable` only).
    libtorch_version: Option<String>,
    /// A usable CUDA device: compiled in, a driver, and at least one device.
    cuda_available: bool,
    cuda_devices: i64,
    cuda: host::Cuda,
    cpu: host::Cpu,
    intra_op_threads: i32,
    cpu_bf16: bool,
    allocator: host::Allocator,
    /// magpipe's own engine, which `kernels: portable` runs: what a bench or a bug report needs
    /// to say which of its code paths this CPU takes.
    kernels: KernelsInfo,
}

#[derive(Serialize)]
struct KernelsInfo {
    version: &'static str,
    numerics: u32,
    path: &'static str,
}

/// libtorch's side of `info`: its version, its CUDA devices and intra-op threads, after a real
/// tensor op proves the library loaded and runs, not just that it linked.
#[cfg(feature = "torch")]
fn libtorch_facts() -> anyhow::Result<(Option<String>, bool, i64, i32)> {
    let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let sum = t.sum(tch::Kind::Float).double_value(&[]);
    if (sum - 6.0).abs() > 1e-6 {
        bail!("libtorch computed 1+2+3 = {sum}");
    }
    Ok((
        Some(libtorch_version()),
        tch::Cuda::is_available(),
        tch::Cuda::device_count(),
        tch::get_num_threads(),
    ))
}

#[cfg(not(feature = "torch"))]
fn libtorch_facts() -> anyhow::Result<(Option<String>, bool, i64, i32)> {
    Ok((None, false, 0, 0))
}

#[cfg(feature = "torch")]
fn libtorch_version() -> String {
    // tch exposes no version call; the wheel's version.py sits beside the library we link.
    let lib = env!("MAGPIPE_LIBTORCH_DIR");
    std::fs::read_to_string(std::path::Path::new(lib).join("..").join("version.py"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("__version__ = ")
                    .map(|v| v.trim_matches('\'').to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the engine shows the worker's last stderr line as the stage's error.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let allocator = host::keep_freed_memory();
    // Die with the engine: a killed `magpipe run` must not leave a training running on.
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // The engine may have died between spawning us and the line above, in which case no signal
    // will come: then our parent is no longer the engine, and a training must not run on
    // unsupervised beside the next run's.
    if let Some(want) = std::env::var("MAGPIPE_PARENT_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        // SAFETY: getppid has no preconditions.
        && unsafe { libc::getppid() } != want
    {
        bail!("the engine (pid {want}) exited before this worker started");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("info") => {
            let cpu = host::cpu();
            let (libtorch_version, cuda_available, cuda_devices, intra_op_threads) =
                libtorch_facts()?;
            let info = Info {
                worker_version: env!("CARGO_PKG_VERSION"),
                libtorch_version,
                cuda_available,
                cuda_devices,
                cuda: host::cuda(),
                cpu_bf16: cpu.bf16,
                cpu,
                intra_op_threads,
                allocator,
                kernels: KernelsInfo {
                    version: magpipe_kernels::engine::VERSION,
                    numerics: magpipe_kernels::engine::NUMERICS,
                    path: magpipe_kernels::engine::code_path(),
                },
            };
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(())
        }
        Some("run-stage") => {
            let req: magpipe_stages::train::WorkerRequest =
                serde_json::from_reader(std::io::stdin().lock())
                    .map_err(|e| anyhow::anyhow!("bad request on stdin: {e}"))?;
            magpipe_worker::stage::run(req)
        }
        Some("bench-train") => bench_train(&args[1..]),
        _ => bail!(
            "usage: magpipe-worker info | run-stage (a JSON request on stdin) | bench-train THREADS STEPS [fp32|bf16-mixed] [cpu|cuda] [lstm|encdec] [native|portable]"
        ),
    }
}

/// Training throughput of a Table 1 best configuration (MagFluxLSTM h=128 L=4 B=64, or
/// MagFluxEnc-Dec h=64 L=4 B=32 with teacher forcing; W=110, hybrid loss, Adam, clipping) on
/// random data: the same model and step as bench/torch_train.py, for `make bench`. Prints
/// windows/s.
fn bench_train(args: &[String]) -> anyhow::Result<()> {
    use magpipe_worker::config::{Arch, EarlyStop, Loss, ModelConfig, TrainConfig};
    let threads: usize = args.first().map_or(Ok(1), |a| a.parse())?;
    let steps: usize = args.get(1).map_or(Ok(30), |a| a.parse())?;
    let bf16 = args.get(2).map(String::as_str) == Some("bf16-mixed");
    let cuda = match args.get(3).map(String::as_str) {
        None | Some("cpu") => false,
        Some("cuda") => true,
        Some(d) => bail!("unknown device `{d}` (cpu or cuda)"),
    };
    let encdec = match args.get(4).map(String::as_str) {
        None | Some("lstm") => false,
        Some("encdec") => true,
        Some(m) => bail!("unknown model `{m}` (lstm or encdec)"),
    };
    let kernels = match args.get(5).map(String::as_str) {
        None | Some("native") => Kernels::Native,
        Some("portable") => Kernels::Portable,
        Some(k) => bail!("unknown kernels `{k}` (native or portable)"),
    };
    if kernels == Kernels::Portable && (bf16 || cuda) {
        bail!("portable kernels are fp32 CPU kernels");
    }
    // Table 1's best configuration of each model (pipeline.yaml's lstm_hybrid, encdec_hybrid).
    let (arch, hidden, dropout, batch, lr, wd, alpha, tf) = if encdec {
        (Arch::EncDec, 64, 0.2, 32, 9.7e-3, 2.5e-5, 0.9, 0.15)
    } else {
        (Arch::Lstm, 128, 0.1, 64, 7e-3, 1.4e-6, 0.7, 0.0)
    };
    let cfg = TrainConfig {
        model: ModelConfig {
            arch,
            input: 5,
            hidden,
            layers: 4,
            dropout,
            horizon: 12,
            bf16,
            kernels,
        },
        batch_size: batch,
        shuffle: false,
        lr,
        weight_decay: wd,
        loss: Loss::Hybrid { alpha },
        loss_scale: 100.0,
        teacher_forcing_ratio: tf,
        epochs: 1,
        early_stop: EarlyStop::None,
        seed: 0,
    };
    let rate = match kernels {
        // magpipe's own engine, on the same model, batches and step.
        Kernels::Portable => magpipe_worker::portable::bench_train(&cfg, threads, steps)?,
        _ => bench_native(cfg, threads, steps, cuda)?,
    };
    println!("{rate:.1}");
    Ok(())
}

/// libtorch's windows/s for `cfg`: a pool of 4 batches, as the PyTorch reference uses; 5
/// warm-up steps, then timed ones.
#[cfg(feature = "torch")]
fn bench_native(
    cfg: magpipe_worker::config::TrainConfig,
    threads: usize,
    steps: usize,
    cuda: bool,
) -> anyhow::Result<f64> {
    use magpipe_worker::train::Trainer;
    let device = if cuda {
        host::pick(magpipe_stages::train::DeviceName::Cuda, &host::cuda())
            .map_err(|e| anyhow::anyhow!(e))?;
        tch::Device::Cuda(0)
    } else {
        tch::Device::Cpu
    };
    tch::set_num_threads(threads as i32);
    let batch = cfg.batch_size as i64;
    let mut t = Trainer::new(cfg, device);
    let opts = (tch::Kind::Float, device);
    let batches: Vec<(tch::Tensor, tch::Tensor)> = (0..4)
        .map(|_| {
            (
                tch::Tensor::randn([batch, 110, 5], opts),
                tch::Tensor::randn([batch, 12], opts),
            )
        })
        .collect();
    for i in 0..5 {
        let (x, y) = &batches[i % 4];
        t.model.masks.begin_step(0, 0, i as u64);
        t.step(x, y);
    }
    let t0 = std::time::Instant::now();
    for i in 0..steps {
        let (x, y) = &batches[i % 4];
        t.model.masks.begin_step(0, 1, i as u64);
        t.step(x, y);
    }
    if let tch::Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
    Ok((steps as i64 * batch) as f64 / t0.elapsed().as_secs_f64())
}

#[cfg(not(feature = "torch"))]
fn bench_native(
    _cfg: magpipe_worker::config::TrainConfig,
    _threads: usize,
    _steps: usize,
    _cuda: bool,
) -> anyhow::Result<f64> {
    bail!(magpipe_worker::NO_TORCH)
}
