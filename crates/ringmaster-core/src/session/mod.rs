//! The backend session orchestrator: one call, from the first ring to the history row.
//!
//! A [`Session`] is plain data (serde JSON). The driver loads it with its store version, calls
//! [`Session::handle`] with one [`Input`] and the current time, and commits the new session
//! together with the returned [`Effect`]s using compare-and-set; then it dispatches the outbox
//! effects and feeds their results back as inputs. `handle` is deterministic: the same session,
//! input and time always give the same effects, so a reload-and-retry after a conflict is safe.
//!
//! # Model
//! - **Inbound** ([`Session::new_inbound`]): the PSTN caller is the *anchor* leg. `Start`
//!   answers it (if [`CallerAnswer::Immediately`]) and dials every device in parallel, each
//!   `link_to` the caller with a `client_state` naming session, device and leg. The first
//!   device leg to answer wins: the caller is answered if it was not, the two are bridged once
//!   both are answered, every other leg is hung up and every device is dismissed with
//!   `answered_elsewhere`. A bridge that fails is retried once after
//!   `bridge_retry_delay_ms`; a second failure hangs up every leg. An answer or bridge whose
//!   result has not come `bridge_timeout_ms` after it was awaited counts as such a failure (a
//!   pending bridge is retried, a pending caller answer ends the call): a lost result must not
//!   leave a call answered forever. Caller hangup while ringing,
//!   the ring timeout, a decline, and "every leg failed or was ignored" end the ringing; the
//!   last two of those go to voicemail when the user has one.
//! - **Outbound** ([`Session::new_outbound`], click-to-call): the requesting device's SIP URI
//!   is dialled first and is the anchor. When it answers, the PSTN destination is dialled with
//!   `link_to` the device leg; when that answers the two are bridged (same retry rule). A
//!   hangup of either side before or after the bridge hangs up the other.
//! - **Native outbound** ([`Session::new_native`]): the device's SDK dialled through its SIP
//!   credential, so nothing is dialled or bridged. Keyed by the Telnyx `call_session_id`, created
//!   by the device leg's `call.initiated` or by the device's IDLE → CONNECTING/REQUESTING report,
//!   whichever comes first (the other is then an input to it). The user's active-call entry is
//!   set from the start, so inbound calls meet the busy rule; the leg's `call.answered` or the
//!   device's ACTIVE report connects it, its hangup or a terminal report ends it.
//! - **Glare**: [`Input::CallBack`] records that a device answers the ringing call of the number
//!   it asked to call; [`Input::Replaced`] ends the loser of two calls two users placed to each
//!   other (see [`glare_loser`]) with reason `replaced` on every device.
//! - When a call is bridged the user's active-call entry is set; it is cleared when the call
//!   ends. History rows are full snapshots to upsert; exactly one has `final = true`.
//!
//! # Idempotency and ordering
//! Webhooks may be duplicated and reordered. Every handler checks the state it acts on, so a
//! repeated event, an `answered` for a leg already hung up, or a hangup of a leg already gone
//! produces no effects. Leg ids come from the dial result; a webhook that overtakes it is
//! matched by its `client_state` and its `call_control_id` is recorded. A leg the session wants
//! gone before its id is known is hung up as soon as the id arrives, and so is a leg whose dial
//! was reported failed (an HTTP timeout, say) but whose webhooks show it exists: it left the race
//! when the failure was handled. Each leg gets at most one hangup command.
//!
//! # Refused inputs
//! `handle` returns [`SessionError`] for inputs that make no sense for this session (a device
//! it does not ring, a leg or command it does not know, a `client_state` of another session,
//! a decline after ringing is over). A refused input leaves the session exactly as it was, so
//! the driver commits nothing. Stale but plausible inputs (late webhooks, repeated device
//! requests, ticks before the deadline) are accepted and produce no effects.
//!
//! # Timers
//! Timers are data: [`Session::next_deadline`] is when the driver must send [`Input::Tick`].
//!
//! # Decisions worth knowing
//! - The bridge is sent only once the caller's answer is confirmed (answer command result or
//!   its `call.answered`), since Telnyx refuses to bridge an unanswered leg (error 90034).
//! - `DialResult` is matched by the dial's `command_id`, which the dispatcher always has.
//! - A device leg that hangs up by itself while ringing (SIP reject, Telnyx timeout,
//!   unregistered) only leaves the race, like an ignore; a decline for everyone comes through
//!   `Input::DeviceDecline`. Its leg row keeps the hangup cause, and the timeline says
//!   `rejected` when the device itself refused (`hangup_source` callee). It is not marked
//!   ignored: the app may still show a push-started ring that only a dismissal stops.
//! - A decline, a busy user, a ring timeout and "no device left" go to voicemail when the user
//!   has one; otherwise the caller is rejected `USER_BUSY` (decline, busy) or hung up.
//! - The final history row of a voicemail waits for `call.recording.saved` (or
//!   `call.recording.error`, or `recording_wait_secs`); a recording arriving later is dropped.
//! - [`SessionStatus`] adds `declined` and `busy` to ringing/answered/bridged/ended/missed/
//!   voicemail/failed, because neither is a missed call.

