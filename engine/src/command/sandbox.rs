//! The command stage's sandbox, namespaces first (as bubblewrap, nsjail and Bazel's
//! linux-sandbox do), Landlock inside them:
//!
//! - **its own processes**: user, PID, mount and IPC namespaces. The program's tree gets a fresh
//!   `/proc` that shows only its own processes, cannot signal anything outside, and ends with it:
//!   when the program exits, everything it started (`setsid`, double forks and all) is killed
//!   before magpipe looks at its outputs, and said in the stage's log;
//! - **no network** unless the stage declares `network: true`: a network namespace with only a
//!   loopback device that is down, so no TCP, UDP or abstract Unix socket reaches anything;
//! - **its own `/dev/shm`** (tmpfs), so Python's multiprocessing and joblib work, and its own
//!   `/tmp` unless something the stage reads or writes lives under `/tmp` (a tmpfs over it would
//!   hide that; `/tmp` then stays the machine's, read-only, and `TMPDIR` is the scratch folder);
//! - **files**: Landlock lets it read what it declared (its inputs, code, environment and the
//!   system's own files) and write its scratch folder alone; no TCP where the kernel can deny it
//!   (ABI ≥ 4); no signals and no abstract sockets outside its domain (ABI ≥ 6);
//! - **no privileges**: every capability dropped, `no_new_privs`.
//!
//! How the processes are arranged: magpipe forks C (`pre_exec` runs there), C unshares the
//! namespaces and forks G, the namespace's init; G mounts `/proc`, `/tmp` and `/dev/shm` and forks
//! P, which drops its privileges, restricts itself and execs the program. G waits for P, kills
//! whatever is left, reaps it, and writes P's wait status and the number killed to a pipe magpipe
//! reads; C waits for G. Any of the three dying kills the rest (parent-death signals), so a killed
//! magpipe leaves none of them. Everything the child side needs is prepared in the parent before
//! `fork`: after a fork of a threaded process nothing that may allocate or take a lock is safe,
//! so C, G and P make plain system calls only.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Where the sandbox stands for one run, as the record and `lineage` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforcement {
    /// `sandbox: strict` (or `off`).
    pub strict: bool,
    /// The Landlock ABI in force (0: none).
    pub landlock: i32,
    /// Own user, PID, mount and IPC namespaces (the process tree is contained).
    pub namespaces: bool,
    /// The stage declared `network: true`.
    pub network: bool,
    /// `/tmp` is a tmpfs of its own (not when a path the stage needs lives under `/tmp`).
    pub private_tmp: bool,
    /// What was asked for and is not enforced on this machine, in words.
    pub missing: Vec<String>,
}

impl Enforcement {
    pub fn enforced(&self) -> bool {
        self.strict && self.landlock > 0
    }

    /// Whether the program's network is cut off (a network namespace of its own).
    pub fn offline(&self) -> bool {
        self.namespaces && !self.network && self.strict
    }

    pub fn describe(&self) -> String {
        if !self.strict {
            return if self.namespaces {
                "off (processes contained)".into()
            } else {
                "off".into()
            };
        }
        let mut parts = Vec::new();
        if self.landlock > 0 {
            parts.push(format!("Landlock ABI {}", self.landlock));
        }
        if self.namespaces {
            parts.push(if self.private_tmp {
                "own processes, /proc, /tmp, /dev/shm".into()
            } else {
                "own processes, /proc, /dev/shm".into()
            });
        }
        parts.push(
            if self.network {
                "network declared"
            } else if self.offline() {
                "no network"
            } else if self.landlock >= 4 {
                "no TCP"
            } else {
                "network open"
            }
            .into(),
        );
        let head = if self.enforced() {
            "enforced"
        } else {
            "not enforced"
        };
        let mut text = format!("{head} ({})", parts.join(", "));
        if !self.missing.is_empty() {
            text.push_str(&format!("; not enforced: {}", self.missing.join("; ")));
        }
        text
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "enforced": self.enforced(),
            "abi": (self.landlock > 0).then_some(self.landlock),
            "processes": self.namespaces,
            "private_tmp": self.private_tmp,
            "network": if self.network { "declared" } else if self.offline() { "none" } else { "not confined" },
            "not_enforced": self.missing,
            "text": self.describe(),
        })
    }
}

