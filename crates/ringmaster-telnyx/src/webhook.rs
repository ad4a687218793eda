//! Call Control v2 webhooks: the `{data:{...}, meta?}` envelope and typed payloads.
//!
//! Unknown payload fields are ignored and unknown event types parse as [`Event::Unknown`], so the
//! server can acknowledge anything Telnyx adds later. The legacy v1 format is rejected.

use crate::client_state::{ClientState, ClientStateError, EncodedClientState};
use crate::iso_time::{format_iso, parse_iso};
use ringmaster_core::{CallControlId, CallLegId, CallSessionId, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Largest webhook body we accept; real call events are a few KiB.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 256 * 1024;

/// Why a webhook body was not accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WebhookError {
    /// The body is larger than [`MAX_WEBHOOK_BODY_BYTES`].
    #[error("webhook body is {len} bytes, more than the {MAX_WEBHOOK_BODY_BYTES} allowed")]
    TooLarge {
        /// Body length in bytes.
        len: usize,
    },
    /// The body is not JSON.
    #[error("webhook body is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON but not an object.
    #[error("webhook body is not a JSON object")]
    NotAnObject,
    /// The body is in the API v1 format (no `data` wrapper, `call_initiated`-style names).
    #[error(
        "legacy Call Control v1 webhook ({event_type}); set the application's \
         webhook_api_version to \"2\""
    )]
    LegacyV1 {
        /// The v1 event name, e.g. `call_initiated`.
        event_type: String,
    },
    /// The body has no `data` object and is not a recognisable older format either.
    #[error("webhook body has no \"data\" envelope")]
    MissingEnvelope,
    /// The envelope lacks a required field or has one of the wrong type.
    #[error("invalid webhook envelope: {0}")]
    InvalidEnvelope(String),
    /// `occurred_at` is not an RFC 3339 instant after 1970.
    #[error("invalid occurred_at {0:?}")]
    InvalidOccurredAt(String),
    /// A known event type whose payload does not have the required fields.
    #[error("invalid {event_type} payload: {message}")]
    Payload {
        /// The event type.
        event_type: String,
        /// What was wrong.
        message: String,
    },
}

/// `meta` of the envelope: delivery bookkeeping, present in docs examples but not in the spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WebhookMeta {
    /// Delivery attempt number, starting at 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The URL this webhook was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
}

/// One parsed webhook.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookEvent {
    /// `data.id`: unique per event, the deduplication key.
    pub id: String,
    /// `data.occurred_at`, to the millisecond; order events by this, never by arrival.
    pub occurred_at: Timestamp,
    /// `meta`, when present.
    pub meta: Option<WebhookMeta>,
    /// The event and its typed payload.
    pub event: Event,
}

/// The event type and payload of a webhook.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `call.initiated`: a new inbound call or a dialled leg.
    CallInitiated(CallInitiated),
    /// `call.answered`.
    CallAnswered(CallAnswered),
    /// `call.bridged`, sent for each of the two legs.
    CallBridged(CallBridged),
    /// `call.hangup`.
    CallHangup(CallHangup),
    /// `call.hold`.
    CallHold(CallPayload),
    /// `call.unhold`.
    CallUnhold(CallPayload),
    /// `call.recording.saved` (also accepts 2022's `recording_saved` name).
    CallRecordingSaved(CallRecordingSaved),
    /// `call.machine.detection.ended`.
    CallMachineDetectionEnded(CallMachineDetectionEnded),
    /// `call.speak.started`.
    CallSpeakStarted(CallPayload),
    /// `call.speak.ended`.
    CallSpeakEnded(CallSpeakEnded),
    /// `call.playback.started`.
    CallPlaybackStarted(CallPlayback),
    /// `call.playback.ended`.
    CallPlaybackEnded(CallPlaybackEnded),
    /// Any other event type, kept raw so it can be acknowledged and ignored.
    Unknown {
        /// The event type as sent.
        event_type: String,
        /// The raw payload.
        payload: Value,
    },
}

