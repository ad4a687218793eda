//! What the agent asks the platform (iOS, Android, web) to do.

use crate::input::Channel;
use crate::snapshot::Snapshot;
use ringmaster_core::{CallSessionId, CallState, DeviceId, DismissReason, Timestamp, Trigger};
use serde::{Deserialize, Serialize};

/// One effect of handling an input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Show the incoming-call UI and play the ringtone (CallKit report on iOS).
    StartRinging {
        /// The call.
        call_session_id: CallSessionId,
        /// Caller number.
        from: String,
    },
    /// Stop the ringtone and take the incoming-call UI down. Emitted at most once per call.
    StopRinging {
        /// The call.
        call_session_id: CallSessionId,
        /// Why.
        reason: StopReason,
        /// The dismissal channel that got there first, when a channel did.
        channel: Option<Channel>,
    },
    /// Send this transition to the backend (`POST /api/voip/calls/{id}/transitions`).
    ReportTransition(Report),
    /// Store this snapshot durably, replacing the previous one.
    Persist(Snapshot),
    /// The call no longer needs crash recovery; drop any per-call record kept for it.
    ClearPersisted {
        /// The call.
        call_session_id: CallSessionId,
    },
    /// Show "Missed call from …".
    ShowMissedCall {
        /// The call.
        call_session_id: CallSessionId,
        /// Caller number, when known.
        from: Option<String>,
    },
    /// Poll `GET /api/voip/call-status/{id}` every `interval_ms` until told to stop.
    StartStatusPoll {
        /// The call.
        call_session_id: CallSessionId,
        /// Poll period.
        interval_ms: u64,
    },
    /// Stop polling this call.
    StopStatusPoll {
        /// The call.
        call_session_id: CallSessionId,
    },
    /// iOS: a VoIP push arrived for a call that is already over. PushKit requires every VoIP
    /// push to become a CallKit call, so report it and end it at once.
    ReportThenEnd {
        /// The call.
        call_session_id: CallSessionId,
        /// Why it is over, when known.
        reason: Option<DismissReason>,
    },
    /// Tell the SDK to act on the call's SIP leg.
    Sdk {
        /// The call.
        call_session_id: CallSessionId,
        /// What to do.
        command: SdkCommand,
    },
    /// Send a request to the backend.
    Backend {
        /// The call.
        call_session_id: CallSessionId,
        /// What to ask.
        request: BackendRequest,
    },
    /// The app died while this call was up: tell the user it was disconnected (CallKit end /
    /// "Your call with … was disconnected").
    OrphanEnded {
        /// The call.
        call_session_id: CallSessionId,
        /// The state it was in when the app died.
        state: CallState,
    },
    /// The user is on this call on another device (web: "In call on iPhone" badge).
    OtherDeviceActive {
        /// The call.
        call_session_id: CallSessionId,
        /// The device the call is on.
        device_id: DeviceId,
    },
    /// The call on another device ended; remove the badge.
    OtherDeviceEnded {
        /// The call.
        call_session_id: CallSessionId,
    },
}

impl Effect {
    /// The call the effect is about; `None` for a whole-device snapshot.
    pub fn call_session_id(&self) -> Option<&CallSessionId> {
        match self {
            Effect::Persist(_) => None,
            Effect::ReportTransition(r) => Some(&r.call_session_id),
            Effect::StartRinging {
                call_session_id, ..
            }
            | Effect::StopRinging {
                call_session_id, ..
            }
            | Effect::ClearPersisted { call_session_id }
            | Effect::ShowMissedCall {
                call_session_id, ..
            }
            | Effect::StartStatusPoll {
                call_session_id, ..
            }
            | Effect::StopStatusPoll { call_session_id }
            | Effect::ReportThenEnd {
                call_session_id, ..
            }
            | Effect::Sdk {
                call_session_id, ..
            }
            | Effect::Backend {
                call_session_id, ..
            }
            | Effect::OrphanEnded {
                call_session_id, ..
            }
            | Effect::OtherDeviceActive {
                call_session_id, ..
            }
            | Effect::OtherDeviceEnded { call_session_id } => Some(call_session_id),
        }
    }
}

/// Why the device stopped ringing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "stop", rename_all = "snake_case")]
pub enum StopReason {
    /// The backend dismissed the call (answered/declined elsewhere, caller cancelled, timeout,
    /// busy).
    Dismissed {
        /// The backend's reason.
        reason: DismissReason,
    },
    /// The SIP leg was cancelled before any backend channel said why; the outcome follows
    /// from the next backend channel (the status poll keeps running until then).
    LegCancelled,
    /// The backend says the call is over without a dismissal reason.
    CallEnded,
    /// The user answered here.
    AnsweredHere,
    /// The user declined here.
    DeclinedHere,
    /// The user silenced the call here only.
    Ignored,
}

/// A transition to report to the backend, with the device's sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting device.
    pub device_id: DeviceId,
    /// Per-device sequence, strictly increasing across calls and restarts; the backend
    /// acknowledges and ignores a sequence it has seen.
    pub seq: u64,
    /// The call.
    pub call_session_id: CallSessionId,
    /// State before.
    pub from: CallState,
    /// State after.
    pub to: CallState,
    /// What caused it.
    pub trigger: Trigger,
    /// When (device time).
    pub at: Timestamp,
}

/// An action on the SDK's call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdkCommand {
    /// Answer (SIP 200 OK).
    Answer,
    /// Reject the ringing call (SIP 486/603).
    Reject,
    /// Hang up (SIP BYE/CANCEL).
    Hangup,
    /// Hold (re-INVITE sendonly).
    Hold,
    /// Resume (re-INVITE sendrecv).
    Resume,
}

/// A request to the backend's call API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendRequest {
    /// `POST /api/voip/calls/{id}/decline`: decline for everyone.
    Decline,
    /// `POST /api/voip/calls/{id}/ignore`: stop ringing here only.
    Ignore,
}
