//! Device agent scenarios: what the user sees on the phone for each way a call can go.

use ringmaster_core::sdk::{EndCause, IosState, TerminationCause};
use ringmaster_core::session::{DeviceCallStatus, DeviceStatus};
use ringmaster_core::{
    CallSessionId, CallState, DeviceId, Direction, DismissReason, Platform, Timestamp, Trigger,
};
use ringmaster_device::{
    AgentConfig, AgentError, AppAction, BackendRequest, Channel, Delivery, DeviceAgent, Effect,
    Input, SdkCommand, SdkState, Snapshot, SnapshotError, StopReason,
};

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn call() -> CallSessionId {
    CallSessionId::new("sess-1")
}

fn me() -> DeviceId {
    DeviceId::new("iphone")
}

fn other() -> DeviceId {
    DeviceId::new("pixel")
}

fn agent(platform: Platform) -> DeviceAgent {
    DeviceAgent::new(me(), platform, AgentConfig::default())
}

fn incoming(at: u64, via: Delivery) -> Input {
    Input::IncomingCall {
        call_session_id: call(),
        from: "+15550001111".into(),
        sent_at: t(at),
        via,
    }
}

fn sdk(platform: Platform, state: SdkState, cause: Option<EndCause>) -> Input {
    let _ = platform;
    Input::Sdk {
        call_session_id: call(),
        direction: Direction::Inbound,
        state,
        cause: cause.and_then(EndCause::example),
    }
}

fn ended(reason: DismissReason, via: Delivery) -> Input {
    Input::CallEnded {
        call_session_id: call(),
        reason,
        via,
    }
}

fn app(action: AppAction) -> Input {
    Input::App {
        call_session_id: call(),
        action,
    }
}

fn poll(status: DeviceStatus, reason: Option<DismissReason>) -> Input {
    Input::PollResult {
        call_session_id: call(),
        status: DeviceCallStatus {
            status,
            device_id: reason.as_ref().and_then(|r| r.caused_by().cloned()),
            reason,
            version: 3,
        },
    }
}

fn answered_elsewhere() -> DismissReason {
    DismissReason::AnsweredElsewhere { device_id: other() }
}

fn stops(fx: &[Effect]) -> Vec<(StopReason, Option<Channel>)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::StopRinging {
                reason, channel, ..
            } => Some((reason.clone(), *channel)),
            _ => None,
        })
        .collect()
}

fn reports(fx: &[Effect]) -> Vec<(u64, CallState, CallState)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ReportTransition(r) => Some((r.seq, r.from, r.to)),
            _ => None,
        })
        .collect()
}

fn last_snapshot(fx: &[Effect]) -> Option<Snapshot> {
    fx.iter().rev().find_map(|e| match e {
        Effect::Persist(s) => Some(s.clone()),
        _ => None,
    })
}

#[test]
fn a_push_rings_persists_and_starts_the_three_second_poll() {
    let mut a = agent(Platform::Android);
    let fx = a
        .handle(incoming(0, Delivery::Push { voip: false }), t(100))
        .unwrap();
    assert!(matches!(fx[0], Effect::Persist(_)), "persist first: {fx:?}");
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::StartRinging { from, .. } if from == "+15550001111")));
    assert!(fx.contains(&Effect::StartStatusPoll {
        call_session_id: call(),
        interval_ms: 3_000
    }));
    assert_eq!(
        reports(&fx),
        [(1, CallState::Idle, CallState::RingingInbound)]
    );
    let snap = last_snapshot(&fx).unwrap();
    assert_eq!(
        snap.calls.len(),
        1,
        "RINGING_INBOUND is persisted (spec §9.5)"
    );
    assert_eq!(snap.next_seq, 2);
    assert!(a.is_ringing(&call()));

    // The SIP INVITE arriving afterwards changes nothing.
    let fx = a
        .handle(
            sdk(
                Platform::Android,
                SdkState::ringing(Platform::Android),
                None,
            ),
            t(200),
        )
        .unwrap();
    assert!(fx.is_empty(), "{fx:?}");
}

