//! Inputs a session refuses. A refused input changes nothing and produces no effects.

use super::status::SessionStatus;
use crate::ids::{CallControlId, CallSessionId, DeviceId};
use crate::state::{CallState, Direction};
use crate::trigger::InvalidTrigger;
use thiserror::Error;

/// Why a session refused an input or could not be created.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SessionError {
    /// An input other than `Start` arrived before `Start`.
    #[error("session has not been started")]
    NotStarted,
    /// The device is not rung by this session (or, outbound, is not the calling device).
    #[error("device {device} is not part of this call")]
    UnknownDevice {
        /// The device named by the input.
        device: DeviceId,
    },
    /// A webhook names no leg of this session.
    #[error("no leg of this session matches call_control_id {call_control_id:?}")]
    UnknownLeg {
        /// The webhook's `call_control_id`.
        call_control_id: Option<CallControlId>,
    },
    /// A webhook's `client_state` names another session.
    #[error("client_state belongs to session {got}")]
    WrongSession {
        /// The session the client_state names.
        got: CallSessionId,
    },
    /// A command result for a command this session never issued (or a dial result for a
    /// command that is not a dial).
    #[error("command {command_id} was not issued by this session")]
    UnknownCommand {
        /// The unknown `command_id`.
        command_id: String,
    },
    /// A decline or ignore after ringing is over.
    #[error("the call is no longer ringing (status {status})")]
    NotRinging {
        /// The session's status now.
        status: SessionStatus,
    },
    /// A device report after the call ended.
    #[error("the call has ended")]
    CallEnded,
    /// A device report whose `from` is not the state the device last reported.
    #[error("the device last reported {last}, not {from}")]
    StateMismatch {
        /// The state the device last reported.
        last: CallState,
        /// The report's `from`.
        from: CallState,
    },
    /// A device report the transition table has no row for.
    #[error("{from} -> {to}{via} is not a legal transition for an {direction} call on {platform}")]
    IllegalTransition {
        /// State before.
        from: CallState,
        /// State after.
        to: CallState,
        /// `" on <trigger>"` when the report named one, else empty.
        via: String,
        /// The call's direction.
        direction: Direction,
        /// The device's platform.
        platform: String,
    },
    /// A device report whose trigger carries invalid data.
    #[error(transparent)]
    InvalidTrigger(#[from] InvalidTrigger),
    /// A constructor argument or input field is out of bounds.
    #[error("invalid input: {0}")]
    Invalid(String),
}
