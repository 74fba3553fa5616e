//! The magpipe engine: `pipeline.yaml` → raw spec → typed plan (a DAG) → keys → artifact store →
//! executor → events. The stage kinds live in the `magpipe-stages` crate; this crate knows no
//! solar physics and does not link libtorch.

pub mod compare;
pub mod dag;
pub mod error;
pub mod events;
pub mod exec;
pub mod executor;
pub mod forecast;
pub mod fsutil;
pub mod fuzzing;
pub mod key;
pub mod plan;
pub mod provenance;
pub mod report;
pub mod spec;
pub mod stale;
pub mod store;
pub mod sweep;

/// The git commit this binary was built from, `-dirty` when the tree had changes, or `unknown`.
pub const GIT_COMMIT: &str = env!("MAGPIPE_GIT_COMMIT");
