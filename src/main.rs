//! The `magpipe` command line: the global options and one subcommand per file in `cmd/`.

mod cmd;

use std::process::ExitCode;

use clap::Parser;
use magpipe_engine::error::{RunError, SpecError, printable};

use cmd::Cli;

fn main() -> ExitCode {
    quiet_on_a_closed_stdout();
    let mut cli = Cli::parse();
    if let Err(e) = cli.global.enter_project() {
        eprintln!("error: the pipeline file's folder: {e}");
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MAGPIPE_LOG"))
        .init();
    let ctx = cmd::Ctx::new(&cli.global);
    match cmd::run(&ctx, &cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", printable(&format!("{e:#}")));
            let usage = e.downcast_ref::<SpecError>().is_some()
                || matches!(
                    e.downcast_ref::<RunError>(),
                    Some(RunError::Usage(_) | RunError::Spec(_))
                );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// `magpipe status | head -3`: once the reader has gone, end quietly as Unix tools do (status
/// 141, as if killed by SIGPIPE) instead of panicking in `println!`. SIGPIPE itself stays
/// ignored, so a worker that dies while magpipe writes to it is an error, not magpipe's death.
fn quiet_on_a_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
