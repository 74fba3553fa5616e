//! The command stage's sandbox: Landlock rules that let a command read what it declared (its
//! inputs, code, environment and the system's own files) and write its scratch folder alone,
//! with no TCP where the kernel can deny it (ABI ≥ 4).
//!
//! The rules are built in the parent, before `fork`; the child only makes two system calls in
//! `pre_exec` (`prctl(PR_SET_NO_NEW_PRIVS)` and `landlock_restrict_self`), because after a fork
//! of a threaded process nothing that may allocate or take a lock is safe.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Where the sandbox stands for one run, as the record and `lineage` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// Landlock at this ABI, with TCP denied when `abi >= 4`.
    Landlock { abi: i32 },
    /// `sandbox: off` in the stage.
    Off,
    /// Asked for, but the kernel has no Landlock (or it is disabled).
    NotEnforced { why: String },
}

impl Enforcement {
    pub fn enforced(&self) -> bool {
        matches!(self, Enforcement::Landlock { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            Enforcement::Landlock { abi } if *abi >= 4 => {
                format!("enforced (Landlock ABI {abi}, no TCP)")
            }
            Enforcement::Landlock { abi } => format!("enforced (Landlock ABI {abi})"),
            Enforcement::Off => "off".into(),
            Enforcement::NotEnforced { why } => format!("not enforced ({why})"),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (enforced, abi) = match self {
            Enforcement::Landlock { abi } => (true, Some(*abi)),
            _ => (false, None),
        };
        serde_json::json!({"enforced": enforced, "abi": abi, "text": self.describe()})
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

/// A ruleset ready to be applied in the child.
pub struct Prepared {
    fd: Option<OwnedFd>,
    pub enforcement: Enforcement,
}

/// Builds the ruleset: `read` paths (files or folders) read-only, `write` folders read-write.
/// Paths that do not exist are left out (a system folder some machines lack).
pub fn prepare(read: &[PathBuf], write: &[PathBuf]) -> Result<Prepared, String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
        path_beneath_rules,
    };
    let kernel = kernel_abi();
    if kernel < 1 {
        return Ok(Prepared {
            fd: None,
            enforcement: Enforcement::NotEnforced {
                why: "this kernel has no Landlock".into(),
            },
        });
    }
    // The newest ABI both this build and the kernel know; rights of later ABIs stay unhandled.
    let level = kernel.min(7);
    let abi = ABI::from(level);
    let err = |e: landlock::RulesetError| format!("cannot build the sandbox: {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?;
    if level >= 4 {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(err)?;
    }
    let created = ruleset
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(read, AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(write, AccessFs::from_all(abi)))
        .map_err(err)?;
    let fd: Option<OwnedFd> = created.into();
    Ok(Prepared {
        enforcement: match fd {
            Some(_) => Enforcement::Landlock { abi: level },
            None => Enforcement::NotEnforced {
                why: "the kernel refused a Landlock ruleset".into(),
            },
        },
        fd,
    })
}

impl Prepared {
    /// What the child runs between `fork` and `exec`: the parent's death kills it (so a killed
    /// magpipe leaves no command writing into a scratch folder), then the ruleset, if any.
    pub fn child_hook(&self) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
        let fd = self.fd.as_ref().map(|f| f.as_raw_fd());
        move || {
            // SAFETY: prctl and landlock_restrict_self are plain system calls, safe after fork.
            unsafe {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = fd {
                    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        }
    }
}

impl Prepared {
    /// The child hook of an unsandboxed command: only the parent-death signal.
    pub fn none_hook() -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
        Prepared {
            fd: None,
            enforcement: Enforcement::Off,
        }
        .child_hook()
    }
}
