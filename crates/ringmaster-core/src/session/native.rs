//! Native outbound calls: the device's Telnyx SDK dialled through the device's SIP credential,
//! so Telnyx carries the call and the session only follows it. It is created by whichever
//! arrives first, the `call.initiated` whose `from` is the device's SIP URI or the device's
//! report of IDLE → CONNECTING/REQUESTING, and both carry the Telnyx `call_session_id` it is
//! keyed by, so the second finds the first instead of making another session.

use super::effect::{Effect, LegState};
use super::leg::RingTarget;
use super::{check_address, NewOutbound, Outcome, Phase, Session, ANCHOR};
use crate::ids::{CallControlId, CallSessionId, TenantId, UserId};
use crate::state::{CallState, Platform};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::config::SessionConfig;
use super::error::SessionError;

/// Everything needed to create a native outbound session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNativeOutbound {
    /// The Telnyx `call_session_id` of the device's call.
    pub id: CallSessionId,
    /// Tenant of the user.
    pub tenant: TenantId,
    /// The calling user.
    pub user: UserId,
    /// The device that placed the call.
    pub device: RingTarget,
    /// The device's leg (`call_control_id`), when known (the webhook always has it).
    pub device_leg: Option<CallControlId>,
    /// Telnyx already reported the leg (`call.initiated`): the backend publishes CONNECTING.
    /// False when the device's own report creates the session; its report says as much.
    pub initiated: bool,
    /// The user's number (or the device's SIP URI when the user has none).
    pub from: String,
    /// The number the device dialled.
    pub to: String,
    /// Settings (`ring_timeout_secs` bounds the wait for an answer; the rest do not apply).
    pub config: SessionConfig,
}

impl Session {
    /// A session following a call the device placed itself; send `Input::Start` next.
    pub fn new_native(new: NewNativeOutbound, now: Timestamp) -> Result<Self, SessionError> {
        if let Some(ccid) = &new.device_leg {
            check_address("call_control_id", ccid.as_str())?;
        }
        let outbound = NewOutbound {
            id: new.id,
            tenant: new.tenant,
            user: new.user,
            device: new.device,
            from: new.from,
            to: new.to,
            config: new.config,
        };
        let mut session = Self::new_outbound(outbound, now)?;
        session.native = true;
        let anchor = &mut session.legs[ANCHOR];
        anchor.ccid = new.device_leg;
        if new.initiated {
            anchor.state = LegState::Ringing;
        }
        Ok(session)
    }

    /// The device's call is under way: the user is on it from now (so an inbound call meets
    /// the busy rule), it is in the history, and the backend publishes what Telnyx told it.
    pub(super) fn start_native(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        self.phase = Phase::Ringing;
        self.bump();
        self.leg_update(ANCHOR, now, fx);
        self.timeline("outgoing_native", self.legs[ANCHOR].device(), None, now, fx);
        if self.legs[ANCHOR].state == LegState::Ringing {
            self.leg_ringing(ANCHOR, now, fx);
        }
        let dialling = self.dialling_state();
        self.set_registry(dialling, now, fx);
        // Telnyx gives up on an unanswered dial long before this; a lost hangup must not leave
        // the user busy for ever.
        let wait = 2 * u64::from(self.config.ring_timeout_secs);
        self.ring_deadline = Some(now + Duration::from_secs(wait));
        self.history(false, fx);
    }

    /// CONNECTING, or REQUESTING for a web device (the SDK's first outbound state).
    pub(super) fn dialling_state(&self) -> CallState {
        match self.legs[ANCHOR].target() {
            Some(t) if t.platform == Platform::Web.as_str() => CallState::Requesting,
            _ => CallState::Connecting,
        }
    }

    /// The far end answered (the device leg's `call.answered`, or the device reported ACTIVE):
    /// there is nothing to bridge, the call is connected.
    pub(super) fn native_connected(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        if self.phase != Phase::Ringing {
            return;
        }
        self.winner = Some(ANCHOR);
        self.phase = Phase::Bridged;
        self.answered_at = Some(now);
        self.bridged_at = Some(now);
        self.ring_deadline = None;
        self.bump();
        let device = self.legs[ANCHOR].device().cloned();
        self.timeline("answered", device.as_ref(), None, now, fx);
        if let Some(d) = &device {
            if self.shown_state(d) != CallState::Active {
                self.publish_state(d, CallState::Active, None, None, now, fx);
            }
        }
        // Publishing the device's state rewrote the entry already.
        if !self.registry_set {
            self.set_registry(CallState::Active, now, fx);
        }
        self.history(false, fx);
    }

    /// A report the session accepted from the device of a native call moves the call on: the
    /// device is the only witness when Telnyx's webhooks are late or lost.
    pub(super) fn native_reported(&mut self, to: CallState, now: Timestamp, fx: &mut Vec<Effect>) {
        if !self.native {
            return;
        }
        if to == CallState::Active {
            self.native_connected(now, fx);
        } else if to.is_terminal() {
            let outcome = if self.answered_at.is_some() {
                Outcome::Completed
            } else {
                Outcome::Unanswered
            };
            let device = self.legs[ANCHOR].device().cloned();
            let detail = Some(format!("the device reported {to}"));
            self.timeline("hangup", device.as_ref(), detail, now, fx);
            self.finalize(outcome, now, fx);
        }
    }
}
