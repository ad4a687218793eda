//! Telnyx JS SDK `call.state` (`packages/js/src/Modules/Verto/webrtc/constants.ts`, `enum State`
//! lower-cased): 12 values, of which the app tracks 4 (`requesting`, `ringing`, `active`,
//! `destroy`; spec §2.1).

use super::{lookup, resolve, Meaning, SdkMapping, TerminationCause, UnknownSdkState};
use crate::state::{CallState, Direction, Platform};
use crate::trigger::Trigger;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A Telnyx JS SDK call state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebState {
    /// Call object created.
    New,
    /// Outbound invite requested over the socket.
    Requesting,
    /// 100 Trying received.
    Trying,
    /// Call being recovered after a socket reconnect.
    Recovering,
    /// Ringing (either direction).
    Ringing,
    /// Local answer in progress.
    Answering,
    /// Early media (183) on an outbound call.
    Early,
    /// Connected.
    Active,
    /// Held locally.
    Held,
    /// Hangup in progress or received; `cause`/`sipCode` are set.
    Hangup,
    /// Call object destroyed.
    Destroy,
    /// Call purged when the session went away.
    Purge,
}

const NAMES: [(&str, WebState); 12] = [
    ("new", WebState::New),
    ("requesting", WebState::Requesting),
    ("trying", WebState::Trying),
    ("recovering", WebState::Recovering),
    ("ringing", WebState::Ringing),
    ("answering", WebState::Answering),
    ("early", WebState::Early),
    ("active", WebState::Active),
    ("held", WebState::Held),
    ("hangup", WebState::Hangup),
    ("destroy", WebState::Destroy),
    ("purge", WebState::Purge),
];

impl WebState {
    /// All 12 values, in the SDK's order.
    pub const ALL: [WebState; 12] = [
        WebState::New,
        WebState::Requesting,
        WebState::Trying,
        WebState::Recovering,
        WebState::Ringing,
        WebState::Answering,
        WebState::Early,
        WebState::Active,
        WebState::Held,
        WebState::Hangup,
        WebState::Destroy,
        WebState::Purge,
    ];

    /// The 4 states the web app tracks today (spec §2.1).
    pub const APP_STATES: [WebState; 4] = [
        WebState::Requesting,
        WebState::Ringing,
        WebState::Active,
        WebState::Destroy,
    ];

    /// The SDK's spelling, e.g. `ringing`.
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(n, _)| n)
    }

    fn meaning(self) -> Meaning {
        match self {
            WebState::New | WebState::Trying | WebState::Answering => Meaning::Nothing,
            WebState::Requesting => Meaning::Dialing(Trigger::UserDialsWeb),
            WebState::Recovering => Meaning::Reconnecting,
            WebState::Ringing | WebState::Early => Meaning::Ringing,
            WebState::Active => Meaning::Active,
            WebState::Held => Meaning::Held,
            // `hangup` carries the cause; `destroy`/`purge` after it change nothing because the
            // call is already terminal, and stand in for it when it was missed.
            WebState::Hangup | WebState::Destroy | WebState::Purge => Meaning::Done,
        }
    }
}

impl fmt::Display for WebState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebState {
    type Err = UnknownSdkState;

    /// Parses the SDK's spelling in any case (`ringing`, `RINGING`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        lookup(Platform::Web, s, &NAMES)
    }
}

/// The canonical move for JS SDK state `state`; `cause` is the call's
/// `cause`/`causeCode`/`sipCode`/`sipReason` when it ends.
pub fn map(
    state: WebState,
    direction: Direction,
    prev: CallState,
    cause: Option<&TerminationCause>,
) -> SdkMapping {
    let meaning = match (state, direction) {
        // Early media only exists on the calling side.
        (WebState::Early, Direction::Inbound) => Meaning::Nothing,
        _ => state.meaning(),
    };
    resolve(meaning, direction, prev, cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_states_cover_an_outbound_call() {
        let mut prev = CallState::Idle;
        for (state, expected) in [
            (WebState::Requesting, CallState::Requesting),
            (WebState::Ringing, CallState::RingingOutbound),
            (WebState::Active, CallState::Active),
            (WebState::Destroy, CallState::Ended),
        ] {
            prev = map(state, Direction::Outbound, prev, None)
                .target()
                .unwrap();
            assert_eq!(prev, expected);
        }
        assert_eq!(
            map(WebState::Purge, Direction::Outbound, prev, None),
            SdkMapping::NoChange
        );
    }

    #[test]
    fn names_parse_in_any_case_and_unknown_ones_fail() {
        for state in WebState::ALL {
            assert_eq!(state.as_str().to_uppercase().parse::<WebState>(), Ok(state));
        }
        assert_eq!(
            "connecting".parse::<WebState>().unwrap_err().platform,
            Platform::Web
        );
    }
}
