//! The study's ground truth on the real data, no model needed: the observed side of the
//! emergence criterion must flag exactly the scored tiles that the published Table 2 scores as
//! alarms (SEMANTICS.md §5, §13), and the test protocol must resolve to the published geometry.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Project;

/// The repository's pipeline with the alarms scored on the reference predictors only.
fn baselines_only() -> Project {
    Project::real_scoring("zero_slope")
}

fn read(p: &Project, stage: &str, output: &str) -> String {
    let r = p.run(&["artifact", stage, output]);
    r.assert_ok();
    std::fs::read_to_string(r.stdout.trim()).unwrap()
}

#[test]
fn observed_emergence_matches_the_published_table_2_tiles() {
    let p = baselines_only();
    let r = p.run(&["run", "alarms"]);
    r.assert_ok();

    // Paper tiles with an observed flux increase: Table 2's alarm tiles, nothing else.
    let expected: BTreeMap<&str, BTreeSet<u32>> = [
        ("AR11698", [49, 51, 52].into()),
        ("AR11726", [41, 42, 43, 44, 45].into()),
        ("AR13165", [32, 33].into()),
        ("AR13179", [40, 41, 42].into()),
        ("AR13183", [42].into()),
    ]
    .into();
    let csv = read(&p, "alarms", "table2");
    let mut got: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut first_emerging: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (ar, tile, q_obs) = (f[0].to_string(), f[1], f[4]);
        got.entry(ar.clone()).or_default();
        let Ok(tile) = tile.parse::<u32>() else {
            continue;
        };
        if let Ok(q) = q_obs.parse::<u32>() {
            got.get_mut(&ar).unwrap().insert(tile);
            let e = first_emerging.entry(ar).or_insert((q, tile));
            if q < e.0 {
                *e = (q, tile);
            }
        }
    }
    let got: BTreeMap<&str, BTreeSet<u32>> =
        got.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    assert_eq!(got, expected);
    // The first-emerging tiles of SEMANTICS.md §13.
    let firsts: BTreeMap<&str, u32> = first_emerging
        .iter()
        .map(|(k, v)| (k.as_str(), v.1))
        .collect();
    assert_eq!(
        firsts,
        [
            ("AR11698", 49),
            ("AR11726", 41),
            ("AR13165", 33),
            ("AR13179", 41),
            ("AR13183", 42)
        ]
        .into()
    );

    // The primary here is the zero-slope predictor: it never forecasts an emergence, so every
    // observed tile is a miss and every other tile is quiet.
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let want = if f[4].is_empty() { "Quiet" } else { "NO PRED" };
        assert_eq!(f[6], want, "{line}");
    }
}

#[test]
fn the_protocol_resolves_to_the_published_geometry() {
    let p = baselines_only();
    p.run(&["run", "protocol"]).assert_ok();
    let proto: serde_json::Value = serde_json::from_str(&read(&p, "protocol", "protocol")).unwrap();
    let rows: Vec<(u64, u64, u64, u64, String)> = proto["ars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["ar"].as_u64().unwrap(),
                g["windows"].as_u64().unwrap(),
                g["last_known"].as_u64().unwrap(),
                g["span"].as_u64().unwrap(),
                g["first_prediction_at"].as_str().unwrap()[..16].to_string(),
            )
        })
        .collect();
    // SEMANTICS.md §5: nwin, lk, L and where the first prediction is plotted.
    assert_eq!(
        rows,
        [
            (11698, 134, 105, 134, "2013-03-12 03:59".to_string()),
            (11726, 150, 81, 126, "2013-04-18 23:59".to_string()),
            (13165, 134, 105, 122, "2022-12-10 14:59".to_string()),
            (13179, 134, 105, 122, "2022-12-28 12:59".to_string()),
            (13183, 134, 105, 122, "2023-01-04 19:59".to_string()),
        ]
    );
    assert_eq!(proto["target_offset"], 0);
    assert_eq!(proto["train_input"], 110);
}

#[test]
fn a_protocol_that_does_not_fit_the_data_is_refused_with_its_ar() {
    let p = baselines_only();
    p.set_pipeline(&p.pipeline().replace(
        "{ar: 11726, k0: 37, input: 72, history: 50, trim: -24, metric_start: 50}",
        "{ar: 11726, k0: 37, input: 72, history: 90, trim: -24, metric_start: 90}",
    ));
    let r = p.run(&["run", "protocol"]);
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr
            .contains("AR11726 (T=232): history 90 reaches before the first hour"),
        "{}",
        r.stderr
    );
    // An AR that is not a test AR of the split.
    p.set_pipeline(&p.pipeline().replace(
        "{ar: 11726, k0: 37, input: 72, history: 90",
        "{ar: 11130, k0: 37, input: 72, history: 50",
    ));
    let r = p.run(&["run", "protocol"]);
    assert!(
        r.stderr
            .contains("AR11130 is in the test protocol but not among the test ARs"),
        "{}",
        r.stderr
    );
}
