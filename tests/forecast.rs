//! `magpipe forecast` on fixture ARs written in the real npz format: the JSON schema (snapshot),
//! `--at` reading nothing after its time (poisoned future hours change nothing), a replay giving
//! the same Table 2 as the pipeline's own scoring, and bad inputs refused in one line with the
//! store untouched. The real-data replay of the five test ARs is in `forecast_real.rs`.

mod common;

use std::path::{Path, PathBuf};

use common::{
    Project, RESULTS_TEST_AR as AR, Run, replay_rows, results_project, snapshot, synthetic_ar,
    table2_rows,
};
use magpipe_stages::solared::{self, time::format_micros};
use serde_json::Value;

/// The results fixture with the models and Table 2 computed.
fn ready() -> Project {
    let p = results_project();
    p.run(&["run", "alarms"]).assert_ok();
    p
}

fn ar_dir(p: &Project) -> PathBuf {
    p.data().join(format!("AR{AR}"))
}

fn json(r: &Run) -> Value {
    r.assert_ok();
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

/// Hashes, floats and the project's folder made machine-independent; long series cut to their
/// last points (the snapshot is of the schema and of what the data decides).
fn normalise(v: &Value, root: &str) -> Value {
    match v {
        Value::String(s) if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) => {
            Value::String("[blake3]".into())
        }
        Value::String(s) => Value::String(s.replace(root, "[project]")),
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => Value::String("[f64]".into()),
        Value::Array(a) if a.len() > 3 => {
            let mut out: Vec<Value> = a[a.len() - 2..]
                .iter()
                .map(|x| normalise(x, root))
                .collect();
            out.insert(0, Value::String(format!("[{} more]", a.len() - 2)));
            Value::Array(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| normalise(x, root)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), normalise(x, root)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `magpipe forecast --model train` with `args`.
fn forecast(p: &Project, args: &[&str]) -> Run {
    let mut all = vec!["forecast", "--model", "train"];
    all.extend_from_slice(args);
    p.run(&all)
}

fn time_at(p: &Project, hour: usize) -> String {
    let s = solared::load_ar(&p.data(), AR).unwrap();
    format_micros(s.times[hour])
}

#[test]
fn the_forecast_json_keeps_its_schema() {
    let p = ready();
    let dir = ar_dir(&p);
    let at = time_at(&p, 50);
    let r = forecast(
        &p,
        &[
            "--ar",
            dir.to_str().unwrap(),
            "--at",
            &at,
            "--format",
            "json",
        ],
    );
    let v = json(&r);
    assert_eq!(v["schema"], "magpipe.forecast/1");
    assert_eq!(v["issued_at"], at);
    assert_eq!(v["tiles"].as_array().unwrap().len(), 7);
    // The lineage hash is the one `magpipe lineage` prints for the model.
    let l = json(&p.run(&["lineage", "train", "--format", "json"]));
    assert_eq!(v["model"]["lineage_hash"], l["lineage_hash"]);
    assert_eq!(
        v["model"]["key"],
        l["stages"].as_array().unwrap().last().unwrap()["key"]
    );
    // 12 outputs of the latest window (inputs 21…50), targets from hour 50 on.
    let f = &v["tiles"][0]["forecast"];
    assert_eq!(f.as_array().unwrap().len(), 6);
    assert_eq!(f[0]["time"], at);
    // Predictions of windows 0…21 (inputs end by hour 50), the last one placed at 50 + 4.
    let series = v["tiles"][0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 50 + 2 - 30);
    assert_eq!(series.last().unwrap()["time"], time_at(&p, 54));
    // Every float and hash is redacted. The categories left (collapsed, an alarm, its lead)
    // come from a fixture model trained and run on magpipe's own engine (the default kernels),
    // whose bits are the same on every CPU, so they hold on any machine.
    let root = p.path().display().to_string();
    let mut v = normalise(&v, &root);
    v["model"]["trained_at"] = Value::String("[time]".into());
    insta::assert_snapshot!("forecast_json", serde_json::to_string_pretty(&v).unwrap());
}

/// The fixture AR with its hours after `keep` replaced by hostile values, and more such hours
/// appended: infinities, NaN in whole tiles, huge and negative numbers.
fn poisoned(keep: usize, extra: usize) -> solared::ArSeries {
    let clean = synthetic_ar(AR, 64, 3);
    let t = 64 + extra;
    let mut s = synthetic_ar(AR, t, 3);
    let poison = |c: usize, k: usize, h: usize| match (c + k + h) % 4 {
        0 => f64::INFINITY,
        1 => f64::NAN,
        2 => 1e300,
        _ => -7e12,
    };
    let chans: Vec<&Vec<f64>> = {
        let [a, b, c, d] = &clean.power;
        vec![&clean.ic, &clean.flux, a, b, c, d]
    };
    let [p0, p1, p2, p3] = &mut s.power;
    for (c, v) in [&mut s.ic, &mut s.flux, p0, p1, p2, p3]
        .into_iter()
        .enumerate()
    {
        for k in 0..81 {
            for h in 0..t {
                v[k * t + h] = if h <= keep {
                    chans[c][k * 64 + h]
                } else {
                    poison(c, k, h)
                };
            }
        }
    }
    s
}

#[test]
fn at_reads_nothing_after_its_time() {
    let p = ready();
    let dir = ar_dir(&p);
    let at = time_at(&p, 47);
    let d = dir.to_str().unwrap();
    let run = |fmt: &str| forecast(&p, &["--ar", d, "--at", &at, "--format", fmt]);
    let clean_json = run("json");
    clean_json.assert_ok();
    let clean_text = run("text");
    clean_text.assert_ok();

    // The same folder, now with every hour after --at poisoned and 30 hostile hours appended.
    solared::write_ar(&p.data(), &poisoned(47, 30)).unwrap();
    let before = snapshot(&p.store());
    let poisoned_json = run("json");
    poisoned_json.assert_ok();
    assert_eq!(
        poisoned_json.stdout, clean_json.stdout,
        "the poison leaked into the forecast"
    );
    assert_eq!(run("text").stdout, clean_text.stdout);
    assert_eq!(
        snapshot(&p.store()),
        before,
        "a forecast wrote to the store"
    );
    // Without --at the poison is read and refused: the hours after --at were really hostile.
    let all = forecast(&p, &["--ar", dir.to_str().unwrap()]);
    assert_eq!(all.code(), Some(1), "{}", all.stderr);
    assert!(all.stderr.contains("infinite value"), "{}", all.stderr);

    // And --at is the data ending there: a folder cut at that hour gives the same forecast.
    let cut = synthetic_ar(AR, 64, 3).first_hours(48);
    solared::write_ar(&p.data(), &cut).unwrap();
    let plain = json(&forecast(
        &p,
        &["--ar", dir.to_str().unwrap(), "--format", "json"],
    ));
    let mut with_at: Value = serde_json::from_str(&clean_json.stdout).unwrap();
    with_at["data"]["at"] = Value::Null;
    assert_eq!(plain, with_at);
}

#[test]
fn a_replay_scores_like_the_pipeline_and_writes_its_timeline() {
    let p = ready();
    let t2 = p.run(&["artifact", "alarms", "table2"]);
    t2.assert_ok();
    let csv = std::fs::read_to_string(t2.stdout.trim()).unwrap();
    let out = p.path().join("replay-out");
    let r = forecast(
        &p,
        &[
            "--replay",
            &AR.to_string(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    let v = json(&r);
    assert_eq!(v["schema"], "magpipe.forecast-replay/1");
    assert_eq!(replay_rows(&v), table2_rows(&csv));
    // Hour by hour from the first window's last input to the last scored prediction's:
    // span = 30 windows − 2 trimmed, windows of 30 hours.
    let a = &v["ars"][0];
    assert_eq!(a["hours"]["count"], 28);
    assert_eq!(a["hours"]["first"], time_at(&p, 29));
    assert_eq!(a["hours"]["last"], time_at(&p, 29 + 27));
    for f in [
        "timeline.parquet",
        "timeline.csv",
        "table2.md",
        "replay.json",
        "replay.md",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("timeline.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 28 * 7);
    let png = std::fs::read(out.join(format!("timeline-AR{AR}.png"))).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The replay's report on disk is what was printed.
    let disk: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("replay.json")).unwrap()).unwrap();
    assert_eq!(disk, v);
    // Without --model, Table 2's model; the default place is the store's forecasts/ folder, and
    // the text says where it wrote.
    let text = p.run(&["forecast", "--replay"]);
    text.assert_ok();
    let default = p.store().join("forecasts/train/replay");
    assert!(
        text.stdout.contains(&default.display().to_string()),
        "{}",
        text.stdout
    );
    assert!(default.join("replay.json").is_file());
}

/// One error line naming `needles` (beside any `note:`), exit `code`, no panic, the store as
/// it was.
fn refused(p: &Project, args: &[&str], code: i32, needles: &[&str]) {
    let before = snapshot(&p.store());
    let r = p.run(args);
    assert_eq!(r.code(), Some(code), "{args:?}:\n{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.stdout.is_empty(),
        "no forecast may come out: {}",
        r.stdout
    );
    let errs: Vec<&str> = r
        .error_lines()
        .into_iter()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("note: "))
        .collect();
    assert_eq!(errs.len(), 1, "one error line expected:\n{}", r.stderr);
    assert!(errs[0].starts_with("error: "), "{}", errs[0]);
    for n in needles {
        assert!(errs[0].contains(n), "{n:?} not in: {}", errs[0]);
    }
    assert_eq!(snapshot(&p.store()), before, "the store changed");
}

fn write_live(p: &Project, s: &solared::ArSeries) -> PathBuf {
    let dir = p.path().join("live");
    solared::write_ar(&dir, s).unwrap();
    dir.join(format!("AR{}", s.ar))
}

#[test]
fn bad_forecast_inputs_are_refused_in_one_line() {
    let p = ready();
    let dir = ar_dir(&p);
    let d = dir.to_str().unwrap();
    // Too little history: the first forecast needs 30 hours of input.
    let early = time_at(&p, 20);
    refused(
        &p,
        &["forecast", "--model", "train", "--ar", d, "--at", &early],
        1,
        &[d, "too little history: 21 hours", "needs 30 hours"],
    );
    refused(
        &p,
        &[
            "forecast",
            "--model",
            "train",
            "--ar",
            d,
            "--at",
            "2001-01-01",
        ],
        1,
        &["no hour at or before 2001-01-01"],
    );
    refused(
        &p,
        &["forecast", "--model", "train", "--ar", d, "--at", "soon"],
        2,
        &["--at soon"],
    );

    // A gap in the timeline.
    let mut gap = synthetic_ar(AR, 64, 3);
    for t in &mut gap.times[40..] {
        *t += 5 * 3_600_000_000;
    }
    let g = write_live(&p, &gap);
    refused(
        &p,
        &["forecast", "--model", "train", "--ar", g.to_str().unwrap()],
        1,
        &["gap in the timeline", "(6 h instead of 1) after hour 39"],
    );
    let before_gap = format_micros(gap.times[39]);
    let ok = forecast(&p, &["--ar", g.to_str().unwrap(), "--at", &before_gap]);
    ok.assert_ok();

    // NaNs in the last hours of a forecast tile (P4-5 of paper tile 40 at the last hour).
    let mut nan = synthetic_ar(AR, 64, 3);
    nan.power[2][39 * 64 + 63] = f64::NAN;
    let n = write_live(&p, &nan);
    refused(
        &p,
        &["forecast", "--model", "train", "--ar", n.to_str().unwrap()],
        1,
        &["NaN in the last hours: P4-5 of tile 40"],
    );
    // Other tiles are fine.
    forecast(&p, &["--ar", n.to_str().unwrap(), "--tiles", "41-43"]).assert_ok();

    // A truncated file, a missing folder, a folder that is no AR.
    let mut t = write_live(&p, &synthetic_ar(AR, 64, 3));
    let f = solared::ar_files_in(&t, AR)[1].clone();
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() / 3]).unwrap();
    refused(
        &p,
        &["forecast", "--model", "train", "--ar", t.to_str().unwrap()],
        1,
        &["mean_mag15004_flat.npz", "truncated"],
    );
    t.set_file_name("AR99999");
    refused(
        &p,
        &["forecast", "--model", "train", "--ar", t.to_str().unwrap()],
        1,
        &["AR99999", "file is missing"],
    );
    let empty = p.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    refused(
        &p,
        &[
            "forecast",
            "--model",
            "train",
            "--ar",
            empty.to_str().unwrap(),
        ],
        1,
        &["is not an AR folder"],
    );

    // Models: not a stage, not a train stage, another variant's model that never ran.
    refused(
        &p,
        &["forecast", "--model", "nope", "--ar", d],
        2,
        &["no stage `nope`", "train"],
    );
    refused(
        &p,
        &["forecast", "--model", "predict", "--ar", d],
        2,
        &["--model takes a train stage; `predict` is a predict stage"],
    );
    refused(
        &p,
        &["forecast", "--model", "train@quick", "--ar", d],
        2,
        &["quick"],
    );
    // A model the pipeline has moved on from is still the model that exists: used, and said.
    p.set_pipeline(
        &p.pipeline()
            .replace("epochs: 2, batch_size: 32", "epochs: 3, batch_size: 32"),
    );
    let moved = forecast(&p, &["--ar", d]);
    moved.assert_ok();
    assert!(
        moved.stderr.contains(
            "note: `train` is not what pipeline.yaml would train now (param `epochs`: 2 → 3)"
        ),
        "{}",
        moved.stderr
    );
    // One that never trained is refused.
    p.set_pipeline(&p.pipeline().replace("  train_encdec:\n", "  never:\n    kind: train\n    inputs: {train: window.train, val: window.val}\n  train_encdec:\n"));
    refused(
        &p,
        &["forecast", "--model", "never", "--ar", d],
        1,
        &[
            "stage `never` has never trained a model here",
            "magpipe run never",
        ],
    );
    refused(
        &p,
        &["forecast", "--model", "train", "--ar", d, "--tiles", "0-3"],
        2,
        &["--tiles 0-3"],
    );
}

#[test]
fn a_damaged_model_is_refused_not_forecast_with() {
    let p = ready();
    let w = p.run(&["artifact", "train", "model"]);
    w.assert_ok();
    let path = Path::new(w.stdout.trim());
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(path, perm).unwrap();
    let mut b = std::fs::read(path).unwrap();
    let last = b.len() - 1;
    b[last] ^= 1;
    std::fs::write(path, b).unwrap();
    let dir = ar_dir(&p);
    // Not `refused`: reading a damaged object moves it aside (the store's rule for every read,
    // so the next run recreates it), so the store does change.
    let r = forecast(&p, &["--ar", dir.to_str().unwrap()]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    let errs: Vec<&str> = r
        .error_lines()
        .into_iter()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    assert!(errs[0].contains("model.safetensors"), "{}", errs[0]);
    assert!(errs[0].contains("the store is damaged"), "{}", errs[0]);
    assert!(
        r.stdout.is_empty(),
        "no forecast may come out: {}",
        r.stdout
    );
}

#[test]
fn a_forecast_needs_the_store_and_the_ar_folder_only() {
    let p = ready();
    let dir = ar_dir(&p);
    let before = json(&forecast(
        &p,
        &["--ar", dir.to_str().unwrap(), "--format", "json"],
    ));
    // The AR, moved out of the pipeline's data folder, which then disappears.
    let live = p.path().join("live").join(format!("AR{AR}"));
    std::fs::create_dir_all(live.parent().unwrap()).unwrap();
    std::fs::rename(&dir, &live).unwrap();
    std::fs::remove_dir_all(p.data()).unwrap();
    let snap = snapshot(&p.store());
    let r = p
        .cmd(&[
            "forecast",
            "--model",
            "train",
            "--ar",
            live.to_str().unwrap(),
            "--format",
            "json",
        ])
        .env("SOLARED_DIR", p.path().join("data"))
        .output()
        .unwrap();
    let r = Run::from(r);
    let after = json(&r);
    assert!(
        r.stderr
            .contains("note: whether `train` is what pipeline.yaml would train now cannot be told")
            && r.stderr.contains("does not exist"),
        "{}",
        r.stderr
    );
    assert_eq!(after["tiles"], before["tiles"]);
    assert_eq!(after["model"]["key"], before["model"]["key"]);
    assert_eq!(
        snapshot(&p.store()),
        snap,
        "a forecast leaves the store as it was"
    );
}

/// With `kernels: portable` the model trains, predicts (`predict` follows its model.json) and
/// forecasts (`infer`) on magpipe's own engine, and a replay still scores like the pipeline:
/// both run the same engine on the same windows.
#[test]
fn a_portable_model_predicts_and_replays_on_magpipes_engine() {
    let p = results_project();
    let pipeline = p.pipeline();
    let train = "early_stop: none, seed: 3}";
    assert_eq!(pipeline.matches(train).count(), 1);
    p.set_pipeline(&pipeline.replace(train, "early_stop: none, seed: 3, kernels: portable}"));
    p.run(&["run", "alarms"]).assert_ok();
    for stage in ["train", "predict"] {
        let l = p.run(&["lineage", stage]);
        l.assert_ok();
        let ran_on = l
            .stdout
            .lines()
            .find(|x| x.trim_start().starts_with("ran on "))
            .unwrap_or_else(|| panic!("{stage}: no `ran on` line: {}", l.stdout));
        assert!(
            ran_on.contains("kernels portable: magpipe-kernels "),
            "{stage}: {ran_on}"
        );
    }
    let t2 = p.run(&["artifact", "alarms", "table2"]);
    t2.assert_ok();
    let csv = std::fs::read_to_string(t2.stdout.trim()).unwrap();
    let out = p.path().join("replay-out");
    let r = forecast(
        &p,
        &[
            "--replay",
            &AR.to_string(),
            "--out",
            out.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(replay_rows(&json(&r)), table2_rows(&csv));
}

/// A model trained on libtorch predicts on magpipe's own engine by default (`predict`'s
/// `kernels: auto`), so Table 2 is the same on every machine; `kernels: null` predicts on the
/// kernels it was trained with. Either way a replay scores like the pipeline's `predict`, whose
/// kernels it follows.
#[test]
fn a_native_model_predicts_on_the_engine_by_default_and_on_libtorch_with_null() {
    let predict = "scaler: scale.scaler}\n  predict_encdec:";
    for (predict_params, predicted_on) in [
        ("", "kernels portable: magpipe-kernels "),
        ("\n    params: {kernels: null}", "kernels native: "),
    ] {
        let p = results_project();
        let pipeline = p.pipeline();
        let train = "early_stop: none, seed: 3}";
        assert_eq!(pipeline.matches(train).count(), 1);
        assert_eq!(pipeline.matches(predict).count(), 1);
        p.set_pipeline(
            &pipeline
                .replace(train, "early_stop: none, seed: 3, kernels: native}")
                .replace(
                    predict,
                    &format!("scaler: scale.scaler}}{predict_params}\n  predict_encdec:"),
                ),
        );
        p.run(&["run", "alarms"]).assert_ok();
        let ran_on = |stage: &str| {
            let l = p.run(&["lineage", stage]);
            l.assert_ok();
            l.stdout
                .lines()
                .find(|x| x.trim_start().starts_with("ran on "))
                .unwrap_or_else(|| panic!("{stage}: no `ran on` line: {}", l.stdout))
                .to_string()
        };
        assert!(
            ran_on("train").contains("kernels native: "),
            "{predict_params}"
        );
        let on = ran_on("predict");
        assert!(on.contains(predicted_on), "{predict_params}: {on}");
        let t2 = p.run(&["artifact", "alarms", "table2"]);
        t2.assert_ok();
        let csv = std::fs::read_to_string(t2.stdout.trim()).unwrap();
        let out = p.path().join("replay-out");
        let r = forecast(
            &p,
            &[
                "--replay",
                &AR.to_string(),
                "--out",
                out.to_str().unwrap(),
                "--format",
                "json",
            ],
        );
        assert_eq!(
            replay_rows(&json(&r)),
            table2_rows(&csv),
            "{predict_params}"
        );
    }
}
