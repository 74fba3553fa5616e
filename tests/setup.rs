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
