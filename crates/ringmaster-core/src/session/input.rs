//! What a session reacts to: provider webhooks, command results, device requests and timer ticks.

use crate::ids::{CallControlId, CallSessionId, DeviceId};
use crate::state::CallState;
use crate::time::Timestamp;
use crate::trigger::Trigger;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest recording URL accepted from a webhook; anything longer is not a URL we will store.
pub const MAX_URL_LEN: usize = 2048;

/// One thing that happened to a session. The driver builds it from the outside world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// Emit the session's opening effects (answer/dial/notify). Repeating it changes nothing.
    Start,
    /// The Telnyx response to a `Dial` command, matched by the command's `command_id`.
    DialResult {
        /// The `command_id` of the `Dial` command.
        command_id: String,
        /// The new leg's `call_control_id`, or why the dial was refused.
        result: Result<CallControlId, CommandError>,
    },
    /// The final Telnyx response to any other command (answer, bridge, hangup, speak, ...).
    CommandResult {
        /// The `command_id` of the command.
        command_id: String,
        /// Success, or the error the provider returned after the dispatcher's own retries.
        result: Result<(), CommandError>,
    },
    /// A deduplicated, signature-checked Call Control webhook.
    Provider(ProviderEvent),
    /// A device declined the call for everyone (`POST /api/voip/calls/{id}/decline`).
    DeviceDecline {
        /// The declining device.
        device: DeviceId,
    },
    /// A device stopped ringing for itself only (`POST /api/voip/calls/{id}/ignore`).
    DeviceIgnore {
        /// The ignoring device.
        device: DeviceId,
    },
    /// A device reports one canonical transition of its own (`POST /api/voip/calls/{id}/events`).
    /// Legal against the device's last reported state; a `seq` not above the last accepted one
    /// is a duplicate and changes nothing; after the call ended it is refused.
    DeviceReport {
        /// The reporting device.
        device: DeviceId,
        /// Per-device, per-call sequence number; gaps are allowed.
        seq: u64,
        /// State before, as the device saw it.
        from: CallState,
        /// State after.
        to: CallState,
        /// What caused it, when the device says.
        trigger: Option<Trigger>,
        /// The device's own clock, kept as reported.
        at: Option<Timestamp>,
        /// The reporter's own WebSocket connection, left out of the broadcast.
        exclude_socket: Option<String>,
        /// For a dismissal, the channel that reached the device first (operator latency).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<crate::dismissal::Channel>,
    },
    /// A webhook arrived for a leg this session does not know although its `client_state`
    /// names the session (a dial sent twice after a crash or a timeout created a second leg).
    /// The leg is hung up so no device rings for a call nobody tracks.
    UnknownLeg {
        /// The leg Telnyx reported.
        ccid: CallControlId,
    },
    /// The store refused the active-call entry an answer asked for: the user is already on
    /// another call and has no call waiting. The driver sends it before re-running the input
    /// whose commit was refused, so that input is handled as an answer the user cannot take.
    RegistryBusy,
    /// The session's deadline may have passed; early or repeated ticks are harmless.
    Tick,
    /// Glare, a user's side: `device` asked to call the number whose call to this user is
    /// ringing now. Nothing new is dialled; the device answers its ringing leg of this call,
    /// and the timeline says why. Refused unless the call rings and the device's leg is live.
    CallBack {
        /// The device that asked for the call.
        device: DeviceId,
    },
    /// Glare between two users of one deployment: they called each other at once and this
    /// call lost to `survivor` (the lower `call_session_id`, see [`glare_loser`]). A ringing
    /// call ends on every device with reason `replaced`; an ended one is left as it is; an
    /// answered one is refused (the glare is over once someone talks).
    Replaced {
        /// The call that goes on.
        survivor: CallSessionId,
    },
}

/// Of two calls that two users of one deployment placed to each other at once, the one that
/// ends (reason `replaced`): the higher `call_session_id`, so every node, whichever of the two it
/// learns about first, picks the same one.
pub fn glare_loser<'a>(a: &'a CallSessionId, b: &'a CallSessionId) -> &'a CallSessionId {
    if a.as_str() <= b.as_str() {
        b
    } else {
        a
    }
}

/// Provider error code of a command on a call that has already ended (Telnyx `90018`).
pub const CALL_ENDED_CODE: &str = "90018";

/// An error returned by the provider for a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandError {
    /// Provider error code, e.g. [`CALL_ENDED_CODE`], when there is one.
    pub code: Option<String>,
    /// Human-readable description, for the timeline.
    pub message: String,
}

impl CommandError {
    /// An error with a provider code.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: Some(code.into()),
            message: message.into(),
        }
    }

    /// The provider's refusal because the call has already ended ([`CALL_ENDED_CODE`]).
    pub fn call_ended(message: impl Into<String>) -> Self {
        Self::new(CALL_ENDED_CODE, message)
    }

    /// Whether the command failed because its leg had already ended: the leg is gone, and its
    /// hangup webhook may still be on its way.
    pub fn is_call_ended(&self) -> bool {
        self.code.as_deref() == Some(CALL_ENDED_CODE)
    }
}

