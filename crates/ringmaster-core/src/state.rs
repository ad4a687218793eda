//! The canonical call states (spec §1.1), call direction and client platform.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// One of the 15 canonical call states of spec §1.1 (IDLE plus the 14 call states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallState {
    /// No call exists yet.
    Idle,
    /// Outbound call initiated over the web signalling socket.
    Requesting,
    /// Outbound SIP INVITE sent by a mobile SDK, awaiting a provisional response.
    Connecting,
    /// Incoming call; this device is ringing.
    RingingInbound,
    /// Outbound call; the callee is ringing.
    RingingOutbound,
    /// Connected, audio flowing.
    Active,
    /// The local user put the call on hold.
    OnHold,
    /// The remote party put the call on hold.
    RemoteHold,
    /// Network trouble; ICE restart in progress.
    Reconnecting,
    /// Media renegotiation in progress.
    Renegotiating,
    /// Local hangup sent; waiting for it to be confirmed and cleaned up.
    Disconnecting,
    /// The call completed normally.
    Ended,
    /// Call setup or the connection failed.
    Failed,
    /// An inbound call nobody answered (or an outbound one the callee did not answer).
    Missed,
    /// The network was lost for good; cleanup pending.
    Dropped,
}

impl CallState {
    /// Every state, in the spec's order.
    pub const ALL: [CallState; 15] = [
        CallState::Idle,
        CallState::Requesting,
        CallState::Connecting,
        CallState::RingingInbound,
        CallState::RingingOutbound,
        CallState::Active,
        CallState::OnHold,
        CallState::RemoteHold,
        CallState::Reconnecting,
        CallState::Renegotiating,
        CallState::Disconnecting,
        CallState::Ended,
        CallState::Failed,
        CallState::Missed,
        CallState::Dropped,
    ];

    /// The spec's spelling, e.g. `RINGING_INBOUND`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallState::Idle => "IDLE",
            CallState::Requesting => "REQUESTING",
            CallState::Connecting => "CONNECTING",
            CallState::RingingInbound => "RINGING_INBOUND",
            CallState::RingingOutbound => "RINGING_OUTBOUND",
            CallState::Active => "ACTIVE",
            CallState::OnHold => "ON_HOLD",
            CallState::RemoteHold => "REMOTE_HOLD",
            CallState::Reconnecting => "RECONNECTING",
            CallState::Renegotiating => "RENEGOTIATING",
            CallState::Disconnecting => "DISCONNECTING",
            CallState::Ended => "ENDED",
            CallState::Failed => "FAILED",
            CallState::Missed => "MISSED",
            CallState::Dropped => "DROPPED",
        }
    }

    /// Whether the call is over and absorbs every further event: ENDED, FAILED, MISSED.
    ///
    /// DISCONNECTING and DROPPED are not terminal: the spec moves both on to ENDED once cleanup
    /// is done, so they still accept events.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            CallState::Ended | CallState::Failed | CallState::Missed
        )
    }

    /// Whether a device must keep this state in durable storage so a crash or reboot can be
    /// detected and reported on restart.
    ///
    /// - RINGING_INBOUND: spec §3.4/§9.5, so a crash while ringing becomes a missed call.
    /// - ACTIVE, ON_HOLD, REMOTE_HOLD, RECONNECTING, RENEGOTIATING: a call is up (spec §3.1–3.3,
    ///   T1/T4), so a crash leaves an orphan that must be reported ended.
    /// - DISCONNECTING, DROPPED: the spec clears persistence only on reaching ENDED ("cleanup,
    ///   clear persistence"), so a crash mid-cleanup must still be finished on restart.
    /// - IDLE, REQUESTING, CONNECTING, RINGING_OUTBOUND: not persisted; spec T3 ("CONNECTING
    ///   not persisted") and the outbound row persists only on ACTIVE.
    /// - Terminal states: persistence is cleared.
    pub const fn must_persist(self) -> bool {
        matches!(
            self,
            CallState::RingingInbound
                | CallState::Active
                | CallState::OnHold
                | CallState::RemoteHold
                | CallState::Reconnecting
                | CallState::Renegotiating
                | CallState::Disconnecting
                | CallState::Dropped
        )
    }

    /// The direction a call must have to be in this state, if the state implies one.
    pub const fn implied_direction(self) -> Option<Direction> {
        match self {
            CallState::RingingInbound => Some(Direction::Inbound),
            CallState::Requesting | CallState::Connecting | CallState::RingingOutbound => {
                Some(Direction::Outbound)
            }
            _ => None,
        }
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the 15 canonical states.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("unknown call state {0:?}")]
pub struct UnknownCallState(pub String);

