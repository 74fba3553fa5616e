//! `magpipe status | head -3`: every command that prints to stdout ends quietly when its reader
//! has gone (exit 0 or 141, as Unix tools killed by SIGPIPE), never with a panic.

mod common;

use std::process::Stdio;

use common::fixture_project;

#[test]
fn every_printing_command_ends_quietly_on_a_closed_pipe() {
    let p = fixture_project(&[13001, 13002], &[13003], &[13004], 64);
    p.run(&["run"]).assert_ok();
    for args in [
        &["status"][..],
        &["status", "--explain"],
        &["status", "--format", "json"],
        &["runs"],
        &["runs", "--json"],
        &["dag"],
        &["kinds"],
        &["lineage", "window"],
        &["lineage", "window", "--format", "md"],
        &["artifact", "window"],
        &["verify"],
        &["gc", "--dry-run"],
        &["docs", "print", "cli"],
        &["run"],
    ] {
        // The reader is gone before magpipe writes a byte: its first write gets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = p
            .cmd(args)
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert!(
            matches!(out.status.code(), Some(0 | 141)),
            "{args:?}: {:?} {stderr}",
            out.status
        );
    }
}
