//! Ringmaster's device agent and canonical call machine for Swift, Kotlin and Python, through
//! UniFFI: one Rust core behind generated bindings, so no platform reimplements crash recovery,
//! exactly-once dismissal or the 3 s poll.
//!
//! Every type crossing the boundary is the core's own (declared to UniFFI in [`types`]); every
//! fallible call returns a typed error, and a panic inside the core is caught and returned as
//! the error's `Panic` variant. See `docs/platforms.md` for how each platform wires it up.

pub mod agent;
pub mod error;
pub mod machine;
pub mod types;

pub use agent::{default_agent_config, AgentConfig, CallView, DeviceAgent, Restored};
pub use error::{AgentError, MachineError, SnapshotError};
pub use machine::{CallMachine, TransitionRow};

uniffi::setup_scaffolding!();
