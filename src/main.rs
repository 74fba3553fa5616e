//! The `magpipe` command line: the global options and one subcommand per file in `cmd/`.

mod cmd;

use std::process::ExitCode;

use clap::Parser;
use magpipe_engine::error::{RunError, SpecError};

#[derive(Parser)]
#[command(
    name = "magpipe",
    version,
    about = "Reproducible, cached pipeline for the MagFlux emerging-flux study"
)]
struct Cli {
    #[command(flatten)]
    global: cmd::Global,
    #[command(subcommand)]
    cmd: cmd::Cmd,
}

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
            // Escaped, so a control character from the user's input (a NUL in a stage name)
            // neither reaches the terminal raw nor breaks the one-line error.
            let line: String = format!("{e:#}")
                .chars()
                .flat_map(|c| {
                    if c.is_control() {
                        c.escape_default().collect::<Vec<_>>()
                    } else {
                        vec![c]
                    }
                })
                .collect();
            eprintln!("error: {line}");
            let usage = e.downcast_ref::<SpecError>().is_some()
                || matches!(
                    e.downcast_ref::<RunError>(),
                    Some(RunError::Usage(_) | RunError::Spec(_))
                );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
