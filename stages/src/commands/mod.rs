//! The study's own commands, behind the `magpipe` subcommands of the same names. They reach the
//! engine through its public API (plans, the store, records), as any program built on it would.

pub mod forecast;
pub mod pooled;
pub mod report;
pub mod seeds;
