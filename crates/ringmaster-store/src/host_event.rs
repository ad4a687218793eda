//! Events for the host application (outbound webhooks): what happened to a call, derived from
//! the session's effects in the commit that made it happen, so an event is in the outbox
//! exactly when its state change is stored. A relay moves them from the outbox to the
//! append-only `host_events` log each webhook endpoint is delivered from, in commit order.

use crate::session_commit::call_record;
use ringmaster_core::session::{CallRecordUpdate, Effect, SessionStatus};
use ringmaster_core::Timestamp;
use serde::{Deserialize, Serialize};

/// The outbox lane (effect `type`) of host events.
pub const HOST_EVENT_LANE: &str = "host_event";

/// Every event type an endpoint may subscribe to.
pub const EVENT_TYPES: [&str; 7] = [
    "call.ringing",
    "call.answered",
    "call.missed",
    "call.declined",
    "call.ended",
    "voicemail.saved",
    "device.push_token_invalid",
];

/// One event, as it sits in the outbox (`{"type":"host_event",...}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostEvent {
    /// Always [`HOST_EVENT_LANE`].
    #[serde(rename = "type")]
    pub lane: String,
    /// Unique and stable: the `webhook-id` of every delivery and retry.
    pub event_id: String,
    /// One of [`EVENT_TYPES`].
    pub event_type: String,
    /// When it happened.
    pub at: Timestamp,
    /// The event's `data` object.
    pub data: EventData,
}

/// The `data` of an event; fields that do not apply are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// The call (absent for device events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_session_id: Option<String>,
    /// The user it concerns.
    pub user_id: String,
    /// The user's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// `inbound` or `outbound`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Calling number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Called number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The device that answered (or whose push token was rejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Seconds from answer to end (`call.ended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// Seconds billed: the talked seconds (`call.ended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billable_seconds: Option<u64>,
    /// Why the call ended or was not answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hangup_cause: Option<String>,
    /// The voicemail recording (`voicemail.saved`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_url: Option<String>,
    /// The push provider (`device.push_token_invalid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_provider: Option<String>,
    /// The provider's reason (`device.push_token_invalid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl HostEvent {
    /// An event of `event_type`; `key` makes its id unique (a call's event happens once).
    pub fn new(event_type: &str, key: &str, at: Timestamp, data: EventData) -> Self {
        Self {
            lane: HOST_EVENT_LANE.to_owned(),
            event_id: format!("evt_{key}_{}", event_type.replace('.', "_")),
            event_type: event_type.to_owned(),
            at,
            data,
        }
    }
}

fn call_data(u: &CallRecordUpdate) -> EventData {
    EventData {
        call_session_id: Some(u.call_session_id.to_string()),
        user_id: u.user.to_string(),
        tenant_id: Some(u.tenant.to_string()),
        direction: serde_json::to_value(u.direction)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
        from: Some(u.from.clone()),
        to: Some(u.to.clone()),
        device_id: u.answered_device.as_ref().map(ToString::to_string),
        ..EventData::default()
    }
}

/// The host events of one commit: `call.ringing` when a call is created ringing,
/// `call.answered` when the session records its answer, and on the session's final history
/// update `call.missed`, `call.declined` or `call.ended` (plus `voicemail.saved` when a
/// recording was kept). Duration, billing and hangup cause are the history row's.
pub fn call_events(created: bool, effects: &[Effect], now: Timestamp) -> Vec<HostEvent> {
    let history = effects.iter().rev().find_map(|e| match e {
        Effect::History(u) => Some(u),
        _ => None,
    });
    let Some(update) = history else {
        return Vec::new();
    };
    let key = update.call_session_id.to_string();
    let mut events = Vec::new();
    if created && update.status == SessionStatus::Ringing {
        events.push(HostEvent::new("call.ringing", &key, now, call_data(update)));
    }
    let answered = effects
        .iter()
        .any(|e| matches!(e, Effect::Timeline(t) if t.event == "answered"));
    if answered {
        events.push(HostEvent::new(
            "call.answered",
            &key,
            now,
            call_data(update),
        ));
    }
    if !update.is_final {
        return events;
    }
    let record = call_record(update);
    let mut data = call_data(update);
    data.hangup_cause = record.hangup_cause.clone();
    let event_type = match update.status {
        SessionStatus::Declined => "call.declined",
        _ if update.answered_at.is_none() => "call.missed",
        _ => "call.ended",
    };
    if event_type == "call.ended" {
        let talked = record.billable_seconds();
        data.duration_secs = Some(talked);
        data.billable_seconds = Some(talked);
    }
    events.push(HostEvent::new(event_type, &key, now, data.clone()));
    if let Some(url) = &update.recording_url {
        let mut vm = data;
        vm.recording_url = Some(url.clone());
        events.push(HostEvent::new("voicemail.saved", &key, now, vm));
    }
    events
}
