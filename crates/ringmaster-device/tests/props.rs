//! Property tests: exactly-once dismissal under any number, order and duplication of channel
//! deliveries, and crash/restart at any point.

use proptest::prelude::*;
use ringmaster_core::sdk::EndCause;
use ringmaster_core::session::{DeviceCallStatus, DeviceStatus};
use ringmaster_core::{
    table, CallSessionId, CallState, DeviceId, Direction, DismissReason, Platform, Timestamp,
};
use ringmaster_device::{
    AgentConfig, AppAction, Channel, Delivery, DeviceAgent, Effect, Input, SdkState, StopReason,
};

fn call() -> CallSessionId {
    CallSessionId::new("c")
}

fn me() -> DeviceId {
    DeviceId::new("me")
}

fn reason_strategy() -> impl Strategy<Value = DismissReason> {
    prop_oneof![
        Just(DismissReason::AnsweredElsewhere {
            device_id: DeviceId::new("other")
        }),
        Just(DismissReason::AnsweredElsewhere { device_id: me() }),
        Just(DismissReason::DeclinedElsewhere {
            device_id: DeviceId::new("other")
        }),
        Just(DismissReason::CallerCancelled),
        Just(DismissReason::Timeout),
        Just(DismissReason::Busy),
        Just(DismissReason::Replaced),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Incoming(Delivery),
    SipRinging,
    SipDone(EndCause),
    Ended(DismissReason, Delivery),
    Poll(DismissReason),
    PollRinging,
    App(AppAction),
    Restart,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let delivery = prop_oneof![
        Just(Delivery::WebSocket),
        Just(Delivery::Push { voip: false }),
        Just(Delivery::Push { voip: true }),
    ];
    prop_oneof![
        delivery.clone().prop_map(Step::Incoming),
        Just(Step::SipRinging),
        prop::sample::select(EndCause::ALL.to_vec()).prop_map(Step::SipDone),
        (reason_strategy(), delivery).prop_map(|(r, d)| Step::Ended(r, d)),
        reason_strategy().prop_map(Step::Poll),
        Just(Step::PollRinging),
        prop::sample::select(vec![
            AppAction::Answer,
            AppAction::Decline,
            AppAction::Ignore,
            AppAction::Hold,
            AppAction::Resume,
            AppAction::HangUp
        ])
        .prop_map(Step::App),
        Just(Step::Restart),
    ]
}

fn input(step: &Step, platform: Platform) -> Option<Input> {
    let id = call();
    Some(match step.clone() {
        Step::Incoming(via) => Input::IncomingCall {
            call_session_id: id,
            from: "+1555".into(),
            sent_at: Timestamp::from_millis(0),
            via,
        },
        Step::SipRinging => Input::Sdk {
            call_session_id: id,
            direction: Direction::Inbound,
            state: SdkState::ringing(platform),
            cause: None,
        },
        Step::SipDone(cause) => Input::Sdk {
            call_session_id: id,
            direction: Direction::Inbound,
            state: SdkState::done(platform),
            cause: cause.example(),
        },
        Step::Ended(reason, via) => Input::CallEnded {
            call_session_id: id,
            reason,
            via,
        },
        Step::Poll(reason) => Input::PollResult {
            call_session_id: id,
            status: DeviceCallStatus {
                status: match &reason {
                    DismissReason::AnsweredElsewhere { .. } => DeviceStatus::AnsweredElsewhere,
                    DismissReason::DeclinedElsewhere { .. } => DeviceStatus::DeclinedElsewhere,
                    DismissReason::CallerCancelled | DismissReason::Timeout => DeviceStatus::Missed,
                    DismissReason::Busy | DismissReason::Replaced => DeviceStatus::Ended,
                },
                device_id: reason.caused_by().cloned(),
                reason: Some(reason),
                version: 1,
            },
        },
        Step::PollRinging => Input::PollResult {
            call_session_id: id,
            status: DeviceCallStatus {
                status: DeviceStatus::Ringing,
                device_id: None,
                reason: None,
                version: 1,
            },
        },
        Step::App(action) => Input::App {
            call_session_id: id,
            action,
        },
        Step::Restart => return None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever arrives, in whatever order, with restarts anywhere: the ringer stops at most
    /// once per ring, every reported transition is legal and numbered in order, the call ends
    /// at most once, nothing happens after the end, and a refused input changes nothing.
    #[test]
    fn dismissal_is_consumed_exactly_once(
        platform in prop::sample::select(Platform::ALL.to_vec()),
        steps in prop::collection::vec(step_strategy(), 1..40),
    ) {
        let mut agent = DeviceAgent::new(me(), platform, AgentConfig::default());
        let mut stored = agent.snapshot();
        let mut last_seq = 0u64;
        let mut starts = 0usize;
        let mut stops = 0usize;
        let mut terminal_reports = 0usize;
        let mut first_authority: Option<DismissReason> = None;
        let mut ringing = false;
        for (i, step) in steps.iter().enumerate() {
            let now = Timestamp::from_millis(10 * i as u64);
            let fx = match input(step, platform) {
                None => {
                    let (a, fx) = DeviceAgent::restore(&me(), platform, AgentConfig::default(), stored.clone(), now)
                        .expect("own snapshots always load");
                    agent = a;
                    // The ringer died with the app.
                    ringing = false;
                    fx
                }
                Some(inp) => {
                    let before = agent.snapshot();
                    match agent.handle(inp, now) {
                        Ok(fx) => fx,
                        Err(_) => {
                            prop_assert_eq!(agent.snapshot(), before);
                            continue;
                        }
                    }
                }
            };
            for e in &fx {
                match e {
                    Effect::Persist(s) => stored = s.clone(),
                    Effect::StartRinging { .. } => {
                        prop_assert!(!ringing);
                        ringing = true;
                        starts += 1;
                    }
                    Effect::StopRinging { reason, channel, .. } => {
                        prop_assert!(ringing, "stop without ring");
                        ringing = false;
                        stops += 1;
                        if let StopReason::Dismissed { reason } = reason {
                            prop_assert_ne!(reason.caused_by(), Some(&me()));
                            prop_assert!(channel.is_some());
                            first_authority.get_or_insert(reason.clone());
                        }
                        if *reason == StopReason::LegCancelled {
                            prop_assert_eq!(*channel, Some(Channel::Sip));
                        }
                    }
                    Effect::ReportTransition(r) => {
                        prop_assert!(r.seq > last_seq, "sequence goes backwards");
                        last_seq = r.seq;
                        prop_assert!(table::is_legal(r.from, r.to));
                        if r.to.is_terminal() {
                            terminal_reports += 1;
                        }
                    }
                    _ => {}
                }
            }
            prop_assert_eq!(agent.is_ringing(&call()), ringing);
        }
        // One call id: it rings at most once and ends at most once.
        prop_assert!(starts <= 1);
        prop_assert!(stops <= starts);
        prop_assert!(terminal_reports <= 1);
        if let (Some(reason), Some(CallState::Missed | CallState::Ended)) = (&first_authority, agent.call_state(&call())) {
            let expect_missed = reason.is_missed();
            prop_assert_eq!(agent.call_state(&call()) == Some(CallState::Missed), expect_missed);
        }
    }
}
