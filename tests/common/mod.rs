//! Test support: the real binary, the real SolARED folder, fixtures written in the real npz
//! format through the project's own writer, and snapshots of the artifact store.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use magpipe_stages::solared::{self, ArSeries, TILES};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_magpipe")
}

/// The worker the engine starts: beside the engine binary.
pub fn worker() -> PathBuf {
    Path::new(bin()).with_file_name("magpipe-worker")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real data: $SOLARED_DIR, else ../shared/solared beside the repository.
pub fn solared_dir() -> PathBuf {
    solared::checkout_data_dir(&repo())
}

/// A temporary folder outside `/tmp`.
pub fn outside_tmp() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
}

/// A scratch project: a pipeline file, an optional data folder, its own store.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(pipeline: &str) -> Project {
        Project::in_dir(tempfile::tempdir().expect("tempdir"), pipeline)
    }

    /// A project outside `/tmp` (under the build's own temporary folder), where a command stage
    /// gets a private `/tmp` of its own.
    pub fn outside_tmp(pipeline: &str) -> Project {
        Project::in_dir(outside_tmp(), pipeline)
    }

    fn in_dir(dir: tempfile::TempDir, pipeline: &str) -> Project {
        std::fs::write(dir.path().join("pipeline.yaml"), pipeline).expect("write pipeline");
        Project { dir }
    }

    /// A project running the repository's own pipeline.yaml on the real data.
    pub fn real() -> Project {
        let text = std::fs::read_to_string(repo().join("pipeline.yaml")).expect("pipeline.yaml");
        let p = Project::new(&text);
        // The pipeline's Python model, its interpreter and the published Table 2, at the paths
        // pipeline.yaml names.
        for dir in ["models", ".venv", "reference"] {
            std::os::unix::fs::symlink(repo().join(dir), p.path().join(dir)).expect("symlink");
        }
        p
    }

    /// The project's venv interpreter (numpy, pyarrow, safetensors; `make test` installs them).
    pub fn python() -> PathBuf {
        let py = repo().join(".venv/bin/python");
        assert!(py.exists(), "{} is missing: run `make test`", py.display());
        py
    }

    /// The repository's pipeline with Table 2 (and the tables) scored on `first` and then
    /// persistence and the rest of the baselines, instead of the four Table 1 models: `alarms`
    /// then runs without the hour of training they take.
    pub fn real_scoring(first: &str) -> Project {
        let p = Project::real();
        let want = format!("predictors: [{first}, persistence");
        let text = p.pipeline().replace(
            "predictors: [predict_lstm_hybrid, predict_lstm_mse, predict_encdec_mse, predict_encdec_hybrid,\n                   persistence",
            &want,
        );
        assert!(text.contains(&want), "the pipeline's alarms stage changed");
        // The figures draw only models the alarms score (a plan-time check).
        let models = "models: [predict_lstm_hybrid, predict_lstm_mse, predict_encdec_mse, predict_encdec_hybrid, ridge]";
        assert!(
            text.contains(models),
            "the pipeline's figures stage changed"
        );
        let text = text.replace(models, &format!("models: [{first}]"));
        p.set_pipeline(&text);
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.path().join("artifacts")
    }

    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn pipeline(&self) -> String {
        std::fs::read_to_string(self.path().join("pipeline.yaml")).unwrap()
    }

    pub fn set_pipeline(&self, text: &str) {
        std::fs::write(self.path().join("pipeline.yaml"), text).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.current_dir(self.path())
            .args(["--log-format", "json"])
            .args(args)
            .env_remove("MAGPIPE_STORE")
            .env_remove("MAGPIPE_FAULT");
        // Fixture projects read their own data folder; the others read the real data.
        let data = if self.data().is_dir() {
            self.data()
        } else {
            solared_dir()
        };
        c.env("SOLARED_DIR", data);
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("spawn magpipe"))
    }
}

/// A finished command with its events parsed.
pub struct Run {
    pub out: Output,
    pub stdout: String,
    pub stderr: String,
    pub events: Vec<serde_json::Value>,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let events = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect();
        Run {
            out,
            stdout,
            stderr,
            events,
        }
    }
}

