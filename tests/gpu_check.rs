//! `bench/gpu-check.sh`, the script a GPU machine must pass, run here up to its first check that
//! needs a device (`GPU_CHECK=cpu-only`): its commands are the real ones on the real data, so a
//! change that breaks them fails the suite instead of the next GPU session.

mod common;

use std::process::Command;

#[test]
fn the_gpu_check_script_runs_its_cpu_side() {
    let out = Command::new("bash")
        .arg(common::repo().join("bench/gpu-check.sh"))
        .env("GPU_CHECK", "cpu-only")
        .env("MAGPIPE_BIN", common::bin())
        .env("MAGPIPE_WORKER", common::worker())
        .env("SOLARED_DIR", common::solared_dir())
        .env_remove("MAGPIPE_STORE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "ok 3 (cpu half): one epoch on 5 % of the windows",
        "ok 4 (cpu half): lstm bench-train windows/s: cpu ",
        "stopped before the first check that needs a device",
    ] {
        assert!(stdout.contains(line), "{line} missing:\n{stdout}\n{stderr}");
    }
}
