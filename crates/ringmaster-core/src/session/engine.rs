//! Transitions shared by inbound and outbound sessions: effect builders, leg release, bridging,
//! ending, and the routing of inputs to the direction-specific handlers.

use super::effect::{
    Action, CallRecordUpdate, Channel, Command, Direction, Effect, LegState, LegUpdate,
    Notification, NotifyEvent, RegistryUpdate, TimelineEntry,
};
use super::error::SessionError;
use super::input::{
    ClientStateRef, CommandError, HangupCause, HangupSource, ProviderEvent, ProviderEventKind,
};
use super::leg::{Release, RingTarget};
use super::{check_address, Outcome, Phase, Session, ANCHOR, MAX_URL_LEN};
use crate::dismissal::DismissReason;
use crate::ids::{CallControlId, DeviceId};
use crate::state::CallState;
use crate::time::Timestamp;
use serde_json::Value;
use std::time::Duration;

/// Most bridge attempts per session: the first and one retry.
const MAX_BRIDGE_ATTEMPTS: u8 = 2;

impl Session {
    // ---- effect builders -------------------------------------------------------------------

    /// Emits a command with the next deterministic command id and returns that id.
    pub(super) fn command(&mut self, action: Action, fx: &mut Vec<Effect>) -> String {
        let command_id = format!("{}:{}", self.id, self.seq);
        self.seq += 1;
        fx.push(Effect::Telnyx(Command {
            call_session_id: self.id.clone(),
            command_id: command_id.clone(),
            action,
        }));
        command_id
    }

