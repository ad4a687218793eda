//! Telnyx Android SDK `CallState` (`com.telnyx.webrtc.sdk.model.CallState`): 10 states.

use super::{lookup, resolve, Meaning, SdkMapping, TerminationCause, UnknownSdkState};
use crate::state::{CallState, Direction, Platform};
use crate::trigger::Trigger;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An Android SDK call state, without its associated reason (pass that as the termination
/// cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AndroidState {
    /// Call object created.
    New,
    /// INVITE sent (outbound) or answer in progress (inbound).
    Connecting,
    /// Ringing (either direction).
    Ringing,
    /// Connected.
    Active,
    /// ICE restart or media update in progress.
    Renegotiating,
    /// Held locally.
    Held,
    /// Ended, with an optional `CallTerminationReason`.
    Done,
    /// SDK internal error.
    Error,
    /// Network lost (`CallNetworkChangeReason`).
    Dropped,
    /// Network switched; reconnecting (`CallNetworkChangeReason`).
    Reconnecting,
}

const NAMES: [(&str, AndroidState); 10] = [
    ("NEW", AndroidState::New),
    ("CONNECTING", AndroidState::Connecting),
    ("RINGING", AndroidState::Ringing),
    ("ACTIVE", AndroidState::Active),
    ("RENEGOTIATING", AndroidState::Renegotiating),
    ("HELD", AndroidState::Held),
    ("DONE", AndroidState::Done),
    ("ERROR", AndroidState::Error),
    ("DROPPED", AndroidState::Dropped),
    ("RECONNECTING", AndroidState::Reconnecting),
];

impl AndroidState {
    /// Every state, in the SDK's order.
    pub const ALL: [AndroidState; 10] = [
        AndroidState::New,
        AndroidState::Connecting,
        AndroidState::Ringing,
        AndroidState::Active,
        AndroidState::Renegotiating,
        AndroidState::Held,
        AndroidState::Done,
        AndroidState::Error,
        AndroidState::Dropped,
        AndroidState::Reconnecting,
    ];

    /// The SDK's spelling, e.g. `RENEGOTIATING`.
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(n, _)| n)
    }

    fn meaning(self) -> Meaning {
        match self {
            AndroidState::New => Meaning::Nothing,
            AndroidState::Connecting => Meaning::Dialing(Trigger::UserDialsMobile),
            AndroidState::Ringing => Meaning::Ringing,
            AndroidState::Active => Meaning::Active,
            AndroidState::Renegotiating => Meaning::Renegotiating,
            AndroidState::Held => Meaning::Held,
            AndroidState::Done => Meaning::Done,
            AndroidState::Error => Meaning::Error,
            AndroidState::Dropped => Meaning::Dropped,
            AndroidState::Reconnecting => Meaning::Reconnecting,
        }
    }
}

impl fmt::Display for AndroidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AndroidState {
    type Err = UnknownSdkState;

    /// Parses the SDK's spelling in any case (`RINGING`, `ringing`, `DONE(reason=null)`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        lookup(Platform::Android, s, &NAMES)
    }
}

/// The canonical move for Android SDK state `state`. `cause` is the `DONE` reason; the network
/// reason of RECONNECTING/DROPPED does not change the mapping.
pub fn map(
    state: AndroidState,
    direction: Direction,
    prev: CallState,
    cause: Option<&TerminationCause>,
) -> SdkMapping {
    resolve(state.meaning(), direction, prev, cause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::EndCause;

    #[test]
    fn error_fails_and_renegotiating_is_its_own_state() {
        assert_eq!(
            map(
                AndroidState::Error,
                Direction::Inbound,
                CallState::Active,
                None
            )
            .target(),
            Some(CallState::Failed)
        );
        assert_eq!(
            map(
                AndroidState::Renegotiating,
                Direction::Inbound,
                CallState::Active,
                None
            ),
            SdkMapping::Move {
                to: CallState::Renegotiating,
                trigger: Trigger::MediaUpdateStarted
            }
        );
    }

    #[test]
    fn done_while_ringing_inbound_depends_on_the_cause() {
        let done = |kind: EndCause| {
            map(
                AndroidState::Done,
                Direction::Inbound,
                CallState::RingingInbound,
                kind.example().as_ref(),
            )
            .target()
        };
        assert_eq!(done(EndCause::CallerCancelled), Some(CallState::Missed));
        assert_eq!(done(EndCause::Unknown), Some(CallState::Missed));
        assert_eq!(done(EndCause::Rejected), Some(CallState::Ended));
        assert_eq!(done(EndCause::AnsweredElsewhere), Some(CallState::Ended));
        assert_eq!(done(EndCause::Error), Some(CallState::Failed));
    }

    #[test]
    fn names_parse_in_any_case_and_unknown_ones_fail() {
        for state in AndroidState::ALL {
            assert_eq!(
                state.as_str().to_lowercase().parse::<AndroidState>(),
                Ok(state)
            );
        }
        assert!("RECOVERING".parse::<AndroidState>().is_err());
    }
}
