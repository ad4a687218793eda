//! What the agent reacts to: the Telnyx SDK, the backend's channels and the user.

pub use ringmaster_core::dismissal::Channel;
use ringmaster_core::sdk::{
    self, AndroidState, IosState, SdkMapping, TerminationCause, UnknownSdkState, WebState,
};
use ringmaster_core::session::{ClientStateRef, DeviceCallStatus};
use ringmaster_core::{CallSessionId, CallState, DeviceId, Direction, DismissReason, Platform};
use serde::{Deserialize, Serialize};

/// One thing that happened to the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// The Telnyx SDK changed a call's state. A BYE/CANCEL of a ringing call arrives here: this
    /// is the SIP dismissal channel.
    Sdk {
        /// The call (`call_session_id` from the SDK's custom headers or the push).
        call_session_id: CallSessionId,
        /// Which side placed the call.
        direction: Direction,
        /// The SDK's state, for the agent's platform.
        state: SdkState,
        /// The SDK's termination reason, when the call is done.
        cause: Option<TerminationCause>,
    },
    /// The SDK was offered a leg (an incoming INVITE) and the app read the Telnyx
    /// `client_state` it carries (base64 JSON, decoded). The calling device's leg of a
    /// click-to-call (`direction` outbound, naming this device and this call) is the user's own
    /// outbound call: CONNECTING (REQUESTING on the web), answered by the agent at once since
    /// the user asked for it, RINGING_OUTBOUND once the leg is up and the destination is
    /// dialled, ACTIVE when the backend says the destination answered. Any other leg rings as
    /// an incoming call.
    LegOffered {
        /// The call (the `client_state`'s session, or the SDK's custom headers / the push).
        call_session_id: CallSessionId,
        /// The leg's decoded `client_state`, when it has one of ours.
        client_state: Option<ClientStateRef>,
    },
    /// `incoming_call` arrived by push (VoIP push on iOS) or on the WebSocket.
    IncomingCall {
        /// The call.
        call_session_id: CallSessionId,
        /// Caller number, for the ringing UI and a missed-call notification.
        from: String,
        /// When the backend sent it (push payload / event timestamp), to spot stale deliveries.
        sent_at: ringmaster_core::Timestamp,
        /// How it arrived.
        via: Delivery,
    },
    /// `call_ended` arrived on the WebSocket or by (regular) push.
    CallEnded {
        /// The call.
        call_session_id: CallSessionId,
        /// Why the device must stop ringing.
        reason: DismissReason,
        /// How it arrived.
        via: Delivery,
    },
    /// The answer to one `GET /api/voip/call-status/{id}` poll.
    PollResult {
        /// The call polled.
        call_session_id: CallSessionId,
        /// The backend's view of the call for this device.
        status: DeviceCallStatus,
    },
    /// `call_state_changed` on the WebSocket: the call moved on one device (states in the
    /// canonical spelling, e.g. `ACTIVE`, `ON_HOLD`, `ENDED`).
    CallStateChanged {
        /// The call.
        call_session_id: CallSessionId,
        /// The device the change is about, if any (`device_id` on the wire).
        #[serde(alias = "device_id")]
        device: Option<DeviceId>,
        /// The state that device is in now.
        state: CallState,
    },
    /// The remote side sent a re-INVITE: its raw SDP offer. Classified by
    /// `sdp::classify_reoffer` against the remote's previous offer, it puts the call in
    /// REMOTE_HOLD or takes it out (spec G-14); anything else (codec change, ICE restart)
    /// changes nothing.
    SdpReoffer {
        /// The call.
        call_session_id: CallSessionId,
        /// The offer's SDP body, as received.
        sdp: String,
    },
    /// The user did something in the app's call UI.
    App {
        /// The call.
        call_session_id: CallSessionId,
        /// What the user did.
        action: AppAction,
    },
}