impl Run {
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }

    pub fn assert_ok(&self) -> &Run {
        assert!(
            self.ok(),
            "magpipe failed:\n{}\n{}",
            self.stderr,
            self.stdout
        );
        self
    }

    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    /// Stage names with this event kind (`stage_finished`, `stage_cached`, …), in event order.
    pub fn stages(&self, event: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .events
            .iter()
            .filter(|e| e["event"] == event)
            .map(|e| e["stage"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    /// The lines of stderr that are not JSON events.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
            .collect()
    }
}

/// Every file under `root` with its size and blake3, for "the store is untouched" checks.
pub fn snapshot(root: &Path) -> BTreeMap<String, (u64, String)> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                out.insert(
                    format!("{}/", p.strip_prefix(root).unwrap().display()),
                    (0, String::new()),
                );
                todo.push(p);
            } else {
                let b = std::fs::read(&p).unwrap();
                out.insert(
                    p.strip_prefix(root).unwrap().display().to_string(),
                    (b.len() as u64, blake3::hash(&b).to_hex().to_string()),
                );
            }
        }
    }
    out
}

/// [`snapshot`] without the run log, for checks that a successful (cached) run changed nothing
/// else: every `magpipe run` that succeeds appends to `runs/`.
pub fn snapshot_without_runs(root: &Path) -> BTreeMap<String, (u64, String)> {
    snapshot(root)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("runs/"))
        .collect()
}

/// A synthetic AR: smooth signals, NaN columns at the start (c=0) and end (c=8) like the real data.
pub fn synthetic_ar(ar: u32, t: usize, seed: u64) -> ArSeries {
    let t0 = solared::time::parse_timestamp("2013-03-07 18:59:37.5").unwrap()
        + (ar as i64 % 1000) * 86_400_000_000;
    let times = (0..t as i64).map(|h| t0 + h * 3_600_000_000).collect();
    let wave = |k: usize, h: usize, a: f64, f: f64| {
        let r = k / 9;
        if r == 0 || r == 8 {
            return 0.0;
        }
        a * ((h as f64 * f + k as f64 * 0.37 + seed as f64).sin() + 0.2 * (h as f64 / t as f64))
    };
    let mut ch: Vec<Vec<f64>> = (0..6)
        .map(|c| {
            (0..TILES * t)
                .map(|i| wave(i / t, i % t, 10.0 * (c + 1) as f64, 0.05 + 0.01 * c as f64))
                .collect()
        })
        .collect();
    // NaNs: column 0 at step 0, whole column (all 9 rows), power bands and Ic/|B| alike.
    for c in ch.iter_mut() {
        for r in 0..9 {
            c[(9 * r) * t] = f64::NAN;
        }
    }
    let power = [ch[2].clone(), ch[3].clone(), ch[4].clone(), ch[5].clone()];
    ArSeries {
        ar,
        times,
        ic: ch[0].clone(),
        flux: ch[1].clone(),
        power,
    }
}

/// Writes fixture ARs and returns a pipeline that runs ingest → split → scale → window on them.
pub fn fixture_project(train: &[u32], val: &[u32], test: &[u32], t: usize) -> Project {
    let p = Project::new(&fixture_pipeline(train, val, test, 40, 6));
    for (i, &ar) in train.iter().chain(val).chain(test).enumerate() {
        solared::write_ar(&p.data(), &synthetic_ar(ar, t, i as u64)).unwrap();
    }
    p
}

pub fn fixture_pipeline(
    train: &[u32],
    val: &[u32],
    test: &[u32],
    input: usize,
    horizon: usize,
) -> String {
    let l = |v: &[u32]| format!("{v:?}");
    format!(
        "version: 1
stages:
  ingest:
    kind: ingest_solared
    params:
      data_dir: ${{SOLARED_DIR}}
  split:
    kind: split_ars
    inputs:
      inventory: ingest.inventory
    params:
      train: {}
      val: {}
      test: {}
  scale:
    kind: minmax_scale
    inputs:
      series: ingest.series
      splits: split.splits
  window:
    kind: window
    inputs:
      train: scale.train
      val: scale.val
    params:
      input: {input}
      horizon: {horizon}
",
        l(train),
        l(val),
        l(test)
    )
}

