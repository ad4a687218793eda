//! Coarse status labels: the session's own, and the call's state as seen by one device.

use crate::dismissal::DismissReason;
use crate::ids::DeviceId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The session's coarse status, stored as the store's `state_label` and on the history row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Devices (or, outbound, the callee) are ringing.
    Ringing,
    /// Someone answered; the bridge is being set up.
    Answered,
    /// The two sides are connected.
    Bridged,
    /// The call is over after an answer (or an unanswered outbound call ended).
    Ended,
    /// Nobody answered (ring timeout, caller hung up) and no voicemail was left.
    Missed,
    /// In voicemail, or ended with a voicemail recording.
    Voicemail,
    /// The call could not be connected (bridge failed twice, dial refused, caller lost).
    Failed,
    /// A device declined it for everyone.
    Declined,
    /// The user was on another call.
    Busy,
}

impl SessionStatus {
    /// The snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ringing => "ringing",
            Self::Answered => "answered",
            Self::Bridged => "bridged",
            Self::Ended => "ended",
            Self::Missed => "missed",
            Self::Voicemail => "voicemail",
            Self::Failed => "failed",
            Self::Declined => "declined",
            Self::Busy => "busy",
        }
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The call's state relative to one device: the answer of `GET /api/voip/call-status/{id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Still ringing (for the user, even if this device ignored it).
    Ringing,
    /// This device took the call and it is live.
    AnsweredHere,
    /// Another device took the call.
    AnsweredElsewhere,
    /// Another device declined it for everyone.
    DeclinedElsewhere,
    /// Over (this device's call ended, or it declined, or the user was busy).
    Ended,
    /// Nobody answered: a missed call.
    Missed,
}

/// The polling channel of dismissal, for one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCallStatus {
    /// The status.
    pub status: DeviceStatus,
    /// The device that answered or declined, when another device did.
    pub device_id: Option<DeviceId>,
    /// Why the device must stop ringing, when it must.
    pub reason: Option<DismissReason>,
    /// Session status version (grows with every visible change).
    pub version: u64,
}
