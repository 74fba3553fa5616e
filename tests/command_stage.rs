//! `kind: command`: a user's own program as a stage. Real Python scripts in a scratch project
//! (the project's venv interpreter), the real binary, the real sandbox: these tests need Landlock
//! and fail, not skip, on a kernel without it.

mod common;

use std::process::{Command, Stdio};

use common::{Project, snapshot_without_runs};

const GEN: &str = r#"
import json, os, random, sys, time
st = json.load(open(os.environ["MAGPIPE_STAGE"]))
p = st["params"]
rng = random.Random(p["seed"])
with open(sys.argv[1], "w") as f:
    for i in range(p["n"]):
        f.write(f"{rng.randint(0, 1000) * p.get('scale', 1)}\n")
if p.get("sleep"):
    print("sleeping", file=sys.stderr, flush=True)
    time.sleep(p["sleep"])
"#;

const DOUBLE: &str = r#"
import os, sys
vals = [int(l) for l in open(os.environ["MAGPIPE_IN_DATA"])]
for i in range(3):
    print(f"magpipe: progress {i + 1}/3 steps", file=sys.stderr, flush=True)
with open(os.environ["MAGPIPE_OUT_OUT"], "w") as f:
    f.write("".join(f"{2 * v}\n" for v in vals))
d = os.environ["MAGPIPE_OUT_FOLDER"]
os.makedirs(os.path.join(d, "sub"))
open(os.path.join(d, "a.txt"), "w").write(str(sum(vals)))
open(os.path.join(d, "sub", "b.txt"), "w").write(str(len(vals)))
print("doubled", len(vals), "values")
"#;

fn pipeline(py: &str) -> String {
    format!(
        r#"version: 1
stages:
  make:
    kind: command
    run: [python, gen.py, "{{outputs.data}}"]
    code: [gen.py]
    env: {{python: {py}, lock: req.lock}}
    outputs: {{data: {{path: data.txt}}}}
    params: {{n: 5, seed: 0}}
  double:
    kind: command
    run: [python, double.py]
    code: [double.py]
    env: {{python: {py}}}
    inputs: {{data: make.data}}
    outputs:
      out: {{path: out.txt}}
      folder: {{path: folder/}}
"#
    )
}

fn toy() -> Project {
    let py = Project::python();
    let p = Project::new(&pipeline(&py.display().to_string()));
    std::fs::write(p.path().join("gen.py"), GEN).unwrap();
    std::fs::write(p.path().join("double.py"), DOUBLE).unwrap();
    std::fs::write(p.path().join("req.lock"), "numpy==2.4.6\n").unwrap();
    p
}

/// A placeholder that names no wired input is a plan error in every command that builds the plan
/// (`status` too), located in pipeline.yaml, with a did-you-mean; before, only `run` failed, and
/// only when it reached the stage.
#[test]
fn a_placeholder_naming_no_input_is_a_plan_error() {
    let p = toy();
    let text = std::fs::read_to_string(p.path().join("pipeline.yaml"))
        .unwrap()
        .replace(
            "run: [python, double.py]",
            "run: [python, double.py, \"{inputs.dta}\"]",
        );
    p.set_pipeline(&text);
    for cmd in [vec!["status"], vec!["run", "make"]] {
        let r = p.run(&cmd);
        assert_eq!(r.code(), Some(2), "{cmd:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("pipeline.yaml")
                && r.stderr.contains("`{inputs.dta}` names no input of this stage (did you mean `data`?) (its inputs: data)"),
            "{cmd:?}: {}",
            r.stderr
        );
    }
    assert!(
        !p.store().join("records").exists(),
        "a refused plan ran a stage"
    );
}

const SOCKETS: &str = r#"
import multiprocessing as mp, os, sys

def square(x):
    return x * x

if __name__ == "__main__":
    print("TMPDIR", os.environ["TMPDIR"], file=sys.stderr)
    # A Manager listens on a Unix socket under TMPDIR, and so does the forkserver a Pool starts
    # from (PyTorch's DataLoader workers share tensors the same way).
    with mp.Manager() as m:
        shared = m.dict(n=3)
        n = shared["n"]
    with mp.get_context("forkserver").Pool(2) as pool:
        total = sum(pool.map(square, range(10)))
    with open(sys.argv[1], "w") as f:
        f.write(f"{n} {total}\n")
"#;

