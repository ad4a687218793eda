//! Ringmaster's pure core: the canonical call state machine and everything that decides what
//! happens to a call. No I/O, no async, no clock, no randomness: callers pass time in and get
//! effects out.

pub mod dismissal;
pub mod ids;
pub mod time;

pub use dismissal::DismissReason;
pub use ids::{CallControlId, CallLegId, CallSessionId, DeviceId, TenantId, UserId};
pub use time::Timestamp;