#[test]
fn every_channel_delivering_the_same_dismissal_stops_the_ringer_once() {
    let mut a = agent(Platform::Android);
    a.handle(incoming(0, Delivery::WebSocket), t(0)).unwrap();
    let mut all = Vec::new();
    for (i, input) in [
        ended(answered_elsewhere(), Delivery::WebSocket),
        ended(answered_elsewhere(), Delivery::Push { voip: false }),
        ended(answered_elsewhere(), Delivery::WebSocket),
        sdk(
            Platform::Android,
            SdkState::done(Platform::Android),
            Some(EndCause::NormalClearing),
        ),
        poll(DeviceStatus::AnsweredElsewhere, Some(answered_elsewhere())),
    ]
    .into_iter()
    .enumerate()
    {
        all.extend(a.handle(input, t(500 + i as u64)).unwrap());
    }
    assert_eq!(
        stops(&all),
        [(
            StopReason::Dismissed {
                reason: answered_elsewhere()
            },
            Some(Channel::WebSocket)
        )]
    );
    assert_eq!(a.call_state(&call()), Some(CallState::Ended));
    assert!(!all
        .iter()
        .any(|e| matches!(e, Effect::ShowMissedCall { .. })));
    assert_eq!(
        all.iter()
            .filter(|e| matches!(e, Effect::StopStatusPoll { .. }))
            .count(),
        1
    );
    assert_eq!(
        all.iter()
            .filter(|e| matches!(e, Effect::ClearPersisted { .. }))
            .count(),
        1
    );
    assert!(last_snapshot(&all).unwrap().calls.is_empty());
}

#[test]
fn a_sip_cancel_silences_at_once_and_the_backend_decides_missed_or_not() {
    let mut a = agent(Platform::Web);
    a.handle(
        sdk(Platform::Web, SdkState::ringing(Platform::Web), None),
        t(0),
    )
    .unwrap();
    assert!(a.is_ringing(&call()));
    let fx = a
        .handle(
            sdk(
                Platform::Web,
                SdkState::done(Platform::Web),
                Some(EndCause::NormalClearing),
            ),
            t(1_000),
        )
        .unwrap();
    assert_eq!(stops(&fx), [(StopReason::LegCancelled, Some(Channel::Sip))]);
    assert!(!a.is_ringing(&call()));
    assert_eq!(a.call_state(&call()), Some(CallState::RingingInbound));
    assert!(
        a.is_polling(&call()),
        "the poll keeps running until the reason is known"
    );

    // The poll says the caller hung up: a missed call, and no second StopRinging.
    let fx = a
        .handle(
            poll(DeviceStatus::Missed, Some(DismissReason::CallerCancelled)),
            t(3_000),
        )
        .unwrap();
    assert!(stops(&fx).is_empty());
    assert_eq!(a.call_state(&call()), Some(CallState::Missed));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::ShowMissedCall { .. })));
    assert!(fx.contains(&Effect::StopStatusPoll {
        call_session_id: call()
    }));
}

#[test]
fn a_dismissal_caused_by_this_device_is_its_own_echo() {
    let mut a = agent(Platform::Ios);
    a.handle(incoming(0, Delivery::Push { voip: true }), t(0))
        .unwrap();
    let fx = a.handle(app(AppAction::Answer), t(1_000)).unwrap();
    assert_eq!(stops(&fx), [(StopReason::AnsweredHere, None)]);
    assert!(fx.contains(&Effect::Sdk {
        call_session_id: call(),
        command: SdkCommand::Answer
    }));
    let echo = DismissReason::AnsweredElsewhere { device_id: me() };
    let fx = a
        .handle(ended(echo.clone(), Delivery::WebSocket), t(1_200))
        .unwrap();
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(a.call_state(&call()), Some(CallState::Active));
    // The backend confirms: polling stops.
    let fx = a
        .handle(poll(DeviceStatus::AnsweredHere, None), t(3_000))
        .unwrap();
    assert_eq!(
        fx,
        [Effect::StopStatusPoll {
            call_session_id: call()
        }]
    );
}

