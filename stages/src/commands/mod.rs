//! The study's own commands, behind the `magpipe` subcommands of the same names. They reach the
//! engine through its public API (plans, the store, records), as any program built on it would.

use std::path::PathBuf;

use magpipe_engine::exec::{Outcome, RunResult};
use magpipe_engine::store::Store;
use magpipe_engine::sweep::PointPlan;

pub mod forecast;
pub mod pooled;
pub mod report;
pub mod seeds;

/// Where output `output` of a sweep point's first stage of kind `kind` is stored, with that
/// stage's index in the point's plan; `None` when the point ran no such stage.
pub fn point_output(
    store: &Store,
    point: &PointPlan,
    result: &RunResult,
    kind: &str,
    output: &str,
) -> Option<(usize, PathBuf)> {
    result.outcomes.iter().find_map(|(j, o)| match o {
        Outcome::Ran(rec, _) | Outcome::Cached(rec) | Outcome::Pulled(rec)
            if point.plan.stages[*j].kind.name() == kind =>
        {
            rec.outputs.get(output).map(|o| (*j, store.object_path(o)))
        }
        _ => None,
    })
}
