//! What a session asks the driver to do. `Telnyx` and `Notify` effects go to the outbox and are
//! dispatched after commit; `Registry`, `History`, `Leg` and `Timeline` effects are applied in the
//! same store transaction as the session itself.

use super::input::{ClientStateRef, HangupCause};
use super::status::SessionStatus;
use crate::dismissal::DismissReason;
use crate::ids::{CallControlId, CallSessionId, DeviceId, TenantId, UserId};
use crate::state::CallState;
use crate::time::Timestamp;
use crate::trigger::Trigger;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One effect of handling an input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Effect {
    /// A Call Control command to send (outbox).
    Telnyx(Command),
    /// A WebSocket event or a push to deliver (outbox).
    Notify(Notification),
    /// A change to the user's active-call entry (store transaction).
    Registry(RegistryUpdate),
    /// An upsert of the call's history row (store transaction).
    History(CallRecordUpdate),
    /// An upsert of one leg's row (store transaction).
    Leg(LegUpdate),
    /// An append to the call's timeline (store transaction).
    Timeline(TimelineEntry),
}

impl Effect {
    /// Whether the effect goes to the outbox (dispatched after commit) rather than into the
    /// store transaction.
    pub fn is_outbox(&self) -> bool {
        matches!(self, Effect::Telnyx(_) | Effect::Notify(_))
    }
}

/// A Call Control command with its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The session that issued it, for tracing.
    pub call_session_id: CallSessionId,
    /// `"{call_session_id}:{n}"`, n counting the session's commands: re-dispatching the same
    /// outbox entry sends the same id, so Telnyx executes it once.
    pub command_id: String,
    /// What to do.
    pub action: Action,
}

/// The Call Control actions a session uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// `POST /calls`: create a leg. Its result comes back as `Input::DialResult`.
    Dial {
        /// SIP URI of a device or the PSTN number.
        to: String,
        /// Caller id to present.
        from: String,
        /// Ring time before Telnyx gives up on the leg.
        timeout_secs: u32,
        /// Echoed in every webhook of the leg.
        client_state: ClientStateRef,
        /// Leg to share the `call_session_id` with.
        link_to: Option<CallControlId>,
        /// The device this leg rings, if it rings one.
        device: Option<DeviceId>,
    },
    /// `actions/answer`.
    Answer {
        /// Leg to answer.
        ccid: CallControlId,
        /// Set on the leg so its later webhooks route to the session.
        client_state: ClientStateRef,
    },
    /// `actions/bridge`: connect `ccid` with `to_ccid`.
    Bridge {
        /// Leg the command is sent to.
        ccid: CallControlId,
        /// The other leg (`call_control_id` in the request body).
        to_ccid: CallControlId,
    },
    /// `actions/hangup`. A "call has already ended" error means success.
    Hangup {
        /// Leg to hang up.
        ccid: CallControlId,
    },
    /// `actions/reject`: refuse an unanswered inbound call.
    Reject {
        /// Leg to reject.
        ccid: CallControlId,
        /// Cause reported to the caller.
        cause: RejectCause,
    },
    /// `actions/speak`.
    Speak {
        /// Leg to speak on.
        ccid: CallControlId,
        /// Text to say.
        text: String,
        /// Telnyx voice, e.g. `female`.
        voice: String,
        /// Language, e.g. `en-US`.
        language: String,
    },
    /// `actions/record_start`.
    RecordStart {
        /// Leg to record.
        ccid: CallControlId,
        /// Longest recording, in seconds.
        max_length_secs: u32,
        /// Play a beep before recording starts.
        play_beep: bool,
    },
}

impl Action {
    /// The leg the command acts on (`None` for `Dial`, which creates one).
    pub fn target(&self) -> Option<&CallControlId> {
        match self {
            Action::Dial { .. } => None,
            Action::Answer { ccid, .. }
            | Action::Bridge { ccid, .. }
            | Action::Hangup { ccid }
            | Action::Reject { ccid, .. }
            | Action::Speak { ccid, .. }
            | Action::RecordStart { ccid, .. } => Some(ccid),
        }
    }
}

/// `cause` of `actions/reject`, in Telnyx's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectCause {
    /// `CALL_REJECTED`.
    CallRejected,
    /// `USER_BUSY`.
    UserBusy,
}

/// An event for the user's devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Tenant of the user (channels are tenant-scoped).
    pub tenant: TenantId,
    /// Recipient.
    pub user: UserId,
    /// The call it is about.
    pub call_session_id: CallSessionId,
    /// How to deliver it.
    pub channel: Channel,
    /// What to deliver.
    pub event: NotifyEvent,
    /// A WebSocket connection (Pusher `socket_id`) left out of the broadcast: the sender's
    /// own, when the device request that caused the event named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_socket: Option<String>,
}

/// A delivery channel of a notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Channel {
    /// The user's private WebSocket channel: one event reaches every connected device.
    WebSocket,
    /// A push to one mobile device.
    Push {
        /// Recipient device.
        device: DeviceId,
        /// Its platform (`ios`, `android`): iOS dismissals must not be VoIP pushes.
        platform: String,
    },
}

