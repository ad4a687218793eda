//! The errors the bindings throw, and the guard that turns a panic into one of them.
//!
//! Each error restates the core's error variant for variant (the `From` impls are exhaustive
//! matches, so a new core variant fails this crate's build) and adds `Panic`: a panic inside
//! the core is caught at the boundary and comes back as that variant, never as an abort or an
//! unwind into Swift, Kotlin or Python.

use crate::types::Refusal;
use ringmaster_core::{CallSessionId, CallState, Platform};
use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

/// Why the device agent refused an input or could not be built. A refused input changes
/// nothing.
#[derive(Debug, PartialEq, Eq, thiserror::Error, uniffi::Error)]
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
    /// The transition table refuses the move (spec T13: e.g. ON_HOLD to RINGING_INBOUND).
    #[error("call {call_session_id}: {refusal}")]
    Refused {
        /// The call.
        call_session_id: CallSessionId,
        /// The table's refusal.
        refusal: Refusal,
    },
    /// The device already holds the most calls it may.
    #[error("at most {max} calls at once")]
    TooManyCalls {
        /// The limit.
        max: u64,
    },
    /// A field is out of bounds (an id too long, an unknown `call_state_changed` state...).
    #[error("invalid input: {detail}")]
    Invalid {
        /// What is wrong.
        detail: String,
    },
    /// The core panicked; the agent is unchanged. A bug: report it with the detail.
    #[error("panic in the device agent: {detail}")]
    Panic {
        /// The panic message.
        detail: String,
    },
}

impl From<ringmaster_device::AgentError> for AgentError {
    fn from(e: ringmaster_device::AgentError) -> Self {
        use ringmaster_device::AgentError as E;
        match e {
            E::WrongPlatform { expected, got } => AgentError::WrongPlatform { expected, got },
            E::UnknownCall { call_session_id } => AgentError::UnknownCall { call_session_id },
            E::NotRinging {
                call_session_id,
                state,
            } => AgentError::NotRinging {
                call_session_id,
                state,
            },
            E::Refused {
                call_session_id,
                source,
            } => AgentError::Refused {
                call_session_id,
                refusal: source,
            },
            E::TooManyCalls { max } => AgentError::TooManyCalls {
                max: u64::try_from(max).unwrap_or(u64::MAX),
            },
            E::Invalid(detail) => AgentError::Invalid { detail },
        }
    }
}

/// Why a stored snapshot cannot be loaded.
#[derive(Debug, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum SnapshotError {
    /// Larger than the agent accepts.
    #[error("snapshot is {bytes} bytes, at most {max}")]
    TooLarge {
        /// Size given.
        bytes: u64,
        /// Limit.
        max: u64,
    },
    /// Not a snapshot (bad JSON, unknown field, a call history that does not replay).
    #[error("malformed snapshot: {detail}")]
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// Written by an unknown format version.
    #[error("unknown snapshot format {version}")]
    Format {
        /// The version found.
        version: u32,
    },
    /// A call in a state that is never persisted (e.g. CONNECTING, spec T3).
    #[error("call {call_session_id} is {state}, which is never persisted")]
    NotPersistable {
        /// The call.
        call_session_id: CallSessionId,
        /// Its state.
        state: CallState,
    },
    /// Another bound is exceeded.
    #[error("invalid snapshot: {detail}")]
    Invalid {
        /// What is wrong.
        detail: String,
    },
    /// The snapshot belongs to another device.
    #[error("snapshot belongs to another device")]
    WrongDevice,
    /// The core panicked while loading the snapshot. A bug: report it with the detail.
    #[error("panic while restoring the device agent: {detail}")]
    Panic {
        /// The panic message.
        detail: String,
    },
}

impl From<ringmaster_device::SnapshotError> for SnapshotError {
    fn from(e: ringmaster_device::SnapshotError) -> Self {
        use ringmaster_device::SnapshotError as E;
        let size = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        match e {
            E::TooLarge { bytes, max } => SnapshotError::TooLarge {
                bytes: size(bytes),
                max: size(max),
            },
            E::Malformed(detail) => SnapshotError::Malformed { detail },
            E::Format(version) => SnapshotError::Format { version },
            E::NotPersistable {
                call_session_id,
                state,
            } => SnapshotError::NotPersistable {
                call_session_id,
                state,
            },
            E::Invalid(detail) => SnapshotError::Invalid { detail },
            E::WrongDevice => SnapshotError::WrongDevice,
        }
    }
}

/// Why the canonical machine refused a call: an illegal trigger, or a name it does not know.
#[derive(Debug, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum MachineError {
    /// The transition table refuses the trigger; the call is unchanged.
    #[error("{refusal}")]
    Refused {
        /// The table's refusal.
        refusal: Refusal,
    },
    /// A state, trigger or SDK state name that does not exist.
    #[error("{detail}")]
    UnknownName {
        /// What was not recognised.
        detail: String,
    },
    /// The core panicked; the call is unchanged. A bug: report it with the detail.
    #[error("panic in the call machine: {detail}")]
    Panic {
        /// The panic message.
        detail: String,
    },
}

impl From<Refusal> for MachineError {
    fn from(refusal: Refusal) -> Self {
        MachineError::Refused { refusal }
    }
}

/// An error type that can carry a caught panic.
pub(crate) trait FromPanic {
    /// The error for a panic with this message.
    fn from_panic(detail: String) -> Self;
}

impl FromPanic for AgentError {
    fn from_panic(detail: String) -> Self {
        AgentError::Panic { detail }
    }
}

impl FromPanic for SnapshotError {
    fn from_panic(detail: String) -> Self {
        SnapshotError::Panic { detail }
    }
}

impl FromPanic for MachineError {
    fn from_panic(detail: String) -> Self {
        MachineError::Panic { detail }
    }
}

/// Runs `f`, turning a panic into `E`'s `Panic` variant. Callers pass only state they can throw
/// away (a working copy), so nothing half-updated survives the panic.
pub(crate) fn guard<T, E: FromPanic>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    panic::catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(E::from_panic(panic_message(payload.as_ref()))))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
