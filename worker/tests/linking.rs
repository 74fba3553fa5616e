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

fn info() -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_magpipe-worker"))
        .arg("info")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn libtorch_cuda_is_linked_exactly_in_the_cuda_build_and_info_says_so() {
    let cuda_build = env!("MAGPIPE_CUDA_BUILD") == "1";
    let o = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_magpipe-worker"))
        .output()
        .unwrap();
    let ldd = String::from_utf8_lossy(&o.stdout);
    assert_eq!(ldd.contains("libtorch_cuda.so"), cuda_build, "{ldd}");
    let info = info();
    assert_eq!(info["cuda"]["compiled"], cuda_build, "{info}");
    // Whatever the build, it started and computed (info checks 1+2+3) on this machine.
    assert!(!info["cpu"]["model"].as_str().unwrap().is_empty(), "{info}");
    assert!(!info["cpu"]["onednn_isa"].as_str().unwrap().is_empty());
    assert_eq!(info["allocator"]["applied"], true, "{info}");
    assert_eq!(info["allocator"]["set_by"], "magpipe", "{info}");
    if !cuda_build {
        assert_eq!(info["cuda"]["cudnn_version"], serde_json::Value::Null);
    }
}

#[test]
fn device_cuda_without_a_usable_gpu_fails_with_the_reason() {
    let info = info();
    if info["cuda_available"] == true {
        eprintln!("skipping: this machine has a usable GPU");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let req = serde_json::json!({
        "kind": "train",
        "params": { "device": "cuda", "epochs": 1 },
        "inputs": {},
        "out_dir": dir.path(),
        "checkpoint_dir": dir.path().join("ckpt"),
        "threads": 1,
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_magpipe-worker"))
        .arg("run-stage")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let why = if info["cuda"]["compiled"] == false {
        "built without CUDA"
    } else if info["cuda"]["driver"] == false {
        "no NVIDIA driver"
    } else {
        "no CUDA device"
    };
    assert!(
        err.contains("device: cuda was asked for, but") && err.contains(why),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
