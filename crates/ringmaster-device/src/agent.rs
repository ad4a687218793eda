//! The device agent: the device's calls as canonical `Call`s, driven by inputs and time.

use crate::effect::{BackendRequest, Effect, Report, SdkCommand, StopReason};
use crate::error::{AgentError, SnapshotError};
use crate::input::{AppAction, Channel, Delivery, Input, SdkState};
use crate::snapshot::{
    check_id, check_number, PersistedCall, Snapshot, Tombstone, MAX_CALLS, MAX_ENDED, MAX_HISTORY,
    SNAPSHOT_FORMAT,
};
use ringmaster_core::sdk::{SdkMapping, TerminationCause};
use ringmaster_core::sdp;
use ringmaster_core::session::{ClientStateRef, DeviceCallStatus, DeviceStatus};
use ringmaster_core::{
    Call, CallSessionId, CallState, DeviceId, Direction, DismissReason, Platform, Timestamp,
    Trigger,
};
use std::collections::{BTreeMap, VecDeque};

/// Default period of the status poll (design: channel 4, every 3 s while ringing).
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 3_000;
/// Default age after which an `incoming_call` delivery is too old to ring: the ring timeout
/// (30 s) plus slack for clock skew.
pub const DEFAULT_MAX_RING_AGE_MS: u64 = 60_000;

/// How the agent behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// Status poll period while a call rings or awaits its outcome.
    pub poll_interval_ms: u64,
    /// An `incoming_call` older than this (by its `sent_at`) does not ring.
    pub max_ring_age_ms: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            max_ring_age_ms: DEFAULT_MAX_RING_AGE_MS,
        }
    }
}

/// Where a live call stands on this device, beyond its canonical state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// RINGING_INBOUND and the ringer is on.
    Ringing,
    /// RINGING_INBOUND, the ringer is off (leg cancelled, ignored, or the app restarted), and
    /// the outcome waits for the backend.
    Silenced,
    /// Answered here; waiting for the backend to confirm this device won.
    AwaitingConfirm,
    /// Nothing to wait for.
    Settled,
}

impl Phase {
    fn polls(self) -> bool {
        !matches!(self, Phase::Settled)
    }
}

#[derive(Clone, Debug)]
struct Live {
    call: Call,
    from: Option<String>,
    phase: Phase,
    /// The ringer was on at some point: a missed call is shown only for calls that rang.
    rang: bool,
    /// The calling device's leg of a click-to-call: offered like an incoming call, it is the
    /// user's own outbound call.
    click_to_call: bool,
}

/// A device's calls. Sans-IO: [`DeviceAgent::handle`] takes an input and the time and returns
/// effects for the platform to carry out, in order.
///
/// # Guarantees
/// - **Exactly-once dismissal.** Whatever the number, order and duplication of SIP BYEs,
///   WebSocket and push `call_ended`s and poll results, a call emits at most one
///   `StopRinging` and reaches its terminal state once; everything after is absorbed. A
///   dismissal naming this device as its cause is its own echo and is ignored.
/// - **The backend decides the outcome.** A SIP CANCEL stops the ringer at once but cannot say
///   why (answered elsewhere or caller gone), so the call stays RINGING_INBOUND, silenced,
///   until a backend channel (WebSocket, push, poll) gives the reason; the poll keeps running
///   until then. The same holds for a ringing call recovered after a crash.
/// - **Answers are confirmed.** After a local answer the poll runs until the backend names this
///   device the winner; a dismissal naming another device ends the call (lost race).
/// - **Crash safety.** Every change to what must survive is followed by `Persist`; the report
///   sequence is persisted before any report using it is sent.
#[derive(Clone, Debug)]
pub struct DeviceAgent {
    device_id: DeviceId,
    platform: Platform,
    config: AgentConfig,
    calls: BTreeMap<CallSessionId, Live>,
    ended: VecDeque<Tombstone>,
    next_seq: u64,
    persisted: Option<Snapshot>,
}