#[test]
fn answering_and_losing_the_race_ends_the_call_here() {
    let mut a = agent(Platform::Android);
    a.handle(incoming(0, Delivery::Push { voip: false }), t(0))
        .unwrap();
    a.handle(app(AppAction::Answer), t(1_000)).unwrap();
    let fx = a
        .handle(
            ended(answered_elsewhere(), Delivery::Push { voip: false }),
            t(1_050),
        )
        .unwrap();
    assert!(fx.contains(&Effect::Sdk {
        call_session_id: call(),
        command: SdkCommand::Hangup
    }));
    assert_eq!(a.call_state(&call()), Some(CallState::Ended));
    assert!(
        stops(&fx).is_empty(),
        "the ringer already stopped on answer"
    );
}

#[test]
fn decline_tells_the_backend_and_ignore_only_silences_here() {
    let mut a = agent(Platform::Android);
    a.handle(incoming(0, Delivery::Push { voip: false }), t(0))
        .unwrap();
    let fx = a.handle(app(AppAction::Decline), t(500)).unwrap();
    assert!(fx.contains(&Effect::Backend {
        call_session_id: call(),
        request: BackendRequest::Decline
    }));
    assert_eq!(a.call_state(&call()), Some(CallState::Ended));

    let mut b = agent(Platform::Android);
    b.handle(incoming(0, Delivery::Push { voip: false }), t(0))
        .unwrap();
    let fx = b.handle(app(AppAction::Ignore), t(500)).unwrap();
    assert_eq!(stops(&fx), [(StopReason::Ignored, None)]);
    assert!(fx.contains(&Effect::Backend {
        call_session_id: call(),
        request: BackendRequest::Ignore
    }));
    assert_eq!(b.call_state(&call()), Some(CallState::RingingInbound));
    // Nobody answered anywhere: it is a missed call here too.
    let fx = b
        .handle(
            ended(DismissReason::Timeout, Delivery::WebSocket),
            t(30_000),
        )
        .unwrap();
    assert_eq!(b.call_state(&call()), Some(CallState::Missed));
    assert!(stops(&fx).is_empty());
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::ShowMissedCall { .. })));
}

#[test]
fn a_late_voip_push_is_reported_then_ended_and_never_rings() {
    let mut a = agent(Platform::Ios);
    // call_ended overtakes incoming_call.
    a.handle(
        ended(
            DismissReason::CallerCancelled,
            Delivery::Push { voip: false },
        ),
        t(0),
    )
    .unwrap();
    let fx = a
        .handle(incoming(0, Delivery::Push { voip: true }), t(10))
        .unwrap();
    assert_eq!(
        fx,
        [Effect::ReportThenEnd {
            call_session_id: call(),
            reason: Some(DismissReason::CallerCancelled)
        }]
    );
    assert!(!a.is_ringing(&call()));

    // A push held back by Doze for 15 minutes does not ring either.
    let mut b = agent(Platform::Ios);
    let fx = b
        .handle(incoming(0, Delivery::Push { voip: true }), t(15 * 60_000))
        .unwrap();
    assert!(matches!(
        fx.as_slice(),
        [Effect::ReportThenEnd { reason: None, .. }]
    ));
    let mut c = agent(Platform::Android);
    let fx = c
        .handle(incoming(0, Delivery::Push { voip: false }), t(15 * 60_000))
        .unwrap();
    assert!(fx.is_empty());
}

