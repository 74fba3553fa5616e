//! `magpipe docs`: the book's reference pages, generated from this binary (the clap definitions
//! of the CLI, the kinds with their param structs, the artifact contracts, the JSON schemas of
//! the forecast documents and the run's events), so that no page can drift from the code:
//! `tests/docs.rs` fails when a committed page differs from what this prints.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, Subcommand, ValueEnum};

use super::Cli;
use super::kinds::{self, GENERATED};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Print one generated page.
    Print {
        /// The page.
        #[arg(value_enum)]
        page: Page,
    },
    /// Write every generated page into DIR; with `--check`, write nothing and exit 1 when a
    /// page there differs from what this binary generates.
    Write {
        /// Where the pages go.
        #[arg(default_value = "docs/src/reference", value_parser = super::cli_path)]
        dir: PathBuf,
        /// Compare only; exit 1 naming every page that differs.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Page {
    Cli,
    Kinds,
    Contracts,
    Schemas,
}

const PAGES: [Page; 4] = [Page::Cli, Page::Kinds, Page::Contracts, Page::Schemas];

impl Page {
    fn file(self) -> &'static str {
        match self {
            Page::Cli => "cli.md",
            Page::Kinds => "kinds.md",
            Page::Contracts => "contracts.md",
            Page::Schemas => "schemas.md",
        }
    }
}

pub fn run(ctx: &super::Ctx, a: &Args) -> anyhow::Result<ExitCode> {
    let render = |p: Page| match p {
        Page::Cli => cli_page(),
        Page::Kinds => kinds::kinds_markdown(&ctx.registry),
        Page::Contracts => kinds::contracts_markdown(&ctx.registry),
        Page::Schemas => schemas_page(),
    };
    match &a.action {
        Action::Print { page } => {
            print!("{}", render(*page));
            Ok(ExitCode::SUCCESS)
        }
        Action::Write { dir, check } => {
            let mut stale = Vec::new();
            for p in PAGES {
                let path = dir.join(p.file());
                let page = render(p);
                let same = std::fs::read_to_string(&path).is_ok_and(|old| old == page);
                if *check {
                    if !same {
                        stale.push(path.display().to_string());
                    }
                } else if !same {
                    write(&path, &page)?;
                    println!("wrote {}", path.display());
                }
            }
            if stale.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "error: {} differ from this binary; run `make docs` (or `magpipe docs write`)",
                    stale.join(", ")
                );
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// Through the store's own atomic write: a reader never sees half a page, a failed write leaves
/// nothing behind.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(magpipe_engine::fsutil::write_atomic(
        dir,
        path,
        text.as_bytes(),
    )?)
}

/// Every command's `--help`, rendered at a fixed width so the page does not depend on the
/// terminal it was generated in.
fn cli_page() -> String {
    let mut cmd = Cli::command().term_width(100).max_term_width(100);
    cmd.build();
    let mut s = String::new();
    let _ = writeln!(s, "# Command-line reference\n\n{GENERATED}\n");
    s.push_str(
        "Each command's `--help`, as the binary prints it. Exit status: 0 on success, 1 when a \
         stage, a check or an audit fails, 2 on a usage or pipeline-file error; every error is \
         one line on stderr naming its cause and, for `pipeline.yaml`, its line and column.\n",
    );
    let help = |s: &mut String, c: &mut clap::Command, name: &str| {
        // Lines as the terminal shows them, without the padding clap leaves at their ends.
        let text = c.render_long_help().to_string();
        let lines: Vec<&str> = text.trim_end().lines().map(str::trim_end).collect();
        let _ = writeln!(s, "\n## {name}\n\n```text\n{}\n```", lines.join("\n"));
    };
    help(&mut s, &mut cmd, "magpipe");
    let mut subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .cloned()
        .collect();
    for sub in &mut subs {
        let name = format!("magpipe {}", sub.get_name());
        help(&mut s, sub, &name);
        let mut nested: Vec<clap::Command> = sub
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
            .cloned()
            .collect();
        for n in &mut nested {
            let nested_name = format!("{name} {}", n.get_name());
            help(&mut s, n, &nested_name);
        }
    }
    s
}

/// The JSON Schemas of what magpipe writes for programs to read: the forecast documents, the
/// outputs the Python package reads (runs, compare, status, lineage) and the events of
/// `--log-format json`.
fn schemas_page() -> String {
    use magpipe_engine::events::Event;
    use magpipe_stages::forecast::{REPLAY_SCHEMA, SCHEMA, report};
    let mut s = String::new();
    let _ = writeln!(s, "# JSON schemas\n\n{GENERATED}\n");
    s.push_str(
        "JSON Schemas (draft 2020-12) of the documents magpipe writes for other programs, \
         generated from the Rust types that write them, doc comments included. Fields are only \
         ever added within a schema version; anything else bumps it. What the fields mean for a \
         forecaster: [Operational forecasts](../guide/forecasts.md).\n",
    );
    let mut one = |title: &str, what: &str, schema: schemars::Schema| {
        let json = serde_json::to_string_pretty(&schema).expect("a schema serialises");
        let _ = writeln!(s, "\n## {title}\n\n{what}\n\n```json\n{json}\n```");
    };
    one(
        SCHEMA,
        "`magpipe forecast --format json`: one AR's forecast from a trained model.",
        schemars::schema_for!(report::ForecastReport),
    );
    one(
        REPLAY_SCHEMA,
        "`magpipe forecast --replay --format json`: the test ARs replayed hour by hour.",
        schemars::schema_for!(report::ReplayReport),
    );
    one(
        "Runs with their results",
        "`magpipe runs --json --results`: a list, one object per run of the store's run log, \
         oldest first, with each stage's record as the run left it (what the Python package's \
         `magpipe.runs()` reads).",
        schemars::schema_for!(Vec<super::runs::RunResults<'static>>),
    );
    one(
        "Comparison",
        "`magpipe compare A B … --format json`: variants side by side (what `magpipe.compare()` \
         reads).",
        schemars::schema_for!(magpipe_engine::compare::Comparison),
    );
    one(
        "Status",
        "`magpipe status --format json`: one object per stage, `fresh` or `stale` (what \
         `magpipe.status()` reads).",
        schemars::schema_for!(Vec<super::status::StatusRow>),
    );
    one(
        "Lineage",
        "`magpipe lineage STAGE [OUTPUT] --format json`: the chain from the raw files to a \
         stage's output (what `magpipe.lineage()` reads).",
        schemars::schema_for!(magpipe_engine::provenance::Lineage),
    );
    one(
        "Events",
        "`magpipe --log-format json run …`: one JSON object per line on stderr, tagged by \
         `event`.",
        schemars::schema_for!(Event),
    );
    s
}
