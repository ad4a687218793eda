//! The canonical call machine behind the FFI: the states, the transition table, one call moved
//! by `apply`, and the Telnyx SDK state maps. The same table the server validates reports with.

use crate::error::{guard, MachineError};
use ringmaster_core::sdk::{SdkMapping, TerminationCause};
use ringmaster_core::{table, Call, CallState, Direction, Platform, Timestamp, Transition};
use ringmaster_core::{Trigger, TriggerKind};
use ringmaster_device::SdkState;
use std::sync::{Arc, Mutex, MutexGuard};

/// One legal transition of the table.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct TransitionRow {
    /// State the call is in.
    pub from: CallState,
    /// State the call moves to.
    pub to: CallState,
    /// What causes it.
    pub trigger: TriggerKind,
    /// Platforms that support it (spec's "Platform Support" column).
    pub platforms: Vec<Platform>,
    /// Only calls of this direction may take the row; `None` means both.
    pub direction: Option<Direction>,
    /// What happens around the transition (spec's "Side Effects" column).
    pub side_effects: String,
    /// For a row the spec implies but does not list: why it must exist. `None` for spec rows.
    pub implied_because: Option<String>,
}

impl From<&table::TransitionRow> for TransitionRow {
    fn from(row: &table::TransitionRow) -> Self {
        TransitionRow {
            from: row.from,
            to: row.to,
            trigger: row.trigger,
            platforms: row.platforms.to_vec(),
            direction: row.direction,
            side_effects: row.side_effects.to_owned(),
            implied_because: row.why().map(str::to_owned),
        }
    }
}

/// Every canonical state, in the spec's order.
#[uniffi::export]
pub fn call_states() -> Vec<CallState> {
    CallState::ALL.to_vec()
}

/// The spec's spelling of a state, e.g. `RINGING_INBOUND`.
#[uniffi::export]
pub fn call_state_name(state: CallState) -> String {
    state.as_str().to_owned()
}

/// Parses the spec's spelling of a state (exact match).
#[uniffi::export]
pub fn parse_call_state(name: String) -> Result<CallState, MachineError> {
    name.parse().map_err(
        |e: ringmaster_core::state::UnknownCallState| MachineError::UnknownName {
            detail: e.to_string(),
        },
    )
}

/// Whether the call is over and absorbs every further event (ENDED, FAILED, MISSED).
#[uniffi::export]
pub fn is_terminal(state: CallState) -> bool {
    state.is_terminal()
}

/// Whether a device must keep a call in this state in durable storage.
#[uniffi::export]
pub fn must_persist(state: CallState) -> bool {
    state.must_persist()
}

/// Every trigger kind, in declaration order.
#[uniffi::export]
pub fn trigger_kinds() -> Vec<TriggerKind> {
    TriggerKind::ALL.to_vec()
}

/// The snake_case name of a trigger kind, e.g. `sip_failure`.
#[uniffi::export]
pub fn trigger_kind_name(kind: TriggerKind) -> String {
    kind.as_str().to_owned()
}

/// The field-less kind of a trigger.
#[uniffi::export]
pub fn trigger_kind(trigger: Trigger) -> TriggerKind {
    trigger.kind()
}

/// Every legal transition: the table `CallMachine.apply` and the server both follow.
#[uniffi::export]
pub fn transitions() -> Vec<TransitionRow> {
    table::TRANSITIONS.iter().map(TransitionRow::from).collect()
}

/// The state `trigger` moves a call in `from` to, if the table allows it (either direction).
#[uniffi::export]
pub fn next_state(from: CallState, trigger: Trigger) -> Option<CallState> {
    table::next_state(from, &trigger)
}

/// Whether some row moves `from` to `to` (any trigger, any direction).
#[uniffi::export]
pub fn is_legal(from: CallState, to: CallState) -> bool {
    table::is_legal(from, to)
}

/// The canonical move for an SDK state on a call of `direction` now in `prev`; `cause` is the
/// SDK's termination reason when the call is done.
#[uniffi::export]
pub fn map_sdk_state(
    state: SdkState,
    direction: Direction,
    prev: CallState,
    cause: Option<TerminationCause>,
) -> SdkMapping {
    state.map(direction, prev, cause.as_ref())
}

/// Parses an SDK's own spelling of its state on `platform` (any case, `DONE(reason: …)`
/// accepted).
#[uniffi::export]
pub fn parse_sdk_state(platform: Platform, name: String) -> Result<SdkState, MachineError> {
    SdkState::parse(platform, &name).map_err(|e| MachineError::UnknownName {
        detail: e.to_string(),
    })
}

/// The SDK's own spelling of a state, e.g. `RINGING` (iOS) or `ringing` (web).
#[uniffi::export]
pub fn sdk_state_name(state: SdkState) -> String {
    match state {
        SdkState::Ios(s) => s.as_str(),
        SdkState::Android(s) => s.as_str(),
        SdkState::Web(s) => s.as_str(),
    }
    .to_owned()
}

