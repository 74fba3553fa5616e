//! The magpipe engine: `pipeline.yaml` → raw spec → typed plan (a DAG) → keys → artifact store →
//! executor → events. It knows stage kinds only through the [`kind`] API and a [`Registry`]
//! its caller builds; no study code is linked into this crate (its manifest depends on none),
//! and it does not link libtorch.

pub mod command;
pub mod compare;
pub mod contract;
pub mod dag;
pub mod error;
pub mod events;
pub mod exec;
pub mod executor;
pub mod fsutil;
pub mod fuzzing;
pub mod key;
pub mod kind;
pub mod lease;
pub mod plan;
pub mod provenance;
pub mod registry;
pub mod remote;
pub mod rocrate;
pub mod spec;
pub mod stale;
pub mod store;
pub mod suggest;
pub mod sweep;
pub mod time;

pub use registry::Registry;

/// The git commit this binary was built from, `-dirty` when the tree had changes, or `unknown`.
pub const GIT_COMMIT: &str = env!("MAGPIPE_GIT_COMMIT");
