//! Unit tests: scenarios with explicit timestamps, asserting the effects a user would notice.

use super::*;
use crate::dismissal::DismissReason;
use crate::state::CallState;
use crate::trigger::Trigger;

const CALLER: &str = "caller-ccid";

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn target(id: &str, platform: &str) -> RingTarget {
    RingTarget {
        device_id: DeviceId::new(id),
        sip_uri: format!("sip:{id}@sip.telnyx.com"),
        platform: platform.to_owned(),
    }
}

fn three_devices() -> Vec<RingTarget> {
    vec![
        target("ios", "ios"),
        target("android", "android"),
        target("web", "web"),
    ]
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id)
}

fn leg_ccid(device: &str) -> CallControlId {
    CallControlId::new(format!("leg-{device}"))
}

fn voicemail_config() -> SessionConfig {
    SessionConfig {
        voicemail: Some(VoicemailConfig {
            greeting: "Leave a message".to_owned(),
            ..VoicemailConfig::default()
        }),
        ..SessionConfig::default()
    }
}

/// A session plus everything it has emitted, driven with explicit times.
struct H {
    s: Session,
    log: Vec<Effect>,
}

impl H {
    fn inbound_with(devices: Vec<RingTarget>, config: SessionConfig, busy: bool) -> H {
        let s = Session::new_inbound(
            NewInbound {
                id: CallSessionId::new("sess-1"),
                tenant: TenantId::new("tenant-1"),
                user: UserId::new("user-1"),
                caller_leg: CallControlId::new(CALLER),
                from: "+15550001111".to_owned(),
                to: "+15550002222".to_owned(),
                devices,
                busy,
                config,
            },
            t(0),
        )
        .expect("valid session");
        let mut h = H { s, log: Vec::new() };
        h.send(Input::Start, 0);
        h
    }

    fn inbound(config: SessionConfig) -> H {
        H::inbound_with(three_devices(), config, false)
    }

    fn outbound() -> H {
        let s = Session::new_outbound(
            NewOutbound {
                id: CallSessionId::new("out-1"),
                tenant: TenantId::new("tenant-1"),
                user: UserId::new("user-1"),
                device: target("web", "web"),
                from: "+15550002222".to_owned(),
                to: "+15553334444".to_owned(),
                config: SessionConfig::default(),
            },
            t(0),
        )
        .expect("valid session");
        let mut h = H { s, log: Vec::new() };
        h.send(Input::Start, 0);
        h
    }

    fn send(&mut self, input: Input, at: u64) -> Vec<Effect> {
        let fx = self.s.handle(input, t(at)).expect("input accepted");
        self.log.extend(fx.iter().cloned());
        fx
    }

    fn dial_id(&self, device: &str) -> String {
        self.log
            .iter()
            .find_map(|e| match e {
                Effect::Telnyx(Command {
                    command_id,
                    action:
                        Action::Dial {
                            device: Some(d), ..
                        },
                    ..
                }) if d.as_str() == device => Some(command_id.clone()),
                _ => None,
            })
            .expect("device was dialled")
    }

    fn pstn_dial_id(&self) -> String {
        self.log
            .iter()
            .find_map(|e| match e {
                Effect::Telnyx(Command {
                    command_id,
                    action: Action::Dial { device: None, .. },
                    ..
                }) => Some(command_id.clone()),
                _ => None,
            })
            .expect("pstn was dialled")
    }

    fn dial_ok(&mut self, device: &str, at: u64) -> Vec<Effect> {
        let command_id = self.dial_id(device);
        self.send(
            Input::DialResult {
                command_id,
                result: Ok(leg_ccid(device)),
            },
            at,
        )
    }

    fn all_dials_ok(&mut self, at: u64) {
        for d in ["ios", "android", "web"] {
            self.dial_ok(d, at);
        }
    }

    fn device_event(&mut self, device: &str, kind: ProviderEventKind, at: u64) -> Vec<Effect> {
        let cs = ClientStateRef {
            session: self.s.id().clone(),
            device: Some(dev(device)),
            leg: LEG_DEVICE.to_owned(),
            direction: None,
        };
        self.send(
            Input::Provider(ProviderEvent::new(leg_ccid(device), Some(cs), kind)),
            at,
        )
    }

    fn answered(&mut self, device: &str, at: u64) -> Vec<Effect> {
        self.device_event(device, ProviderEventKind::Answered, at)
    }

    fn caller_event(&mut self, kind: ProviderEventKind, at: u64) -> Vec<Effect> {
        self.send(Input::Provider(ProviderEvent::new(CALLER, None, kind)), at)
    }

    fn ok(&mut self, command_id: &str, at: u64) -> Vec<Effect> {
        self.send(
            Input::CommandResult {
                command_id: command_id.to_owned(),
                result: Ok(()),
            },
            at,
        )
    }

    fn err(&mut self, command_id: &str, at: u64) -> Vec<Effect> {
        self.send(
            Input::CommandResult {
                command_id: command_id.to_owned(),
                result: Err(CommandError::new("90034", "Call not answered yet")),
            },
            at,
        )
    }
}

fn hangup(cause: HangupCause) -> ProviderEventKind {
    ProviderEventKind::Hangup {
        cause,
        source: HangupSource::Unknown,
        quality: None,
    }
}

fn commands(fx: &[Effect]) -> Vec<&Command> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Telnyx(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn find_command(fx: &[Effect], pred: impl Fn(&Action) -> bool) -> Option<&Command> {
    commands(fx).into_iter().find(|c| pred(&c.action))
}

fn answer_of(fx: &[Effect]) -> Option<String> {
    find_command(fx, |a| matches!(a, Action::Answer { .. })).map(|c| c.command_id.clone())
}

fn bridge_of(fx: &[Effect]) -> Option<String> {
    find_command(fx, |a| matches!(a, Action::Bridge { .. })).map(|c| c.command_id.clone())
}

fn bridges(fx: &[Effect]) -> Vec<(CallControlId, CallControlId)> {
    commands(fx)
        .into_iter()
        .filter_map(|c| match &c.action {
            Action::Bridge { ccid, to_ccid } => Some((ccid.clone(), to_ccid.clone())),
            _ => None,
        })
        .collect()
}

/// Legs hung up or rejected, in order.
fn released(fx: &[Effect]) -> Vec<CallControlId> {
    commands(fx)
        .into_iter()
        .filter_map(|c| match &c.action {
            Action::Hangup { ccid } | Action::Reject { ccid, .. } => Some(ccid.clone()),
            _ => None,
        })
        .collect()
}

fn notifications(fx: &[Effect]) -> Vec<&Notification> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Notify(n) => Some(n),
            _ => None,
        })
        .collect()
}

