//! `magpipe-worker`: the process in which stages that need libtorch run. The engine binary never
//! links libtorch (its start-up alone costs ≈0.2 s), so it stays fast when everything is cached.
//!
//! `magpipe-worker info` prints the libtorch build facts that enter the keys of torch stages.

use anyhow::bail;
use serde::Serialize;

#[derive(Serialize)]
struct Info {
    worker_version: &'static str,
    libtorch_version: String,
    cuda_available: bool,
    cuda_devices: i64,
    intra_op_threads: i32,
    cpu_bf16: bool,
}

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

fn cpu_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.contains("avx512_bf16") || c.contains("amx_bf16"))
        .unwrap_or(false)
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
    // Die with the engine: a killed `magpipe run` must not leave a training running on.
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag on this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("info") => {
            let info = Info {
                worker_version: env!("CARGO_PKG_VERSION"),
                libtorch_version: libtorch_version(),
                cuda_available: tch::Cuda::is_available(),
                cuda_devices: tch::Cuda::device_count(),
                intra_op_threads: tch::get_num_threads(),
                cpu_bf16: cpu_bf16(),
            };
            // A real tensor op proves the library loaded and runs, not just that it linked.
            let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
            let sum = t.sum(tch::Kind::Float).double_value(&[]);
            if (sum - 6.0).abs() > 1e-6 {
                bail!("libtorch computed 1+2+3 = {sum}");
            }
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(())
        }
        Some("run-stage") => {
            let req: magpipe_stages::train::WorkerRequest =
                serde_json::from_reader(std::io::stdin().lock())
                    .map_err(|e| anyhow::anyhow!("bad request on stdin: {e}"))?;
            magpipe_worker::stage::run(req)
        }
        _ => bail!("usage: magpipe-worker info | run-stage (a JSON request on stdin)"),
    }
}