/// Every state of `platform`'s Telnyx SDK, in the SDK's order.
#[uniffi::export]
pub fn sdk_states(platform: Platform) -> Vec<SdkState> {
    use ringmaster_core::sdk::{AndroidState, IosState, WebState};
    match platform {
        Platform::Ios => IosState::ALL.into_iter().map(SdkState::Ios).collect(),
        Platform::Android => AndroidState::ALL
            .into_iter()
            .map(SdkState::Android)
            .collect(),
        Platform::Web => WebState::ALL.into_iter().map(SdkState::Web).collect(),
    }
}

/// One call moved only by the transition table: the canonical machine on its own, for a UI that
/// tracks a call without the agent (e.g. the web console) or to check a move before making it.
#[derive(uniffi::Object)]
pub struct CallMachine {
    call: Mutex<Call>,
}

impl CallMachine {
    fn call(&self) -> MutexGuard<'_, Call> {
        // `apply` writes back only a finished working copy, so a poisoned value is consistent.
        self.call.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[uniffi::export]
impl CallMachine {
    /// A new call in IDLE.
    #[uniffi::constructor]
    pub fn new(direction: Direction, now: Timestamp) -> Arc<Self> {
        Arc::new(CallMachine {
            call: Mutex::new(Call::new(direction, now)),
        })
    }

    /// Inbound or outbound.
    pub fn direction(&self) -> Direction {
        self.call().direction()
    }

    /// The current state.
    pub fn state(&self) -> CallState {
        self.call().state()
    }

    /// Every transition so far, oldest first.
    pub fn history(&self) -> Vec<Transition> {
        self.call().history().to_vec()
    }

    /// Moves the call by `trigger` at `now`, or refuses (typed) and changes nothing.
    pub fn apply(&self, trigger: Trigger, now: Timestamp) -> Result<Transition, MachineError> {
        let mut call = self.call();
        let mut work = call.clone();
        let transition = guard::<_, MachineError>(|| Ok(work.apply(trigger, now)?))?;
        *call = work;
        Ok(transition)
    }

    /// The row `trigger` would take, without changing the call.
    pub fn check(&self, trigger: Trigger) -> Result<TransitionRow, MachineError> {
        let call = self.call();
        guard::<_, MachineError>(|| Ok(call.row_for(&trigger).map(TransitionRow::from)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Refusal;
    use ringmaster_core::sdk::IosState;

    #[test]
    fn the_machine_follows_the_table_and_refuses_illegal_moves_unchanged() {
        let m = CallMachine::new(Direction::Inbound, Timestamp::from_millis(0));
        m.apply(Trigger::IncomingCall, Timestamp::from_millis(1))
            .unwrap();
        m.apply(Trigger::LocalAnswer, Timestamp::from_millis(2))
            .unwrap();
        m.apply(Trigger::Hold, Timestamp::from_millis(3)).unwrap();
        assert_eq!(
            m.apply(Trigger::IncomingCall, Timestamp::from_millis(4)),
            Err(MachineError::Refused {
                refusal: Refusal::Illegal {
                    state: CallState::OnHold,
                    trigger: Trigger::IncomingCall
                }
            })
        );
        assert_eq!(m.state(), CallState::OnHold);
        assert_eq!(m.history().len(), 3);
        assert_eq!(
            m.check(Trigger::Resume).map(|row| row.to),
            Ok(CallState::Active)
        );
    }

    #[test]
    fn the_exported_table_is_the_core_table() {
        let rows = transitions();
        assert_eq!(rows.len(), table::TRANSITIONS.len());
        for row in &rows {
            assert!(is_legal(row.from, row.to));
        }
        assert!(rows
            .iter()
            .any(|r| r.implied_because.is_some() && r.from == CallState::RingingInbound));
        assert_eq!(call_states().len(), 15);
        assert_eq!(
            parse_call_state(call_state_name(CallState::RemoteHold)),
            Ok(CallState::RemoteHold)
        );
        assert!(matches!(
            parse_call_state("HELD".into()),
            Err(MachineError::UnknownName { .. })
        ));
    }

    #[test]
    fn sdk_states_round_trip_and_map_through_the_core() {
        for platform in Platform::ALL {
            for state in sdk_states(platform) {
                assert_eq!(parse_sdk_state(platform, sdk_state_name(state)), Ok(state));
            }
        }
        assert_eq!(
            map_sdk_state(
                SdkState::Ios(IosState::Ringing),
                Direction::Inbound,
                CallState::Idle,
                None
            ),
            SdkMapping::Move {
                to: CallState::RingingInbound,
                trigger: Trigger::IncomingCall
            }
        );
        assert!(parse_sdk_state(Platform::Web, "RENEGOTIATING".into()).is_err());
    }
}
