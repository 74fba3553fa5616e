//! The worker runs with an empty environment (rpath, no LD_LIBRARY_PATH) and really computes with
//! the pinned libtorch; the engine binary does not link libtorch at all.

use std::process::Command;

#[test]
fn worker_runs_without_any_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_magpipe-worker"))
        .arg("info")
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        info["libtorch_version"]
            .as_str()
            .unwrap()
            .starts_with("2.13.0"),
        "{info}"
    );
}

#[test]
fn engine_binary_does_not_link_libtorch() {
    // The engine is a sibling binary in the same target folder.
    let worker = std::path::PathBuf::from(env!("CARGO_BIN_EXE_magpipe-worker"));
    let engine = worker.with_file_name("magpipe");
    if !engine.exists() {
        // Built by `cargo test --workspace`; a worker-only test run has no engine to look at.
        eprintln!("skipping: {} not built", engine.display());
        return;
    }
    let ldd = |p: &std::path::Path| {
        let o = Command::new("ldd")
            .arg(p)
            .output()
            .expect("ldd is part of libc-bin");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(ldd(&worker).contains("libtorch_cpu.so"));
    assert!(!ldd(&engine).contains("libtorch"), "{}", ldd(&engine));
}
