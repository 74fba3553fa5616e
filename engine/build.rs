//! Records the git commit of the repository the engine is built in (its own code, the CLI's and
//! the stages'); it goes into every record and lineage.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = match git(&["rev-parse", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=MAGPIPE_GIT_COMMIT={commit}");
    // Rerun when HEAD moves, the index changes (a commit or a checkout) or code is edited, so
    // the dirty flag is never stale.
    for f in [
        "../.git/HEAD",
        "../.git/index",
        "src",
        "../src",
        "../stages/src",
        "../worker/src",
    ] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
