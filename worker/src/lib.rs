//! The worker side of magpipe: the libtorch models, losses and training of `kernels: native`,
//! and the wiring of magpipe's own engine (magpipe-kernels) for `kernels: portable`. Only the
//! `magpipe-worker` process links this; the engine never does.

pub mod adam;
pub mod host;
pub mod model;
pub mod portable;
pub mod predict;
pub mod stage;
pub mod train;

// Pure Rust, shared with magpipe's own engine, which owns them.
pub use magpipe_kernels::{metrics, schedule};
