//! A platform-neutral push message; each client maps it onto its provider's format.

use std::collections::BTreeMap;
use std::time::Duration;

/// Which call event a push carries; it decides how iOS gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushKind {
    /// A call is ringing: the only kind sent to iOS as a VoIP push (it must become a CallKit call).
    IncomingCall,
    /// Stop ringing: never VoIP on iOS, because a VoIP push that is not a new call gets the app killed.
    CallEnded,
    /// Another device changed state (for "in call on another device" badges).
    CallStateChanged,
}

impl PushKind {
    /// The `type` field carried in the payload (`incoming_call`, `call_ended`, `call_state_changed`).
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::IncomingCall => "incoming_call",
            PushKind::CallEnded => "call_ended",
            PushKind::CallStateChanged => "call_state_changed",
        }
    }
}

/// A visible notification for iOS non-VoIP pushes; without one they go as silent background pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Notification title.
    pub title: String,
    /// Notification body.
    pub body: String,
}

/// One push: its kind, flat string data (FCM data messages allow only strings) and lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// The call event.
    pub kind: PushKind,
    /// Key/value payload, e.g. `call_session_id`, `reason`, `device_id`.
    pub data: BTreeMap<String, String>,
    /// How long the provider may hold it for an offline device.
    pub ttl: Duration,
    /// Pushes with the same key replace each other while undelivered (FCM `collapse_key`,
    /// APNs `apns-collapse-id`, at most 64 bytes).
    pub collapse_key: Option<String>,
    /// Visible text for iOS dismissals; `None` sends them as background pushes.
    pub alert: Option<Alert>,
}

impl PushMessage {
    /// A message of `kind` with no data, a 30 s TTL, no collapse key and no alert.
    pub fn new(kind: PushKind) -> Self {
        Self {
            kind,
            data: BTreeMap::new(),
            ttl: Duration::from_secs(30),
            collapse_key: None,
            alert: None,
        }
    }

    /// Adds one data field.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }
}
