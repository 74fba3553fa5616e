//! The engine's errors. Each renders as one line that names the file, YAML location or stage.

use std::path::PathBuf;

/// `s` with control characters escaped (`\n`, `\0`, `\u{1b}`), so text from the user's input
/// (a NUL in a stage name, a hostile member name) keeps an error to one line and never reaches
/// the terminal raw.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A problem in `pipeline.yaml` (or in a `--set`/`--variant` that applies to it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}{msg}", location(.file, .line), if .path.is_empty() { String::new() } else { format!("{}: ", .path) })]
pub struct SpecError {
    pub file: PathBuf,
    pub line: Option<(usize, usize)>,
    /// Dotted YAML path, e.g. `stages.window.params.input`.
    pub path: String,
    pub msg: String,
}

fn location(file: &std::path::Path, line: &Option<(usize, usize)>) -> String {
    match line {
        Some((l, c)) => format!("{}:{l}:{c}: ", file.display()),
        None => format!("{}: ", file.display()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The cause is in the message and so not a `#[source]` (a field named `source` would be one),
    // for the same reason as `Stage`.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: corrupt record: {msg}")]
    Record { path: PathBuf, msg: String },
    #[error("stage `{stage}` did not write its output `{file}`")]
    MissingOutput { stage: String, file: String },
    #[error("{}: {what}; an output must be a regular file, or a folder of regular files", .path.display())]
    NotPlain { path: PathBuf, what: &'static str },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            cause: source,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    // The cause is part of the message and deliberately not a `#[source]`: `{:#}` at the binary
    // edge would print it twice.
    #[error("stage `{stage}`: {error}")]
    Stage {
        stage: String,
        error: crate::kind::StageError,
    },
    /// The store could not take what a stage produced (a full disk, say).
    #[error("stage `{stage}`: {error}")]
    Commit { stage: String, error: StoreError },
    /// `flags`: the `--variant`/`--set` of the command that found it, so the suggested
    /// command builds what was asked for (empty from the engine; the CLI fills it).
    #[error("stage `{stage}` is not up to date ({why}); run `magpipe run {stage}{flags}` first")]
    Stale {
        stage: String,
        why: String,
        flags: String,
    },
    /// A stage's failure whose scratch folder and log `--keep-failed` kept.
    #[error("{error}; its scratch folder and log are kept in {}", .at.display())]
    Kept { error: Box<RunError>, at: PathBuf },
    #[error("{0}")]
    Usage(String),
    /// The executor could not start (no Slurm reachable, say).
    #[error("executor: {0}")]
    Executor(String),
}
