//! Training speed of the two Table 1 models on one thread, scalar path against the vector path.
//!
//! ```text
//! cargo run --release -p magpipe-kernels --example bench -- [lstm|encdec|both] [STEPS] [ROUNDS] [PATHS] [THREADS]
//! ```
//!
//! Each round times STEPS training steps (after one untimed warm-up step) of each model on each
//! path in turn, alternating the paths, and prints windows/s (batch × steps / seconds); the
//! summary gives min / median / max over the rounds. PATHS is a comma-separated list of
//! `scalar`, `fast` (the detected vector path) and `fastN` (it on N threads); the default is
//! `scalar,fast`. THREADS (default 1) applies to `fast`. Shapes: MagFluxLSTM hybrid (h 128, L 4, batch 64, T 110, 5 inputs, horizon 12,
//! dropout 0.1) and MagFluxEnc-Dec hybrid (h 64, L 4, batch 32, T 110, dropout 0.2, teacher
//! forcing 0.5); hybrid loss ×100, clipping at 1, Adam.

use std::time::Instant;

use magpipe_kernels::model::StepConfig;
use magpipe_kernels::simd::{self, Isa};
use magpipe_kernels::{Adam, Arch, Loss, Model, ModelConfig};

struct Case {
    name: &'static str,
    config: ModelConfig,
    batch: usize,
    steps: usize,
    tf: f64,
}

fn cases(which: &str) -> Vec<Case> {
    let lstm = Case {
        name: "MagFluxLSTM hybrid (h 128, L 4, B 64)",
        config: ModelConfig {
            arch: Arch::Lstm,
            input: 5,
            hidden: 128,
            layers: 4,
            dropout: 0.1,
            horizon: 12,
        },
        batch: 64,
        steps: 110,
        tf: 0.0,
    };
    let encdec = Case {
        name: "MagFluxEnc-Dec hybrid (h 64, L 4, B 32)",
        config: ModelConfig {
            arch: Arch::EncDec,
            input: 5,
            hidden: 64,
            layers: 4,
            dropout: 0.2,
            horizon: 12,
        },
        batch: 32,
        steps: 110,
        tf: 0.5,
    };
    match which {
        "lstm" => vec![lstm],
        "encdec" => vec![encdec],
        _ => vec![lstm, encdec],
    }
}

/// Deterministic inputs in [−1, 1).
fn data(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            (magpipe_kernels::rng::mix(s) >> 40) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// This thread's time on a CPU in seconds (Linux's schedstat), when the system says it.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(s.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
}

/// (wall seconds, on-CPU seconds if known) for `n` training steps after one warm-up step.
fn time_steps(case: &Case, n: usize) -> (f64, Option<f64>) {
    let c = &case.config;
    let mut model = Model::new(c, 0).expect("model");
    let mut opt = Adam::new(model.params(), 1e-3, 1e-5);
    let step = StepConfig {
        loss: Loss::Hybrid { alpha: 0.5 },
        loss_scale: 100.0,
        teacher_forcing_ratio: case.tf,
        clip: 1.0,
    };
    let x = data(1, case.batch * case.steps * c.input);
    let y = data(2, case.batch * c.horizon);
    let mut draws = 0u64;
    let mut draw = || {
        draws += 1;
        (magpipe_kernels::rng::mix(draws) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut run = |b: u64| {
        model.masks.begin_step(0, 1, b);
        model
            .train_step(&mut opt, &x, &y, case.batch, case.steps, &step, &mut draw)
            .expect("step");
    };
    run(0);
    let (start, cpu) = (Instant::now(), cpu_seconds());
    for b in 1..=n as u64 {
        run(b);
    }
    let wall = start.elapsed().as_secs_f64();
    (wall, cpu.zip(cpu_seconds()).map(|(a, b)| b - a))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map_or("both", String::as_str);
    let steps: usize = args.get(1).map_or(3, |s| s.parse().expect("STEPS"));
    let rounds: usize = args.get(2).map_or(3, |s| s.parse().expect("ROUNDS"));
    let threads: usize = args.get(4).map_or(1, |s| s.parse().expect("THREADS"));
    // (path, threads, label)
    let paths: Vec<(Isa, usize, String)> = args
        .get(3)
        .map_or("scalar,fast", String::as_str)
        .split(',')
        .map(|p| match p {
            "scalar" => (Isa::Scalar, 1, "scalar".to_string()),
            "fast" => (
                simd::detected(),
                threads,
                format!("{} ×{threads}", simd::detected().name()),
            ),
            other => {
                let n: usize = other
                    .strip_prefix("fast")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("unknown path {other} (scalar, fast, fastN)"));
                (
                    simd::detected(),
                    n,
                    format!("{} ×{n}", simd::detected().name()),
                )
            }
        })
        .collect();
    println!(
        "CPU path detected: {} (the process's default: {}); {steps} steps per round, {rounds} \
         rounds; ×N = threads",
        simd::detected().name(),
        simd::active().name()
    );
    for case in cases(which) {
        // Per path: windows/s by wall clock, and by the thread's own CPU time (which a busy
        // machine does not dilute).
        let mut rates: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; paths.len()];
        let windows = (case.batch * steps) as f64;
        for round in 0..rounds {
            for (i, (isa, n, label)) in paths.iter().enumerate() {
                let (wall, cpu) =
                    simd::with_threads(*n, || simd::with_isa(*isa, || time_steps(&case, steps)));
                // The calling thread's CPU time counts only its own work: with threads it waits.
                let cpu_rate = cpu.filter(|_| *n == 1).map(|c| windows / c);
                println!(
                    "  {} round {round} {:>12}: {:8.2} windows/s wall ({:.3} s/step), {} on CPU",
                    case.name,
                    label,
                    windows / wall,
                    wall / steps as f64,
                    cpu_rate.map_or("?".into(), |r| format!("{r:.2} windows/s"))
                );
                rates[i][0].push(windows / wall);
                rates[i][1].extend(cpu_rate);
            }
        }
        for ((_, _, label), r) in paths.iter().zip(&mut rates) {
            for (clock, r) in ["wall", "CPU"].iter().zip(r.iter_mut()) {
                if r.is_empty() {
                    continue;
                }
                r.sort_by(f64::total_cmp);
                println!(
                    "{} {:>12} ({clock:>4}): windows/s min {:.2} median {:.2} max {:.2}",
                    case.name,
                    label,
                    r[0],
                    r[r.len() / 2],
                    r[r.len() - 1]
                );
            }
        }
    }
}
