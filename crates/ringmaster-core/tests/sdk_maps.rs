//! Every sequence of states a Telnyx SDK can produce maps to a legal canonical sequence.

use proptest::prelude::*;
use ringmaster_core::sdk::{self, map_named, SdkMapping, TerminationCause};
use ringmaster_core::{Call, CallState, Direction, Platform, Timestamp};

/// What each SDK can do next, per direction, as (state, successors). Built from the SDK
/// sources cited in `shared/telnyx/NOTES.md` §5; `*` marks a state that ends the call.
struct SdkModel {
    platform: Platform,
    start: &'static str,
    ending: &'static [&'static str],
    inbound: &'static [(&'static str, &'static [&'static str])],
    outbound: &'static [(&'static str, &'static [&'static str])],
}

const CONNECTED_IOS: &[(&str, &[&str])] = &[
    ("ACTIVE", &["HELD", "RECONNECTING", "DROPPED", "DONE"]),
    ("HELD", &["ACTIVE", "RECONNECTING", "DROPPED", "DONE"]),
    ("RECONNECTING", &["ACTIVE", "DROPPED", "DONE"]),
    ("DROPPED", &["DONE"]),
];

const IOS: SdkModel = SdkModel {
    platform: Platform::Ios,
    start: "NEW",
    ending: &["DONE"],
    inbound: &[
        ("NEW", &["RINGING", "DONE"]),
        ("RINGING", &["CONNECTING", "ACTIVE", "DONE"]),
        ("CONNECTING", &["ACTIVE", "DONE"]),
    ],
    outbound: &[
        ("NEW", &["CONNECTING", "DONE"]),
        ("CONNECTING", &["RINGING", "ACTIVE", "DONE"]),
        ("RINGING", &["ACTIVE", "DONE"]),
    ],
};

const CONNECTED_ANDROID: &[(&str, &[&str])] = &[
    (
        "ACTIVE",
        &[
            "HELD",
            "RECONNECTING",
            "DROPPED",
            "RENEGOTIATING",
            "DONE",
            "ERROR",
        ],
    ),
    (
        "HELD",
        &["ACTIVE", "RECONNECTING", "DROPPED", "DONE", "ERROR"],
    ),
    ("RECONNECTING", &["ACTIVE", "DROPPED", "DONE", "ERROR"]),
    ("RENEGOTIATING", &["ACTIVE", "DONE", "ERROR"]),
    ("DROPPED", &["DONE", "ERROR"]),
];

const ANDROID: SdkModel = SdkModel {
    platform: Platform::Android,
    start: "NEW",
    ending: &["DONE", "ERROR"],
    inbound: &[
        ("NEW", &["RINGING", "DONE", "ERROR"]),
        ("RINGING", &["CONNECTING", "ACTIVE", "DONE", "ERROR"]),
        ("CONNECTING", &["ACTIVE", "DONE", "ERROR"]),
    ],
    outbound: &[
        ("NEW", &["CONNECTING", "DONE", "ERROR"]),
        ("CONNECTING", &["RINGING", "ACTIVE", "DONE", "ERROR"]),
        ("RINGING", &["ACTIVE", "DONE", "ERROR"]),
    ],
};

const CONNECTED_WEB: &[(&str, &[&str])] = &[
    ("active", &["held", "recovering", "hangup", "destroy"]),
    ("held", &["active", "recovering", "hangup", "destroy"]),
    ("recovering", &["active", "hangup", "destroy"]),
];

const WEB: SdkModel = SdkModel {
    platform: Platform::Web,
    start: "new",
    ending: &["hangup", "destroy", "purge"],
    inbound: &[
        ("new", &["ringing", "hangup", "destroy"]),
        ("ringing", &["answering", "active", "hangup", "destroy"]),
        ("answering", &["active", "hangup", "destroy"]),
    ],
    outbound: &[
        ("new", &["requesting", "hangup", "destroy"]),
        (
            "requesting",
            &["trying", "early", "ringing", "active", "hangup", "destroy"],
        ),
        (
            "trying",
            &["early", "ringing", "active", "hangup", "destroy"],
        ),
        ("early", &["ringing", "active", "hangup", "destroy"]),
        ("ringing", &["active", "hangup", "destroy"]),
    ],
};