fn ws_call_ended(fx: &[Effect]) -> Vec<DismissReason> {
    notifications(fx)
        .into_iter()
        .filter_map(|n| match (&n.channel, &n.event) {
            (Channel::WebSocket, NotifyEvent::CallEnded { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn push_call_ended(fx: &[Effect]) -> Vec<(String, DismissReason)> {
    notifications(fx)
        .into_iter()
        .filter_map(|n| match (&n.channel, &n.event) {
            (Channel::Push { device, .. }, NotifyEvent::CallEnded { reason, .. }) => {
                Some((device.to_string(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn finals(fx: &[Effect]) -> Vec<&CallRecordUpdate> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::History(h) if h.is_final => Some(h),
            _ => None,
        })
        .collect()
}

fn registry(fx: &[Effect]) -> Vec<&RegistryUpdate> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Registry(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Whether the effects leave the user's registry entry for this call in place: a `Set` that
/// no later `Clear` removed.
fn still_registered(fx: &[Effect]) -> bool {
    matches!(registry(fx).last(), Some(RegistryUpdate::Set(_)))
}

fn outbox(fx: &[Effect]) -> Vec<Effect> {
    fx.iter()
        .filter(|e| !matches!(e, Effect::Leg(_) | Effect::Timeline(_)))
        .cloned()
        .collect()
}

#[test]
fn start_dials_every_device_in_parallel_and_notifies() {
    let h = H::inbound(SessionConfig::default());
    let dials: Vec<_> = commands(&h.log)
        .into_iter()
        .filter_map(|c| match &c.action {
            Action::Dial {
                to,
                link_to,
                client_state,
                timeout_secs,
                device,
                ..
            } => Some((to, link_to, client_state, *timeout_secs, device)),
            _ => None,
        })
        .collect();
    assert_eq!(dials.len(), 3);
    for (to, link_to, cs, timeout, device) in dials {
        let d = device.as_ref().expect("device leg");
        assert_eq!(to, &format!("sip:{d}@sip.telnyx.com"));
        assert_eq!(link_to.as_ref().map(|c| c.as_str()), Some(CALLER));
        assert_eq!(cs.session.as_str(), "sess-1");
        assert_eq!(cs.device.as_ref(), Some(d));
        assert_eq!(cs.leg, LEG_DEVICE);
        assert_eq!(timeout, DEFAULT_RING_TIMEOUT_SECS);
    }
    // OnDeviceAnswer (the default) leaves the caller parked.
    assert!(answer_of(&h.log).is_none());
    let incoming: Vec<_> = notifications(&h.log)
        .into_iter()
        .filter(|n| n.event.name() == "incoming_call")
        .map(|n| n.channel.clone())
        .collect();
    assert_eq!(
        incoming.len(),
        3,
        "one websocket event and one push per mobile device"
    );
    assert_eq!(incoming[0], Channel::WebSocket);
    assert!(incoming.contains(&Channel::Push {
        device: dev("ios"),
        platform: "ios".to_owned()
    }));
    assert!(incoming.contains(&Channel::Push {
        device: dev("android"),
        platform: "android".to_owned()
    }));
    assert_eq!(h.s.status(), SessionStatus::Ringing);
    assert_eq!(h.s.next_deadline(), Some(t(30_000)));
    assert_eq!(
        h.s.status_for(&dev("web")).unwrap().status,
        DeviceStatus::Ringing
    );
}

#[test]
fn three_devices_one_answers_one_bridge_two_hangups_answered_elsewhere() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    let fx = h.answered("android", 2_000);
    // The parked caller is answered first; the bridge waits for that answer.
    let answer = answer_of(&fx).expect("caller answered on device answer");
    assert!(bridge_of(&fx).is_none());
    assert_eq!(released(&fx), vec![leg_ccid("ios"), leg_ccid("web")]);
    let winner = DismissReason::AnsweredElsewhere {
        device_id: dev("android"),
    };
    assert_eq!(ws_call_ended(&fx), vec![winner.clone()]);
    assert_eq!(
        push_call_ended(&fx),
        vec![("ios".to_owned(), winner.clone())]
    );
    assert_eq!(h.s.status(), SessionStatus::Answered);

    let fx = h.ok(&answer, 2_100);
    assert_eq!(
        bridges(&fx),
        vec![(CallControlId::new(CALLER), leg_ccid("android"))]
    );
    let bridge = bridge_of(&fx).unwrap();
    let fx = h.ok(&bridge, 2_200);
    assert_eq!(h.s.status(), SessionStatus::Bridged);
    match registry(&fx).as_slice() {
        [RegistryUpdate::Set(active)] => {
            assert_eq!(active.device, dev("android"));
            assert_eq!(active.call_session_id.as_str(), "sess-1");
        }
        other => panic!("expected one registry set, got {other:?}"),
    }
    // Both legs report call.bridged: harmless.
    assert!(outbox(&h.caller_event(ProviderEventKind::Bridged, 2_300)).is_empty());

    for d in ["ios", "web"] {
        let st = h.s.status_for(&dev(d)).unwrap();
        assert_eq!(st.status, DeviceStatus::AnsweredElsewhere);
        assert_eq!(st.device_id, Some(dev("android")));
        assert_eq!(st.reason, Some(winner.clone()));
    }
    assert_eq!(
        h.s.status_for(&dev("android")).unwrap().status,
        DeviceStatus::AnsweredHere
    );
    assert_eq!(bridges(&h.log).len(), 1);
    assert_eq!(h.s.next_deadline(), None);
}

#[test]
fn second_answer_is_hung_up_never_bridged() {
    let mut h = H::inbound(SessionConfig {
        caller_answer: CallerAnswer::Immediately,
        ..SessionConfig::default()
    });
    let answer = answer_of(&h.log).expect("answered at start");
    h.ok(&answer, 50);
    h.all_dials_ok(100);
    let first = h.answered("ios", 1_000);
    assert_eq!(
        bridges(&first),
        vec![(CallControlId::new(CALLER), leg_ccid("ios"))]
    );
    let second = h.answered("web", 1_010);
    // web's leg was already hung up by the first answer; the second answer adds nothing.
    assert!(bridges(&second).is_empty());
    assert!(released(&second).is_empty());
    assert_eq!(bridges(&h.log).len(), 1);
    let web_hangups = released(&h.log)
        .into_iter()
        .filter(|c| *c == leg_ccid("web"))
        .count();
    assert_eq!(web_hangups, 1);
    assert_eq!(h.s.answered_device(), Some(&dev("ios")));
}

#[test]
fn answer_racing_dial_response_still_bridges_and_no_redial() {
    let mut h = H::inbound(SessionConfig {
        caller_answer: CallerAnswer::Immediately,
        ..SessionConfig::default()
    });
    let answer = answer_of(&h.log).unwrap();
    h.ok(&answer, 10);
    // No dial result has arrived yet: the webhook's client_state finds the leg.
    let fx = h.answered("web", 500);
    assert_eq!(
        bridges(&fx),
        vec![(CallControlId::new(CALLER), leg_ccid("web"))]
    );
    // Other legs' ids are unknown: their hangups wait for the dial results.
    assert!(released(&fx).is_empty());
    let fx = h.dial_ok("web", 600);
    assert!(
        commands(&fx).is_empty(),
        "late dial result neither re-dials nor hangs up"
    );
    let fx = h.dial_ok("ios", 700);
    assert_eq!(released(&fx), vec![leg_ccid("ios")]);
    let fx = h.dial_ok("android", 800);
    assert_eq!(released(&fx), vec![leg_ccid("android")]);
    let dials = commands(&h.log)
        .into_iter()
        .filter(|c| matches!(c.action, Action::Dial { .. }))
        .count();
    assert_eq!(dials, 3);
    // A repeated dial result changes nothing.
    assert!(h.dial_ok("ios", 900).is_empty());
}

#[test]
fn caller_cancel_hangs_up_every_leg_and_is_missed() {
    let mut h = H::inbound(SessionConfig::default());
    h.dial_ok("ios", 100);
    h.dial_ok("android", 100);
    let fx = h.caller_event(hangup(HangupCause::OriginatorCancel), 5_000);
    assert_eq!(released(&fx), vec![leg_ccid("ios"), leg_ccid("android")]);
    assert_eq!(ws_call_ended(&fx), vec![DismissReason::CallerCancelled]);
    assert_eq!(push_call_ended(&fx).len(), 2);
    let f = finals(&fx);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, SessionStatus::Missed);
    assert_eq!(f[0].hangup_cause, Some(HangupCause::OriginatorCancel));
    assert_eq!(f[0].dismiss_reason, Some(DismissReason::CallerCancelled));
    assert!(h.s.is_closed());
    assert_eq!(h.s.next_deadline(), None);
    // The web leg's dial result arrives late: it is hung up at once, nothing else.
    let fx = h.dial_ok("web", 5_100);
    assert_eq!(released(&fx), vec![leg_ccid("web")]);
    assert!(finals(&fx).is_empty());
    assert_eq!(
        h.s.status_for(&dev("web")).unwrap().status,
        DeviceStatus::Missed
    );
    assert!(bridges(&h.log).is_empty());
}

#[test]
fn ring_timeout_without_voicemail_is_missed() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    assert!(
        h.send(Input::Tick, 29_999).is_empty(),
        "early tick is harmless"
    );
    let fx = h.send(Input::Tick, 30_000);
    let mut expected: Vec<_> = ["ios", "android", "web"].map(leg_ccid).to_vec();
    expected.push(CallControlId::new(CALLER));
    assert_eq!(released(&fx), expected);
    assert_eq!(ws_call_ended(&fx), vec![DismissReason::Timeout]);
    assert_eq!(finals(&fx)[0].status, SessionStatus::Missed);
    assert!(
        h.send(Input::Tick, 30_001).is_empty(),
        "second tick is harmless"
    );
}

#[test]
fn ring_timeout_goes_to_voicemail_and_attaches_recording() {
    let mut h = H::inbound(voicemail_config());
    h.all_dials_ok(100);
    let fx = h.send(Input::Tick, 30_000);
    assert_eq!(released(&fx).len(), 3, "device legs hung up, caller kept");
    assert_eq!(ws_call_ended(&fx), vec![DismissReason::Timeout]);
    assert_eq!(h.s.status(), SessionStatus::Voicemail);
    let answer = answer_of(&fx).expect("caller answered for voicemail");
    assert!(finals(&fx).is_empty());

    let fx = h.ok(&answer, 30_200);
    let speak = find_command(&fx, |a| matches!(a, Action::Speak { .. })).expect("greeting");
    assert!(matches!(&speak.action, Action::Speak { text, .. } if text == "Leave a message"));
    // The caller's call.answered webhook duplicates the command result: nothing new.
    assert!(commands(&h.caller_event(ProviderEventKind::Answered, 30_250)).is_empty());

    let fx = h.caller_event(ProviderEventKind::SpeakEnded, 33_000);
    assert!(find_command(&fx, |a| matches!(a, Action::RecordStart { .. })).is_some());
    assert!(h
        .caller_event(ProviderEventKind::SpeakEnded, 33_001)
        .is_empty());

    let fx = h.caller_event(hangup(HangupCause::NormalClearing), 50_000);
    assert!(finals(&fx).is_empty(), "final row waits for the recording");
    assert_eq!(h.s.next_deadline(), Some(t(80_000)));
    let fx = h.caller_event(
        ProviderEventKind::RecordingSaved {
            url: "https://rec.example/1.mp3".to_owned(),
        },
        52_000,
    );
    let f = finals(&fx);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, SessionStatus::Voicemail);
    assert_eq!(
        f[0].recording_url.as_deref(),
        Some("https://rec.example/1.mp3")
    );
    assert_eq!(f[0].dismiss_reason, Some(DismissReason::Timeout));
    assert!(commands(&fx).is_empty(), "caller already gone");
    assert_eq!(
        h.s.status_for(&dev("ios")).unwrap().status,
        DeviceStatus::Missed
    );
    assert_eq!(finals(&h.log).len(), 1);
}

#[test]
fn voicemail_caller_who_never_records_is_missed() {
    let mut h = H::inbound(voicemail_config());
    h.all_dials_ok(100);
    let answer = answer_of(&h.send(Input::Tick, 30_000)).unwrap();
    h.ok(&answer, 30_100);
    let fx = h.caller_event(hangup(HangupCause::NormalClearing), 31_000);
    assert_eq!(finals(&fx)[0].status, SessionStatus::Missed);
    assert!(finals(&fx)[0].recording_url.is_none());
}

#[test]
fn voicemail_recording_that_never_arrives_closes_after_the_wait() {
    let mut h = H::inbound(voicemail_config());
    h.all_dials_ok(100);
    let answer = answer_of(&h.send(Input::Tick, 30_000)).unwrap();
    h.ok(&answer, 30_100);
    h.caller_event(ProviderEventKind::SpeakEnded, 33_000);
    h.caller_event(hangup(HangupCause::NormalClearing), 40_000);
    assert!(h.send(Input::Tick, 69_999).is_empty());
    let fx = h.send(Input::Tick, 70_000);
    assert_eq!(finals(&fx)[0].status, SessionStatus::Missed);
    // A recording that shows up after the final row changes nothing.
    let late = h.caller_event(
        ProviderEventKind::RecordingSaved {
            url: "https://rec.example/late.mp3".to_owned(),
        },
        71_000,
    );
    assert!(late.is_empty());
}

#[test]
fn bridge_failure_is_retried_once_after_the_deadline() {
    let mut h = H::inbound(SessionConfig {
        caller_answer: CallerAnswer::Immediately,
        ..SessionConfig::default()
    });
    let answer = answer_of(&h.log).unwrap();
    h.ok(&answer, 10);
    h.all_dials_ok(100);
    let first = bridge_of(&h.answered("ios", 1_000)).unwrap();
    let fx = h.err(&first, 1_100);
    assert!(commands(&fx).is_empty(), "no immediate retry");
    assert_eq!(h.s.next_deadline(), Some(t(1_600)));
    assert!(h.send(Input::Tick, 1_599).is_empty());
    let fx = h.send(Input::Tick, 1_600);
    let second = bridge_of(&fx).expect("bridge retried");
    assert_ne!(second, first);
    assert!(
        h.send(Input::Tick, 1_601).is_empty(),
        "no third attempt from a double tick"
    );
    h.ok(&second, 1_700);
    assert_eq!(h.s.status(), SessionStatus::Bridged);
    assert_eq!(bridges(&h.log).len(), 2);
}

#[test]
fn bridge_failing_twice_cleans_everything_up() {
    let mut h = H::inbound(SessionConfig {
        caller_answer: CallerAnswer::Immediately,
        ..SessionConfig::default()
    });
    let answer = answer_of(&h.log).unwrap();
    h.ok(&answer, 10);
    h.all_dials_ok(100);
    let first = bridge_of(&h.answered("ios", 1_000)).unwrap();
    h.err(&first, 1_100);
    let second = bridge_of(&h.send(Input::Tick, 1_600)).unwrap();
    let fx = h.err(&second, 1_700);
    assert_eq!(
        released(&fx),
        vec![CallControlId::new(CALLER), leg_ccid("ios")],
        "the other legs were hung up at answer time"
    );
    let f = finals(&fx);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, SessionStatus::Failed);
    assert!(f[0]
        .failure
        .as_deref()
        .unwrap()
        .contains("bridge failed twice"));
    assert!(
        !still_registered(&h.log),
        "never bridged; the entry set at answer time is gone"
    );
    assert_eq!(h.s.next_deadline(), None);
    // Every leg got exactly one hangup over the whole call.
    let mut all = released(&h.log);
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n);
    assert_eq!(n, 4);
}

#[test]
fn end_of_bridged_call_hangs_up_other_side_and_clears_registry() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    let answer = answer_of(&h.answered("web", 1_000)).unwrap();
    let bridge = bridge_of(&h.ok(&answer, 1_100)).unwrap();
    h.ok(&bridge, 1_200);
    let quality = serde_json::json!({"inbound": {"mos": "4.3"}});
    let fx = h.device_event(
        "web",
        ProviderEventKind::Hangup {
            cause: HangupCause::NormalClearing,
            source: HangupSource::Callee,
            quality: Some(quality.clone()),
        },
        60_000,
    );
    assert_eq!(released(&fx), vec![CallControlId::new(CALLER)]);
    assert!(matches!(
        registry(&fx).as_slice(),
        [RegistryUpdate::Clear { call_session_id, .. }] if call_session_id.as_str() == "sess-1"
    ));
    let f = finals(&fx);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, SessionStatus::Ended);
    assert_eq!(f[0].answered_device, Some(dev("web")));
    assert_eq!(f[0].bridged_at, Some(t(1_200)));
    assert_eq!(f[0].ended_at, Some(t(60_000)));
    assert_eq!(f[0].quality, Some(quality));
    // Every later webhook is a no-op (the caller's hangup only updates its leg row).
    let fx = h.caller_event(hangup(HangupCause::NormalClearing), 60_100);
    assert!(outbox(&fx).is_empty());
    assert!(h
        .caller_event(hangup(HangupCause::NormalClearing), 60_200)
        .is_empty());
    assert!(outbox(&h.answered("ios", 60_300)).is_empty());
    assert!(h.send(Input::Tick, 90_000).is_empty());
    assert_eq!(
        h.s.status_for(&dev("web")).unwrap().status,
        DeviceStatus::Ended
    );
}

#[test]
fn decline_ends_ringing_everywhere_and_is_not_missed() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    let fx = h.send(Input::DeviceDecline { device: dev("ios") }, 3_000);
    let reason = DismissReason::DeclinedElsewhere {
        device_id: dev("ios"),
    };
    assert_eq!(ws_call_ended(&fx), vec![reason.clone()]);
    assert_eq!(
        push_call_ended(&fx),
        vec![("android".to_owned(), reason.clone())]
    );
    let caller_reject = find_command(
        &fx,
        |a| matches!(a, Action::Reject { ccid, cause: RejectCause::UserBusy } if ccid.as_str() == CALLER),
    );
    assert!(
        caller_reject.is_some(),
        "unanswered caller is rejected busy"
    );
    assert_eq!(released(&fx).len(), 4);
    assert_eq!(finals(&fx)[0].status, SessionStatus::Declined);
    let web = h.s.status_for(&dev("web")).unwrap();
    assert_eq!(web.status, DeviceStatus::DeclinedElsewhere);
    assert_eq!(web.device_id, Some(dev("ios")));
    assert_eq!(
        h.s.status_for(&dev("ios")).unwrap().status,
        DeviceStatus::Ended
    );
    // Repeating the decline is accepted and changes nothing; another device gets NotRinging.
    assert!(h
        .send(Input::DeviceDecline { device: dev("ios") }, 3_100)
        .is_empty());
    let err =
        h.s.handle(Input::DeviceDecline { device: dev("web") }, t(3_200))
            .unwrap_err();
    assert_eq!(
        err,
        SessionError::NotRinging {
            status: SessionStatus::Declined
        }
    );
}

#[test]
fn ignore_stops_one_device_and_all_ignored_is_missed() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    let fx = h.send(Input::DeviceIgnore { device: dev("ios") }, 1_000);
    assert_eq!(released(&fx), vec![leg_ccid("ios")]);
    assert!(notifications(&fx).is_empty());
    assert_eq!(h.s.status(), SessionStatus::Ringing);
    assert!(h
        .send(Input::DeviceIgnore { device: dev("ios") }, 1_001)
        .is_empty());
    h.send(
        Input::DeviceIgnore {
            device: dev("android"),
        },
        1_100,
    );
    let fx = h.send(Input::DeviceIgnore { device: dev("web") }, 1_200);
    assert_eq!(
        released(&fx),
        vec![leg_ccid("web"), CallControlId::new(CALLER)]
    );
    assert_eq!(ws_call_ended(&fx), vec![DismissReason::Timeout]);
    assert!(
        push_call_ended(&fx).is_empty(),
        "every device ignored it already"
    );
    assert_eq!(finals(&fx)[0].status, SessionStatus::Missed);
}

