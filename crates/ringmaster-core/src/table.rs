//! The transition table: the single source of truth for which state changes are legal.
//!
//! Every row of spec §1.3 is here (the spec's "(any) → FAILED" row expanded to one row per
//! non-terminal state, and rows naming two triggers split into one row per trigger), plus the
//! rows the spec implies but omits, each saying why.

use crate::state::{CallState, Direction, Platform};
use crate::trigger::{Trigger, TriggerKind};
use serde::Serialize;

/// Where a row comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A row of spec §1.3.
    Spec,
    /// A row the spec implies but does not list.
    Implied {
        /// One line saying why the row must exist.
        why: &'static str,
    },
}

impl Source {
    /// `spec` or `implied`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Spec => "spec",
            Source::Implied { .. } => "implied",
        }
    }
}

/// One legal transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TransitionRow {
    /// State the call is in.
    pub from: CallState,
    /// State the call moves to.
    pub to: CallState,
    /// What causes it.
    pub trigger: TriggerKind,
    /// Platforms that support the transition (spec's "Platform Support" column).
    pub platforms: &'static [Platform],
    /// Only calls of this direction may take the row; `None` means both.
    pub direction: Option<Direction>,
    /// What happens around the transition (spec's "Side Effects" column).
    pub side_effects: &'static str,
    /// Spec row or implied row.
    pub source: Source,
}

use CallState as S;
use Platform::{Android, Ios, Web};
use TriggerKind as T;

const ALL: &[Platform] = &[Ios, Android, Web];
const MOBILE: &[Platform] = &[Ios, Android];
const WEB: &[Platform] = &[Web];
const ANDROID: &[Platform] = &[Android];

const fn spec(
    from: CallState,
    trigger: TriggerKind,
    to: CallState,
    platforms: &'static [Platform],
    side_effects: &'static str,
) -> TransitionRow {
    TransitionRow {
        from,
        to,
        trigger,
        platforms,
        direction: None,
        side_effects,
        source: Source::Spec,
    }
}

const fn implied(
    from: CallState,
    trigger: TriggerKind,
    to: CallState,
    platforms: &'static [Platform],
    side_effects: &'static str,
    why: &'static str,
) -> TransitionRow {
    TransitionRow {
        from,
        to,
        trigger,
        platforms,
        direction: None,
        side_effects,
        source: Source::Implied { why },
    }
}

const fn only(direction: Direction, row: TransitionRow) -> TransitionRow {
    TransitionRow {
        direction: Some(direction),
        ..row
    }
}

const WHY_NO_PROVISIONAL: &str =
    "A callee may answer with 200 OK and no 180/183 before it; provisional responses are optional (RFC 3261).";
const WHY_UNREACHABLE: &str =
    "Before anything rings, 408/480 means the callee could not be reached: a setup failure, not a missed call.";
const WHY_CANCEL_EARLY: &str =
    "The caller may cancel before the callee rings (SIP CANCEL); nothing failed.";
const WHY_LOCAL_HANGUP: &str =
    "A local hangup waits in DISCONNECTING until confirmed, so a crash mid-hangup is seen (spec §2.3.5).";
const FORCE_CLEANUP: &str = "Force cleanup";
const SEND_HANGUP: &str = "Send SIP BYE/CANCEL, stop media";

