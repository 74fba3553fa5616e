//! The store cannot be damaged by magpipe's own commands running side by side: `gc` in a loop
//! against a running pipeline (command stages, the study's stages and a training on fixture
//! ARs) removes nothing the run makes or reads, and still frees what is truly unreachable; a
//! lease left by a killed run does not block gc.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Project, Run, fixture_project};

/// ingest → split → scale → window → train on fixture ARs, and beside them a command chain
/// a → b → c whose middle stage sleeps, so the run is long enough for many gcs.
fn project(n: u32) -> Project {
    let p = fixture_project(&[15001, 15002], &[15003], &[15004], 120);
    let py = Project::python();
    let py = py.display();
    p.set_pipeline(&format!(
        "{}  train:
    kind: train
    inputs:
      train: window.train
      val: window.val
    params:
      model: MagFluxLSTM
      hidden: 8
      layers: 1
      epochs: 2
      batch_size: 32
      early_stop: none
      seed: 3
  a:
    kind: command
    shell: \"seq 1 {n} > {{outputs.nums}}\"
    outputs: {{nums: {{path: nums.txt}}}}
  b:
    kind: command
    run: [python, b.py]
    code: [b.py]
    env: {{python: {py}}}
    inputs: {{nums: a.nums}}
    outputs: {{sum: {{path: sum.txt}}, parts: {{path: parts/}}}}
  c:
    kind: command
    shell: \"cat {{inputs.sum}} {{inputs.parts}}/one.txt > {{outputs.all}}\"
    inputs: {{sum: b.sum, parts: b.parts}}
    outputs: {{all: {{path: all.txt}}}}
",
        p.pipeline()
    ));
    std::fs::write(
        p.path().join("b.py"),
        "import os, time\nnums = [int(l) for l in open(os.environ['MAGPIPE_IN_NUMS'])]\n\
         time.sleep(4)\nopen(os.environ['MAGPIPE_OUT_SUM'], 'w').write(str(sum(nums)))\n\
         d = os.environ['MAGPIPE_OUT_PARTS']\nos.makedirs(d)\n\
         open(os.path.join(d, 'one.txt'), 'w').write(str(nums[0]))\n",
    )
    .unwrap();
    p
}

fn set_n(p: &Project, n: u32) {
    let text = p.pipeline();
    let at = text.find("seq 1 ").unwrap();
    let end = text[at..].find(" >").unwrap() + at;
    p.set_pipeline(&format!("{}seq 1 {n}{}", &text[..at], &text[end..]));
}

