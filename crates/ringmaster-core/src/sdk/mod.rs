//! Telnyx SDK call states mapped onto the canonical machine (spec §2.1–2.2).
//!
//! Each platform map is a total function of (SDK state, call direction, previous canonical
//! state, termination cause). It answers with the canonical state to move to and the trigger to
//! apply with [`crate::Call::apply`], or "no change". A combination the SDK should never produce
//! still maps to its naive target, so `Call::apply` refuses it as illegal instead of the map
//! hiding it.

pub mod android;
pub mod ios;
pub mod web;

use crate::state::{truncated, CallState, Direction, Platform};
use crate::trigger::Trigger;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use android::AndroidState;
pub use ios::IosState;
pub use web::WebState;

/// What an SDK state means for the canonical call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "mapping", rename_all = "snake_case")]
pub enum SdkMapping {
    /// The SDK state says nothing new (e.g. `NEW`, `trying`, or a callback on a finished call).
    NoChange,
    /// Move to `to` by applying `trigger`.
    Move {
        /// The canonical state the SDK state stands for.
        to: CallState,
        /// The trigger that takes the call there.
        trigger: Trigger,
    },
}

impl SdkMapping {
    /// The target state, if the mapping moves the call.
    pub fn target(self) -> Option<CallState> {
        match self {
            SdkMapping::NoChange => None,
            SdkMapping::Move { to, .. } => Some(to),
        }
    }
}

/// A state name an SDK does not have.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("unknown {platform} SDK call state {name:?}")]
pub struct UnknownSdkState {
    /// The SDK the name was read for.
    pub platform: Platform,
    /// The name as given (truncated).
    pub name: String,
}

impl UnknownSdkState {
    pub(crate) fn new(platform: Platform, name: &str) -> Self {
        UnknownSdkState {
            platform,
            name: truncated(name),
        }
    }
}

/// Why the SDK says a call ended: Telnyx `CallTerminationReason` (iOS, Android) or the JS call's
/// `cause`/`causeCode`/`sipCode`/`sipReason`. Every field is optional, as in the SDKs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminationCause {
    /// Q.850-style cause name, e.g. `ORIGINATOR_CANCEL`.
    #[serde(default)]
    pub cause: Option<String>,
    /// Numeric cause, e.g. 487.
    #[serde(default)]
    pub cause_code: Option<u32>,
    /// SIP status code, e.g. 486.
    #[serde(default)]
    pub sip_code: Option<u16>,
    /// SIP reason phrase.
    #[serde(default)]
    pub sip_reason: Option<String>,
}

/// What kind of ending a termination cause describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCause {
    /// The caller cancelled before answer (`ORIGINATOR_CANCEL`, 487).
    CallerCancelled,
    /// Nobody answered in time (`NO_ANSWER` 19, `NO_USER_RESPONSE` 18,
    /// `RECOVERY_ON_TIMER_EXPIRE` 102, SIP 408/480).
    NoAnswer,
    /// Busy or declined (`USER_BUSY` 17/486, `CALL_REJECTED` 21/403/603, SIP 600).
    Rejected,
    /// An ordinary hangup (`NORMAL_CLEARING` 16).
    NormalClearing,
    /// Another device took the call (`LOSE_RACE`, `PICKED_OFF`, "answered elsewhere").
    AnsweredElsewhere,
    /// Any other cause: a failure (`UNALLOCATED_NUMBER`, `INCOMPATIBLE_DESTINATION`, ...).
    Error,
    /// The SDK gave no reason.
    Unknown,
}

impl EndCause {
    /// Every kind of ending.
    pub const ALL: [EndCause; 7] = [
        EndCause::CallerCancelled,
        EndCause::NoAnswer,
        EndCause::Rejected,
        EndCause::NormalClearing,
        EndCause::AnsweredElsewhere,
        EndCause::Error,
        EndCause::Unknown,
    ];