mod config;
mod effect;
mod engine;
mod error;
mod glare;
mod inbound;
mod input;
mod leg;
mod native;
mod outbound;
mod report;
mod status;
mod voicemail;

#[cfg(test)]
mod tests;

pub use config::{
    CallerAnswer, SessionConfig, VoicemailConfig, DEFAULT_BRIDGE_RETRY_DELAY_MS,
    DEFAULT_BRIDGE_TIMEOUT_MS, DEFAULT_RING_TIMEOUT_SECS, MAX_DEVICES,
};
pub use effect::{
    Action, ActiveCall, CallRecordUpdate, Channel, Command, Direction, Effect, LegState, LegUpdate,
    Notification, NotifyEvent, RegistryUpdate, RejectCause, ReportMeta, StateChange, TimelineEntry,
};
pub use error::SessionError;
pub use input::{
    glare_loser, ClientStateRef, CommandError, HangupCause, HangupSource, Input, ProviderEvent,
    ProviderEventKind, CALL_ENDED_CODE, LEG_CALLER, LEG_DEVICE, LEG_PSTN, MAX_URL_LEN,
};
pub use leg::RingTarget;
pub use native::NewNativeOutbound;
pub use status::{DeviceCallStatus, DeviceStatus, SessionStatus};

use crate::dismissal::DismissReason;
use crate::ids::{CallControlId, CallSessionId, DeviceId, TenantId, UserId};
use crate::time::Timestamp;
use leg::{Leg, LegRole};
use report::DeviceView;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use voicemail::VoicemailState;

/// Longest caller/called number or SIP URI accepted.
const MAX_ADDRESS_LEN: usize = 256;

/// Index of the anchor leg: the inbound caller, or the outbound requesting device.
const ANCHOR: usize = 0;

/// Everything needed to create an inbound session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInbound {
    /// Telnyx `call_session_id` of the inbound call.
    pub id: CallSessionId,
    /// Tenant of the called user.
    pub tenant: TenantId,
    /// The called user.
    pub user: UserId,
    /// The caller's `call_control_id`.
    pub caller_leg: CallControlId,
    /// Caller number.
    pub from: String,
    /// Called number (one of the user's).
    pub to: String,
    /// The user's registered devices (may be empty: straight to voicemail or missed).
    pub devices: Vec<RingTarget>,
    /// The user is on another call and call waiting is off: no device rings, the caller gets
    /// voicemail or `USER_BUSY`.
    pub busy: bool,
    /// Settings.
    pub config: SessionConfig,
}

/// Everything needed to create an outbound session (`POST /api/voip/calls`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOutbound {
    /// A fresh session id chosen by the server.
    pub id: CallSessionId,
    /// Tenant of the user.
    pub tenant: TenantId,
    /// The calling user.
    pub user: UserId,
    /// The device that asked for the call; it is dialled first.
    pub device: RingTarget,
    /// The user's number, presented as caller id to both legs.
    pub from: String,
    /// The destination number.
    pub to: String,
    /// Settings (`caller_answer` and `voicemail` do not apply).
    pub config: SessionConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    Created,
    Ringing,
    Answered,
    Bridged,
    Voicemail,
    Ended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Completed,
    Unanswered,
    Missed,
    Voicemail,
    Declined,
    Busy,
    Failed,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct BridgeState {
    attempts: u8,
    /// Every bridge command sent; a success of any of them means bridged.
    commands: Vec<String>,
    /// The attempt whose result is awaited.
    in_flight: Option<String>,
    retry_at: Option<Timestamp>,
    /// When the awaited answer or bridge result counts as lost (`bridge_timeout_ms`).
    #[serde(default)]
    deadline: Option<Timestamp>,
}

