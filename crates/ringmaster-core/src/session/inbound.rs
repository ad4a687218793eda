//! Inbound calls: ring every device, first answer wins, everything else is dismissed.

use super::config::CallerAnswer;
use super::effect::{Channel, Direction, Effect, NotifyEvent, RejectCause};
use super::error::SessionError;
use super::input::{CommandError, HangupCause, HangupSource};
use super::leg::Release;
use super::{Outcome, Phase, Session, ANCHOR};
use crate::dismissal::DismissReason;
use crate::ids::DeviceId;
use crate::state::CallState;
use crate::time::Timestamp;
use std::time::Duration;

impl Session {
    pub(super) fn start_inbound(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        self.phase = Phase::Ringing;
        self.bump();
        self.leg_update(ANCHOR, now, fx);
        self.timeline("incoming", None, None, now, fx);
        if self.busy {
            self.ring_outcome = Some(DismissReason::Busy);
            self.timeline("busy", None, None, now, fx);
            self.unanswered(
                Release::Reject(RejectCause::UserBusy),
                Outcome::Busy,
                now,
                fx,
            );
            return;
        }
        if self.legs.len() == 1 {
            self.ring_outcome = Some(DismissReason::Timeout);
            self.timeline("no_devices", None, None, now, fx);
            self.unanswered(Release::Hangup, Outcome::Missed, now, fx);
            return;
        }
        if self.config.caller_answer == CallerAnswer::Immediately {
            self.answer_anchor(fx);
        }
        let caller = self.legs[ANCHOR].ccid.clone();
        for i in 1..self.legs.len() {
            let Some(to) = self.legs[i].target().map(|t| t.sip_uri.clone()) else {
                continue;
            };
            self.dial(i, to, caller.clone(), now, fx);
        }
        let version = self.version;
        let incoming = NotifyEvent::IncomingCall {
            from: self.from.clone(),
            to: self.to.clone(),
            version,
        };
        self.notify(Channel::WebSocket, incoming.clone(), fx);
        for leg in &self.legs {
            if let Some(t) = leg.target().filter(|t| t.is_mobile()) {
                let channel = Channel::Push {
                    device: t.device_id.clone(),
                    platform: t.platform.clone(),
                };
                self.notify(channel, incoming.clone(), fx);
            }
        }
        self.ring_deadline =
            Some(now + Duration::from_secs(u64::from(self.config.ring_timeout_secs)));
        self.history(false, fx);
    }

    /// First answer wins; any other answer (late, ignored, after the end) is hung up.
    pub(super) fn device_answered(&mut self, i: usize, now: Timestamp, fx: &mut Vec<Effect>) {
        let device = self.legs[i].device().cloned();
        if self.phase != Phase::Ringing || self.legs[i].is_out() {
            self.timeline("late_answer", device.as_ref(), None, now, fx);
            self.release(i, Release::Hangup, fx);
            return;
        }
        if self.registry_busy {
            self.answer_refused_busy(device.as_ref(), now, fx);
            return;
        }
        self.winner = Some(i);
        self.phase = Phase::Answered;
        self.answered_at = Some(now);
        self.ring_deadline = None;
        self.bump();
        self.timeline("answered", device.as_ref(), None, now, fx);
        self.set_registry(CallState::Active, now, fx);
        self.answer_anchor(fx);
        self.await_bridge(now);
        self.try_bridge(now, fx);
        for j in 1..self.legs.len() {
            if j != i {
                self.release(j, Release::Hangup, fx);
            }
        }
        if let Some(device_id) = device {
            self.dismiss(DismissReason::AnsweredElsewhere { device_id }, fx);
        }
        self.history(false, fx);
    }

    /// A device answered, but the store refused the user's active-call entry (another call,
    /// no call waiting): the answer is not taken. Every leg is hung up, every device is told
    /// `busy`, and the caller gets voicemail or `USER_BUSY` as for a busy user at ring time.
    fn answer_refused_busy(
        &mut self,
        device: Option<&DeviceId>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        let detail = Some("answered while on another call without call waiting".to_owned());
        self.timeline("answer_refused", device, detail, now, fx);
        self.stop_ringing(DismissReason::Busy, now, fx);
        self.unanswered(
            Release::Reject(RejectCause::UserBusy),
            Outcome::Busy,
            now,
            fx,
        );
    }

    /// Stops every device ringing for `reason`.
    fn stop_ringing(&mut self, reason: DismissReason, now: Timestamp, fx: &mut Vec<Effect>) {
        self.ring_outcome = Some(reason.clone());
        self.ring_deadline = None;
        for j in 1..self.legs.len() {
            self.release(j, Release::Hangup, fx);
        }
        self.bump();
        self.timeline(reason.code(), reason.caused_by(), None, now, fx);
        self.dismiss(reason, fx);
    }

