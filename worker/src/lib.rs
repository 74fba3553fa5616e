//! The libtorch side of magpipe: models, losses, the validation metric, LR scheduling and early
//! stopping. Only the `magpipe-worker` process links this; the engine never does.

pub mod adam;
pub mod host;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod schedule;
pub mod stage;
pub mod train;