#[test]
fn all_dials_failing_goes_to_voicemail() {
    let mut h = H::inbound(voicemail_config());
    for d in ["ios", "android", "web"] {
        let command_id = h.dial_id(d);
        h.send(
            Input::DialResult {
                command_id,
                result: Err(CommandError::new("10015", "bad request")),
            },
            100,
        );
    }
    assert_eq!(h.s.status(), SessionStatus::Voicemail);
    assert!(answer_of(&h.log).is_some());
}

#[test]
fn busy_user_rejects_caller_without_ringing() {
    let h = H::inbound_with(three_devices(), SessionConfig::default(), true);
    let cmds = commands(&h.log);
    assert_eq!(cmds.len(), 1);
    assert!(matches!(
        cmds[0].action,
        Action::Reject {
            cause: RejectCause::UserBusy,
            ..
        }
    ));
    assert!(notifications(&h.log).is_empty());
    assert_eq!(finals(&h.log)[0].status, SessionStatus::Busy);
    assert_eq!(
        h.s.status_for(&dev("ios")).unwrap().status,
        DeviceStatus::Ended
    );
}

#[test]
fn user_without_devices_is_missed_at_once() {
    let h = H::inbound_with(Vec::new(), SessionConfig::default(), false);
    assert_eq!(released(&h.log), vec![CallControlId::new(CALLER)]);
    assert_eq!(finals(&h.log)[0].status, SessionStatus::Missed);
}

