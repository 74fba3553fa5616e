//! The MagFlux study on magpipe: its stage kinds and the domain code they use (the SolARED reader,
//! AR splits, min-max scaling, windowing, the params and worker protocol of the torch stages),
//! and its own commands (`commands`: forecasts and replays, the HTML report, the multi-seed
//! Table 2), which reach the engine through its public API. The kinds themselves know nothing of
//! keys, DAGs or the artifact store.

pub mod alarms;
pub mod baseline;
pub mod commands;
pub mod contract_names;
pub mod contracts;
pub mod emergence;
pub mod evaluate;
pub mod figures;
pub mod forecast;
pub mod ingest;
pub mod plot;
pub mod protocol;
pub mod report;
pub mod scale;
pub mod solared;
pub mod split;
pub mod table;
pub mod train;
pub mod tune;
pub mod window;

/// The kind API, the engine's: the study's kinds implement it.
pub use magpipe_engine::kind;

use std::sync::Arc;

use kind::{Kind, Typed};
use magpipe_engine::Registry;

/// Every stage kind of the study.
pub fn registry() -> Registry {
    let kinds: Vec<Arc<dyn Kind>> = vec![
        Arc::new(Typed::<ingest::Ingest>::default()),
        Arc::new(Typed::<split::SplitArs>::default()),
        Arc::new(Typed::<scale::MinMaxScale>::default()),
        Arc::new(Typed::<window::Window>::default()),
        Arc::new(Typed::<train::Train>::default()),
        Arc::new(Typed::<protocol::TestProtocol>::default()),
        Arc::new(Typed::<baseline::Baseline>::default()),
        Arc::new(Typed::<train::Predict>::default()),
        Arc::new(Typed::<alarms::ScoreAlarms>::default()),
        Arc::new(Typed::<report::RenderTables>::default()),
        Arc::new(Typed::<figures::RenderFigure>::default()),
        Arc::new(Typed::<evaluate::Evaluate>::default()),
        Arc::new(Typed::<tune::study::Tune>::default()),
    ];
    let mut r = Registry::of(kinds).expect("the study's kinds have distinct names");
    r.register(Arc::new(magpipe_engine::command::CommandKind))
        .expect("no study kind is named `command`");
    for c in contracts::all() {
        r.register_contract(c)
            .expect("the study's contracts have distinct names");
    }
    r
}

/// The `pipeline_yaml` fuzz property ([`magpipe_engine::fuzzing::pipeline_yaml`]) over the
/// study's kinds.
pub fn fuzz_pipeline_yaml(data: &[u8]) {
    static KINDS: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    magpipe_engine::fuzzing::pipeline_yaml(KINDS.get_or_init(registry), data)
}