/// The shapes of the tensors in a safetensors file.
pub fn tensor_shapes(path: &Path) -> BTreeMap<String, Vec<usize>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect()
}

pub const RESULTS_TEST_AR: u32 = 15004;

fn results_pipeline(p: &Project, published: &str) {
    p.set_pipeline(&format!(
        "{}  train:
    kind: train
    inputs: {{train: window.train, val: window.val}}
    params: {{model: MagFluxLSTM, hidden: 8, layers: 1, epochs: 2, batch_size: 32, early_stop: none, seed: 3}}
  train_encdec:
    kind: train
    inputs: {{train: window.train, val: window.val}}
    params: {{model: MagFluxEnc-Dec, loss: value, hidden: 4, layers: 1, epochs: 1, batch_size: 32, teacher_forcing_ratio: 0.5, seed: 3}}
  protocol:
    kind: test_protocol
    inputs: {{test: scale.test, index: window.index}}
    params:
      ars: [{{ar: {RESULTS_TEST_AR}, k0: 36, input: 30, history: 10, trim: -2, metric_start: 10}}]
      output_step: 5
      metric_hours: 12
  predict:
    kind: predict
    inputs: {{model: train.model, config: train.config, protocol: protocol.protocol, test: scale.test, scaler: scale.scaler}}
  predict_encdec:
    kind: predict
    inputs: {{model: train_encdec.model, config: train_encdec.config, protocol: protocol.protocol, test: scale.test, scaler: scale.scaler}}
  persistence:
    kind: baseline
    inputs: &b {{protocol: protocol.protocol, test: scale.test, scaler: scale.scaler, val: scale.val, index: window.index}}
  trend:
    kind: baseline
    inputs: *b
    params: {{method: linear}}
  alarms:
    kind: score_alarms
    inputs: {{protocol: protocol.protocol, test: scale.test, predictors: [predict, predict_encdec, persistence, trend]}}
  tables:
    kind: render_tables
    inputs: {{alarms: alarms.alarms, predictors: [predict, predict_encdec, persistence, trend]}}
    params: {{published: {published}}}
  figure:
    kind: render_figure
    inputs: {{protocol: protocol.protocol, test: scale.test, scaler: scale.scaler, alarms: alarms.alarms, criterion: alarms.criterion, models: [predict, predict_encdec]}}
    params: {{ars: [{RESULTS_TEST_AR}]}}
",
        p.pipeline()
    ));
}

/// A fixture project (two train ARs, one val, one test) with the results half of the pipeline:
/// two tiny trainings, protocol, predictions, baselines, alarms, tables and a figure.
pub fn results_project() -> Project {
    let p = fixture_project(&[15001, 15002], &[15003], &[RESULTS_TEST_AR], 64);
    let published = p.path().join("published.csv");
    let mut csv = String::from("ar,tile,category\n");
    for t in 38..=44 {
        csv.push_str(&format!("AR{RESULTS_TEST_AR},{t},Quiet\n"));
    }
    csv.push_str(&format!("AR{RESULTS_TEST_AR},Emergence,Quiet\n"));
    std::fs::write(&published, csv).unwrap();
    results_pipeline(&p, published.to_str().unwrap());
    p
}

/// The results pipeline plus a tiny tuning study, all as targets of one run.
pub fn results_project_with_study() -> Project {
    let p = results_project();
    p.set_pipeline(&format!(
        "{}  tune:
    kind: tune
    default: false
    inputs: {{train: window.train, val: window.val}}
    params:
      num_samples: 3
      max_concurrent: 1
      max_epochs: 2
      subsample: 0.5
      tpe: {{n_startup: 2}}
      space:
        lr: {{loguniform: [1.0e-4, 1.0e-2]}}
        hidden: {{choice: [2, 3]}}
        layers: {{choice: [1]}}
        model: {{choice: [MagFluxLSTM]}}
",
        p.pipeline()
    ));
    p
}