/// The Landlock ABI this kernel offers (0: none).
pub fn kernel_abi() -> i32 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only returns
    // the ABI version (or -1); it reads and writes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    if v < 0 { 0 } else { v as i32 }
}

/// What the stage asked for.
pub struct Ask<'a> {
    pub strict: bool,
    pub network: bool,
    /// Paths (files or folders) read-only under Landlock.
    pub read: &'a [PathBuf],
    /// Folders read-write under Landlock.
    pub write: &'a [PathBuf],
    /// A tmpfs over `/tmp` (the caller checks that nothing it needs is there).
    pub private_tmp: bool,
    /// The one folder of the machine's that stays writable in the namespace, where every other
    /// mount is made read-only (Landlock has no right for chmod, chown or utimes).
    pub writable: Option<PathBuf>,
    /// A folder that the private `/tmp` names [`PRIVATE_TMPDIR`] (a symbolic link made there
    /// when the tmpfs is mounted), so the program's `TMPDIR` can be short.
    pub tmp_link: Option<PathBuf>,
}

/// The program's `TMPDIR` under a private `/tmp`: a link to its scratch folder's `tmp`. Unix
/// socket paths are limited to 107 bytes, and Python's multiprocessing (PyTorch's DataLoader
/// workers, a Manager, the forkserver) binds its sockets under `TMPDIR`: under a store's scratch
/// path they did not fit, and the DataLoader hung.
pub const PRIVATE_TMPDIR: &str = "/tmp/w";

/// Everything the child side needs, built before `fork`.
pub struct Prepared {
    landlock: Option<OwnedFd>,
    ns: Option<NsPlan>,
    pub enforcement: Enforcement,
}

/// The namespace set-up's constants, as C strings and bytes ready for system calls.
struct NsPlan {
    flags: libc::c_int,
    /// Bind-mounted writable over a read-only tree (`None`: the tree stays as it is).
    writable: Option<CString>,
    private_shm: bool,
    private_tmp: bool,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    uid_map_path: CString,
    gid_map_path: CString,
    setgroups_path: CString,
    root: CString,
    proc_dir: CString,
    proc_fs: CString,
    tmp_dir: CString,
    shm_dir: CString,
    tmpfs: CString,
    tmp_opts: CString,
    /// magpipe's argv and environment strings (start, end) in memory: G, a fork of magpipe that
    /// stays in the program's namespace, blanks its copy so its `/proc/1/cmdline` and
    /// `/proc/1/environ` read as nothing.
    scrub: [(usize, usize); 2],
    /// Landlock rules for what is mounted in the namespace (`/proc`, the private tmpfs): added
    /// there, after the mounts, since a rule made outside is on the folder the mount hides.
    late_rules: Vec<(CString, u64)>,
    /// (target, link): the link G makes in the private `/tmp` after mounting it.
    tmp_link: Option<(CString, CString)>,
}

/// This process's argv and environment areas, from `/proc/self/stat` (fields 48–51).
fn own_strings() -> [(usize, usize); 2] {
    static AREAS: OnceLock<[(usize, usize); 2]> = OnceLock::new();
    *AREAS.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        // Field 3 (the state) is the first after the command's name.
        let f: Vec<usize> = after
            .split_whitespace()
            .map(|w| w.parse().unwrap_or(0))
            .collect();
        let at = |n: usize| f.get(n - 3).copied().unwrap_or(0);
        let ok = |a: usize, b: usize| if a > 0 && b > a { (a, b) } else { (0, 0) };
        [ok(at(48), at(49)), ok(at(50), at(51))]
    })
}

impl NsPlan {
    fn new(
        network: bool,
        private_shm: bool,
        private_tmp: bool,
        writable: Option<&std::path::Path>,
    ) -> NsPlan {
        let c = |s: &str| CString::new(s).expect("no NUL");
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID;
        flags |= libc::CLONE_NEWIPC;
        if !network {
            flags |= libc::CLONE_NEWNET;
        }
        NsPlan {
            flags,
            writable: writable.map(|w| {
                CString::new(w.as_os_str().as_encoded_bytes()).expect("a path has no NUL")
            }),
            private_shm,
            private_tmp,
            // The same ids inside as outside: files the program writes stay the user's.
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
            uid_map_path: c("/proc/self/uid_map"),
            gid_map_path: c("/proc/self/gid_map"),
            setgroups_path: c("/proc/self/setgroups"),
            root: c("/"),
            proc_dir: c("/proc"),
            proc_fs: c("proc"),
            tmp_dir: c("/tmp"),
            shm_dir: c("/dev/shm"),
            tmpfs: c("tmpfs"),
            tmp_opts: c("mode=1777"),
            scrub: own_strings(),
            late_rules: Vec::new(),
            tmp_link: None,
        }
    }
}

