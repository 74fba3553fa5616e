//! Stores made before a refactoring stay valid: the keys of the default pipeline's data stages
//! (and the reference predictors on them) on the real SolARED files, and of a small trained chain
//! on a fixture, are the ones recorded here (taken from the code before the engine was split off,
//! commit fdc2332). A key changes only when a kind's version is bumped on purpose, and then this
//! table changes in the same commit with the reason in docs/src/guide/store.md.

mod common;

use common::{Project, results_project};

const GOLDEN: [(&str, &str); 8] = [
    (
        "ingest",
        "af5bb323a921895d70e1e2a5bf64c7543be0edd7a49d2ba7b584171c06f6a77c",
    ),
    (
        "split",
        "9b96fcf60ba933e13479963b7d6eb8170596234e24e71b5df7d7d9c3e0a57f53",
    ),
    (
        "scale",
        "369ac289d72b71e91e1d020b6c0967144e8d77536dbb7816bc0a92ef4ced274d",
    ),
    (
        "window",
        "ffaab350e1e84a39dffd7015b0371df1c12147e0fc40e88659328e50a7fcbfa3",
    ),
    (
        "protocol",
        "88440a4f28a9639b70c82db8af2f20c49565f1dec432fb2405a2eada14bdd36f",
    ),
    (
        "persistence",
        "111374c59922bf3902f3f18181a099a043f6c0671b8abf349fcedc393c9a99b2",
    ),
    (
        "linear_trend",
        "369da9de48075b4419dedda018cbbe776d140a8bc769446d7ee34dce498fb0c4",
    ),
    (
        "zero_slope",
        "9494a4109c9505129073865cb2687677c13fde32a7d7581cfc81005bb54c436b",
    ),
];

/// The fixture's trained chain on libtorch (`kernels: native`, the default until magpipe's own
/// engine became it): the two trainings and everything before them. What follows a training
/// reads its model's bytes, which are byte-reproducible on one machine only (libtorch's CPU
/// kernels differ between processors), so those keys are not held here; `tables` reads the
/// fixture's published table from its temporary folder, a path in its params.
const GOLDEN_CHAIN: [(&str, &str); 9] = [
    (
        "ingest",
        "ab0deebd584ad35bdea569f9cab438cbb06bb6faf9d3332be964cf27291effb8",
    ),
    (
        "split",
        "4febeb60c939fb04662fb0fd8fe75da58594370df4937a4c540fa55369fbc437",
    ),
    (
        "scale",
        "c79f02b07c72e9ec743bc8bc69ecc197be90fafbafb9eae90d2748679b135abc",
    ),
    (
        "window",
        "62acecee96745e41e543cb5af8524e49da15765a3f9248abfa7225c89eb4960f",
    ),
    (
        "protocol",
        "f51dd0785c513fd019fed656d6a2ef9f671f36662fe13376deeffba887e66954",
    ),
    (
        "train",
        "37f96d742b0e1bfc2c4c2d0655fd0cf5db47a487841b7e04c7f6fd3b3bf0445f",
    ),
    (
        "train_encdec",
        "7156b0dd878d584131f1365f914941d0db45566d92846f6b90adbf4155abd060",
    ),
    (
        "persistence",
        "287817f7a76fd7d2adede274a49f5040ce7a9b601b4ce5c2d829290149e0486b",
    ),
    (
        "trend",
        "370875f9e646ade7601dcd81c52f11f1c6d5f0feb211b6e69028f5c2ad27b240",
    ),
];

/// The keys of the chain's `train` and `train_encdec` on the default kernels (`auto`, settled to
/// `portable` on the CPU), taken when that default was introduced (issue 39).
const GOLDEN_PORTABLE_TRAIN: (&str, &str) = (
    "d2faae56eaf1042e99e4a6380cda51a46789199288634cd84061959f58be69aa",
    "fd465a1d4dd98ff6199fda8c5a0c569efc523232bb98d720d1677a6f7eb71bf1",
);

/// Runs `stages` with `set` (`--set` arguments) and lists every one whose key is not the golden
/// one.
fn changed_keys(p: &Project, golden: &[(&str, &str)], set: &[&str]) -> Vec<String> {
    let mut args = vec!["run"];
    args.extend(set);
    args.extend(golden.iter().map(|(s, _)| *s));
    p.run(&args).assert_ok();
    let mut status = vec!["status", "--format", "json"];
    status.extend(set);
    let r = p.run(&status);
    r.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut changed = vec![];
    for &(stage, want) in golden {
        let row = v
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == stage)
            .unwrap_or_else(|| panic!("no stage {stage}"));
        assert_eq!(row["state"], "fresh", "{stage}: {row}");
        if row["key"] != want {
            changed.push(format!("{stage}: {} (was {want})", row["key"]));
        }
    }
    changed
}

#[test]
fn the_default_pipelines_data_stage_keys_are_unchanged() {
    let changed = changed_keys(&Project::real(), &GOLDEN, &[]);
    assert!(changed.is_empty(), "keys changed: {changed:#?}");
}

/// Native results keep the keys they had before magpipe's own engine became the default: a
/// store filled then serves `--variant native` (or `kernels: native`) today.
#[test]
fn a_small_trained_chains_native_keys_are_unchanged() {
    let native = [
        "--set",
        "train.kernels=native",
        "--set",
        "train_encdec.kernels=native",
    ];
    let changed = changed_keys(&results_project(), &GOLDEN_CHAIN, &native);
    assert!(changed.is_empty(), "keys changed: {changed:#?}");
}

/// The same chain on the default kernels (`auto`: magpipe's own engine on the CPU), whose keys
/// name the engine and its numerics version, never libtorch or the machine: these hold on every
/// CPU and with or without libtorch installed.
#[test]
fn a_small_trained_chains_default_keys_are_unchanged() {
    let mut golden = GOLDEN_CHAIN;
    golden[5].1 = GOLDEN_PORTABLE_TRAIN.0;
    golden[6].1 = GOLDEN_PORTABLE_TRAIN.1;
    let changed = changed_keys(&results_project(), &golden, &[]);
    assert!(changed.is_empty(), "keys changed: {changed:#?}");
}
