//! The core's and the agent's own types, declared to UniFFI as remote types.
//!
//! Each `#[uniffi::remote(...)]` item restates a type of `ringmaster-core` or
//! `ringmaster-device` field for field; UniFFI generates the conversions and the bindings, but
//! the Rust type stays the core's one (no copy to convert). The generated conversions `match`
//! on the real type, so a variant or field added in the core breaks this crate's build until it
//! is restated here: the bindings cannot silently fall behind.

use ringmaster_core::sdk::{AndroidState, IosState, SdkMapping, TerminationCause, WebState};
use ringmaster_core::session::{ClientStateRef, DeviceCallStatus, DeviceStatus};
use ringmaster_core::trigger::InvalidTrigger;
use ringmaster_core::{
    CallSessionId, CallState, DeviceId, Direction, DismissReason, Platform, Timestamp, Transition,
    Trigger, TriggerKind,
};
use ringmaster_device::{
    AppAction, BackendRequest, Channel, Delivery, Effect, Input, Report, SdkCommand, SdkState,
    Snapshot, StopReason, Tombstone,
};

// ---- scalars --------------------------------------------------------------------------------

uniffi::custom_type!(
    /// Telnyx `call_session_id`: the key of one call across all its legs.
    CallSessionId, String, {
    remote,
    lower: |id| id.as_str().to_owned(),
    try_lift: |raw| Ok(CallSessionId::new(raw)),
});

uniffi::custom_type!(
    /// A device's id, as registered with the backend.
    DeviceId, String, {
    remote,
    lower: |id| id.as_str().to_owned(),
    try_lift: |raw| Ok(DeviceId::new(raw)),
});

uniffi::custom_type!(
    /// Milliseconds since the Unix epoch; the platform's clock, passed in.
    Timestamp, u64, {
    remote,
    lower: |t| t.as_millis(),
    try_lift: |ms| Ok(Timestamp::from_millis(ms)),
});

uniffi::custom_type!(
    /// The agent's durable state as bytes: store them whole on `Effect::Persist`, hand them to
    /// `restore_agent` after a restart.
    Snapshot, Vec<u8>, {
    remote,
    lower: |s| s.to_json(),
    try_lift: |bytes| Ok(Snapshot::from_json(&bytes)?),
});

// ---- canonical machine ----------------------------------------------------------------------

/// One of the 15 canonical call states (spec §1.1).
#[uniffi::remote(Enum)]
pub enum CallState {
    Idle,
    Requesting,
    Connecting,
    RingingInbound,
    RingingOutbound,
    Active,
    OnHold,
    RemoteHold,
    Reconnecting,
    Renegotiating,
    Disconnecting,
    Ended,
    Failed,
    Missed,
    Dropped,
}

/// Which side placed the call, seen from the device.
#[uniffi::remote(Enum)]
pub enum Direction {
    Inbound,
    Outbound,
}

/// A client platform: its Telnyx SDK feeds the agent.
#[uniffi::remote(Enum)]
pub enum Platform {
    Ios,
    Android,
    Web,
}

/// What moves a call to another state (spec §1.3's trigger column).
#[uniffi::remote(Enum)]
pub enum Trigger {
    UserDialsWeb,
    UserDialsMobile,
    IncomingCall,
    SipRinging,
    SipFailure { code: u16 },
    NoAnswer,
    LocalAnswer,
    RemoteAnswer,
    Decline,
    Dismissed,
    RingTimeout,
    CallerHangup,
    Hold,
    Resume,
    RemoteHold,
    RemoteResume,
    NetworkChange,
    NetworkRestored,
    NetworkLost,
    RecoveryTimeout,
    MediaUpdateStarted,
    MediaUpdateFinished,
    Hangup,
    HangupRequested,
    CleanupDone,
    InternalError,
}

/// The field-less kind of a trigger; the transition table is keyed by it.
#[uniffi::remote(Enum)]
pub enum TriggerKind {
    UserDialsWeb,
    UserDialsMobile,
    IncomingCall,
    SipRinging,
    SipFailure,
    NoAnswer,
    LocalAnswer,
    RemoteAnswer,
    Decline,
    Dismissed,
    RingTimeout,
    CallerHangup,
    Hold,
    Resume,
    RemoteHold,
    RemoteResume,
    NetworkChange,
    NetworkRestored,
    NetworkLost,
    RecoveryTimeout,
    MediaUpdateStarted,
    MediaUpdateFinished,
    Hangup,
    HangupRequested,
    CleanupDone,
    InternalError,
}