/// Whether this machine lets an unprivileged process make the namespaces (checked once per
/// process by running `/bin/true` in them), and why not.
fn namespaces_work() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let prepared = Prepared {
                landlock: None,
                ns: Some(NsPlan::new(false, true, false, Some(&std::env::temp_dir()))),
                enforcement: Enforcement {
                    strict: true,
                    landlock: 0,
                    namespaces: true,
                    network: false,
                    private_tmp: false,
                    missing: Vec::new(),
                },
            };
            let mut cmd = std::process::Command::new("/bin/true");
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let run = prepared
                .spawn(&mut cmd)
                .and_then(|mut c| c.wait())
                .map_err(|e| format!("namespaces unavailable: {e}"))?;
            match run.status.code() {
                Some(0) => Ok(()),
                _ => Err(format!("namespaces unavailable: probe {:?}", run.status)),
            }
        })
        .clone()
}

/// Builds the confinement a stage asked for, with what this machine cannot enforce named.
pub fn prepare(ask: &Ask<'_>) -> Result<Prepared, String> {
    let mut enforcement = Enforcement {
        strict: ask.strict,
        landlock: 0,
        namespaces: false,
        network: ask.network,
        private_tmp: false,
        missing: Vec::new(),
    };
    let mut ns = match namespaces_work() {
        Ok(()) => {
            enforcement.namespaces = true;
            enforcement.private_tmp = ask.strict && ask.private_tmp;
            let mut plan = NsPlan::new(
                ask.network || !ask.strict,
                ask.strict,
                enforcement.private_tmp,
                ask.writable.as_deref().filter(|_| ask.strict),
            );
            if enforcement.private_tmp
                && let Some(target) = &ask.tmp_link
            {
                plan.tmp_link = Some((
                    CString::new(target.as_os_str().as_encoded_bytes()).expect("a path has no NUL"),
                    CString::new(PRIVATE_TMPDIR).expect("no NUL"),
                ));
            }
            Some(plan)
        }
        Err(why) => {
            enforcement.missing.push(format!(
                "{why}: other processes, their /proc files and signals, leftover processes \
                 that leave its process group{}",
                if ask.strict && !ask.network {
                    ", UDP and abstract Unix sockets, chmod and chown of your files"
                } else {
                    ""
                }
            ));
            None
        }
    };
    let landlock = if ask.strict {
        let (fd, abi) = landlock_ruleset(ask)?;
        enforcement.landlock = abi;
        if let (Some(n), true) = (ns.as_mut(), abi > 0) {
            use landlock::{ABI, Access, AccessFs};
            let level = ABI::from(abi);
            let read = AccessFs::from_read(level).bits();
            let all = AccessFs::from_all(level).bits();
            let c = |s: &str| CString::new(s).expect("no NUL");
            n.late_rules.push((c("/proc"), read));
            if n.private_shm {
                n.late_rules.push((c("/dev/shm"), all));
            }
            if n.private_tmp {
                n.late_rules.push((c("/tmp"), all));
            }
        }
        if abi == 0 {
            enforcement
                .missing
                .push("this kernel has no Landlock: files".into());
        }
        fd
    } else {
        None
    };
    Ok(Prepared {
        landlock,
        ns,
        enforcement,
    })
}

/// The Landlock ruleset (and the ABI it is at): `read` paths read-only, `write` folders
/// read-write.
fn landlock_ruleset(ask: &Ask<'_>) -> Result<(Option<OwnedFd>, i32), String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
        path_beneath_rules,
    };
    let kernel = kernel_abi();
    if kernel < 1 {
        return Ok((None, 0));
    }
    // The newest ABI both this build and the kernel know; rights of later ABIs stay unhandled.
    let level = kernel.min(7);
    let abi = ABI::from(level);
    let err = |e: landlock::RulesetError| format!("cannot build the sandbox: {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    if level >= 4 && !ask.network {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(err)?;
    }
    if level >= 6 {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(err)?;
    }
    let created = ruleset
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(ask.read, AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(ask.write, AccessFs::from_all(abi)))
        .map_err(err)?;
    let fd: Option<OwnedFd> = created.into();
    Ok(match fd {
        Some(fd) => (Some(fd), level),
        None => (None, 0),
    })
}