/// One call's orchestration state. Serialize it to store it; see the module docs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    id: CallSessionId,
    tenant: TenantId,
    user: UserId,
    direction: Direction,
    from: String,
    to: String,
    config: SessionConfig,
    busy: bool,
    created_at: Timestamp,
    phase: Phase,
    /// `legs[ANCHOR]` is the anchor; the rest are device legs (inbound) or the PSTN leg.
    legs: Vec<Leg>,
    /// The leg connected to the anchor: the answering device (inbound) or the PSTN leg.
    winner: Option<usize>,
    ring_deadline: Option<Timestamp>,
    bridge: BridgeState,
    voicemail: Option<VoicemailState>,
    /// Why ringing stopped without an answer.
    ring_outcome: Option<DismissReason>,
    outcome: Option<Outcome>,
    failure: Option<String>,
    registry_set: bool,
    /// When the active-call entry was first written (the device answered).
    #[serde(default)]
    registered_at: Option<Timestamp>,
    /// The store refused the active-call entry: the user is on another call without call
    /// waiting, so an answer cannot be taken.
    #[serde(default)]
    registry_busy: bool,
    /// Each device's published and reported state on this call.
    #[serde(default)]
    views: Vec<DeviceView>,
    /// A call the device placed itself through its SIP credential: nothing is dialled or
    /// bridged, the session follows the device's leg (webhooks) and its reports.
    #[serde(default)]
    native: bool,
    /// Commands issued so far; the next command id is `"{id}:{seq}"`.
    seq: u64,
    /// Grows with every change devices can see.
    version: u64,
    answered_at: Option<Timestamp>,
    bridged_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
    hangup_cause: Option<HangupCause>,
    quality: Option<Value>,
    recording_url: Option<String>,
}

