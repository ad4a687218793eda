//! Why a device must stop ringing, carried by every dismissal on every channel.

use crate::ids::DeviceId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The reason a ringing device is dismissed. Only `CallerCancelled` and `Timeout` make a
/// missed call; the others mean the call was dealt with somewhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DismissReason {
    /// Another device of the same user answered; it is named so it can drop its own echo.
    AnsweredElsewhere {
        /// The device that answered.
        device_id: DeviceId,
    },
    /// Another device of the same user declined the call for everyone.
    DeclinedElsewhere {
        /// The device that declined.
        device_id: DeviceId,
    },
    /// The caller hung up before anyone answered.
    CallerCancelled,
    /// Nobody answered within the ring timeout.
    Timeout,
    /// The user was already on a call and call waiting is off.
    Busy,
    /// Glare: two users of one deployment called each other at once and this call lost to the
    /// one with the lower `call_session_id`, which goes on. Not a missed call.
    Replaced,
}

impl DismissReason {
    /// Whether this dismissal makes the call a missed call.
    pub fn is_missed(&self) -> bool {
        matches!(
            self,
            DismissReason::CallerCancelled | DismissReason::Timeout
        )
    }

    /// The device that caused the dismissal, if a device did.
    pub fn caused_by(&self) -> Option<&DeviceId> {
        match self {
            DismissReason::AnsweredElsewhere { device_id }
            | DismissReason::DeclinedElsewhere { device_id } => Some(device_id),
            _ => None,
        }
    }

    /// The snake_case name used on the wire (`answered_elsewhere`, `timeout`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            DismissReason::AnsweredElsewhere { .. } => "answered_elsewhere",
            DismissReason::DeclinedElsewhere { .. } => "declined_elsewhere",
            DismissReason::CallerCancelled => "caller_cancelled",
            DismissReason::Timeout => "timeout",
            DismissReason::Busy => "busy",
            DismissReason::Replaced => "replaced",
        }
    }
}

/// One of the four dismissal channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// SIP BYE/CANCEL of the device's leg, seen by the SDK.
    Sip,
    /// `call_ended` on the WebSocket.
    #[serde(rename = "websocket", alias = "web_socket")]
    WebSocket,
    /// `call_ended` push (FCM data / APNs regular push).
    Push,
    /// The 3 s status poll.
    Poll,
}

impl Channel {
    /// Every channel, in the order of the design's table.
    pub const ALL: [Channel; 4] = [
        Channel::Sip,
        Channel::WebSocket,
        Channel::Push,
        Channel::Poll,
    ];

    /// snake_case name: `sip`, `websocket`, `push`, `poll`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Sip => "sip",
            Channel::WebSocket => "websocket",
            Channel::Push => "push",
            Channel::Poll => "poll",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
