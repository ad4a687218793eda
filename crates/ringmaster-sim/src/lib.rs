//! Deterministic discrete-event simulation of Ringmaster: users with several devices (each
//! running the real [`ringmaster_device::DeviceAgent`]), the coordinator (the server's own
//! [`ringmaster_engine::Engine`] running the real [`ringmaster_core::session::Session`] over
//! the real [`ringmaster_store::MemoryStore`], with compare-and-set, outbox and timers, and
//! the server's outbox dispatcher, [`ringmaster_engine::StepDispatcher`], with its lanes,
//! leases and retries, on several nodes that crash), the Telnyx network, and the four
//! dismissal channels with their latencies and faults.
//!
//! A run is a pure function of its [`plan::Plan`]: one seeded ChaCha RNG, a virtual clock (the
//! engine's [`ringmaster_engine::Clock`]), an event queue; no threads, no sleeps, no tokio
//! runtime (the engine's futures are polled by the world, see [`world`]). Invariants are
//! checked after every event and at the end ([`check`]). [`scenarios`] holds the spec's test
//! plan T1–T15; [`model`] model-checks the answer race with stateright.

pub mod check;
mod executor;
pub mod faults;
pub mod glare;
pub mod model;
mod nodes;
pub mod plan;
pub mod runner;
pub mod scenarios;
pub mod telnyx;
pub mod world;

pub use check::Violation;
pub use faults::{FaultMix, FaultMixError, Latencies, Latency};
pub use plan::{DeviceFaults, DevicePlan, Plan};
pub use runner::{run_batch, run_seed, Batch, ChannelStats, RunOutcome, Summary};
pub use world::World;