#[test]
fn reordered_and_duplicated_webhooks_give_the_clean_outcome() {
    // Clean run: dial results, initiated, android answers, caller answered, bridged, hangup.
    let clean = {
        let mut h = H::inbound(SessionConfig::default());
        h.all_dials_ok(100);
        for d in ["ios", "android", "web"] {
            h.device_event(d, ProviderEventKind::Initiated, 200);
        }
        let answer = answer_of(&h.answered("android", 1_000)).unwrap();
        h.caller_event(ProviderEventKind::Answered, 1_100);
        h.ok(&answer, 1_150);
        h.device_event("android", ProviderEventKind::Bridged, 1_200);
        h.caller_event(ProviderEventKind::Bridged, 1_200);
        for d in ["ios", "web"] {
            h.device_event(d, hangup(HangupCause::NormalClearing), 1_300);
        }
        h.caller_event(hangup(HangupCause::NormalClearing), 9_000);
        h.device_event("android", hangup(HangupCause::NormalClearing), 9_100);
        h
    };
    // Noisy run: the answer overtakes dial results and initiated events, everything twice.
    let noisy = {
        let mut h = H::inbound(SessionConfig::default());
        h.dial_ok("ios", 100);
        let answer = answer_of(&h.answered("android", 1_000)).unwrap();
        h.answered("android", 1_000);
        h.device_event("android", ProviderEventKind::Initiated, 1_000);
        h.dial_ok("android", 1_000);
        h.dial_ok("web", 1_000);
        h.dial_ok("web", 1_000);
        h.device_event("web", ProviderEventKind::Initiated, 1_000);
        h.ok(&answer, 1_100);
        h.caller_event(ProviderEventKind::Answered, 1_150);
        h.caller_event(ProviderEventKind::Answered, 1_150);
        h.caller_event(ProviderEventKind::Bridged, 1_200);
        h.device_event("android", ProviderEventKind::Bridged, 1_200);
        h.device_event("android", ProviderEventKind::Bridged, 1_200);
        for d in ["web", "ios", "web"] {
            h.device_event(d, hangup(HangupCause::NormalClearing), 1_300);
        }
        h.device_event("ios", ProviderEventKind::Initiated, 1_300);
        h.caller_event(hangup(HangupCause::NormalClearing), 9_000);
        h.caller_event(hangup(HangupCause::NormalClearing), 9_000);
        h.device_event("android", hangup(HangupCause::NormalClearing), 9_100);
        h.send(Input::Tick, 40_000);
        h
    };
    // Which legs were seen ringing before the answer depends on the order, and so do the
    // versions and the published previous states; everything else must match.
    let norm = |fx: &[Effect]| {
        let mut v: Vec<String> = outbox(fx)
            .iter()
            .filter(|e| !matches!(e, Effect::History(h) if !h.is_final))
            .filter(|e| {
                !matches!(e, Effect::Notify(n) if matches!(n.event,
                    NotifyEvent::CallStateChanged { state: CallState::RingingInbound, .. }))
            })
            .map(|e| {
                let mut e = serde_json::to_value(e).unwrap();
                if let Some(event) = e.get_mut("event").and_then(|v| v.as_object_mut()) {
                    event.remove("version");
                    event.remove("previous_state");
                }
                e.to_string()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(norm(&clean.log), norm(&noisy.log));
    assert_eq!(finals(&noisy.log).len(), 1);
    assert_eq!(clean.s.status(), noisy.s.status());
}

#[test]
fn serde_round_trip_mid_call_behaves_identically() {
    let mut h = H::inbound(voicemail_config());
    h.dial_ok("ios", 100);
    h.answered("android", 1_000);
    let json = serde_json::to_string(&h.s).unwrap();
    let mut restored: Session = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, h.s);
    let answer = answer_of(&h.log).unwrap();
    let inputs = vec![
        (
            Input::CommandResult {
                command_id: answer,
                result: Ok(()),
            },
            1_100,
        ),
        (
            Input::DialResult {
                command_id: h.dial_id("web"),
                result: Ok(leg_ccid("web")),
            },
            1_150,
        ),
        (
            Input::Provider(ProviderEvent::new(
                CALLER,
                None,
                hangup(HangupCause::NormalClearing),
            )),
            5_000,
        ),
        (Input::Tick, 60_000),
    ];
    for (input, at) in inputs {
        let a = h.s.handle(input.clone(), t(at)).unwrap();
        let b = restored.handle(input, t(at)).unwrap();
        assert_eq!(a, b);
        assert_eq!(h.s, restored);
    }
    assert!(h.s.is_closed());
}

#[test]
fn command_ids_are_unique_and_deterministic() {
    let run = || {
        let mut h = H::inbound(SessionConfig::default());
        h.all_dials_ok(100);
        let answer = answer_of(&h.answered("ios", 1_000)).unwrap();
        let bridge = bridge_of(&h.ok(&answer, 1_100)).unwrap();
        h.err(&bridge, 1_200);
        h.send(Input::Tick, 1_700);
        h.caller_event(hangup(HangupCause::NormalClearing), 2_000);
        commands(&h.log)
            .into_iter()
            .map(|c| c.command_id.clone())
            .collect::<Vec<_>>()
    };
    let a = run();
    assert_eq!(a, run());
    let mut sorted = a.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), a.len());
    assert!(a.iter().all(|id| id.starts_with("sess-1:")));
}