/// Every legal transition. `Call::apply`, the server's report validation, the SDK maps' tests and
/// `ringmaster states` all read this table and nothing else.
#[rustfmt::skip]
pub static TRANSITIONS: &[TransitionRow] = &[
    // ---- spec §1.3, in the spec's order ----
    only(Direction::Outbound, spec(S::Idle, T::UserDialsWeb, S::Requesting, WEB, "SIP INVITE via WebSocket")),
    only(Direction::Outbound, spec(S::Idle, T::UserDialsMobile, S::Connecting, MOBILE, "SIP INVITE via SDK")),
    only(Direction::Inbound, spec(S::Idle, T::IncomingCall, S::RingingInbound, ALL, "Show call UI, play ringtone")),
    spec(S::Requesting, T::SipRinging, S::RingingOutbound, WEB, "Show \"calling...\" UI"),
    spec(S::Connecting, T::SipRinging, S::RingingOutbound, MOBILE, "Show \"calling...\" UI"),
    spec(S::Connecting, T::SipFailure, S::Failed, ALL, "Show error, cleanup"),
    spec(S::RingingInbound, T::LocalAnswer, S::Active, ALL, "Backend bridges, audio starts, dismiss other devices"),
    spec(S::RingingInbound, T::RingTimeout, S::Missed, ALL, "Backend routes to voicemail"),
    spec(S::RingingInbound, T::CallerHangup, S::Missed, ALL, "Stop ringing, record missed call"),
    spec(S::RingingInbound, T::Decline, S::Ended, ALL, "Send SIP 486/603"),
    spec(S::RingingOutbound, T::RemoteAnswer, S::Active, ALL, "Audio starts, persist call state"),
    spec(S::RingingOutbound, T::SipFailure, S::Failed, ALL, "Show \"call declined\""),
    spec(S::RingingOutbound, T::RingTimeout, S::Missed, ALL, "Show \"no answer\""),
    spec(S::RingingOutbound, T::NoAnswer, S::Missed, ALL, "Show \"no answer\""),
    spec(S::Active, T::Hold, S::OnHold, MOBILE, "SIP re-INVITE (sendonly)"),
    spec(S::OnHold, T::Resume, S::Active, MOBILE, "SIP re-INVITE (sendrecv)"),
    spec(S::Active, T::RemoteHold, S::RemoteHold, MOBILE, "Show \"on hold\" UI"),
    spec(S::Active, T::NetworkChange, S::Reconnecting, MOBILE, "ICE restart attempt"),
    spec(S::Active, T::MediaUpdateStarted, S::Renegotiating, ANDROID, "SIP re-INVITE"),
    spec(S::Active, T::Hangup, S::Ended, ALL, "SIP BYE, cleanup, clear persistence"),
    spec(S::Active, T::NetworkLost, S::Dropped, MOBILE, "Show error, attempt recovery"),
    spec(S::Reconnecting, T::NetworkRestored, S::Active, MOBILE, "Resume audio"),
    spec(S::Reconnecting, T::RecoveryTimeout, S::Dropped, MOBILE, "Give up, end call"),
    spec(S::Renegotiating, T::MediaUpdateFinished, S::Active, ANDROID, "Resume normal state"),
    spec(S::Dropped, T::CleanupDone, S::Ended, MOBILE, "Clear persistence"),
    // The spec's "(any) → FAILED on SDK internal error", one row per non-terminal state.
    spec(S::Idle, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::Requesting, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::Connecting, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::RingingInbound, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::RingingOutbound, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::Active, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::OnHold, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::RemoteHold, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::Reconnecting, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::Renegotiating, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::Disconnecting, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    spec(S::Dropped, T::InternalError, S::Failed, ANDROID, FORCE_CLEANUP),
    // ---- implied by the spec ----
    implied(S::Requesting, T::SipFailure, S::Failed, WEB, "Show error, cleanup",
        "The web request can be refused with a SIP error exactly like CONNECTING; the spec lists only CONNECTING."),
    implied(S::Requesting, T::NoAnswer, S::Failed, WEB, "Show error, cleanup", WHY_UNREACHABLE),
    implied(S::Connecting, T::NoAnswer, S::Failed, MOBILE, "Show error, cleanup", WHY_UNREACHABLE),
    implied(S::Requesting, T::RemoteAnswer, S::Active, WEB, "Audio starts", WHY_NO_PROVISIONAL),
    implied(S::Connecting, T::RemoteAnswer, S::Active, MOBILE, "Audio starts, persist call state", WHY_NO_PROVISIONAL),
    implied(S::Requesting, T::Hangup, S::Ended, WEB, "Send SIP CANCEL, cleanup", WHY_CANCEL_EARLY),
    implied(S::Connecting, T::Hangup, S::Ended, MOBILE, "Send SIP CANCEL, cleanup", WHY_CANCEL_EARLY),
    implied(S::RingingOutbound, T::Hangup, S::Ended, ALL, "Send SIP CANCEL, cleanup",
        "The caller may give up while the callee rings; the spec has no row for it."),
    only(Direction::Inbound, implied(S::Idle, T::CallerHangup, S::Missed, ALL, "Record missed call",
        "The caller can hang up before this device rings (Telnyx \"Missed call!\" push); it is still missed.")),
    only(Direction::Inbound, implied(S::Idle, T::Dismissed, S::Ended, ALL, "Drop the pending call, no missed call",
        "The call can be answered elsewhere before this device rings (Telnyx \"Answered Elsewhere\" push).")),
    implied(S::RingingInbound, T::Dismissed, S::Ended, ALL, "Stop ringing, no missed call",
        "Answered or declined on another device, or the user is busy: dismissed, not missed (design: dismissal)."),
    implied(S::RemoteHold, T::RemoteResume, S::Active, MOBILE, "Hide \"on hold\" UI",
        "The spec's diagram has \"remote resume\" back to ACTIVE but the table omits the row."),
    implied(S::OnHold, T::Hangup, S::Ended, MOBILE, "SIP BYE, cleanup, clear persistence",
        "Either side may hang up a call the user holds."),
    implied(S::RemoteHold, T::Hangup, S::Ended, MOBILE, "SIP BYE, cleanup, clear persistence",
        "Either side may hang up a call the remote holds."),
    implied(S::Reconnecting, T::Hangup, S::Ended, MOBILE, "SIP BYE, cleanup, clear persistence",
        "The user may give up, or the remote hang up, while ICE restarts."),
    implied(S::Renegotiating, T::Hangup, S::Ended, ANDROID, "SIP BYE, cleanup, clear persistence",
        "Either side may hang up during a media update."),
    implied(S::OnHold, T::NetworkChange, S::Reconnecting, MOBILE, "ICE restart attempt",
        "The SDKs restart ICE on held calls too; the network does not wait for a resume."),
    implied(S::RemoteHold, T::NetworkChange, S::Reconnecting, MOBILE, "ICE restart attempt",
        "The SDKs restart ICE on held calls too; the network does not wait for a resume."),
    implied(S::OnHold, T::NetworkLost, S::Dropped, MOBILE, "Show error, attempt recovery",
        "The network can be lost for good while the call is held."),
    implied(S::RemoteHold, T::NetworkLost, S::Dropped, MOBILE, "Show error, attempt recovery",
        "The network can be lost for good while the call is held."),
    implied(S::Requesting, T::HangupRequested, S::Disconnecting, WEB, SEND_HANGUP, WHY_LOCAL_HANGUP),
    implied(S::Connecting, T::HangupRequested, S::Disconnecting, MOBILE, SEND_HANGUP, WHY_LOCAL_HANGUP),
    implied(S::RingingOutbound, T::HangupRequested, S::Disconnecting, ALL, SEND_HANGUP, WHY_LOCAL_HANGUP),
    implied(S::Active, T::HangupRequested, S::Disconnecting, ALL, SEND_HANGUP, WHY_LOCAL_HANGUP),
    implied(S::OnHold, T::HangupRequested, S::Disconnecting, MOBILE, SEND_HANGUP, WHY_LOCAL_HANGUP),
    implied(S::RemoteHold, T::HangupRequested, S::Disconnecting, MOBILE, SEND_HANGUP, WHY_LOCAL_HANGUP),
    implied(S::Reconnecting, T::HangupRequested, S::Disconnecting, MOBILE, SEND_HANGUP, WHY_LOCAL_HANGUP),
    implied(S::Renegotiating, T::HangupRequested, S::Disconnecting, ANDROID, SEND_HANGUP, WHY_LOCAL_HANGUP),
    implied(S::Disconnecting, T::CleanupDone, S::Ended, ALL, "Clear persistence",
        "DISCONNECTING must end once the hangup is confirmed; the spec lists it as terminal but gives no exit."),
];

/// The row `trigger` takes from `from`, if any, ignoring the call's direction.
pub fn row_for(from: CallState, trigger: TriggerKind) -> Option<&'static TransitionRow> {
    TRANSITIONS
        .iter()
        .find(|row| row.from == from && row.trigger == trigger)
}

