//! The PyTorch example of docs/src/guide/own-stage.md run as a user would (issue 41): the page's
//! stage declaration and models/torch_gru.py, in the venv `make models-torch` makes (`.venv-torch`), on
//! the real data in the `quick` variant, scored with `--set alarms.primary=gru` so Table 2 is
//! the GRU's own.

mod common;

use common::{Project, repo};

fn own_stage_page() -> String {
    std::fs::read_to_string(repo().join("docs/src/guide/own-stage.md")).unwrap()
}

/// The page's ```yaml block that declares `gru`, as it would sit under `stages:`.
fn documented_stage(page: &str) -> String {
    let start = page
        .find("```yaml\ngru:\n")
        .expect("own-stage.md declares the `gru` stage in a ```yaml block")
        + "```yaml\n".len();
    let len = page[start..].find("```").unwrap();
    page[start..start + len]
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect()
}

fn pins(lock: &str) -> Vec<String> {
    std::fs::read_to_string(repo().join(lock))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim_start().starts_with("--hash"))
        .map(|l| l.trim_end_matches(['\\', ' ']).to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// What the page shows is what the suite runs, and the example's lock agrees with ridge's on
/// the packages both pin, so the two models read and write their files with the same versions.
#[test]
fn the_page_shows_the_tested_example_and_its_lock_keeps_ridges_pins() {
    let page = own_stage_page();
    let script = std::fs::read_to_string(repo().join("models/torch_gru.py")).unwrap();
    assert!(
        page.contains(&format!("```python\n{script}```")),
        "own-stage.md must show models/torch_gru.py whole, as it is"
    );
    let stage = documented_stage(&page);
    for want in [
        "run: [python, models/torch_gru.py]",
        "lock: models/torch.lock",
    ] {
        assert!(stage.contains(want), "{want} missing from\n{stage}");
    }
    assert!(
        page.contains("--set alarms.primary=gru"),
        "own-stage.md shows how to score the GRU's own Table 2"
    );
    let torch = pins("models/torch.lock");
    for pin in pins("models/requirements.lock") {
        assert!(torch.contains(&pin), "models/torch.lock lacks {pin}");
    }
    for pin in ["torch==2.13.0", "safetensors==", "pyarrow==", "numpy=="] {
        assert!(
            torch.iter().any(|p| p.starts_with(pin)),
            "models/torch.lock lacks {pin}"
        );
    }
}

#[test]
fn the_pytorch_example_runs_in_quick_and_scores_its_own_table_2() {
    let py = repo().join(".venv-torch/bin/python");
    let import = std::process::Command::new(&py)
        .args(["-c", "import torch"])
        .output();
    assert!(
        matches!(&import, Ok(o) if o.status.success()),
        "`import torch` fails in .venv-torch: run `make models-torch`\n{import:?}"
    );

    // The repository's pipeline scoring ridge and the baselines instead of the four trained
    // models (their hour of training is not what this tests), with the page's `gru` stage added
    // and listed where the page says a predictor goes.
    let p = Project::real_scoring("ridge");
    // The page's stage names the venv `make models-torch` makes, beside the project's `.venv`.
    std::os::unix::fs::symlink(repo().join(".venv-torch"), p.path().join(".venv-torch")).unwrap();
    let text = p.pipeline();
    let lists = "[ridge, persistence, linear_trend, zero_slope, ridge]";
    assert_eq!(text.matches(lists).count(), 3, "{text}");
    let text = text
        .replace(lists, "[ridge, persistence, linear_trend, zero_slope, gru]")
        .replace("models: [ridge]", "models: [ridge, gru]")
        .replacen(
            "\n  alarms:\n",
            &format!("\n{}\n  alarms:\n", documented_stage(&own_stage_page())),
            1,
        );
    p.set_pipeline(&text);

    let args = [
        "run",
        "--variant",
        "quick",
        "--set",
        "alarms.primary=gru",
        "tables",
    ];
    let r = p.run(&args);
    r.assert_ok();
    assert!(
        r.stages("stage_finished").contains(&"gru".to_string()),
        "{}",
        r.stderr
    );
    // Its `magpipe: progress` lines moved the stage's bar, epoch by epoch.
    let epochs: Vec<u64> = r
        .events
        .iter()
        .filter(|e| e["event"] == "stage_progress" && e["stage"] == "gru" && e["unit"] == "epochs")
        .map(|e| e["done"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [1, 2], "{}", r.stderr);

    let artifact = |stage: &str, output: &str, extra: &[&str]| -> String {
        let mut a = vec!["artifact", stage, output];
        a.extend_from_slice(extra);
        let r = p.run(&a);
        r.assert_ok();
        r.stdout.trim().to_string()
    };
    let set = ["--variant", "quick", "--set", "alarms.primary=gru"];
    let read = |path: String| std::fs::read_to_string(path).unwrap();

    let summary: serde_json::Value =
        serde_json::from_str(&read(artifact("gru", "summary", &set))).unwrap();
    assert_eq!(summary["predictor"], "GRU (PyTorch)", "{summary}");
    assert_eq!(summary["epochs_run"], 2, "{summary}");
    // One GRU layer of 16 (3 gates × (5 + 16 + 2) × 16) and the 16 → 12 head.
    assert_eq!(summary["param_count"], 3 * (5 + 16 + 2) * 16 + 16 * 12 + 12);
    assert_eq!(
        summary["mean_rmse_gauss"].as_object().unwrap().len(),
        5,
        "{summary}"
    );
    let model = std::path::PathBuf::from(artifact("gru", "model", &set));
    assert!(model.join("gru.safetensors").is_file(), "{model:?}");

    // Table 2 is the GRU's, because of the --set; Table 1 and the comparison list it too.
    let table2 = read(artifact("tables", "table2", &set));
    assert!(
        table2.starts_with("# Table 2 — GRU (PyTorch)\n"),
        "{table2}"
    );
    let table1 = read(artifact("tables", "table1", &set));
    assert!(table1.contains("\n| GRU | mse |"), "{table1}");
    let comparison = read(artifact("tables", "comparison", &set));
    assert!(
        comparison.contains("## GRU (PyTorch) against the published Table 2"),
        "{comparison}"
    );

    // The same command again reruns nothing: the key of a stage in a 4 GB venv is stable.
    let again = p.run(&args);
    again.assert_ok();
    assert!(
        again.stages("stage_finished").is_empty(),
        "{}",
        again.stderr
    );

    // Without the --set, Table 2 stays the first predictor's, and the GRU is not retrained.
    let plain = p.run(&["run", "--variant", "quick", "tables"]);
    plain.assert_ok();
    assert!(
        !plain.stages("stage_finished").contains(&"gru".to_string()),
        "{}",
        plain.stderr
    );
    let table2 = read(artifact("tables", "table2", &["--variant", "quick"]));
    assert!(
        table2.starts_with("# Table 2 — Ridge (acoustic inputs)\n"),
        "{table2}"
    );
}
