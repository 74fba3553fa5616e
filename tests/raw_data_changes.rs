//! Editing a raw file reruns ingest and everything whose inputs change; status says which file.

mod common;

use common::{fixture_project, synthetic_ar};
use magpipe_stages::solared;

#[test]
fn an_edited_raw_file_is_named_and_rerun() {
    let p = fixture_project(&[14001, 14002], &[14003], &[14004], 80);
    p.run(&["run"]).assert_ok();
    // Different values for the test AR only: ingest and scale rerun. Its inventory line is the
    // same (same hours, same NaN pattern), so split stays cached, and the train/val tables and
    // so the windows are byte-identical.
    solared::write_ar(&p.data(), &synthetic_ar(14004, 80, 99)).unwrap();
    let st = p.run(&["status", "--explain"]);
    st.assert_ok();
    assert!(
        st.stdout.contains("raw files changed: AR14004/"),
        "{}",
        st.stdout
    );
    // The same reasons, typed, for tools.
    let js = p.run(&["status", "--format", "json"]);
    js.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&js.stdout).unwrap();
    let ingest = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "ingest")
        .unwrap();
    assert_eq!(ingest["state"], "stale");
    let raw = &ingest["reasons"][0];
    assert_eq!(raw["reason"], "raw_files", "{raw}");
    assert_eq!(raw["change"], "changed");
    assert_eq!(raw["files"].as_array().unwrap().len(), 3, "{raw}");
    assert!(
        raw["files"][0].as_str().unwrap().starts_with("AR14004/"),
        "{raw}"
    );
    assert!(
        raw["text"]
            .as_str()
            .unwrap()
            .starts_with("raw files changed: AR14004/")
    );
    let split = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "split")
        .unwrap();
    assert_eq!(split["reasons"][0]["reason"], "upstream_stale");
    let r = p.run(&["run"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["ingest", "scale"]);
    assert_eq!(r.stages("stage_cached"), ["split", "window"]);
    // Moving the data folder changes no key: its files' names and hashes are the same.
    let moved = p.path().join("moved");
    std::fs::rename(p.data(), &moved).unwrap();
    let again = p.cmd(&["run"]).env("SOLARED_DIR", &moved).output().unwrap();
    let again = common::Run::from(again);
    again.assert_ok();
    assert_eq!(again.stages("stage_cached").len(), 4, "{}", again.stderr);
}
