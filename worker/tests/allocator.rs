//! Freed tensor memory stays in the worker: a training step does not fault its pages in again.
//! Counted in minor page faults of the real worker process (not timed), against the same run with
//! glibc's defaults.

use std::process::Command;

/// Minor page faults of one `bench-train 1 STEPS` run of the worker.
fn faults(steps: u32, malloc_default: bool) -> i64 {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_magpipe-worker"));
    cmd.args(["bench-train", "1", &steps.to_string()])
        .env_remove("GLIBC_TUNABLES")
        .stdout(std::process::Stdio::null());
    if malloc_default {
        cmd.env("MAGPIPE_MALLOC", "default");
    } else {
        cmd.env_remove("MAGPIPE_MALLOC");
    }
    // Reaped by wait4 below, which also returns its resource usage (std's wait does not).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; wait4 reaps exactly our child, whose
    // `Child` handle is never waited on after this.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    ru.ru_minflt
}

#[test]
fn training_steps_reuse_freed_memory_instead_of_faulting_it_in() {
    // The difference between 4 and 12 steps is the cost of 8 steps, start-up excluded.
    let per_steps = |default| faults(12, default) - faults(4, default);
    let glibc = per_steps(true);
    let ours = per_steps(false);
    eprintln!("minor faults for 8 steps: glibc defaults {glibc}, magpipe {ours}");
    assert!(
        glibc > 10_000,
        "the default allocator faulted only {glibc} times"
    );
    assert!(
        ours * 10 < glibc,
        "8 steps still fault {ours} times (glibc's defaults: {glibc})"
    );
}