/// A started program: magpipe's child C, and the pipe on which G reports.
pub struct Running {
    pub child: std::process::Child,
    report: Option<std::fs::File>,
    /// No namespaces: the program leads a process group of its own, killed when it exits.
    group: bool,
}

/// How the program ended, and how many processes it left behind (killed).
pub struct Ended {
    pub status: std::process::ExitStatus,
    pub killed: u32,
}

/// Kills a running program and everything it started, from another thread than the one
/// waiting for it.
pub struct Killer {
    /// A pidfd of C, so the signal cannot reach another process that took its pid after it was
    /// reaped; `None` where the kernel has no pidfd_open (then C's pid).
    pidfd: Option<OwnedFd>,
    pid: libc::pid_t,
    group: bool,
}

impl Killer {
    /// SIGKILL to C: with namespaces its death kills G (PR_SET_PDEATHSIG), and G's, as the PID
    /// namespace's init, every process inside; without, the program's process group goes too.
    pub fn kill(&self) {
        match &self.pidfd {
            // SAFETY: pidfd_send_signal with a pidfd owned here and no siginfo.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                );
            },
            // SAFETY: kill of C, still unreaped (the waiter has not returned).
            None => unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            },
        }
        if self.group {
            // SAFETY: kill of the process group the program led (setpgid in the child).
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
    }
}

impl Running {
    /// What kills this program and its whole tree, for a watcher thread.
    pub fn killer(&self) -> Killer {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: pidfd_open of our own child, which is not reaped before `wait`.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        Killer {
            pidfd: (fd >= 0).then(|| {
                // SAFETY: a fresh fd the syscall returned, owned from here.
                unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd) }
            }),
            pid,
            group: self.group,
        }
    }

    /// Waits for the program and for everything it started to be gone.
    pub fn wait(&mut self) -> std::io::Result<Ended> {
        use std::io::Read;
        use std::os::unix::process::ExitStatusExt;
        let outer = self.child.wait()?;
        if self.group {
            // SAFETY: kill of the process group the program led (setpgid in the child).
            unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        }
        let mut buf = Vec::new();
        if let Some(r) = self.report.as_mut() {
            let _ = r.read_to_end(&mut buf);
        }
        if buf.len() == 8 {
            let status = i32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
            let killed = u32::from_le_bytes(buf[4..].try_into().expect("4 bytes"));
            return Ok(Ended {
                status: std::process::ExitStatus::from_raw(status),
                killed,
            });
        }
        // No report: G itself was killed (or there are no namespaces); C's status says how.
        Ok(Ended {
            status: outer,
            killed: 0,
        })
    }
}

impl Prepared {
    /// Starts `cmd` confined as prepared.
    pub fn spawn(&self, cmd: &mut std::process::Command) -> std::io::Result<Running> {
        use std::os::unix::process::CommandExt;
        let report = match &self.ns {
            Some(_) => {
                let mut fds = [0 as RawFd; 2];
                // SAFETY: pipe2 writes two fds into the array.
                if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: both fds are fresh and owned here.
                Some(unsafe {
                    (
                        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]),
                        <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fds[1]),
                    )
                })
            }
            None => None,
        };
        let hook = ChildHook {
            landlock: self.landlock.as_ref().map(|f| f.as_raw_fd()),
            ns: self.ns.as_ref().map(|n| n as *const NsPlan),
            report: report.as_ref().map_or(-1, |(_, w)| w.as_raw_fd()),
            parent: std::process::id() as libc::pid_t,
            max_fd: max_fd(),
        };
        // SAFETY: the hook makes only async-signal-safe system calls on data prepared before
        // the fork, which `self` keeps alive until `spawn` returns (the child has its own copy).
        unsafe { cmd.pre_exec(move || hook.run()) };
        let child = cmd.spawn()?;
        // Only G keeps the write end: with ours closed, the read end sees EOF once G is gone.
        Ok(Running {
            child,
            report: report.map(|(r, _w)| r),
            group: self.ns.is_none(),
        })
    }
}