/// Fields every call event payload carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRef {
    /// The leg's command handle (absent in some spec examples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_control_id: Option<CallControlId>,
    /// Unique id of the leg.
    pub call_leg_id: CallLegId,
    /// Shared by all linked legs of one call.
    pub call_session_id: CallSessionId,
    /// The Call Control application id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// Echo of the last `client_state` set on this leg; `null` when never set.
    #[serde(default)]
    pub client_state: Option<EncodedClientState>,
    /// Calling party (E.164 or SIP URI; not always strict E.164).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Called party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl CallRef {
    /// Decodes `client_state` as Ringmaster's own; `None` when the leg has none.
    pub fn decode_client_state(&self) -> Option<Result<ClientState, ClientStateError>> {
        self.client_state.as_ref().map(EncodedClientState::decode)
    }
}

/// A SIP or custom header as Telnyx lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderPair {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// Payload of events that carry only the common fields (`call.hold`, `call.speak.started`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallPayload {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
}

macro_rules! open_enum {
    ($(#[$doc:meta])* $name:ident, fallback $fallback:ident, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// Fallback for values not listed above (and for a missing value).
            #[default]
            $fallback,
        }

        impl $name {
            /// The wire value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::$fallback => open_enum!(@fallback_text $fallback),
                }
            }

            /// Maps a wire value, unknown ones to the fallback.
            pub fn from_wire(text: &str) -> Self {
                match text {
                    $($text => Self::$variant,)+
                    _ => Self::$fallback,
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = Option::<String>::deserialize(d)?;
                Ok(text.as_deref().map(Self::from_wire).unwrap_or_default())
            }
        }
    };
    (@fallback_text Unspecified) => { "unspecified" };
    (@fallback_text Unknown) => { "unknown" };
    (@fallback_text NotSure) => { "not_sure" };
}

open_enum!(
    /// `hangup_cause` of `call.hangup` (the spec's nine values; unknown ones map to `Unspecified`).
    HangupCause, fallback Unspecified, {
        /// The callee rejected the call (SIP 603).
        CallRejected => "call_rejected",
        /// Normal end of an answered call.
        NormalClearing => "normal_clearing",
        /// The originator cancelled before answer.
        OriginatorCancel => "originator_cancel",
        /// `timeout_secs` elapsed without answer.
        Timeout => "timeout",
        /// `time_limit_secs` was reached.
        TimeLimit => "time_limit",
        /// The callee was busy (SIP 486).
        UserBusy => "user_busy",
        /// The destination does not exist.
        NotFound => "not_found",
        /// No answer with `retry_on_timeout=false`.
        NoAnswer => "no_answer",
    }
);

open_enum!(
    /// `hangup_source` of `call.hangup`.
    HangupSource, fallback Unknown, {
        /// The calling side hung up.
        Caller => "caller",
        /// The called side hung up.
        Callee => "callee",
    }
);

open_enum!(
    /// `direction` of `call.initiated`.
    Direction, fallback Unknown, {
        /// A call into Telnyx from outside.
        Incoming => "incoming",
        /// A leg we dialled.
        Outgoing => "outgoing",
    }
);

open_enum!(
    /// `result` of `call.machine.detection.ended`.
    MachineDetectionResult, fallback NotSure, {
        /// A person answered.
        Human => "human",
        /// A machine answered.
        Machine => "machine",
    }
);