/// One state change that happened: from, to, the trigger and when.
#[uniffi::remote(Record)]
pub struct Transition {
    pub from: CallState,
    pub to: CallState,
    pub trigger: Trigger,
    pub at: Timestamp,
}

/// Data a trigger carries that cannot be right.
#[uniffi::remote(Enum)]
pub enum InvalidTrigger {
    SipFailureCode(u16),
}

/// Why the transition table refused a trigger (the call is unchanged).
pub type Refusal = ringmaster_core::TransitionError;

/// Why the transition table refused a trigger (the call is unchanged).
#[uniffi::remote(Enum)]
pub enum Refusal {
    Illegal {
        state: CallState,
        trigger: Trigger,
    },
    LateEventOnTerminal {
        state: CallState,
        trigger: Trigger,
    },
    InvalidTrigger {
        trigger: Trigger,
        reason: InvalidTrigger,
    },
}

/// Why a ringing device is dismissed; only `CallerCancelled` and `Timeout` make a missed call.
#[uniffi::remote(Enum)]
pub enum DismissReason {
    AnsweredElsewhere { device_id: DeviceId },
    DeclinedElsewhere { device_id: DeviceId },
    CallerCancelled,
    Timeout,
    Busy,
    Replaced,
}

// ---- Telnyx SDK states ----------------------------------------------------------------------

/// Telnyx iOS SDK `CallState` (without its associated reason).
#[uniffi::remote(Enum)]
pub enum IosState {
    New,
    Connecting,
    Ringing,
    Active,
    Held,
    Done,
    Reconnecting,
    Dropped,
}

/// Telnyx Android SDK `CallState` (without its associated reason).
#[uniffi::remote(Enum)]
pub enum AndroidState {
    New,
    Connecting,
    Ringing,
    Active,
    Renegotiating,
    Held,
    Done,
    Error,
    Dropped,
    Reconnecting,
}

/// Telnyx JS SDK call state.
#[uniffi::remote(Enum)]
pub enum WebState {
    New,
    Requesting,
    Trying,
    Recovering,
    Ringing,
    Answering,
    Early,
    Active,
    Held,
    Hangup,
    Destroy,
    Purge,
}

/// An SDK state of one of the three Telnyx SDKs.
#[uniffi::remote(Enum)]
pub enum SdkState {
    Ios(IosState),
    Android(AndroidState),
    Web(WebState),
}

/// Why the SDK says a call ended (`CallTerminationReason`, or the JS call's cause fields).
#[uniffi::remote(Record)]
pub struct TerminationCause {
    pub cause: Option<String>,
    pub cause_code: Option<u32>,
    pub sip_code: Option<u16>,
    pub sip_reason: Option<String>,
}

/// What an SDK state means for the canonical call: nothing, or a move by a trigger.
#[uniffi::remote(Enum)]
pub enum SdkMapping {
    NoChange,
    Move { to: CallState, trigger: Trigger },
}

// ---- device agent: inputs -------------------------------------------------------------------

/// The call's state relative to this device (`GET /api/voip/call-status/{id}` `status`).
#[uniffi::remote(Enum)]
pub enum DeviceStatus {
    Ringing,
    AnsweredHere,
    AnsweredElsewhere,
    DeclinedElsewhere,
    Ended,
    Missed,
}

/// One answer of the status poll.
#[uniffi::remote(Record)]
pub struct DeviceCallStatus {
    pub status: DeviceStatus,
    pub device_id: Option<DeviceId>,
    pub reason: Option<DismissReason>,
    pub version: u64,
}

/// How a backend event reached the device; `voip` marks an iOS PushKit push.
#[uniffi::remote(Enum)]
pub enum Delivery {
    WebSocket,
    Push { voip: bool },
}

/// One of the four dismissal channels.
#[uniffi::remote(Enum)]
pub enum Channel {
    Sip,
    WebSocket,
    Push,
    Poll,
}

