//! The local executor: a stage runs in this process (torch stages start their worker process
//! from here).

use crate::kind::{Context, Events, Kind, Report, StageError, TaskLauncher};

use super::{Executor, Ran, StageJob};

/// Runs `kind` on `job` in this process; a panic becomes an error.
pub fn run_in_process(
    kind: &dyn Kind,
    job: &StageJob,
    events: &dyn Events,
    launcher: Option<&dyn TaskLauncher>,
) -> Result<Report, StageError> {
    let ctx = Context {
        stage: &job.stage,
        inputs: job.inputs.clone(),
        out_dir: &job.out_dir,
        checkpoint_dir: job.checkpoint_dir.clone(),
        threads: job.threads,
        events,
        launcher,
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kind.run(&job.params, &ctx))) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(StageError::Invalid(format!(
                "internal error (panic): {msg}"
            )))
        }
    }
}

pub struct Local;

impl Executor for Local {
    fn name(&self) -> &'static str {
        "local"
    }
    fn run_stage(
        &self,
        kind: &dyn Kind,
        job: StageJob,
        events: &dyn Events,
    ) -> Result<Ran, StageError> {
        let report = run_in_process(kind, &job, events, None)?;
        Ok(Ran {
            report,
            out_dir: job.out_dir,
            info: None,
        })
    }
}