/// The state `trigger` moves a call in `from` to, if the table allows it.
pub fn next_state(from: CallState, trigger: &Trigger) -> Option<CallState> {
    row_for(from, trigger.kind()).map(|row| row.to)
}

/// Whether some row moves `from` to `to` (any trigger, any direction). The server validates a
/// device's "from X to Y" report with this.
pub fn is_legal(from: CallState, to: CallState) -> bool {
    rows_between(from, to).next().is_some()
}

/// Whether some row moves `from` to `to` for a call of `direction`.
pub fn is_legal_for(direction: Direction, from: CallState, to: CallState) -> bool {
    rows_between(from, to).any(|row| row.allows(direction))
}

/// Every row from `from` to `to`.
pub fn rows_between(
    from: CallState,
    to: CallState,
) -> impl Iterator<Item = &'static TransitionRow> {
    TRANSITIONS
        .iter()
        .filter(move |row| row.from == from && row.to == to)
}

/// Every row leaving `from`.
pub fn rows_from(from: CallState) -> impl Iterator<Item = &'static TransitionRow> {
    TRANSITIONS.iter().filter(move |row| row.from == from)
}

impl TransitionRow {
    /// Whether a call of `direction` may take this row.
    pub fn allows(&self, direction: Direction) -> bool {
        self.direction.is_none_or(|only| only == direction)
            && self.to.implied_direction().is_none_or(|d| d == direction)
            && self.from.implied_direction().is_none_or(|d| d == direction)
    }

