//! The Python package (python/magpipe) against a real store: every function in polars and
//! pandas, the stale refusal and an error's message (tests/python/api_checks.py); the book's
//! notebook executed in a real Jupyter kernel, its rendering checked (tests/python/
//! run_notebook.py); and the wheel `make wheel` builds, installed into a fresh venv.
//! The Python side runs in .venv-notebook (`make notebook`, pinned in
//! docs/notebooks/requirements.lock).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Project, bin, repo};

/// The notebook venv's interpreter: polars, pandas, nbclient and ipykernel.
fn python() -> PathBuf {
    let py = repo().join(".venv-notebook/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run `make notebook` (make test does)",
        py.display()
    );
    py
}

/// A project on the small pipeline of tests/python/pipeline.yaml, with the ridge model's code,
/// interpreter and the published Table 2 at the paths it names.
fn project() -> Project {
    let text = std::fs::read_to_string(repo().join("tests/python/pipeline.yaml")).unwrap();
    let p = Project::outside_tmp(&text);
    for dir in ["models", ".venv", "reference"] {
        std::os::unix::fs::symlink(repo().join(dir), p.path().join(dir)).unwrap();
    }
    p
}

/// The store the checks and the notebook read: a default run, a three-seed sweep and a variant,
/// in that order (api_checks.py counts them).
fn study() -> Project {
    let p = project();
    p.run(&["run"]).assert_ok();
    p.run(&["run", "--seeds", "1..3"]).assert_ok();
    p.run(&["run", "--variant", "slow-trend"]).assert_ok();
    p
}

fn python_in(p: &Project, script: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(python());
    c.current_dir(p.path())
        .arg(script)
        .args(args)
        .env("MAGPIPE_BIN", bin())
        .env("PYTHONPATH", repo().join("python"))
        .env("SOLARED_DIR", common::solared_dir())
        .env_remove("MAGPIPE_STORE");
    c
}

fn assert_success(c: &mut Command, what: &str) {
    let out = c.output().expect("spawn python");
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_python_package_reads_a_real_store_and_the_notebook_runs_in_a_real_kernel() {
    let p = study();
    let scripts = repo().join("tests/python");
    assert_success(
        &mut python_in(&p, &scripts.join("api_checks.py"), &[]),
        "the API checks",
    );
    // The book's rendering of the notebook is this run's (MAGPIPE_BLESS=1 writes it).
    let notebook = repo().join("docs/notebooks/compare-variants.ipynb");
    let rendered = repo().join("docs/src/guide/compare-variants.md");
    let mut args = vec![notebook.to_str().unwrap(), rendered.to_str().unwrap()];
    if std::env::var_os("MAGPIPE_BLESS").is_some_and(|v| v == "1") {
        args.push("--bless");
    }
    assert_success(
        &mut python_in(&p, &scripts.join("run_notebook.py"), &args),
        "the notebook",
    );
}

/// The newest wheel `make wheel` wrote.
fn wheel() -> PathBuf {
    let dir = repo().join("target/wheels");
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    wheels.retain(|w| {
        w.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("magpipe-") && n.ends_with(".whl"))
    });
    wheels.sort_by_key(|w| std::fs::metadata(w).and_then(|m| m.modified()).ok());
    wheels
        .pop()
        .unwrap_or_else(|| panic!("no wheel in {}: run `make wheel`", dir.display()))
}

#[test]
fn the_wheel_installs_into_a_fresh_venv_with_the_cli_and_runs_a_pipeline_from_python() {
    let whl = wheel();
    let venv = common::outside_tmp();
    let fresh = venv.path().join("fresh");
    let run = |c: &mut Command, what: &str| -> String {
        let out = c.output().expect("spawn");
        assert!(
            out.status.success(),
            "{what} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(
        Command::new(python())
            .args(["-m", "venv", "--without-pip"])
            .arg(&fresh),
        "python -m venv",
    );
    let fresh_py = fresh.join("bin/python");
    // The notebook venv's pip installs into the fresh one, from the wheel alone.
    run(
        Command::new(python())
            .args(["-m", "pip", "--disable-pip-version-check", "--python"])
            .arg(&fresh_py)
            .args(["install", "--quiet", "--no-index", "--no-deps"])
            .arg(&whl),
        "pip install the wheel",
    );
    // The wheel holds this checkout's package, not an older build's.
    let site = run(
        Command::new(&fresh_py).args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ]),
        "purelib",
    );
    let site = PathBuf::from(site.trim());
    for f in ["__init__.py", "_cli.py", "_frames.py"] {
        assert_eq!(
            std::fs::read_to_string(site.join("magpipe").join(f)).unwrap(),
            std::fs::read_to_string(repo().join("python/magpipe").join(f)).unwrap(),
            "the wheel's magpipe/{f} is not this checkout's: run `make wheel`"
        );
    }
    // polars from the notebook venv, offline: the wheel's own dependency is declared in its
    // metadata (checked below), not fetched here.
    let nb_site = run(
        Command::new(python()).args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ]),
        "notebook purelib",
    );
    std::fs::write(site.join("frames-from-notebook-venv.pth"), nb_site.trim()).unwrap();

    let cli = fresh.join("bin/magpipe");
    let help = run(Command::new(&cli).arg("--help"), "magpipe --help");
    assert!(help.contains("Usage: magpipe"), "{help}");
    let runs_help = run(Command::new(&cli).args(["runs", "--help"]), "runs --help");
    assert!(
        runs_help.contains("--results"),
        "the wheel's CLI predates `runs --results`: run `make wheel`"
    );

    // A small pipeline run and read through the API, with the CLI the wheel installed: no
    // MAGPIPE_BIN, nothing of this checkout on PATH.
    let p = project();
    let script = format!(
        r#"
import importlib.metadata as md, os, sys
import magpipe
assert os.path.realpath(magpipe.binary()) == os.path.realpath({cli:?}), magpipe.binary()
assert any(r.startswith("polars") for r in md.requires("magpipe")), md.requires("magpipe")
r = magpipe.run("tables", variant="slow-trend")
assert r.height == 1 and r["point"][0] == "slow-trend", r
assert r["params.linear_trend.trend_hours"][0] == 12, r
t2 = magpipe.read("tables", "table2_csv", variant="slow-trend")
assert t2.height == 40, t2
try:
    magpipe.read("tables", "table2_csv")
    raise SystemExit("the default's tables were never run, yet read")
except magpipe.StaleError as e:
    assert "magpipe run tables" in str(e), str(e)
print("ok")
"#,
        cli = cli.to_str().unwrap()
    );
    let out = run(
        Command::new(&fresh_py)
            .current_dir(p.path())
            .args(["-c", &script])
            .env_remove("MAGPIPE_BIN")
            .env_remove("PYTHONPATH")
            .env_remove("MAGPIPE_STORE")
            .env("PATH", "/usr/bin:/bin")
            .env("SOLARED_DIR", common::solared_dir()),
        "the pipeline through the installed package",
    );
    assert_eq!(out.trim(), "ok");
}
