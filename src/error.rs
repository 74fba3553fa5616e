//! The engine's errors. Each renders as one line that names the file, YAML location or stage.

use std::path::PathBuf;

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
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt record: {msg}")]
    Record { path: PathBuf, msg: String },
    #[error("stage `{stage}` did not write its output `{file}`")]
    MissingOutput { stage: String, file: String },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
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
        error: magpipe_stages::kind::StageError,
    },
    #[error("stage `{stage}` is not up to date ({why}); run `magpipe run {stage}` first")]
    Stale { stage: String, why: String },
    #[error("{0}")]
    Usage(String),
}
