//! Artifact contracts: a named, versioned description of a file that stages exchange (its
//! columns, dtypes, required fields), with a check run on every output that claims it before the
//! output is committed. The engine knows contracts only through this trait; a study registers
//! its own in the [`Registry`](crate::Registry), next to its kinds.

use std::path::{Path, PathBuf};

use crate::kind::Metric;

/// One field of a contract, for `magpipe kinds` and the docs.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    /// The type in the file's own terms (`u32`, `f64`, `datetime[µs]`, `F32 (N, W, 5)`…).
    pub dtype: &'static str,
    /// Whether the field must be present and non-null.
    pub required: bool,
    pub doc: &'static str,
}

/// The inputs of the stage that wrote an output, with the contracts they carry: a check may
/// compare an output with them (the rows of a table against the plan it was made from, say).
pub struct Peers {
    pub inputs: Vec<(Option<String>, PathBuf)>,
}

impl Peers {
    /// The first input that carries `contract`.
    pub fn find(&self, contract: &str) -> Option<&Path> {
        self.inputs
            .iter()
            .find(|(c, _)| c.as_deref() == Some(contract))
            .map(|(_, p)| p.as_path())
    }
}

pub trait Contract: Send + Sync {
    /// `namespace.name/version`, e.g. `acme.table/1`.
    fn name(&self) -> &'static str;
    fn doc(&self) -> &'static str;
    /// The file format, in words (`Parquet`, `JSON`, `safetensors`).
    fn format(&self) -> &'static str;
    fn fields(&self) -> &'static [Field];
    /// Checks the file at `path`; the error is one line naming what is wrong ("column
    /// `predicted_gauss` missing"), without the contract's name, which the caller adds.
    fn check(&self, path: &Path, peers: &Peers) -> Result<(), String>;
    /// What `compare` shows of an output carrying this contract.
    fn metrics(&self, path: &Path) -> Vec<Metric> {
        let _ = path;
        Vec::new()
    }
}
