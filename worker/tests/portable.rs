//! `kernels: portable` through the worker process: a training killed after an epoch resumes to
//! the bytes of an uninterrupted one, and bad input is one line on stderr, a non-zero exit and
//! no output.

mod fixture;

use std::io::{BufRead, BufReader};

use fixture::{request, run, spawn, windows, write_xy};
use magpipe_stages::train::Kernels;

#[test]
fn a_killed_portable_training_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = windows(dir.path());
    for model in ["MagFluxLSTM", "MagFluxEnc-Dec"] {
        let whole = tempfile::tempdir_in(dir.path()).unwrap();
        let mut req = request(&train, &val, whole.path(), model, Kernels::Portable, 1);
        req.params["epochs"] = 3.into();
        let uninterrupted = run(&req).unwrap();

        let out = tempfile::tempdir_in(dir.path()).unwrap();
        req.out_dir = out.path().to_path_buf();
        req.checkpoint_dir = out.path().join("ckpt");
        let mut child = spawn(&req, &[("MAGPIPE_FAULT", "pause-after-epoch:1")]);
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let paused = stdout
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("paused after epoch 1"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(paused, "{model}: the worker never paused");
        assert!(!out.path().join("model.safetensors").exists());

        let o = spawn(&req, &[]).wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let log = String::from_utf8_lossy(&o.stdout);
        assert!(log.contains("resuming after epoch 1"), "{model}: {log}");
        let resumed = std::fs::read(out.path().join("model.safetensors")).unwrap();
        assert_eq!(
            blake3::hash(&resumed).to_hex().to_string(),
            uninterrupted.weights,
            "{model}"
        );
        // The history's metrics are those of the uninterrupted run (times aside).
        let metrics = |dir: &std::path::Path| {
            let md = std::fs::read_to_string(dir.join("history.md")).unwrap();
            md.lines()
                .map(|l| l.split('|').take(6).collect::<Vec<_>>().join("|"))
                .collect::<Vec<_>>()
        };
        assert_eq!(metrics(out.path()), metrics(whole.path()), "{model}");
    }
}

/// Runs a portable training on `train` and the fixture's validation windows; returns the
/// worker's stderr, after checking that it failed and wrote nothing.
fn refused(dir: &std::path::Path, train: &std::path::Path) -> String {
    let (_, val) = windows(dir);
    let out = tempfile::tempdir_in(dir).unwrap();
    let req = request(train, &val, out.path(), "MagFluxLSTM", Kernels::Portable, 1);
    let err = run(&req).expect_err("the worker trained on bad input");
    let written: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "ckpt")
        .collect();
    assert!(written.is_empty(), "outputs written: {written:?}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err.trim().to_string()
}

#[test]
fn bad_input_is_one_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    let (n, w) = (8i64, 24i64);
    let mut x = vec![0.25f32; (n * w * 5) as usize];
    let y = vec![0.0f32; (n * 6) as usize];

    // NaN in window 3: the input, the file, the window and the index are named.
    x[(3 * w * 5 + 7) as usize] = f32::NAN;
    write_xy(&bad, &x, [n, w, 5], &y, [n, 6]);
    let err = refused(dir.path(), &bad);
    assert_eq!(
        err,
        format!(
            "error: input `train`: {}: x of window 3 holds a non-finite value (NaN) at index 7",
            bad.display()
        )
    );

    // No windows at all.
    write_xy(&bad, &[], [0, w, 5], &[], [0, 6]);
    let err = refused(dir.path(), &bad);
    assert!(
        err.contains("input `train`") && err.contains("empty input"),
        "{err}"
    );

    // A shape the engine does not take: windows of 4 features for a model of the validation
    // windows' 5.
    x.truncate((n * w * 4) as usize);
    x.fill(0.25);
    write_xy(&bad, &x, [n, w, 4], &y, [n, 6]);
    let err = refused(dir.path(), &bad);
    assert_eq!(
        err,
        "error: input windows: the training windows have 4 features and horizon 6, the \
         validation windows 5 and 6"
    );
}

/// model.safetensors holds the same names and shapes from both engines, so a model trained with
/// one predicts with the other (`predict`'s `kernels` param), to within rounding.
#[test]
fn either_engine_loads_the_others_weights() {
    use magpipe_worker::predict::load_model;
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = windows(dir.path());
    let w = magpipe_kernels::Windows::read(&val).unwrap();
    for model in ["MagFluxLSTM", "MagFluxEnc-Dec"] {
        for (trained, other) in [
            (Kernels::Native, Kernels::Portable),
            (Kernels::Portable, Kernels::Native),
        ] {
            let out = tempfile::tempdir_in(dir.path()).unwrap();
            run(&request(&train, &val, out.path(), model, trained, 1)).unwrap();
            let (weights, config) = (
                out.path().join("model.safetensors"),
                out.path().join("model.json"),
            );
            let predict = |kernels| {
                let m = load_model(&weights, &config, kernels).unwrap();
                assert_eq!(
                    m.model.param_count(),
                    m.config["param_count"].as_i64().unwrap()
                );
                m.model.predict(w.x(), w.len(), w.steps()).unwrap()
            };
            let (own, theirs) = (predict(trained), predict(other));
            assert_eq!(own.len(), w.len() * 6);
            let diff = own
                .iter()
                .zip(&theirs)
                .map(|(a, b)| f64::from((a - b).abs()))
                .fold(0.0, f64::max);
            let scale = own.iter().map(|a| f64::from(a.abs())).fold(0.0, f64::max);
            assert!(
                diff <= 1e-4 * scale,
                "{model} trained {trained:?}, predicted {other:?}: differs by {diff:e} of {scale:e}"
            );
        }
    }
}
