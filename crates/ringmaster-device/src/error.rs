//! Inputs the agent refuses and snapshots it cannot load. A refused input changes nothing.

use ringmaster_core::{CallSessionId, CallState, Platform, TransitionError};
use thiserror::Error;

/// Why the agent refused an input.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AgentError {
    /// An SDK state of another platform's SDK.
    #[error("SDK state of {got} sent to a {expected} agent")]
    WrongPlatform {
        /// The agent's platform.
        expected: Platform,
        /// The platform of the SDK state.
        got: Platform,
    },
    /// An app action on a call the agent does not hold.
    #[error("no call {call_session_id} on this device")]
    UnknownCall {
        /// The call named.
        call_session_id: CallSessionId,
    },
    /// Answer, decline or ignore on a call that is not ringing here.
    #[error("call {call_session_id} is not ringing here (state {state})")]
    NotRinging {
        /// The call.
        call_session_id: CallSessionId,
        /// Its state.
        state: CallState,
    },
    /// The transition table refuses the move (spec T13: e.g. HELD → RINGING).
    #[error("call {call_session_id}: {source}")]
    Refused {
        /// The call.
        call_session_id: CallSessionId,
        /// The table's refusal.
        source: TransitionError,
    },
    /// The device already holds the most calls it may.
    #[error("at most {max} calls at once")]
    TooManyCalls {
        /// The limit.
        max: usize,
    },
    /// A field is out of bounds.
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// Why a stored snapshot cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// Larger than the agent accepts.
    #[error("snapshot is {bytes} bytes, at most {max}")]
    TooLarge {
        /// Size given.
        bytes: usize,
        /// Limit.
        max: usize,
    },
    /// Not a snapshot (bad JSON, unknown field, a call history that does not replay).
    #[error("malformed snapshot: {0}")]
    Malformed(String),
    /// Written by an unknown format version.
    #[error("unknown snapshot format {0}")]
    Format(u32),
    /// A call in a state that is never persisted (e.g. CONNECTING, spec T3).
    #[error("call {call_session_id} is {state}, which is never persisted")]
    NotPersistable {
        /// The call.
        call_session_id: CallSessionId,
        /// Its state.
        state: CallState,
    },
    /// Another bound is exceeded.
    #[error("invalid snapshot: {0}")]
    Invalid(String),
    /// The snapshot belongs to another device.
    #[error("snapshot belongs to another device")]
    WrongDevice,
}
