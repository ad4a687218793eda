//! `ringmaster bench`: load generators that measure a running system, one module per
//! benchmark.

pub mod fanout;

use clap::{Args, Subcommand};

/// `ringmaster bench` arguments.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub which: Bench,
}

/// The benchmarks.
#[derive(Subcommand, Debug, Clone)]
pub enum Bench {
    /// WebSocket fan-out: N sockets on one channel, events published through the signed HTTP
    /// API; delivery latency p50/p99, memory per socket and connect rate.
    Fanout(fanout::FanoutArgs),
}

/// Runs the chosen benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        Bench::Fanout(args) => fanout::run(args),
    }
}