#[test]
fn refused_inputs_change_nothing() {
    let mut h = H::inbound(SessionConfig::default());
    let before = h.s.clone();
    let cases = vec![
        (
            Input::DeviceDecline {
                device: dev("stranger"),
            },
            SessionError::UnknownDevice {
                device: dev("stranger"),
            },
        ),
        (
            Input::CommandResult {
                command_id: "sess-1:99".to_owned(),
                result: Ok(()),
            },
            SessionError::UnknownCommand {
                command_id: "sess-1:99".to_owned(),
            },
        ),
        (
            Input::Provider(ProviderEvent::new(
                "nobody",
                None,
                ProviderEventKind::Answered,
            )),
            SessionError::UnknownLeg {
                call_control_id: Some(CallControlId::new("nobody")),
            },
        ),
        (
            Input::Provider(ProviderEvent::new(
                "x",
                Some(ClientStateRef {
                    session: CallSessionId::new("other"),
                    device: Some(dev("ios")),
                    leg: LEG_DEVICE.to_owned(),
                    direction: None,
                }),
                ProviderEventKind::Answered,
            )),
            SessionError::WrongSession {
                got: CallSessionId::new("other"),
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(h.s.handle(input, t(10)).unwrap_err(), expected);
        assert_eq!(h.s, before);
    }
    let long = "x".repeat(MAX_URL_LEN + 1);
    let err = h.s.handle(
        Input::Provider(ProviderEvent::new(
            CALLER,
            None,
            ProviderEventKind::RecordingSaved { url: long },
        )),
        t(10),
    );
    assert!(matches!(err, Err(SessionError::Invalid(_))));
    assert_eq!(h.s, before);
    // A webhook naming a device leg whose id is known but different is not ours.
    h.dial_ok("ios", 20);
    let err = h.s.handle(
        Input::Provider(ProviderEvent::new(
            "imposter",
            Some(ClientStateRef {
                session: CallSessionId::new("sess-1"),
                device: Some(dev("ios")),
                leg: LEG_DEVICE.to_owned(),
                direction: None,
            }),
            ProviderEventKind::Answered,
        )),
        t(30),
    );
    assert!(matches!(err, Err(SessionError::UnknownLeg { .. })));
}

#[test]
fn inputs_before_start_are_refused() {
    let mut s = Session::new_inbound(
        NewInbound {
            id: CallSessionId::new("s"),
            tenant: TenantId::new("t"),
            user: UserId::new("u"),
            caller_leg: CallControlId::new(CALLER),
            from: "+1".to_owned(),
            to: "+2".to_owned(),
            devices: three_devices(),
            busy: false,
            config: SessionConfig::default(),
        },
        t(0),
    )
    .unwrap();
    assert_eq!(s.handle(Input::Tick, t(1)), Err(SessionError::NotStarted));
    assert!(!s.handle(Input::Start, t(2)).unwrap().is_empty());
    assert!(s.handle(Input::Start, t(3)).unwrap().is_empty());
}

#[test]
fn invalid_construction_is_refused() {
    let base = NewInbound {
        id: CallSessionId::new("s"),
        tenant: TenantId::new("t"),
        user: UserId::new("u"),
        caller_leg: CallControlId::new(CALLER),
        from: "+1".to_owned(),
        to: "+2".to_owned(),
        devices: three_devices(),
        busy: false,
        config: SessionConfig::default(),
    };
    let mut dup = base.clone();
    dup.devices.push(target("ios", "ios"));
    assert!(Session::new_inbound(dup, t(0)).is_err());
    let mut bad_timeout = base.clone();
    bad_timeout.config.ring_timeout_secs = 2;
    assert!(Session::new_inbound(bad_timeout, t(0)).is_err());
    let mut too_many = base.clone();
    too_many.devices = (0..=MAX_DEVICES)
        .map(|i| target(&format!("d{i}"), "web"))
        .collect();
    assert!(Session::new_inbound(too_many, t(0)).is_err());
    let mut empty_from = base;
    empty_from.from = String::new();
    assert!(Session::new_inbound(empty_from, t(0)).is_err());
}

#[test]
fn outbound_dials_device_then_destination_and_bridges() {
    let mut h = H::outbound();
    let dial = find_command(&h.log, |a| matches!(a, Action::Dial { .. })).unwrap();
    assert!(
        matches!(&dial.action, Action::Dial { to, link_to: None, .. } if to == "sip:web@sip.telnyx.com")
    );
    h.dial_ok("web", 100);
    let fx = h.answered("web", 2_000);
    let pstn =
        find_command(&fx, |a| matches!(a, Action::Dial { .. })).expect("destination dialled");
    match &pstn.action {
        Action::Dial {
            to,
            from,
            link_to,
            client_state,
            ..
        } => {
            assert_eq!(to, "+15553334444");
            assert_eq!(from, "+15550002222");
            assert_eq!(link_to.as_ref(), Some(&leg_ccid("web")));
            assert_eq!(client_state.leg, LEG_PSTN);
        }
        _ => unreachable!(),
    }
    assert_eq!(
        h.s.status_for(&dev("web")).unwrap().status,
        DeviceStatus::Ringing
    );
    let pstn_id = h.pstn_dial_id();
    h.send(
        Input::DialResult {
            command_id: pstn_id,
            result: Ok(CallControlId::new("pstn-1")),
        },
        2_100,
    );
    let fx = h.send(
        Input::Provider(ProviderEvent::new(
            "pstn-1",
            None,
            ProviderEventKind::Answered,
        )),
        6_000,
    );
    assert_eq!(
        bridges(&fx),
        vec![(leg_ccid("web"), CallControlId::new("pstn-1"))]
    );
    let fx = h.send(
        Input::Provider(ProviderEvent::new(
            "pstn-1",
            None,
            ProviderEventKind::Bridged,
        )),
        6_100,
    );
    assert!(
        matches!(registry(&fx).as_slice(), [RegistryUpdate::Set(a)] if a.remote == "+15553334444")
    );
    assert_eq!(
        h.s.status_for(&dev("web")).unwrap().status,
        DeviceStatus::AnsweredHere
    );
    let fx = h.send(
        Input::Provider(ProviderEvent::new(
            "pstn-1",
            None,
            hangup(HangupCause::NormalClearing),
        )),
        60_000,
    );
    assert_eq!(released(&fx), vec![leg_ccid("web")]);
    assert_eq!(registry(&fx).len(), 1);
    assert_eq!(finals(&fx)[0].status, SessionStatus::Ended);
    assert_eq!(finals(&fx)[0].answered_device, Some(dev("web")));
}

#[test]
fn outbound_busy_destination_hangs_up_the_device() {
    let mut h = H::outbound();
    h.dial_ok("web", 100);
    h.answered("web", 1_000);
    // The destination's events overtake its dial result.
    let cs = ClientStateRef {
        session: CallSessionId::new("out-1"),
        device: None,
        leg: LEG_PSTN.to_owned(),
        direction: None,
    };
    let fx = h.send(
        Input::Provider(ProviderEvent::new(
            "pstn-1",
            Some(cs),
            hangup(HangupCause::UserBusy),
        )),
        3_000,
    );
    assert_eq!(released(&fx), vec![leg_ccid("web")]);
    let f = finals(&fx);
    assert_eq!(f[0].status, SessionStatus::Ended);
    assert_eq!(f[0].hangup_cause, Some(HangupCause::UserBusy));
    assert!(f[0].answered_at.is_none());
    assert!(!still_registered(&h.log));
}

#[test]
fn outbound_device_not_answering_times_out() {
    let mut h = H::outbound();
    h.dial_ok("web", 100);
    let fx = h.send(Input::Tick, 30_000);
    assert_eq!(released(&fx), vec![leg_ccid("web")]);
    assert_eq!(finals(&fx)[0].hangup_cause, Some(HangupCause::Timeout));
    assert!(
        h.s.handle(Input::DeviceDecline { device: dev("ios") }, t(30_001))
            .is_err(),
        "other devices are not part of an outbound call"
    );
}

#[test]
fn effects_and_inputs_round_trip_through_json() {
    let mut h = H::inbound(voicemail_config());
    h.all_dials_ok(100);
    h.send(Input::DeviceIgnore { device: dev("web") }, 500);
    h.answered("ios", 1_000);
    for e in &h.log {
        let json = serde_json::to_string(e).unwrap();
        let back: Effect = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, e, "{json}");
    }
    let ended = serde_json::to_value(NotifyEvent::CallEnded {
        reason: DismissReason::AnsweredElsewhere {
            device_id: dev("ios"),
        },
        version: 3,
    })
    .unwrap();
    assert_eq!(
        ended,
        serde_json::json!({"event": "call_ended", "reason": "answered_elsewhere", "device_id": "ios", "version": 3})
    );
    let inputs = vec![
        Input::Tick,
        Input::DialResult {
            command_id: "a:1".to_owned(),
            result: Err(CommandError::new("90018", "Call has already ended")),
        },
        Input::Provider(ProviderEvent::new(
            "c",
            None,
            ProviderEventKind::Hangup {
                cause: HangupCause::from_wire("something_new"),
                source: HangupSource::from_wire("caller"),
                quality: Some(serde_json::json!({"mos": "4.1"})),
            },
        )),
    ];
    for i in inputs {
        let back: Input = serde_json::from_str(&serde_json::to_string(&i).unwrap()).unwrap();
        assert_eq!(back, i);
    }
    let unknown: HangupCause = serde_json::from_str("\"brand_new_cause\"").unwrap();
    assert_eq!(unknown, HangupCause::Unspecified);
}

fn timeline_events(fx: &[Effect]) -> Vec<&str> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Timeline(t) => Some(t.event.as_str()),
            _ => None,
        })
        .collect()
}

fn leg_updates<'a>(fx: &'a [Effect], device: &str) -> Vec<&'a LegUpdate> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Leg(l) if l.device.as_ref().map(DeviceId::as_str) == Some(device) => Some(l),
            _ => None,
        })
        .collect()
}

fn dial_fails(h: &mut H, device: &str, at: u64) {
    let command_id = h.dial_id(device);
    h.send(
        Input::DialResult {
            command_id,
            result: Err(CommandError::new("timeout", "request timed out")),
        },
        at,
    );
}

/// The caller's answer can reach Telnyx after the caller hung up (a node crashed before
/// sending it) and fail with "call already ended" before the caller's hangup webhook arrives.
#[test]
fn a_caller_answer_refused_because_the_caller_hung_up_is_a_missed_call() {
    let mut h = H::inbound(SessionConfig {
        caller_answer: CallerAnswer::Immediately,
        ..SessionConfig::default()
    });
    let answer = answer_of(&h.log).expect("answered at start");
    h.all_dials_ok(100);
    let fx = h.send(
        Input::CommandResult {
            command_id: answer,
            result: Err(CommandError::call_ended("Call has already ended")),
        },
        3_000,
    );
    assert_eq!(h.s.status(), SessionStatus::Missed);
    assert_eq!(ws_call_ended(&fx), vec![DismissReason::CallerCancelled]);
    assert_eq!(push_call_ended(&fx).len(), 2);
    // Every device stops ringing; the caller's leg is already gone and is left alone.
    assert_eq!(
        released(&fx),
        vec![leg_ccid("ios"), leg_ccid("android"), leg_ccid("web")]
    );
    let f = finals(&fx);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, SessionStatus::Missed);
    assert_eq!(f[0].dismiss_reason, Some(DismissReason::CallerCancelled));
    assert_eq!(f[0].failure, None);
    for d in ["ios", "android", "web"] {
        assert_eq!(
            h.s.status_for(&dev(d)).unwrap().status,
            DeviceStatus::Missed
        );
    }
    assert!(h.s.is_closed());
    assert_eq!(h.s.next_deadline(), None);
    // The caller's hangup webhook comes late: it only completes the caller's leg row.
    let fx = h.caller_event(hangup(HangupCause::OriginatorCancel), 3_200);
    assert!(outbox(&fx).is_empty(), "{fx:?}");
    let caller_rows: Vec<&LegUpdate> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Leg(l) if l.device.is_none() => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(caller_rows.len(), 1);
    assert_eq!(caller_rows[0].state, LegState::Ended);
    assert_eq!(
        caller_rows[0].hangup_cause,
        Some(HangupCause::OriginatorCancel)
    );
    assert_eq!(h.s.status(), SessionStatus::Missed);
}

