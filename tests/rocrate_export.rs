//! `magpipe export crate`: the provenance of Table 2's chain as a Workflow Run RO-Crate that the
//! RO-Crate community's own validator (roc-validator, Provenance Run Crate 0.5, RECOMMENDED)
//! accepts, run offline from a private cache (tests/support/rocrate/README.md).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Project, results_project, validate_crate as validate};
use serde_json::Value;

use common::CRATE_META as META;

fn export(p: &Project, extra: &[&str]) -> (std::path::PathBuf, common::Run) {
    let dir = p.path().join("crate");
    let mut args = vec!["export", "crate", "-o", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    (dir.clone(), p.run(&args))
}

/// Exports the crate of `tables` as a zip named `name` in the project, with the test metadata.
fn export_zip(p: &Project, name: &str) -> (std::path::PathBuf, common::Run) {
    let zip = p.path().join(name);
    let mut args = vec!["export", "crate", "--zip", zip.to_str().unwrap()];
    args.extend_from_slice(&META);
    (zip.clone(), p.run(&args))
}

fn metadata(dir: &Path) -> Vec<Value> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("ro-crate-metadata.json")).unwrap())
            .unwrap();
    v["@graph"].as_array().unwrap().clone()
}

fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn the_tables_crate_passes_the_standard_validator_and_its_hashes_hold() {
    let p = results_project();
    p.run(&["run"]).assert_ok();
    let (dir, r) = export(&p, &META);
    r.assert_ok();
    let (ok, issues) = validate(&dir);
    assert!(ok, "the validator refused the crate:\n{issues}");

    let graph = metadata(&dir);
    // One CreateAction per stage of the chain, plus the whole run.
    let lineage: Value =
        serde_json::from_str(&p.run(&["lineage", "tables", "--format", "json"]).stdout).unwrap();
    let stages = lineage["stages"].as_array().unwrap().len();
    let actions = graph
        .iter()
        .filter(|e| e["@type"] == "CreateAction")
        .count();
    assert_eq!(actions, stages + 1);
    let root = graph.iter().find(|e| e["@id"] == "./").unwrap();
    assert_eq!(
        root["identifier"],
        format!(
            "magpipe-lineage:{}",
            lineage["lineage_hash"].as_str().unwrap()
        )
    );
    // Every file the crate lists is there with the sha256 and size it states, which is what a
    // reader without magpipe checks.
    let mut files = 0;
    for e in graph.iter().filter(|e| {
        e["@type"] == "File"
            || e["@type"]
                .as_array()
                .is_some_and(|t| t.contains(&Value::from("File")))
    }) {
        let path = dir.join(e["@id"].as_str().unwrap());
        assert_eq!(e["sha256"], sha256(&path), "{}", path.display());
        assert_eq!(
            e["contentSize"],
            std::fs::metadata(&path).unwrap().len().to_string()
        );
        files += 1;
    }
    assert!(files > stages, "{files} files for {stages} stages");
    // Table 2 is in it, byte for byte.
    let table2 = p.run(&["artifact", "alarms", "table2"]);
    assert_eq!(
        std::fs::read(table2.stdout.trim()).unwrap(),
        std::fs::read(dir.join("outputs/alarms/table2.csv")).unwrap()
    );
}

