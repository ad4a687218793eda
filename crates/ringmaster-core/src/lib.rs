//! Ringmaster's pure core: the canonical call state machine and everything that decides what
//! happens to a call. No I/O, no async, no clock, no randomness: callers pass time in and get
//! effects out.

pub mod call;
pub mod dismissal;
pub mod ids;
pub mod quality;
pub mod render;
pub mod retry_after;
pub mod sdk;
pub mod sdp;
pub mod session;
pub mod state;
pub mod table;
pub mod time;
pub mod trigger;

pub use call::{Call, ReplayError, Transition, TransitionError};
pub use dismissal::DismissReason;
pub use ids::{CallControlId, CallLegId, CallSessionId, DeviceId, EffectId, TenantId, UserId};
pub use state::{CallState, Direction, Platform};
pub use table::{is_legal, next_state, rows_between, Source, TransitionRow, TRANSITIONS};
pub use time::Timestamp;
pub use trigger::{Trigger, TriggerKind};
