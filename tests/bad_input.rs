//! Bad input gets a one-line error naming the file or YAML location, a non-zero exit, no panic,
//! and leaves the artifact store exactly as it was.

mod common;

use common::{Project, Run, fixture_project, snapshot_without_runs, synthetic_ar};
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
    // A failed run is in the run log (runs/) like any other; nothing else may change.
    let before = snapshot_without_runs(&p.store());
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
    assert_eq!(
        snapshot_without_runs(&p.store()),
        before,
        "the store changed"
    );
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
    assert!(
        !r.stderr.chars().any(|c| c.is_control() && c != '\n'),
        "a raw control character reached stderr: {:?}",
        r.stderr
    );
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
    assert!(
        e.contains("must be an integer between 0 and") && e.contains("\"lots\""),
        "{e}"
    );
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
    // `extends:`: unknown names, cycles, and a bad override inherited from the variant that wrote it.
    let e = spec_error(&format!(
        "{BASE}variants:\n  fast:\n    split: {{seed: 1}}\n  v:\n    extends: fats\n"
    ));
    assert!(
        e.contains("pipeline.yaml:13:5: variants.v.extends: extends an unknown variant `fats` (did you mean `fast`?)"),
        "{e}"
    );
    let e = spec_error(&format!(
        "{BASE}variants:\n  a:\n    extends: [b]\n  b:\n    extends: a\n"
    ));
    assert!(
        e.contains("variants extend each other in a cycle: a → b → a"),
        "{e}"
    );
    let e = spec_error(&format!(
        "{BASE}variants:\n  a:\n    split: {{sed: 1}}\n  b:\n    extends: a\n"
    ));
    assert!(
        e.contains("pipeline.yaml:11:5: variants.a.split.sed: unknown param `sed`"),
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
            .contains("--set split.nope=1: stage `split` has no param `nope` (params: "),
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

/// `--variant default` is the pipeline as written in every command that takes `--variant`, as
/// `compare default quick` already says (`status` and `artifact` refused it).
#[test]
fn variant_default_is_the_pipeline_as_written() {
    let p = fixture_project(&TRAIN, &VAL, &TEST, 72);
    p.run(&["run", "split"]).assert_ok();
    let r = p.run(&["status", "--variant", "default"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.stdout, p.run(&["status"]).stdout);
    let r = p.run(&["artifact", "--variant", "default", "split", "splits"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.stdout, p.run(&["artifact", "split", "splits"]).stdout);
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

// ---------------------------------------------------------------------------------------------
// The malformed-input corpus: every case is generated here, written through the real npz writer
// where it is a data file, and must give one error line naming the file or YAML location, a
// non-zero exit, no panic and an unchanged store.

/// The members of one fixture file, as the real writer lays them out: `arr_0 … arr_{n-1}` data,
/// then the timestamps.
fn members(ar: u32, which: usize) -> Vec<(String, Vec<u8>)> {
    let s = synthetic_ar(ar, 72, 0);
    let data: Vec<&Vec<f64>> = match which {
        0 => vec![&s.ic],
        1 => vec![&s.flux],
        _ => s.power.iter().collect(),
    };
    let mut m: Vec<(String, Vec<u8>)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("arr_{i}.npy"), npy::write_f64(&[81, 72], v)))
        .collect();
    m.push((format!("arr_{}.npy", data.len()), times_member(&s.times)));
    m
}

fn times_member(times: &[i64]) -> Vec<u8> {
    let mut m = npy::header_bytes("|O", &[times.len()]);
    m.extend(pickle::encode_datetime_array(times));
    m
}

fn put(p: &Project, ar: u32, which: usize, members: &[(String, Vec<u8>)]) {
    std::fs::write(file(p, ar, which), zip::write_stored(members)).unwrap();
}

/// Rewrites all three files of an AR from a changed series.
fn put_series(p: &Project, s: &magpipe_stages::solared::ArSeries) {
    solared::write_ar(&p.data(), s).unwrap();
}

fn deflated(name: &str, payload: &[u8], size: u32) -> Vec<u8> {
    zip::write_deflated(name, payload, u64::from(size))
}

type Damage = fn(&Project);

const DATA_CASES: &[(&str, Damage, &[&str])] = &[
    (
        "zero-length npz",
        |p| std::fs::write(file(p, 11002, 0), b"").unwrap(),
        &["mean_int11002_flat.npz"],
    ),
    (
        "npz cut inside its first header",
        |p| {
            let b = std::fs::read(file(p, 11002, 1)).unwrap();
            std::fs::write(file(p, 11002, 1), &b[..30]).unwrap();
        },
        &["mean_mag11002_flat.npz"],
    ),
    (
        "not a zip at all",
        |p| std::fs::write(file(p, 11003, 2), "AR,tile\n11003,1\n").unwrap(),
        &["mean_pmdop11003_flat.npz"],
    ),
    (
        "complex data",
        |p| {
            let mut m = members(11001, 0);
            let mut b = npy::header_bytes("<c16", &[81, 72]);
            b.extend(vec![0u8; 81 * 72 * 16]);
            m[0].1 = b;
            put(p, 11001, 0, &m);
        },
        &["mean_int11001_flat.npz", "arr_0", "<c16"],
    ),
    (
        "1-D data array",
        |p| {
            let mut m = members(11001, 1);
            let s = synthetic_ar(11001, 72, 0);
            m[0].1 = npy::write_f64(&[81 * 72], &s.flux);
            put(p, 11001, 1, &m);
        },
        &["mean_mag11001_flat.npz", "arr_0", "[5832]"],
    ),
    (
        "an npy header with a key numpy does not know",
        |p| {
            let mut m = members(11004, 0);
            let mut b = npy::header_bytes("<f8", &[81, 72]);
            let at = b.windows(3).position(|w| w == b"}  ").unwrap();
            b[at..at + 12].copy_from_slice(b"'x': 1, }   ");
            b.extend(vec![0u8; 81 * 72 * 8]);
            m[0].1 = b;
            put(p, 11004, 0, &m);
        },
        &["mean_int11004_flat.npz", "arr_0", "keys"],
    ),
    (
        "payload shorter than its header says",
        |p| {
            let mut m = members(11004, 2);
            let n = m[2].1.len();
            m[2].1.truncate(n - 800);
            put(p, 11004, 2, &m);
        },
        &["mean_pmdop11004_flat.npz", "arr_2"],
    ),
    (
        "timestamps stored as floats",
        |p| {
            let mut m = members(11005, 0);
            m[1].1 = npy::write_f64(&[72], &[0.0; 72]);
            put(p, 11005, 0, &m);
        },
        &["mean_int11005_flat.npz", "arr_1", "<f8"],
    ),
    (
        "timestamps member missing",
        |p| {
            let mut m = members(11005, 1);
            m.pop();
            put(p, 11005, 1, &m);
        },
        &["mean_mag11005_flat.npz", "arr_1.npy"],
    ),
    (
        "one file an hour shorter than the others",
        |p| {
            let s = synthetic_ar(11002, 71, 0);
            let m = vec![
                ("arr_0.npy".to_string(), npy::write_f64(&[81, 71], &s.flux)),
                ("arr_1.npy".to_string(), times_member(&s.times)),
            ];
            put(p, 11002, 1, &m);
        },
        &["AR11002", "mean_mag", "index 71"],
    ),
    (
        "timestamps that go back in time",
        |p| {
            let mut s = synthetic_ar(11003, 72, 2);
            s.times.swap(20, 21);
            put_series(p, &s);
        },
        &["AR11003", "not increasing", "index 21"],
    ),
    (
        "an infinite flux value",
        |p| {
            let mut s = synthetic_ar(11001, 72, 0);
            s.flux[40 * 72 + 5] = f64::INFINITY;
            put_series(p, &s);
        },
        &["AR11001", "|B|", "infinite", "tile 40 hour 5"],
    ),
    (
        "NaN everywhere",
        |p| {
            let mut s = synthetic_ar(11004, 72, 3);
            for c in [&mut s.ic, &mut s.flux]
                .into_iter()
                .chain(s.power.iter_mut())
            {
                c.iter_mut().for_each(|x| *x = f64::NAN);
            }
            put_series(p, &s);
        },
        &["AR11004", "Ic is NaN at every hour of tile 0"],
    ),
    (
        "zip bomb: 64 MiB of zeros declared as 100 bytes",
        |p| {
            std::fs::write(
                file(p, 11003, 0),
                deflated("arr_1.npy", &vec![0u8; 64 << 20], 100),
            )
            .unwrap()
        },
        &["mean_int11003_flat.npz", "the directory says 100"],
    ),
    (
        "member declaring 4 GiB",
        |p| {
            std::fs::write(
                file(p, 11003, 1),
                deflated("arr_1.npy", &[0u8; 10], u32::MAX - 1),
            )
            .unwrap()
        },
        &["mean_mag11003_flat.npz", "zip bomb"],
    ),
    (
        "CRC mismatch",
        |p| {
            let f = file(p, 11005, 2);
            let mut b = std::fs::read(&f).unwrap();
            b[4000] ^= 0x40;
            std::fs::write(&f, b).unwrap();
        },
        &["mean_pmdop11005_flat.npz", "CRC"],
    ),
    (
        "pickle calling os.system",
        |p| {
            let mut m = members(11001, 0);
            let mut b = npy::header_bytes("|O", &[72]);
            b.extend_from_slice(b"\x80\x03cos\nsystem\nX\x05\x00\x00\x00touch\x85R.");
            m[1].1 = b;
            put(p, 11001, 0, &m);
        },
        &["mean_int11001_flat.npz", "os.system"],
    ),
    (
        "pickle nested 30,000 deep",
        |p| {
            let mut m = members(11002, 0);
            let mut b = npy::header_bytes("|O", &[72]);
            b.extend_from_slice(b"\x80\x02K\x00");
            b.extend(std::iter::repeat_n(0x85u8, 30_000));
            b.push(b'.');
            m[1].1 = b;
            put(p, 11002, 0, &m);
        },
        &["mean_int11002_flat.npz", "nested"],
    ),
    (
        "a file that is a symlink to itself",
        |p| {
            let f = file(p, 11004, 1);
            std::fs::remove_file(&f).unwrap();
            std::os::unix::fs::symlink(&f, &f).unwrap();
        },
        &["mean_mag11004_flat.npz", "symbolic links"],
    ),
    (
        "an AR folder that is a symlink loop",
        |p| {
            let d = p.data().join("AR11005");
            std::fs::remove_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(p.data().join("AR11005"), &d).unwrap();
        },
        &["AR11005", "symbolic links"],
    ),
    (
        "an npz that is a folder",
        |p| {
            let f = file(p, 11001, 2);
            std::fs::remove_file(&f).unwrap();
            std::fs::create_dir(&f).unwrap();
        },
        &["mean_pmdop11001_flat.npz"],
    ),
    (
        "a directory entry pointing at another member's local header",
        |p| {
            // numpy refuses it ("File name in directory … and header … differ"); a reader
            // trusting the directory alone would read arr_0's data as the timestamps' or, in
            // mean_pmdop, P2-3 as P3-4.
            let f = file(p, 11003, 2);
            let mut b = std::fs::read(&f).unwrap();
            let cd = cd_entries(&b);
            let first = u32::from_le_bytes(b[cd[0] + 42..cd[0] + 46].try_into().unwrap());
            b[cd[1] + 42..cd[1] + 46].copy_from_slice(&first.to_le_bytes());
            std::fs::write(&f, b).unwrap();
        },
        &["mean_pmdop11003_flat.npz", "arr_1.npy", "differ"],
    ),
    (
        "a member appended again under the same name",
        |p| {
            let mut m = members(11002, 2);
            let s = synthetic_ar(11002, 72, 5);
            m.push(("arr_0.npy".into(), npy::write_f64(&[81, 72], &s.ic)));
            put(p, 11002, 2, &m);
        },
        &["mean_pmdop11002_flat.npz", "arr_0.npy appears twice"],
    ),
    (
        "a local header whose CRC disagrees with the directory",
        |p| {
            let f = file(p, 11001, 1);
            let mut b = std::fs::read(&f).unwrap();
            b[14] ^= 0xFF;
            std::fs::write(&f, b).unwrap();
        },
        &[
            "mean_mag11001_flat.npz",
            "arr_0.npy",
            "CRC-32",
            "local header",
        ],
    ),
    (
        "a bzip2 member",
        |p| {
            let f = file(p, 11004, 1);
            let mut b = std::fs::read(&f).unwrap();
            b[8..10].copy_from_slice(&12u16.to_le_bytes());
            let cd = cd_entries(&b);
            b[cd[0] + 10..cd[0] + 12].copy_from_slice(&12u16.to_le_bytes());
            std::fs::write(&f, b).unwrap();
        },
        &["mean_mag11004_flat.npz", "arr_0.npy", "bzip2"],
    ),
    (
        "two folders for one AR",
        |p| {
            let d = p.data();
            std::fs::create_dir(d.join("AR011002")).unwrap();
            for f in solared::ar_files(&d, 11002) {
                std::fs::copy(&f, d.join("AR011002").join(f.file_name().unwrap())).unwrap();
            }
        },
        &["AR011002", "AR11002", "two folders"],
    ),
    (
        "an AR with no hours",
        |p| {
            let s = synthetic_ar(11005, 72, 0).first_hours(0);
            put_series(p, &s);
        },
        &["mean_int11005_flat.npz", "no hours"],
    ),
];

/// The offsets of the central directory entries of a ZIP archive.
fn cd_entries(b: &[u8]) -> Vec<usize> {
    (0..b.len() - 4)
        .filter(|&i| b[i..i + 4] == [0x50, 0x4b, 0x01, 0x02])
        .collect()
}

#[test]
fn a_corpus_of_malformed_data_files_each_fails_cleanly() {
    let mut messages = vec![];
    let mut broken = vec![];
    for (name, damage, needles) in DATA_CASES {
        let p = ready_project();
        damage(&p);
        match std::panic::catch_unwind(|| fails_cleanly(&p, needles)) {
            Ok(r) => messages.push(format!("{name}: {}", r.error_lines()[0])),
            Err(_) => broken.push(*name),
        }
    }
    eprintln!("{}", messages.join("\n"));
    assert!(
        broken.is_empty(),
        "cases that did not fail cleanly: {broken:?}"
    );
    assert!(DATA_CASES.len() >= 20);
}

/// `BASE` plus a `window` stage with these params, for absurd values.
fn with_window(params: &str) -> String {
    format!(
        "{BASE}  scale:\n    kind: minmax_scale\n    inputs: {{series: ingest.series, splits: split.splits}}\n  window:\n    kind: window\n    inputs: {{train: scale.train, val: scale.val}}\n    params: {{{params}}}\n"
    )
}

fn yaml_cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let nested = format!(
        "version: 1\nstages: {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let mut laughs = String::from("version: 1\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        laughs.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    laughs.push_str("stages: *a11\n");
    vec![
        (
            "a param given twice",
            format!("{BASE}    params:\n      seed: 1\n      seed: 2\n"),
            vec!["pipeline.yaml:", "duplicate", "seed"],
        ),
        (
            "a negative window",
            with_window("input: -5"),
            vec!["stages.window.params.input", "-5"],
        ),
        (
            "a zero horizon",
            with_window("horizon: 0"),
            vec!["stages.window.params.horizon"],
        ),
        (
            "a NaN learning rate",
            format!(
                "{}  train:\n    kind: train\n    inputs: {{train: window.train, val: window.val}}\n    params: {{lr: .nan}}\n",
                with_window("input: 10")
            ),
            vec!["stages.train.params.lr", "not a finite number"],
        ),
        (
            "zero epochs",
            format!(
                "{}  train:\n    kind: train\n    inputs: {{train: window.train, val: window.val}}\n    params: {{epochs: 0}}\n",
                with_window("input: 10")
            ),
            vec!["stages.train.params.epochs"],
        ),
        ("YAML nested 5,000 deep", nested, vec!["pipeline.yaml"]),
        (
            "a billion laughs of aliases",
            laughs,
            vec!["pipeline.yaml", "invalid YAML"],
        ),
        (
            "a stage name that climbs out of the store",
            BASE.replace("  split:\n", "  ../../escape:\n"),
            vec!["stages.../../escape", "stage names use letters"],
        ),
        (
            "a variant name with a slash",
            format!("{BASE}variants:\n  ../up:\n    split:\n      seed: 3\n"),
            vec!["variants.../up", "variant names use letters"],
        ),
        (
            "an unsupported version",
            BASE.replace("version: 1", "version: 2"),
            vec!["pipeline.yaml", "version"],
        ),
        ("an empty file", String::new(), vec!["pipeline.yaml"]),
        (
            "an unknown top-level key",
            format!("{BASE}stagez: {{}}\n"),
            vec!["pipeline.yaml", "stagez"],
        ),
        (
            "stages as a list",
            "version: 1\nstages: [ingest, split]\n".into(),
            vec!["pipeline.yaml", "stages"],
        ),
        (
            "a kind that is a number",
            BASE.replace("kind: split_ars", "kind: 12"),
            vec!["stages.split.kind"],
        ),
        (
            "a float beyond f64",
            format!(
                "{BASE}  scale:\n    kind: minmax_scale\n    inputs: {{series: ingest.series, splits: split.splits}}\n    params:\n      nan_fill: 1e400\n"
            ),
            vec![
                "pipeline.yaml:13:",
                "stages.scale.params.nan_fill",
                "1e400 is out of range for a float",
            ],
        ),
        (
            "an integer beyond 64 bits",
            with_window("input: 18446744073709551616"),
            vec![
                "pipeline.yaml:",
                "stages.window.params.input",
                "18446744073709551616 is out of range",
            ],
        ),
        (
            "a fractional window",
            with_window("input: 2.5"),
            vec![
                "stages.window.params.input",
                "2.5 must be an integer between",
            ],
        ),
        (
            "a NUL in a stage name",
            BASE.replace("  split:\n", "  \"spl\\0it\":\n"),
            vec!["pipeline.yaml:5:3:", "stages.spl\\u{0}it", "name"],
        ),
    ]
}

#[test]
fn a_corpus_of_malformed_pipelines_each_fails_cleanly() {
    let mut messages = vec![];
    let mut broken = vec![];
    for (name, yaml, needles) in yaml_cases() {
        let r = std::panic::catch_unwind(|| {
            let e = spec_error(&yaml);
            for n in &needles {
                assert!(e.contains(n), "{name}: {n:?} not in: {e}");
            }
            e
        });
        match r {
            Ok(e) => messages.push(format!("{name}: {e}")),
            Err(_) => broken.push(name),
        }
    }
    // Not UTF-8 at all.
    let p = Project::new("");
    std::fs::write(
        p.path().join("pipeline.yaml"),
        b"version: 1\nstages: \xff\xfe\n",
    )
    .unwrap();
    let r = p.run(&["run"]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(r.error_lines()[0].contains("pipeline.yaml"), "{}", r.stderr);
    eprintln!("{}", messages.join("\n"));
    assert!(
        broken.is_empty(),
        "cases that did not fail cleanly: {broken:?}"
    );
}

#[test]
fn a_horizon_longer_than_every_series_fails_at_the_window_stage() {
    let p = ready_project();
    p.set_pipeline(&p.pipeline().replace("horizon: 6", "horizon: 500"));
    fails_cleanly(
        &p,
        &["stage `window`", "every series is shorter than the 539 h"],
    );
}

#[test]
fn a_predictor_left_out_of_one_list_is_a_plan_error_naming_it() {
    let real = std::fs::read_to_string(common::repo().join("pipeline.yaml")).unwrap();
    let all = "persistence, linear_trend, zero_slope, ridge]";
    assert_eq!(real.matches(all).count(), 3, "the pipeline's lists changed");
    let without_ridge_at = |at: usize| {
        format!(
            "{}persistence, linear_trend, zero_slope]{}",
            &real[..at],
            &real[at + all.len()..]
        )
    };
    // Left out of evaluate (it used to be dropped from the skill scores without a word).
    let e = spec_error(&without_ridge_at(real.rfind(all).unwrap()));
    assert!(
        e.contains("stages.evaluate.inputs.predictors: `ridge` is in `alarms`'s `predictors` but missing here"),
        "{e}"
    );
    // Left out of alarms (it used to fail at run time): the tables name it.
    let e = spec_error(&without_ridge_at(real.find(all).unwrap()));
    assert!(
        e.contains("stages.tables.inputs.predictors: `ridge` is listed here but not in `alarms`'s `predictors`"),
        "{e}"
    );
    // A figure of some of the scored models is fine; of one no list scores, not.
    let text = real.replace(all, "persistence, linear_trend, zero_slope]");
    let e = spec_error(&text);
    assert!(
        e.contains("stages.figures.inputs.models: `ridge` is listed here but not in `alarms`'s `predictors`"),
        "{e}"
    );
}