/// What the user did in the app's call UI.
#[uniffi::remote(Enum)]
pub enum AppAction {
    Answer,
    Decline,
    Ignore,
    Hold,
    Resume,
    HangUp,
}

/// One thing that happened to the device: the Telnyx SDK, the backend's channels, the user.
#[uniffi::remote(Enum)]
pub enum Input {
    Sdk {
        call_session_id: CallSessionId,
        direction: Direction,
        state: SdkState,
        cause: Option<TerminationCause>,
    },
    LegOffered {
        call_session_id: CallSessionId,
        client_state: Option<ClientStateRef>,
    },
    IncomingCall {
        call_session_id: CallSessionId,
        from: String,
        sent_at: Timestamp,
        via: Delivery,
    },
    CallEnded {
        call_session_id: CallSessionId,
        reason: DismissReason,
        via: Delivery,
    },
    PollResult {
        call_session_id: CallSessionId,
        status: DeviceCallStatus,
    },
    CallStateChanged {
        call_session_id: CallSessionId,
        device: Option<DeviceId>,
        state: CallState,
    },
    SdpReoffer {
        call_session_id: CallSessionId,
        sdp: String,
    },
    App {
        call_session_id: CallSessionId,
        action: AppAction,
    },
}

/// A leg's decoded Telnyx `client_state`: its call, device and role, and `Outbound` on the
/// calling device's leg of a click-to-call.
#[uniffi::remote(Record)]
pub struct ClientStateRef {
    pub session: CallSessionId,
    pub device: Option<DeviceId>,
    pub leg: String,
    pub direction: Option<Direction>,
}

// ---- device agent: effects ------------------------------------------------------------------

/// Why the device stopped ringing.
#[uniffi::remote(Enum)]
pub enum StopReason {
    Dismissed { reason: DismissReason },
    LegCancelled,
    CallEnded,
    AnsweredHere,
    DeclinedHere,
    Ignored,
}

/// A transition to send to the backend, with the device's sequence number.
#[uniffi::remote(Record)]
pub struct Report {
    pub device_id: DeviceId,
    pub seq: u64,
    pub call_session_id: CallSessionId,
    pub from: CallState,
    pub to: CallState,
    pub trigger: Trigger,
    pub at: Timestamp,
}

/// An action on the SDK's call.
#[uniffi::remote(Enum)]
pub enum SdkCommand {
    Answer,
    Reject,
    Hangup,
    Hold,
    Resume,
}

/// A request to the backend's call API.
#[uniffi::remote(Enum)]
pub enum BackendRequest {
    Decline,
    Ignore,
}

/// What the agent asks the platform to do, in order.
#[uniffi::remote(Enum)]
pub enum Effect {
    StartRinging {
        call_session_id: CallSessionId,
        from: String,
    },
    StopRinging {
        call_session_id: CallSessionId,
        reason: StopReason,
        channel: Option<Channel>,
    },
    ReportTransition(Report),
    Persist(Snapshot),
    ClearPersisted {
        call_session_id: CallSessionId,
    },
    ShowMissedCall {
        call_session_id: CallSessionId,
        from: Option<String>,
    },
    StartStatusPoll {
        call_session_id: CallSessionId,
        interval_ms: u64,
    },
    StopStatusPoll {
        call_session_id: CallSessionId,
    },
    ReportThenEnd {
        call_session_id: CallSessionId,
        reason: Option<DismissReason>,
    },
    Sdk {
        call_session_id: CallSessionId,
        command: SdkCommand,
    },
    Backend {
        call_session_id: CallSessionId,
        request: BackendRequest,
    },
    OrphanEnded {
        call_session_id: CallSessionId,
        state: CallState,
    },
    OtherDeviceActive {
        call_session_id: CallSessionId,
        device_id: DeviceId,
    },
    OtherDeviceEnded {
        call_session_id: CallSessionId,
    },
}

/// A finished call the agent remembers (so late pushes and late SIP for it are dropped).
#[uniffi::remote(Record)]
pub struct Tombstone {
    pub call_session_id: CallSessionId,
    pub state: Option<CallState>,
    pub reason: Option<DismissReason>,
}