#[test]
fn restart_turns_active_calls_into_orphans_and_ringing_into_missed_after_the_backend_agrees() {
    let mut a = agent(Platform::Ios);
    a.handle(incoming(0, Delivery::Push { voip: true }), t(0))
        .unwrap();
    let fx = a.handle(app(AppAction::Answer), t(1_000)).unwrap();
    let snap = last_snapshot(&fx).unwrap();
    let bytes = snap.to_json();
    let (mut b, fx) = DeviceAgent::restore(
        &me(),
        Platform::Ios,
        AgentConfig::default(),
        Snapshot::from_json(&bytes).unwrap(),
        t(60_000),
    )
    .unwrap();
    assert!(fx.contains(&Effect::OrphanEnded {
        call_session_id: call(),
        state: CallState::Active
    }));
    assert_eq!(
        reports(&fx),
        [(3, CallState::Active, CallState::Ended)],
        "sequence continues"
    );
    assert_eq!(b.call_state(&call()), Some(CallState::Ended));
    assert!(last_snapshot(&fx).unwrap().calls.is_empty());
    // A late BYE for the orphan is absorbed.
    assert!(b
        .handle(
            sdk(Platform::Ios, SdkState::Ios(IosState::Done), None),
            t(61_000)
        )
        .unwrap()
        .is_empty());

    // Crash while ringing: silenced, polled, and a missed call once the backend says so.
    let mut r = agent(Platform::Android);
    let fx = r
        .handle(incoming(0, Delivery::Push { voip: false }), t(0))
        .unwrap();
    let (mut r2, fx) = DeviceAgent::restore(
        &me(),
        Platform::Android,
        AgentConfig::default(),
        last_snapshot(&fx).unwrap(),
        t(5_000),
    )
    .unwrap();
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::StartStatusPoll { .. })));
    assert!(!r2.is_ringing(&call()));
    let fx = r2
        .handle(
            poll(DeviceStatus::Missed, Some(DismissReason::Timeout)),
            t(8_000),
        )
        .unwrap();
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::ShowMissedCall { .. })));
    assert_eq!(r2.call_state(&call()), Some(CallState::Missed));
}

#[test]
fn connecting_outbound_calls_are_not_persisted() {
    let mut a = agent(Platform::Android);
    let fx = a
        .handle(
            Input::Sdk {
                call_session_id: call(),
                direction: Direction::Outbound,
                state: SdkState::parse(Platform::Android, "CONNECTING").unwrap(),
                cause: None,
            },
            t(0),
        )
        .unwrap();
    assert_eq!(a.call_state(&call()), Some(CallState::Connecting));
    let snap = last_snapshot(&fx).unwrap();
    assert!(snap.calls.is_empty());
    let (b, fx) =
        DeviceAgent::restore(&me(), Platform::Android, AgentConfig::default(), snap, t(1)).unwrap();
    assert!(!fx.iter().any(|e| matches!(e, Effect::OrphanEnded { .. })));
    assert_eq!(b.call_state(&call()), None);
    assert_eq!(b.next_seq(), 2);
}

#[test]
fn refused_inputs_change_nothing_and_say_why() {
    let mut a = agent(Platform::Android);
    a.handle(incoming(0, Delivery::Push { voip: false }), t(0))
        .unwrap();
    a.handle(app(AppAction::Answer), t(10)).unwrap();
    a.handle(app(AppAction::Hold), t(20)).unwrap();
    let before = a.snapshot();
    // Spec T13: HELD → RINGING is refused.
    let err = a
        .handle(
            sdk(
                Platform::Android,
                SdkState::ringing(Platform::Android),
                None,
            ),
            t(30),
        )
        .unwrap_err();
    assert!(matches!(err, AgentError::Refused { .. }), "{err}");
    assert_eq!(a.snapshot(), before);
    assert!(matches!(
        a.handle(
            sdk(Platform::Android, SdkState::ringing(Platform::Ios), None),
            t(30)
        ),
        Err(AgentError::WrongPlatform { .. })
    ));
    assert!(matches!(
        a.handle(app(AppAction::Answer), t(40)),
        Err(AgentError::NotRinging { .. })
    ));
    let long = Input::IncomingCall {
        call_session_id: CallSessionId::new("x".repeat(10_000)),
        from: "+1".into(),
        sent_at: t(0),
        via: Delivery::WebSocket,
    };
    assert!(matches!(a.handle(long, t(50)), Err(AgentError::Invalid(_))));
    assert_eq!(a.snapshot(), before);
    assert_eq!(a.call_state(&call()), Some(CallState::OnHold));
}