    /// The one-line reason for an implied row, `None` for a spec row.
    pub fn why(&self) -> Option<&'static str> {
        match self.source {
            Source::Spec => None,
            Source::Implied { why } => Some(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_state_has_two_rows_for_one_trigger() {
        let mut seen = HashSet::new();
        for row in TRANSITIONS {
            assert!(
                seen.insert((row.from, row.trigger)),
                "duplicate row {} --{}-->",
                row.from,
                row.trigger
            );
        }
    }

    #[test]
    fn terminal_states_have_no_outgoing_rows_and_rows_change_state() {
        for row in TRANSITIONS {
            assert!(!row.from.is_terminal(), "{} has an exit", row.from);
            assert_ne!(row.from, row.to);
            assert!(!row.platforms.is_empty());
            if let Some(why) = row.why() {
                assert!(!why.is_empty() && !why.contains('\n'), "bad why on {row:?}");
            }
        }
    }

    #[test]
    fn server_style_lookups_agree_with_the_rows() {
        assert!(is_legal(S::Active, S::OnHold));
        assert!(!is_legal(S::OnHold, S::RingingInbound)); // spec T13
        assert!(!is_legal(S::Ended, S::Reconnecting)); // spec T14
        assert_eq!(
            next_state(S::Connecting, &Trigger::SipFailure { code: 503 }),
            Some(S::Failed)
        );
        assert!(is_legal_for(Direction::Inbound, S::Idle, S::RingingInbound));
        assert!(!is_legal_for(
            Direction::Outbound,
            S::Idle,
            S::RingingInbound
        ));
        assert!(!is_legal_for(Direction::Outbound, S::Idle, S::Missed));
        assert_eq!(rows_between(S::RingingInbound, S::Missed).count(), 2);
    }
}