impl Input {
    /// The call the input is about.
    pub fn call_session_id(&self) -> &CallSessionId {
        match self {
            Input::Sdk {
                call_session_id, ..
            }
            | Input::LegOffered {
                call_session_id, ..
            }
            | Input::IncomingCall {
                call_session_id, ..
            }
            | Input::CallEnded {
                call_session_id, ..
            }
            | Input::PollResult {
                call_session_id, ..
            }
            | Input::CallStateChanged {
                call_session_id, ..
            }
            | Input::SdpReoffer {
                call_session_id, ..
            }
            | Input::App {
                call_session_id, ..
            } => call_session_id,
        }
    }
}

/// How a backend event reached the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The user's private WebSocket channel.
    WebSocket,
    /// A push notification. `voip` is an iOS PushKit push, which must always be reported to
    /// CallKit.
    Push {
        /// Whether it is an iOS VoIP (PushKit) push.
        voip: bool,
    },
}

impl Delivery {
    /// The dismissal channel this delivery belongs to.
    pub fn channel(self) -> Channel {
        match self {
            Delivery::WebSocket => Channel::WebSocket,
            Delivery::Push { .. } => Channel::Push,
        }
    }
}

/// What the user can do to a call from the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppAction {
    /// Answer the ringing call.
    Answer,
    /// Decline the ringing call for everyone.
    Decline,
    /// Stop ringing here only; other devices keep ringing.
    Ignore,
    /// Put the active call on hold.
    Hold,
    /// Resume the held call.
    Resume,
    /// Hang up (declines a ringing inbound call).
    HangUp,
}

/// An SDK state of one of the three Telnyx SDKs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "platform", content = "state", rename_all = "lowercase")]
pub enum SdkState {
    /// Telnyx iOS SDK.
    Ios(IosState),
    /// Telnyx Android SDK.
    Android(AndroidState),
    /// Telnyx JS SDK.
    Web(WebState),
}

impl SdkState {
    /// Parses the SDK's own spelling of a state on `platform`.
    pub fn parse(platform: Platform, name: &str) -> Result<SdkState, UnknownSdkState> {
        Ok(match platform {
            Platform::Ios => SdkState::Ios(name.parse()?),
            Platform::Android => SdkState::Android(name.parse()?),
            Platform::Web => SdkState::Web(name.parse()?),
        })
    }

    /// The SDK state meaning "ringing" on `platform`.
    pub fn ringing(platform: Platform) -> SdkState {
        match platform {
            Platform::Ios => SdkState::Ios(IosState::Ringing),
            Platform::Android => SdkState::Android(AndroidState::Ringing),
            Platform::Web => SdkState::Web(WebState::Ringing),
        }
    }

    /// The SDK state meaning "connected" on `platform`.
    pub fn active(platform: Platform) -> SdkState {
        match platform {
            Platform::Ios => SdkState::Ios(IosState::Active),
            Platform::Android => SdkState::Android(AndroidState::Active),
            Platform::Web => SdkState::Web(WebState::Active),
        }
    }

    /// The SDK state meaning "the call is over" on `platform`.
    pub fn done(platform: Platform) -> SdkState {
        match platform {
            Platform::Ios => SdkState::Ios(IosState::Done),
            Platform::Android => SdkState::Android(AndroidState::Done),
            Platform::Web => SdkState::Web(WebState::Hangup),
        }
    }

    /// The platform whose SDK has this state.
    pub fn platform(self) -> Platform {
        match self {
            SdkState::Ios(_) => Platform::Ios,
            SdkState::Android(_) => Platform::Android,
            SdkState::Web(_) => Platform::Web,
        }
    }

    /// The canonical move for this SDK state (through the core's SDK maps).
    pub fn map(
        self,
        direction: Direction,
        prev: CallState,
        cause: Option<&TerminationCause>,
    ) -> SdkMapping {
        match self {
            SdkState::Ios(s) => sdk::ios::map(s, direction, prev, cause),
            SdkState::Android(s) => sdk::android::map(s, direction, prev, cause),
            SdkState::Web(s) => sdk::web::map(s, direction, prev, cause),
        }
    }
}