impl FromStr for CallState {
    type Err = UnknownCallState;

    /// Parses the spec's SCREAMING_SNAKE_CASE spelling (exact match).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CallState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownCallState(truncated(s)))
    }
}

/// Which side placed the call, seen from the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Someone called this user.
    Inbound,
    /// This user placed the call.
    Outbound,
}

impl Direction {
    /// Both directions.
    pub const ALL: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

    /// Lower-case name: `inbound` or `outbound`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not `inbound` or `outbound`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("unknown call direction {0:?} (expected inbound or outbound)")]
pub struct UnknownDirection(pub String);

impl FromStr for Direction {
    type Err = UnknownDirection;

    /// Parses `inbound` or `outbound`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Direction::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownDirection(truncated(s)))
    }
}

/// A client platform that runs a Telnyx SDK and the device agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// iPhone / iPad app (Telnyx iOS SDK, CallKit).
    Ios,
    /// Android app (Telnyx Android SDK).
    Android,
    /// Browser (Telnyx JS SDK).
    Web,
}

impl Platform {
    /// Every platform.
    pub const ALL: [Platform; 3] = [Platform::Ios, Platform::Android, Platform::Web];

    /// Lower-case name: `ios`, `android` or `web`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
            Platform::Web => "web",
        }
    }

    /// Whether this is a phone/tablet platform (iOS or Android).
    pub const fn is_mobile(self) -> bool {
        matches!(self, Platform::Ios | Platform::Android)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not `ios`, `android` or `web`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("unknown platform {0:?} (expected ios, android or web)")]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;

    /// Parses `ios`, `android` or `web`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPlatform(truncated(s)))
    }
}

/// Keeps error messages bounded when the input is hostile.
pub(crate) fn truncated(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_through_text_and_json() {
        for state in CallState::ALL {
            assert_eq!(state.to_string().parse::<CallState>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(serde_json::from_str::<CallState>(&json).unwrap(), state);
        }
        assert!("ringing_inbound".parse::<CallState>().is_err());
        assert!("HELD".parse::<CallState>().is_err());
    }

    #[test]
    fn platform_and_direction_parse_case_insensitively_with_typed_errors() {
        assert_eq!("iOS".parse::<Platform>(), Ok(Platform::Ios));
        assert_eq!("WEB".parse::<Platform>(), Ok(Platform::Web));
        assert_eq!(
            "blackberry".parse::<Platform>(),
            Err(UnknownPlatform("blackberry".into()))
        );
        assert_eq!(
            serde_json::to_string(&Platform::Android).unwrap(),
            "\"android\""
        );
        assert_eq!("Outbound".parse::<Direction>(), Ok(Direction::Outbound));
        assert!("sideways".parse::<Direction>().is_err());
    }

    #[test]
    fn only_ended_failed_missed_are_terminal() {
        let terminal: Vec<_> = CallState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            [CallState::Ended, CallState::Failed, CallState::Missed]
        );
    }

    #[test]
    fn ringing_inbound_and_connected_states_persist_but_connecting_does_not() {
        assert!(CallState::RingingInbound.must_persist());
        assert!(CallState::Active.must_persist());
        assert!(CallState::RemoteHold.must_persist());
        assert!(!CallState::Connecting.must_persist());
        assert!(!CallState::Requesting.must_persist());
        assert!(!CallState::Ended.must_persist());
    }

    #[test]
    fn hostile_names_are_truncated_in_errors() {
        let long = "X".repeat(10_000);
        let err = long.parse::<CallState>().unwrap_err();
        assert!(err.0.chars().count() <= 65);
    }
}