    /// snake_case name, e.g. `caller_cancelled`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EndCause::CallerCancelled => "caller_cancelled",
            EndCause::NoAnswer => "no_answer",
            EndCause::Rejected => "rejected",
            EndCause::NormalClearing => "normal_clearing",
            EndCause::AnsweredElsewhere => "answered_elsewhere",
            EndCause::Error => "error",
            EndCause::Unknown => "unknown",
        }
    }

    /// A typical Telnyx termination reason of this kind (from the SDK error-handling docs).
    pub fn example(self) -> Option<TerminationCause> {
        let (cause, code, sip) = match self {
            EndCause::CallerCancelled => ("ORIGINATOR_CANCEL", 487, Some(487)),
            EndCause::NoAnswer => ("NO_ANSWER", 19, Some(480)),
            EndCause::Rejected => ("USER_BUSY", 17, Some(486)),
            EndCause::NormalClearing => ("NORMAL_CLEARING", 16, None),
            EndCause::AnsweredElsewhere => ("LOSE_RACE", 502, None),
            EndCause::Error => ("UNALLOCATED_NUMBER", 1, Some(404)),
            EndCause::Unknown => return None,
        };
        Some(TerminationCause {
            cause: Some(cause.to_owned()),
            cause_code: Some(code),
            sip_code: sip,
            sip_reason: None,
        })
    }
}

impl TerminationCause {
    /// Classifies the cause, trusting the cause name first, then the cause code, then the SIP
    /// code.
    pub fn classify(&self) -> EndCause {
        if let Some(name) = self
            .cause
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let upper = name.to_ascii_uppercase();
            return match upper.replace([' ', '-'], "_").as_str() {
                "ORIGINATOR_CANCEL" => EndCause::CallerCancelled,
                "NO_ANSWER"
                | "NO_USER_RESPONSE"
                | "RECOVERY_ON_TIMER_EXPIRE"
                | "ALLOTTED_TIMEOUT" => EndCause::NoAnswer,
                "USER_BUSY" | "CALL_REJECTED" => EndCause::Rejected,
                "NORMAL_CLEARING" => EndCause::NormalClearing,
                "LOSE_RACE" | "PICKED_OFF" | "ANSWERED_ELSEWHERE" => EndCause::AnsweredElsewhere,
                _ => EndCause::Error,
            };
        }
        if let Some(code) = self.cause_code {
            return match code {
                487 => EndCause::CallerCancelled,
                18 | 19 | 102 => EndCause::NoAnswer,
                17 | 21 => EndCause::Rejected,
                16 => EndCause::NormalClearing,
                _ => EndCause::Error,
            };
        }
        match self.sip_code {
            Some(487) => EndCause::CallerCancelled,
            Some(408 | 480) => EndCause::NoAnswer,
            Some(403 | 486 | 600 | 603) => EndCause::Rejected,
            Some(200..=299) => EndCause::NormalClearing,
            Some(_) => EndCause::Error,
            None => EndCause::Unknown,
        }
    }

    /// The SIP failure code this cause stands for, if it names one: the SIP code itself, or
    /// the Telnyx docs' pairing of cause names with SIP codes.
    fn sip_failure_code(&self) -> Option<u16> {
        if let Some(code) = self.sip_code.filter(|c| (300..=699).contains(c)) {
            return Some(code);
        }
        let name = self.cause.as_deref()?.trim().to_ascii_uppercase();
        match name.as_str() {
            "USER_BUSY" => Some(486),
            "CALL_REJECTED" => Some(403),
            "UNALLOCATED_NUMBER" => Some(404),
            "NO_ANSWER" => Some(480),
            "INCOMPATIBLE_DESTINATION" => Some(488),
            _ => None,
        }
    }
}

/// The meaning shared by the three SDKs' states, before direction and history are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// Says nothing about the canonical state.
    Nothing,
    /// Outbound call placed (`trigger` is the platform's dial trigger).
    Dialing(Trigger),
    /// Ringing (inbound: this device rings; outbound: the callee rings).
    Ringing,
    /// Media connected.
    Active,
    /// Held locally.
    Held,
    /// ICE restart in progress.
    Reconnecting,
    /// Network lost for good.
    Dropped,
    /// Media renegotiation.
    Renegotiating,
    /// SDK internal error.
    Error,
    /// The call is over (DONE, hangup, destroy).
    Done,
}