/// Python's multiprocessing binds Unix sockets under `TMPDIR`, whose paths may not pass 107
/// bytes: with a store at a deep path (so the scratch folder's path is long) a Manager and a
/// forkserver Pool both finish, sandboxed and not (issue 41: a DataLoader with workers hung,
/// `AF_UNIX path too long`). A time limit far below the hang stops the test, not the suite.
#[test]
fn multiprocessing_sockets_work_from_a_store_at_a_deep_path() {
    let py = Project::python();
    // Outside /tmp the sandbox gives the stage a private /tmp (TMPDIR /tmp/w); a project under
    // /tmp keeps the machine's, and TMPDIR is a link made there for the run.
    for (sandbox, outside_tmp) in [("strict", true), ("strict", false), ("off", true)] {
        let make = if outside_tmp {
            Project::outside_tmp
        } else {
            Project::new
        };
        let p = make(&format!(
            "version: 1\nstages:\n  pool:\n    kind: command\n    sandbox: {sandbox}\n    run: [python, sockets.py, \"{{outputs.out}}\"]\n    code: [sockets.py]\n    env: {{python: {}}}\n    outputs: {{out: {{path: out.txt}}}}\n",
            py.display()
        ));
        std::fs::write(p.path().join("sockets.py"), SOCKETS).unwrap();
        let deep = p
            .path()
            .join("a-store-at-a-deep-path-as-on-a-cluster-file-system/project/with/more/levels");
        let mut child = p
            .cmd(&["run"])
            .env("MAGPIPE_STORE", &deep)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("sandbox {sandbox}, outside /tmp {outside_tmp}: the stage hung");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let r = common::Run::from(child.wait_with_output().unwrap());
        assert!(
            r.ok(),
            "sandbox {sandbox}, outside /tmp {outside_tmp}: {}",
            r.stderr
        );
        let short = if sandbox == "strict" && outside_tmp {
            "TMPDIR /tmp/w"
        } else {
            "TMPDIR /tmp/magpipe-"
        };
        assert!(r.stderr.contains(short), "{short:?} not in {}", r.stderr);
        let at = common::Run::from(
            p.cmd(&["artifact", "pool", "out"])
                .env("MAGPIPE_STORE", &deep)
                .output()
                .unwrap(),
        );
        at.assert_ok();
        assert_eq!(
            std::fs::read_to_string(at.stdout.trim()).unwrap(),
            "3 285\n",
            "sandbox {sandbox}"
        );
        assert!(
            !r.stderr.contains("AF_UNIX path too long"),
            "sandbox {sandbox}: {}",
            r.stderr
        );
    }
}

