//! One call on one device: its direction, current state and timestamped history, moved only by
//! the transition table.

use crate::state::{CallState, Direction};
use crate::table::{row_for, TransitionRow};
use crate::time::Timestamp;
use crate::trigger::{InvalidTrigger, Trigger};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One state change that happened, with the trigger that caused it and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transition {
    /// State before.
    pub from: CallState,
    /// State after.
    pub to: CallState,
    /// What caused it.
    pub trigger: Trigger,
    /// When it happened (driver-supplied).
    pub at: Timestamp,
}

/// Why a trigger was refused. The call is unchanged in every case.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TransitionError {
    /// The table has no row for this trigger in this state (or not for this call's direction).
    #[error("illegal transition: {trigger} is not allowed in {state}")]
    Illegal {
        /// The state the call is in.
        state: CallState,
        /// The refused trigger.
        trigger: Trigger,
    },
    /// The call is already over; a late SIP message or duplicate report. Harmless: log quietly.
    #[error("late event {trigger} on a call already {state}")]
    LateEventOnTerminal {
        /// The terminal state the call is in.
        state: CallState,
        /// The ignored trigger.
        trigger: Trigger,
    },
    /// The trigger carries data that cannot be right (e.g. SIP failure code 200).
    #[error("invalid trigger {trigger}: {reason}")]
    InvalidTrigger {
        /// The refused trigger.
        trigger: Trigger,
        /// What is wrong with it.
        reason: InvalidTrigger,
    },
}

impl TransitionError {
    /// Whether this is only a late event on a finished call (log at debug, not warn).
    pub fn is_late(&self) -> bool {
        matches!(self, TransitionError::LateEventOnTerminal { .. })
    }

    /// The state the call was in when the trigger was refused.
    pub fn state(&self) -> Option<CallState> {
        match self {
            TransitionError::Illegal { state, .. }
            | TransitionError::LateEventOnTerminal { state, .. } => Some(*state),
            TransitionError::InvalidTrigger { .. } => None,
        }
    }
}

/// A call as one device sees it. Only [`Call::apply`] changes it, so its state is always the end
/// of a legal path through the table starting at IDLE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CallRecord")]
pub struct Call {
    direction: Direction,
    state: CallState,
    started_at: Timestamp,
    history: Vec<Transition>,
}

/// The persisted form of a [`Call`], checked on the way in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRecord {
    direction: Direction,
    state: CallState,
    started_at: Timestamp,
    history: Vec<Transition>,
}

/// A persisted or reported history that does not replay to its claimed state.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReplayError {
    /// A step of the history is refused by the table.
    #[error("history step {index} is refused: {source}")]
    Refused {
        /// Position in the history.
        index: usize,
        /// Why the table refused it.
        source: TransitionError,
    },
    /// A step records a different from/to than the table gives for its trigger.
    #[error("history step {index} records {recorded_from} -> {recorded_to} but the table gives {actual_from} -> {actual_to}")]
    Mismatch {
        /// Position in the history.
        index: usize,
        /// The recorded `from`.
        recorded_from: CallState,
        /// The recorded `to`.
        recorded_to: CallState,
        /// The state the replay was in.
        actual_from: CallState,
        /// The state the table moves it to.
        actual_to: CallState,
    },
    /// The history ends in a different state from the one claimed.
    #[error("history ends in {replayed} but the call claims {claimed}")]
    WrongFinalState {
        /// State the replay reached.
        replayed: CallState,
        /// State the record claimed.
        claimed: CallState,
    },
}

impl TryFrom<CallRecord> for Call {
    type Error = ReplayError;

    fn try_from(record: CallRecord) -> Result<Self, Self::Error> {
        let call = Call::replay(record.direction, record.started_at, &record.history)?;
        if call.state != record.state {
            return Err(ReplayError::WrongFinalState {
                replayed: call.state,
                claimed: record.state,
            });
        }
        Ok(call)
    }
}

impl Call {
    /// A new call in IDLE.
    pub fn new(direction: Direction, now: Timestamp) -> Call {
        Call {
            direction,
            state: CallState::Idle,
            started_at: now,
            history: Vec::new(),
        }
    }

    /// Inbound or outbound.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The current state.
    pub fn state(&self) -> CallState {
        self.state
    }

    /// When the call object was created.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// Every transition so far, oldest first.
    pub fn history(&self) -> &[Transition] {
        &self.history
    }

    /// When the call last changed state (its creation time if it never did).
    pub fn last_changed_at(&self) -> Timestamp {
        self.history.last().map_or(self.started_at, |t| t.at)
    }

