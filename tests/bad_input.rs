//! Bad input gets a one-line error naming the file or YAML location, a non-zero exit, no panic,
//! and leaves the artifact store exactly as it was.

mod common;

use common::{Project, Run, fixture_project, snapshot, synthetic_ar};
use magpipe_stages::solared::{self, npy, pickle, zip};

const TRAIN: [u32; 3] = [11001, 11002, 11003];
const VAL: [u32; 1] = [11004];
const TEST: [u32; 1] = [11005];

fn ready_project() -> Project {
    let p = fixture_project(&TRAIN, &VAL, &TEST, 72);
    p.run(&["run"]).assert_ok();
    p
}

/// Runs after `damage`, expecting a clean failure that mentions every `needles` and an
/// untouched store.
fn fails_cleanly(p: &Project, needles: &[&str]) -> Run {
    let before = snapshot(&p.store());
    let r = p.run(&["run"]);
    assert!(!r.ok(), "expected a failure:\n{}", r.stderr);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let errs = r.error_lines();
    assert_eq!(errs.len(), 1, "one error line expected, got:\n{}", r.stderr);
    assert!(errs[0].starts_with("error: "), "{}", errs[0]);
    for n in needles {
        assert!(errs[0].contains(n), "{n:?} not in: {}", errs[0]);
    }
    assert_eq!(snapshot(&p.store()), before, "the store changed");
    r
}

fn file(p: &Project, ar: u32, which: usize) -> std::path::PathBuf {
    solared::ar_files(&p.data(), ar)[which].clone()
}

#[test]
fn truncated_npz() {
    let p = ready_project();
    let f = file(&p, 11002, 1);
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() / 2]).unwrap();
    fails_cleanly(&p, &["mean_mag11002_flat.npz", "truncated"]);
}

#[test]
fn npz_with_a_wrong_shape() {
    let p = ready_project();
    let s = synthetic_ar(11003, 72, 0);
    let bad = zip::write_stored(&[
        (
            "arr_0.npy".into(),
            npy::write_f64(&[80, 72], &s.ic[..80 * 72]),
        ),
        ("arr_1.npy".into(), {
            let mut m = npy::header_bytes("|O", &[72]);
            m.extend(pickle::encode_datetime_array(&s.times));
            m
        }),
    ]);
    std::fs::write(file(&p, 11003, 0), bad).unwrap();
    fails_cleanly(
        &p,
        &["mean_int11003_flat.npz", "arr_0", "[80, 72]", "[81, 72]"],
    );
}

#[test]
fn missing_ar_file() {
    let p = ready_project();
    std::fs::remove_file(file(&p, 11004, 2)).unwrap();
    fails_cleanly(&p, &["mean_pmdop11004_flat.npz", "missing"]);
}

#[test]
fn corrupted_timestamp_pickle() {
    let p = ready_project();
    let s = synthetic_ar(11001, 72, 0);
    let mut pk = pickle::encode_datetime_array(&s.times);
    // Turn the month byte of the 3rd timestamp into 13. The CRC is recomputed by the writer, so
    // only the pickle decoder can notice.
    let third = pk
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == &[b'C', 10])
        .nth(2)
        .unwrap()
        .0;
    pk[third + 4] = 13;
    let mut m = npy::header_bytes("|O", &[72]);
    m.extend(pk);
    let members = vec![
        ("arr_0.npy".to_string(), npy::write_f64(&[81, 72], &s.flux)),
        ("arr_1.npy".to_string(), m),
    ];
    std::fs::write(file(&p, 11001, 1), zip::write_stored(&members)).unwrap();
    fails_cleanly(&p, &["mean_mag11001_flat.npz", "arr_1.npy", "timestamp 2"]);
}

#[test]
fn timestamps_that_disagree_between_files() {
    let p = ready_project();
    let mut s = synthetic_ar(11005, 72, 4);
    s.times[10] += 3_600_000_000 / 2;
    // Only the power file gets the shifted stamps.
    let tmp = tempfile::tempdir().unwrap();
    solared::write_ar(tmp.path(), &s).unwrap();
    std::fs::copy(
        solared::ar_files(tmp.path(), 11005)[2].clone(),
        file(&p, 11005, 2),
    )
    .unwrap();
    fails_cleanly(&p, &["AR11005", "mean_pmdop", "index 10"]);
}

#[test]
fn data_folder_missing_says_where_to_get_the_data() {
    let p = Project::real();
    let r = p
        .cmd(&["run"])
        .env("SOLARED_DIR", p.path().join("nowhere"))
        .output()
        .unwrap();
    let r = Run::from(r);
    assert_eq!(r.code(), Some(1));
    let errs = r.error_lines();
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    assert!(
        errs[0].contains("nowhere") && errs[0].contains("does not exist"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].contains("https://sun.njit.edu/sarportal/"),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].contains("jonastirona/SAR_EMERGENCE_RESEARCH"),
        "{}",
        errs[0]
    );
    assert!(!p.store().join("records").exists());
}

fn spec_error(yaml: &str) -> String {
    let p = Project::new(yaml);
    let r = p.run(&["run"]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        !p.store().exists(),
        "a spec error must not create the store"
    );
    let errs = r.error_lines();
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    errs[0].to_string()
}

const BASE: &str = "version: 1
stages:
  ingest:
    kind: ingest_solared
  split:
    kind: split_ars
    inputs:
      inventory: ingest.inventory
";

