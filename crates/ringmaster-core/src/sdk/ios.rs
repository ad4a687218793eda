//! Telnyx iOS SDK `CallState` (`TelnyxRTC/Telnyx/WebRTC/Call.swift`): 8 cases.

use super::{lookup, resolve, Meaning, SdkMapping, TerminationCause, UnknownSdkState};
use crate::state::{CallState, Direction, Platform};
use crate::trigger::Trigger;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An iOS SDK call state, without its associated reason (pass that as the termination cause).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IosState {
    /// Call object created.
    New,
    /// INVITE sent (outbound) or answer in progress (inbound).
    Connecting,
    /// Ringing (either direction; the SDK does not say which).
    Ringing,
    /// Connected.
    Active,
    /// Held locally.
    Held,
    /// Ended, with an optional `CallTerminationReason`.
    Done,
    /// Network switched; reconnecting (`Reason`).
    Reconnecting,
    /// Network lost (`Reason`).
    Dropped,
}

const NAMES: [(&str, IosState); 8] = [
    ("NEW", IosState::New),
    ("CONNECTING", IosState::Connecting),
    ("RINGING", IosState::Ringing),
    ("ACTIVE", IosState::Active),
    ("HELD", IosState::Held),
    ("DONE", IosState::Done),
    ("RECONNECTING", IosState::Reconnecting),
    ("DROPPED", IosState::Dropped),
];

impl IosState {
    /// Every case, in the SDK's order.
    pub const ALL: [IosState; 8] = [
        IosState::New,
        IosState::Connecting,
        IosState::Ringing,
        IosState::Active,
        IosState::Held,
        IosState::Done,
        IosState::Reconnecting,
        IosState::Dropped,
    ];

    /// The SDK's spelling, e.g. `RINGING`.
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(n, _)| n)
    }

    fn meaning(self) -> Meaning {
        match self {
            IosState::New => Meaning::Nothing,
            IosState::Connecting => Meaning::Dialing(Trigger::UserDialsMobile),
            IosState::Ringing => Meaning::Ringing,
            IosState::Active => Meaning::Active,
            IosState::Held => Meaning::Held,
            IosState::Done => Meaning::Done,
            IosState::Reconnecting => Meaning::Reconnecting,
            IosState::Dropped => Meaning::Dropped,
        }
    }
}

impl fmt::Display for IosState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IosState {
    type Err = UnknownSdkState;

    /// Parses the SDK's spelling in any case (`RINGING`, `ringing`, `DONE(reason: nil)`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        lookup(Platform::Ios, s, &NAMES)
    }
}

/// The canonical move for iOS SDK state `state`. `cause` is the `DONE` reason; the network
/// `Reason` of RECONNECTING/DROPPED does not change the mapping.
pub fn map(
    state: IosState,
    direction: Direction,
    prev: CallState,
    cause: Option<&TerminationCause>,
) -> SdkMapping {
    resolve(state.meaning(), direction, prev, cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringing_splits_by_direction() {
        assert_eq!(
            map(IosState::Ringing, Direction::Inbound, CallState::Idle, None).target(),
            Some(CallState::RingingInbound)
        );
        assert_eq!(
            map(
                IosState::Ringing,
                Direction::Outbound,
                CallState::Connecting,
                None
            )
            .target(),
            Some(CallState::RingingOutbound)
        );
    }

    #[test]
    fn names_parse_in_any_case_and_unknown_ones_fail() {
        for state in IosState::ALL {
            assert_eq!(state.as_str().parse::<IosState>(), Ok(state));
            assert_eq!(state.as_str().to_lowercase().parse::<IosState>(), Ok(state));
        }
        let err = "RENEGOTIATING".parse::<IosState>().unwrap_err();
        assert_eq!(err.platform, Platform::Ios);
        assert_eq!(err.name, "RENEGOTIATING");
    }
}