/// Event names and payloads; every payload carries the session's status `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NotifyEvent {
    /// `incoming_call`: start ringing.
    IncomingCall {
        /// Caller number.
        from: String,
        /// Called number.
        to: String,
        /// Session status version.
        version: u64,
    },
    /// `call_ended`: stop ringing, with the reason (and the device that caused it, if any).
    CallEnded {
        /// Why; flattened so the payload has `reason` and `device_id` at the top level.
        #[serde(flatten)]
        reason: DismissReason,
        /// Session status version.
        version: u64,
    },
    /// `call_state_changed`: the call moved on one device (a device's own report, or the
    /// backend's view: ringing, bridged, ended). States use the canonical spelling.
    CallStateChanged {
        /// The device the change is about, if any.
        #[serde(rename = "device_id")]
        device: Option<DeviceId>,
        /// That device's platform (`ios`, `android`, `web`).
        platform: Option<String>,
        /// The state the device is in now.
        state: CallState,
        /// The state it was in before, as last published.
        previous_state: CallState,
        /// Session status version.
        version: u64,
    },
}

impl NotifyEvent {
    /// The event name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            NotifyEvent::IncomingCall { .. } => "incoming_call",
            NotifyEvent::CallEnded { .. } => "call_ended",
            NotifyEvent::CallStateChanged { .. } => "call_state_changed",
        }
    }
}

/// Which way a call goes (the one direction type of the core).
pub use crate::state::Direction;

/// A change to the user's active-call entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RegistryUpdate {
    /// The user is on this call (written when a device answers, rewritten when its state
    /// changes). The store refuses it when it would give a user without call waiting a second
    /// call; the driver then tells the session with `Input::RegistryBusy`.
    Set(ActiveCall),
    /// The call ended; remove the entry only if it still names this session.
    Clear {
        /// Tenant of the user.
        tenant: TenantId,
        /// The user.
        user: UserId,
        /// Only an entry for this session is removed.
        call_session_id: CallSessionId,
    },
}

/// The user's active call, as kept in the registry (spec §9.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCall {
    /// Tenant of the user.
    pub tenant: TenantId,
    /// The user.
    pub user: UserId,
    /// The call.
    pub call_session_id: CallSessionId,
    /// The device the user talks on.
    pub device: DeviceId,
    /// Its platform.
    pub platform: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The other party's number.
    pub remote: String,
    /// When the device answered.
    pub started_at: Timestamp,
    /// The device's state on this call (`ACTIVE`, `ON_HOLD`, ...).
    pub state: CallState,
    /// Since when it is in that state.
    pub since: Timestamp,
}

/// A full snapshot of the call's history row, to upsert by `call_session_id`. Exactly one
/// update per session has `final = true`, and nothing is written after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecordUpdate {
    /// The call.
    pub call_session_id: CallSessionId,
    /// Tenant of the user.
    pub tenant: TenantId,
    /// The user.
    pub user: UserId,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Calling number.
    pub from: String,
    /// Called number.
    pub to: String,
    /// Coarse status.
    pub status: SessionStatus,
    /// When the session was created.
    pub started_at: Timestamp,
    /// The device that took the call.
    pub answered_device: Option<DeviceId>,
    /// When it was answered.
    pub answered_at: Option<Timestamp>,
    /// When it was bridged.
    pub bridged_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// The hangup cause that ended the call.
    pub hangup_cause: Option<HangupCause>,
    /// Why the devices stopped ringing without an answer.
    pub dismiss_reason: Option<DismissReason>,
    /// Voicemail recording.
    pub recording_url: Option<String>,
    /// `call_quality_stats` of the hangup that ended the call.
    pub quality: Option<Value>,
    /// What went wrong, for failed calls.
    pub failure: Option<String>,
    /// Whether this is the session's last word.
    #[serde(rename = "final")]
    pub is_final: bool,
}

/// Lifecycle of one leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegState {
    /// Dial sent, no `call.initiated` yet.
    Dialing,
    /// Initiated (outbound) or parked (inbound caller).
    Ringing,
    /// Answered.
    Answered,
    /// Hung up.
    Ended,
    /// The dial was refused; the leg never existed.
    Failed,
}

/// A full snapshot of one leg's row, to upsert by (`call_session_id`, `leg`, `device`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LegUpdate {
    /// The call.
    pub call_session_id: CallSessionId,
    /// Role label (`caller`, `device`, `pstn`).
    pub leg: String,
    /// The device it rings.
    pub device: Option<DeviceId>,
    /// Telnyx id, once known.
    pub call_control_id: Option<CallControlId>,
    /// Current state.
    pub state: LegState,
    /// When this snapshot was taken.
    pub at: Timestamp,
    /// When it was answered.
    pub answered_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Its hangup cause.
    pub hangup_cause: Option<HangupCause>,
    /// Its `call_quality_stats`.
    pub quality: Option<Value>,
}

/// One line of the call's append-only timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The call.
    pub call_session_id: CallSessionId,
    /// When.
    pub at: Timestamp,
    /// What, as a short snake_case name (`dial`, `answered`, `bridged`, `timeout`, ...).
    pub event: String,
    /// The device concerned.
    pub device: Option<DeviceId>,
    /// Free-form detail (error messages, outcome).
    pub detail: Option<String>,
    /// The state change this entry records, if it records one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<StateChange>,
}

/// A canonical state change on one device, as kept in the timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// State before.
    pub from: CallState,
    /// State after.
    pub to: CallState,
    /// Set when the device reported the change itself; `None` for the backend's own view.
    pub report: Option<ReportMeta>,
}

/// What a device's report said besides the two states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportMeta {
    /// The report's per-device sequence number.
    pub seq: u64,
    /// The trigger the device named.
    pub trigger: Option<Trigger>,
    /// The device's own clock, as reported.
    pub reported_at: Option<Timestamp>,
    /// The device's platform.
    pub platform: String,
    /// For a dismissal, the channel that reached the device first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<crate::dismissal::Channel>,
}