/// The child side, in C (see the module's documentation).
#[derive(Clone, Copy)]
struct ChildHook {
    landlock: Option<RawFd>,
    ns: Option<*const NsPlan>,
    report: RawFd,
    /// magpipe's pid: C checks that it is still its parent once the parent-death signal is set.
    parent: libc::pid_t,
    /// The highest descriptor to close where `close_range` is missing.
    max_fd: libc::c_int,
}

/// The descriptor limit, read before fork.
fn max_fd() -> libc::c_int {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 4096;
    }
    r.rlim_cur.min(1 << 20) as libc::c_int
}

// SAFETY: the pointer is only read in the forked child, where the parent's memory is a copy.
unsafe impl Send for ChildHook {}
unsafe impl Sync for ChildHook {}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The parent's death kills this process (SIGKILL).
fn die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
}

/// Writes `bytes` to the file at `path` (open, write, close).
///
/// # Safety
/// `path` is a valid C string; called in a forked child, it allocates nothing.
unsafe fn write_file(path: &CString, bytes: &[u8]) -> std::io::Result<()> {
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        if n != bytes.len() as isize {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Closes every fd from 3 up, except `keep` (one by one up to `max_fd` where the kernel has no
/// `close_range`: std's error pipe must not stay open here, or `spawn` waits for this process).
fn close_from_3(keep: RawFd, max_fd: libc::c_int) {
    // SAFETY: close_range and close only close descriptors.
    unsafe {
        let ok = if keep >= 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32) == 0
                && libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32) == 0
        } else {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) == 0
        };
        if !ok {
            for fd in 3..max_fd {
                if fd != keep {
                    libc::close(fd);
                }
            }
        }
    }
}

/// Resets SIGCHLD to its default: an ignored SIGCHLD (inherited from whoever started magpipe)
/// would make the kernel reap children by itself and `waitpid` lose their status.
fn default_sigchld() {
    // SAFETY: sigaction with a zeroed struct and SIG_DFL.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut());
    }
}