    /// Whether the call is over.
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }

    /// Whether a device must keep this call in durable storage (see [`CallState::must_persist`]).
    pub fn must_persist(&self) -> bool {
        self.state.must_persist()
    }

    /// The table row `trigger` would take, without changing the call.
    pub fn row_for(&self, trigger: &Trigger) -> Result<&'static TransitionRow, TransitionError> {
        if let Err(reason) = trigger.validate() {
            return Err(TransitionError::InvalidTrigger {
                trigger: *trigger,
                reason,
            });
        }
        if self.state.is_terminal() {
            return Err(TransitionError::LateEventOnTerminal {
                state: self.state,
                trigger: *trigger,
            });
        }
        row_for(self.state, trigger.kind())
            .filter(|row| row.allows(self.direction))
            .ok_or(TransitionError::Illegal {
                state: self.state,
                trigger: *trigger,
            })
    }

    /// Moves the call by `trigger` at `now` and records the transition, or refuses and changes
    /// nothing.
    pub fn apply(
        &mut self,
        trigger: Trigger,
        now: Timestamp,
    ) -> Result<Transition, TransitionError> {
        let row = self.row_for(&trigger)?;
        let transition = Transition {
            from: self.state,
            to: row.to,
            trigger,
            at: now,
        };
        self.state = row.to;
        self.history.push(transition);
        Ok(transition)
    }

    /// Rebuilds a call by applying `history`'s triggers to a new call, checking that every
    /// recorded from/to matches what the table gives.
    pub fn replay(
        direction: Direction,
        started_at: Timestamp,
        history: &[Transition],
    ) -> Result<Call, ReplayError> {
        let mut call = Call::new(direction, started_at);
        for (index, step) in history.iter().enumerate() {
            let from = call.state;
            let done = call
                .apply(step.trigger, step.at)
                .map_err(|source| ReplayError::Refused { index, source })?;
            if step.from != from || step.to != done.to {
                return Err(ReplayError::Mismatch {
                    index,
                    recorded_from: step.from,
                    recorded_to: step.to,
                    actual_from: from,
                    actual_to: done.to,
                });
            }
        }
        Ok(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn an_answered_inbound_call_records_its_history() {
        let mut call = Call::new(Direction::Inbound, at(0));
        call.apply(Trigger::IncomingCall, at(10)).unwrap();
        assert!(call.must_persist());
        let t = call.apply(Trigger::LocalAnswer, at(20)).unwrap();
        assert_eq!(
            (t.from, t.to),
            (CallState::RingingInbound, CallState::Active)
        );
        call.apply(Trigger::Hangup, at(30)).unwrap();
        assert_eq!(call.state(), CallState::Ended);
        assert_eq!(call.history().len(), 3);
        assert_eq!(call.last_changed_at(), at(30));
    }

    #[test]
    fn late_events_and_illegal_events_are_told_apart_and_change_nothing() {
        let mut call = Call::new(Direction::Inbound, at(0));
        call.apply(Trigger::IncomingCall, at(1)).unwrap();
        call.apply(Trigger::LocalAnswer, at(2)).unwrap();
        call.apply(Trigger::Hold, at(3)).unwrap();
        let before = call.clone();
        // Spec T13: HELD -> RINGING is rejected.
        assert_eq!(
            call.apply(Trigger::IncomingCall, at(4)),
            Err(TransitionError::Illegal {
                state: CallState::OnHold,
                trigger: Trigger::IncomingCall
            })
        );
        assert_eq!(call, before);
        call.apply(Trigger::Hangup, at(5)).unwrap();
        // Spec T14: DONE -> RECONNECTING is a late event.
        let err = call.apply(Trigger::NetworkChange, at(6)).unwrap_err();
        assert!(err.is_late());
        assert_eq!(call.state(), CallState::Ended);
    }

    #[test]
    fn direction_is_enforced_on_the_first_step() {
        let mut out = Call::new(Direction::Outbound, at(0));
        assert!(matches!(
            out.apply(Trigger::IncomingCall, at(1)),
            Err(TransitionError::Illegal { .. })
        ));
        let mut inbound = Call::new(Direction::Inbound, at(0));
        assert!(inbound.apply(Trigger::UserDialsMobile, at(1)).is_err());
    }

    #[test]
    fn invalid_sip_code_is_refused_without_change() {
        let mut call = Call::new(Direction::Outbound, at(0));
        call.apply(Trigger::UserDialsMobile, at(1)).unwrap();
        let err = call
            .apply(Trigger::SipFailure { code: 200 }, at(2))
            .unwrap_err();
        assert!(matches!(err, TransitionError::InvalidTrigger { .. }));
        assert_eq!(call.state(), CallState::Connecting);
    }

    #[test]
    fn persisted_calls_round_trip_and_tampered_ones_are_refused() {
        let mut call = Call::new(Direction::Outbound, at(5));
        call.apply(Trigger::UserDialsWeb, at(6)).unwrap();
        call.apply(Trigger::SipRinging, at(7)).unwrap();
        let json = serde_json::to_value(&call).unwrap();
        assert_eq!(json["state"], "RINGING_OUTBOUND");
        let back: Call = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, call);

        let mut wrong_state = json.clone();
        wrong_state["state"] = "ACTIVE".into();
        assert!(serde_json::from_value::<Call>(wrong_state).is_err());

        let mut wrong_step = json;
        wrong_step["history"][1]["to"] = "ACTIVE".into();
        assert!(serde_json::from_value::<Call>(wrong_step).is_err());
    }
}
