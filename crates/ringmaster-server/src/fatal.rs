//! How the binary reports an error that stops it: one line on stderr, exit status 2 for a
//! configuration error and 1 otherwise; the backtrace only when `RUST_BACKTRACE` asks for it.

use std::process::ExitCode;

/// A setting is missing, malformed or contradicts another; the operator has to fix it.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0:#}")]
pub struct ConfigError(pub anyhow::Error);

/// Exit status of a configuration error (as for a bad command line).
pub const CONFIG_EXIT: u8 = 2;

/// Whether `RUST_BACKTRACE` asks for backtraces.
fn backtrace_wanted() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

/// Prints `err` and returns the process's exit status.
pub fn report(err: &anyhow::Error) -> ExitCode {
    if backtrace_wanted() {
        eprintln!("ringmaster: {err:?}");
    } else {
        eprintln!("ringmaster: {err:#}");
    }
    if err.chain().any(|cause| cause.is::<ConfigError>()) {
        ExitCode::from(CONFIG_EXIT)
    } else {
        ExitCode::FAILURE
    }
}
