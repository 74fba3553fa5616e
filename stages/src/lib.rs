//! magpipe's stage kinds and the domain code they use: the SolARED reader, AR splits, min-max
//! scaling, windowing, and the params and worker protocol of the torch stages. Nothing here knows about keys, DAGs or the artifact store.

pub mod alarms;
pub mod baseline;
pub mod emergence;
pub mod figures;
pub mod forecast;
pub mod ingest;
pub mod kind;
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

use kind::{Kind, Typed};

/// Every stage kind this build knows, by name.
pub fn registry() -> Vec<Box<dyn Kind>> {
    vec![
        Box::new(Typed::<ingest::Ingest>::default()),
        Box::new(Typed::<split::SplitArs>::default()),
        Box::new(Typed::<scale::MinMaxScale>::default()),
        Box::new(Typed::<window::Window>::default()),
        Box::new(Typed::<train::Train>::default()),
        Box::new(Typed::<protocol::TestProtocol>::default()),
        Box::new(Typed::<baseline::Baseline>::default()),
        Box::new(Typed::<train::Predict>::default()),
        Box::new(Typed::<alarms::ScoreAlarms>::default()),
        Box::new(Typed::<report::RenderTables>::default()),
        Box::new(Typed::<figures::RenderFigure>::default()),
        Box::new(Typed::<tune::study::Tune>::default()),
    ]
}
