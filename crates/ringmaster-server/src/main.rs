//! The `ringmaster` binary.

use clap::{Parser, Subcommand};
use ringmaster_server::fatal::{self, ConfigError};
use ringmaster_server::logging::{self, LogFormat};
use std::process::ExitCode;

mod cli;

// The coordinator allocates per webhook (JSON, session copies, effects) on several threads;
// glibc's malloc was 17 % of a new-call profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Apply pending database migrations and print which (idempotent; `serve` also migrates
    /// at start, under the same lock).
    Migrate(cli::migrate::MigrateArgs),
    /// Place a demo call through a sandbox server and watch every device's view of it.
    Call(ringmaster_server::call_cmd::CallArgs),
    /// Measure webhook ingest against a ceiling run in the same invocation (loopback only,
    /// temporary store).
    Bench(cli::bench::BenchArgs),
}

fn main() -> ExitCode {
    let format = match LogFormat::from_env() {
        Ok(format) => format,
        Err(e) => return fatal::report(&ConfigError(e.into()).into()),
    };
    logging::init(format);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::States(args) => cli::states::run(args),
        Command::Emulator(args) => cli::emulator::run(args),
        Command::Simulate(args) => cli::simulate::run(args),
        Command::Serve(args) => ringmaster_server::serve_cmd::run(*args),
        Command::Migrate(args) => cli::migrate::run(args),
        Command::Call(args) => ringmaster_server::call_cmd::run(args),
        Command::Bench(args) => cli::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal::report(&e),
    }
}