/// Any other refusal of the caller's answer while ringing leaves nothing to connect: the devices
/// show a missed call, the history records a missed call with the reason.
#[test]
fn a_caller_answer_refused_while_ringing_ends_a_missed_call_with_the_reason() {
    let mut h = H::inbound(SessionConfig {
        caller_answer: CallerAnswer::Immediately,
        ..SessionConfig::default()
    });
    let answer = answer_of(&h.log).expect("answered at start");
    h.all_dials_ok(100);
    let fx = h.send(
        Input::CommandResult {
            command_id: answer,
            result: Err(CommandError::new("90015", "Invalid Call Control ID")),
        },
        3_000,
    );
    assert_eq!(h.s.status(), SessionStatus::Missed);
    assert_eq!(ws_call_ended(&fx), vec![DismissReason::CallerCancelled]);
    // The caller's leg may still be up: it is hung up with the devices'.
    assert_eq!(
        released(&fx),
        vec![
            leg_ccid("ios"),
            leg_ccid("android"),
            leg_ccid("web"),
            CallControlId::new(CALLER)
        ]
    );
    let f = finals(&fx);
    assert_eq!(f[0].status, SessionStatus::Missed);
    assert!(f[0]
        .failure
        .as_deref()
        .unwrap()
        .contains("Invalid Call Control ID"));
}

#[test]
fn bridge_without_a_result_is_retried_then_cleaned_up() {
    let mut h = H::inbound(SessionConfig {
        caller_answer: CallerAnswer::Immediately,
        bridge_timeout_ms: 2_000,
        ..SessionConfig::default()
    });
    let answer = answer_of(&h.log).unwrap();
    h.ok(&answer, 10);
    h.all_dials_ok(100);
    let first = bridge_of(&h.answered("ios", 1_000)).unwrap();
    assert_eq!(h.s.status(), SessionStatus::Answered);
    assert_eq!(h.s.next_deadline(), Some(t(3_000)));
    assert!(h.send(Input::Tick, 2_999).is_empty());
    // The first bridge's result never comes: it counts as a failure and is retried once.
    let fx = h.send(Input::Tick, 3_000);
    assert!(commands(&fx).is_empty(), "the retry waits for its delay");
    assert_eq!(h.s.next_deadline(), Some(t(3_500)));
    let second = bridge_of(&h.send(Input::Tick, 3_500)).expect("bridge retried");
    assert_ne!(second, first);
    // A late failure of the first attempt changes nothing.
    assert!(h.err(&first, 3_600).is_empty());
    assert_eq!(h.s.next_deadline(), Some(t(5_500)));
    let fx = h.send(Input::Tick, 5_500);
    assert_eq!(
        released(&fx),
        vec![CallControlId::new(CALLER), leg_ccid("ios")]
    );
    let f = finals(&fx);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].status, SessionStatus::Failed);
    assert!(f[0]
        .failure
        .as_deref()
        .unwrap()
        .contains("no bridge result"));
    assert_eq!(h.s.next_deadline(), None);
    // Late results of either attempt neither bridge nor write anything.
    assert!(outbox(&h.ok(&second, 6_000)).is_empty());
    assert!(h.ok(&first, 6_100).is_empty());
    assert!(!still_registered(&h.log));
    assert_eq!(bridges(&h.log).len(), 2);
}

#[test]
fn a_late_bridge_success_after_the_deadline_still_bridges_once() {
    let mut h = H::inbound(SessionConfig {
        caller_answer: CallerAnswer::Immediately,
        ..SessionConfig::default()
    });
    let answer = answer_of(&h.log).unwrap();
    h.ok(&answer, 10);
    h.all_dials_ok(100);
    let first = bridge_of(&h.answered("ios", 1_000)).unwrap();
    assert_eq!(
        h.s.next_deadline(),
        Some(t(1_000 + DEFAULT_BRIDGE_TIMEOUT_MS))
    );
    h.send(Input::Tick, 11_000);
    // The result was only late: the call is bridged and the pending retry is dropped.
    let fx = h.ok(&first, 11_200);
    assert_eq!(h.s.status(), SessionStatus::Bridged);
    assert_eq!(registry(&fx).len(), 1);
    assert_eq!(h.s.next_deadline(), None);
    assert!(h.send(Input::Tick, 11_500).is_empty());
    assert_eq!(bridges(&h.log).len(), 1);
}

#[test]
fn a_caller_answer_without_a_result_ends_the_call_cleanly() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    let answer = answer_of(&h.answered("web", 1_000)).expect("caller answered on pickup");
    assert_eq!(h.s.status(), SessionStatus::Answered);
    assert_eq!(
        h.s.next_deadline(),
        Some(t(1_000 + DEFAULT_BRIDGE_TIMEOUT_MS))
    );
    assert!(h.send(Input::Tick, 10_999).is_empty());
    let fx = h.send(Input::Tick, 11_000);
    assert_eq!(
        released(&fx),
        vec![CallControlId::new(CALLER), leg_ccid("web")]
    );
    let f = finals(&fx);
    assert_eq!(f[0].status, SessionStatus::Failed);
    assert!(f[0]
        .failure
        .as_deref()
        .unwrap()
        .contains("caller answer not confirmed"));
    assert_eq!(h.s.next_deadline(), None);
    // The answer's late result starts no bridge.
    assert!(outbox(&h.ok(&answer, 12_000)).is_empty());
    assert!(bridges(&h.log).is_empty());
}

#[test]
fn the_bridge_deadline_is_validated_and_survives_a_reload() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    h.answered("web", 1_000);
    let json = serde_json::to_string(&h.s).unwrap();
    let restored: Session = serde_json::from_str(&json).unwrap();
    assert_eq!(restored.next_deadline(), h.s.next_deadline());
    // Sessions stored before the deadline existed still load.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old["bridge"].as_object_mut().unwrap().remove("deadline");
    old["config"]
        .as_object_mut()
        .unwrap()
        .remove("bridge_timeout_ms");
    let old: Session = serde_json::from_value(old).unwrap();
    assert_eq!(old.next_deadline(), None);
    let config = SessionConfig {
        bridge_timeout_ms: 0,
        ..SessionConfig::default()
    };
    assert!(config.validate().is_err());
}

#[test]
fn a_leg_whose_dial_failed_but_exists_is_hung_up_once() {
    let mut h = H::inbound(SessionConfig::default());
    h.dial_ok("android", 100);
    h.dial_ok("web", 100);
    dial_fails(&mut h, "ios", 100);
    assert_eq!(h.s.status(), SessionStatus::Ringing);
    // The dial had only timed out on our side: the leg rings, and says so.
    let fx = h.device_event("ios", ProviderEventKind::Initiated, 300);
    assert_eq!(released(&fx), vec![leg_ccid("ios")]);
    assert!(timeline_events(&fx).contains(&"stray_leg"));
    assert!(notifications(&fx).is_empty(), "the others keep ringing");
    assert_eq!(h.s.status(), SessionStatus::Ringing);
    // Its answer (racing our hangup) neither wins nor gets a second hangup.
    let fx = h.answered("ios", 400);
    assert!(commands(&fx).is_empty());
    assert_eq!(h.s.answered_device(), None);
    assert!(h
        .device_event("ios", ProviderEventKind::Initiated, 450)
        .is_empty());
    let fx = h.device_event("ios", hangup(HangupCause::NormalClearing), 500);
    assert_eq!(leg_updates(&fx, "ios")[0].state, LegState::Ended);
    assert_eq!(
        leg_updates(&fx, "ios")[0].hangup_cause,
        Some(HangupCause::NormalClearing)
    );
    // Another device still wins normally.
    let answer = answer_of(&h.answered("web", 1_000)).unwrap();
    let bridge = bridge_of(&h.ok(&answer, 1_100)).unwrap();
    h.ok(&bridge, 1_200);
    assert_eq!(h.s.answered_device(), Some(&dev("web")));
    assert_eq!(
        released(&h.log)
            .iter()
            .filter(|c| **c == leg_ccid("ios"))
            .count(),
        1
    );
}

