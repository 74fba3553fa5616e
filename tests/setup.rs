//! The setup refuses a shell-exported libtorch that is not the project's pinned one.

use std::process::Command;

fn check_env(vars: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("make");
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-s", "check-env"])
        .env_remove("LIBTORCH")
        .env_remove("LIBTORCH_USE_PYTORCH");
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().expect("make is installed")
}

#[test]
fn foreign_libtorch_in_the_shell_is_refused_with_the_fix() {
    assert!(check_env(&[]).status.success());
    assert!(
        check_env(&[("LIBTORCH", ".venv/libtorch")])
            .status
            .success()
    );
    for vars in [
        [("LIBTORCH", "/opt/libtorch")],
        [("LIBTORCH_USE_PYTORCH", "1")],
    ] {
        let out = check_env(&vars);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unset LIBTORCH LIBTORCH_USE_PYTORCH"), "{err}");
    }
}

fn disk_check(vars: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("make");
    // Not as a sub-make of `make test`: make's own lines would say make[1].
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-s", "--no-print-directory", "disk-check"])
        .env_remove("MAKELEVEL")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS");
    for (k, v) in vars {
        c.arg(format!("{k}={v}"));
    }
    c.output().expect("make is installed")
}

#[test]
fn make_test_says_first_when_the_disk_cannot_hold_what_it_builds() {
    // More than any disk here: refused, in one line that says what is needed, what is there,
    // and how to go on anyway.
    let out = disk_check(&[("TEST_DISK_GB", "1000000")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // The cause in one line; make adds its own "Error 1" line after it.
    assert_eq!(
        stderr.lines().filter(|l| !l.starts_with("make")).count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.starts_with("error: make test needs about 1000000 GB in ")
            && stderr.contains("built and installed here so far: ")
            && stderr.contains("free on its disk: ")
            && stderr.contains("DISK_CHECK=0"),
        "{stderr}"
    );
    // Room enough, or the check turned off: silent.
    for vars in [
        [("TEST_DISK_GB", "0"), ("DISK_CHECK", "1")],
        [("TEST_DISK_GB", "1000000"), ("DISK_CHECK", "0")],
    ] {
        let out = disk_check(&vars);
        assert!(out.status.success(), "{vars:?}: {:?}", out);
        assert!(out.stderr.is_empty() && out.stdout.is_empty(), "{out:?}");
    }
}
