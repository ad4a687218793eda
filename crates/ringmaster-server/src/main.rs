//! The `ringmaster` binary.

use clap::{Parser, Subcommand};

mod cli;

/// Call-state coordination for simultaneous ring across phones, tablets and browsers.
#[derive(Parser)]
#[command(name = "ringmaster", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the canonical call state machine (JSON, Graphviz or Markdown).
    States(cli::states::StatesArgs),
    /// Run a local Telnyx Call Control emulator that sends signed webhooks.
    Emulator(cli::emulator::EmulatorArgs),
    /// Run seeded random simulations, the spec's T1-T15 scenarios and the answer-race model check.
    Simulate(cli::simulate::SimulateArgs),
    /// Run the coordinator server (sandbox mode with a built-in emulator when no Telnyx key).
    Serve(Box<ringmaster_server::config::ServeArgs>),
    /// Place a demo call through a sandbox server and watch every device's view of it.
    Call(ringmaster_server::call_cmd::CallArgs),
    /// Measure a running system (WebSocket fan-out, ...).
    Bench(ringmaster_server::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::States(args) => cli::states::run(args),
        Command::Emulator(args) => cli::emulator::run(args),
        Command::Simulate(args) => cli::simulate::run(args),
        Command::Serve(args) => ringmaster_server::serve_cmd::run(*args),
        Command::Call(args) => ringmaster_server::call_cmd::run(args),
        Command::Bench(args) => ringmaster_server::bench::run(args),
    }
}
