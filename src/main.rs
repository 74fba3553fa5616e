//! The `magpipe` command line: the global options and one subcommand per file in `cmd/`.

mod cmd;

use std::process::ExitCode;

use clap::Parser;
use magpipe_engine::error::{RunError, SpecError, printable};

use cmd::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