/// `call.initiated` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInitiated {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
    /// `incoming` or `outgoing`.
    #[serde(default)]
    pub direction: Direction,
    /// `parked` (inbound) or `bridging` (dialled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When the call started (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Caller name, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id_name: Option<String>,
    /// Custom SIP headers of the INVITE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_headers: Option<Vec<HeaderPair>>,
    /// Tags set on the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `call.answered` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallAnswered {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
    /// `answered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When the call started (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// Custom SIP headers of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_headers: Option<Vec<HeaderPair>>,
    /// Tags set on the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `call.bridged` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallBridged {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
    /// `bridged` in some docs examples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// `call.hangup` payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallHangup {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
    /// Why the call ended.
    #[serde(default)]
    pub hangup_cause: HangupCause,
    /// Which side ended it.
    #[serde(default)]
    pub hangup_source: HangupSource,
    /// SIP response code as text (`"603"`), or `"unspecified"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_hangup_cause: Option<String>,
    /// `hangup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When the call started (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it ended; real payloads carry it although the spec does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Media quality; `null` when no media flowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_quality_stats: Option<CallQualityStats>,
    /// Tags set on the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `call_quality_stats` of `call.hangup`; Telnyx sends the numbers as strings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct CallQualityStats {
    /// What we received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<InboundQuality>,
    /// What we sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundQuality>,
}

/// Inbound media quality. A value Telnyx sends that is not a number reads as `None`: stats are
/// advisory and must never make a hangup unreadable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct InboundQuality {
    /// Maximum jitter variance (ms).
    #[serde(default, with = "str_num", skip_serializing_if = "Option::is_none")]
    pub jitter_max_variance: Option<f64>,
    /// Packets counted for jitter.
    #[serde(default, with = "str_num", skip_serializing_if = "Option::is_none")]
    pub jitter_packet_count: Option<u64>,
    /// Mean opinion score, 1.0 to 5.0.
    #[serde(default, with = "str_num", skip_serializing_if = "Option::is_none")]
    pub mos: Option<f64>,
    /// Packets received.
    #[serde(default, with = "str_num", skip_serializing_if = "Option::is_none")]
    pub packet_count: Option<u64>,
    /// Packets skipped.
    #[serde(default, with = "str_num", skip_serializing_if = "Option::is_none")]
    pub skip_packet_count: Option<u64>,
}

/// Outbound media quality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OutboundQuality {
    /// Packets sent.
    #[serde(default, with = "str_num", skip_serializing_if = "Option::is_none")]
    pub packet_count: Option<u64>,
    /// Packets skipped.
    #[serde(default, with = "str_num", skip_serializing_if = "Option::is_none")]
    pub skip_packet_count: Option<u64>,
}

mod str_num {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<S: Serializer, T: Display>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<Option<T>, D::Error> {
        Ok(match Option::<Value>::deserialize(d)? {
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(Value::Number(n)) => n.to_string().parse().ok(),
            _ => None,
        })
    }
}

/// `recording_urls` / `public_recording_urls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RecordingUrls {
    /// MP3 download URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mp3: Option<String>,
    /// WAV download URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wav: Option<String>,
}

/// `call.recording.saved` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecordingSaved {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
    /// `single` or `dual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<String>,
    /// Recording id (older payloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<String>,
    /// `wav` or `mp3` (older payloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// When recording started (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_started_at: Option<String>,
    /// When recording ended (ISO-8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_ended_at: Option<String>,
    /// Download URLs, valid for 10 minutes.
    #[serde(default)]
    pub recording_urls: RecordingUrls,
    /// Public URLs, when the account stores recordings publicly.
    #[serde(default)]
    pub public_recording_urls: RecordingUrls,
}

/// `call.machine.detection.ended` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallMachineDetectionEnded {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
    /// `human`, `machine` or `not_sure`.
    #[serde(default)]
    pub result: MachineDetectionResult,
}

/// `call.speak.ended` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSpeakEnded {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
    /// `completed`, `call_hangup` or `stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `call.playback.started` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallPlayback {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
    /// The audio being played.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
}

