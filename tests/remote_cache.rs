//! Results that travel: push to a folder remote from one clone, pull into another, byte for byte,
//! with every record verified (signature, trust, key) and every object re-hashed on the way in.

mod common;

use std::path::{Path, PathBuf};

use common::{Project, Run, hash_of, results_project};

/// A user: their own config folder (their signing key).
struct User(tempfile::TempDir);

impl User {
    fn new() -> User {
        User(tempfile::tempdir().unwrap())
    }

    fn run(&self, p: &Project, args: &[&str]) -> Run {
        Run::from(
            p.cmd(args)
                .env("MAGPIPE_CONFIG_DIR", self.0.path())
                .env_remove("MAGPIPE_REMOTE")
                .output()
                .expect("spawn magpipe"),
        )
    }

    fn key(&self, p: &Project, name: &str) -> String {
        let r = self.run(p, &["key", "generate", name]);
        r.assert_ok();
        r.stdout.trim().to_string()
    }
}

/// Another clone of `p`'s project: its pipeline, data, published table and remotes, no store.
fn clone_of(p: &Project) -> Project {
    let q = Project::new(&p.pipeline());
    let copy = |from: &Path, to: &Path| {
        let out = std::process::Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    for name in ["data", ".magpipe", "published.csv"] {
        let from = p.path().join(name);
        if from.exists() {
            copy(&from, &q.path().join(name));
        }
    }
    q
}

fn remote_files(dir: &Path, sub: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
        for e in entries.flatten() {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

#[test]
fn results_travel_through_a_folder_remote_byte_for_byte_signed_and_verified() {
    let alice = User::new();
    let a = results_project();
    alice.run(&a, &["run"]).assert_ok();
    let remote = tempfile::tempdir().unwrap();
    let url = remote.path().to_str().unwrap();
    alice
        .run(&a, &["remote", "add", "lab", url, "--default"])
        .assert_ok();
    // The committed config names the remote and nothing secret.
    let cfg = std::fs::read_to_string(a.path().join(".magpipe/config.yaml")).unwrap();
    assert!(
        cfg.contains("default_remote: lab") && cfg.contains(url),
        "{cfg}"
    );
    let alice_key = alice.key(&a, "alice@lab");
    assert!(alice_key.starts_with("alice@lab:"), "{alice_key}");

    let pushed = alice.run(&a, &["push"]);
    pushed.assert_ok();
    let records = remote_files(remote.path(), "ac");
    let stages = std::fs::read_dir(a.store().join("records"))
        .unwrap()
        .count();
    assert_eq!(records.len(), stages, "{}", pushed.stdout);
    assert!(
        pushed
            .stdout
            .contains(&format!("pushed {stages} record(s)"))
            && pushed.stdout.contains("signed by alice@lab"),
        "{}",
        pushed.stdout
    );
    // Pushing again sends nothing: every record and object is there.
    let again = alice.run(&a, &["push"]);
    again.assert_ok();
    assert!(
        again.stdout.contains("pushed 0 record(s) and 0 object(s)"),
        "{}",
        again.stdout
    );

    // Another clone, trusting alice only, gets everything without computing anything.
    let bob = User::new();
    let b = clone_of(&a);
    bob.run(&b, &["remote", "trust", "lab", &alice_key])
        .assert_ok();
    let r = bob.run(&b, &["run", "--pull"]);
    r.assert_ok();
    assert!(r.stages("stage_finished").is_empty(), "{}", r.stderr);
    assert_eq!(r.stages("stage_pulled").len(), stages, "{}", r.stderr);
    for (stage, output) in [
        ("tables", "table2"),
        ("train", "model"),
        ("figure", "png_15004"),
    ] {
        assert_eq!(
            hash_of(&b, stage, output),
            hash_of(&a, stage, output),
            "{stage}.{output}"
        );
    }
    let l = bob.run(&b, &["lineage", "tables"]);
    l.assert_ok();
    assert!(
        l.stdout.contains("pulled from lab")
            && l.stdout.contains(&format!("signed by {alice_key}")),
        "{}",
        l.stdout
    );
    bob.run(&b, &["verify"]).assert_ok();
    // Pulled results are as good as computed ones: a second run is all cached.
    let r = bob.run(&b, &["run"]);
    assert_eq!(r.stages("stage_cached").len(), stages);

    // A clone that trusts someone else takes nothing, and says why.
    let carol = User::new();
    let c = clone_of(&a);
    let carol_key = carol.key(&c, "carol@lab");
    carol
        .run(&c, &["remote", "trust", "lab", &carol_key])
        .assert_ok();
    let r = carol.run(&c, &["pull"]);
    r.assert_ok();
    assert!(r.stages("stage_pulled").is_empty(), "{}", r.stderr);
    assert!(
        r.stderr.contains("which is not among trusted_keys"),
        "{}",
        r.stderr
    );
    assert!(
        !c.store().join("records").exists()
            || std::fs::read_dir(c.store().join("records"))
                .unwrap()
                .count()
                == 0
    );
}

#[test]
fn a_corrupted_or_missing_object_on_the_remote_is_a_miss_and_the_stage_is_computed() {
    let alice = User::new();
    let a = results_project();
    alice.run(&a, &["run", "window"]).assert_ok();
    let remote = tempfile::tempdir().unwrap();
    alice
        .run(
            &a,
            &[
                "remote",
                "add",
                "lab",
                remote.path().to_str().unwrap(),
                "--default",
            ],
        )
        .assert_ok();
    alice.run(&a, &["push", "window"]).assert_ok();

    // Flip one byte of the window stage's training windows on the remote.
    let train = hash_of(&a, "window", "train");
    let blob = remote.path().join("cas").join(&train);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let mut perm = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&blob, perm).unwrap();
    std::fs::write(&blob, &bytes).unwrap();

    let bob = User::new();
    let b = clone_of(&a);
    let r = bob.run(&b, &["run", "--pull", "window"]);
    r.assert_ok();
    // The stages upstream came from the remote; window was computed, with the right bytes.
    assert_eq!(r.stages("stage_finished"), ["window"], "{}", r.stderr);
    assert!(r.stages("stage_pulled").contains(&"ingest".to_string()));
    assert!(
        r.stderr.contains("does not hash to its name"),
        "{}",
        r.stderr
    );
    // This remote trusts anyone, which is said once, not per stage.
    assert_eq!(
        r.stderr.matches("lists no trusted_keys").count(),
        1,
        "{}",
        r.stderr
    );
    assert_eq!(hash_of(&b, "window", "train"), train);
    bob.run(&b, &["verify"]).assert_ok();

    // `verify --remote` finds the damage, naming the object and its record.
    let v = alice.run(&a, &["verify", "--remote"]);
    assert_eq!(v.code(), Some(1), "{}", v.stdout);
    assert!(
        v.stdout
            .contains(&format!("object {} of record", &train[..12]))
            && v.stdout.contains("(window) does not hash to its name"),
        "{}",
        v.stdout
    );
    // An object missing on the remote: the same.
    std::fs::remove_file(&blob).unwrap();
    let v = alice.run(&a, &["verify", "--remote", "lab"]);
    assert!(v.stdout.contains("(window) is missing"), "{}", v.stdout);
    let c = clone_of(&a);
    let r = bob.run(&c, &["pull", "window"]);
    r.assert_ok();
    assert!(
        r.stderr.contains("is missing on the remote"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("not on the remote"), "{}", r.stdout);
}

#[test]
fn remotes_are_checked_and_named_in_every_error() {
    let p = results_project();
    let u = User::new();
    let r = u.run(&p, &["push"]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("no remote: name one with --remote"),
        "{}",
        r.stderr
    );
    u.run(&p, &["remote", "add", "lab", "/nonexistent/magpipe-cache"])
        .assert_ok();
    let r = u.run(&p, &["pull", "--remote", "lab"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("remote `lab`") && r.stderr.contains("/nonexistent/magpipe-cache"),
        "{}",
        r.stderr
    );
    let r = u.run(&p, &["pull", "--remote", "lbb"]);
    assert!(
        r.stderr.contains("no remote `lbb` (remotes: lab)"),
        "{}",
        r.stderr
    );
    let r = u.run(&p, &["remote", "trust", "lab", "alice@lab:short"]);
    assert!(
        !r.ok() && r.stderr.contains("is not a public key"),
        "{}",
        r.stderr
    );
    let r = u.run(&p, &["remote", "add", "s3", "s3://bucket/prefix"]);
    r.assert_ok();
    let r = u.run(&p, &["push", "--remote", "s3"]);
    assert!(
        r.stderr.contains("S3 remotes are not supported"),
        "{}",
        r.stderr
    );
}

/// Delays spread over `0..3 × full`, from a fixed seed, so a failure reproduces.
fn kill_points(full: std::time::Duration, n: usize, seed: u64) -> Vec<std::time::Duration> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            // SplitMix64.
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            full.mul_f64(3.0 * (z % 10_000) as f64 / 10_000.0)
        })
        .collect()
}

/// Starts `args` as `user`, kills it with SIGKILL after `after`, and reaps it.
fn killed(user: &User, p: &Project, args: &[&str], after: std::time::Duration) {
    let mut child = p
        .cmd(args)
        .env("MAGPIPE_CONFIG_DIR", user.0.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill(); // SIGKILL; one that already finished is simply reaped
    let _ = child.wait();
}

#[test]
fn a_push_or_a_pull_killed_at_any_moment_leaves_the_remote_and_the_store_consistent() {
    let alice = User::new();
    let a = Project::real();
    alice.run(&a, &["run", "window"]).assert_ok();
    alice.key(&a, "alice@lab");
    let remote = tempfile::tempdir().unwrap();
    alice
        .run(
            &a,
            &[
                "remote",
                "add",
                "lab",
                remote.path().to_str().unwrap(),
                "--default",
            ],
        )
        .assert_ok();
    // How long a whole push takes here, to spread the kills over it.
    let scratch = tempfile::tempdir().unwrap();
    alice
        .run(
            &a,
            &["remote", "add", "scratch", scratch.path().to_str().unwrap()],
        )
        .assert_ok();
    let t0 = std::time::Instant::now();
    alice
        .run(&a, &["push", "window", "--remote", "scratch"])
        .assert_ok();
    let full = t0.elapsed();

    for after in kill_points(full, 8, 29) {
        killed(&alice, &a, &["push", "window"], after);
        // Whatever was published is whole: every record's objects are there and intact.
        let v = alice.run(&a, &["verify", "--remote"]);
        assert!(v.ok(), "after a push killed at {after:?}:\n{}", v.stdout);
    }
    alice.run(&a, &["push", "window"]).assert_ok();
    alice.run(&a, &["verify", "--remote", "lab"]).assert_ok();

    let bob = User::new();
    let b = clone_of(&a);
    let t0 = std::time::Instant::now();
    let c = clone_of(&a);
    bob.run(&c, &["pull", "window"]).assert_ok();
    let full = t0.elapsed();
    for after in kill_points(full, 8, 31) {
        killed(&bob, &b, &["pull", "window"], after);
        // No record without its objects in the store: what was pulled verifies, and a later run
        // treats the rest as not there.
        let v = bob.run(&b, &["verify"]);
        assert!(v.ok(), "after a pull killed at {after:?}:\n{}", v.stdout);
    }
    let r = bob.run(&b, &["run", "--pull", "window"]);
    r.assert_ok();
    assert!(r.stages("stage_finished").is_empty(), "{}", r.stderr);
    assert_eq!(
        hash_of(&b, "window", "train"),
        hash_of(&a, "window", "train")
    );
}

#[test]
fn two_pushers_of_the_same_results_both_succeed_and_leave_one_copy() {
    let alice = User::new();
    let bob = User::new();
    let a = results_project();
    alice.run(&a, &["run", "window"]).assert_ok();
    let remote = tempfile::tempdir().unwrap();
    alice
        .run(
            &a,
            &[
                "remote",
                "add",
                "lab",
                remote.path().to_str().unwrap(),
                "--default",
            ],
        )
        .assert_ok();
    let b = clone_of(&a);
    bob.run(&b, &["run", "window"]).assert_ok();
    alice.key(&a, "alice@lab");
    bob.key(&b, "bob@lab");
    let spawn = |u: &User, p: &Project| {
        p.cmd(&["push", "window"])
            .env("MAGPIPE_CONFIG_DIR", u.0.path())
            .output()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&alice, &a));
        let hb = s.spawn(|| spawn(&bob, &b));
        (
            Run::from(ha.join().unwrap().unwrap()),
            Run::from(hb.join().unwrap().unwrap()),
        )
    });
    ra.assert_ok();
    rb.assert_ok();
    let stages = std::fs::read_dir(a.store().join("records"))
        .unwrap()
        .count();
    assert_eq!(remote_files(remote.path(), "ac").len(), stages);
    alice.run(&a, &["verify", "--remote"]).assert_ok();
    // Nothing half-written is left visible.
    for f in remote_files(remote.path(), "cas") {
        assert!(!f.to_string_lossy().ends_with(".part"), "{}", f.display());
    }
}