impl SdkModel {
    fn connected(&self) -> &'static [(&'static str, &'static [&'static str])] {
        match self.platform {
            Platform::Ios => CONNECTED_IOS,
            Platform::Android => CONNECTED_ANDROID,
            Platform::Web => CONNECTED_WEB,
        }
    }

    fn next(&self, direction: Direction, state: &str) -> &'static [&'static str] {
        let own = match direction {
            Direction::Inbound => self.inbound,
            Direction::Outbound => self.outbound,
        };
        own.iter()
            .chain(self.connected())
            .find(|(s, _)| *s == state)
            .map_or(&[][..], |(_, next)| next)
    }

    /// Every SDK state name, for late callbacks after the end.
    fn all_names(&self) -> Vec<&'static str> {
        match self.platform {
            Platform::Ios => sdk::IosState::ALL.iter().map(|s| s.as_str()).collect(),
            Platform::Android => sdk::AndroidState::ALL.iter().map(|s| s.as_str()).collect(),
            Platform::Web => sdk::WebState::ALL.iter().map(|s| s.as_str()).collect(),
        }
    }
}

fn any_cause() -> impl Strategy<Value = Option<TerminationCause>> {
    let name = proptest::option::of(proptest::sample::select(vec![
        "NORMAL_CLEARING".to_owned(),
        "USER_BUSY".to_owned(),
        "CALL_REJECTED".to_owned(),
        "UNALLOCATED_NUMBER".to_owned(),
        "NO_ANSWER".to_owned(),
        "INCOMPATIBLE_DESTINATION".to_owned(),
        "RECOVERY_ON_TIMER_EXPIRE".to_owned(),
        "ORIGINATOR_CANCEL".to_owned(),
        "LOSE_RACE".to_owned(),
        "something_else".to_owned(),
    ]));
    proptest::option::of(
        (
            name,
            proptest::option::of(0u32..700),
            proptest::option::of(any::<u16>()),
        )
            .prop_map(|(cause, cause_code, sip_code)| TerminationCause {
                cause,
                cause_code,
                sip_code,
                sip_reason: None,
            }),
    )
}