/// `call.playback.ended` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallPlaybackEnded {
    /// Common fields.
    #[serde(flatten)]
    pub call: CallRef,
    /// The audio that was played.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// `completed`, `call_hangup`, `stopped` or `file_not_found`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl Event {
    /// The wire event type, e.g. `call.hangup`.
    pub fn event_type(&self) -> &str {
        match self {
            Event::CallInitiated(_) => "call.initiated",
            Event::CallAnswered(_) => "call.answered",
            Event::CallBridged(_) => "call.bridged",
            Event::CallHangup(_) => "call.hangup",
            Event::CallHold(_) => "call.hold",
            Event::CallUnhold(_) => "call.unhold",
            Event::CallRecordingSaved(_) => "call.recording.saved",
            Event::CallMachineDetectionEnded(_) => "call.machine.detection.ended",
            Event::CallSpeakStarted(_) => "call.speak.started",
            Event::CallSpeakEnded(_) => "call.speak.ended",
            Event::CallPlaybackStarted(_) => "call.playback.started",
            Event::CallPlaybackEnded(_) => "call.playback.ended",
            Event::Unknown { event_type, .. } => event_type,
        }
    }

    /// The common call fields, for every known event type.
    pub fn call(&self) -> Option<&CallRef> {
        Some(match self {
            Event::CallInitiated(p) => &p.call,
            Event::CallAnswered(p) => &p.call,
            Event::CallBridged(p) => &p.call,
            Event::CallHangup(p) => &p.call,
            Event::CallHold(p) | Event::CallUnhold(p) | Event::CallSpeakStarted(p) => &p.call,
            Event::CallRecordingSaved(p) => &p.call,
            Event::CallMachineDetectionEnded(p) => &p.call,
            Event::CallSpeakEnded(p) => &p.call,
            Event::CallPlaybackStarted(p) => &p.call,
            Event::CallPlaybackEnded(p) => &p.call,
            Event::Unknown { .. } => return None,
        })
    }

    /// Builds the typed event from a type name and raw payload.
    pub fn from_parts(event_type: &str, payload: Value) -> Result<Event, WebhookError> {
        fn typed<T: DeserializeOwned>(event_type: &str, payload: Value) -> Result<T, WebhookError> {
            serde_json::from_value(payload).map_err(|e| WebhookError::Payload {
                event_type: event_type.to_owned(),
                message: e.to_string(),
            })
        }
        Ok(match event_type {
            "call.initiated" => Event::CallInitiated(typed(event_type, payload)?),
            "call.answered" => Event::CallAnswered(typed(event_type, payload)?),
            "call.bridged" => Event::CallBridged(typed(event_type, payload)?),
            "call.hangup" => Event::CallHangup(typed(event_type, payload)?),
            "call.hold" => Event::CallHold(typed(event_type, payload)?),
            "call.unhold" => Event::CallUnhold(typed(event_type, payload)?),
            "call.recording.saved" | "recording_saved" => {
                Event::CallRecordingSaved(typed(event_type, payload)?)
            }
            "call.machine.detection.ended" => {
                Event::CallMachineDetectionEnded(typed(event_type, payload)?)
            }
            "call.speak.started" => Event::CallSpeakStarted(typed(event_type, payload)?),
            "call.speak.ended" => Event::CallSpeakEnded(typed(event_type, payload)?),
            "call.playback.started" => Event::CallPlaybackStarted(typed(event_type, payload)?),
            "call.playback.ended" => Event::CallPlaybackEnded(typed(event_type, payload)?),
            other => Event::Unknown {
                event_type: other.to_owned(),
                payload,
            },
        })
    }

    /// The payload as JSON, in Telnyx's shape.
    pub fn payload_json(&self) -> Value {
        fn json<T: Serialize>(v: &T) -> Value {
            serde_json::to_value(v).unwrap_or(Value::Null)
        }
        match self {
            Event::CallInitiated(p) => json(p),
            Event::CallAnswered(p) => json(p),
            Event::CallBridged(p) => json(p),
            Event::CallHangup(p) => json(p),
            Event::CallHold(p) | Event::CallUnhold(p) | Event::CallSpeakStarted(p) => json(p),
            Event::CallRecordingSaved(p) => json(p),
            Event::CallMachineDetectionEnded(p) => json(p),
            Event::CallSpeakEnded(p) => json(p),
            Event::CallPlaybackStarted(p) => json(p),
            Event::CallPlaybackEnded(p) => json(p),
            Event::Unknown { payload, .. } => payload.clone(),
        }
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, WebhookError> {
    obj.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::InvalidEnvelope(format!("missing string field {key:?}")))
}

