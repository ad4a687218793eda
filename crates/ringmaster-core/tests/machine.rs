//! The canonical machine against spec §1.3 and its structural properties.

mod support;

use proptest::prelude::*;
use ringmaster_core::table::{row_for, rows_from};
use ringmaster_core::{
    is_legal, Call, CallState, Direction, Source, Timestamp, TransitionError, Trigger, TriggerKind,
    TRANSITIONS,
};
use std::collections::HashSet;
use support::{call_in, path_to};
use CallState as S;

/// Spec §1.3 copied by hand as (from, to, trigger), independent of the table. "(any) → FAILED"
/// is checked separately.
const SPEC_ROWS: &[(CallState, CallState, TriggerKind)] = &[
    (S::Idle, S::Requesting, TriggerKind::UserDialsWeb),
    (S::Idle, S::Connecting, TriggerKind::UserDialsMobile),
    (S::Idle, S::RingingInbound, TriggerKind::IncomingCall),
    (S::Requesting, S::RingingOutbound, TriggerKind::SipRinging),
    (S::Connecting, S::RingingOutbound, TriggerKind::SipRinging),
    (S::Connecting, S::Failed, TriggerKind::SipFailure),
    (S::RingingInbound, S::Active, TriggerKind::LocalAnswer),
    (S::RingingInbound, S::Missed, TriggerKind::RingTimeout),
    (S::RingingInbound, S::Missed, TriggerKind::CallerHangup),
    (S::RingingInbound, S::Ended, TriggerKind::Decline),
    (S::RingingOutbound, S::Active, TriggerKind::RemoteAnswer),
    (S::RingingOutbound, S::Failed, TriggerKind::SipFailure),
    (S::RingingOutbound, S::Missed, TriggerKind::RingTimeout),
    (S::RingingOutbound, S::Missed, TriggerKind::NoAnswer),
    (S::Active, S::OnHold, TriggerKind::Hold),
    (S::OnHold, S::Active, TriggerKind::Resume),
    (S::Active, S::RemoteHold, TriggerKind::RemoteHold),
    (S::Active, S::Reconnecting, TriggerKind::NetworkChange),
    (S::Active, S::Renegotiating, TriggerKind::MediaUpdateStarted),
    (S::Active, S::Ended, TriggerKind::Hangup),
    (S::Active, S::Dropped, TriggerKind::NetworkLost),
    (S::Reconnecting, S::Active, TriggerKind::NetworkRestored),
    (S::Reconnecting, S::Dropped, TriggerKind::RecoveryTimeout),
    (
        S::Renegotiating,
        S::Active,
        TriggerKind::MediaUpdateFinished,
    ),
    (S::Dropped, S::Ended, TriggerKind::CleanupDone),
];

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn direction_for(from: CallState, to: CallState) -> Direction {
    from.implied_direction()
        .or(to.implied_direction())
        .unwrap_or(Direction::Inbound)
}

#[test]
fn every_spec_row_is_in_the_table_and_accepted_by_apply() {
    for &(from, to, kind) in SPEC_ROWS {
        let row = row_for(from, kind).unwrap_or_else(|| panic!("{from} --{kind}--> missing"));
        assert_eq!(row.to, to, "{from} --{kind}-->");
        assert_eq!(
            row.source,
            Source::Spec,
            "{from} --{kind}--> must be marked spec"
        );
        let direction = direction_for(from, to);
        let mut call = call_in(direction, from).expect("spec row's source state is reachable");
        let t = call.apply(kind.example(), at(9_999)).unwrap();
        assert_eq!((t.from, t.to), (from, to));
    }
}

#[test]
fn any_live_state_fails_on_internal_error() {
    for state in CallState::ALL {
        for direction in Direction::ALL {
            let Some(mut call) = call_in(direction, state) else {
                continue;
            };
            let result = call.apply(Trigger::InternalError, at(9_999));
            if state.is_terminal() {
                assert!(matches!(
                    result,
                    Err(TransitionError::LateEventOnTerminal { .. })
                ));
            } else {
                assert_eq!(result.unwrap().to, S::Failed, "{state}");
                assert_eq!(
                    row_for(state, TriggerKind::InternalError).unwrap().source,
                    Source::Spec
                );
            }
        }
    }
}

