//! The stage kinds a pipeline may use. The engine holds no list of its own: whoever runs it (the
//! `magpipe` binary, a test with a toy kind) builds a [`Registry`] and hands it to
//! [`Plan::build`](crate::plan::Plan::build) and the job runner.

use std::sync::Arc;

use crate::contract::Contract;
use crate::kind::Kind;

/// Kinds and artifact contracts by name. Cloning is cheap: they are shared.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: Vec<Arc<dyn Kind>>,
    contracts: Vec<Arc<dyn Contract>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two kinds (or contracts) are named `{0}`")]
pub struct DuplicateKind(pub String);

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds `kind`; a second kind of the same name is refused, since a pipeline could not say
    /// which one it means.
    pub fn register(&mut self, kind: Arc<dyn Kind>) -> Result<(), DuplicateKind> {
        if self.get(kind.name()).is_some() {
            return Err(DuplicateKind(kind.name().to_string()));
        }
        self.kinds.push(kind);
        Ok(())
    }

    /// The registry of `kinds`, in that order.
    pub fn of(kinds: impl IntoIterator<Item = Arc<dyn Kind>>) -> Result<Registry, DuplicateKind> {
        let mut r = Registry::new();
        for k in kinds {
            r.register(k)?;
        }
        Ok(r)
    }

    /// Adds a contract; a second of the same name is refused.
    pub fn register_contract(&mut self, c: Arc<dyn Contract>) -> Result<(), DuplicateKind> {
        if self.contract(c.name()).is_some() {
            return Err(DuplicateKind(c.name().to_string()));
        }
        self.contracts.push(c);
        Ok(())
    }

    pub fn contract(&self, name: &str) -> Option<&Arc<dyn Contract>> {
        self.contracts.iter().find(|c| c.name() == name)
    }

    pub fn contracts(&self) -> impl Iterator<Item = &Arc<dyn Contract>> {
        self.contracts.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Kind>> {
        self.kinds.iter().find(|k| k.name() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Kind>> {
        self.kinds.iter()
    }

    /// `a, b, c`, for "unknown kind" messages.
    pub fn names(&self) -> String {
        self.kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
