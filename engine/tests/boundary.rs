//! The engine knows no study: its crate depends on no stage kind, no study crate and nothing that
//! links libtorch, and none of its modules names one. A path dependency added to its manifest, or
//! a `magpipe_stages::` in its code, fails here.

use std::path::Path;
use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "magpipe-stages",
    "magpipe-worker",
    "magpipe",
    "tch",
    "torch-sys",
    "polars",
];

#[test]
fn the_engine_depends_on_no_study_crate() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let engine = packages
        .iter()
        .find(|p| p["name"] == "magpipe-engine")
        .expect("the engine is a package of the workspace");
    let deps: Vec<&str> = engine["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    for bad in FORBIDDEN {
        assert!(
            !deps.contains(bad),
            "magpipe-engine depends on `{bad}`: the engine must know no study (deps: {deps:?})"
        );
    }
    // Every path dependency would be a workspace crate: the engine has none.
    let local: Vec<&str> = engine["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .filter(|d| d["path"].is_string())
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        local.is_empty(),
        "path dependencies of the engine: {local:?}"
    );
}

#[test]
fn no_engine_module_names_a_study_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut todo = vec![src];
    let mut files = 0;
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).expect("engine src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files += 1;
                let text = std::fs::read_to_string(&p).expect("source");
                for bad in ["magpipe_stages", "magpipe_worker", "tch::"] {
                    assert!(
                        !text.contains(bad),
                        "{} names `{bad}`: the engine must know no study",
                        p.display()
                    );
                }
            }
        }
    }
    assert!(files > 10, "found only {files} engine sources");
}