#[test]
fn a_stray_leg_found_after_the_call_is_over_is_hung_up() {
    let mut h = H::inbound(SessionConfig::default());
    h.dial_ok("android", 100);
    h.dial_ok("web", 100);
    dial_fails(&mut h, "ios", 100);
    h.caller_event(hangup(HangupCause::OriginatorCancel), 200);
    assert!(h.s.is_closed());
    // First sign of the leg is its answer, and even a dial result may follow its failure.
    let fx = h.answered("ios", 300);
    assert_eq!(released(&fx), vec![leg_ccid("ios")]);
    assert!(finals(&fx).is_empty(), "the final row is not rewritten");
    let command_id = h.dial_id("ios");
    let fx = h.send(
        Input::DialResult {
            command_id,
            result: Ok(leg_ccid("ios")),
        },
        400,
    );
    assert!(commands(&fx).is_empty());
}

#[test]
fn a_stray_leg_revealed_by_its_own_hangup_needs_no_command() {
    let mut h = H::inbound(SessionConfig::default());
    h.dial_ok("android", 100);
    h.dial_ok("web", 100);
    dial_fails(&mut h, "ios", 100);
    let fx = h.device_event("ios", hangup(HangupCause::Timeout), 30_000);
    assert!(commands(&fx).is_empty());
    let last = *leg_updates(&fx, "ios").last().unwrap();
    assert_eq!(last.state, LegState::Ended);
    assert_eq!(last.call_control_id, Some(leg_ccid("ios")));
    assert_eq!(last.hangup_cause, Some(HangupCause::Timeout));
}

#[test]
fn a_device_rejecting_its_own_leg_only_leaves_the_race_and_keeps_the_cause() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    let fx = h.device_event(
        "ios",
        ProviderEventKind::Hangup {
            cause: HangupCause::CallRejected,
            source: HangupSource::Callee,
            quality: None,
        },
        1_000,
    );
    assert!(commands(&fx).is_empty(), "nobody else is hung up");
    assert!(notifications(&fx).is_empty(), "nobody else is dismissed");
    let legs = leg_updates(&fx, "ios");
    assert_eq!(legs.len(), 1);
    assert_eq!(legs[0].state, LegState::Ended);
    assert_eq!(legs[0].call_control_id, Some(leg_ccid("ios")));
    assert_eq!(legs[0].hangup_cause, Some(HangupCause::CallRejected));
    assert_eq!(legs[0].ended_at, Some(t(1_000)));
    assert_eq!(timeline_events(&fx), vec!["rejected"]);
    assert_eq!(h.s.status(), SessionStatus::Ringing);
    assert_eq!(
        h.s.status_for(&dev("ios")).unwrap().status,
        DeviceStatus::Ringing
    );
    // Another device answers: the rejecting phone still gets the dismissal (its app may still
    // show a push-started ring), and its leg gets no hangup.
    let fx = h.answered("android", 2_000);
    assert!(!released(&fx).contains(&leg_ccid("ios")));
    assert_eq!(
        push_call_ended(&fx),
        vec![(
            "ios".to_owned(),
            DismissReason::AnsweredElsewhere {
                device_id: dev("android")
            }
        )]
    );
    // A Telnyx timeout of a leg is noted as such, not as a rejection.
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    let fx = h.device_event("web", hangup(HangupCause::Timeout), 30_000);
    assert_eq!(timeline_events(&fx), vec!["leg_ended"]);
}

fn report(
    device: &str,
    seq: u64,
    from: CallState,
    to: CallState,
    trigger: Option<Trigger>,
) -> Input {
    Input::DeviceReport {
        device: dev(device),
        seq,
        from,
        to,
        trigger,
        at: None,
        exclude_socket: None,
        channel: None,
    }
}

/// Every `call_state_changed` in the effects: (device, previous_state, state, version).
fn state_changes(fx: &[Effect]) -> Vec<(String, CallState, CallState, u64)> {
    notifications(fx)
        .into_iter()
        .filter_map(|n| match &n.event {
            NotifyEvent::CallStateChanged {
                device,
                state,
                previous_state,
                version,
                ..
            } => Some((
                device.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                *previous_state,
                *state,
                *version,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn device_reports_are_checked_against_the_devices_last_report() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    h.answered("android", 1_000);
    let before = h.s.version();
    let fx = h.send(
        report(
            "android",
            4,
            CallState::RingingInbound,
            CallState::Active,
            Some(Trigger::LocalAnswer),
        ),
        1_100,
    );
    let changes = state_changes(&fx);
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0],
        (
            "android".into(),
            CallState::RingingInbound,
            CallState::Active,
            before + 1
        )
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::Timeline(t)
        if t.change.as_ref().is_some_and(|c| c.report.as_ref().is_some_and(|r| r.seq == 4)))));
    // Repeats and older reports change nothing at all.
    let snapshot = h.s.clone();
    for seq in [4, 2] {
        let fx = h.send(
            report(
                "android",
                seq,
                CallState::Idle,
                CallState::RingingInbound,
                None,
            ),
            1_200,
        );
        assert!(fx.is_empty());
        assert_eq!(h.s, snapshot);
    }
    // A gap is fine; a `from` that is not the last reported state is not.
    h.send(
        report(
            "android",
            9,
            CallState::Active,
            CallState::OnHold,
            Some(Trigger::Hold),
        ),
        1_300,
    );
    assert_eq!(
        h.s.handle(
            report("android", 10, CallState::Active, CallState::OnHold, None),
            t(1_400)
        ),
        Err(SessionError::StateMismatch {
            last: CallState::OnHold,
            from: CallState::Active
        })
    );
    // The table decides, for this call's direction and the device's platform.
    assert!(matches!(
        h.s.handle(
            report("ios", 1, CallState::Idle, CallState::Connecting, None),
            t(1_400)
        ),
        Err(SessionError::IllegalTransition { .. })
    ));
    assert!(matches!(
        h.s.handle(
            report(
                "nobody",
                1,
                CallState::Idle,
                CallState::RingingInbound,
                None
            ),
            t(1_400)
        ),
        Err(SessionError::UnknownDevice { .. })
    ));
    assert_eq!(h.s, {
        let mut s = snapshot.clone();
        s.handle(
            report(
                "android",
                9,
                CallState::Active,
                CallState::OnHold,
                Some(Trigger::Hold),
            ),
            t(1_300),
        )
        .unwrap();
        s
    });
    // After the end, new reports are refused; a retry of an accepted one is still a repeat.
    h.caller_event(hangup(HangupCause::NormalClearing), 5_000);
    assert!(h.s.is_closed());
    assert_eq!(
        h.s.handle(
            report("android", 11, CallState::OnHold, CallState::Ended, None),
            t(5_100)
        ),
        Err(SessionError::CallEnded)
    );
    assert!(h
        .send(
            report("android", 9, CallState::Active, CallState::OnHold, None),
            5_200
        )
        .is_empty());
}

#[test]
fn every_event_of_a_call_carries_a_newer_version() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    for d in ["ios", "android", "web"] {
        h.device_event(d, ProviderEventKind::Initiated, 200);
    }
    let answer = answer_of(&h.answered("android", 1_000)).unwrap();
    h.ok(&answer, 1_100);
    h.caller_event(ProviderEventKind::Bridged, 1_200);
    h.send(
        report(
            "android",
            1,
            CallState::Active,
            CallState::OnHold,
            Some(Trigger::Hold),
        ),
        1_300,
    );
    h.caller_event(hangup(HangupCause::NormalClearing), 9_000);
    let ws: Vec<(&'static str, u64)> = notifications(&h.log)
        .into_iter()
        .filter(|n| n.channel == Channel::WebSocket)
        .map(|n| {
            let v = match &n.event {
                NotifyEvent::IncomingCall { version, .. }
                | NotifyEvent::CallEnded { version, .. }
                | NotifyEvent::CallStateChanged { version, .. } => *version,
            };
            (n.event.name(), v)
        })
        .collect();
    assert!(ws.windows(2).all(|w| w[0].1 < w[1].1), "{ws:?}");
    let android: Vec<_> = state_changes(&h.log)
        .into_iter()
        .filter(|c| c.0 == "android")
        .map(|c| (c.1, c.2))
        .collect();
    assert_eq!(
        android,
        [
            (CallState::Idle, CallState::RingingInbound),
            (CallState::RingingInbound, CallState::Active),
            (CallState::Active, CallState::OnHold),
            (CallState::OnHold, CallState::Ended),
        ]
    );
    // The registry entry followed the device: set at answer, moved to ON_HOLD, cleared.
    let reg: Vec<_> = registry(&h.log)
        .into_iter()
        .map(|r| match r {
            RegistryUpdate::Set(a) => Some(a.state),
            RegistryUpdate::Clear { .. } => None,
        })
        .collect();
    assert_eq!(
        reg,
        [
            Some(CallState::Active),
            Some(CallState::Active),
            Some(CallState::OnHold),
            None
        ]
    );
}

