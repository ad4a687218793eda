//! What makes a call change state: the typed events of spec §1.3's "Trigger" column.

use crate::dismissal::DismissReason;
use crate::state::{truncated, Platform};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// An event that may move a call to another state. Devices send these in their reports, so the
/// wire form is `{"type":"sip_failure","code":486}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// The user starts an outbound call from the web app (request over the signalling socket).
    UserDialsWeb,
    /// The user starts an outbound call from a mobile app (the SDK sends the INVITE).
    UserDialsMobile,
    /// A push and the SIP INVITE of an incoming call arrived.
    IncomingCall,
    /// A SIP 180 Ringing or 183 Session Progress arrived for an outbound call.
    SipRinging,
    /// A final SIP error response (3xx–6xx) arrived for an outbound call, e.g. 486 or 603.
    SipFailure {
        /// The SIP status code, 300..=699.
        #[serde(deserialize_with = "sip_failure_code")]
        code: u16,
    },
    /// The network reported that the callee did not answer (SIP 408/480).
    NoAnswer,
    /// The local user answered the incoming call (SIP 200 OK sent).
    LocalAnswer,
    /// The callee answered the outbound call (SIP 200 OK received).
    RemoteAnswer,
    /// The local user declined the incoming call (SIP 486/603 sent).
    Decline,
    /// The backend dismissed this ringing device: answered or declined on another device, or the
    /// user is busy. Not a missed call.
    Dismissed,
    /// The ring timer (30 s) ran out with nobody answering.
    RingTimeout,
    /// The caller hung up before the call was answered.
    CallerHangup,
    /// The local user pressed hold (re-INVITE sendonly).
    Hold,
    /// The local user resumed a held call (re-INVITE sendrecv).
    Resume,
    /// The remote party sent a hold re-INVITE (see `sdp::classify_reoffer`).
    RemoteHold,
    /// The remote party sent a resume re-INVITE.
    RemoteResume,
    /// The device's network changed; ICE restart begins.
    NetworkChange,
    /// The network is back and ICE succeeded.
    NetworkRestored,
    /// The network was lost completely.
    NetworkLost,
    /// Recovery took too long; give up.
    RecoveryTimeout,
    /// A media renegotiation started (Android).
    MediaUpdateStarted,
    /// The media renegotiation finished.
    MediaUpdateFinished,
    /// Either side hung up and the call is over (SIP BYE or CANCEL sent or received).
    Hangup,
    /// The local user asked to hang up; the BYE/CANCEL is on its way.
    HangupRequested,
    /// Cleanup after a drop or a local hangup finished.
    CleanupDone,
    /// The SDK failed internally.
    InternalError,
}

impl Trigger {
    /// The trigger that starts an outbound call on `platform`.
    pub const fn user_dials(platform: Platform) -> Trigger {
        match platform {
            Platform::Web => Trigger::UserDialsWeb,
            Platform::Ios | Platform::Android => Trigger::UserDialsMobile,
        }
    }

    /// The trigger for a final SIP error response to an outbound INVITE: 408 and 480 mean
    /// nobody answered, anything else is a failure. `None` if `code` is not 300..=699.
    pub const fn sip_final_failure(code: u16) -> Option<Trigger> {
        match code {
            408 | 480 => Some(Trigger::NoAnswer),
            300..=699 => Some(Trigger::SipFailure { code }),
            _ => None,
        }
    }

    /// The trigger for a backend dismissal of a ringing device: caller cancel and timeout make
    /// a missed call, every other reason does not.
    pub const fn from_dismissal(reason: &DismissReason) -> Trigger {
        match reason {
            DismissReason::CallerCancelled => Trigger::CallerHangup,
            DismissReason::Timeout => Trigger::RingTimeout,
            DismissReason::AnsweredElsewhere { .. }
            | DismissReason::DeclinedElsewhere { .. }
            | DismissReason::Busy
            | DismissReason::Replaced => Trigger::Dismissed,
        }
    }