fn parse_occurred_at(text: &str) -> Result<Timestamp, WebhookError> {
    parse_iso(text).ok_or_else(|| WebhookError::InvalidOccurredAt(text.to_owned()))
}

fn body_object(body: &[u8]) -> Result<Map<String, Value>, WebhookError> {
    if body.len() > MAX_WEBHOOK_BODY_BYTES {
        return Err(WebhookError::TooLarge { len: body.len() });
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(WebhookError::NotAnObject),
        Err(e) => Err(WebhookError::Json(e.to_string())),
    }
}

/// What to say about a body without a `data` wrapper: v1 names have no dots.
fn unwrapped_error(obj: &Map<String, Value>) -> WebhookError {
    match obj.get("event_type").and_then(Value::as_str) {
        Some(name) if !name.contains('.') => WebhookError::LegacyV1 {
            event_type: name.to_owned(),
        },
        _ => WebhookError::MissingEnvelope,
    }
}

impl WebhookEvent {
    /// Parses a webhook body as delivered to the endpoint (the v2 `{data, meta?}` envelope).
    pub fn parse(body: &[u8]) -> Result<WebhookEvent, WebhookError> {
        let obj = body_object(body)?;
        Self::from_envelope(obj)
    }

    /// Parses the other forms Telnyx shows events in: the delivery-log form
    /// (`{event_type, payload, webhook_id, created_at}`, used in docs captures) and the
    /// delivery record (`{metadata: {event: {...}}}`), as well as the v2 envelope. Use it for
    /// captured or exported events, never for bodies arriving on the webhook endpoint.
    pub fn parse_logged(body: &[u8]) -> Result<WebhookEvent, WebhookError> {
        let mut obj = body_object(body)?;
        if obj.contains_key("data") {
            return Self::from_envelope(obj);
        }
        if let Some(Value::Object(event)) = obj
            .get_mut("metadata")
            .and_then(|m| m.as_object_mut())
            .and_then(|m| m.remove("event"))
        {
            return Self::from_data(event, None);
        }
        let Some(webhook_id) = obj.get("webhook_id").and_then(Value::as_str) else {
            return Err(unwrapped_error(&obj));
        };
        let id = webhook_id.to_owned();
        let event_type = str_field(&obj, "event_type")?.to_owned();
        let payload = obj.remove("payload").unwrap_or(Value::Null);
        // Log captures put occurred_at inside the payload; created_at is when the log was written.
        let occurred = payload
            .get("occurred_at")
            .and_then(Value::as_str)
            .or_else(|| obj.get("created_at").and_then(Value::as_str))
            .ok_or_else(|| WebhookError::InvalidEnvelope("missing occurred_at".to_owned()))?;
        let occurred_at = parse_occurred_at(occurred)?;
        Ok(WebhookEvent {
            id,
            occurred_at,
            meta: None,
            event: Event::from_parts(&event_type, payload)?,
        })
    }

    fn from_envelope(mut obj: Map<String, Value>) -> Result<WebhookEvent, WebhookError> {
        let data = match obj.remove("data") {
            Some(Value::Object(data)) => data,
            Some(_) => {
                return Err(WebhookError::InvalidEnvelope(
                    "\"data\" is not an object".to_owned(),
                ))
            }
            None => return Err(unwrapped_error(&obj)),
        };
        let meta = match obj.remove("meta") {
            None | Some(Value::Null) => None,
            Some(m) => Some(
                serde_json::from_value(m)
                    .map_err(|e| WebhookError::InvalidEnvelope(format!("meta: {e}")))?,
            ),
        };
        Self::from_data(data, meta)
    }