impl DeviceAgent {
    /// A fresh agent (first install, or nothing was ever persisted).
    pub fn new(device_id: DeviceId, platform: Platform, config: AgentConfig) -> Self {
        let mut agent = Self {
            device_id,
            platform,
            config,
            calls: BTreeMap::new(),
            ended: VecDeque::new(),
            next_seq: 1,
            persisted: None,
        };
        // Nothing stored is the same as an empty snapshot: no write needed until a change.
        agent.persisted = Some(agent.snapshot());
        agent
    }

    /// Rebuilds the agent after a crash, kill or reboot, and returns what to do about the calls
    /// it finds:
    /// - RINGING_INBOUND: the ringer died with the app; the call is silenced and polled until
    ///   the backend says how it ended (a missed call if nobody answered, spec T2).
    /// - ACTIVE, ON_HOLD, REMOTE_HOLD, RECONNECTING, RENEGOTIATING, DROPPED: the media is gone;
    ///   the call is an orphan, shown as disconnected and reported ENDED (spec T1, T4).
    /// - DISCONNECTING: the hangup was under way; cleanup finishes.
    ///
    /// CONNECTING and other outbound setup states are never persisted (spec T3).
    pub fn restore(
        device_id: &DeviceId,
        platform: Platform,
        config: AgentConfig,
        snapshot: Snapshot,
        now: Timestamp,
    ) -> Result<(Self, Vec<Effect>), SnapshotError> {
        snapshot.validate()?;
        if snapshot.device_id != *device_id {
            return Err(SnapshotError::WrongDevice);
        }
        let mut agent = DeviceAgent::new(snapshot.device_id, platform, config);
        agent.persisted = None;
        agent.next_seq = snapshot.next_seq.max(1);
        agent.ended = snapshot.ended.into_iter().collect();
        let mut fx = Vec::new();
        for pc in snapshot.calls {
            let id = pc.call_session_id;
            let state = pc.call.state();
            agent.calls.insert(
                id.clone(),
                Live {
                    call: pc.call,
                    from: pc.from,
                    phase: Phase::Settled,
                    rang: state == CallState::RingingInbound,
                    click_to_call: false,
                },
            );
            let outcome = match state {
                CallState::RingingInbound => {
                    agent.set_phase(&id, Phase::Silenced, &mut fx);
                    Ok(())
                }
                CallState::Disconnecting => agent.end_call(&id, Trigger::CleanupDone, now, &mut fx),
                _ => {
                    fx.push(Effect::OrphanEnded {
                        call_session_id: id.clone(),
                        state,
                    });
                    let trigger = if state == CallState::Dropped {
                        Trigger::CleanupDone
                    } else {
                        Trigger::Hangup
                    };
                    agent.end_call(&id, trigger, now, &mut fx)
                }
            };
            if let Err(e) = outcome {
                return Err(SnapshotError::Malformed(e.to_string()));
            }
        }
        agent.persist_if_changed(&mut fx);
        Ok((agent, fx))
    }