#[test]
fn tampered_or_foreign_snapshots_are_refused() {
    let mut a = agent(Platform::Android);
    let fx = a
        .handle(incoming(0, Delivery::Push { voip: false }), t(0))
        .unwrap();
    let snap = last_snapshot(&fx).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&snap.to_json()).unwrap();
    json["calls"][0]["call"]["state"] = "ACTIVE".into();
    assert!(matches!(
        Snapshot::from_json(json.to_string().as_bytes()),
        Err(SnapshotError::Malformed(_))
    ));
    assert!(matches!(
        DeviceAgent::restore(
            &other(),
            Platform::Android,
            AgentConfig::default(),
            snap,
            t(1)
        ),
        Err(SnapshotError::WrongDevice)
    ));
    assert!(matches!(
        Snapshot::from_json(&vec![b' '; 300 << 10]),
        Err(SnapshotError::TooLarge { .. })
    ));
}

#[test]
fn web_sees_the_call_live_on_another_device() {
    let mut a = DeviceAgent::new(DeviceId::new("web"), Platform::Web, AgentConfig::default());
    let fx = a
        .handle(
            Input::CallStateChanged {
                call_session_id: call(),
                device: Some(me()),
                state: CallState::Active,
            },
            t(0),
        )
        .unwrap();
    assert_eq!(
        fx,
        [Effect::OtherDeviceActive {
            call_session_id: call(),
            device_id: me()
        }]
    );
}

#[test]
fn relayed_reports_in_the_canonical_spelling_are_accepted() {
    // The backend's `call_state_changed` payloads, as they come off the WebSocket.
    let mut a = DeviceAgent::new(DeviceId::new("web"), Platform::Web, AgentConfig::default());
    let wire = |state: &str| -> Input {
        serde_json::from_value(serde_json::json!({
            "input": "call_state_changed",
            "call_session_id": "call-1",
            "device_id": "phone",
            "platform": "ios",
            "state": state,
            "previous_state": "ACTIVE",
            "version": 7,
        }))
        .expect("canonical payload parses")
    };
    for state in ["ON_HOLD", "REMOTE_HOLD", "RECONNECTING", "RINGING_INBOUND"] {
        assert_eq!(a.handle(wire(state), t(0)).unwrap(), [], "{state}");
    }
    let fx = a.handle(wire("ENDED"), t(1)).unwrap();
    assert_eq!(
        fx,
        [Effect::OtherDeviceEnded {
            call_session_id: CallSessionId::new("call-1")
        }]
    );
    // The old lower-case spelling is gone.
    let old: Result<Input, _> = serde_json::from_value(serde_json::json!({
        "input": "call_state_changed", "call_session_id": "call-1", "device_id": null,
        "state": "active"}));
    assert!(old.is_err());
}

#[test]
fn sip_termination_causes_map_through_the_core_sdk_tables() {
    // An outbound call rejected with 486 fails; the cause is read by the core's map.
    let mut a = agent(Platform::Ios);
    for (state, cause) in [
        ("CONNECTING", None),
        ("RINGING", None),
        (
            "DONE",
            Some(TerminationCause {
                cause: Some("USER_BUSY".into()),
                sip_code: Some(486),
                ..TerminationCause::default()
            }),
        ),
    ] {
        a.handle(
            Input::Sdk {
                call_session_id: call(),
                direction: Direction::Outbound,
                state: SdkState::parse(Platform::Ios, state).unwrap(),
                cause,
            },
            t(0),
        )
        .unwrap();
    }
    assert_eq!(a.call_state(&call()), Some(CallState::Failed));
}