    fn from_data(
        mut data: Map<String, Value>,
        meta: Option<WebhookMeta>,
    ) -> Result<WebhookEvent, WebhookError> {
        let id = str_field(&data, "id")?.to_owned();
        let event_type = str_field(&data, "event_type")?.to_owned();
        let occurred_at = parse_occurred_at(str_field(&data, "occurred_at")?)?;
        let payload = match data.remove("payload") {
            Some(p @ Value::Object(_)) => p,
            _ => {
                return Err(WebhookError::InvalidEnvelope(
                    "\"payload\" is missing or not an object".to_owned(),
                ))
            }
        };
        Ok(WebhookEvent {
            id,
            occurred_at,
            meta,
            event: Event::from_parts(&event_type, payload)?,
        })
    }

    /// The event type, e.g. `call.answered`.
    pub fn event_type(&self) -> &str {
        self.event.event_type()
    }

    /// The common call fields, for known event types.
    pub fn call(&self) -> Option<&CallRef> {
        self.event.call()
    }

    /// The envelope as JSON, exactly as Telnyx sends it.
    pub fn to_json(&self) -> Value {
        let mut data = Map::new();
        data.insert("event_type".into(), Value::from(self.event_type()));
        data.insert("id".into(), Value::from(self.id.clone()));
        data.insert(
            "occurred_at".into(),
            Value::from(format_iso(self.occurred_at)),
        );
        data.insert("payload".into(), self.event.payload_json());
        data.insert("record_type".into(), Value::from("event"));
        let mut root = Map::new();
        root.insert("data".into(), Value::Object(data));
        if let Some(meta) = &self.meta {
            root.insert(
                "meta".into(),
                serde_json::to_value(meta).unwrap_or(Value::Null),
            );
        }
        Value::Object(root)
    }

    /// The envelope serialised to bytes (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_hangup_cause_maps_to_unspecified() {
        assert_eq!(
            HangupCause::from_wire("brand_new"),
            HangupCause::Unspecified
        );
        assert_eq!(HangupCause::from_wire("no_answer"), HangupCause::NoAnswer);
        let cause: HangupCause = serde_json::from_str("null").unwrap();
        assert_eq!(cause, HangupCause::Unspecified);
    }

    #[test]
    fn quality_numbers_parse_from_strings_and_bad_ones_are_none() {
        let q: InboundQuality = serde_json::from_str(
            r#"{"mos":"4.50","packet_count":"591","jitter_packet_count":"x"}"#,
        )
        .unwrap();
        assert_eq!(q.mos, Some(4.5));
        assert_eq!(q.packet_count, Some(591));
        assert_eq!(q.jitter_packet_count, None);
    }

    #[test]
    fn oversize_and_non_object_bodies_are_rejected() {
        let big = vec![b' '; MAX_WEBHOOK_BODY_BYTES + 1];
        assert_eq!(
            WebhookEvent::parse(&big),
            Err(WebhookError::TooLarge { len: big.len() })
        );
        assert_eq!(WebhookEvent::parse(b"[1]"), Err(WebhookError::NotAnObject));
        assert!(matches!(
            WebhookEvent::parse(b"{"),
            Err(WebhookError::Json(_))
        ));
    }

    #[test]
    fn envelope_without_required_fields_is_invalid() {
        let body = br#"{"data":{"event_type":"call.hangup","occurred_at":"2018-02-02T22:25:27Z","payload":{}}}"#;
        assert!(matches!(
            WebhookEvent::parse(body),
            Err(WebhookError::InvalidEnvelope(_))
        ));
        let body =
            br#"{"data":{"id":"1","event_type":"call.hangup","occurred_at":"soon","payload":{}}}"#;
        assert_eq!(
            WebhookEvent::parse(body),
            Err(WebhookError::InvalidOccurredAt("soon".into()))
        );
    }

    #[test]
    fn known_type_without_ids_is_a_payload_error() {
        let body = br#"{"data":{"id":"1","event_type":"call.hangup","occurred_at":"2018-02-02T22:25:27Z","payload":{"to":"+1"}}}"#;
        assert!(matches!(
            WebhookEvent::parse(body),
            Err(WebhookError::Payload { ref event_type, .. }) if event_type == "call.hangup"
        ));
    }
}