    /// The field-less kind the transition table is keyed by.
    pub const fn kind(&self) -> TriggerKind {
        match self {
            Trigger::UserDialsWeb => TriggerKind::UserDialsWeb,
            Trigger::UserDialsMobile => TriggerKind::UserDialsMobile,
            Trigger::IncomingCall => TriggerKind::IncomingCall,
            Trigger::SipRinging => TriggerKind::SipRinging,
            Trigger::SipFailure { .. } => TriggerKind::SipFailure,
            Trigger::NoAnswer => TriggerKind::NoAnswer,
            Trigger::LocalAnswer => TriggerKind::LocalAnswer,
            Trigger::RemoteAnswer => TriggerKind::RemoteAnswer,
            Trigger::Decline => TriggerKind::Decline,
            Trigger::Dismissed => TriggerKind::Dismissed,
            Trigger::RingTimeout => TriggerKind::RingTimeout,
            Trigger::CallerHangup => TriggerKind::CallerHangup,
            Trigger::Hold => TriggerKind::Hold,
            Trigger::Resume => TriggerKind::Resume,
            Trigger::RemoteHold => TriggerKind::RemoteHold,
            Trigger::RemoteResume => TriggerKind::RemoteResume,
            Trigger::NetworkChange => TriggerKind::NetworkChange,
            Trigger::NetworkRestored => TriggerKind::NetworkRestored,
            Trigger::NetworkLost => TriggerKind::NetworkLost,
            Trigger::RecoveryTimeout => TriggerKind::RecoveryTimeout,
            Trigger::MediaUpdateStarted => TriggerKind::MediaUpdateStarted,
            Trigger::MediaUpdateFinished => TriggerKind::MediaUpdateFinished,
            Trigger::Hangup => TriggerKind::Hangup,
            Trigger::HangupRequested => TriggerKind::HangupRequested,
            Trigger::CleanupDone => TriggerKind::CleanupDone,
            Trigger::InternalError => TriggerKind::InternalError,
        }
    }

    /// Checks the data a trigger carries (a SIP failure code must be 300..=699).
    pub fn validate(&self) -> Result<(), InvalidTrigger> {
        match *self {
            Trigger::SipFailure { code } if !(300..=699).contains(&code) => {
                Err(InvalidTrigger::SipFailureCode(code))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::SipFailure { code } => write!(f, "sip_failure({code})"),
            other => f.write_str(other.kind().as_str()),
        }
    }
}

/// A trigger carrying data that cannot be right.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum InvalidTrigger {
    /// A SIP failure code outside 300..=699.
    #[error("SIP failure code {0} is not a final error response (300..=699)")]
    SipFailureCode(u16),
}

fn sip_failure_code<'de, D: Deserializer<'de>>(de: D) -> Result<u16, D::Error> {
    let code = u16::deserialize(de)?;
    Trigger::SipFailure { code }
        .validate()
        .map_err(serde::de::Error::custom)?;
    Ok(code)
}

macro_rules! trigger_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The field-less kind of a [`Trigger`]; one per variant, spelled in snake_case.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum TriggerKind {
            $($(#[$doc])* $variant,)*
        }

        impl TriggerKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [TriggerKind] = &[$(TriggerKind::$variant,)*];

            /// The snake_case name, e.g. `sip_failure`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(TriggerKind::$variant => $name,)*
                }
            }
        }
    };
}

trigger_kinds! {
    /// See [`Trigger::UserDialsWeb`].
    UserDialsWeb => "user_dials_web",
    /// See [`Trigger::UserDialsMobile`].
    UserDialsMobile => "user_dials_mobile",
    /// See [`Trigger::IncomingCall`].
    IncomingCall => "incoming_call",
    /// See [`Trigger::SipRinging`].
    SipRinging => "sip_ringing",
    /// See [`Trigger::SipFailure`].
    SipFailure => "sip_failure",
    /// See [`Trigger::NoAnswer`].
    NoAnswer => "no_answer",
    /// See [`Trigger::LocalAnswer`].
    LocalAnswer => "local_answer",
    /// See [`Trigger::RemoteAnswer`].
    RemoteAnswer => "remote_answer",
    /// See [`Trigger::Decline`].
    Decline => "decline",
    /// See [`Trigger::Dismissed`].
    Dismissed => "dismissed",
    /// See [`Trigger::RingTimeout`].
    RingTimeout => "ring_timeout",
    /// See [`Trigger::CallerHangup`].
    CallerHangup => "caller_hangup",
    /// See [`Trigger::Hold`].
    Hold => "hold",
    /// See [`Trigger::Resume`].
    Resume => "resume",
    /// See [`Trigger::RemoteHold`].
    RemoteHold => "remote_hold",
    /// See [`Trigger::RemoteResume`].
    RemoteResume => "remote_resume",
    /// See [`Trigger::NetworkChange`].
    NetworkChange => "network_change",
    /// See [`Trigger::NetworkRestored`].
    NetworkRestored => "network_restored",
    /// See [`Trigger::NetworkLost`].
    NetworkLost => "network_lost",
    /// See [`Trigger::RecoveryTimeout`].
    RecoveryTimeout => "recovery_timeout",
    /// See [`Trigger::MediaUpdateStarted`].
    MediaUpdateStarted => "media_update_started",
    /// See [`Trigger::MediaUpdateFinished`].
    MediaUpdateFinished => "media_update_finished",
    /// See [`Trigger::Hangup`].
    Hangup => "hangup",
    /// See [`Trigger::HangupRequested`].
    HangupRequested => "hangup_requested",
    /// See [`Trigger::CleanupDone`].
    CleanupDone => "cleanup_done",
    /// See [`Trigger::InternalError`].
    InternalError => "internal_error",
}

