//! The names of the study's artifact contracts and the slots that need them: a leaf module, so
//! the kinds that claim a contract and the checks in `contracts` (which read the kinds' types)
//! never import each other.

pub const SERIES: &str = "magpipe.series/1";
pub const WINDOWS: &str = "magpipe.windows/1";
pub const PROTOCOL: &str = "magpipe.protocol/1";
pub const PREDICTIONS: &str = "magpipe.predictions/1";
pub const SUMMARY: &str = "magpipe.summary/1";
pub const MODEL_CONFIG: &str = "magpipe.model_config/1";

/// What a predictor (a model's `predict`, a baseline, a command stage) hands on.
pub const PREDICTOR_CONTRACTS: &[(&str, &str)] =
    &[("predictions", PREDICTIONS), ("summary", SUMMARY)];

/// A list slot of predictors: every entry brings both.
pub const fn predictor_slot(slot: &'static str) -> [magpipe_engine::kind::InputContract; 2] {
    [
        magpipe_engine::kind::InputContract {
            slot,
            output: "predictions",
            contract: PREDICTIONS,
        },
        magpipe_engine::kind::InputContract {
            slot,
            output: "summary",
            contract: SUMMARY,
        },
    ]
}

/// A list slot that must name the predictors the alarms stage it reads (through its `alarms`
/// input) scores: all of them, or with `subset` only some (a figure's models).
pub const fn agrees_with_alarms(
    slot: &'static str,
    subset: bool,
) -> [magpipe_engine::kind::ListAgreement; 1] {
    [magpipe_engine::kind::ListAgreement {
        slot,
        via: "alarms",
        upstream: "predictors",
        subset,
    }]
}