/// Piped output (no terminal, no JSON log) shows a running stage's progress as lines, not
/// nothing (issue 40: minutes of silence inside an epoch): its first report at once, then at
/// most one line each 30 s. `double` reports 3 steps in well under that: one line.
#[test]
fn piped_progress_is_a_line_not_silence() {
    let p = toy();
    let out = Command::new(common::bin())
        .current_dir(p.path())
        .args(["run"])
        .env("SOLARED_DIR", common::solared_dir())
        .env_remove("MAGPIPE_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("double: ")).collect();
    let progress: Vec<&&str> = lines.iter().filter(|l| l.contains("/3 steps")).collect();
    assert_eq!(progress.len(), 1, "{err}");
    assert!(progress[0].contains("double: 1/3 steps"), "{err}");
}

/// On a terminal a stage that has not reported progress yet shows a spinner and its time, not an
/// empty bar drawn full as `0/0` (issue 41). `script` gives magpipe a terminal.
#[test]
fn a_stage_without_progress_yet_draws_no_empty_bar() {
    let p = toy();
    p.set_pipeline(&p.pipeline().replace(
        "params: {n: 5, seed: 0}",
        "params: {n: 5, seed: 0, sleep: 1}",
    ));
    let out = Command::new("script")
        .args(["-qec", &format!("{} run make", common::bin()), "/dev/null"])
        .current_dir(p.path())
        .env("SOLARED_DIR", common::solared_dir())
        .env_remove("MAGPIPE_STORE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("make"), "{shown}");
    assert!(!shown.contains("0/0"), "an empty bar: {shown}");
}

fn explain(p: &Project, stage: &str) -> String {
    let r = p.run(&["status", "--explain", stage]);
    r.assert_ok();
    r.stdout
}

fn record(p: &Project, stage: &str) -> serde_json::Value {
    let r = p.run(&["status", "--format", "json", stage]);
    r.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let key = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == stage)
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    serde_json::from_slice(
        &std::fs::read(p.store().join("records").join(format!("{key}.json"))).unwrap(),
    )
    .unwrap()
}

fn artifact(p: &Project, stage: &str, output: &str) -> String {
    let r = p.run(&["artifact", stage, output]);
    r.assert_ok();
    std::fs::read_to_string(r.stdout.trim()).unwrap()
}

#[test]
fn a_command_stage_runs_caches_and_reruns_for_what_it_declares() {
    let p = toy();
    let r = p.run(&["run"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["double", "make"]);
    // The progress lines drove the stage's progress, and were not logged as text.
    assert!(
        r.events
            .iter()
            .any(|e| e["event"] == "stage_progress" && e["stage"] == "double" && e["total"] == 3),
        "{}",
        r.stderr
    );
    let data = artifact(&p, "make", "data");
    let doubled = artifact(&p, "double", "out");
    let want: String = data
        .lines()
        .map(|l| format!("{}\n", 2 * l.parse::<i64>().unwrap()))
        .collect();
    assert_eq!(doubled, want);
    // The folder output is a tree of its files.
    let rec = record(&p, "double");
    let files = rec["outputs"]["folder"]["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(names, ["a.txt", "sub/b.txt"], "{rec}");
    // The record says the sandbox held, at which ABI.
    let sandbox = &rec["facts"]["sandbox"];
    assert_eq!(sandbox["enforced"], true, "this test needs Landlock: {rec}");
    assert!(sandbox["abi"].as_i64().unwrap() >= 1);
    let l = p.run(&["lineage", "double"]);
    l.assert_ok();
    assert!(
        l.stdout.contains("sandbox enforced (Landlock ABI"),
        "{}",
        l.stdout
    );
    // The Markdown a paper's supplement takes says it too, in the stage's row.
    let md = p.run(&["lineage", "double", "--format", "md"]);
    md.assert_ok();
    let row = md
        .stdout
        .lines()
        .find(|l| l.starts_with("| double | command"))
        .unwrap_or_else(|| panic!("no row for double:\n{}", md.stdout));
    assert!(
        row.contains("sandbox enforced (Landlock ABI") && row.contains("no network"),
        "{row}"
    );

    // Unchanged: all cached. A comment in pipeline.yaml changes nothing.
    assert_eq!(p.run(&["run"]).stages("stage_cached"), ["double", "make"]);
    p.set_pipeline(&format!("# a comment\n{}", p.pipeline()));
    assert_eq!(p.run(&["run"]).stages("stage_cached"), ["double", "make"]);

    // Editing the script: a comment reruns it, and the same bytes stop there (early cutoff).
    std::fs::write(p.path().join("gen.py"), format!("# edited\n{GEN}")).unwrap();
    assert!(explain(&p, "make").contains("code gen.py changed"));
    let r = p.run(&["run"]);
    assert_eq!(r.stages("stage_finished"), ["make"]);
    assert_eq!(r.stages("stage_cached"), ["double"]);
    // An edit that changes what it writes reruns what reads it.
    std::fs::write(
        p.path().join("gen.py"),
        GEN.replace("p.get('scale', 1)", "p.get('scale', 3)"),
    )
    .unwrap();
    assert_eq!(p.run(&["run"]).stages("stage_finished"), ["double", "make"]);
    // The lock file is part of the environment (and is checked against it: a pin the venv does
    // not satisfy is refused, naming it).
    std::fs::write(p.path().join("req.lock"), "numpy==2.4.5\n").unwrap();
    let r = p.run(&["run", "make"]);
    assert!(
        r.error_lines()
            .join("\n")
            .contains("env `lock` (req.lock) pins numpy==2.4.5, but 2.4.6 is installed"),
        "{}",
        r.stderr
    );
    std::fs::write(
        p.path().join("req.lock"),
        "# numpy for gen.py\nnumpy==2.4.6\n",
    )
    .unwrap();
    assert!(explain(&p, "make").contains("env lock changed"));
    assert_eq!(p.run(&["run", "make"]).stages("stage_finished"), ["make"]);
    // A param is named as a param.
    let e = p.run(&["status", "--explain", "make", "--set", "make.n=6"]);
    assert!(e.stdout.contains("param `n`: 5 → 6"), "{}", e.stdout);
    let r = p.run(&["run", "--set", "make.n=6"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["double", "make"]);
}

#[test]
fn a_seed_sweep_sets_the_seed_param_of_command_stages() {
    let p = toy();
    let r = p.run(&["run", "--seeds", "1,2", "make"]);
    r.assert_ok();
    // Two seeds, two different draws, each the one its seed gives.
    let one = p.run(&["status", "--format", "json", "--set", "make.seed=1", "make"]);
    let two = p.run(&["status", "--format", "json", "--set", "make.seed=2", "make"]);
    for s in [&one, &two] {
        s.assert_ok();
        assert!(s.stdout.contains("\"fresh\""), "{}", s.stdout);
    }
    assert_ne!(one.stdout, two.stdout);
}

#[test]
fn an_undeclared_read_or_a_write_outside_the_scratch_folder_is_denied_by_the_sandbox() {
    let p = toy();
    p.run(&["run"]).assert_ok();
    let before = snapshot_without_runs(&p.store());
    let secret = p.path().join("secret.txt");
    std::fs::write(&secret, "not declared").unwrap();
    let data_file = std::fs::read_dir(common::solared_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .and_then(|d| {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .next()
        })
        .expect("a SolARED file");
    let objects = p.store().join("objects");
    let escape = p.path().join("escape.txt");
    for (what, line, path) in [
        (
            "a project file",
            format!("open({:?}).read()", secret.display().to_string()),
            &secret,
        ),
        (
            "the data folder",
            format!("open({:?}, 'rb').read(10)", data_file.display().to_string()),
            &data_file,
        ),
        (
            "another stage's objects",
            format!("os.listdir({:?})", objects.display().to_string()),
            &objects,
        ),
        (
            "a write outside its folder",
            format!("open({:?}, 'w').write('x')", escape.display().to_string()),
            &escape,
        ),
    ] {
        std::fs::write(
            p.path().join("double.py"),
            format!("import os\n{line}\n{DOUBLE}"),
        )
        .unwrap();
        let r = p.run(&["run"]);
        assert!(!r.ok(), "{what}: {}", r.stderr);
        let err = r.error_lines().join("\n");
        // A denied write gets the advice for a write (issue 41): the scratch folder or an output.
        let advice = if what.contains("write") {
            format!(
                "the command was denied writing {}, outside its scratch folder (sandbox); write it under the scratch folder ({{scratch}}, $TMPDIR) or declare it as an output",
                path.display()
            )
        } else {
            format!(
                "the command was denied a file it did not declare (sandbox): {}; declare it under inputs or code, or set sandbox: off",
                path.display()
            )
        };
        assert!(
            err.contains("stage `double`") && err.contains(&advice),
            "{what}: {err}"
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert_eq!(
            snapshot_without_runs(&p.store()),
            before,
            "{what}: the store changed"
        );
    }
    assert!(!p.path().join("escape.txt").exists());
    // The same read with the sandbox off runs (and says so in the record).
    p.set_pipeline(&p.pipeline().replace(
        "    run: [python, double.py]",
        "    sandbox: off\n    run: [python, double.py]",
    ));
    p.run(&["run"]).assert_ok();
    assert_eq!(
        record(&p, "double")["facts"]["sandbox"]["text"],
        "off (processes contained)"
    );
}

#[test]
fn a_failing_command_or_a_contract_violation_leaves_the_store_as_it_was() {
    let p = toy();
    p.run(&["run", "make"]).assert_ok();
    // A failed run still appends to the run log (runs/); nothing else may change.
    let before = snapshot_without_runs(&p.store());
    let same = |what: &str| {
        assert_eq!(
            snapshot_without_runs(&p.store()),
            before,
            "{what}: the store changed"
        );
    };

    std::fs::write(
        p.path().join("double.py"),
        "import sys\nprint('reading', file=sys.stderr)\nprint('boom: the model diverged', file=sys.stderr)\nsys.exit(3)\n",
    )
    .unwrap();
    let r = p.run(&["run"]);
    assert!(!r.ok());
    let err = r.error_lines().join("\n");
    assert!(
        err.contains("stage `double`: the command exited with status 3: boom: the model diverged"),
        "{err}"
    );
    same("non-zero exit");

    // Exit 0 without a declared output.
    std::fs::write(p.path().join("double.py"), "print('forgot')\n").unwrap();
    let r = p.run(&["run"]);
    assert!(!r.ok());
    let err = r.error_lines().join("\n");
    assert!(
        err.contains("error: stage `double` did not write its output `"),
        "{err}"
    );
    same("missing output");

    // An output that breaks the contract it claims.
    p.set_pipeline(&p.pipeline().replace(
        "      out: {path: out.txt}",
        "      out: {path: out.parquet, schema: magpipe.predictions/1}",
    ));
    std::fs::write(
        p.path().join("double.py"),
        r#"
import os
import pyarrow as pa, pyarrow.parquet as pq
pq.write_table(pa.table({"predictor": ["x"], "ar": pa.array([1], pa.uint32())}), os.environ["MAGPIPE_OUT_OUT"])
os.makedirs(os.environ["MAGPIPE_OUT_FOLDER"])
"#,
    )
    .unwrap();
    let r = p.run(&["run"]);
    assert!(!r.ok());
    let err = r.error_lines().join("\n");
    assert!(
        err.contains("output out: column 'k' missing (magpipe.predictions/1)"),
        "{err}"
    );
    same("contract violation");
    assert!(
        !p.store().join("failed").exists(),
        "kept without --keep-failed"
    );

    // --keep-failed keeps what the program left and its log, and says where; the store's
    // records and objects stay as they were.
    std::fs::write(
        p.path().join("double.py"),
        "import os, sys\nopen(os.path.join(os.environ['MAGPIPE_OUT_FOLDER'] + '.partial'), 'w').write('half')\nprint('epoch 1 of 3')\nprint('boom', file=sys.stderr)\nsys.exit(4)\n",
    )
    .unwrap();
    let r = p.run(&["run", "--keep-failed"]);
    assert!(!r.ok());
    let err = r.error_lines().join("\n");
    let at = err
        .split("; its scratch folder and log are kept in ")
        .nth(1)
        .unwrap_or_else(|| panic!("no kept folder named: {err}"))
        .trim();
    assert!(
        err.contains("stage `double`: the command exited with status 4: boom"),
        "{err}"
    );
    let at = std::path::Path::new(at);
    assert!(at.starts_with(p.store().join("failed")), "{}", at.display());
    assert_eq!(
        std::fs::read_to_string(at.join("scratch/folder.partial")).unwrap(),
        "half"
    );
    let log = std::fs::read_to_string(at.join("log.txt")).unwrap();
    assert!(
        log.contains("epoch 1 of 3")
            && log.contains("boom")
            && log.contains("exited with status 4"),
        "{log}"
    );
    std::fs::remove_dir_all(p.store().join("failed")).unwrap();
    same("a kept failure");

    // An unknown contract is a plan error with its YAML location.
    p.set_pipeline(
        &p.pipeline()
            .replace("magpipe.predictions/1", "magpipe.nothing/9"),
    );
    let r = p.run(&["run"]);
    assert!(!r.ok());
    let err = r.error_lines().join("\n");
    assert!(
        err.contains("pipeline.yaml:") && err.contains("unknown contract `magpipe.nothing/9`"),
        "{err}"
    );
    same("unknown contract");
}

#[test]
fn bad_declarations_are_refused_with_their_location() {
    let p = toy();
    for (from, to, want) in [
        (
            "    run: [python, double.py]",
            "    run: []",
            "names no program",
        ),
        (
            "    run: [python, double.py]",
            "    rn: [python, double.py]",
            "unknown stage key `rn`",
        ),
        (
            "    run: [python, double.py]",
            "    run: [python, double.py, \"{params.nope}\"]",
            "`{params.nope}` names nothing",
        ),
        (
            "      out: {path: out.txt}",
            "      out: {path: ../out.txt}",
            "must be relative and inside",
        ),
        (
            "    params: {n: 5, seed: 0}",
            "    params: {n: 5, seed: 0, run: x}",
            "is a stage key of kind `command`",
        ),
        // A declaration is named as the stage key it is, not as a param.
        (
            "    run: [python, double.py]",
            "    run: [python, double.py]\n    sandbox: loose",
            "stages.double.sandbox: stage key `sandbox`: unknown variant `loose`",
        ),
    ] {
        let text = p.pipeline();
        let bad = text.replacen(from, to, 1);
        assert_ne!(bad, text);
        p.set_pipeline(&bad);
        let r = p.run(&["run"]);
        assert!(!r.ok(), "{to}");
        let err = r.error_lines().join("\n");
        assert!(
            err.contains("pipeline.yaml:") && err.contains(want),
            "{to}: {err}"
        );
        assert!(!p.store().join("records").exists(), "{to}");
        p.set_pipeline(&text);
    }
    // A normal kind still refuses a command's keys.
    let text = pipeline(&Project::python().display().to_string())
        + "  other:\n    kind: split_ars\n    run: [x]\n";
    p.set_pipeline(&text);
    let r = p.run(&["status"]);
    assert!(
        r.error_lines().join("\n").contains(
            "unknown stage key `run` (expected kind, params, inputs, doc, default, priority)"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn a_killed_run_leaves_no_record_of_the_command_and_the_next_run_redoes_it() {
    let p = toy();
    p.set_pipeline(
        &p.pipeline()
            .replace("{n: 5, seed: 0}", "{n: 5, seed: 0, sleep: 60}"),
    );
    let mut child = p
        .cmd(&["run", "make"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the command says it is sleeping, then kill magpipe.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = false;
    for l in lines.by_ref() {
        if l.unwrap().contains("sleeping") {
            seen = true;
            break;
        }
    }
    assert!(seen, "the command never started");
    // gen.py's processes whose working folder is in this project.
    let mine = || {
        let ps = Command::new("pgrep")
            .args(["-f", "gen.py"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&ps.stdout).lines().any(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(p.path()))
        })
    };
    assert!(
        mine(),
        "the running command is not seen, so its death could not be"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The command died with it (its parent-death signal), so nothing writes into the store.
    let mut alive = true;
    for _ in 0..50 {
        if !mine() {
            alive = false;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!alive, "the command outlived magpipe");
    assert!(explain(&p, "make").contains("never run"));
    p.set_pipeline(&p.pipeline().replace(", sleep: 60}", ", sleep: 0}"));
    let r = p.run(&["run", "make"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["make"]);
}

#[test]
fn audit_reexecutes_a_command_chain_and_compares_byte_for_byte() {
    let p = toy();
    p.run(&["run"]).assert_ok();
    let a = p.run(&["audit", "double"]);
    a.assert_ok();
    assert!(a.stdout.contains("double"), "{}", a.stdout);
    // A script that draws from the OS is caught.
    std::fs::write(
        p.path().join("double.py"),
        format!("import os\n{DOUBLE}\nopen(os.environ['MAGPIPE_OUT_OUT'], 'a').write(os.urandom(8).hex())\n"),
    )
    .unwrap();
    p.run(&["run"]).assert_ok();
    let a = p.run(&["audit", "double"]);
    assert_eq!(a.code(), Some(1), "{}\n{}", a.stdout, a.stderr);
}

const CONSTANT: &str = r#"
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "lib"))
import magpipe_study as ms
st = ms.stage()
ms.write_predictor(
    st["outputs"], ms.read_json(st["inputs"]["protocol"]), ms.read_series(st["inputs"]["test"]),
    ms.read_json(st["inputs"]["scaler"]), "constant",
    lambda x: np.full((len(x), 12), 0.5, dtype=np.float32),
    {"kind": "model", "model": "constant", "val_rmse": 0.0, "zero_slope_rmse": 0.0,
     "collapsed": True, "params": {}},
)
"#;

fn frame(path: &str) -> polars::prelude::DataFrame {
    use polars::prelude::*;
    ParquetReader::new(std::fs::File::open(path.trim()).unwrap())
        .finish()
        .unwrap()
}

/// The Python protocol helper (models/lib) against the Rust protocol on the real data: a model
/// that forecasts a constant is, after the per-tile recalibration, the zero-slope baseline, so
/// every geometry column, time, observation and Gauss value must agree.
#[test]
fn the_python_protocol_helper_reproduces_the_rust_protocol_and_ridge_enters_table_2() {
    let p = Project::real_scoring("zero_slope");
    std::fs::write(p.path().join("constant.py"), CONSTANT).unwrap();
    let stage = r#"
  constant:
    kind: command
    run: [python, constant.py]
    code: [constant.py, models/lib/]
    env: {python: .venv/bin/python}
    inputs: {protocol: protocol.protocol, test: scale.test, scaler: scale.scaler}
    outputs:
      predictions: {path: predictions.parquet, schema: magpipe.predictions/1}
      summary: {path: summary.json, schema: magpipe.summary/1}
"#;
    p.set_pipeline(
        &p.pipeline()
            .replacen("\n  alarms:\n", &format!("{stage}\n  alarms:\n"), 1),
    );
    let r = p.run(&["run", "constant", "zero_slope", "alarms"]);
    r.assert_ok();
    let py = frame(&p.run(&["artifact", "constant", "predictions"]).stdout);
    let rs = frame(&p.run(&["artifact", "zero_slope", "predictions"]).stdout);
    assert_eq!(py.height(), rs.height());
    for c in [
        "ar",
        "k",
        "tile",
        "q",
        "time",
        "observed",
        "observed_gauss",
        "in_span",
        "in_metric",
    ] {
        assert_eq!(
            py.column(c).unwrap().as_materialized_series(),
            rs.column(c).unwrap().as_materialized_series(),
            "column {c}"
        );
    }
    for c in ["predicted", "predicted_gauss"] {
        let a = py.column(c).unwrap().f64().unwrap();
        let b = rs.column(c).unwrap().f64().unwrap();
        for i in 0..a.len() {
            match (a.get(i), b.get(i)) {
                (None, None) => {}
                (Some(x), Some(y)) => {
                    assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{c}: {x} vs {y}")
                }
                _ => panic!("{c}: nulls differ"),
            }
        }
    }
    let sum = |stage: &str| -> serde_json::Value {
        let path = p.run(&["artifact", stage, "summary"]).stdout;
        serde_json::from_str(&std::fs::read_to_string(path.trim()).unwrap()).unwrap()
    };
    let (a, b) = (sum("constant"), sum("zero_slope"));
    for (ar, v) in b["mean_rmse_gauss"].as_object().unwrap() {
        let x = a["mean_rmse_gauss"][ar].as_f64().unwrap();
        let y = v.as_f64().unwrap();
        assert!((x - y).abs() <= 1e-9 * y.abs(), "{ar}: {x} vs {y}");
    }
    // The shipped Python model is scored in Table 2 beside the others.
    let alarms = frame(&p.run(&["artifact", "alarms", "alarms"]).stdout);
    let col = alarms.column("predictor").unwrap().str().unwrap().clone();
    let preds: std::collections::BTreeSet<String> = (0..col.len())
        .filter_map(|i| col.get(i).map(str::to_string))
        .collect();
    assert!(preds.contains("Ridge (acoustic inputs)"), "{preds:?}");
    // The ridge model beats the zero-slope reference on validation (it learns something).
    let ridge = sum("ridge");
    assert!(
        ridge["val_rmse"].as_f64().unwrap() < ridge["zero_slope_rmse"].as_f64().unwrap(),
        "{ridge}"
    );
    // `compare` shows a command model's validation RMSE as it shows a trained one's, from its
    // summary; a baseline has none.
    let c = p.run(&["compare", "default", "default"]);
    c.assert_ok();
    let want = format!(
        "| ridge: val derivative RMSE | {v:.4e} | {v:.4e} |",
        v = ridge["val_rmse"].as_f64().unwrap()
    );
    assert!(
        c.stdout.contains(&want),
        "{want} missing from\n{}",
        c.stdout
    );
    assert!(
        !c.stdout.contains("zero_slope: val derivative RMSE"),
        "{}",
        c.stdout
    );
}

/// record key → output → content hash, for every record in a store.
fn output_hashes(store: &std::path::Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(store.join("records")).unwrap() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        let hashes: serde_json::Map<String, serde_json::Value> = v["outputs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, o)| (k.clone(), o["hash"].clone()))
            .collect();
        out.insert(v["key"].as_str().unwrap().to_string(), hashes.into());
    }
    out
}

#[test]
fn the_slurm_executor_runs_command_stages_with_the_local_outputs() {
    let ping = Command::new("scontrol").arg("ping").output();
    assert!(
        matches!(&ping, Ok(o) if o.status.success()),
        "this test needs a running Slurm; `make test` starts one with .ci/slurm/start.sh: {ping:?}"
    );
    let p = toy();
    p.run(&["run"]).assert_ok();
    let store = p.path().join("slurm-store");
    let s = store.display().to_string();
    p.run(&["--store", &s, "run", "--executor=slurm"])
        .assert_ok();
    assert_eq!(output_hashes(&store), output_hashes(&p.store()));
    let l = p.run(&["--store", &s, "lineage", "double"]);
    l.assert_ok();
    assert!(
        l.stdout.contains("slurm job ") && l.stdout.contains("sandbox enforced"),
        "{}",
        l.stdout
    );
}

#[test]
fn kinds_lists_the_command_kind_and_every_contract_field_by_field() {
    let p = toy();
    let r = p.run(&["kinds"]);
    r.assert_ok();
    for want in [
        "command (v1)",
        "  key    sandbox      default \"strict\", one of strict | off",
        "  param  params       default {}",
        "magpipe.predictions/1 (Parquet)",
        "predicted_gauss",
        "magpipe.windows/1 (safetensors)",
        "magpipe.summary/1 (JSON)",
        "magpipe.model_config/1 (JSON)",
        "[predictions: magpipe.predictions/1]",
        "[magpipe.series/1]",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?}:\n{}", r.stdout);
    }
}

#[test]
fn the_run_log_keeps_failed_runs_and_every_sweep_point() {
    let p = toy();
    let count = || -> Vec<serde_json::Value> {
        let r = p.run(&["runs", "--json"]);
        r.assert_ok();
        serde_json::from_str::<serde_json::Value>(&r.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    // A run whose only stage to run fails: nothing ran, and it is still in the log.
    p.run(&["run", "make"]).assert_ok();
    std::fs::write(p.path().join("double.py"), "raise KeyError('x')\n").unwrap();
    assert!(!p.run(&["run"]).ok());
    let runs = count();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["ok"], false);
    assert_eq!(runs[1]["stages"]["double"][0], "failed");
    // Two sweep points started together are two entries.
    std::fs::write(p.path().join("double.py"), DOUBLE).unwrap();
    p.run(&["run", "--set", "make.n=3,4", "--jobs", "2"])
        .assert_ok();
    let runs = count();
    assert_eq!(runs.len(), 4, "{runs:?}");
    let variants: std::collections::BTreeSet<String> = runs[2..]
        .iter()
        .map(|r| r["variant"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(variants.len(), 2, "{variants:?}");
}

#[test]
fn a_stale_stage_suggests_the_command_that_builds_what_was_asked() {
    let p = toy();
    p.run(&["run"]).assert_ok();
    for cmd in [
        &["artifact", "make", "data"][..],
        &["lineage", "make"],
        &["audit", "make"],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--set", "make.n=9", "--set", "+make.note=two words"]);
        let r = p.run(&args);
        assert_eq!(r.code(), Some(1), "{cmd:?}: {}", r.stderr);
        let err = r.error_lines().join("\n");
        assert!(
            err.contains(
                "run `magpipe run make --set make.n=9 --set '+make.note=two words'` first"
            ),
            "{cmd:?}: {err}"
        );
    }
}

#[test]
fn lineage_lists_every_lock_file_on_the_chain() {
    let p = toy();
    let py = Project::python().display().to_string();
    let text = p.pipeline().replace(
        &format!("    env: {{python: {py}}}\n    inputs: {{data: make.data}}"),
        &format!("    env: {{python: {py}, lock: other.lock}}\n    inputs: {{data: make.data}}"),
    );
    assert!(text.contains("other.lock"));
    p.set_pipeline(&text);
    std::fs::write(p.path().join("other.lock"), "pyarrow==22.0.0\n").unwrap();
    p.run(&["run"]).assert_ok();
    for format in ["json", "md", "text"] {
        let r = p.run(&["lineage", "double", "--format", format]);
        r.assert_ok();
        for lock in ["req.lock", "other.lock"] {
            assert!(
                r.stdout.contains(lock),
                "{format}: {lock} missing:\n{}",
                r.stdout
            );
        }
    }
    let r = p.run(&["lineage", "double", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let locks = v["raw_files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "lock")
        .count();
    assert_eq!(locks, 2, "{v}");
}

#[test]
fn a_set_of_a_param_the_stage_does_not_have_is_refused_unless_added() {
    let p = toy();
    p.run(&["run"]).assert_ok();
    let r = p.run(&["status", "--set", "make.seeed=3"]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    let err = r.error_lines().join("\n");
    assert!(
        err.contains(
            "--set make.seeed=3: stage `make` has no param `seeed` (did you mean `seed`?) \
             (params: n, seed; stage keys: run, shell, code, env, outputs, threads, sandbox, network, \
             timeout, stall_warning)"
        ) && err.contains("to add one, write --set +make.seeed=…"),
        "{err}"
    );
    // `compare` shows a command stage's own params under the names `--set` takes, one row each.
    p.set_pipeline(&format!(
        "{}variants:\n  more:\n    make: {{n: 6, threads: 2}}\n",
        p.pipeline()
    ));
    p.run(&["run", "--variant", "more"]).assert_ok();
    let c = p.run(&["compare", "default", "more"]);
    c.assert_ok();
    assert!(
        c.stdout.contains("| make.n | `5` | `6` |")
            && c.stdout.contains("| make.threads | `1` | `2` |")
            && !c.stdout.contains("make.params"),
        "{}",
        c.stdout
    );
    let r = p.run(&["run", "--set", "mkae.n=3"]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.error_lines()
            .join("\n")
            .contains("no stage `mkae` (did you mean `make`?)"),
        "{}",
        r.stderr
    );
    // Added on purpose: accepted, passed on, and part of the key (make reruns; its output is
    // the same bytes, so double stays cached).
    let r = p.run(&["run", "--set", "+make.extra=1"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["make"]);
    assert_eq!(r.stages("stage_cached"), ["double"]);
}

const HANG: &str = r#"
import subprocess, sys, time
# A helper it started, which must go with it; the marker finds it in /proc.
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", sys.argv[1]])
print("loaded 3 ARs, training", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
"#;

/// The processes whose command line holds `marker`, seen from the host's /proc.
fn with_marker(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(marker)
        {
            out.push(name);
        }
    }
    out
}

/// Issue 41: a command that hangs (a DataLoader waiting forever) ran until someone pressed
/// Ctrl-C. Past its `timeout:` it is killed with everything it started, and the error names the
/// limit and its last line; sandboxed (namespaces) and not (a process group).
#[test]
fn a_command_past_its_timeout_is_killed_with_its_whole_tree() {
    let py = Project::python();
    for sandbox in ["strict", "off"] {
        let marker = format!("magpipe-hang-{}-{sandbox}", std::process::id());
        let p = Project::new(&format!(
            "version: 1\nstages:\n  hang:\n    kind: command\n    sandbox: {sandbox}\n    timeout: 3s\n    run: [python, hang.py, {marker}]\n    code: [hang.py]\n    env: {{python: {}}}\n    outputs: {{out: {{path: out.txt}}}}\n",
            py.display()
        ));
        std::fs::write(p.path().join("hang.py"), HANG).unwrap();
        let mut child = p
            .cmd(&["run"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Far below "forever", far above the limit: this stops the test, not the suite.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("sandbox {sandbox}: the stage ran past its timeout and was not stopped");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let r = common::Run::from(child.wait_with_output().unwrap());
        assert_eq!(r.code(), Some(1), "sandbox {sandbox}: {}", r.stderr);
        let err = r.error_lines();
        assert!(
            err.iter().any(|l| l.contains("stage `hang`")
                && l.contains("ran past its timeout of 3s and was killed")
                && l.contains("its last line: loaded 3 ARs, training")),
            "sandbox {sandbox}: {}",
            r.stderr
        );
        // The helper it started is gone too (the kernel may take a moment to reap it).
        let t = std::time::Instant::now();
        while !with_marker(&marker).is_empty() && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            with_marker(&marker).is_empty(),
            "sandbox {sandbox}: left running: {:?}",
            with_marker(&marker)
        );
    }
}

const QUIET: &str = r#"
import sys, time
print("epoch 1 done", file=sys.stderr, flush=True)
time.sleep(4)
open(sys.argv[1], "w").write("ok\n")
"#;

/// A command silent for its stall period gets a warning in the log with its last line, and
/// goes on; `timeout:` and `stall_warning:` are not in the key, and a bad one is a plan error.
#[test]
fn a_silent_command_gets_a_stall_warning_and_limits_stay_out_of_the_key() {
    let py = Project::python();
    let stage = |extra: &str| {
        format!(
            "version: 1\nstages:\n  quiet:\n    kind: command\n{extra}    run: [python, quiet.py, \"{{outputs.out}}\"]\n    code: [quiet.py]\n    env: {{python: {}}}\n    outputs: {{out: {{path: out.txt}}}}\n",
            py.display()
        )
    };
    let p = Project::new(&stage("    stall_warning: 2s\n"));
    std::fs::write(p.path().join("quiet.py"), QUIET).unwrap();
    let r = p.run(&["run"]);
    r.assert_ok();
    assert!(
        r.stderr
            .contains("warning: the command has printed nothing for 2s since `epoch 1 done`"),
        "{}",
        r.stderr
    );
    // Other limits, the same key: cached.
    p.set_pipeline(&stage("    stall_warning: none\n    timeout: 2h\n"));
    let r = p.run(&["run"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_cached"), ["quiet"], "{}", r.stderr);
    for (bad, says) in [
        ("    timeout: 2 hours\n", "timeout"),
        ("    timeout: 0s\n", "must be longer than 0s"),
        ("    stall_warning: soon\n", "stall_warning"),
    ] {
        p.set_pipeline(&stage(bad));
        let r = p.run(&["status"]);
        // A plan error: exit 2, as for every mistake in pipeline.yaml.
        assert_eq!(r.code(), Some(2), "{bad}: {}", r.stderr);
        assert!(
            r.error_lines().iter().any(|l| l.contains(says)),
            "{bad}: {}",
            r.stderr
        );
    }
}

/// Issue 41: `magpipe -f other/pipeline.yaml run` from another folder looked for a command
/// stage's `code:` in the current folder (`m.py: file is missing`). The pipeline's paths now
/// mean the same from anywhere, as in DVC and Snakemake, while paths on the command line keep
/// meaning what they mean where the user typed them.
#[test]
fn a_pipeline_run_from_another_folder_finds_its_own_files() {
    let p = toy();
    let elsewhere = tempfile::tempdir().unwrap();
    let rel = pathdiff(p.path(), elsewhere.path()).join("pipeline.yaml");
    let magpipe = |args: &[&str]| {
        common::Run::from(
            Command::new(common::bin())
                .current_dir(elsewhere.path())
                .args(["--log-format", "json", "-f", rel.to_str().unwrap()])
                .args(args)
                .env("SOLARED_DIR", common::solared_dir())
                .env_remove("MAGPIPE_STORE")
                .output()
                .unwrap(),
        )
    };
    let r = magpipe(&["run"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished").len(), 2, "{}", r.stderr);
    // The same results as a run in the project's own folder: all cached there.
    let here = p.run(&["run"]);
    assert_eq!(here.stages("stage_cached").len(), 2, "{}", here.stderr);
    assert!(!elsewhere.path().join("artifacts").exists());
    // A path on the command line is where the user typed it.
    magpipe(&[
        "export",
        "crate",
        "double",
        "-o",
        "mine",
        "--license",
        "CC0-1.0",
    ])
    .assert_ok();
    assert!(
        elsewhere
            .path()
            .join("mine/ro-crate-metadata.json")
            .is_file()
    );
    assert!(!p.path().join("mine").exists());
}

/// `to` as a relative path from `from` (both absolute): `../../x/y`.
fn pathdiff(to: &std::path::Path, from: &std::path::Path) -> std::path::PathBuf {
    let to: Vec<_> = to.components().collect();
    let from: Vec<_> = from.components().collect();
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}
