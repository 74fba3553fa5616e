//! A corpus of hostile command programs, each the smallest program that tries one escape, run
//! as a new user's stage would be, under the default `sandbox: strict`. Every case is contained
//! or refused: one line, no panic, the store byte-identical except for what a successful stage
//! legitimately adds, and nothing outside the store changed (the project's files, a victim
//! folder beside it with a secret and a file the program links to). These tests need user
//! namespaces and Landlock and fail, not skip, on a machine without them.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Project, Run, snapshot_without_runs};

const SEED: &str = "import os\nopen(os.environ['MAGPIPE_OUT_DATA'], 'w').write('1\\n2\\n3\\n')\n";

fn pipeline(py: &str, evil: &str) -> String {
    format!(
        r#"version: 1
stages:
  seed:
    kind: command
    run: [python, seed.py]
    code: [seed.py]
    env: {{python: {py}}}
    outputs: {{data: {{path: data.txt}}}}
  evil:
    kind: command
    run: [python, evil.py]
    code: [evil.py]
    env: {{python: {py}}}
    inputs: {{data: seed.data}}
{evil}"#
    )
}

const FILE_OUT: &str = "    outputs: {out: {path: out.txt}}\n";

/// Every file under a folder with its mode, size, content hash (or link target): a change of
/// mode through a link counts as a change.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link → {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                todo.push(p.clone());
                format!("dir {:o}", m.mode())
            } else {
                let b = std::fs::read(&p).unwrap_or_default();
                format!("{:o} {} {}", m.mode(), b.len(), blake3::hash(&b).to_hex())
            };
            out.insert(rel, what);
        }
    }
    out
}

struct Case {
    p: Project,
    victim: tempfile::TempDir,
    store_before: BTreeMap<String, (u64, String)>,
    outside_before: BTreeMap<String, String>,
}