impl ChildHook {
    fn run(self) -> std::io::Result<()> {
        // SAFETY: every call below is a plain system call on memory prepared before the fork.
        unsafe {
            die_with_parent()?;
            // magpipe died before the signal was armed: nobody would end this process.
            if libc::getppid() != self.parent {
                libc::_exit(1);
            }
            let Some(ns) = self.ns else {
                // No namespaces: its own process group, killed when it exits; then the
                // restrictions.
                libc::setpgid(0, 0);
                return self.restrict();
            };
            let ns = &*ns;
            default_sigchld();
            check(libc::unshare(ns.flags))?;
            write_file(&ns.setgroups_path, b"deny")?;
            write_file(&ns.uid_map_path, &ns.uid_map)?;
            write_file(&ns.gid_map_path, &ns.gid_map)?;
            let g = libc::fork();
            check(g)?;
            if g > 0 {
                self.relay(g);
            }
            // G: pid 1 of the new namespace.
            die_with_parent()?;
            // Its memory is magpipe's (environment included): no process may read it, and the
            // strings /proc shows to anyone are blanked.
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            for (start, end) in ns.scrub {
                if end > start {
                    libc::memset(start as *mut libc::c_void, 0, end - start);
                }
            }
            let none = std::ptr::null::<libc::c_char>();
            check(libc::mount(
                none,
                ns.root.as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            if let Some(w) = &ns.writable {
                read_only_but(&ns.root, w)?;
            }
            check(libc::mount(
                ns.proc_fs.as_ptr(),
                ns.proc_dir.as_ptr(),
                ns.proc_fs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            for (on, dir) in [(ns.private_shm, &ns.shm_dir), (ns.private_tmp, &ns.tmp_dir)] {
                if on {
                    check(libc::mount(
                        ns.tmpfs.as_ptr(),
                        dir.as_ptr(),
                        ns.tmpfs.as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        ns.tmp_opts.as_ptr().cast(),
                    ))?;
                }
            }
            if let Some((target, link)) = &ns.tmp_link {
                check(libc::symlink(target.as_ptr(), link.as_ptr()))?;
            }
            let p = libc::fork();
            check(p)?;
            if p > 0 {
                self.init(p);
            }
            // P: the program.
            die_with_parent()?;
            drop_capabilities();
            if let Some(fd) = self.landlock {
                for (path, access) in &ns.late_rules {
                    add_rule(fd, path, *access)?;
                }
            }
            self.restrict()
        }
    }

    /// P's last steps before exec: every inherited descriptor closed at exec (magpipe's own
    /// are close-on-exec, but whatever magpipe inherited, a jobserver pipe say, is not), no new
    /// privileges, then the Landlock domain.
    fn restrict(self) -> std::io::Result<()> {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC and fcntl only set flags.
        unsafe {
            if libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            ) != 0
            {
                for fd in 3..self.max_fd {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
        }
        if let Some(fd) = self.landlock {
            // SAFETY: plain system calls.
            unsafe {
                check(libc::prctl(
                    libc::PR_SET_NO_NEW_PRIVS,
                    1 as libc::c_ulong,
                    0,
                    0,
                    0,
                ))?;
                if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// C: waits for G and exits as it did. Never returns.
    fn relay(self, g: libc::pid_t) -> ! {
        close_from_3(-1, self.max_fd);
        let mut status = 0;
        // SAFETY: waitpid and _exit are plain system calls.
        unsafe {
            while libc::waitpid(g, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR {
            }
            libc::_exit(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            })
        }
    }

    /// G: reaps until P exits, kills and reaps what P left behind, reports. Never returns.
    fn init(self, p: libc::pid_t) -> ! {
        close_from_3(self.report, self.max_fd);
        let mut status = 0;
        // What P's status reads as if it was never seen (exit 127).
        let mut p_status = 127 << 8;
        // SAFETY: waitpid, kill, write and _exit are plain system calls.
        unsafe {
            loop {
                let w = libc::waitpid(-1, &mut status, 0);
                if w == p {
                    p_status = status;
                    break;
                }
                if w < 0 && *libc::__errno_location() != libc::EINTR {
                    break;
                }
            }
            // Those that ended on their own (zombies handed to init when P exited) are not
            // counted as left behind.
            while libc::waitpid(-1, &mut status, libc::WNOHANG) > 0 {}
            let mut killed: u32 = 0;
            if libc::kill(-1, libc::SIGKILL) == 0 {
                while libc::waitpid(-1, &mut status, 0) > 0 {
                    killed += 1;
                }
            }
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&p_status.to_le_bytes());
            msg[4..].copy_from_slice(&killed.to_le_bytes());
            libc::write(self.report, msg.as_ptr().cast(), msg.len());
            libc::_exit(0)
        }
    }
}

/// Makes every mount read-only except a writable bind of `writable` (in the namespace's own
/// mount tree: nothing outside changes). Landlock cannot deny chmod, chown or utimes; a
/// read-only mount can.
///
/// # Safety
/// Plain system calls; both are valid C strings.
unsafe fn read_only_but(root: &CString, writable: &CString) -> std::io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let setattr = |path: &CString, set: u64, clr: u64| -> std::io::Result<()> {
        let attr = MountAttr {
            attr_set: set,
            attr_clr: clr,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: mount_setattr reads `attr`, of the size given.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                path.as_ptr(),
                AT_RECURSIVE,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    unsafe {
        check(libc::mount(
            writable.as_ptr(),
            writable.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
    }
    setattr(root, MOUNT_ATTR_RDONLY, 0)?;
    setattr(writable, 0, MOUNT_ATTR_RDONLY)
}

/// Adds a path-beneath rule to a Landlock ruleset, from inside the namespace.
///
/// # Safety
/// Plain system calls; `path` is a valid C string.
unsafe fn add_rule(ruleset: RawFd, path: &CString, access: u64) -> std::io::Result<()> {
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        check(fd)?;
        let attr = PathBeneath {
            allowed_access: access,
            parent_fd: fd,
        };
        // LANDLOCK_RULE_PATH_BENEATH = 1
        let r = libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            1 as libc::c_int,
            &attr as *const PathBeneath,
            0u32,
        );
        libc::close(fd);
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Drops every capability the namespace gave (bounding, ambient, effective, permitted,
/// inheritable), so the program is an ordinary user inside it and cannot undo the mounts.
fn drop_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // SAFETY: prctl and capset with valid, fully initialised arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        for cap in 0..64 {
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        libc::syscall(libc::SYS_capset, &header, data.as_ptr());
    }
}
