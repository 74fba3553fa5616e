//! A user's model in a venv of its own: the environment is keyed by what is installed in it (not
//! by a hand-kept lock, not by where the venv lives), and a declared lock is checked against it.
//! Real venvs made by the test with `python3 -m venv`, packages pinned from the registry.

mod common;

use std::path::Path;
use std::process::Command;

use common::Project;

fn venv(dir: &Path, six: &str) {
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "python3 -m venv failed");
    pip(dir, six);
}

fn pip(dir: &Path, six: &str) {
    let out = Command::new(dir.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
        ])
        .arg(format!("six=={six}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install six=={six}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn project(python: &Path) -> Project {
    let p = Project::new(&format!(
        "version: 1
stages:
  model:
    kind: command
    run: [python, model.py]
    code: [model.py]
    env: {{python: {}, lock: model.lock}}
    outputs: {{out: {{path: out.txt}}}}
",
        python.display()
    ));
    std::fs::write(
        p.path().join("model.py"),
        "import os, six\nopen(os.environ['MAGPIPE_OUT_OUT'], 'w').write(six.__version__)\n",
    )
    .unwrap();
    p
}

fn key(p: &Project) -> (String, String) {
    let r = p.run(&["status", "--format", "json"]);
    r.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let s = &v.as_array().unwrap()[0];
    (
        s["key"].as_str().unwrap_or_default().to_string(),
        s["state"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn the_environment_is_keyed_by_what_is_installed_wherever_it_lives() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    venv(&a.path().join("venv"), "1.16.0");
    let p = project(&a.path().join("venv/bin/python"));
    std::fs::write(p.path().join("model.lock"), "six==1.16.0\n").unwrap();
    p.run(&["run"]).assert_ok();
    let (first, _) = key(&p);

    // An upgrade in the venv: the lock (unchanged) no longer holds, and magpipe says which pin.
    pip(&a.path().join("venv"), "1.17.0");
    let r = p.run(&["run"]);
    assert!(!r.ok());
    let err = r.error_lines().join("\n");
    assert!(
        err.contains("env `lock` (model.lock) pins six==1.16.0, but 1.17.0 is installed"),
        "{err}"
    );
    // The advice is a command pip accepts for this lock: a `pip freeze` lock has no hashes, and
    // pip refuses --require-hashes for it (issue 41); a hashed lock keeps it.
    assert!(
        err.contains("-m pip install --no-deps -r model.lock`")
            && !err.contains("--require-hashes"),
        "{err}"
    );
    std::fs::write(
        p.path().join("model.lock"),
        "six==1.16.0 \\\n    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n",
    )
    .unwrap();
    let r = p.run(&["run"]);
    let err = r.error_lines().join("\n");
    assert!(
        err.contains("-m pip install --no-deps --require-hashes -r model.lock`"),
        "{err}"
    );
    std::fs::write(p.path().join("model.lock"), "six==1.16.0\n").unwrap();
    // Updated lock: the key is not the old one, though nothing magpipe reads besides the venv
    // and the lock changed; the lock alone would not tell (it changed by one line here).
    std::fs::write(p.path().join("model.lock"), "six==1.17.0\n").unwrap();
    let (upgraded, state) = key(&p);
    assert_eq!(state, "stale");
    assert_ne!(upgraded, first);
    p.run(&["run"]).assert_ok();
    let out = p.run(&["artifact", "model", "out"]);
    assert_eq!(
        std::fs::read_to_string(out.stdout.trim()).unwrap(),
        "1.17.0"
    );

    // Without a lock, an install into the venv still changes the key.
    p.set_pipeline(&p.pipeline().replace(", lock: model.lock", ""));
    let (no_lock, _) = key(&p);
    p.run(&["run"]).assert_ok();
    pip(&a.path().join("venv"), "1.16.0");
    let (downgraded, state) = key(&p);
    assert_eq!(
        state, "stale",
        "an install into the venv left the result fresh"
    );
    let why = p.run(&["status", "--explain"]).stdout;
    assert!(
        why.contains("runtime `python.packages.six`: \"1.17.0 ") && why.contains("→ \"1.16.0 "),
        "{why}"
    );
    assert_ne!(downgraded, no_lock);

    // The same interpreter and packages in a venv elsewhere: the same key, so the result made
    // with the first venv is found (as a colleague's machine, or a shared cache, would).
    p.run(&["run"]).assert_ok();
    venv(&b.path().join("elsewhere"), "1.16.0");
    let moved = p.pipeline().replace(
        &a.path().join("venv/bin/python").display().to_string(),
        &b.path().join("elsewhere/bin/python").display().to_string(),
    );
    p.set_pipeline(&moved);
    let (there, state) = key(&p);
    assert_eq!(there, downgraded, "the venv's location entered the key");
    assert_eq!(state, "fresh");
}
