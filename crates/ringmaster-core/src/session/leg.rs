//! One leg of a session, as the session remembers it.

use super::effect::{LegState, RejectCause};
use super::input::{ClientStateRef, HangupCause, LEG_CALLER, LEG_DEVICE, LEG_PSTN};
use crate::ids::{CallControlId, DeviceId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A device to ring.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RingTarget {
    /// The device.
    pub device_id: DeviceId,
    /// Its SIP URI (the Dial `to`).
    pub sip_uri: String,
    /// `ios`, `android` or `web`; mobile platforms also get pushes.
    pub platform: String,
}

impl RingTarget {
    /// Whether the device gets pushes (iOS and Android do; web tabs use the WebSocket).
    pub fn is_mobile(&self) -> bool {
        matches!(self.platform.as_str(), "ios" | "android")
    }
}

/// Who is at the other end of a leg.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub(crate) enum LegRole {
    /// The inbound PSTN caller.
    Caller,
    /// One device of the user.
    Device(RingTarget),
    /// The outbound PSTN destination.
    Pstn,
}

/// How the session wants a leg gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Release {
    /// `hangup`.
    Hangup,
    /// `reject` while the leg is unanswered, `hangup` once it is answered.
    Reject(RejectCause),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Leg {
    pub role: LegRole,
    pub ccid: Option<CallControlId>,
    pub dial_command: Option<String>,
    pub answer_command: Option<String>,
    pub state: LegState,
    /// The device asked to stop ringing here only.
    pub ignored: bool,
    /// Set once the session wants the leg gone; never unset.
    pub release: Option<Release>,
    /// The release command has been emitted (it waits for the ccid when that is unknown).
    pub release_sent: bool,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub hangup_cause: Option<HangupCause>,
    pub quality: Option<Value>,
}

impl Leg {
    pub fn new(role: LegRole, ccid: Option<CallControlId>, state: LegState) -> Self {
        Self {
            role,
            ccid,
            dial_command: None,
            answer_command: None,
            state,
            ignored: false,
            release: None,
            release_sent: false,
            answered_at: None,
            ended_at: None,
            hangup_cause: None,
            quality: None,
        }
    }

    pub fn label(&self) -> &'static str {
        match self.role {
            LegRole::Caller => LEG_CALLER,
            LegRole::Device(_) => LEG_DEVICE,
            LegRole::Pstn => LEG_PSTN,
        }
    }

    pub fn target(&self) -> Option<&RingTarget> {
        match &self.role {
            LegRole::Device(t) => Some(t),
            _ => None,
        }
    }

    pub fn device(&self) -> Option<&DeviceId> {
        self.target().map(|t| &t.device_id)
    }

    /// Hung up or never created: nothing can happen on it any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state, LegState::Ended | LegState::Failed)
    }

    /// Out of the race for an answer: gone, or on its way out.
    pub fn is_out(&self) -> bool {
        self.is_terminal() || self.release.is_some()
    }

    pub fn matches(&self, cs: &ClientStateRef) -> bool {
        cs.leg == self.label() && cs.device.as_ref() == self.device()
    }
}