fn start(p: &Project, args: &[&str]) -> Child {
    p.cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the store holds `n` records (the run under test has committed its a).
fn wait_for_records(p: &Project, n: usize) {
    let t0 = std::time::Instant::now();
    let count = || {
        std::fs::read_dir(p.store().join("records"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    while count() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the run never committed a"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many records a gc says it removed.
fn removed(g: &Run) -> u32 {
    g.stdout
        .strip_prefix("removed ")
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("gc said: {}", g.stdout))
}

/// Waits until another process holds the lock on `path` (a sleep would race the holder's
/// start on a loaded machine).
fn wait_until_locked(path: &std::path::Path) {
    let t0 = std::time::Instant::now();
    loop {
        let f = std::fs::File::open(path).unwrap();
        match f.try_lock() {
            Err(std::fs::TryLockError::WouldBlock) => return,
            Err(e) => panic!("{}: {e}", path.display()),
            Ok(()) => {}
        }
        drop(f);
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "flock never took {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn gc(p: &Project) -> Run {
    let r = p.run(&["gc", "--keep-runs", "0", "--grace", "0"]);
    r.assert_ok();
    r
}

/// The keys the default variant's refs name, by stage.
fn refs(p: &Project) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(p.store().join("refs").join("default"))
        .unwrap()
        .flatten()
        // A ref being moved has a temporary `.name.pid.tmp` beside it until its rename.
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let key = std::fs::read_to_string(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().to_string(),
                key.trim().to_string(),
            ))
        })
        .collect()
}

fn has_record(p: &Project, key: &str) -> bool {
    p.store()
        .join("records")
        .join(format!("{key}.json"))
        .exists()
}

/// Every record a ref names, and every record upstream of it, is in the store.
fn assert_refs_whole(p: &Project) {
    let mut todo: Vec<String> = refs(p).into_values().collect();
    while let Some(key) = todo.pop() {
        let path = p.store().join("records").join(format!("{key}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("gc removed {key}, which a ref reaches: {e}"));
        let rec: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(up) = rec["upstream"].as_object() {
            todo.extend(up.values().filter_map(|k| k.as_str().map(String::from)));
        }
    }
}

#[test]
fn gc_in_a_loop_against_a_running_pipeline_removes_nothing_it_uses_and_frees_the_rest() {
    let p = project(5);
    p.run(&["run"]).assert_ok();
    let first = refs(&p);
    // Every stage of the first run becomes garbage once this run has moved the refs on; until
    // then the refs keep it. The train stage is shared (its inputs did not change).
    set_n(&p, 7);
    p.set_pipeline(&p.pipeline().replace("epochs: 2", "epochs: 3"));
    let mut run = start(&p, &["run"]);
    let mut gcs = 0;
    let mut removed_during = 0;
    while run.try_wait().unwrap().is_none() {
        let g = gc(&p);
        gcs += 1;
        removed_during += removed(&g);
        // Refs move only forward, and only to records the run has committed: whatever a ref
        // names now, it named during that gc or the run had committed it. The run moves its
        // refs one by one as it ends, so a gc in that moment may already free the first run's
        // train, whose ref has moved; it may never free what a ref still reaches.
        assert_refs_whole(&p);
        std::thread::sleep(Duration::from_millis(150));
    }
    let out = Run::from(run.wait_with_output().unwrap());
    out.assert_ok();
    assert!(gcs >= 2, "the run ended before gc had a chance ({gcs} gcs)");
    assert_eq!(
        out.stages("stage_finished").len(),
        4,
        "train, a, b, c ran: {:?}",
        out.stages("stage_finished")
    );
    p.run(&["verify"]).assert_ok();
    // Now the first run's train, a, b and c are unreachable, and gc frees those of them that
    // gcs during the run had not yet freed.
    let g = gc(&p);
    assert_eq!(removed_during + removed(&g), 4, "{}", g.stdout);
    let moved: Vec<&String> = ["train", "a", "b", "c"]
        .iter()
        .map(|s| &first[*s])
        .collect();
    for key in &moved {
        assert!(!has_record(&p, key), "the first run's {key} was not freed");
    }
    for (stage, key) in refs(&p) {
        assert!(
            has_record(&p, &key),
            "the second run's {stage} ({key}) was freed"
        );
    }
    p.run(&["verify"]).assert_ok();
    let again = p.run(&["run"]);
    again.assert_ok();
    assert!(again.stages("stage_finished").is_empty());
}

#[test]
fn gc_during_a_run_keeps_the_stages_it_has_committed_though_nothing_else_names_them() {
    // Without refs or run log (keep-runs 0) naming them, a's and b's records are reachable only
    // through the run's lease while c waits.
    let p = project(5);
    p.run(&["run", "a"]).assert_ok();
    set_n(&p, 9);
    let run = start(&p, &["run", "c"]);
    // The new a is committed; b sleeps.
    wait_for_records(&p, 2);
    let g = gc(&p);
    assert!(
        g.stdout.contains("1 running magpipe process"),
        "{}",
        g.stdout
    );
    let out = Run::from(run.wait_with_output().unwrap());
    out.assert_ok();
    assert_eq!(out.stages("stage_finished"), ["a", "b", "c"]);
    p.run(&["verify"]).assert_ok();
}

#[test]
fn a_lease_left_by_a_killed_run_does_not_block_gc() {
    let p = project(5);
    p.run(&["run", "a"]).assert_ok();
    set_n(&p, 11);
    let mut run = start(&p, &["run", "c"]);
    // The new a is committed; b sleeps.
    wait_for_records(&p, 2);
    run.kill().unwrap();
    run.wait().unwrap();
    let leases = std::fs::read_dir(p.store().join("leases")).unwrap().count();
    assert_eq!(leases, 1, "the killed run's lease is still there");
    // The killed run's a (seq 1 11) is unreachable, and its lease is recognised as dead.
    let g = gc(&p);
    assert!(g.stdout.starts_with("removed 1 records"), "{}", g.stdout);
    assert!(
        g.stderr
            .contains("removed 1 lease left by magpipe processes that died"),
        "{}",
        g.stderr
    );
    assert_eq!(
        std::fs::read_dir(p.store().join("leases")).unwrap().count(),
        0
    );
    p.run(&["verify"]).assert_ok();
    // The grace period keeps what is young, whatever reaches it.
    set_n(&p, 13);
    p.run(&["run", "a"]).assert_ok();
    set_n(&p, 5);
    p.run(&["run", "a"]).assert_ok();
    let g = p.run(&["gc", "--keep-runs", "0"]);
    g.assert_ok();
    assert!(
        g.stdout.starts_with("removed 0 records") && g.stdout.contains("1 younger than --grace 1h"),
        "{}",
        g.stdout
    );
    let bad = p.run(&["gc", "--grace", "soon"]);
    assert_eq!(bad.code(), Some(2), "{}", bad.stderr);
}

#[test]
fn a_live_lease_of_another_process_keeps_what_it_names() {
    // A lease held by a live process (here `flock`, as if a run on another host) keeps the
    // records it names though no ref or run names them; once the process is gone, gc frees them.
    let p = project(5);
    p.run(&["run", "a"]).assert_ok();
    let rec_dir = p.store().join("records");
    let count = || std::fs::read_dir(&rec_dir).unwrap().count();
    assert_eq!(count(), 1);
    std::fs::remove_dir_all(p.store().join("refs")).unwrap();
    std::fs::remove_dir_all(p.store().join("runs")).unwrap();
    let lease_dir = p.store().join("leases");
    std::fs::create_dir_all(&lease_dir).unwrap();
    let key = std::fs::read_dir(&rec_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let lease = lease_dir.join("elsewhere-1-1.lease");
    std::fs::write(
        &lease,
        format!("magpipe lease pid 1 host elsewhere for audit\nrecord {key}\n"),
    )
    .unwrap();
    // --no-fork: the process that holds the lock is the one killed below.
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&lease)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    wait_until_locked(&lease);
    let g = gc(&p);
    assert!(g.stdout.starts_with("removed 0 records"), "{}", g.stdout);
    assert_eq!(count(), 1);
    holder.kill().unwrap();
    holder.wait().unwrap();
    let g = gc(&p);
    assert!(g.stdout.starts_with("removed 1 records"), "{}", g.stdout);
    assert_eq!(count(), 0);
}

#[test]
fn gc_during_an_audit_keeps_the_chain_it_compares() {
    // No ref and no run names the chain: only the audit's lease keeps it while b re-executes.
    let p = project(5);
    p.run(&["run", "c"]).assert_ok();
    std::fs::remove_dir_all(p.store().join("refs")).unwrap();
    let audit = p
        .cmd(&["audit", "c"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut audit = audit;
    // Once the audit's lease names the chain (a, b, c), gc must keep it.
    let t0 = std::time::Instant::now();
    while !std::fs::read_dir(p.store().join("leases"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path())
                .is_ok_and(|t| t.lines().filter(|l| l.starts_with("record ")).count() >= 3)
        })
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the audit took no lease"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut gcs = 0;
    let mut removed_after_exit = 0;
    while audit.try_wait().unwrap().is_none() {
        let g = gc(&p);
        gcs += 1;
        if audit.try_wait().unwrap().is_none() {
            // The audit outlived this gc, so its lease was live throughout it.
            assert!(g.stdout.starts_with("removed 0 records"), "{}", g.stdout);
        } else {
            // It ended while gc ran: its lease may have gone before gc read the leases.
            removed_after_exit += removed(&g);
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let out = Run::from(audit.wait_with_output().unwrap());
    out.assert_ok();
    assert!(
        gcs >= 2,
        "the audit ended before gc had a chance ({gcs} gcs)"
    );
    assert!(
        out.stdout.contains("identical") && !out.stdout.contains("differs"),
        "{}",
        out.stdout
    );
    // Once the audit is over nothing holds the chain, and gc frees it (the audit's scratch
    // store under tmp/ is gone too).
    let g = gc(&p);
    assert_eq!(removed_after_exit + removed(&g), 3, "{}", g.stdout);
}
