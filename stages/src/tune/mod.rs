//! The study's hyper-parameter search (docs/src/semantics.md §11): the search space, hyperopt-faithful
//! TPE, Ray-faithful ASHA. The stopper with Ray's TrialPlateauStopper semantics is the training
//! one (`kernels/src/schedule.rs`), which the tune trials use as their early-stopping rule.

pub mod asha;
pub mod space;
pub mod study;
pub mod tpe;