fn check_address(what: &str, value: &str) -> Result<(), SessionError> {
    if value.is_empty() || value.len() > MAX_ADDRESS_LEN || value.chars().any(char::is_control) {
        return Err(SessionError::Invalid(format!(
            "{what} must be 1..={MAX_ADDRESS_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_target(t: &RingTarget) -> Result<(), SessionError> {
    check_address("device sip_uri", &t.sip_uri)?;
    check_address("device platform", &t.platform)?;
    check_address("device id", t.device_id.as_str())
}

impl Session {
    fn blank(
        id: CallSessionId,
        tenant: TenantId,
        user: UserId,
        direction: Direction,
        from: String,
        to: String,
        config: SessionConfig,
    ) -> Result<Self, SessionError> {
        config.validate().map_err(SessionError::Invalid)?;
        check_address("session id", id.as_str())?;
        check_address("from", &from)?;
        check_address("to", &to)?;
        Ok(Self {
            id,
            tenant,
            user,
            direction,
            from,
            to,
            config,
            busy: false,
            created_at: Timestamp::from_millis(0),
            phase: Phase::Created,
            legs: Vec::new(),
            winner: None,
            ring_deadline: None,
            bridge: BridgeState::default(),
            voicemail: None,
            ring_outcome: None,
            outcome: None,
            failure: None,
            registry_set: false,
            registered_at: None,
            registry_busy: false,
            views: Vec::new(),
            native: false,
            seq: 0,
            version: 0,
            answered_at: None,
            bridged_at: None,
            ended_at: None,
            hangup_cause: None,
            quality: None,
            recording_url: None,
        })
    }

    /// A session for a PSTN call to one of the user's numbers; send `Input::Start` next.
    pub fn new_inbound(new: NewInbound, now: Timestamp) -> Result<Self, SessionError> {
        if new.devices.len() > MAX_DEVICES {
            return Err(SessionError::Invalid(format!(
                "at most {MAX_DEVICES} devices, got {}",
                new.devices.len()
            )));
        }
        check_address("caller call_control_id", new.caller_leg.as_str())?;
        let mut session = Self::blank(
            new.id,
            new.tenant,
            new.user,
            Direction::Inbound,
            new.from,
            new.to,
            new.config,
        )?;
        session.created_at = now;
        session.busy = new.busy;
        session.legs.push(Leg::new(
            LegRole::Caller,
            Some(new.caller_leg),
            LegState::Ringing,
        ));
        for (i, target) in new.devices.into_iter().enumerate() {
            check_target(&target)?;
            if session
                .legs
                .iter()
                .any(|l| l.device() == Some(&target.device_id))
            {
                return Err(SessionError::Invalid(format!(
                    "device {} listed twice (index {i})",
                    target.device_id
                )));
            }
            session
                .legs
                .push(Leg::new(LegRole::Device(target), None, LegState::Dialing));
        }
        Ok(session)
    }

    /// A click-to-call session from one of the user's devices; send `Input::Start` next.
    pub fn new_outbound(new: NewOutbound, now: Timestamp) -> Result<Self, SessionError> {
        check_target(&new.device)?;
        let mut session = Self::blank(
            new.id,
            new.tenant,
            new.user,
            Direction::Outbound,
            new.from,
            new.to,
            new.config,
        )?;
        session.created_at = now;
        session.legs.push(Leg::new(
            LegRole::Device(new.device),
            None,
            LegState::Dialing,
        ));
        Ok(session)
    }

    /// Handles one input at time `now` and returns the effects to commit with the new state.
    /// On `Err` the session is unchanged and there is nothing to commit.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Result<Vec<Effect>, SessionError> {
        let before = self.clone();
        let mut fx = Vec::new();
        match self.apply(input, now, &mut fx) {
            Ok(()) => Ok(fx),
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
    ) -> Result<(), SessionError> {
        if self.phase == Phase::Created && input != Input::Start {
            return Err(SessionError::NotStarted);
        }
        match input {
            Input::Start => {
                if self.phase == Phase::Created {
                    match self.direction {
                        Direction::Inbound => self.start_inbound(now, fx),
                        Direction::Outbound if self.native => self.start_native(now, fx),
                        Direction::Outbound => self.start_outbound(now, fx),
                    }
                }
                Ok(())
            }
            Input::Tick => {
                self.on_tick(now, fx);
                Ok(())
            }
            Input::DialResult { command_id, result } => {
                self.on_dial_result(&command_id, result, now, fx)
            }
            Input::CommandResult { command_id, result } => {
                self.on_command_result(&command_id, result, now, fx)
            }
            Input::Provider(event) => self.on_provider(event, now, fx),
            Input::DeviceDecline { device } => self.on_device_decline(&device, now, fx),
            Input::DeviceIgnore { device } => self.on_device_ignore(&device, now, fx),
            report @ Input::DeviceReport { .. } => self.on_device_report(report, now, fx),
            Input::UnknownLeg { ccid } => {
                if !self.legs.iter().any(|l| l.ccid.as_ref() == Some(&ccid)) {
                    let detail = Some(format!("leg {ccid} unknown to the call; hung up"));
                    self.command(Action::Hangup { ccid }, fx);
                    self.timeline("stray_leg_hangup", None, detail, now, fx);
                }
                Ok(())
            }
            Input::RegistryBusy => {
                self.registry_busy = true;
                Ok(())
            }
            Input::CallBack { device } => self.on_call_back(&device, now, fx),
            Input::Replaced { survivor } => self.on_replaced(&survivor, now, fx),
        }
    }

    /// The session's id (Telnyx `call_session_id` for inbound calls).
    pub fn id(&self) -> &CallSessionId {
        &self.id
    }

    /// Tenant of the user.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The user whose devices take part.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// Inbound or outbound.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Calling number (outbound: the user's number, or the device's SIP URI for a native call
    /// of a user without a number).
    pub fn from(&self) -> &str {
        &self.from
    }

    /// Called number.
    pub fn to(&self) -> &str {
        &self.to
    }

    /// Whether the device placed the call itself through its SIP credential.
    pub fn is_native(&self) -> bool {
        self.native
    }

    /// When the session was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// Status version: grows with every change devices can see (sent in every notification).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the driver must send `Input::Tick`, if ever.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.phase {
            Phase::Ringing => self.ring_deadline,
            Phase::Answered => match (self.bridge.retry_at, self.bridge.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            Phase::Voicemail => self.voicemail.as_ref().map(|v| v.deadline),
            Phase::Created | Phase::Bridged | Phase::Ended => None,
        }
    }

    /// The call is over; later inputs only clean up stray legs.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// The coarse status label for the store and the history.
    pub fn status(&self) -> SessionStatus {
        match self.phase {
            Phase::Created | Phase::Ringing => SessionStatus::Ringing,
            Phase::Answered => SessionStatus::Answered,
            Phase::Bridged => SessionStatus::Bridged,
            Phase::Voicemail => SessionStatus::Voicemail,
            Phase::Ended => match self.outcome {
                Some(Outcome::Completed | Outcome::Unanswered) | None => SessionStatus::Ended,
                Some(Outcome::Missed) => SessionStatus::Missed,
                Some(Outcome::Voicemail) => SessionStatus::Voicemail,
                Some(Outcome::Declined) => SessionStatus::Declined,
                Some(Outcome::Busy) => SessionStatus::Busy,
                Some(Outcome::Failed) => SessionStatus::Failed,
            },
        }
    }

    /// The device that took the call (inbound winner, or the outbound calling device once the
    /// callee answered).
    pub fn answered_device(&self) -> Option<&DeviceId> {
        let w = self.winner?;
        match self.direction {
            Direction::Inbound => self.legs[w].device(),
            Direction::Outbound => self.legs[ANCHOR].device(),
        }
    }

    /// The devices this session rings (outbound: the calling device).
    pub fn devices(&self) -> Vec<&DeviceId> {
        self.legs.iter().filter_map(Leg::device).collect()
    }

    /// Every known `call_control_id` of the session, for the store's leg index.
    pub fn call_control_ids(&self) -> Vec<&CallControlId> {
        self.legs.iter().filter_map(|l| l.ccid.as_ref()).collect()
    }

    /// Whether the leg `ccid` has ended (Telnyx reported its hangup, or it never came up):
    /// a release still queued for it has nothing left to do.
    pub fn leg_ended(&self, ccid: &CallControlId) -> bool {
        self.legs
            .iter()
            .any(|l| l.ccid.as_ref() == Some(ccid) && l.is_terminal())
    }

    /// The voicemail recording, once saved.
    pub fn recording_url(&self) -> Option<&str> {
        self.recording_url.as_deref()
    }

    /// Why the devices stopped ringing without an answer, if they did.
    pub fn dismiss_reason(&self) -> Option<&DismissReason> {
        self.ring_outcome.as_ref()
    }

    /// The call's state as `device` should see it (the polling channel of dismissal).
    pub fn status_for(&self, device: &DeviceId) -> Result<DeviceCallStatus, SessionError> {
        if self.device_leg(device).is_none() {
            return Err(SessionError::UnknownDevice {
                device: device.clone(),
            });
        }
        let view = |status, device_id: Option<&DeviceId>, reason: Option<DismissReason>| {
            DeviceCallStatus {
                status,
                device_id: device_id.cloned(),
                reason,
                version: self.version,
            }
        };
        let live = matches!(self.phase, Phase::Answered | Phase::Bridged);
        if self.direction == Direction::Outbound {
            return Ok(match self.phase {
                Phase::Ended => view(DeviceStatus::Ended, None, self.ring_outcome.clone()),
                _ if live => view(DeviceStatus::AnsweredHere, Some(device), None),
                _ => view(DeviceStatus::Ringing, None, None),
            });
        }
        if let Some(winner) = self.answered_device() {
            return Ok(if winner == device {
                let status = if live {
                    DeviceStatus::AnsweredHere
                } else {
                    DeviceStatus::Ended
                };
                view(status, Some(winner), None)
            } else {
                view(
                    DeviceStatus::AnsweredElsewhere,
                    Some(winner),
                    Some(DismissReason::AnsweredElsewhere {
                        device_id: winner.clone(),
                    }),
                )
            });
        }
        Ok(match &self.ring_outcome {
            Some(reason @ DismissReason::DeclinedElsewhere { device_id }) => {
                let status = if device_id == device {
                    DeviceStatus::Ended
                } else {
                    DeviceStatus::DeclinedElsewhere
                };
                view(status, Some(device_id), Some(reason.clone()))
            }
            Some(reason) if reason.is_missed() => {
                view(DeviceStatus::Missed, None, Some(reason.clone()))
            }
            Some(reason) => view(DeviceStatus::Ended, None, Some(reason.clone())),
            None if self.phase == Phase::Ended => view(DeviceStatus::Ended, None, None),
            None => view(DeviceStatus::Ringing, None, None),
        })
    }

    fn device_leg(&self, device: &DeviceId) -> Option<usize> {
        self.legs.iter().position(|l| l.device() == Some(device))
    }
}
