//! Inputs a session refuses. A refused input changes nothing and produces no effects.

use super::status::SessionStatus;
use crate::ids::{CallControlId, CallSessionId, DeviceId};
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
    /// A constructor argument or input field is out of bounds.
    #[error("invalid input: {0}")]
    Invalid(String),
}
