//! The device agent every platform embeds (iOS, Android, web through bindings): the device's
//! calls as canonical [`ringmaster_core::Call`]s, fed by the Telnyx SDK (through the core's SDK
//! maps), the four dismissal channels (SIP, WebSocket, push, status poll) and the user, and
//! answering with [`Effect`]s the platform carries out.
//!
//! Sans-IO: no sockets, clocks, timers or storage. The platform passes the time in, stores
//! [`Snapshot`]s when told to, runs the status poll while told to, and rebuilds the agent with
//! [`DeviceAgent::restore`] after a crash, kill or reboot.

pub mod agent;
pub mod effect;
pub mod error;
pub mod input;
pub mod snapshot;

pub use agent::{AgentConfig, DeviceAgent, DEFAULT_MAX_RING_AGE_MS, DEFAULT_POLL_INTERVAL_MS};
pub use effect::{BackendRequest, Effect, Report, SdkCommand, StopReason};
pub use error::{AgentError, SnapshotError};
pub use input::{AppAction, Channel, Delivery, Input, SdkState};
pub use snapshot::{PersistedCall, Snapshot, Tombstone};