/// Turns a platform-neutral meaning into a canonical move.
pub(crate) fn resolve(
    meaning: Meaning,
    direction: Direction,
    prev: CallState,
    cause: Option<&TerminationCause>,
) -> SdkMapping {
    use CallState as S;
    if prev.is_terminal() {
        // A finished call absorbs whatever the SDK still reports.
        return SdkMapping::NoChange;
    }
    let (to, trigger) = match meaning {
        Meaning::Nothing => return SdkMapping::NoChange,
        Meaning::Dialing(trigger) => match direction {
            Direction::Inbound => return SdkMapping::NoChange,
            Direction::Outbound => match trigger {
                Trigger::UserDialsWeb => (S::Requesting, trigger),
                _ => (S::Connecting, trigger),
            },
        },
        Meaning::Ringing => match direction {
            Direction::Inbound => (S::RingingInbound, Trigger::IncomingCall),
            Direction::Outbound => (S::RingingOutbound, Trigger::SipRinging),
        },
        Meaning::Active => match prev {
            // The SDKs do not see remote hold; their ACTIVE does not mean the remote resumed.
            S::RemoteHold | S::Disconnecting => return SdkMapping::NoChange,
            S::Idle | S::RingingInbound => (S::Active, Trigger::LocalAnswer),
            S::OnHold => (S::Active, Trigger::Resume),
            S::Reconnecting | S::Dropped => (S::Active, Trigger::NetworkRestored),
            S::Renegotiating => (S::Active, Trigger::MediaUpdateFinished),
            _ => (S::Active, Trigger::RemoteAnswer),
        },
        Meaning::Held => (S::OnHold, Trigger::Hold),
        Meaning::Reconnecting => (S::Reconnecting, Trigger::NetworkChange),
        Meaning::Dropped => match prev {
            S::Reconnecting => (S::Dropped, Trigger::RecoveryTimeout),
            _ => (S::Dropped, Trigger::NetworkLost),
        },
        Meaning::Renegotiating => (S::Renegotiating, Trigger::MediaUpdateStarted),
        Meaning::Error => (S::Failed, Trigger::InternalError),
        Meaning::Done => end(direction, prev, cause),
    };
    if to == prev {
        SdkMapping::NoChange
    } else {
        SdkMapping::Move { to, trigger }
    }
}

/// Where a call ends when the SDK says it is done, from where it was and why it ended.
fn end(
    direction: Direction,
    prev: CallState,
    cause: Option<&TerminationCause>,
) -> (CallState, Trigger) {
    use CallState as S;
    let kind = cause.map_or(EndCause::Unknown, TerminationCause::classify);
    let failure = || match cause.and_then(TerminationCause::sip_failure_code) {
        Some(code) => Trigger::sip_final_failure(code).unwrap_or(Trigger::InternalError),
        None => Trigger::InternalError,
    };
    match prev {
        S::Idle => match (direction, kind) {
            // An outbound call that never got to CONNECTING could not be placed.
            (Direction::Outbound, _) | (Direction::Inbound, EndCause::Error) => {
                (S::Failed, Trigger::InternalError)
            }
            (
                Direction::Inbound,
                EndCause::CallerCancelled | EndCause::NoAnswer | EndCause::Unknown,
            ) => (S::Missed, Trigger::CallerHangup),
            (Direction::Inbound, _) => (S::Ended, Trigger::Dismissed),
        },
        S::RingingInbound => match kind {
            // No reason given: count it as missed rather than lose a missed call (spec §3.4).
            EndCause::CallerCancelled | EndCause::Unknown => (S::Missed, Trigger::CallerHangup),
            EndCause::NoAnswer => (S::Missed, Trigger::RingTimeout),
            EndCause::Rejected => (S::Ended, Trigger::Decline),
            EndCause::NormalClearing | EndCause::AnsweredElsewhere => {
                (S::Ended, Trigger::Dismissed)
            }
            EndCause::Error => (S::Failed, Trigger::InternalError),
        },
        S::Requesting | S::Connecting => match kind {
            EndCause::Rejected | EndCause::Error => (S::Failed, failure()),
            EndCause::NoAnswer => (S::Failed, Trigger::NoAnswer),
            _ => (S::Ended, Trigger::Hangup),
        },
        S::RingingOutbound => match kind {
            EndCause::Rejected | EndCause::Error => (S::Failed, failure()),
            EndCause::NoAnswer => (S::Missed, Trigger::NoAnswer),
            _ => (S::Ended, Trigger::Hangup),
        },
        S::Disconnecting | S::Dropped => (S::Ended, Trigger::CleanupDone),
        // A connected call that ends has ended, whatever the cause.
        _ => (S::Ended, Trigger::Hangup),
    }
}