fn check_model(
    model: &SdkModel,
    direction: Direction,
    picks: &[proptest::sample::Index],
    cause: Option<TerminationCause>,
    late: proptest::sample::Index,
) -> Result<(), TestCaseError> {
    let mut call = Call::new(direction, Timestamp::from_millis(0));
    let mut sdk_state = model.start;
    let mut seen = vec![sdk_state];
    for (i, pick) in picks.iter().enumerate() {
        let options = model.next(direction, sdk_state);
        if options.is_empty() {
            break;
        }
        sdk_state = *pick.get(options);
        seen.push(sdk_state);
        let reason = if model.ending.contains(&sdk_state) {
            cause.as_ref()
        } else {
            None
        };
        let mapping = map_named(model.platform, sdk_state, direction, call.state(), reason)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let SdkMapping::Move { to, trigger } = mapping {
            let applied = call.apply(trigger, Timestamp::from_millis(i as u64 + 1));
            prop_assert!(
                applied.is_ok(),
                "{:?} {direction} SDK sequence {seen:?} gave illegal {trigger} in {}: {applied:?}",
                model.platform,
                call.state()
            );
            prop_assert_eq!(call.state(), to);
        }
        if model.ending.contains(&sdk_state) {
            prop_assert!(
                call.is_terminal(),
                "{seen:?} did not end the call: {}",
                call.state()
            );
            // A late callback on a finished call changes nothing.
            let names = model.all_names();
            let late_name = late.get(&names);
            prop_assert_eq!(
                map_named(model.platform, late_name, direction, call.state(), reason).unwrap(),
                SdkMapping::NoChange
            );
            break;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn ios_sequences_map_to_legal_canonical_sequences(
        inbound in any::<bool>(),
        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 1..14),
        cause in any_cause(),
        late in any::<proptest::sample::Index>(),
    ) {
        let direction = if inbound { Direction::Inbound } else { Direction::Outbound };
        check_model(&IOS, direction, &picks, cause, late)?;
    }

    #[test]
    fn android_sequences_map_to_legal_canonical_sequences(
        inbound in any::<bool>(),
        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 1..14),
        cause in any_cause(),
        late in any::<proptest::sample::Index>(),
    ) {
        let direction = if inbound { Direction::Inbound } else { Direction::Outbound };
        check_model(&ANDROID, direction, &picks, cause, late)?;
    }

    #[test]
    fn web_sequences_map_to_legal_canonical_sequences(
        inbound in any::<bool>(),
        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 1..14),
        cause in any_cause(),
        late in any::<proptest::sample::Index>(),
    ) {
        let direction = if inbound { Direction::Inbound } else { Direction::Outbound };
        check_model(&WEB, direction, &picks, cause, late)?;
    }

    /// Any text either parses to a known SDK state or gives a typed error; never a panic.
    #[test]
    fn sdk_state_names_parse_or_fail_cleanly(name in "\\PC{0,40}", platform in 0usize..3) {
        let platform = Platform::ALL[platform];
        match map_named(platform, &name, Direction::Inbound, CallState::Idle, None) {
            Ok(_) => {
                let bare = name.trim().split('(').next().unwrap_or("").trim().to_ascii_lowercase();
                let known = match platform {
                    Platform::Ios => IOS.all_names(),
                    Platform::Android => ANDROID.all_names(),
                    Platform::Web => WEB.all_names(),
                };
                prop_assert!(known.iter().any(|k| k.to_ascii_lowercase() == bare));
            }
            Err(e) => prop_assert_eq!(e.platform, platform),
        }
    }
}

#[test]
fn done_maps_by_previous_state_and_cause() {
    use ringmaster_core::sdk::EndCause;
    let done = |direction, prev, kind: EndCause| {
        map_named(
            Platform::Ios,
            "DONE",
            direction,
            prev,
            kind.example().as_ref(),
        )
        .unwrap()
        .target()
    };
    // Ringing inbound + originator_cancel is a missed call.
    assert_eq!(
        done(
            Direction::Inbound,
            CallState::RingingInbound,
            EndCause::CallerCancelled
        ),
        Some(CallState::Missed)
    );
    assert_eq!(
        done(
            Direction::Outbound,
            CallState::RingingOutbound,
            EndCause::Rejected
        ),
        Some(CallState::Failed)
    );
    assert_eq!(
        done(
            Direction::Outbound,
            CallState::RingingOutbound,
            EndCause::NoAnswer
        ),
        Some(CallState::Missed)
    );
    assert_eq!(
        done(
            Direction::Outbound,
            CallState::Connecting,
            EndCause::NormalClearing
        ),
        Some(CallState::Ended)
    );
    assert_eq!(
        done(Direction::Inbound, CallState::Active, EndCause::Error),
        Some(CallState::Ended)
    );
    assert_eq!(
        done(Direction::Inbound, CallState::Dropped, EndCause::Unknown),
        Some(CallState::Ended)
    );
    assert_eq!(
        done(Direction::Inbound, CallState::Ended, EndCause::Unknown),
        None
    );
}

#[test]
fn unknown_names_are_typed_errors() {
    let err = map_named(
        Platform::Android,
        "RECOVERING",
        Direction::Inbound,
        CallState::Idle,
        None,
    )
    .unwrap_err();
    assert_eq!(err.platform, Platform::Android);
    assert_eq!(
        err.to_string(),
        "unknown android SDK call state \"RECOVERING\""
    );
}