/// The blake3 of one stored output, found through `magpipe artifact`.
pub fn hash_of(p: &Project, stage: &str, output: &str) -> String {
    let r = p.run(&["artifact", stage, output]);
    r.assert_ok();
    blake3::hash(&std::fs::read(r.stdout.trim()).unwrap())
        .to_hex()
        .to_string()
}

/// Table 2 cells for comparing the evaluation (a `score_alarms` CSV) with a forecast replay
/// (its JSON report): (ar, tile, observed_first_q, predicted_first_q, category).
pub type Row = (String, String, String, String, String);

pub fn table2_rows(csv: &str) -> Vec<Row> {
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].into(),
                f[1].into(),
                f[4].into(),
                f[5].into(),
                f[6].into(),
            )
        })
        .collect()
}

pub fn replay_rows(v: &serde_json::Value) -> Vec<Row> {
    let q = |e: &serde_json::Value| e["q"].as_u64().map(|q| q.to_string()).unwrap_or_default();
    let mut out = Vec::new();
    for a in v["ars"].as_array().unwrap() {
        let ar = format!("AR{}", a["ar"]);
        for t in a["tiles"].as_array().unwrap() {
            out.push((
                ar.clone(),
                t["tile"].to_string(),
                q(&t["observed_emergence"]),
                q(&t["predicted_emergence"]),
                t["table2"]["category"].as_str().unwrap().into(),
            ));
        }
        let e = &a["emergence"];
        out.push((
            ar,
            "Emergence".into(),
            q(&e["observed_emergence"]["at"]),
            q(&e["predicted_emergence"]["at"]),
            e["table2"]["category"].as_str().unwrap().into(),
        ));
    }
    out
}

/// `magpipe audit ARGS…` came out clean: every output of the re-executed chain byte-identical.
pub fn assert_audit_clean(p: &Project, args: &[&str]) -> Run {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    let a = p.run(&all);
    a.assert_ok();
    assert!(
        a.stdout.contains("clean: every output is byte-identical"),
        "{}",
        a.stdout
    );
    a
}

/// The RO-Crate community validator's verdict (Provenance Run Crate 0.5, RECOMMENDED, run
/// offline: tests/support/rocrate/) and, when it fails, its issues one per line.
pub fn validate_crate(dir: &Path) -> (bool, String) {
    let report = dir.with_extension("report.json");
    let out = Command::new(repo().join("tests/support/rocrate/validate.sh"))
        .arg(dir)
        .arg(&report)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let issues = v["issues"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    format!(
                        "{} {} {} ({})",
                        i["severity"], i["check"]["identifier"], i["message"], i["violatingEntity"]
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_else(|| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (out.status.success() && v["passed"] == true, issues)
}

/// What `export crate` needs for a crate the validator passes at RECOMMENDED: licence, author,
/// publisher, project address.
pub const CRATE_META: [&str; 8] = [
    "--license",
    "CC-BY-4.0",
    "--author",
    "A. Researcher",
    "--publisher",
    "Example Lab=https://example.org/",
    "--url",
    "https://example.org/magpipe",
];

/// A tmpfs mounted for the life of the value: a small disk for the tests of what happens when
/// space runs out.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "a test that mounts a tmpfs needs root or CAP_SYS_ADMIN (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    pub fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Fills the volume until at most `left` bytes are free.
    pub fn fill_leaving(&self, left: u64) {
        let ballast = self.dir.join("ballast");
        let have = std::fs::metadata(&ballast).map(|m| m.len()).unwrap_or(0);
        let want = have + self.free().saturating_sub(left);
        // Writing real pages (not fallocate) so the tmpfs accounts them like any other data.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ballast)
            .unwrap();
        let mut w = std::io::BufWriter::new(f);
        let chunk = vec![0x5au8; 1 << 16];
        let mut n = have;
        while n < want {
            let k = chunk.len().min((want - n) as usize);
            use std::io::Write;
            if w.write_all(&chunk[..k]).is_err() {
                break;
            }
            n += k as u64;
        }
        let _ = std::io::Write::flush(&mut w);
    }

    pub fn empty_ballast(&self) {
        let _ = std::fs::remove_file(self.dir.join("ballast"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