impl TriggerKind {
    /// A representative trigger of this kind (SIP failure uses 486 Busy Here).
    pub const fn example(self) -> Trigger {
        match self {
            TriggerKind::UserDialsWeb => Trigger::UserDialsWeb,
            TriggerKind::UserDialsMobile => Trigger::UserDialsMobile,
            TriggerKind::IncomingCall => Trigger::IncomingCall,
            TriggerKind::SipRinging => Trigger::SipRinging,
            TriggerKind::SipFailure => Trigger::SipFailure { code: 486 },
            TriggerKind::NoAnswer => Trigger::NoAnswer,
            TriggerKind::LocalAnswer => Trigger::LocalAnswer,
            TriggerKind::RemoteAnswer => Trigger::RemoteAnswer,
            TriggerKind::Decline => Trigger::Decline,
            TriggerKind::Dismissed => Trigger::Dismissed,
            TriggerKind::RingTimeout => Trigger::RingTimeout,
            TriggerKind::CallerHangup => Trigger::CallerHangup,
            TriggerKind::Hold => Trigger::Hold,
            TriggerKind::Resume => Trigger::Resume,
            TriggerKind::RemoteHold => Trigger::RemoteHold,
            TriggerKind::RemoteResume => Trigger::RemoteResume,
            TriggerKind::NetworkChange => Trigger::NetworkChange,
            TriggerKind::NetworkRestored => Trigger::NetworkRestored,
            TriggerKind::NetworkLost => Trigger::NetworkLost,
            TriggerKind::RecoveryTimeout => Trigger::RecoveryTimeout,
            TriggerKind::MediaUpdateStarted => Trigger::MediaUpdateStarted,
            TriggerKind::MediaUpdateFinished => Trigger::MediaUpdateFinished,
            TriggerKind::Hangup => Trigger::Hangup,
            TriggerKind::HangupRequested => Trigger::HangupRequested,
            TriggerKind::CleanupDone => Trigger::CleanupDone,
            TriggerKind::InternalError => Trigger::InternalError,
        }
    }
}

impl fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a trigger kind.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("unknown trigger {0:?}")]
pub struct UnknownTrigger(pub String);

impl FromStr for TriggerKind {
    type Err = UnknownTrigger;

    /// Parses the snake_case name, e.g. `remote_hold`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TriggerKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownTrigger(truncated(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeviceId;

    #[test]
    fn every_kind_has_a_matching_example_and_name() {
        for &kind in TriggerKind::ALL {
            assert_eq!(kind.example().kind(), kind);
            assert_eq!(kind.as_str().parse::<TriggerKind>(), Ok(kind));
            let json = serde_json::to_value(kind.example()).unwrap();
            assert_eq!(json["type"], kind.as_str());
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }

    #[test]
    fn sip_failure_travels_with_its_code_and_rejects_non_errors() {
        let t: Trigger = serde_json::from_str(r#"{"type":"sip_failure","code":603}"#).unwrap();
        assert_eq!(t, Trigger::SipFailure { code: 603 });
        assert!(serde_json::from_str::<Trigger>(r#"{"type":"sip_failure","code":200}"#).is_err());
        assert!(serde_json::from_str::<Trigger>(r#"{"type":"sip_failure"}"#).is_err());
        assert!(serde_json::from_str::<Trigger>(r#"{"type":"teleport"}"#).is_err());
        assert_eq!(
            Trigger::SipFailure { code: 180 }.validate(),
            Err(InvalidTrigger::SipFailureCode(180))
        );
    }

    #[test]
    fn sip_final_failures_split_no_answer_from_errors() {
        assert_eq!(Trigger::sip_final_failure(480), Some(Trigger::NoAnswer));
        assert_eq!(Trigger::sip_final_failure(408), Some(Trigger::NoAnswer));
        assert_eq!(
            Trigger::sip_final_failure(486),
            Some(Trigger::SipFailure { code: 486 })
        );
        assert_eq!(Trigger::sip_final_failure(200), None);
    }

    #[test]
    fn only_caller_cancel_and_timeout_dismissals_are_missed_triggers() {
        let dev = DeviceId::new("d1");
        assert_eq!(
            Trigger::from_dismissal(&DismissReason::CallerCancelled),
            Trigger::CallerHangup
        );
        assert_eq!(
            Trigger::from_dismissal(&DismissReason::Timeout),
            Trigger::RingTimeout
        );
        assert_eq!(
            Trigger::from_dismissal(&DismissReason::AnsweredElsewhere { device_id: dev }),
            Trigger::Dismissed
        );
        assert_eq!(
            Trigger::from_dismissal(&DismissReason::Busy),
            Trigger::Dismissed
        );
    }

    #[test]
    fn user_dials_picks_the_platform_path() {
        assert_eq!(Trigger::user_dials(Platform::Web), Trigger::UserDialsWeb);
        assert_eq!(Trigger::user_dials(Platform::Ios), Trigger::UserDialsMobile);
    }
}
