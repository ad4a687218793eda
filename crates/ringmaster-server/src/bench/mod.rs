//! `ringmaster bench`: load generators that measure a hot path against a ceiling run in the
//! same invocation, one module per benchmark (the binary's `cli::bench` parses the options).

pub mod fanout;
pub mod ingest;
pub mod lifecycle;

pub use ingest::*;