#[test]
fn hanging_up_an_unconfirmed_answer_finishes_when_the_backend_says_it_is_over() {
    // CallKit answered before any INVITE: the SDK has no leg, so no SIP will confirm anything.
    let mut a = agent(Platform::Ios);
    a.handle(incoming(0, Delivery::Push { voip: true }), t(0))
        .unwrap();
    a.handle(app(AppAction::Answer), t(1_000)).unwrap();
    let fx = a.handle(app(AppAction::HangUp), t(2_000)).unwrap();
    assert_eq!(a.call_state(&call()), Some(CallState::Disconnecting));
    assert!(!fx
        .iter()
        .any(|e| matches!(e, Effect::StopStatusPoll { .. })));
    assert!(a.is_polling(&call()));
    let fx = a
        .handle(
            poll(DeviceStatus::Missed, Some(DismissReason::Timeout)),
            t(30_500),
        )
        .unwrap();
    assert_eq!(a.call_state(&call()), Some(CallState::Ended));
    assert!(fx.contains(&Effect::StopStatusPoll {
        call_session_id: call()
    }));
    assert!(!fx
        .iter()
        .any(|e| matches!(e, Effect::ShowMissedCall { .. })));
}

/// A FreeSWITCH-shaped offer (as Telnyx relays a re-INVITE) with the given audio direction.
fn offer(direction: &str) -> String {
    format!(
        "v=0\r\no=FreeSWITCH 1 2 IN IP4 192.0.2.10\r\ns=FreeSWITCH\r\nc=IN IP4 192.0.2.10\r\n\
         t=0 0\r\nm=audio 23456 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na={direction}\r\n"
    )
}

fn reoffer(sdp: String) -> Input {
    Input::SdpReoffer {
        call_session_id: call(),
        sdp,
    }
}