    /// This device.
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }

    /// The platform whose SDK feeds the agent.
    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// The next report sequence number.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The call's canonical state here: live, or final for a finished call. `None` if the call
    /// never rang here or is forgotten.
    pub fn call_state(&self, id: &CallSessionId) -> Option<CallState> {
        match self.calls.get(id) {
            Some(live) => Some(live.call.state()),
            None => self.tombstone(id).and_then(|t| t.state),
        }
    }

    /// The live call, if the agent holds it.
    pub fn call(&self, id: &CallSessionId) -> Option<&Call> {
        self.calls.get(id).map(|l| &l.call)
    }

    /// Whether the ringer is on for this call.
    pub fn is_ringing(&self, id: &CallSessionId) -> bool {
        self.calls
            .get(id)
            .is_some_and(|l| l.phase == Phase::Ringing)
    }

    /// Whether the agent wants this call polled.
    pub fn is_polling(&self, id: &CallSessionId) -> bool {
        self.calls.get(id).is_some_and(|l| l.phase.polls())
    }

    /// The calls whose ringer is on.
    pub fn ringing_calls(&self) -> impl Iterator<Item = &CallSessionId> {
        self.calls
            .iter()
            .filter(|(_, l)| l.phase == Phase::Ringing)
            .map(|(id, _)| id)
    }

    /// What is remembered about a finished call.
    pub fn tombstone(&self, id: &CallSessionId) -> Option<&Tombstone> {
        self.ended.iter().rev().find(|t| t.call_session_id == *id)
    }

    /// The snapshot to persist now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            device_id: self.device_id.clone(),
            next_seq: self.next_seq,
            calls: self
                .calls
                .iter()
                .filter(|(_, l)| l.call.must_persist())
                .map(|(id, l)| PersistedCall {
                    call_session_id: id.clone(),
                    from: l.from.clone(),
                    call: l.call.clone(),
                })
                .collect(),
            ended: self.ended.iter().cloned().collect(),
        }
    }

    /// Handles one input at `now`. On `Err` the agent is unchanged and there is nothing to do.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Result<Vec<Effect>, AgentError> {
        let before = self.clone();
        let mut fx = Vec::new();
        match self.apply(input, now, &mut fx) {
            Ok(()) => {
                self.persist_if_changed(&mut fx);
                Ok(fx)
            }
            Err(e) => {
                *self = before;
                Err(e)
            }
        }
    }

    fn apply(
        &mut self,
        input: Input,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        check_id("call_session_id", input.call_session_id().as_str()).map_err(invalid)?;
        match input {
            Input::Sdk {
                call_session_id,
                direction,
                state,
                cause,
            } => self.on_sdk(call_session_id, direction, state, cause, now, fx),
            Input::LegOffered {
                call_session_id,
                client_state,
            } => self.on_leg_offered(call_session_id, client_state, now, fx),
            Input::IncomingCall {
                call_session_id,
                from,
                sent_at,
                via,
            } => {
                check_number(&from).map_err(invalid)?;
                self.on_incoming(call_session_id, from, sent_at, via, now, fx)
            }
            Input::CallEnded {
                call_session_id,
                reason,
                via,
            } => self.dismiss(&call_session_id, reason, via.channel(), now, fx),
            Input::PollResult {
                call_session_id,
                status,
            } => self.on_poll(&call_session_id, status, now, fx),
            Input::CallStateChanged {
                call_session_id,
                device,
                state,
            } => self.on_state_changed(&call_session_id, device, state, now, fx),
            Input::SdpReoffer {
                call_session_id,
                sdp,
            } => self.on_reoffer(&call_session_id, &sdp, now, fx),
            Input::App {
                call_session_id,
                action,
            } => self.on_app(&call_session_id, action, now, fx),
        }
    }

    // ---- inputs ----------------------------------------------------------------------------

    fn on_incoming(
        &mut self,
        id: CallSessionId,
        from: String,
        sent_at: Timestamp,
        via: Delivery,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        let voip = matches!(via, Delivery::Push { voip: true });
        if let Some(t) = self.tombstone(&id) {
            if voip {
                fx.push(Effect::ReportThenEnd {
                    call_session_id: id,
                    reason: t.reason.clone(),
                });
            }
            return Ok(());
        }
        if let Some(live) = self.calls.get_mut(&id) {
            // Already ringing (the SIP INVITE came first) or further along.
            if live.from.is_none() {
                live.from = Some(from);
            }
            return Ok(());
        }
        let age = now.saturating_since(sent_at);
        if age.as_millis() > u128::from(self.config.max_ring_age_ms) {
            // Doze or a dead socket held it back: the call cannot still be ringing.
            if voip {
                fx.push(Effect::ReportThenEnd {
                    call_session_id: id,
                    reason: None,
                });
            }
            return Ok(());
        }
        self.start_ringing(id, Some(from), now, fx)
    }

    fn start_ringing(
        &mut self,
        id: CallSessionId,
        from: Option<String>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        if self.calls.len() >= MAX_CALLS {
            return Err(AgentError::TooManyCalls { max: MAX_CALLS });
        }
        self.calls.insert(
            id.clone(),
            Live {
                call: Call::new(Direction::Inbound, now),
                from: from.clone(),
                phase: Phase::Settled,
                rang: true,
                click_to_call: false,
            },
        );
        self.transition(&id, Trigger::IncomingCall, now, fx)?;
        fx.push(Effect::StartRinging {
            call_session_id: id.clone(),
            from: from.unwrap_or_default(),
        });
        self.set_phase(&id, Phase::Ringing, fx);
        Ok(())
    }

    fn on_sdk(
        &mut self,
        id: CallSessionId,
        direction: Direction,
        state: SdkState,
        cause: Option<TerminationCause>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        if state.platform() != self.platform {
            return Err(AgentError::WrongPlatform {
                expected: self.platform,
                got: state.platform(),
            });
        }
        if self.tombstone(&id).is_some() && !self.calls.contains_key(&id) {
            // Late SIP for a finished or dismissed call (spec T14): absorbed.
            return Ok(());
        }
        let Some(live) = self.calls.get(&id) else {
            return match state.map(direction, CallState::Idle, cause.as_ref()) {
                SdkMapping::NoChange => Ok(()),
                SdkMapping::Move {
                    to: CallState::RingingInbound,
                    ..
                } => self.start_ringing(id, None, now, fx),
                SdkMapping::Move { to, .. } if to.is_terminal() => {
                    // Over before it began here: remember it so a late ring is dropped, but
                    // there is no call to report.
                    self.bury(Tombstone {
                        call_session_id: id,
                        state: None,
                        reason: None,
                    });
                    Ok(())
                }
                SdkMapping::Move { trigger, .. } => {
                    if self.calls.len() >= MAX_CALLS {
                        return Err(AgentError::TooManyCalls { max: MAX_CALLS });
                    }
                    self.calls.insert(
                        id.clone(),
                        Live {
                            call: Call::new(direction, now),
                            from: None,
                            phase: Phase::Settled,
                            rang: false,
                            click_to_call: false,
                        },
                    );
                    self.transition(&id, trigger, now, fx)?;
                    self.finish_if_terminal(&id, None, fx);
                    Ok(())
                }
            };
        };
        let (to, trigger) =
            match state.map(live.call.direction(), live.call.state(), cause.as_ref()) {
                SdkMapping::NoChange => return Ok(()),
                SdkMapping::Move { to, trigger } => (to, trigger),
            };
        if let Some(moved) = Self::click_to_call_move(live, to) {
            return match moved {
                Some(trigger) => self.transition(&id, trigger, now, fx),
                None => Ok(()),
            };
        }
        match live.phase {
            Phase::Ringing | Phase::Silenced if to == CallState::Active => {
                // Answered through the SDK's own UI (e.g. CallKit handled by the SDK).
                self.answer_here(&id, None, now, fx)
            }
            Phase::Ringing | Phase::Silenced if to.is_terminal() => {
                // SIP channel: the leg is gone, but SIP cannot say why.
                if live.phase == Phase::Ringing {
                    self.stop_ringing(&id, StopReason::LegCancelled, Some(Channel::Sip), fx);
                    self.set_phase(&id, Phase::Silenced, fx);
                }
                Ok(())
            }
            _ => {
                self.transition(&id, trigger, now, fx)?;
                self.finish_if_terminal(&id, None, fx);
                Ok(())
            }
        }
    }

    fn on_leg_offered(
        &mut self,
        id: CallSessionId,
        client_state: Option<ClientStateRef>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        let ours = client_state.as_ref().is_some_and(|cs| {
            cs.is_outbound_device_leg()
                && cs.session == id
                && cs.device.as_ref() == Some(&self.device_id)
        });
        if !ours {
            let ringing = SdkState::ringing(self.platform);
            return self.on_sdk(id, Direction::Inbound, ringing, None, now, fx);
        }
        if self.calls.contains_key(&id) || self.tombstone(&id).is_some() {
            // Offered again, or after the call ended here: nothing new.
            return Ok(());
        }
        if self.calls.len() >= MAX_CALLS {
            return Err(AgentError::TooManyCalls { max: MAX_CALLS });
        }
        self.calls.insert(
            id.clone(),
            Live {
                call: Call::new(Direction::Outbound, now),
                from: None,
                phase: Phase::Settled,
                rang: false,
                click_to_call: true,
            },
        );
        self.transition(&id, Trigger::user_dials(self.platform), now, fx)?;
        // The user asked for this call: the leg is picked up without ringing.
        fx.push(sdk(&id, SdkCommand::Answer));
        Ok(())
    }

    /// What the SDK's view of a click-to-call leg means for the call: the leg ringing is the
    /// call being set up, the leg answered means the destination is being dialled, and only
    /// the backend can say when the destination answered. `None`: map the SDK state as usual.
    fn click_to_call_move(live: &Live, to: CallState) -> Option<Option<Trigger>> {
        let setting_up = matches!(
            live.call.state(),
            CallState::Connecting | CallState::Requesting | CallState::RingingOutbound
        );
        if !live.click_to_call || !setting_up || to.is_terminal() {
            return None;
        }
        Some(match (live.call.state(), to) {
            (CallState::Connecting | CallState::Requesting, CallState::Active) => {
                Some(Trigger::SipRinging)
            }
            _ => None,
        })
    }

    fn on_poll(
        &mut self,
        id: &CallSessionId,
        status: DeviceCallStatus,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        let reason = status
            .reason
            .clone()
            .or_else(|| match (status.status, &status.device_id) {
                (DeviceStatus::AnsweredElsewhere, Some(d)) => {
                    Some(DismissReason::AnsweredElsewhere {
                        device_id: d.clone(),
                    })
                }
                (DeviceStatus::DeclinedElsewhere, Some(d)) => {
                    Some(DismissReason::DeclinedElsewhere {
                        device_id: d.clone(),
                    })
                }
                (DeviceStatus::Missed, _) => Some(DismissReason::Timeout),
                _ => None,
            });
        match status.status {
            DeviceStatus::Ringing => Ok(()),
            DeviceStatus::AnsweredHere => {
                self.confirm_answer(id, fx);
                Ok(())
            }
            DeviceStatus::AnsweredElsewhere
            | DeviceStatus::DeclinedElsewhere
            | DeviceStatus::Missed
            | DeviceStatus::Ended => match reason {
                Some(reason) => self.dismiss(id, reason, Channel::Poll, now, fx),
                None => self.ended_without_reason(id, now, fx),
            },
        }
    }

    fn on_state_changed(
        &mut self,
        id: &CallSessionId,
        device: Option<DeviceId>,
        state: CallState,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        if let Some(d) = &device {
            check_id("device id", d.as_str()).map_err(invalid)?;
        }
        let mine = device.as_ref() == Some(&self.device_id);
        let dialling_out = self
            .calls
            .get(id)
            .is_some_and(|l| l.click_to_call && l.call.state() == CallState::RingingOutbound);
        match state {
            CallState::Active if mine && dialling_out => {
                // The destination answered and the backend bridged it to this device's leg.
                self.transition(id, Trigger::RemoteAnswer, now, fx)
            }
            CallState::Active if mine => {
                self.confirm_answer(id, fx);
                Ok(())
            }
            CallState::Active => {
                if let Some(device_id) = device {
                    fx.push(Effect::OtherDeviceActive {
                        call_session_id: id.clone(),
                        device_id,
                    });
                }
                Ok(())
            }
            s if s.is_terminal() && mine => match self.calls.get(id).map(|l| l.call.state()) {
                // Our call is over on the backend; the BYE may be lost.
                Some(s) if is_connected(s) => self.hang_up_leg(id, now, fx),
                Some(CallState::Disconnecting) => self.end_call(id, Trigger::CleanupDone, now, fx),
                _ => Ok(()),
            },
            s if s.is_terminal() => {
                fx.push(Effect::OtherDeviceEnded {
                    call_session_id: id.clone(),
                });
                Ok(())
            }
            // Ringing, hold, reconnecting...: this device knows its own state, and another
            // device's intermediate states change nothing here.
            _ => Ok(()),
        }
    }

    fn live(&self, id: &CallSessionId) -> Result<&Live, AgentError> {
        self.calls.get(id).ok_or_else(|| AgentError::UnknownCall {
            call_session_id: id.clone(),
        })
    }

    /// A re-INVITE from the remote side. The call's own state says whether the remote holds it
    /// (REMOTE_HOLD), so the classification survives a restart without keeping SDP bodies.
    fn on_reoffer(
        &mut self,
        id: &CallSessionId,
        sdp: &str,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        let live = self.live(id)?;
        let held = live.call.state() == CallState::RemoteHold;
        let change = sdp::classify_against(held, sdp)
            .map_err(|e| AgentError::Invalid(format!("SDP re-offer: {e}")))?;
        match change.trigger() {
            Some(trigger) => self.transition(id, trigger, now, fx),
            None => Ok(()),
        }
    }

    fn on_app(
        &mut self,
        id: &CallSessionId,
        action: AppAction,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        let live = self.live(id)?;
        let (phase, state) = (live.phase, live.call.state());
        let not_ringing = || AgentError::NotRinging {
            call_session_id: id.clone(),
            state,
        };
        match action {
            AppAction::Answer if phase == Phase::Ringing => {
                self.answer_here(id, Some(SdkCommand::Answer), now, fx)
            }
            AppAction::Answer | AppAction::Decline | AppAction::Ignore
                if phase != Phase::Ringing =>
            {
                Err(not_ringing())
            }
            AppAction::Decline | AppAction::HangUp if phase == Phase::Ringing => {
                self.transition(id, Trigger::Decline, now, fx)?;
                self.stop_ringing(id, StopReason::DeclinedHere, None, fx);
                // No SIP 486 from here: the backend treats a leg that rejects by itself as
                // leaving the race (like an ignore), and that could overtake the decline and
                // turn it into a missed call. The backend cancels the leg once it declines.
                fx.push(Effect::Backend {
                    call_session_id: id.clone(),
                    request: BackendRequest::Decline,
                });
                let reason = DismissReason::DeclinedElsewhere {
                    device_id: self.device_id.clone(),
                };
                self.finish_if_terminal(id, Some(reason), fx);
                Ok(())
            }
            AppAction::Ignore => {
                self.stop_ringing(id, StopReason::Ignored, None, fx);
                self.set_phase(id, Phase::Silenced, fx);
                fx.push(Effect::Backend {
                    call_session_id: id.clone(),
                    request: BackendRequest::Ignore,
                });
                Ok(())
            }
            AppAction::Hold => {
                self.transition(id, Trigger::Hold, now, fx)?;
                fx.push(sdk(id, SdkCommand::Hold));
                Ok(())
            }
            AppAction::Resume => {
                self.transition(id, Trigger::Resume, now, fx)?;
                fx.push(sdk(id, SdkCommand::Resume));
                Ok(())
            }
            AppAction::HangUp | AppAction::Decline => {
                if phase == Phase::Silenced {
                    return Err(not_ringing());
                }
                self.transition(id, Trigger::HangupRequested, now, fx)?;
                fx.push(sdk(id, SdkCommand::Hangup));
                // An unconfirmed answer keeps polling: if the SDK never had the leg (answered
                // from CallKit before the INVITE), no SIP will ever confirm the hangup and
                // only the backend can say the call is over.
                Ok(())
            }
            AppAction::Answer => Err(not_ringing()),
        }
    }

    // ---- dismissal -------------------------------------------------------------------------

    /// One dismissal from any channel; see the type docs for the exactly-once rule.
    fn dismiss(
        &mut self,
        id: &CallSessionId,
        reason: DismissReason,
        channel: Channel,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        if reason.caused_by() == Some(&self.device_id) {
            return Ok(());
        }
        let Some(live) = self.calls.get(id) else {
            if self.tombstone(id).is_none() {
                // Dismissed before it rang here: remember it so a late ring is dropped.
                self.bury(Tombstone {
                    call_session_id: id.clone(),
                    state: None,
                    reason: Some(reason),
                });
            }
            return Ok(());
        };
        match live.phase {
            Phase::Ringing => {
                self.stop_ringing(
                    id,
                    StopReason::Dismissed {
                        reason: reason.clone(),
                    },
                    Some(channel),
                    fx,
                );
                self.settle(id, reason, now, fx)
            }
            Phase::Silenced => self.settle(id, reason, now, fx),
            Phase::AwaitingConfirm | Phase::Settled
                if live.call.direction() == Direction::Inbound
                    && is_connected(live.call.state()) =>
            {
                // Answered here but another device (or the caller's hangup) won the race.
                self.hang_up_leg(id, now, fx)
            }
            Phase::AwaitingConfirm | Phase::Settled
                if reason == DismissReason::Replaced
                    && live.call.direction() == Direction::Outbound
                    && !live.call.is_terminal() =>
            {
                // Glare: the other user's call to us goes on instead of ours.
                fx.push(sdk(id, SdkCommand::Hangup));
                self.transition(id, Trigger::Hangup, now, fx)?;
                self.finish_if_terminal(id, Some(reason), fx);
                Ok(())
            }
            Phase::AwaitingConfirm | Phase::Settled
                if live.call.state() == CallState::Disconnecting =>
            {
                // Our hangup is under way and the backend says the call is over: done.
                self.end_call(id, Trigger::CleanupDone, now, fx)
            }
            Phase::AwaitingConfirm | Phase::Settled => Ok(()),
        }
    }

    /// The backend says the call is over without a reason.
    fn ended_without_reason(
        &mut self,
        id: &CallSessionId,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        let Some(live) = self.calls.get(id) else {
            return Ok(());
        };
        match live.phase {
            Phase::Ringing | Phase::Silenced => {
                if live.phase == Phase::Ringing {
                    self.stop_ringing(id, StopReason::CallEnded, Some(Channel::Poll), fx);
                }
                self.transition(id, Trigger::Dismissed, now, fx)?;
                self.finish_if_terminal(id, None, fx);
                Ok(())
            }
            _ if is_connected(live.call.state()) => self.hang_up_leg(id, now, fx),
            _ if live.call.state() == CallState::Disconnecting => {
                self.end_call(id, Trigger::CleanupDone, now, fx)
            }
            _ => Ok(()),
        }
    }

    /// RINGING_INBOUND → MISSED or ENDED by the backend's reason.
    fn settle(
        &mut self,
        id: &CallSessionId,
        reason: DismissReason,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        self.transition(id, Trigger::from_dismissal(&reason), now, fx)?;
        if let Some(live) = self.calls.get(id) {
            if reason.is_missed() && live.rang {
                fx.push(Effect::ShowMissedCall {
                    call_session_id: id.clone(),
                    from: live.from.clone(),
                });
            }
        }
        self.finish_if_terminal(id, Some(reason), fx);
        Ok(())
    }

    fn answer_here(
        &mut self,
        id: &CallSessionId,
        command: Option<SdkCommand>,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        let was_ringing = self.is_ringing(id);
        self.transition(id, Trigger::LocalAnswer, now, fx)?;
        if was_ringing {
            self.stop_ringing(id, StopReason::AnsweredHere, None, fx);
        }
        if let Some(command) = command {
            fx.push(sdk(id, command));
        }
        self.set_phase(id, Phase::AwaitingConfirm, fx);
        Ok(())
    }

    fn confirm_answer(&mut self, id: &CallSessionId, fx: &mut Vec<Effect>) {
        if self
            .calls
            .get(id)
            .is_some_and(|l| l.phase == Phase::AwaitingConfirm)
        {
            self.set_phase(id, Phase::Settled, fx);
        }
    }

    /// Ends a connected call here and hangs up its SIP leg.
    fn hang_up_leg(
        &mut self,
        id: &CallSessionId,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        fx.push(sdk(id, SdkCommand::Hangup));
        self.end_call(id, Trigger::Hangup, now, fx)
    }

    fn end_call(
        &mut self,
        id: &CallSessionId,
        trigger: Trigger,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        self.transition(id, trigger, now, fx)?;
        self.finish_if_terminal(id, None, fx);
        Ok(())
    }

    // ---- bookkeeping -----------------------------------------------------------------------

    fn transition(
        &mut self,
        id: &CallSessionId,
        trigger: Trigger,
        now: Timestamp,
        fx: &mut Vec<Effect>,
    ) -> Result<(), AgentError> {
        let live = self
            .calls
            .get_mut(id)
            .ok_or_else(|| AgentError::UnknownCall {
                call_session_id: id.clone(),
            })?;
        if live.call.history().len() >= MAX_HISTORY {
            return Err(AgentError::Invalid(format!(
                "call {id} has reached {MAX_HISTORY} transitions"
            )));
        }
        let t = live
            .call
            .apply(trigger, now)
            .map_err(|source| AgentError::Refused {
                call_session_id: id.clone(),
                source,
            })?;
        let seq = self.next_seq;
        self.next_seq += 1;
        fx.push(Effect::ReportTransition(Report {
            device_id: self.device_id.clone(),
            seq,
            call_session_id: id.clone(),
            from: t.from,
            to: t.to,
            trigger: t.trigger,
            at: t.at,
        }));
        Ok(())
    }

    fn stop_ringing(
        &mut self,
        id: &CallSessionId,
        reason: StopReason,
        channel: Option<Channel>,
        fx: &mut Vec<Effect>,
    ) {
        fx.push(Effect::StopRinging {
            call_session_id: id.clone(),
            reason,
            channel,
        });
    }

    fn set_phase(&mut self, id: &CallSessionId, phase: Phase, fx: &mut Vec<Effect>) {
        let Some(live) = self.calls.get_mut(id) else {
            return;
        };
        let (was, now) = (live.phase.polls(), phase.polls());
        live.phase = phase;
        if now && !was {
            fx.push(Effect::StartStatusPoll {
                call_session_id: id.clone(),
                interval_ms: self.config.poll_interval_ms,
            });
        } else if was && !now {
            fx.push(Effect::StopStatusPoll {
                call_session_id: id.clone(),
            });
        }
    }

    /// Moves a terminal call to the tombstones.
    fn finish_if_terminal(
        &mut self,
        id: &CallSessionId,
        reason: Option<DismissReason>,
        fx: &mut Vec<Effect>,
    ) {
        if !self.calls.get(id).is_some_and(|l| l.call.is_terminal()) {
            return;
        }
        self.set_phase(id, Phase::Settled, fx);
        let Some(live) = self.calls.remove(id) else {
            return;
        };
        if live.call.history().iter().any(|t| t.from.must_persist()) {
            fx.push(Effect::ClearPersisted {
                call_session_id: id.clone(),
            });
        }
        self.bury(Tombstone {
            call_session_id: id.clone(),
            state: Some(live.call.state()),
            reason,
        });
    }

    fn bury(&mut self, tombstone: Tombstone) {
        if self.ended.len() >= MAX_ENDED {
            self.ended.pop_front();
        }
        self.ended.push_back(tombstone);
    }

    fn persist_if_changed(&mut self, fx: &mut Vec<Effect>) {
        let snapshot = self.snapshot();
        if self.persisted.as_ref() != Some(&snapshot) {
            self.persisted = Some(snapshot.clone());
            // First, so the sequence numbers of the reports below are durable before they
            // are sent.
            fx.insert(0, Effect::Persist(snapshot));
        }
    }
}

fn is_connected(state: CallState) -> bool {
    matches!(
        state,
        CallState::Active
            | CallState::OnHold
            | CallState::RemoteHold
            | CallState::Reconnecting
            | CallState::Renegotiating
    )
}

fn sdk(id: &CallSessionId, command: SdkCommand) -> Effect {
    Effect::Sdk {
        call_session_id: id.clone(),
        command,
    }
}

fn invalid(e: SnapshotError) -> AgentError {
    AgentError::Invalid(e.to_string())
}