    /// Whether `command_id` is one this session has emitted.
    pub(super) fn issued(&self, command_id: &str) -> bool {
        command_id
            .strip_prefix(self.id.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
            .filter(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && (*n == "0" || !n.starts_with('0'))
            })
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n < self.seq)
    }

    pub(super) fn bump(&mut self) {
        self.version += 1;
    }

    pub(super) fn notify(&self, channel: Channel, event: NotifyEvent, fx: &mut Vec<Effect>) {
        fx.push(Effect::Notify(Notification {
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            call_session_id: self.id.clone(),
            channel,
            event,
            exclude_socket: None,
        }));
    }

    pub(super) fn timeline(
        &self,
        event: &str,
        device: Option<&DeviceId>,
        detail: Option<String>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        fx.push(Effect::Timeline(TimelineEntry {
            call_session_id: self.id.clone(),
            at: now,
            event: event.to_owned(),
            device: device.cloned(),
            detail,
            change: None,
        }));
    }

    pub(super) fn leg_update(&self, i: usize, now: Timestamp, fx: &mut Vec<Effect>) {
        let leg = &self.legs[i];
        fx.push(Effect::Leg(LegUpdate {
            call_session_id: self.id.clone(),
            leg: leg.label().to_owned(),
            device: leg.device().cloned(),
            call_control_id: leg.ccid.clone(),
            state: leg.state,
            at: now,
            answered_at: leg.answered_at,
            ended_at: leg.ended_at,
            hangup_cause: leg.hangup_cause,
            quality: leg.quality.clone(),
        }));
    }

    pub(super) fn history(&self, is_final: bool, fx: &mut Vec<Effect>) {
        fx.push(Effect::History(CallRecordUpdate {
            call_session_id: self.id.clone(),
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            direction: self.direction,
            from: self.from.clone(),
            to: self.to.clone(),
            status: self.status(),
            started_at: self.created_at,
            answered_device: self.answered_device().cloned(),
            answered_at: self.answered_at,
            bridged_at: self.bridged_at,
            ended_at: self.ended_at,
            hangup_cause: self.hangup_cause,
            dismiss_reason: self.ring_outcome.clone(),
            recording_url: self.recording_url.clone(),
            quality: self.quality.clone(),
            failure: self.failure.clone(),
            is_final,
        }));
    }

    pub(super) fn client_state(&self, i: usize) -> ClientStateRef {
        // The calling device's leg of a click-to-call says so: the device must not take it for
        // an incoming call.
        let outbound = self.direction == Direction::Outbound && i == ANCHOR && !self.native;
        ClientStateRef {
            session: self.id.clone(),
            device: self.legs[i].device().cloned(),
            leg: self.legs[i].label().to_owned(),
            direction: outbound.then_some(Direction::Outbound),
        }
    }

    /// Dials leg `i` (already in `legs`, state `Dialing`).
    pub(super) fn dial(
        &mut self,
        i: usize,
        to: String,
        link_to: Option<CallControlId>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        let client_state = self.client_state(i);
        let device = self.legs[i].device().cloned();
        let action = Action::Dial {
            to,
            from: self.from.clone(),
            timeout_secs: self.config.ring_timeout_secs,
            client_state,
            link_to,
            device: device.clone(),
        };
        let id = self.command(action, fx);
        self.legs[i].dial_command = Some(id);
        self.leg_update(i, now, fx);
        self.timeline("dial", device.as_ref(), None, now, fx);
    }

    /// The device the user talks on once the call is answered, with its platform.
    fn answered_target(&self) -> Option<&RingTarget> {
        let w = self.winner?;
        match self.direction {
            Direction::Inbound => self.legs[w].target(),
            Direction::Outbound => self.legs[ANCHOR].target(),
        }
    }

    /// `call_ended` once on the WebSocket and as a push to every mobile device that may still
    /// ring (not the one that caused it, not one that ignored the call).
    pub(super) fn dismiss(&mut self, reason: DismissReason, fx: &mut Vec<Effect>) {
        // Every event of a call carries a version of its own, so a client can drop anything
        // not newer than what it has.
        self.bump();
        let version = self.version;
        self.notify(
            Channel::WebSocket,
            NotifyEvent::CallEnded {
                reason: reason.clone(),
                version,
            },
            fx,
        );
        if self.direction == Direction::Outbound {
            return;
        }
        for leg in &self.legs {
            let Some(t) = leg.target() else { continue };
            if t.is_mobile() && !leg.ignored && reason.caused_by() != Some(&t.device_id) {
                self.notify(
                    Channel::Push {
                        device: t.device_id.clone(),
                        platform: t.platform.clone(),
                    },
                    NotifyEvent::CallEnded {
                        reason: reason.clone(),
                        version,
                    },
                    fx,
                );
            }
        }
    }

    // ---- legs ------------------------------------------------------------------------------

    /// Wants leg `i` gone. At most one command per leg, sent now or as soon as its id is known.
    pub(super) fn release(&mut self, i: usize, how: Release, fx: &mut Vec<Effect>) {
        let leg = &mut self.legs[i];
        if leg.is_terminal() || leg.release.is_some() {
            return;
        }
        leg.release = Some(how);
        self.flush_release(i, fx);
    }

    pub(super) fn release_all(&mut self, fx: &mut Vec<Effect>) {
        for i in 0..self.legs.len() {
            self.release(i, Release::Hangup, fx);
        }
    }

    fn flush_release(&mut self, i: usize, fx: &mut Vec<Effect>) {
        let leg = &self.legs[i];
        if leg.release_sent || leg.is_terminal() {
            return;
        }
        let (Some(how), Some(ccid)) = (leg.release, leg.ccid.clone()) else {
            return;
        };
        let action = match how {
            Release::Reject(cause) if leg.state != LegState::Answered => {
                Action::Reject { ccid, cause }
            }
            _ => Action::Hangup { ccid },
        };
        self.legs[i].release_sent = true;
        self.command(action, fx);
    }

    /// Records a leg's id the first time it is seen (dial result or an overtaking webhook).
    /// `alive` is false when the news is the leg's own hangup: then nothing is left to release.
    pub(super) fn learn_ccid(
        &mut self,
        i: usize,
        ccid: CallControlId,
        alive: bool,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        if self.legs[i].ccid.is_some() {
            return;
        }
        let winner = Some(i) == self.winner;
        let leg = &mut self.legs[i];
        leg.ccid = Some(ccid);
        let stray = leg.state == LegState::Failed;
        if stray {
            // The dial was reported failed (an HTTP timeout, say), yet Telnyx created the leg.
            // It left the race when the failure was handled, so it must not ring on.
            leg.state = LegState::Ringing;
            if alive && !winner {
                leg.release.get_or_insert(Release::Hangup);
            }
        }
        self.leg_update(i, now, fx);
        if stray {
            let device = self.legs[i].device().cloned();
            let detail = Some("the dial was reported failed but the leg exists".to_owned());
            self.timeline("stray_leg", device.as_ref(), detail, now, fx);
        }
        if alive {
            self.flush_release(i, fx);
        }
    }

    /// Marks leg `i` answered; false if it already was or is gone (nothing to do).
    pub(super) fn mark_answered(&mut self, i: usize, now: Timestamp, fx: &mut Vec<Effect>) -> bool {
        let leg = &mut self.legs[i];
        if leg.is_terminal() || leg.state == LegState::Answered {
            return false;
        }
        leg.state = LegState::Answered;
        leg.answered_at = Some(now);
        self.leg_update(i, now, fx);
        true
    }

    /// Answers the anchor (inbound caller) unless that is done or under way.
    pub(super) fn answer_anchor(&mut self, fx: &mut Vec<Effect>) {
        let leg = &self.legs[ANCHOR];
        if leg.answer_command.is_some() || leg.state == LegState::Answered || leg.is_out() {
            return;
        }
        let Some(ccid) = leg.ccid.clone() else { return };
        let client_state = self.client_state(ANCHOR);
        let id = self.command(Action::Answer { ccid, client_state }, fx);
        self.legs[ANCHOR].answer_command = Some(id);
    }

    /// Every device leg is gone, on its way out, or never existed.
    pub(super) fn no_device_left(&self) -> bool {
        self.legs
            .iter()
            .filter(|l| l.device().is_some())
            .all(|l| l.is_out())
    }

    // ---- bridging and ending ---------------------------------------------------------------

    /// Sends the bridge once both sides are answered and no attempt is pending.
    pub(super) fn try_bridge(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        if self.phase != Phase::Answered
            || self.bridge.in_flight.is_some()
            || self.bridge.retry_at.is_some()
            || self.bridge.attempts >= MAX_BRIDGE_ATTEMPTS
        {
            return;
        }
        let Some(w) = self.winner else { return };
        let (a, b) = (&self.legs[ANCHOR], &self.legs[w]);
        if a.state != LegState::Answered || b.state != LegState::Answered {
            return;
        }
        let (Some(ccid), Some(to_ccid)) = (a.ccid.clone(), b.ccid.clone()) else {
            return;
        };
        self.bridge.attempts += 1;
        let id = self.command(Action::Bridge { ccid, to_ccid }, fx);
        self.bridge.commands.push(id.clone());
        self.bridge.in_flight = Some(id);
        self.await_bridge(now);
        let detail = format!("attempt {}", self.bridge.attempts);
        self.timeline("bridge", self.answered_device(), Some(detail), now, fx);
    }

    /// Starts (or restarts) the wait for the answer or bridge result the call needs next.
    pub(super) fn await_bridge(&mut self, now: Timestamp) {
        self.bridge.deadline = Some(now + Duration::from_millis(self.config.bridge_timeout_ms));
    }

    pub(super) fn on_bridged(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        if self.phase != Phase::Answered {
            return;
        }
        self.phase = Phase::Bridged;
        self.bridged_at = Some(now);
        self.bridge.in_flight = None;
        self.bridge.retry_at = None;
        self.bridge.deadline = None;
        self.bump();
        let device = self.answered_target().map(|t| t.device_id.clone());
        if let Some(d) = &device {
            self.publish_state(d, CallState::Active, None, None, now, fx);
            if !self.registry_set {
                self.set_registry(CallState::Active, now, fx);
            }
        }
        self.timeline("bridged", device.as_ref(), None, now, fx);
        self.history(false, fx);
    }

    fn on_bridge_failed(
        &mut self,
        command_id: &str,
        err: &CommandError,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        if self.phase != Phase::Answered || self.bridge.in_flight.as_deref() != Some(command_id) {
            return;
        }
        self.bridge.in_flight = None;
        self.bridge.deadline = None;
        let detail = Some(err.message.clone());
        self.timeline("bridge_failed", self.answered_device(), detail, now, fx);
        if self.bridge.attempts < MAX_BRIDGE_ATTEMPTS {
            self.bridge.retry_at =
                Some(now + Duration::from_millis(self.config.bridge_retry_delay_ms));
        } else {
            self.fail(format!("bridge failed twice: {}", err.message), now, fx);
        }
    }

    /// Nothing came back for the awaited answer or bridge in `bridge_timeout_ms`: the result is
    /// taken as lost. A bridge counts as failed (retried once); a caller answer that is still
    /// unconfirmed cannot be retried (Telnyx refuses to answer a leg twice), so the call ends.
    /// A late result finds nothing in flight and changes nothing, except a bridge success
    /// while the retry is pending, which is the outcome we wanted anyway.
    fn bridge_timed_out(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        self.bridge.deadline = None;
        let waited = self.config.bridge_timeout_ms;
        if let Some(command_id) = self.bridge.in_flight.clone() {
            let err = CommandError {
                code: None,
                message: format!("no bridge result after {waited} ms"),
            };
            self.on_bridge_failed(&command_id, &err, now, fx);
            return;
        }
        let detail = Some(format!("not bridged after {waited} ms"));
        self.timeline("bridge_timeout", self.answered_device(), detail, now, fx);
        let why = if self.legs[ANCHOR].state == LegState::Answered {
            format!("call not bridged after {waited} ms")
        } else {
            format!("caller answer not confirmed after {waited} ms")
        };
        self.fail(why, now, fx);
    }

    /// One side of an answered call hung up: hang up everything else and close.
    pub(super) fn end_connected(
        &mut self,
        cause: HangupCause,
        quality: Option<Value>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        self.hangup_cause.get_or_insert(cause);
        if self.quality.is_none() {
            self.quality = quality;
        }
        self.finalize(Outcome::Completed, now, fx);
    }

    /// The call cannot be connected: hang up every leg and record why.
    pub(super) fn fail(&mut self, why: String, now: Timestamp, fx: &mut Vec<Effect>) {
        self.failure = Some(why);
        self.finalize(Outcome::Failed, now, fx);
    }

    /// Closes the session: no leg stays up, the registry entry goes, the final history row is
    /// written. Runs once.
    pub(super) fn finalize(&mut self, outcome: Outcome, now: Timestamp, fx: &mut Vec<Effect>) {
        if self.phase == Phase::Ended {
            return;
        }
        self.release_all(fx);
        self.phase = Phase::Ended;
        self.outcome = Some(outcome);
        self.ended_at = Some(now);
        self.ring_deadline = None;
        self.bridge.retry_at = None;
        self.bridge.deadline = None;
        self.bump();
        if self.registry_set {
            self.registry_set = false;
            fx.push(Effect::Registry(RegistryUpdate::Clear {
                tenant: self.tenant.clone(),
                user: self.user.clone(),
                call_session_id: self.id.clone(),
            }));
        }
        let ended = if self.native {
            self.legs[ANCHOR].device().cloned()
        } else if self.answered_at.is_some() {
            self.answered_device().cloned()
        } else {
            None
        };
        if let Some(d) = ended {
            // Not again when the device already said it is done.
            let shown = self.shown_state(&d);
            if shown != CallState::Idle && !shown.is_terminal() {
                self.publish_state(&d, CallState::Ended, None, None, now, fx);
            }
        }
        let detail = Some(self.status().as_str().to_owned());
        self.timeline("ended", None, detail, now, fx);
        self.history(true, fx);
    }

    // ---- input routing ---------------------------------------------------------------------

    pub(super) fn on_tick(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        let due = |d: Option<Timestamp>| d.is_some_and(|d| now >= d);
        match self.phase {
            Phase::Ringing if due(self.ring_deadline) => match self.direction {
                Direction::Inbound => self.ring_timeout(now, fx),
                Direction::Outbound => self.outbound_timeout(now, fx),
            },
            Phase::Answered if due(self.bridge.retry_at) => {
                self.bridge.retry_at = None;
                self.try_bridge(now, fx);
            }
            Phase::Answered if due(self.bridge.deadline) => self.bridge_timed_out(now, fx),
            Phase::Voicemail if due(self.voicemail.as_ref().map(|v| v.deadline)) => {
                self.voicemail_deadline(now, fx);
            }
            _ => {}
        }
    }

    pub(super) fn on_dial_result(
        &mut self,
        command_id: &str,
        result: Result<CallControlId, CommandError>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        let Some(i) = self
            .legs
            .iter()
            .position(|l| l.dial_command.as_deref() == Some(command_id))
        else {
            return Err(SessionError::UnknownCommand {
                command_id: command_id.to_owned(),
            });
        };
        match result {
            Ok(ccid) => {
                check_address("call_control_id", ccid.as_str())?;
                self.learn_ccid(i, ccid, true, now, fx);
            }
            Err(err) => self.dial_failed(i, &err, now, fx),
        }
        Ok(())
    }

    fn dial_failed(&mut self, i: usize, err: &CommandError, now: Timestamp, fx: &mut Vec<Effect>) {
        let leg = &mut self.legs[i];
        // A webhook already proved the leg exists (or it is gone): the error is stale.
        if leg.ccid.is_some() || leg.is_terminal() {
            return;
        }
        leg.state = LegState::Failed;
        self.leg_update(i, now, fx);
        let device = self.legs[i].device().cloned();
        self.timeline(
            "dial_failed",
            device.as_ref(),
            Some(err.message.clone()),
            now,
            fx,
        );
        match self.direction {
            Direction::Inbound => self.inbound_leg_gone(now, fx),
            Direction::Outbound => self.outbound_dial_failed(err, now, fx),
        }
    }

    pub(super) fn on_command_result(
        &mut self,
        command_id: &str,
        result: Result<(), CommandError>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        if !self.issued(command_id) {
            return Err(SessionError::UnknownCommand {
                command_id: command_id.to_owned(),
            });
        }
        if let Some(i) = self
            .legs
            .iter()
            .position(|l| l.dial_command.as_deref() == Some(command_id))
        {
            // A dial's success carries its leg id and arrives as `DialResult`.
            if let Err(err) = result {
                self.dial_failed(i, &err, now, fx);
            }
            return Ok(());
        }
        if self.bridge.commands.iter().any(|c| c == command_id) {
            match result {
                Ok(()) => self.on_bridged(now, fx),
                Err(err) => self.on_bridge_failed(command_id, &err, now, fx),
            }
            return Ok(());
        }
        if self.legs[ANCHOR].answer_command.as_deref() == Some(command_id) {
            match result {
                Ok(()) => {
                    if self.mark_answered(ANCHOR, now, fx) {
                        self.anchor_answered(now, fx);
                    }
                }
                Err(err) => self.anchor_answer_failed(&err, now, fx),
            }
            return Ok(());
        }
        // Speak and record results matter to voicemail; hangup and reject results need nothing
        // (an "already ended" error means the leg is gone, which is what we wanted).
        self.voicemail_command_result(command_id, result, now, fx);
        Ok(())
    }

    pub(super) fn anchor_answered(&mut self, now: Timestamp, fx: &mut Vec<Effect>) {
        match self.phase {
            Phase::Answered => self.try_bridge(now, fx),
            Phase::Voicemail => self.voicemail_anchor_answered(fx),
            Phase::Ringing if self.direction == Direction::Outbound => {
                self.outbound_device_answered(now, fx)
            }
            _ => {}
        }
    }

    pub(super) fn on_provider(
        &mut self,
        event: ProviderEvent,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), SessionError> {
        if let ProviderEventKind::RecordingSaved { url } = &event.kind {
            if url.is_empty() || url.len() > MAX_URL_LEN || url.chars().any(char::is_control) {
                return Err(SessionError::Invalid(format!(
                    "recording url must be 1..={MAX_URL_LEN} bytes without control characters"
                )));
            }
        }
        if let Some(ccid) = &event.call_control_id {
            check_address("call_control_id", ccid.as_str())?;
        }
        let i = self.resolve_leg(&event)?;
        if let Some(ccid) = event.call_control_id {
            let alive = !matches!(event.kind, ProviderEventKind::Hangup { .. });
            self.learn_ccid(i, ccid, alive, now, fx);
        }
        match event.kind {
            ProviderEventKind::Initiated => {
                if self.legs[i].state == LegState::Dialing {
                    self.legs[i].state = LegState::Ringing;
                    self.leg_update(i, now, fx);
                    self.leg_ringing(i, now, fx);
                }
            }
            ProviderEventKind::Answered => self.on_answered(i, now, fx),
            ProviderEventKind::Bridged => {
                if i == ANCHOR || Some(i) == self.winner {
                    self.on_bridged(now, fx);
                }
            }
            ProviderEventKind::Hangup {
                cause,
                source,
                quality,
            } => self.on_hangup(i, cause, source, quality, now, fx),
            ProviderEventKind::SpeakEnded if i == ANCHOR => self.voicemail_speak_ended(fx),
            ProviderEventKind::RecordingSaved { url } if i == ANCHOR => {
                self.voicemail_recording_saved(url, now, fx)
            }
            ProviderEventKind::RecordingFailed if i == ANCHOR => {
                self.voicemail_recording_failed(now, fx)
            }
            ProviderEventKind::SpeakEnded
            | ProviderEventKind::RecordingSaved { .. }
            | ProviderEventKind::RecordingFailed => {}
        }
        Ok(())
    }

    /// Finds the leg a webhook is about: by `call_control_id`, else by `client_state`.
    fn resolve_leg(&self, event: &ProviderEvent) -> Result<usize, SessionError> {
        let ccid = event.call_control_id.as_ref();
        if let Some(i) =
            ccid.and_then(|c| self.legs.iter().position(|l| l.ccid.as_ref() == Some(c)))
        {
            return Ok(i);
        }
        let unknown = || SessionError::UnknownLeg {
            call_control_id: ccid.cloned(),
        };
        // A native call created by the device's report before its leg id was known: the
        // device's leg is the only one the session follows.
        if self.native && self.legs[ANCHOR].ccid.is_none() && event.client_state.is_none() {
            return Ok(ANCHOR);
        }
        let cs = event.client_state.as_ref().ok_or_else(unknown)?;
        if cs.session != self.id {
            return Err(SessionError::WrongSession {
                got: cs.session.clone(),
            });
        }
        let i = self
            .legs
            .iter()
            .position(|l| l.matches(cs))
            .ok_or_else(unknown)?;
        // The client_state names a leg whose id is known and different: not a leg we track.
        if self.legs[i].ccid.is_some() && ccid.is_some() {
            return Err(unknown());
        }
        Ok(i)
    }

    fn on_answered(&mut self, i: usize, now: Timestamp, fx: &mut Vec<Effect>) {
        if !self.mark_answered(i, now, fx) {
            return;
        }
        if i == ANCHOR && self.native {
            self.native_connected(now, fx);
            return;
        }
        if i == ANCHOR {
            self.anchor_answered(now, fx);
            return;
        }
        match self.direction {
            Direction::Inbound => self.device_answered(i, now, fx),
            Direction::Outbound => self.pstn_answered(i, now, fx),
        }
    }

    fn on_hangup(
        &mut self,
        i: usize,
        cause: HangupCause,
        source: HangupSource,
        quality: Option<Value>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) {
        let leg = &mut self.legs[i];
        if leg.is_terminal() {
            return;
        }
        leg.state = LegState::Ended;
        leg.ended_at = Some(now);
        leg.hangup_cause = Some(cause);
        leg.quality = quality.clone();
        self.leg_update(i, now, fx);
        let connected = i == ANCHOR || Some(i) == self.winner;
        match self.phase {
            Phase::Ringing => match self.direction {
                Direction::Inbound if i == ANCHOR => self.caller_cancelled(cause, now, fx),
                Direction::Inbound => {
                    self.device_leg_ended(i, cause, source, now, fx);
                    self.inbound_leg_gone(now, fx);
                }
                Direction::Outbound => self.outbound_ringing_hangup(i, cause, now, fx),
            },
            Phase::Answered | Phase::Bridged if connected => {
                let device = self.legs[i].device().cloned();
                let detail = Some(format!(
                    "{} hung up: {}",
                    self.legs[i].label(),
                    cause.as_str()
                ));
                self.timeline("hangup", device.as_ref(), detail, now, fx);
                self.end_connected(cause, quality, now, fx);
            }
            Phase::Voicemail if i == ANCHOR => {
                self.hangup_cause.get_or_insert(cause);
                self.voicemail_caller_hangup(now, fx);
            }
            _ => {}
        }
    }
}
