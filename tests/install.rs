//! `make install`: binaries of a sensible size, with their debug info beside them so backtraces
//! keep file and line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn size(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .len()
}

fn readelf(args: &[&str], file: &Path) -> String {
    let out = Command::new("readelf")
        .args(args)
        .arg(file)
        .output()
        .expect("readelf (binutils) runs");
    assert!(out.status.success(), "readelf {args:?} {}", file.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn make_install_ships_small_binaries_whose_debug_info_lies_beside_them() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let prefix = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // `-o build -o setup`: install what this test run built, without a nested cargo build
    // replacing binaries other tests are running.
    let out = Command::new("make")
        .args(["-s", "-o", "build", "-o", "setup", "install"])
        .arg(format!("PREFIX={}", prefix.path().display()))
        .current_dir(&repo)
        .output()
        .expect("make runs");
    assert!(
        out.status.success(),
        "make install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = PathBuf::from(env!("CARGO_BIN_EXE_magpipe"));
    let built = built.parent().unwrap();
    let bin = prefix.path().join("bin");
    for b in ["magpipe", "magpipe-worker"] {
        let installed = bin.join(b);
        let debug = bin.join(".debug").join(format!("{b}.debug"));
        assert!(
            size(&installed) * 4 < size(&built.join(b)),
            "{b}: {} bytes installed against {} built",
            size(&installed),
            size(&built.join(b))
        );
        // The binary names its debug file, which holds the line tables (compressed).
        let link = readelf(&["--string-dump=.gnu_debuglink"], &installed);
        assert!(link.contains(&format!("{b}.debug")), "{b}: {link}");
        assert!(
            !readelf(&["-S", "-W"], &installed).contains(".debug_line"),
            "{b} still carries its line tables"
        );
        let sections = readelf(&["-S", "-W"], &debug);
        assert!(sections.contains(".debug_line"), "{b}.debug: {sections}");
    }
    let v = Command::new(bin.join("magpipe"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("magpipe "));
    // The installed worker finds libtorch through its rpath and says which it runs.
    let w = Command::new(bin.join("magpipe-worker"))
        .arg("info")
        .output()
        .unwrap();
    assert!(
        w.status.success(),
        "the installed worker did not run: {}",
        String::from_utf8_lossy(&w.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&w.stdout).expect("info is JSON");
    assert!(
        info["libtorch_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.13.0")),
        "{info}"
    );
}