#[test]
fn an_answer_the_registry_refuses_is_turned_away_busy() {
    let mut h = H::inbound(SessionConfig {
        caller_answer: CallerAnswer::OnDeviceAnswer,
        ..SessionConfig::default()
    });
    h.all_dials_ok(100);
    h.send(Input::RegistryBusy, 1_000);
    let fx = h.answered("android", 1_000);
    assert!(registry(&fx).is_empty(), "no entry for a refused answer");
    assert!(bridge_of(&fx).is_none() && answer_of(&fx).is_none());
    let mut gone = released(&fx);
    gone.sort();
    let mut want = vec![
        CallControlId::new(CALLER),
        leg_ccid("android"),
        leg_ccid("ios"),
        leg_ccid("web"),
    ];
    want.sort();
    assert_eq!(
        gone, want,
        "every leg, the answering one too, and the caller"
    );
    assert!(commands(&fx).iter().any(|c| matches!(
        c.action,
        Action::Reject {
            cause: RejectCause::UserBusy,
            ..
        }
    )));
    assert_eq!(ws_call_ended(&fx), [DismissReason::Busy]);
    assert!(push_call_ended(&fx)
        .iter()
        .any(|(d, r)| d == "android" && *r == DismissReason::Busy));
    assert_eq!(finals(&fx)[0].status, SessionStatus::Busy);
    assert!(h.s.answered_device().is_none());
    assert_eq!(
        h.s.status_for(&dev("android")).unwrap().reason,
        Some(DismissReason::Busy)
    );
}

// ---- native outbound calls and glare (issue 14, points 4 and 5) ------------------------------

fn native(initiated: bool, leg: Option<&str>) -> H {
    let s = Session::new_native(
        NewNativeOutbound {
            id: CallSessionId::new("native-1"),
            tenant: TenantId::new("tenant-1"),
            user: UserId::new("user-1"),
            device: target("android", "android"),
            device_leg: leg.map(CallControlId::new),
            initiated,
            from: "+15550002222".to_owned(),
            to: "+15553334444".to_owned(),
            config: SessionConfig::default(),
        },
        t(0),
    )
    .expect("valid session");
    let mut h = H { s, log: Vec::new() };
    h.send(Input::Start, 0);
    h
}

/// The device's `call_state_changed`s as (previous, state).
fn moves(fx: &[Effect], device: &str) -> Vec<(CallState, CallState)> {
    state_changes(fx)
        .into_iter()
        .filter(|(d, ..)| d == device)
        .map(|(_, from, to, _)| (from, to))
        .collect()
}

fn registry_states(fx: &[Effect]) -> Vec<Option<CallState>> {
    registry(fx)
        .into_iter()
        .map(|r| match r {
            RegistryUpdate::Set(a) => Some(a.state),
            RegistryUpdate::Clear { .. } => None,
        })
        .collect()
}

#[test]
fn a_native_call_is_followed_not_dialled_and_the_user_is_on_it_from_the_start() {
    let mut h = native(true, Some("native-leg"));
    assert!(commands(&h.log).is_empty(), "nothing is dialled");
    assert_eq!(registry_states(&h.log), [Some(CallState::Connecting)]);
    assert_eq!(
        moves(&h.log, "android"),
        [(CallState::Idle, CallState::Connecting)]
    );
    assert_eq!(h.s.direction(), Direction::Outbound);
    // The device's own report of the same start is matched to this session.
    h.send(
        report("android", 1, CallState::Idle, CallState::Connecting, None),
        10,
    );
    let fx = h.send(
        Input::Provider(ProviderEvent::new(
            "native-leg",
            None,
            ProviderEventKind::Answered,
        )),
        1_000,
    );
    assert!(commands(&fx).is_empty(), "nothing to bridge");
    assert_eq!(h.s.status(), SessionStatus::Bridged);
    assert_eq!(h.s.answered_device(), Some(&dev("android")));
    assert_eq!(registry_states(&fx), [Some(CallState::Active)]);
    let fx = h.send(
        Input::Provider(ProviderEvent::new(
            "native-leg",
            None,
            hangup(HangupCause::NormalClearing),
        )),
        5_000,
    );
    assert!(h.s.is_closed());
    assert_eq!(registry_states(&fx), [None]);
    assert_eq!(
        moves(&fx, "android"),
        [(CallState::Active, CallState::Ended)]
    );
    assert_eq!(finals(&fx)[0].direction, Direction::Outbound);
}

#[test]
fn a_native_call_opened_by_the_report_learns_its_leg_and_ends_by_the_report() {
    let mut h = native(false, None);
    assert!(moves(&h.log, "android").is_empty(), "the report says it");
    h.send(
        report("android", 1, CallState::Idle, CallState::Connecting, None),
        10,
    );
    let fx = h.send(
        Input::Provider(ProviderEvent::new(
            "late-leg",
            None,
            ProviderEventKind::Initiated,
        )),
        20,
    );
    assert!(moves(&fx, "android").is_empty(), "already CONNECTING");
    assert_eq!(h.s.call_control_ids(), [&CallControlId::new("late-leg")]);
    h.send(
        report("android", 2, CallState::Connecting, CallState::Active, None),
        500,
    );
    assert_eq!(h.s.status(), SessionStatus::Bridged);
    let fx = h.send(
        report("android", 3, CallState::Active, CallState::Ended, None),
        900,
    );
    assert!(h.s.is_closed());
    assert!(
        moves(&fx, "android")
            .iter()
            .filter(|(_, s)| *s == CallState::Ended)
            .count()
            == 1,
        "ENDED once: {fx:?}"
    );
    // The leg's hangup, if it still comes, changes nothing.
    let late = h.send(
        Input::Provider(ProviderEvent::new(
            "late-leg",
            None,
            hangup(HangupCause::NormalClearing),
        )),
        950,
    );
    assert!(finals(&late).is_empty());
}

#[test]
fn only_the_calling_device_leg_of_a_click_to_call_says_outbound() {
    let h = H::outbound();
    let directions: Vec<_> = commands(&h.log)
        .into_iter()
        .filter_map(|c| match &c.action {
            Action::Dial { client_state, .. } => Some(client_state.direction),
            _ => None,
        })
        .collect();
    assert_eq!(directions, [Some(Direction::Outbound)]);
    let h = H::inbound(SessionConfig::default());
    assert!(commands(&h.log).into_iter().all(|c| !matches!(
        &c.action,
        Action::Dial { client_state, .. } if client_state.direction.is_some()
    )));
}

#[test]
fn a_replaced_call_ends_on_every_device_with_the_reason_and_only_while_ringing() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    let fx = h.send(
        Input::Replaced {
            survivor: CallSessionId::new("other"),
        },
        1_000,
    );
    assert_eq!(ws_call_ended(&fx), [DismissReason::Replaced]);
    let pushed: Vec<_> = push_call_ended(&fx).into_iter().map(|(d, _)| d).collect();
    assert_eq!(pushed, ["ios", "android"]);
    assert!(released(&fx).contains(&CallControlId::new(CALLER)));
    assert_eq!(finals(&fx)[0].dismiss_reason, Some(DismissReason::Replaced));
    assert_eq!(finals(&fx)[0].status, SessionStatus::Ended);
    assert_eq!(
        h.s.status_for(&dev("web")).unwrap().reason,
        Some(DismissReason::Replaced)
    );
    assert!(h
        .send(
            Input::Replaced {
                survivor: CallSessionId::new("other"),
            },
            1_100,
        )
        .is_empty());

    // Once someone talks, the glare is over.
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    h.answered("ios", 500);
    let before = h.s.clone();
    let refused = h.s.handle(
        Input::Replaced {
            survivor: CallSessionId::new("other"),
        },
        t(600),
    );
    assert!(matches!(refused, Err(SessionError::NotRinging { .. })));
    assert_eq!(h.s, before);

    // A click-to-call that lost: its device is told, its leg hung up.
    let mut h = H::outbound();
    let command_id = h.dial_id("web");
    h.send(
        Input::DialResult {
            command_id,
            result: Ok(leg_ccid("web")),
        },
        10,
    );
    let fx = h.send(
        Input::Replaced {
            survivor: CallSessionId::new("aaa"),
        },
        100,
    );
    assert_eq!(ws_call_ended(&fx), [DismissReason::Replaced]);
    assert_eq!(released(&fx), [leg_ccid("web")]);
    assert_eq!(
        h.s.status_for(&dev("web")).unwrap().reason,
        Some(DismissReason::Replaced)
    );
}

#[test]
fn the_glare_loser_is_the_higher_id_whichever_side_asks() {
    let (a, b) = (CallSessionId::new("a-1"), CallSessionId::new("b-1"));
    assert_eq!(glare_loser(&a, &b), &b);
    assert_eq!(glare_loser(&b, &a), &b);
}

#[test]
fn a_call_back_needs_the_device_ringing() {
    let mut h = H::inbound(SessionConfig::default());
    h.all_dials_ok(100);
    let fx = h.send(Input::CallBack { device: dev("ios") }, 200);
    assert!(commands(&fx).is_empty(), "nothing is dialled");
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Timeline(t) if t.event == "call_back")));
    h.send(Input::DeviceIgnore { device: dev("web") }, 300);
    let refused = h.s.handle(Input::CallBack { device: dev("web") }, t(400));
    assert!(matches!(refused, Err(SessionError::NotRinging { .. })));
    let mut out = H::outbound();
    let refused = out.s.handle(Input::CallBack { device: dev("web") }, t(10));
    assert!(matches!(refused, Err(SessionError::NotRinging { .. })));
}