/// Case-insensitive lookup of `name` among `names`, also accepting a trailing `(…)` as the SDKs
/// print associated values, e.g. `DONE(reason: nil)`.
pub(crate) fn lookup<T: Copy>(
    platform: Platform,
    name: &str,
    table: &[(&str, T)],
) -> Result<T, UnknownSdkState> {
    let trimmed = name.trim();
    let bare = match trimmed.find('(') {
        Some(open) if trimmed.ends_with(')') => trimmed[..open].trim_end(),
        _ => trimmed,
    };
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(bare))
        .map(|&(_, v)| v)
        .ok_or_else(|| UnknownSdkState::new(platform, name))
}

/// Maps `name` (the SDK's own spelling, any case) on `platform`.
pub fn map_named(
    platform: Platform,
    name: &str,
    direction: Direction,
    prev: CallState,
    cause: Option<&TerminationCause>,
) -> Result<SdkMapping, UnknownSdkState> {
    Ok(match platform {
        Platform::Ios => ios::map(name.parse()?, direction, prev, cause),
        Platform::Android => android::map(name.parse()?, direction, prev, cause),
        Platform::Web => web::map(name.parse()?, direction, prev, cause),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(name: &str) -> TerminationCause {
        TerminationCause {
            cause: Some(name.into()),
            ..TerminationCause::default()
        }
    }

    #[test]
    fn causes_classify_by_name_then_code_then_sip() {
        assert_eq!(
            cause("originator_cancel").classify(),
            EndCause::CallerCancelled
        );
        assert_eq!(cause("CALL_REJECTED").classify(), EndCause::Rejected);
        assert_eq!(
            cause("INCOMPATIBLE_DESTINATION").classify(),
            EndCause::Error
        );
        let by_code = TerminationCause {
            cause_code: Some(16),
            ..Default::default()
        };
        assert_eq!(by_code.classify(), EndCause::NormalClearing);
        let by_sip = TerminationCause {
            sip_code: Some(480),
            ..Default::default()
        };
        assert_eq!(by_sip.classify(), EndCause::NoAnswer);
        assert_eq!(TerminationCause::default().classify(), EndCause::Unknown);
        for kind in EndCause::ALL {
            assert_eq!(
                kind.example().map_or(EndCause::Unknown, |c| c.classify()),
                kind
            );
        }
    }

    #[test]
    fn termination_cause_reads_the_sdk_json_spelling() {
        let c: TerminationCause = serde_json::from_str(
            r#"{"cause":"USER_BUSY","causeCode":17,"sipCode":486,"sipReason":"Busy Here"}"#,
        )
        .unwrap();
        assert_eq!(c.classify(), EndCause::Rejected);
        assert_eq!(c.sip_failure_code(), Some(486));
    }

    #[test]
    fn parenthesised_values_are_ignored_when_parsing() {
        let table = [("DONE", 1), ("RINGING", 2)];
        assert_eq!(lookup(Platform::Ios, "done(reason: nil)", &table), Ok(1));
        assert_eq!(lookup(Platform::Ios, " Ringing ", &table), Ok(2));
        assert!(lookup(Platform::Ios, "RINGING(", &table).is_err());
        assert!(lookup(Platform::Ios, "", &table).is_err());
    }
}