#[test]
fn every_state_trigger_pair_outside_the_table_is_refused_with_the_right_kind() {
    let mut checked = 0;
    for direction in Direction::ALL {
        for state in CallState::ALL {
            let Some(call) = call_in(direction, state) else {
                continue;
            };
            for &kind in TriggerKind::ALL {
                let mut attempt = call.clone();
                let trigger = kind.example();
                let result = attempt.apply(trigger, at(50_000));
                match row_for(state, kind).filter(|r| r.allows(direction)) {
                    Some(row) => assert_eq!(result.map(|t| t.to), Ok(row.to)),
                    None => {
                        let expected = if state.is_terminal() {
                            TransitionError::LateEventOnTerminal { state, trigger }
                        } else {
                            TransitionError::Illegal { state, trigger }
                        };
                        assert_eq!(result, Err(expected));
                        assert_eq!(attempt, call, "a refused trigger changed the call");
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500);
}

#[test]
fn state_pairs_outside_the_table_are_not_legal() {
    let pairs: HashSet<(CallState, CallState)> =
        TRANSITIONS.iter().map(|r| (r.from, r.to)).collect();
    for from in CallState::ALL {
        for to in CallState::ALL {
            assert_eq!(
                is_legal(from, to),
                pairs.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
    // Spec T13 and T14.
    assert!(!is_legal(S::OnHold, S::RingingInbound));
    assert!(!is_legal(S::Ended, S::Reconnecting));
}

#[test]
fn every_state_is_reachable_from_idle() {
    let reachable: HashSet<CallState> = Direction::ALL
        .into_iter()
        .flat_map(|d| {
            CallState::ALL
                .into_iter()
                .filter(move |&s| path_to(d, s).is_some())
        })
        .collect();
    assert_eq!(
        reachable.len(),
        15,
        "unreachable: {:?}",
        CallState::ALL
            .iter()
            .filter(|s| !reachable.contains(s))
            .collect::<Vec<_>>()
    );
}

#[test]
fn every_live_state_can_reach_a_terminal_state() {
    for state in CallState::ALL.into_iter().filter(|s| !s.is_terminal()) {
        let mut seen = HashSet::from([state]);
        let mut frontier = vec![state];
        let mut found = false;
        while let Some(s) = frontier.pop() {
            for row in rows_from(s) {
                found |= row.to.is_terminal();
                if seen.insert(row.to) {
                    frontier.push(row.to);
                }
            }
        }
        assert!(found, "{state} cannot end");
    }
}

#[test]
fn terminal_states_have_no_rows_and_every_implied_row_says_why() {
    for row in TRANSITIONS {
        assert!(!row.from.is_terminal());
        if let Source::Implied { why } = row.source {
            assert!(why.len() > 20, "implied row without a reason: {row:?}");
        }
    }
    let keys: HashSet<_> = TRANSITIONS.iter().map(|r| (r.from, r.trigger)).collect();
    assert_eq!(keys.len(), TRANSITIONS.len(), "duplicate (state, trigger)");
}

fn any_trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        9 => proptest::sample::select(TriggerKind::ALL).prop_map(|k| k.example()),
        1 => (0u16..1000).prop_map(|code| Trigger::SipFailure { code }),
    ]
}

fn any_direction() -> impl Strategy<Value = Direction> {
    proptest::sample::select(&Direction::ALL[..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No sequence of triggers escapes the table, terminal states absorb, and the history
    /// replays to the call's state (also through JSON).
    #[test]
    fn random_trigger_sequences_stay_inside_the_table(
        direction in any_direction(),
        steps in proptest::collection::vec(
            (any::<bool>(), any::<proptest::sample::Index>(), any_trigger()),
            0..40,
        ),
    ) {
        let mut call = Call::new(direction, at(0));
        let mut terminal_since: Option<usize> = None;
        for (i, (follow_table, pick, random)) in steps.iter().enumerate() {
            // Half the steps take a row the table offers, so walks get deep.
            let offered: Vec<_> = rows_from(call.state()).collect();
            let trigger = &if *follow_table && !offered.is_empty() {
                pick.get(&offered).trigger.example()
            } else {
                *random
            };
            let before = call.clone();
            match call.apply(*trigger, at(i as u64 + 1)) {
                Ok(t) => {
                    prop_assert!(terminal_since.is_none(), "a terminal call moved");
                    let row = row_for(t.from, trigger.kind()).unwrap();
                    prop_assert_eq!(row.to, t.to);
                    prop_assert!(row.allows(direction));
                    prop_assert!(is_legal(t.from, t.to));
                    if t.to.is_terminal() {
                        terminal_since = Some(i);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(&call, &before);
                    if terminal_since.is_some() {
                        let invalid = matches!(e, TransitionError::InvalidTrigger { .. });
                        prop_assert!(e.is_late() || invalid);
                    } else {
                        prop_assert!(!e.is_late());
                    }
                }
            }
        }
        let replayed = Call::replay(direction, call.started_at(), call.history()).unwrap();
        prop_assert_eq!(&replayed, &call);
        let json = serde_json::to_string(&call).unwrap();
        let back: Call = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back.state(), call.state());
        prop_assert_eq!(call.history().last().map_or(S::Idle, |t| t.to), call.state());
    }
}
