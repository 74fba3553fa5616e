//! Stores made before a refactoring stay valid: the keys of the default pipeline's data stages
//! (and the reference predictors on them) on the real SolARED files are the ones recorded here.
//! A key changes only when a kind's version is bumped on purpose, and then this table changes in
//! the same commit with the reason in the README.

mod common;

use common::Project;

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

#[test]
fn the_default_pipelines_data_stage_keys_are_unchanged() {
    let p = Project::real();
    let stages: Vec<&str> = GOLDEN.iter().map(|(s, _)| *s).collect();
    let mut args = vec!["run"];
    args.extend(&stages);
    p.run(&args).assert_ok();
    let r = p.run(&["status", "--format", "json"]);
    r.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let mut changed = vec![];
    for (stage, want) in GOLDEN {
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
    assert!(changed.is_empty(), "keys changed: {changed:#?}");
}
