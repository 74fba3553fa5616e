//! The worker side of magpipe: the libtorch models, losses and training of `kernels: native`
//! (the `torch` feature, on by default), and the wiring of magpipe's own engine (magpipe-kernels)
//! for `kernels: portable`. Only the `magpipe-worker` process links this; the engine never does.

pub mod config;
pub mod engines;
pub mod host;
pub mod portable;
pub mod predict;
pub mod stage;

// libtorch: `kernels: native` and every GPU. A worker built without the `torch` feature runs
// magpipe's own engine only, and installing it needs no torch download.
#[cfg(feature = "torch")]
pub mod adam;
#[cfg(feature = "torch")]
pub mod model;
#[cfg(feature = "torch")]
pub mod native;
#[cfg(feature = "torch")]
pub mod train;

/// What a worker built without libtorch says when a stage asks for it.
pub const NO_TORCH: &str = "this magpipe-worker was built without libtorch, which `kernels: native`, \
    `device: cuda` and `precision: bf16-mixed` need; `make build` installs it (1.2 GB) and \
    rebuilds the worker with it";

// Pure Rust, shared with magpipe's own engine, which owns them.
pub use magpipe_kernels::{metrics, schedule};