#[test]
fn yaml_with_a_cycle() {
    let e = spec_error(
        "version: 1
stages:
  a:
    kind: minmax_scale
    inputs:
      series: b.train
      splits: s.splits
  b:
    kind: minmax_scale
    inputs:
      series: a.train
      splits: s.splits
  s:
    kind: split_ars
    inputs:
      inventory: i.inventory
  i:
    kind: ingest_solared
",
    );
    assert!(e.contains("dependency cycle"), "{e}");
    assert!(e.contains("a → b → a") || e.contains("b → a → b"), "{e}");
    assert!(e.contains("pipeline.yaml:"), "{e}");
}

#[test]
fn unknown_kind() {
    let e = spec_error(&BASE.replace("kind: split_ars", "kind: split_arz"));
    assert!(
        e.contains("pipeline.yaml:6:5: stages.split.kind: unknown kind `split_arz`"),
        "{e}"
    );
    assert!(e.contains("known: ingest_solared"), "{e}");
}

#[test]
fn unknown_and_mistyped_params() {
    let e = spec_error(&format!(
        "{BASE}    params:\n      mode: fixed\n      trian: [1]\n"
    ));
    assert!(
        e.contains("pipeline.yaml:11:7: stages.split.params.trian: unknown param `trian`"),
        "{e}"
    );
    assert!(e.contains("train"), "{e}");
    let e = spec_error(&format!("{BASE}    params:\n      seed: lots\n"));
    assert!(
        e.contains("pipeline.yaml:10:7: stages.split.params.seed"),
        "{e}"
    );
    assert!(e.contains("invalid type"), "{e}");
    let e = spec_error(&format!("{BASE}    params:\n      mode: shuffled\n"));
    assert!(
        e.contains("stages.split.params.mode") && e.contains("fixed"),
        "{e}"
    );
}

#[test]
fn missing_inputs_duplicates_and_bad_yaml() {
    let e = spec_error("version: 1\nstages:\n  split:\n    kind: split_ars\n");
    assert!(e.contains("stages.split: missing input `inventory`"), "{e}");
    let e = spec_error(&BASE.replace("ingest.inventory", "ingest.nothing"));
    assert!(
        e.contains("stages.split.inputs.inventory") && e.contains("series, inventory"),
        "{e}"
    );
    let e = spec_error(&format!("{BASE}  split:\n    kind: split_ars\n"));
    assert!(e.contains("duplicate"), "{e}");
    let e = spec_error("stages:\n  a: [unclosed\n");
    assert!(
        e.contains("invalid YAML") && e.contains("pipeline.yaml:"),
        "{e}"
    );
    let e = spec_error(&format!(
        "{BASE}variants:\n  v:\n    split:\n      nope: 1\n"
    ));
    assert!(
        e.contains("variants.v.split.nope") && e.contains("unknown param"),
        "{e}"
    );
    let e = spec_error(&format!(
        "{BASE}    params:\n      exclude: [1]\n      test: [1]\n"
    ));
    assert!(e.contains("AR1 is listed in both"), "{e}");
}

#[test]
fn set_overrides_are_checked() {
    let p = Project::new(BASE);
    let r = p.run(&["run", "--set", "split.nope=1"]);
    assert_eq!(r.code(), Some(2));
    assert!(
        r.stderr
            .contains("--set split.nope=1: unknown param `nope`"),
        "{}",
        r.stderr
    );
    let r = p.run(&["run", "--variant", "fast"]);
    assert_eq!(r.code(), Some(2));
    assert!(r.stderr.contains("no variant `fast`"), "{}", r.stderr);
    let r = p.run(&["run", "nosuchstage"]);
    assert_eq!(r.code(), Some(2));
    assert!(r.stderr.contains("no stage `nosuchstage`"), "{}", r.stderr);
}

#[test]
fn split_naming_an_ar_that_is_not_in_the_data() {
    let p = fixture_project(&TRAIN, &VAL, &TEST, 72);
    p.set_pipeline(
        &p.pipeline()
            .replace("test: [11005]", "test: [11005, 99999]"),
    );
    let r = p.run(&["run"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr.contains("params.test lists AR99999"),
        "{}",
        r.stderr
    );
    // And an AR in the data that no list names.
    p.set_pipeline(&p.pipeline().replace("test: [11005, 99999]", "test: []"));
    let r = p.run(&["run"]);
    assert!(r.stderr.contains("have no role: AR11005"), "{}", r.stderr);
}

#[test]
fn list_inputs_are_checked_like_single_ones() {
    let alarms = |predictors: &str| {
        format!(
            "{BASE}  alarms:\n    kind: score_alarms\n    inputs:\n      protocol: split.splits\n      test: split.splits\n      predictors: {predictors}\n"
        )
    };
    let e = spec_error(&alarms("[split, nowhere]"));
    assert!(
        e.contains("pipeline.yaml:14:7: stages.alarms.inputs.predictors: no stage `nowhere`"),
        "{e}"
    );
    let e = spec_error(&alarms("[split.nothing]"));
    assert!(e.contains("stage `split` has outputs splits"), "{e}");
    let e = spec_error(&alarms("[split, {a: b}]"));
    assert!(e.contains("a list of them"), "{e}");
    // A single slot given a list.
    let e = spec_error(&BASE.replace(
        "inventory: ingest.inventory",
        "inventory: [ingest.inventory]",
    ));
    assert!(
        e.contains(
            "stages.split.inputs.inventory: input `inventory` takes one `stage.output`, not a list"
        ),
        "{e}"
    );
}