#[test]
fn a_crate_without_a_licence_is_refused_and_nothing_is_written() {
    let p = results_project();
    p.run(&["run"]).assert_ok();
    let (dir, r) = export(&p, &[]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("a crate needs a licence"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(!dir.exists());
    // Nor over a folder that holds something.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    let (_, r) = export(&p, &META);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("is not empty"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn the_config_section_data_and_models_options_give_valid_crates() {
    let p = results_project();
    p.run(&["run"]).assert_ok();
    std::fs::create_dir_all(p.path().join(".magpipe")).unwrap();
    std::fs::write(
        p.path().join(".magpipe/config.yaml"),
        "export:\n  license: CC0-1.0\n  authors: [{name: A. Researcher}]\n  \
         publisher: {name: Example Lab, url: 'https://example.org/'}\n  \
         url: https://example.org/magpipe\n",
    )
    .unwrap();
    let (dir, r) = export(&p, &["--include-data", "--no-models"]);
    r.assert_ok();
    let (ok, issues) = validate(&dir);
    assert!(ok, "the validator refused the crate:\n{issues}");
    let graph = metadata(&dir);
    let root = graph.iter().find(|e| e["@id"] == "./").unwrap();
    assert_eq!(root["license"]["@id"], "https://spdx.org/licenses/CC0-1.0");
    // Raw files copied in; no trained weights.
    assert!(dir.join("data").read_dir().unwrap().next().is_some());
    assert!(!dir.join("outputs/train/model.safetensors").exists());
    assert!(graph.iter().all(|e| {
        !e["@id"]
            .as_str()
            .unwrap_or_default()
            .ends_with("model.safetensors")
    }));
}

fn verify(p: &Project, dir: &Path) -> common::Run {
    p.run(&["verify", "--crate", dir.to_str().unwrap()])
}

#[test]
fn verify_crate_names_a_changed_byte_a_missing_file_and_a_broken_chain() {
    let p = results_project();
    p.run(&["run"]).assert_ok();
    let (dir, r) = export(&p, &META);
    r.assert_ok();
    let v = verify(&p, &dir);
    v.assert_ok();
    assert!(
        v.stdout.contains("files") && v.stdout.trim_end().ends_with(": ok"),
        "{}",
        v.stdout
    );

    // One byte of Table 2 flipped: named, with both hashes, exit 1.
    let t2 = dir.join("outputs/alarms/table2.csv");
    let mut b = std::fs::read(&t2).unwrap();
    b[0] ^= 1;
    std::fs::write(&t2, &b).unwrap();
    let v = verify(&p, &dir);
    assert_eq!(v.code(), Some(1), "{}", v.stdout);
    assert!(
        v.stdout
            .lines()
            .any(|l| l.starts_with("outputs/alarms/table2.csv: sha256 ") && l.contains("changed")),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout.contains("outputs/alarms/table2.csv: blake3 "),
        "{}",
        v.stdout
    );
    b[0] ^= 1;
    std::fs::write(&t2, &b).unwrap();
    verify(&p, &dir).assert_ok();

    // A file removed.
    let inv = dir.join("outputs/ingest/inventory.parquet");
    let kept = std::fs::read(&inv).unwrap();
    std::fs::remove_file(&inv).unwrap();
    let v = verify(&p, &dir);
    assert_eq!(v.code(), Some(1));
    assert!(
        v.stdout
            .contains("outputs/ingest/inventory.parquet: listed, but missing"),
        "{}",
        v.stdout
    );
    std::fs::write(&inv, kept).unwrap();

    // A run whose input comes from nowhere: the chain is broken.
    let meta = dir.join("ro-crate-metadata.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    for e in doc["@graph"].as_array_mut().unwrap() {
        if e["@id"] == "#run-split" {
            e["object"] = serde_json::json!({"@id": "outputs/elsewhere.parquet"});
        }
    }
    std::fs::write(&meta, serde_json::to_string(&doc).unwrap()).unwrap();
    let v = verify(&p, &dir);
    assert_eq!(v.code(), Some(1));
    assert!(
        v.stdout.contains(
            "#run-split: its input outputs/elsewhere.parquet is neither a raw file nor the result of an earlier run"
        ),
        "{}",
        v.stdout
    );
    // Not a crate at all: one line, exit 1.
    std::fs::write(&meta, "{").unwrap();
    let v = verify(&p, &dir);
    assert_eq!(v.code(), Some(1));
    assert!(v.stderr.contains("not JSON"), "{}", v.stderr);
    assert_eq!(v.stderr.trim().lines().count(), 1, "{}", v.stderr);
}

#[test]
fn a_referee_imports_the_crate_into_an_empty_store_and_audits_it_byte_identical() {
    let p = results_project();
    p.run(&["run"]).assert_ok();
    let (dir, r) = export(&p, &META);
    r.assert_ok();
    let table2 = std::fs::read(p.run(&["artifact", "alarms", "table2"]).stdout.trim()).unwrap();
    std::fs::remove_dir_all(p.store()).unwrap();

    let i = p.run(&["import", "crate", dir.to_str().unwrap()]);
    i.assert_ok();
    assert!(i.stdout.contains("imported "), "{}", i.stdout);
    // Every stage of the chain is there again, nothing to compute.
    let s = p.run(&["status", "--format", "json", "tables"]);
    s.assert_ok();
    let st: Value = serde_json::from_str(&s.stdout).unwrap();
    for stage in st.as_array().unwrap() {
        assert_eq!(stage["state"], "fresh", "{stage}");
    }
    assert_eq!(
        std::fs::read(p.run(&["artifact", "alarms", "table2"]).stdout.trim()).unwrap(),
        table2
    );
    // The referee's answer: re-executed from the raw files, byte for byte (trainings included).
    common::assert_audit_clean(&p, &["tables"]);
}

#[test]
fn a_changed_crate_or_record_is_refused_and_the_store_untouched() {
    let p = results_project();
    p.run(&["run"]).assert_ok();
    let (dir, r) = export(&p, &META);
    r.assert_ok();
    std::fs::remove_dir_all(p.store()).unwrap();
    // A record whose params were edited (and its sha256 in the metadata with it, so the crate
    // still verifies): its key no longer follows from its pre-image.
    let records = dir.join("magpipe/records");
    let rec = std::fs::read_dir(&records)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&rec).unwrap();
    let edited = text.replacen("\"kind_version\": ", "\"kind_version\": 9", 1);
    assert_ne!(text, edited);
    std::fs::write(&rec, &edited).unwrap();
    let meta = dir.join("ro-crate-metadata.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let rel = format!(
        "magpipe/records/{}",
        rec.file_name().unwrap().to_str().unwrap()
    );
    for e in doc["@graph"].as_array_mut().unwrap() {
        if e["@id"] == rel.as_str() {
            e["sha256"] = sha256(&rec).into();
            e["contentSize"] = edited.len().to_string().into();
            e["identifier"] = format!("blake3:{}", blake3_hex(edited.as_bytes())).into();
        }
    }
    std::fs::write(&meta, serde_json::to_vec(&doc).unwrap()).unwrap();
    let i = p.run(&["import", "crate", dir.to_str().unwrap()]);
    assert_eq!(i.code(), Some(1), "{}", i.stdout);
    assert!(i.stderr.contains("the record was changed"), "{}", i.stderr);
    assert_eq!(i.stderr.trim().lines().count(), 1, "{}", i.stderr);
    let records = p.store().join("records");
    assert!(!records.exists() || std::fs::read_dir(&records).unwrap().next().is_none());
}

#[test]
fn a_crate_that_does_not_verify_is_refused_before_anything_enters_the_store() {
    let p = results_project();
    p.run(&["run"]).assert_ok();
    let (dir, r) = export(&p, &META);
    r.assert_ok();
    std::fs::remove_dir_all(p.store()).unwrap();
    let t2 = dir.join("outputs/alarms/table2.csv");
    let mut b = std::fs::read(&t2).unwrap();
    b[0] ^= 1;
    std::fs::write(&t2, &b).unwrap();
    let i = p.run(&["import", "crate", dir.to_str().unwrap()]);
    assert_eq!(i.code(), Some(1), "{}", i.stdout);
    assert!(
        i.stderr.contains("the crate does not verify"),
        "{}",
        i.stderr
    );
    assert!(
        i.stderr.contains("outputs/alarms/table2.csv"),
        "{}",
        i.stderr
    );
    let objects = p.store().join("objects");
    assert!(!objects.exists() || std::fs::read_dir(&objects).unwrap().next().is_none());
}

fn blake3_hex(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

const GEN: &str = r#"
import json, os, random
p = json.load(open(os.environ["MAGPIPE_STAGE"]))["params"]
rng = random.Random(p["seed"])
with open(os.environ["MAGPIPE_OUT_DATA"], "w") as f:
    f.write("".join(f"{rng.randint(0, 1000)}\n" for _ in range(p["n"])))
"#;

const SUM: &str = r#"
import os
vals = [int(l) for l in open(os.environ["MAGPIPE_IN_DATA"])]
open(os.environ["MAGPIPE_OUT_TOTAL"], "w").write(f"{sum(vals)}\n")
d = os.environ["MAGPIPE_OUT_PARTS"]
os.makedirs(os.path.join(d, "sub"))
open(os.path.join(d, "sub", "n.txt"), "w").write(str(len(vals)))
"#;

#[test]
fn a_command_stage_chain_exports_with_its_code_validates_and_audits_after_import() {
    let py = Project::python();
    let p = Project::new(&format!(
        r#"version: 1
stages:
  make:
    kind: command
    run: [python, gen.py]
    code: [gen.py]
    env: {{python: {py}, lock: req.lock}}
    outputs: {{data: {{path: data.txt}}}}
    params: {{n: 5, seed: 0}}
  total:
    kind: command
    run: [python, total.py]
    code: [total.py]
    env: {{python: {py}}}
    inputs: {{data: make.data}}
    outputs:
      total: {{path: total.txt}}
      parts: {{path: parts/}}
"#,
        py = py.display()
    ));
    std::fs::write(p.path().join("gen.py"), GEN).unwrap();
    std::fs::write(p.path().join("total.py"), SUM).unwrap();
    std::fs::write(p.path().join("req.lock"), "numpy==2.4.6\n").unwrap();
    p.run(&["run"]).assert_ok();
    let dir = p.path().join("crate");
    let mut args = vec!["export", "crate", "total", "-o", dir.to_str().unwrap()];
    args.extend_from_slice(&META);
    p.run(&args).assert_ok();
    let (ok, issues) = validate(&dir);
    assert!(ok, "the validator refused the crate:\n{issues}");
    // The programs are in the crate, as the inputs of the runs that ran them.
    assert_eq!(
        std::fs::read_to_string(dir.join("code/total.py")).unwrap(),
        SUM
    );
    let graph = metadata(&dir);
    let run = graph.iter().find(|e| e["@id"] == "#run-total").unwrap();
    assert!(run["object"].to_string().contains("code/total.py"), "{run}");
    assert!(dir.join("outputs/total/parts/sub/n.txt").exists());
    p.run(&["verify", "--crate", dir.to_str().unwrap()])
        .assert_ok();

    std::fs::remove_dir_all(p.store()).unwrap();
    p.run(&["import", "crate", dir.to_str().unwrap()])
        .assert_ok();
    common::assert_audit_clean(&p, &["total"]);
}

/// A zip `python3`'s zipfile writes, with the members given (name, bytes).
fn python_zip(path: &Path, members: &[(&str, &[u8])]) {
    let dir = path.with_extension("members");
    std::fs::create_dir_all(&dir).unwrap();
    let mut script = String::from("import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w')\n");
    for (i, (name, bytes)) in members.iter().enumerate() {
        std::fs::write(dir.join(i.to_string()), bytes).unwrap();
        script.push_str(&format!(
            "z.write({:?}, {name:?})\n",
            dir.join(i.to_string()).to_str().unwrap()
        ));
    }
    script.push_str("z.close()\n");
    let o = Command::new("python3")
        .args(["-c", &script])
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_zipped_crate_verifies_imports_and_audits_and_a_bad_zip_is_refused() {
    let p = results_project();
    p.run(&["run"]).assert_ok();
    let (zip, r) = export_zip(&p, "table2.crate.zip");
    r.assert_ok();
    assert!(r.stdout.contains("table2.crate.zip"), "{}", r.stdout);
    // The archive's first member is the metadata file, at its root (the spec's convention).
    let bytes = std::fs::read(&zip).unwrap();
    assert_eq!(&bytes[..4], b"PK\x03\x04");
    // Made to be shared: readable by others, not a temporary file's 0600.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&zip).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(
        &bytes[30..30 + "ro-crate-metadata.json".len()],
        b"ro-crate-metadata.json"
    );
    // The same crate as a folder: the zip holds what the folder holds.
    let (dir, r) = export(&p, &META);
    r.assert_ok();
    let (ok, issues) = validate(&dir);
    assert!(ok, "the validator refused the crate:\n{issues}");
    let v = p.run(&["verify", "--crate", zip.to_str().unwrap()]);
    v.assert_ok();
    assert!(v.stdout.trim_end().ends_with(": ok"), "{}", v.stdout);
    // A second export to the same file is refused; the first is untouched.
    let (_, again) = export_zip(&p, "table2.crate.zip");
    assert_eq!(again.code(), Some(1), "{}", again.stderr);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);
    assert_eq!(std::fs::read(&zip).unwrap(), bytes);

    // The referee's workflow from the zip alone.
    let table2 = std::fs::read(p.run(&["artifact", "alarms", "table2"]).stdout.trim()).unwrap();
    std::fs::remove_dir_all(p.store()).unwrap();
    p.run(&["import", "crate", zip.to_str().unwrap()])
        .assert_ok();
    assert_eq!(
        std::fs::read(p.run(&["artifact", "alarms", "table2"]).stdout.trim()).unwrap(),
        table2
    );
    common::assert_audit_clean(&p, &["tables"]);

    // Zips that must not be read: a member that climbs out, one that is a changed file, and
    // one that is not a zip at all. Each is one line naming the zip, and the store is as it was.
    let records_before = std::fs::read_dir(p.store().join("records"))
        .unwrap()
        .count();
    let meta = std::fs::read(dir.join("ro-crate-metadata.json")).unwrap();
    let escape = p.path().join("escape.zip");
    python_zip(
        &escape,
        &[("ro-crate-metadata.json", &meta), ("../outside.txt", b"x")],
    );
    let mut changed = std::fs::read(dir.join("outputs/alarms/table2.csv")).unwrap();
    changed[0] ^= 1;
    let edited = p.path().join("edited.zip");
    python_zip(
        &edited,
        &[
            ("ro-crate-metadata.json", &meta),
            ("outputs/alarms/table2.csv", &changed),
        ],
    );
    let not_zip = p.path().join("not.zip");
    std::fs::write(&not_zip, b"PK but not really").unwrap();
    for (z, why) in [
        (&escape, "lands outside the crate"),
        (&edited, "the crate does not verify"),
        (&not_zip, "not a zip"),
    ] {
        let i = p.run(&["import", "crate", z.to_str().unwrap()]);
        assert_eq!(i.code(), Some(1), "{}: {}", z.display(), i.stdout);
        assert!(i.stderr.contains(why), "{}", i.stderr);
        assert!(i.stderr.contains(z.to_str().unwrap()), "{}", i.stderr);
        assert_eq!(i.stderr.trim().lines().count(), 1, "{}", i.stderr);
        assert!(!p.path().join("outside.txt").exists());
        assert_eq!(
            std::fs::read_dir(p.store().join("records"))
                .unwrap()
                .count(),
            records_before
        );
    }
    let v = p.run(&["verify", "--crate", edited.to_str().unwrap()]);
    assert_eq!(v.code(), Some(1));
    assert!(
        v.stdout.contains("outputs/alarms/table2.csv: sha256 "),
        "{}",
        v.stdout
    );
}

#[test]
fn a_seed_sweep_exports_every_seed_once_with_the_multi_seed_table_and_imports_whole() {
    let p = results_project();
    let r = p.run(&["run", "tables", "--seeds", "1..2"]);
    r.assert_ok();
    // Not run with these seeds: a clear error naming the point, nothing written.
    let dir = p.path().join("sweep");
    let mut args = vec![
        "export",
        "crate",
        "--seeds",
        "1..3",
        "-o",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(&META);
    let bad = p.run(&args);
    assert_eq!(bad.code(), Some(1), "{}", bad.stderr);
    assert!(bad.stderr.contains("sweep point seed=3"), "{}", bad.stderr);
    assert!(!dir.exists());

    args[3] = "1..2";
    let e = p.run(&args);
    e.assert_ok();
    assert!(e.stdout.contains("in 2 sweep points"), "{}", e.stdout);
    assert!(
        e.stdout.contains("identifier magpipe-sweep:"),
        "{}",
        e.stdout
    );
    let (ok, issues) = validate(&dir);
    assert!(ok, "the validator refused the crate:\n{issues}");
    p.run(&["verify", "--crate", dir.to_str().unwrap()])
        .assert_ok();

    let graph = metadata(&dir);
    let runs_of = |stage: &str| {
        graph
            .iter()
            .filter(|e| {
                e["@type"] == "CreateAction" && e["instrument"]["@id"] == format!("#stage-{stage}")
            })
            .count()
    };
    // The data stages ran once for both seeds; every seeded stage twice.
    assert_eq!(runs_of("ingest"), 1);
    assert_eq!(runs_of("window"), 1);
    assert_eq!(runs_of("alarms"), 2);
    assert_eq!(runs_of("tables"), 2);
    // One tool and one step per stage, however many runs.
    let tools = graph.iter().filter(|e| e["@id"] == "#stage-alarms").count();
    assert_eq!(tools, 1);
    // The multi-seed Table 2, made from both seeds' alarms, byte for byte what the run wrote.
    let agg = graph
        .iter()
        .find(|e| e["@id"] == "#aggregate-seeds-table")
        .expect("the multi-seed table's action");
    assert_eq!(agg["object"].as_array().unwrap().len(), 4, "{agg}");
    let reports = p.store().join("reports");
    let name = std::fs::read_dir(&reports)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("seeds-default-1_2"))
        .unwrap();
    assert_eq!(
        std::fs::read(dir.join("outputs/sweep/seeds-table").join(&name)).unwrap(),
        std::fs::read(reports.join(&name)).unwrap()
    );
    assert!(
        std::fs::read_to_string(dir.join("outputs/sweep/seeds-table").join(&name))
            .unwrap()
            .contains("# Table 2 over 2 seeds (1, 2)")
    );

    // Imported into an empty store, the sweep needs nothing computed.
    std::fs::remove_dir_all(p.store()).unwrap();
    p.run(&["import", "crate", dir.to_str().unwrap()])
        .assert_ok();
    let again = p.run(&["run", "tables", "--seeds", "1..2"]);
    again.assert_ok();
    assert!(
        again.stdout.contains("seed=1: 0 ran") && again.stdout.contains("seed=2: 0 ran"),
        "{}",
        again.stdout
    );
    // One point re-executed from the raw files under its own variant name, byte for byte.
    common::assert_audit_clean(&p, &["--variant", "default+seed=2", "tables"]);
}

#[test]
fn a_zip_larger_than_the_free_space_is_refused_before_anything_is_unpacked() {
    let p = results_project();
    p.run(&["run"]).assert_ok();
    let (zip, r) = export_zip(&p, "crate.zip");
    r.assert_ok();
    let disk = common::Tmpfs::mount(&p.path().join("small-tmp"), 64 * 1024);
    for cmd in [
        vec!["verify", "--crate", zip.to_str().unwrap()],
        vec!["import", "crate", zip.to_str().unwrap()],
    ] {
        let r = common::Run::from(
            p.cmd(&cmd)
                .env("TMPDIR", &disk.dir)
                .output()
                .expect("spawn magpipe"),
        );
        assert_eq!(r.code(), Some(1), "{}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("its members declare"), "{}", r.stderr);
        assert!(r.stderr.contains("crate.zip"), "{}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        // Nothing was unpacked onto the small disk.
        assert_eq!(std::fs::read_dir(&disk.dir).unwrap().count(), 0);
    }
    // With room, the same zip verifies.
    drop(disk);
    p.run(&["verify", "--crate", zip.to_str().unwrap()])
        .assert_ok();
}
