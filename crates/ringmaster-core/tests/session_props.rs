//! Property test of the session orchestrator: random interleavings of dial results, answers,
//! hangups, command results, device requests, duplicates and ticks. Whatever the order, there
//! is never more than one bridged device, every losing leg is hung up exactly once (unless it
//! hung up by itself), a leg whose dial was reported failed but which exists after all is hung
//! up like any loser, no call stays ringing or answered once time runs out, the history is
//! finalised once, and a session restored from JSON at any step behaves exactly like the
//! original.

use proptest::prelude::*;
use ringmaster_core::session::{
    Action, CallerAnswer, Channel, ClientStateRef, CommandError, Effect, HangupCause, HangupSource,
    Input, NewInbound, NotifyEvent, ProviderEvent, ProviderEventKind, RegistryUpdate, RingTarget,
    Session, SessionConfig, VoicemailConfig, LEG_DEVICE,
};
use ringmaster_core::{CallControlId, CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use std::collections::{BTreeMap, BTreeSet};

const CALLER: &str = "caller-ccid";
const DEVICES: [(&str, &str); 3] = [("ios", "ios"), ("android", "android"), ("web", "web")];

#[derive(Clone, Debug)]
enum Op {
    DialResult(usize),
    Initiated(usize),
    Answered(usize),
    LegHangup(usize),
    CallerAnswered,
    CallerHangup,
    AnswerResult(bool),
    BridgeResult(bool),
    Bridged,
    SpeakEnded,
    RecordingSaved,
    Decline(usize),
    Ignore(usize),
    Tick,
    Advance(u64),
    Repeat(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DEVICES.len();
    prop_oneof![
        3 => d.clone().prop_map(Op::DialResult),
        1 => d.clone().prop_map(Op::Initiated),
        4 => d.clone().prop_map(Op::Answered),
        2 => d.clone().prop_map(Op::LegHangup),
        1 => Just(Op::CallerAnswered),
        1 => Just(Op::CallerHangup),
        2 => any::<bool>().prop_map(Op::AnswerResult),
        2 => any::<bool>().prop_map(Op::BridgeResult),
        1 => Just(Op::Bridged),
        1 => Just(Op::SpeakEnded),
        1 => Just(Op::RecordingSaved),
        1 => d.clone().prop_map(Op::Decline),
        1 => d.prop_map(Op::Ignore),
        2 => Just(Op::Tick),
        3 => (0u64..12_000).prop_map(Op::Advance),
        2 => any::<usize>().prop_map(Op::Repeat),
    ]
}

fn leg(device: usize) -> CallControlId {
    CallControlId::new(format!("leg-{}", DEVICES[device].0))
}

fn new_session(immediately: bool, voicemail: bool) -> Session {
    let config = SessionConfig {
        caller_answer: if immediately {
            CallerAnswer::Immediately
        } else {
            CallerAnswer::OnDeviceAnswer
        },
        voicemail: voicemail.then(VoicemailConfig::default),
        ..SessionConfig::default()
    };
    Session::new_inbound(
        NewInbound {
            id: CallSessionId::new("sess"),
            tenant: TenantId::new("t"),
            user: UserId::new("u"),
            caller_leg: CallControlId::new(CALLER),
            from: "+15550001111".to_owned(),
            to: "+15550002222".to_owned(),
            devices: DEVICES
                .iter()
                .map(|(id, platform)| RingTarget {
                    device_id: DeviceId::new(*id),
                    sip_uri: format!("sip:{id}@example.com"),
                    platform: (*platform).to_owned(),
                })
                .collect(),
            busy: false,
            config,
        },
        Timestamp::from_millis(0),
    )
    .expect("valid session")
}

/// Runs inputs through a session and, in lockstep, through a copy restored from JSON before
/// every input; both must agree on everything.
struct Run {
    session: Session,
    log: Vec<Effect>,
    inputs: Vec<(Input, Timestamp)>,
    now: u64,
}

impl Run {
    fn send(&mut self, input: Input) {
        let now = Timestamp::from_millis(self.now);
        let json = serde_json::to_string(&self.session).expect("serialise");
        let mut restored: Session = serde_json::from_str(&json).expect("deserialise");
        let before = self.session.clone();
        let result = self.session.handle(input.clone(), now);
        let replayed = restored.handle(input.clone(), now);
        assert_eq!(result, replayed, "restored session diverged on {input:?}");
        assert_eq!(restored, self.session);
        match result {
            Ok(fx) => self.log.extend(fx),
            Err(_) => assert_eq!(self.session, before, "a refused input changed the session"),
        }
        self.inputs.push((input, now));
    }

    fn commands(&self) -> impl Iterator<Item = (&String, &Action)> {
        self.log.iter().filter_map(|e| match e {
            Effect::Telnyx(c) => Some((&c.command_id, &c.action)),
            _ => None,
        })
    }

    fn last_command(&self, pred: impl Fn(&Action) -> bool) -> Option<String> {
        self.commands()
            .filter(|(_, a)| pred(a))
            .map(|(id, _)| id.clone())
            .last()
    }

    fn dial_id(&self, device: usize) -> String {
        let want = DeviceId::new(DEVICES[device].0);
        self.commands()
            .find_map(|(id, a)| match a {
                Action::Dial {
                    device: Some(d), ..
                } if *d == want => Some(id.clone()),
                _ => None,
            })
            .expect("every device is dialled at start")
    }
}

fn device_event(device: usize, kind: ProviderEventKind) -> Input {
    Input::Provider(ProviderEvent::new(
        leg(device),
        Some(ClientStateRef {
            session: CallSessionId::new("sess"),
            device: Some(DeviceId::new(DEVICES[device].0)),
            leg: LEG_DEVICE.to_owned(),
            direction: None,
        }),
        kind,
    ))
}

fn hangup_kind() -> ProviderEventKind {
    ProviderEventKind::Hangup {
        cause: HangupCause::NormalClearing,
        source: HangupSource::Unknown,
        quality: None,
    }
}

/// `ghosts[d]`: device `d`'s dial is reported failed (when `dial_fails[d]`) but the leg exists
/// and sends webhooks, as after an HTTP timeout of the dial.
fn run(
    ops: &[Op],
    dial_fails: [bool; 3],
    ghosts: [bool; 3],
    immediately: bool,
    voicemail: bool,
) -> Run {
    let mut r = Run {
        session: new_session(immediately, voicemail),
        log: Vec::new(),
        inputs: Vec::new(),
        now: 0,
    };
    r.send(Input::Start);
    let mut provider_hung_up = [false; 3];
    let mut dial_delivered = [false; 3];
    // Devices whose leg has sent a webhook, so the session knows it exists.
    let mut seen = [false; 3];
    for op in ops {
        let input = match op {
            Op::DialResult(d) => {
                dial_delivered[*d] = true;
                let result = if dial_fails[*d] {
                    Err(CommandError::new("10015", "refused"))
                } else {
                    Ok(leg(*d))
                };
                Some(Input::DialResult {
                    command_id: r.dial_id(*d),
                    result,
                })
            }
            // A leg whose dial was refused never exists, so it sends no webhooks.
            Op::Initiated(d) | Op::Answered(d) | Op::LegHangup(d)
                if dial_fails[*d] && !ghosts[*d] =>
            {
                None
            }
            Op::Initiated(d) => {
                seen[*d] = true;
                Some(device_event(*d, ProviderEventKind::Initiated))
            }
            Op::Answered(d) => {
                seen[*d] = true;
                Some(device_event(*d, ProviderEventKind::Answered))
            }
            Op::LegHangup(d) => {
                seen[*d] = true;
                provider_hung_up[*d] = true;
                Some(device_event(*d, hangup_kind()))
            }
            Op::CallerAnswered => Some(Input::Provider(ProviderEvent::new(
                CALLER,
                None,
                ProviderEventKind::Answered,
            ))),
            Op::CallerHangup => Some(Input::Provider(ProviderEvent::new(
                CALLER,
                None,
                hangup_kind(),
            ))),
            Op::Bridged => Some(Input::Provider(ProviderEvent::new(
                CALLER,
                None,
                ProviderEventKind::Bridged,
            ))),
            Op::SpeakEnded => Some(Input::Provider(ProviderEvent::new(
                CALLER,
                None,
                ProviderEventKind::SpeakEnded,
            ))),
            Op::RecordingSaved => Some(Input::Provider(ProviderEvent::new(
                CALLER,
                None,
                ProviderEventKind::RecordingSaved {
                    url: "https://rec.example/x.mp3".to_owned(),
                },
            ))),
            Op::AnswerResult(ok) => {
                r.last_command(|a| matches!(a, Action::Answer { .. }))
                    .map(|command_id| Input::CommandResult {
                        command_id,
                        result: if *ok {
                            Ok(())
                        } else {
                            Err(CommandError::new("90018", "Call has already ended"))
                        },
                    })
            }
            Op::BridgeResult(ok) => {
                r.last_command(|a| matches!(a, Action::Bridge { .. }))
                    .map(|command_id| Input::CommandResult {
                        command_id,
                        result: if *ok {
                            Ok(())
                        } else {
                            Err(CommandError::new("90034", "Call not answered yet"))
                        },
                    })
            }
            Op::Decline(d) => Some(Input::DeviceDecline {
                device: DeviceId::new(DEVICES[*d].0),
            }),
            Op::Ignore(d) => Some(Input::DeviceIgnore {
                device: DeviceId::new(DEVICES[*d].0),
            }),
            Op::Tick => Some(Input::Tick),
            Op::Advance(ms) => {
                r.now += ms;
                None
            }
            Op::Repeat(i) if !r.inputs.is_empty() => {
                let (input, _) = r.inputs[i % r.inputs.len()].clone();
                if let Input::Provider(ProviderEvent {
                    kind: ProviderEventKind::Hangup { .. },
                    call_control_id: Some(c),
                    ..
                }) = &input
                {
                    if let Some(d) = (0..3).find(|d| leg(*d) == *c) {
                        provider_hung_up[d] = true;
                    }
                }
                Some(input)
            }
            Op::Repeat(_) => None,
        };
        if let Some(input) = input {
            r.send(input);
        }
    }
    // Late dial results arrive, then time runs out for every timer.
    for d in 0..DEVICES.len() {
        if !dial_delivered[d] {
            let result = if dial_fails[d] {
                Err(CommandError::new("10015", "refused"))
            } else {
                Ok(leg(d))
            };
            r.send(Input::DialResult {
                command_id: r.dial_id(d),
                result,
            });
        }
    }
    for _ in 0..4 {
        r.now += 600_000;
        r.send(Input::Tick);
    }
    check(&r, provider_hung_up, dial_fails, seen);
    r
}

fn check(r: &Run, provider_hung_up: [bool; 3], dial_fails: [bool; 3], seen: [bool; 3]) {
    let bridges: Vec<(CallControlId, CallControlId)> = r
        .commands()
        .filter_map(|(_, a)| match a {
            Action::Bridge { ccid, to_ccid } => Some((ccid.clone(), to_ccid.clone())),
            _ => None,
        })
        .collect();
    assert!(bridges.len() <= 2, "at most the bridge and its one retry");
    let winner = r.session.answered_device().cloned();
    for (from, to) in &bridges {
        assert_eq!(from.as_str(), CALLER);
        let w = winner.as_ref().expect("a bridge implies a winner");
        assert_eq!(to.as_str(), format!("leg-{w}"), "never two bridged devices");
    }

    let mut releases: BTreeMap<CallControlId, usize> = BTreeMap::new();
    for (_, a) in r.commands() {
        if let Action::Hangup { ccid } | Action::Reject { ccid, .. } = a {
            *releases.entry(ccid.clone()).or_default() += 1;
        }
    }
    for (ccid, n) in &releases {
        assert_eq!(*n, 1, "{ccid} released {n} times");
    }
    assert!(!r.session.status().as_str().is_empty());
    assert_ne!(
        r.session.status().as_str(),
        "ringing",
        "time ran out, so ringing must be over"
    );
    assert_ne!(
        r.session.status().as_str(),
        "answered",
        "time ran out, so a bridge still pending must have been given up"
    );
    for d in 0..DEVICES.len() {
        let is_winner = winner.as_ref().map(|w| w.as_str()) == Some(DEVICES[d].0);
        // A failed dial whose leg never showed up has nothing to hang up.
        if is_winner || (dial_fails[d] && !seen[d]) {
            continue;
        }
        let hung_up = releases.contains_key(&leg(d));
        assert!(
            hung_up || provider_hung_up[d],
            "losing leg {} was neither hung up nor gone",
            DEVICES[d].0
        );
    }

    let finals = r
        .log
        .iter()
        .filter(|e| matches!(e, Effect::History(h) if h.is_final))
        .count();
    assert_eq!(finals, usize::from(r.session.is_closed()));
    if r.session.is_closed() {
        assert!(
            matches!(r.log.iter().rev().find(|e| matches!(e, Effect::History(_))),
            Some(Effect::History(h)) if h.is_final),
            "nothing is written after the final row"
        );
    }

    let ws_ended = r
        .log
        .iter()
        .filter(|e| {
            matches!(e, Effect::Notify(n)
                if n.channel == Channel::WebSocket && matches!(n.event, NotifyEvent::CallEnded { .. }))
        })
        .count();
    assert!(ws_ended <= 1, "one dismissal outcome per call");
    let mut pushes: BTreeMap<DeviceId, usize> = BTreeMap::new();
    for e in &r.log {
        if let Effect::Notify(n) = e {
            if let (Channel::Push { device, .. }, NotifyEvent::CallEnded { .. }) =
                (&n.channel, &n.event)
            {
                assert_ne!(Some(device), winner.as_ref(), "the winner is not dismissed");
                *pushes.entry(device.clone()).or_default() += 1;
            }
        }
    }
    assert!(pushes.values().all(|n| *n == 1));

    // The entry is written when a device answers and rewritten as its state moves, always for
    // that one device; it is cleared once, and nothing is written after that.
    let registry: Vec<&RegistryUpdate> = r
        .log
        .iter()
        .filter_map(|e| match e {
            Effect::Registry(u) => Some(u),
            _ => None,
        })
        .collect();
    let devices: BTreeSet<&DeviceId> = registry
        .iter()
        .filter_map(|u| match u {
            RegistryUpdate::Set(a) => Some(&a.device),
            RegistryUpdate::Clear { .. } => None,
        })
        .collect();
    assert!(devices.len() <= 1, "one device per call: {devices:?}");
    let clears = registry
        .iter()
        .filter(|u| matches!(u, RegistryUpdate::Clear { .. }))
        .count();
    assert!(clears <= 1);
    if clears == 1 {
        assert!(matches!(
            registry.last(),
            Some(RegistryUpdate::Clear { .. })
        ));
    }
    if r.session.is_closed() && !devices.is_empty() {
        assert_eq!(clears, 1, "a closed call leaves no active-call entry");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_interleavings_keep_the_invariants(
        ops in proptest::collection::vec(op(), 0..48),
        dial_fails in any::<[bool; 3]>(),
        ghosts in any::<[bool; 3]>(),
        immediately in any::<bool>(),
        voicemail in any::<bool>(),
    ) {
        let a = run(&ops, dial_fails, ghosts, immediately, voicemail);
        // Deterministic: replaying the same inputs at the same times gives the same effects.
        let mut replay = new_session(immediately, voicemail);
        let mut log = Vec::new();
        for (input, now) in &a.inputs {
            if let Ok(fx) = replay.handle(input.clone(), *now) {
                log.extend(fx);
            }
        }
        prop_assert_eq!(log, a.log.clone());
        prop_assert_eq!(replay, a.session.clone());
    }
}
