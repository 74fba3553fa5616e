//! `kernels: portable` gives one result on every CPU: a few training steps of each model kind
//! (dropout, hybrid loss, Adam, clipping, shuffling, teacher forcing) on a generated fixture,
//! through the worker process as the engine starts it, at 1 and 2 threads, must give weights
//! whose blake3 (of model.safetensors) is the one constant below, whatever the x86-64 CPU, and
//! so must the scalar reference path (`MAGPIPE_KERNELS=scalar`), which the constants were first
//! measured with.
//!
//! Portable kernels are magpipe's own engine (kernels/, crate magpipe-kernels): every float
//! operation in an order fixed by the shapes alone, its own exp and tanh, counter-based
//! randomness (the contract is in kernels/src/lib.rs). Nothing in them depends on the CPU's
//! vendor, its instruction sets, the thread count or libtorch, so a CPU on which these hashes
//! differ has found a bug in the engine, never a reason for another constant. The engine's own
//! golden bits (kernels/src/model.rs: three training steps; kernels/src/train.rs: two epochs of
//! the whole procedure) also run cross-compiled for aarch64 under qemu (`make test-aarch64`),
//! where they gave the same bits on the scalar and NEON paths (2026-12-07).
//!
//! CPUs this test has passed on:
//! - AMD EPYC, Zen 3 (avx2 fma; 2 cores), 2026-12-07: both models, scalar reference at 1 thread
//!   and avx2+fma at 1 and 2 threads
//! - AMD EPYC, Zen 5 (family 26; avx2 fma avx512f avx512_bf16; 2 cores), 2026-12-07: both
//!   models, avx512f at 1 and 2 threads, avx2+fma and the scalar reference at 1 thread

mod fixture;

use fixture::{train, train_with};
use magpipe_stages::train::Kernels;

/// blake3 of model.safetensors after the fixture's training, on every CPU and thread count.
const MAGFLUXLSTM: &str = "bd1516190c83d2ea1ae1481b937fa84eef4db159bc3eb1a26e767f40c19a1881";
const MAGFLUXENCDEC: &str = "1487b0ddc609a54503db85ef81966f474297d5103ea8d04bcdc797b5faea5a79";

fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map_or(String::new(), |(_, v)| v.trim().to_string())
    };
    let flags = field("flags");
    let isa: Vec<&str> = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "asimd"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|g| g == *f))
        .collect();
    format!(
        "{} ({}, {})",
        field("model name"),
        field("vendor_id"),
        isa.join(" ")
    )
}

/// Trains `model` at 1 and 2 threads on the CPU's fastest path, and at 1 thread on every other
/// path it runs (`MAGPIPE_KERNELS=scalar`, the reference; `avx2+fma` on an AVX-512 CPU): every
/// run must give `want`.
fn golden(model: &str, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let fastest = magpipe_kernels::simd::detected();
    let mut runs: Vec<(usize, Vec<(&str, &str)>)> = vec![(1, vec![]), (2, vec![])];
    for isa in magpipe_kernels::simd::supported_isas() {
        if isa != fastest {
            runs.push((1, vec![("MAGPIPE_KERNELS", isa.name())]));
        }
    }
    for (threads, env) in runs {
        let run = train_with(dir.path(), model, Kernels::Portable, threads, &env).unwrap();
        let path = run.facts["hardware"]["kernels"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        eprintln!(
            "{model}, {path}, {threads} thread(s), on {}: {}",
            cpu(),
            run.weights
        );
        assert_eq!(
            run.weights,
            want,
            "{model}, {path}, {threads} thread(s), on {}: other weights than every CPU gives so \
             far — a bug in magpipe-kernels, not a new constant",
            cpu()
        );
    }
}

#[test]
fn portable_magfluxlstm_gives_the_same_weights_on_every_cpu() {
    golden("MagFluxLSTM", MAGFLUXLSTM);
}

#[test]
fn portable_magfluxencdec_gives_the_same_weights_on_every_cpu() {
    golden("MagFluxEnc-Dec", MAGFLUXENCDEC);
}

#[test]
fn native_kernels_are_another_computation_with_its_own_record() {
    let dir = tempfile::tempdir().unwrap();
    let native = train(dir.path(), "MagFluxLSTM", Kernels::Native, 1).unwrap();
    let portable = train(dir.path(), "MagFluxLSTM", Kernels::Portable, 1).unwrap();
    assert_ne!(native.weights, portable.weights);
    let said = |r: &fixture::Run| r.facts["hardware"]["kernels"].as_str().unwrap().to_string();
    assert!(
        said(&native).starts_with("native: ATen "),
        "{}",
        said(&native)
    );
    // The record says which engine, which version and which code path computed it.
    assert_eq!(
        said(&portable),
        format!(
            "portable: magpipe-kernels {}",
            magpipe_kernels::engine::describe()
                .strip_prefix("magpipe-kernels ")
                .unwrap()
        )
    );
    assert!(said(&portable).starts_with(&format!(
        "portable: magpipe-kernels {}, ",
        env!("CARGO_PKG_VERSION")
    )));
}
