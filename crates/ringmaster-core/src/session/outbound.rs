//! Outbound (click-to-call) calls: ring the requesting device, then dial the destination and
//! bridge the two.

use super::effect::{Effect, LegState};
use super::error::SessionError;
use super::input::{CommandError, HangupCause};
use super::leg::{Leg, LegRole, Release};
use super::{Outcome, Phase, Session, ANCHOR};
use crate::dismissal::DismissReason;
use crate::ids::DeviceId;
use crate::state::CallState;
use crate::time::Timestamp;
use std::time::Duration;

/// Index of the PSTN leg, added when the device answers.
const PSTN: usize = 1;

impl Session {
    fn ring_deadline_from(&mut self, now: Timestamp) {
        self.ring_deadline =
            Some(now + Duration::from_secs(u64::from(self.config.ring_timeout_secs)));
    }

    pub(super) fn start_outbound(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        self.phase = Phase::Ringing;
        self.bump();
        self.timeline("outgoing", self.legs[ANCHOR].device(), None, now, fx);
        let to = self.legs[ANCHOR]
            .target()
            .map(|t| t.sip_uri.clone())
            .unwrap_or_default();
        self.dial(ANCHOR, to, None, now, fx);
        self.ring_deadline_from(now);
        self.history(false, fx);
    }

    /// The calling device picked up its leg: dial the destination.
    pub(super) fn outbound_device_answered(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        if self.legs.len() > PSTN {
            return;
        }
        if self.registry_busy {
            let device = self.legs[ANCHOR].device().cloned();
            let detail = Some("answered while on another call without call waiting".to_owned());
            self.timeline("answer_refused", device.as_ref(), detail, now, fx);
            self.ring_outcome = Some(DismissReason::Busy);
            self.dismiss(DismissReason::Busy, fx);
            self.finalize(Outcome::Busy, now, fx);
            return;
        }
        self.set_registry(CallState::RingingOutbound, now, fx);
        self.legs
            .push(Leg::new(LegRole::Pstn, None, LegState::Dialing));
        let link = self.legs[ANCHOR].ccid.clone();
        let to = self.to.clone();
        self.dial(PSTN, to, link, now, fx);
        self.ring_deadline_from(now);
    }

    /// The destination answered: bridge it to the device.
    pub(super) fn pstn_answered(&mut self, i: usize, now: Timestamp, fx: &mut Vec<Effect>) {
        if self.phase != Phase::Ringing || self.legs[i].is_out() {
            self.release(i, Release::Hangup, fx);
            return;
        }
        self.winner = Some(i);
        self.phase = Phase::Answered;
        self.answered_at = Some(now);
        self.ring_deadline = None;
        self.bump();
        self.timeline("answered", None, None, now, fx);
        self.await_bridge(now);
        self.try_bridge(now, fx);
        self.history(false, fx);
    }

    /// Either leg hung up before the destination answered.
    pub(super) fn outbound_ringing_hangup(
        &mut self,
        i: usize,
        cause: HangupCause,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        self.hangup_cause.get_or_insert(cause);
        let device = self.legs[i].device().cloned();
        let detail = Some(format!(
            "{} hung up: {}",
            self.legs[i].label(),
            cause.as_str()
        ));
        self.timeline("hangup", device.as_ref(), detail, now, fx);
        self.finalize(Outcome::Unanswered, now, fx);
    }

    pub(super) fn outbound_dial_failed(
        &mut self,
        err: &CommandError,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        if self.phase == Phase::Ringing {
            self.fail(format!("dial failed: {}", err.message), now, fx);
        }
    }

    pub(super) fn outbound_timeout(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        self.hangup_cause.get_or_insert(HangupCause::Timeout);
        self.timeline("timeout", None, None, now, fx);
        self.finalize(Outcome::Unanswered, now, fx);
    }

    /// The calling device gave up (decline or ignore) before the destination answered.
    pub(super) fn outbound_cancel(
        &mut self,
        device: &DeviceId,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        if self.phase != Phase::Ringing {
            return Err(SessionError::NotRinging {
                status: self.status(),
            });
        }
        self.timeline("cancelled", Some(device), None, now, fx);
        self.finalize(Outcome::Unanswered, now, fx);
        Ok(())
    }
}
