//! A full disk: the store lives on a small tmpfs, filled to leave a chosen number of bytes free.
//! Whichever write runs out of space (an object, a record, a stat sidecar, a checkpoint, a lock,
//! the study directory, the run log), the run fails with a one-line error, `verify` stays clean,
//! and once space is freed the next run finishes with the same Table 2 as a run that never
//! lacked space.
//!
//! Mounting a tmpfs needs root (or CAP_SYS_ADMIN); CI runs as root. Without it this test fails
//! loudly rather than skipping.

mod common;

use std::path::Path;

use common::{Project, Run, Tmpfs, hash_of, results_project_with_study};

const TARGETS: [&str; 4] = ["tables", "figure", "tune", "--jobs=2"];

fn run_on(p: &Project, store: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    p.run(&all)
}

#[test]
fn a_full_disk_fails_the_stage_cleanly_and_the_run_finishes_once_space_is_freed() {
    let reference = results_project_with_study();
    let mut args = vec!["run"];
    args.extend(TARGETS);
    reference.run(&args).assert_ok();
    let want = hash_of(&reference, "tables", "table2_csv");
    let size = dir_size(&reference.store());

    // Free space from "nothing" to most of what the whole run needs: each level runs out at a
    // different write. Every level starts from an empty store.
    // The data stages take most of the space; the finer steps near the end reach the trainings,
    // the study, the predictions and the renders.
    let mut levels = vec![0, 4 << 10, 64 << 10, size / 8, size / 4, size / 2];
    levels.extend((16..24).map(|k| size * k / 24));
    let mut failed_at = std::collections::BTreeSet::new();
    for (i, &left) in levels.iter().enumerate() {
        let p = results_project_with_study();
        let vol = Tmpfs::mount(&p.path().join("vol"), size * 2 + (8 << 20));
        let store = vol.dir.join("artifacts");
        vol.fill_leaving(left);

        let r = run_on(&p, &store, &args);
        assert!(!r.stderr.contains("panicked"), "level {i}: {}", r.stderr);
        assert!(!r.ok(), "level {i} ({left} B free) should run out of space");
        assert_eq!(r.code(), Some(1), "level {i}: {}", r.stderr);
        // One error line; the run log that the same full disk refused is a warning beside it.
        let (errs, others): (Vec<&str>, Vec<&str>) = r
            .error_lines()
            .into_iter()
            .partition(|l| l.starts_with("error: "));
        assert_eq!(errs.len(), 1, "level {i}: one error line:\n{}", r.stderr);
        assert!(
            others.iter().all(|l| l.starts_with("warning: ")),
            "level {i}: {others:?}"
        );
        assert!(
            errs[0].contains("No space left on device"),
            "level {i}: {}",
            errs[0]
        );
        let stages: Vec<_> = r
            .events
            .iter()
            .filter(|e| e["event"] == "stage_failed")
            .filter_map(|e| e["stage"].as_str())
            .collect();
        failed_at.insert(stages.join(","));
        eprintln!("level {i} ({left} B free): {stages:?} {}", errs[0]);

        // Whatever was committed is whole.
        if store.join("records").exists() {
            run_on(&p, &store, &["verify"]).assert_ok();
        }

        let failure = errs[0].to_string();
        vol.empty_ballast();
        let r = run_on(&p, &store, &args);
        r.assert_ok();
        run_on(&p, &store, &["verify"]).assert_ok();
        let t2 = run_on(&p, &store, &["artifact", "tables", "table2_csv"]);
        t2.assert_ok();
        let got = blake3::hash(&std::fs::read(t2.stdout.trim()).unwrap())
            .to_hex()
            .to_string();
        assert_eq!(got, want, "level {i}: Table 2 differs after freeing space");
        // Nothing of the failed attempt is left in the store's scratch space.
        let tmp = store.join("tmp");
        let left_over: Vec<_> = std::fs::read_dir(&tmp)
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left_over.is_empty(),
            "level {i}: {left_over:?} in tmp/ after {failure}"
        );
    }
    // The levels ran out of space in several different places.
    assert!(failed_at.len() >= 4, "{failed_at:?}");
}

/// What `root` takes on a tmpfs, which accounts whole 4 KiB pages.
fn dir_size(root: &Path) -> u64 {
    common::snapshot(root)
        .values()
        .map(|(n, _)| n.div_ceil(4096) * 4096)
        .sum()
}

#[test]
fn a_command_that_fills_the_disk_fails_its_stage_and_leaves_the_store_as_it_was() {
    // The program writes its output until the store's volume is full, swallows the error and
    // exits 0; magpipe's copy of the output then finds no space either.
    let py = Project::python();
    let p = Project::new(&format!(
        "version: 1
stages:
  small:
    kind: command
    shell: \"echo 42 > {{outputs.n}}\"
    outputs: {{n: {{path: n.txt}}}}
  hog:
    kind: command
    run: [python, hog.py]
    code: [hog.py]
    env: {{python: {}}}
    inputs: {{n: small.n}}
    outputs: {{big: {{path: big.bin}}}}
",
        py.display()
    ));
    std::fs::write(
        p.path().join("hog.py"),
        "import os\ntry:\n    with open(os.environ['MAGPIPE_OUT_BIG'], 'wb') as f:\n        \
         while True:\n            f.write(b'x' * (1 << 20))\n            f.flush()\nexcept OSError as e:\n    \
         print('swallowed', e)\n",
    )
    .unwrap();
    let vol = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(vol.path(), 48 << 20);
    let store = fs.dir.join("store");
    run_on(&p, &store, &["run", "small"]).assert_ok();
    // The interpreter's version, remembered while hog's key was computed, is a cache.
    let snapshot = || {
        let mut s = common::snapshot_without_runs(&store);
        s.retain(|k, _| !k.starts_with("cache/"));
        s
    };
    let before = snapshot();
    let free = fs.free();
    let r = run_on(&p, &store, &["run"]);
    assert!(!r.ok(), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let errs = r.error_lines();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("stage `hog`") && errs[0].contains("No space left on device"),
        "{}",
        errs[0]
    );
    assert_eq!(snapshot(), before);
    // The program's output and the half-made copy are gone: the space is free again.
    assert!(
        fs.free() + (1 << 20) >= free,
        "{} of {free} free",
        fs.free()
    );
    run_on(&p, &store, &["verify"]).assert_ok();
}