    pub(super) fn caller_cancelled(
        &mut self,
        cause: HangupCause,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        self.hangup_cause.get_or_insert(cause);
        self.stop_ringing(DismissReason::CallerCancelled, now, fx);
        self.finalize(Outcome::Missed, now, fx);
    }

    pub(super) fn ring_timeout(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        self.stop_ringing(DismissReason::Timeout, now, fx);
        self.unanswered(Release::Hangup, Outcome::Missed, now, fx);
    }

    /// A device leg hung up while ringing without the session asking: the device refused the
    /// call for itself (`hangup_source` callee), or Telnyx gave up on it. Only the timeline
    /// notes it; the leg row already holds the cause.
    pub(super) fn device_leg_ended(
        &self,
        i: usize,
        cause: HangupCause,
        source: HangupSource,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        if self.legs[i].release.is_some() {
            return;
        }
        let event = match source {
            HangupSource::Callee => "rejected",
            HangupSource::Caller | HangupSource::Unknown => "leg_ended",
        };
        let device = self.legs[i].device().cloned();
        let detail = Some(cause.as_str().to_owned());
        self.timeline(event, device.as_ref(), detail, now, fx);
    }

    /// A device leg failed, hung up or was ignored; with none left, ringing is over.
    pub(super) fn inbound_leg_gone(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        if self.phase == Phase::Ringing && self.no_device_left() {
            self.timeline("no_device_left", None, None, now, fx);
            self.ring_timeout(now, fx);
        }
    }

    /// The caller could not be answered: nothing can be connected.
    pub(super) fn anchor_answer_failed(
        &mut self,
        err: &CommandError,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        if self.legs[ANCHOR].is_terminal() {
            return;
        }
        self.timeline("answer_failed", None, Some(err.message.clone()), now, fx);
        if err.is_call_ended() && self.phase == Phase::Ringing {
            // The caller hung up before our answer reached Telnyx (the answer can be that late
            // when a node crashed before dispatching it) and its hangup webhook is still on its
            // way: the caller cancelled, a missed call, not a failure. The leg is gone, so
            // there is nothing to hang up; the webhook, when it comes, completes its row.
            let caller = &mut self.legs[ANCHOR];
            caller.release = Some(Release::Hangup);
            caller.release_sent = true;
            self.stop_ringing(DismissReason::CallerCancelled, now, fx);
            self.finalize(Outcome::Missed, now, fx);
            return;
        }
        let why = format!("caller could not be answered: {}", err.message);
        match self.phase {
            Phase::Ringing => {
                // Nobody talked to the caller, and every device shows a missed call (they are
                // told the caller is gone, which is what the user observes): history says
                // missed too, so the user's devices and the backend agree. The history row's
                // `failure` and the timeline's `answer_failed` keep the reason for operators.
                self.stop_ringing(DismissReason::CallerCancelled, now, fx);
                self.failure = Some(why);
                self.finalize(Outcome::Missed, now, fx);
            }
            Phase::Answered => self.fail(why, now, fx),
            Phase::Voicemail => self.finalize_voicemail(now, fx),
            Phase::Created | Phase::Bridged | Phase::Ended => {}
        }
    }

    pub(super) fn on_device_decline(
        &mut self,
        device: &DeviceId,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        self.require_device(device)?;
        if self.direction == Direction::Outbound {
            return self.outbound_cancel(device, now, fx);
        }
        let reason = DismissReason::DeclinedElsewhere {
            device_id: device.clone(),
        };
        if self.ring_outcome.as_ref() == Some(&reason) {
            return Ok(());
        }
        if self.phase != Phase::Ringing {
            return Err(SessionError::NotRinging {
                status: self.status(),
            });
        }
        self.stop_ringing(reason, now, fx);
        self.unanswered(
            Release::Reject(RejectCause::UserBusy),
            Outcome::Declined,
            now,
            fx,
        );
        Ok(())
    }

    pub(super) fn on_device_ignore(
        &mut self,
        device: &DeviceId,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let i = self.require_device(device)?;
        if self.direction == Direction::Outbound {
            return self.outbound_cancel(device, now, fx);
        }
        if self.legs[i].ignored {
            return Ok(());
        }
        if self.phase != Phase::Ringing {
            return Err(SessionError::NotRinging {
                status: self.status(),
            });
        }
        self.legs[i].ignored = true;
        self.timeline("ignored", Some(device), None, now, fx);
        self.release(i, Release::Hangup, fx);
        self.inbound_leg_gone(now, fx);
        Ok(())
    }

    fn require_device(&self, device: &DeviceId) -> Result<usize, SessionError> {
        self.device_leg(device)
            .ok_or_else(|| SessionError::UnknownDevice {
                device: device.clone(),
            })
    }
}