fn reported(fx: &[Effect]) -> Vec<(CallState, CallState, Trigger)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ReportTransition(r) => Some((r.from, r.to, r.trigger)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_hold_reoffer_puts_the_call_in_remote_hold_and_a_resume_takes_it_out() {
    let mut a = agent(Platform::Android);
    a.handle(incoming(0, Delivery::Push { voip: false }), t(0))
        .unwrap();
    a.handle(app(AppAction::Answer), t(1_000)).unwrap();
    assert_eq!(a.call_state(&call()), Some(CallState::Active));

    // G-14: the remote holds (sendonly), then re-sends the same hold, then resumes.
    let fx = a.handle(reoffer(offer("sendonly")), t(2_000)).unwrap();
    assert_eq!(
        reported(&fx),
        [(
            CallState::Active,
            CallState::RemoteHold,
            Trigger::RemoteHold
        )]
    );
    assert_eq!(a.call_state(&call()), Some(CallState::RemoteHold));
    assert!(a
        .handle(reoffer(offer("sendonly")), t(2_500))
        .unwrap()
        .is_empty());
    let fx = a.handle(reoffer(offer("sendrecv")), t(3_000)).unwrap();
    assert_eq!(
        reported(&fx),
        [(
            CallState::RemoteHold,
            CallState::Active,
            Trigger::RemoteResume
        )]
    );
    // A codec change or ICE restart on an active call changes nothing.
    assert!(a
        .handle(reoffer(offer("sendrecv")), t(3_500))
        .unwrap()
        .is_empty());

    // Bad bodies and unknown calls are refused and change nothing.
    let before = a.snapshot().to_json();
    assert!(matches!(
        a.handle(reoffer("not sdp at all".into()), t(4_000)),
        Err(AgentError::Invalid(_))
    ));
    assert!(matches!(
        a.handle(reoffer("x".repeat(1 << 20)), t(4_000)),
        Err(AgentError::Invalid(_))
    ));
    assert_eq!(a.snapshot().to_json(), before);
    assert_eq!(a.call_state(&call()), Some(CallState::Active));
    let stranger = Input::SdpReoffer {
        call_session_id: CallSessionId::new("someone-else"),
        sdp: offer("sendonly"),
    };
    assert!(matches!(
        a.handle(stranger, t(4_000)),
        Err(AgentError::UnknownCall { .. })
    ));
}

fn click_to_call_leg(device: DeviceId) -> Input {
    Input::LegOffered {
        call_session_id: call(),
        client_state: Some(ringmaster_core::session::ClientStateRef {
            session: call(),
            device: Some(device),
            leg: ringmaster_core::session::LEG_DEVICE.to_owned(),
            direction: Some(Direction::Outbound),
        }),
    }
}

fn outbound_sdk(state: SdkState) -> Input {
    Input::Sdk {
        call_session_id: call(),
        direction: Direction::Outbound,
        state,
        cause: None,
    }
}

#[test]
fn a_click_to_call_leg_is_the_users_own_outbound_call_not_an_incoming_one() {
    // Without the marker the app could only pass the leg as an outbound SDK ring from IDLE,
    // which the machine refuses.
    let mut plain = agent(Platform::Android);
    let ringing = SdkState::ringing(Platform::Android);
    assert!(plain.handle(outbound_sdk(ringing), t(0)).is_err());

    let mut a = agent(Platform::Android);
    let fx = a.handle(click_to_call_leg(me()), t(0)).unwrap();
    assert_eq!(
        reports(&fx),
        [(1, CallState::Idle, CallState::Connecting)],
        "{fx:?}"
    );
    assert!(fx.contains(&Effect::Sdk {
        call_session_id: call(),
        command: SdkCommand::Answer
    }));
    assert!(
        stops(&fx).is_empty() && !a.is_ringing(&call()),
        "it never rings"
    );
    // The SDK still sees an incoming INVITE ringing: nothing moves.
    assert!(reports(&a.handle(outbound_sdk(ringing), t(10)).unwrap()).is_empty());
    // The leg is up: the destination is being dialled.
    let fx = a
        .handle(outbound_sdk(SdkState::active(Platform::Android)), t(20))
        .unwrap();
    assert_eq!(
        reports(&fx),
        [(2, CallState::Connecting, CallState::RingingOutbound)]
    );
    // The backend's view of another device, or of the ringing destination, changes nothing;
    // its ACTIVE for this device means the destination answered.
    let changed = |device: DeviceId, state| Input::CallStateChanged {
        call_session_id: call(),
        device: Some(device),
        state,
    };
    let fx = a
        .handle(changed(me(), CallState::RingingOutbound), t(30))
        .unwrap();
    assert!(reports(&fx).is_empty());
    let fx = a.handle(changed(me(), CallState::Active), t(40)).unwrap();
    assert_eq!(
        reports(&fx),
        [(3, CallState::RingingOutbound, CallState::Active)]
    );
    assert_eq!(a.call_state(&call()), Some(CallState::Active));

    // A web tab starts from REQUESTING.
    let mut web = agent(Platform::Web);
    let fx = web.handle(click_to_call_leg(me()), t(0)).unwrap();
    assert_eq!(reports(&fx), [(1, CallState::Idle, CallState::Requesting)]);
}

#[test]
fn a_leg_marked_for_another_device_or_unmarked_rings_as_an_incoming_call() {
    let mut a = agent(Platform::Ios);
    let fx = a.handle(click_to_call_leg(other()), t(0)).unwrap();
    assert_eq!(
        reports(&fx),
        [(1, CallState::Idle, CallState::RingingInbound)]
    );
    assert!(a.is_ringing(&call()));
    let mut b = agent(Platform::Ios);
    let unmarked = Input::LegOffered {
        call_session_id: call(),
        client_state: None,
    };
    b.handle(unmarked, t(0)).unwrap();
    assert!(b.is_ringing(&call()));
}

#[test]
fn a_replaced_outbound_call_hangs_up_and_ends_with_the_reason() {
    let mut a = agent(Platform::Android);
    a.handle(click_to_call_leg(me()), t(0)).unwrap();
    let fx = a
        .handle(ended(DismissReason::Replaced, Delivery::WebSocket), t(50))
        .unwrap();
    assert!(fx.contains(&Effect::Sdk {
        call_session_id: call(),
        command: SdkCommand::Hangup
    }));
    assert_eq!(reports(&fx), [(2, CallState::Connecting, CallState::Ended)]);
    let stone = a.tombstone(&call()).unwrap();
    assert_eq!(stone.reason, Some(DismissReason::Replaced));
    // The same news by push changes nothing more.
    let fx = a
        .handle(
            ended(DismissReason::Replaced, Delivery::Push { voip: false }),
            t(60),
        )
        .unwrap();
    assert!(reports(&fx).is_empty());
}
