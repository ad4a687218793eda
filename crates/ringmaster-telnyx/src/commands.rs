//! Call Control command bodies and responses, shared by the client and the emulator.
//!
//! The `command_id` is not a field of these bodies: every client method takes it as a separate,
//! required argument and adds it to the JSON, so no command can be sent without one.

use crate::client_state::EncodedClientState;
use crate::webhook::HeaderPair;
use ringmaster_core::{CallControlId, CallLegId, CallSessionId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Telnyx's idempotency key: a repeat within 60 s for the same call is ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(String);

impl CommandId {
    /// A caller-chosen id; derive it from (session, effect sequence) so re-dispatch reuses it.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// A random UUIDv4 id, for one-off commands that have no natural key.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The raw id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `POST /v2/calls` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialRequest {
    /// Call Control application id.
    pub connection_id: String,
    /// E.164 number or SIP URI to call.
    pub to: String,
    /// Caller id (E.164 or SIP URI).
    pub from: String,
    /// Caller name shown to the callee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_display_name: Option<String>,
    /// Ring time before `call.hangup` with cause `timeout` (Telnyx: 5–600, default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// Maximum call duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_secs: Option<u32>,
    /// Echoed in every webhook of the new leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
    /// Another call's id; the new leg joins its `call_session_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_to: Option<CallControlId>,
    /// With `link_to`: take the linked call's `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_intent: Option<bool>,
    /// With `link_to`: bridge to the linked call automatically on answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_on_answer: Option<bool>,
    /// Hang up instead of bridging when the target is already bridged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prevent_double_bridge: Option<bool>,
    /// `"self"`: park this leg instead of hanging up when its bridge ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub park_after_unbridge: Option<String>,
    /// Per-call webhook URL override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Custom SIP headers for the INVITE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_headers: Option<Vec<HeaderPair>>,
}

impl DialRequest {
    /// A dial with only the required fields set.
    pub fn new(
        connection_id: impl Into<String>,
        to: impl Into<String>,
        from: impl Into<String>,
    ) -> Self {
        Self {
            connection_id: connection_id.into(),
            to: to.into(),
            from: from.into(),
            from_display_name: None,
            timeout_secs: None,
            time_limit_secs: None,
            client_state: None,
            link_to: None,
            bridge_intent: None,
            bridge_on_answer: None,
            prevent_double_bridge: None,
            park_after_unbridge: None,
            webhook_url: None,
            custom_headers: None,
        }
    }
}

/// `actions/answer` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRequest {
    /// New `client_state` for the leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
}

/// `actions/bridge` body (sent to one leg, naming the other).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeRequest {
    /// The other leg.
    pub call_control_id: CallControlId,
    /// New `client_state` for the commanded leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
    /// `"self"`: park the commanded leg when the bridge ends instead of hanging it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub park_after_unbridge: Option<String>,
    /// Refuse to bridge when the other leg is already bridged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prevent_double_bridge: Option<bool>,
}

impl BridgeRequest {
    /// Bridge to `other`.
    pub fn to(other: CallControlId) -> Self {
        Self {
            call_control_id: other,
            client_state: None,
            park_after_unbridge: None,
            prevent_double_bridge: None,
        }
    }
}

/// `actions/hangup` body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HangupRequest {
    /// New `client_state`, echoed in the `call.hangup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
}

/// `cause` of a reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectCause {
    /// SIP 603 Decline.
    #[serde(rename = "CALL_REJECTED")]
    CallRejected,
    /// SIP 486 Busy Here.
    #[serde(rename = "USER_BUSY")]
    UserBusy,
}

/// `actions/reject` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectRequest {
    /// Why the call is rejected.
    pub cause: RejectCause,
    /// New `client_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
}

/// `actions/transfer` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// Where to transfer the call.
    pub to: String,
    /// Caller id for the new leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Ring time of the new leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u32>,
    /// `client_state` for the new leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
}

/// Recording file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingFormat {
    /// WAV.
    Wav,
    /// MP3.
    Mp3,
}

/// Recording channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingChannels {
    /// Both parties mixed.
    Single,
    /// One channel per party.
    Dual,
}

/// `actions/record_start` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordStartRequest {
    /// File format.
    pub format: RecordingFormat,
    /// Channel layout.
    pub channels: RecordingChannels,
    /// Play a beep when recording starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play_beep: Option<bool>,
    /// Maximum length in seconds (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// New `client_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
}

/// `actions/speak` body (text to speech, e.g. a voicemail greeting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakRequest {
    /// Text or SSML to speak.
    pub payload: String,
    /// Voice, e.g. `female` or `Telnyx.KokoroTTS.af`.
    pub voice: String,
    /// Language, e.g. `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// `text` or `ssml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
    /// New `client_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
}

/// `actions/playback_start` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybackStartRequest {
    /// URL of the audio file.
    pub audio_url: String,
    /// New `client_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
}

/// Data of a dial response. `is_alive` is always `false`: dial is asynchronous.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialResponse {
    /// The new leg's command handle; the only trusted source of it.
    pub call_control_id: CallControlId,
    /// The new leg's id.
    pub call_leg_id: CallLegId,
    /// The session the leg belongs to.
    pub call_session_id: CallSessionId,
    /// Whether the call is up.
    #[serde(default)]
    pub is_alive: bool,
    /// `"call"`.
    #[serde(default)]
    pub record_type: String,
    /// The leg's `client_state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_state: Option<EncodedClientState>,
}

/// Data of every other command's response: `{"result":"ok"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// `"ok"`.
    pub result: String,
    /// Recording id, when the command started one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<String>,
}

/// `{"data": ...}` wrapper of every success response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataEnvelope<T> {
    /// The response data.
    pub data: T,
}