/// The decoded `client_state` every command of a session sets: it routes any webhook, even one
/// that overtakes the dial response, to its session and leg. The Telnyx adapter base64-encodes
/// its JSON.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientStateRef {
    /// The session the leg belongs to.
    pub session: CallSessionId,
    /// The device a device leg rings; `None` for the caller and PSTN legs.
    pub device: Option<DeviceId>,
    /// The leg's role label: [`LEG_CALLER`], [`LEG_DEVICE`] or [`LEG_PSTN`].
    pub leg: String,
    /// `outbound` on the leg that rings the calling device of a click-to-call: the device
    /// agent takes it as the user's own outbound call (CONNECTING, then RINGING_OUTBOUND), not
    /// as an incoming call. Absent on every other leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<crate::state::Direction>,
}

impl ClientStateRef {
    /// Whether this names the calling device's leg of a click-to-call.
    pub fn is_outbound_device_leg(&self) -> bool {
        self.direction == Some(crate::state::Direction::Outbound) && self.leg == LEG_DEVICE
    }
}

/// Leg label of the inbound caller.
pub const LEG_CALLER: &str = "caller";
/// Leg label of a leg that rings one device.
pub const LEG_DEVICE: &str = "device";
/// Leg label of the outbound leg to the PSTN destination.
pub const LEG_PSTN: &str = "pstn";

/// A Call Control webhook reduced to what a session needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderEvent {
    /// `payload.call_control_id`; the spec omits it on `call.recording.saved`.
    pub call_control_id: Option<CallControlId>,
    /// `payload.client_state`, decoded; `None` when never set (e.g. a fresh inbound call).
    pub client_state: Option<ClientStateRef>,
    /// What happened.
    pub kind: ProviderEventKind,
}

impl ProviderEvent {
    /// An event about the leg `ccid`, routed by `client_state` when the leg is not yet known.
    pub fn new(
        ccid: impl Into<CallControlId>,
        client_state: Option<ClientStateRef>,
        kind: ProviderEventKind,
    ) -> Self {
        Self {
            call_control_id: Some(ccid.into()),
            client_state,
            kind,
        }
    }
}

/// The webhook event types a session acts on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProviderEventKind {
    /// `call.initiated`.
    Initiated,
    /// `call.answered`.
    Answered,
    /// `call.bridged`.
    Bridged,
    /// `call.hangup`.
    Hangup {
        /// `payload.hangup_cause`.
        cause: HangupCause,
        /// `payload.hangup_source`.
        source: HangupSource,
        /// `payload.call_quality_stats`, kept verbatim for the history.
        quality: Option<Value>,
    },
    /// `call.speak.ended`.
    SpeakEnded,
    /// `call.recording.saved`.
    RecordingSaved {
        /// The recording's URL (Telnyx URLs are valid for 10 minutes; the driver copies the file).
        url: String,
    },
    /// `call.recording.error`.
    RecordingFailed,
}

/// `payload.hangup_cause` of `call.hangup`. Unknown values read as `Unspecified`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupCause {
    /// A normal end of call.
    NormalClearing,
    /// The caller hung up before the call was answered.
    OriginatorCancel,
    /// `timeout_secs` passed without an answer.
    Timeout,
    /// `time_limit_secs` was reached.
    TimeLimit,
    /// The callee was busy.
    UserBusy,
    /// The destination does not exist.
    NotFound,
    /// The dial was aborted on timeout (`retry_on_timeout=false`).
    NoAnswer,
    /// The callee rejected the call.
    CallRejected,
    /// Any other or missing cause.
    #[serde(other)]
    Unspecified,
}

impl HangupCause {
    /// Parses the wire value; unknown values become `Unspecified` (the set is open).
    pub fn from_wire(raw: &str) -> Self {
        match raw {
            "normal_clearing" => Self::NormalClearing,
            "originator_cancel" => Self::OriginatorCancel,
            "timeout" => Self::Timeout,
            "time_limit" => Self::TimeLimit,
            "user_busy" => Self::UserBusy,
            "not_found" => Self::NotFound,
            "no_answer" => Self::NoAnswer,
            "call_rejected" => Self::CallRejected,
            _ => Self::Unspecified,
        }
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NormalClearing => "normal_clearing",
            Self::OriginatorCancel => "originator_cancel",
            Self::Timeout => "timeout",
            Self::TimeLimit => "time_limit",
            Self::UserBusy => "user_busy",
            Self::NotFound => "not_found",
            Self::NoAnswer => "no_answer",
            Self::CallRejected => "call_rejected",
            Self::Unspecified => "unspecified",
        }
    }
}

/// `payload.hangup_source` of `call.hangup`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupSource {
    /// The calling side hung up.
    Caller,
    /// The called side hung up.
    Callee,
    /// Not reported.
    #[serde(other)]
    Unknown,
}

impl HangupSource {
    /// Parses the wire value; unknown values become `Unknown`.
    pub fn from_wire(raw: &str) -> Self {
        match raw {
            "caller" => Self::Caller,
            "callee" => Self::Callee,
            _ => Self::Unknown,
        }
    }
}