impl Case {
    /// A project whose `evil` stage runs `program` (its outputs declared by `outputs`); the seed
    /// stage has run, so the store holds its record.
    fn new(program: &str, outputs: &str) -> Case {
        let py = Project::python();
        let p = Project::outside_tmp(&pipeline(&py.display().to_string(), outputs));
        std::fs::write(p.path().join("seed.py"), SEED).unwrap();
        let victim = common::outside_tmp();
        std::fs::write(victim.path().join("secret.txt"), "the victim's secret").unwrap();
        std::fs::set_permissions(
            victim.path().join("secret.txt"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let program = program.replace("VICTIM", &victim.path().display().to_string());
        std::fs::write(p.path().join("evil.py"), program).unwrap();
        p.run(&["run", "seed"]).assert_ok();
        let store_before = snapshot_without_runs(&p.store());
        let mut c = Case {
            p,
            victim,
            store_before,
            outside_before: BTreeMap::new(),
        };
        c.outside_before = c.outside();
        c
    }

    fn outside(&self) -> BTreeMap<String, String> {
        let mut all: BTreeMap<String, String> = tree(self.victim.path())
            .into_iter()
            .map(|(k, v)| (format!("victim/{k}"), v))
            .collect();
        all.extend(
            tree(self.p.path())
                .into_iter()
                .filter(|(k, _)| !k.starts_with("artifacts"))
                .map(|(k, v)| (format!("project/{k}"), v)),
        );
        all
    }

    fn run(&self) -> Run {
        let r = self.p.run(&["run"]);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        r
    }

    /// The run failed with one error line containing `needle`; store and outside unchanged.
    fn refused(&self, what: &str, needle: &str) -> String {
        let r = self.run();
        assert!(!r.ok(), "{what}: the run succeeded:\n{}", r.stderr);
        let errs = r.error_lines();
        assert_eq!(errs.len(), 1, "{what}: {errs:?}");
        assert!(errs[0].contains(needle), "{what}: {}", errs[0]);
        assert_eq!(
            snapshot_without_runs(&self.p.store()),
            self.store_before,
            "{what}: the store changed"
        );
        self.unchanged_outside(what);
        errs[0].to_string()
    }

    /// The run succeeded; `verify` is clean; nothing outside the store changed.
    fn contained(&self, what: &str) -> Run {
        let r = self.run();
        assert!(r.ok(), "{what}: {}", r.stderr);
        self.p.run(&["verify"]).assert_ok();
        self.unchanged_outside(what);
        r
    }

    fn unchanged_outside(&self, what: &str) {
        assert_eq!(
            self.outside(),
            self.outside_before,
            "{what}: a file outside the store changed"
        );
    }

    fn output(&self) -> String {
        let r = self.p.run(&["artifact", "evil", "out"]);
        r.assert_ok();
        std::fs::read_to_string(r.stdout.trim()).unwrap()
    }

    fn log(r: &Run) -> String {
        r.events
            .iter()
            .filter(|e| e["event"] == "stage_log")
            .map(|e| e["msg"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn a_declared_output_that_is_a_link_a_fifo_or_a_socket_is_refused_and_never_followed() {
    let c = Case::new(
        "import os\nos.symlink('VICTIM/secret.txt', os.environ['MAGPIPE_OUT_OUT'])\n",
        FILE_OUT,
    );
    let err = c.refused("a link", "output `out` (out.txt) is a symbolic link");
    assert!(err.contains("not a regular file"), "{err}");
    // The link's target keeps its mode (magpipe used to chmod through the link).
    assert_eq!(
        std::fs::metadata(c.victim.path().join("secret.txt"))
            .unwrap()
            .mode()
            & 0o777,
        0o644
    );

    let c = Case::new(
        "import os\nos.mkfifo(os.environ['MAGPIPE_OUT_OUT'])\n",
        FILE_OUT,
    );
    c.refused("a FIFO", "output `out` (out.txt) is a FIFO (named pipe)");

    let c = Case::new(
        "import os, socket\ns = socket.socket(socket.AF_UNIX)\ns.bind(os.environ['MAGPIPE_OUT_OUT'])\n",
        FILE_OUT,
    );
    c.refused("a socket", "output `out` (out.txt) is a Unix socket");

    let c = Case::new(
        "import os\nd = os.environ['MAGPIPE_OUT_OUT']\nos.makedirs(d)\nos.symlink('VICTIM/secret.txt', os.path.join(d, 'a.txt'))\n",
        "    outputs: {out: {path: out/}}\n",
    );
    c.refused("a link in a folder output", "a symbolic link");

    let c = Case::new(
        "import os\nos.symlink('VICTIM', os.environ['MAGPIPE_OUT_OUT'])\n",
        "    outputs: {out: {path: out/}}\n",
    );
    c.refused(
        "a folder output that is a link",
        "is a symbolic link, not a folder",
    );

    // An output in a subfolder whose folder is a link to the victim's: magpipe would copy
    // secret.txt through it.
    let c = Case::new(
        "import os, shutil\nd = os.path.dirname(os.environ['MAGPIPE_OUT_OUT'])\nshutil.rmtree(d)\nos.symlink('VICTIM', d)\n",
        "    outputs: {out: {path: sub/secret.txt}}\n",
    );
    c.refused(
        "a link on the way to an output",
        "output `out` (sub/secret.txt): sub is a symbolic link, not a folder",
    );
    // The same output written plainly is committed, in its subfolder.
    let c = Case::new(
        "import os\nopen(os.environ['MAGPIPE_OUT_OUT'], 'w').write('plain')\n",
        "    outputs: {out: {path: sub/secret.txt}}\n",
    );
    c.contained("an output in a subfolder");
    assert_eq!(c.output(), "plain");
}

#[test]
fn files_outside_keep_their_modes_times_and_bytes() {
    // Landlock has no right for chmod, chown or utimes: the read-only mount tree stops them.
    let program = r#"
import os
tried = {}
for name, f in [
    ("chmod", lambda: os.chmod("VICTIM/secret.txt", 0)),
    ("chmod-dir", lambda: os.chmod("VICTIM", 0)),
    ("utime", lambda: os.utime("VICTIM/secret.txt", (0, 0))),
    ("truncate", lambda: os.truncate("VICTIM/secret.txt", 0)),
    ("chown", lambda: os.chown("VICTIM/secret.txt", 65534, 65534)),
    ("store", lambda: os.chmod(os.path.dirname(os.path.dirname(os.getcwd())), 0)),
]:
    try:
        f()
        tried[name] = "done"
    except OSError as e:
        tried[name] = e.strerror
open(os.environ["MAGPIPE_OUT_OUT"], "w").write(repr(tried))
"#;
    let c = Case::new(program, FILE_OUT);
    let mtime = std::fs::metadata(c.victim.path().join("secret.txt"))
        .unwrap()
        .modified()
        .unwrap();
    c.contained("chmod, chown, utime, truncate");
    assert!(!c.output().contains("done"), "{}", c.output());
    assert_eq!(
        std::fs::metadata(c.victim.path().join("secret.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    assert_eq!(
        std::fs::metadata(c.p.store()).unwrap().mode() & 0o777,
        0o755,
        "the store's folder changed mode"
    );
}

#[test]
fn processes_left_behind_are_killed_before_commit_and_cannot_touch_the_object() {
    // The issue's program: fork, setsid, close stdio, keep the output open, append later.
    let program = r#"
import os, sys, time
out = os.environ["MAGPIPE_OUT_OUT"]
f = open(out, "w")
f.write("what the record says\n")
f.flush()
middle = os.fork()
if middle == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(0); os.close(1); os.close(2)
        time.sleep(1.5)
        f.write("appended after the stage ended\n")
        f.flush()
        os.replace(out, out)  # and a rename over it, for good measure
        time.sleep(60)
    os._exit(0)
os.waitpid(middle, 0)
"#;
    let c = Case::new(program, FILE_OUT);
    let r = c.contained("a survivor");
    let log = Case::log(&r);
    assert!(
        log.contains("the command left 1 process running when it exited; killed"),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(c.output(), "what the record says\n");
    c.p.run(&["verify"]).assert_ok();
    // No process of the stage survives: none has the survivor's sleep in its command line
    // with our scratch folder as its working directory.
    let store = c.p.store().canonicalize().unwrap();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) {
            assert!(
                !cwd.starts_with(&store),
                "process {:?} still runs in the store ({})",
                e.file_name(),
                cwd.display()
            );
        }
    }
}

#[test]
fn the_program_sees_only_its_own_processes_and_cannot_signal_or_read_others() {
    // Alive however long the test takes: a victim that exited on its own would read as killed.
    let mut victim = std::process::Command::new("sleep")
        .arg("infinity")
        .spawn()
        .unwrap();
    let program = format!(
        r#"
import os, json, signal
seen = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
leaks = []
for pid in seen + [{victim}, os.getppid(), 1]:
    for what in ("environ", "cmdline", "maps", "mem"):
        try:
            data = open(f"/proc/{{pid}}/{{what}}", "rb").read(4096)
            if pid != os.getpid() and data.strip(b"\0"):
                leaks.append(f"{{pid}}/{{what}}")
        except OSError:
            pass
killed = []
for pid in [{victim}, os.getppid(), 1]:
    try:
        os.kill(pid, signal.SIGTERM)
        killed.append(pid)
    except OSError:
        pass
# Every process it may signal (signal 0 sends nothing): magpipe, the test, the machine's.
try:
    os.kill(-1, 0)
    killed.append(-1)
except OSError:
    pass
json.dump({{"seen": seen, "leaks": leaks, "killed": killed}}, open(os.environ["MAGPIPE_OUT_OUT"], "w"))
"#,
        victim = victim.id()
    );
    let c = Case::new(&program, FILE_OUT);
    c.contained("/proc and signals");
    let v: serde_json::Value = serde_json::from_str(&c.output()).unwrap();
    // Its own /proc: the namespace's init and the program itself.
    assert!(
        v["seen"].as_array().unwrap().len() <= 2,
        "the program saw other processes: {v}"
    );
    assert_eq!(v["leaks"], serde_json::json!([]), "{v}");
    assert_eq!(v["killed"], serde_json::json!([]), "{v}");
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the outside process was signalled"
    );
    victim.kill().unwrap();
    let _ = victim.wait();
}

#[test]
fn magpipes_environment_is_out_of_reach() {
    let program = r#"
import os
found = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            if b"MAGPIPE_TEST_SECRET" in open(f"/proc/{pid}/environ", "rb").read():
                found.append(pid)
        except OSError:
            pass
if "MAGPIPE_TEST_SECRET" in os.environ:
    found.append("own")
open(os.environ["MAGPIPE_OUT_OUT"], "w").write(",".join(found))
"#;
    let c = Case::new(program, FILE_OUT);
    let r =
        c.p.cmd(&["run"])
            .env("MAGPIPE_TEST_SECRET", "AKIA-not-for-programs")
            .output()
            .unwrap();
    let r = Run::from(r);
    r.assert_ok();
    assert_eq!(c.output(), "", "the program read magpipe's environment");
}

#[test]
fn no_network_of_any_family_unless_declared_and_then_it_is_recorded_not_keyed() {
    use std::net::UdpSocket;
    let udp4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp6 = UdpSocket::bind("[::1]:0").ok();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let name = format!("magpipe-test-{}", std::process::id());
    let abstract_addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap();
    let unix = std::os::unix::net::UnixListener::bind_addr(&abstract_addr).unwrap();
    unix.set_nonblocking(true).unwrap();
    let program = format!(
        r#"
import os, socket, json
got = {{}}
def attempt(name, f):
    try:
        f()
        got[name] = "sent"
    except OSError as e:
        got[name] = type(e).__name__
def udp4():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x", ("127.0.0.1", {u4}))
def udp6():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.sendto(b"x", ("::1", {u6}))
def tcp():
    socket.create_connection(("127.0.0.1", {t}), timeout=2)
def abstract():
    s = socket.socket(socket.AF_UNIX)
    s.connect("\0{name}")
for n, f in [("udp4", udp4), ("udp6", udp6), ("tcp", tcp), ("abstract", abstract)]:
    attempt(n, f)
json.dump(got, open(os.environ["MAGPIPE_OUT_OUT"], "w"))
"#,
        u4 = udp4.local_addr().unwrap().port(),
        u6 = udp6.as_ref().map_or(9, |u| u.local_addr().unwrap().port()),
        t = tcp.local_addr().unwrap().port(),
    );
    let c = Case::new(&program, FILE_OUT);
    c.contained("network");
    let got: BTreeMap<String, String> = serde_json::from_str(&c.output()).unwrap();
    for (n, v) in &got {
        assert_ne!(v, "sent", "{n} went out: {got:?}");
    }
    let mut buf = [0u8; 8];
    udp4.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(udp4.recv(&mut buf).is_err(), "a UDP datagram arrived");
    if let Some(u) = &udp6 {
        u.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(u.recv(&mut buf).is_err(), "a UDP/IPv6 datagram arrived");
    }
    assert!(tcp.accept().is_err(), "a TCP connection arrived");
    assert!(
        unix.accept().is_err(),
        "an abstract-socket connection arrived"
    );

    // Declared: the datagrams go out; the key is the same, the record and lineage say so.
    let key = |c: &Case| -> String {
        let r = c.p.run(&["status", "--format", "json", "evil"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == "evil")
            .unwrap()["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = key(&c);
    c.p.set_pipeline(&c.p.pipeline().replace(
        "    run: [python, evil.py]",
        "    network: true\n    run: [python, evil.py]",
    ));
    assert_eq!(key(&c), before, "network: true changed the key");
    let r = c.p.run(&["run", "--force", "evil"]);
    r.assert_ok();
    let got: BTreeMap<String, String> = serde_json::from_str(&c.output()).unwrap();
    assert_eq!(got["udp4"], "sent", "{got:?}");
    assert!(
        udp4.recv(&mut buf).is_ok(),
        "the declared datagram did not arrive"
    );
    let lineage = c.p.run(&["lineage", "evil", "--format", "json"]);
    lineage.assert_ok();
    assert!(
        lineage.stdout.contains("network declared"),
        "{}",
        lineage.stdout
    );
}

#[test]
fn private_tmp_and_shm_let_multiprocessing_work_and_stay_private() {
    let marker = format!("magpipe-private-{}", std::process::id());
    let program = format!(
        r#"
import os, multiprocessing
lock = multiprocessing.Lock()  # a POSIX semaphore in /dev/shm
with lock:
    pass
try:
    open("/tmp/{marker}", "w").write("x")
    tmp = "private"
except OSError as e:
    tmp = "read-only" if e.errno == 30 else f"errno {{e.errno}}"
open("/dev/shm/{marker}", "w").write("x")
open(os.environ["MAGPIPE_OUT_OUT"], "w").write("ok, /tmp " + tmp)
"#
    );
    let c = Case::new(&program, FILE_OUT);
    let r = c.contained("private /tmp");
    assert!(
        !Case::log(&r).contains("Permission denied"),
        "{}",
        Case::log(&r)
    );
    // A project cloned under /tmp cannot have a tmpfs laid over /tmp (it would hide the project):
    // then /tmp stays the machine's, read-only to the stage (docs: the sandbox's layers).
    let under_tmp = c.p.path().canonicalize().unwrap().starts_with("/tmp");
    let want = if under_tmp {
        "ok, /tmp read-only"
    } else {
        "ok, /tmp private"
    };
    assert_eq!(c.output(), want);
    assert!(!Path::new("/tmp").join(&marker).exists());
    assert!(!Path::new("/dev/shm").join(&marker).exists());
}

#[test]
fn a_failure_is_blamed_on_the_sandbox_only_when_its_own_error_names_a_denied_path() {
    // joblib's warning says "Permission denied"; the failure is a KeyError.
    let c = Case::new(
        "import sys\nprint('UserWarning: [Errno 13] Permission denied.  joblib will operate in serial mode', file=sys.stderr)\n{}['alpha']\n",
        FILE_OUT,
    );
    let err = c.refused(
        "a KeyError",
        "the command exited with status 1: KeyError: 'alpha'",
    );
    assert!(!err.contains("sandbox"), "{err}");

    let c = Case::new("open('VICTIM/secret.txt').read()\n", FILE_OUT);
    let secret = c.victim.path().join("secret.txt");
    c.refused(
        "an undeclared read",
        &format!(
            "the command was denied a file it did not declare (sandbox): {}",
            secret.display()
        ),
    );
}

#[test]
fn no_descriptor_is_inherited_and_hard_links_and_modes_do_not_reach_the_store() {
    let program = r#"
import os
fds = []
for fd in range(3, 1024):
    try:
        os.fstat(fd)
        fds.append(fd)
    except OSError:
        pass
out = os.environ["MAGPIPE_OUT_OUT"]
open(out, "w").write(",".join(map(str, fds)))
os.chmod(out, 0o000)
os.chmod(os.getcwd(), 0o000)
"#;
    let c = Case::new(program, FILE_OUT);
    c.contained("fds and chmod");
    assert_eq!(c.output(), "", "descriptors were inherited");
    let obj = PathBuf::from(c.p.run(&["artifact", "evil", "out"]).stdout.trim());
    assert_eq!(
        std::fs::metadata(&obj).unwrap().mode() & 0o777,
        0o444,
        "the object has the program's mode"
    );
    assert_eq!(
        std::fs::read_dir(c.p.store().join("tmp")).unwrap().count(),
        0,
        "the scratch folder stayed"
    );

    // A hard link of its input into its output: under the sandbox it is refused (the input is
    // read-only to it); with the sandbox off the link is made and the output is committed as a
    // copy. The input object stays as it was either way.
    let program =
        "import os\nos.link(os.environ['MAGPIPE_IN_DATA'], os.environ['MAGPIPE_OUT_OUT'])\n";
    for (sandbox, linked) in [("", false), ("    sandbox: off\n", true)] {
        let c = Case::new(program, &format!("{sandbox}{FILE_OUT}"));
        let input = PathBuf::from(c.p.run(&["artifact", "seed", "data"]).stdout.trim());
        let r = c.run();
        assert_eq!(r.ok(), linked, "sandbox {sandbox:?}: {}", r.stderr);
        if r.ok() {
            let obj = PathBuf::from(c.p.run(&["artifact", "evil", "out"]).stdout.trim());
            assert_ne!(
                std::fs::metadata(&obj).unwrap().ino(),
                std::fs::metadata(&input).unwrap().ino(),
                "the output is the input's inode"
            );
            assert_eq!(std::fs::metadata(&obj).unwrap().nlink(), 1);
        } else {
            assert_eq!(r.error_lines().len(), 1, "{}", r.stderr);
        }
        c.p.run(&["verify"]).assert_ok();
        c.unchanged_outside("a hard link");
    }
}

#[test]
fn a_killed_magpipe_leaves_no_process_of_the_stage_behind() {
    // The program and a setsid'd grandchild both wait; magpipe is killed with SIGKILL.
    let program = r#"
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(0); os.close(1); os.close(2)
        time.sleep(120)
    os._exit(0)
print("waiting", flush=True)
time.sleep(120)
"#;
    let c = Case::new(program, FILE_OUT);
    let mut run =
        c.p.cmd(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    // Wait for the program's first line in the log, then kill magpipe.
    let stderr = run.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        lines.any(|l| l.unwrap().contains("\"msg\":\"waiting\"")),
        "the program never started"
    );
    let store = c.p.store().canonicalize().unwrap();
    let in_store = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(&store))
            })
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    };
    assert!(
        !in_store().is_empty(),
        "the stage's processes were not found"
    );
    run.kill().unwrap();
    run.wait().unwrap();
    let t0 = std::time::Instant::now();
    while !in_store().is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        in_store(),
        Vec::<String>::new(),
        "processes of the stage survived"
    );
    assert_eq!(
        snapshot_without_runs(&c.p.store())
            .keys()
            .filter(|k| k.starts_with("records/"))
            .count(),
        c.store_before
            .keys()
            .filter(|k| k.starts_with("records/"))
            .count()
    );
}
