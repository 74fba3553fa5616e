//! The magpipe engine: `pipeline.yaml` → raw spec → typed plan (a DAG) → keys → artifact store →
//! executor → events. The stage kinds live in the `magpipe-stages` crate; this crate knows no
//! solar physics and does not link libtorch.

pub mod dag;
pub mod error;
pub mod events;
pub mod exec;
pub mod key;
pub mod plan;
pub mod spec;
pub mod store;
