//! The spec's test plan (§11, T1–T15) as runnable scenarios. Each returns `Ok(())` when the
//! spec's expected outcome is observed and no invariant is violated, or what went wrong.
//!
//! T1–T12 and T15 run in the simulator; T3 is a device-only scenario (a CONNECTING outbound
//! call never reaches the coordinator); T13/T14 exercise the core transition table and the
//! device agent; T7/T8 also read the coordinator's active-call registry. G14 (remote hold, spec
//! G-14) drives a phone's agent with raw SDP re-offers and feeds its reports to the session.
//! G5a/G5b are the two glares of issue 14 (see [`crate::glare`]).

use crate::plan::{DevicePlan, Plan};
use crate::world::{block, World, POLL_INTERVAL_MS};
use ringmaster_core::session::SessionStatus;
use ringmaster_core::{
    Call, CallSessionId, CallState, DeviceId, Direction, DismissReason, Platform, Timestamp,
    TransitionError, Trigger,
};
use ringmaster_device::{
    AgentConfig, AgentError, AppAction, Channel, Delivery, DeviceAgent, Effect, Input, SdkState,
    StopReason,
};
use ringmaster_store::{Commit, CommitOutcome, RegistryChange, Store};

/// Result of one scenario.
pub type Outcome = Result<(), String>;

/// A scenario: runs and judges itself.
pub type Scenario = fn() -> Outcome;

/// Every scenario by name, in order.
pub fn all() -> Vec<(&'static str, Scenario)> {
    vec![
        (
            "T1",
            t1_orphan_after_crash_during_active_call as fn() -> Outcome,
        ),
        ("T2", t2_missed_call_after_crash_while_ringing),
        ("T3", t3_connecting_call_is_not_an_orphan),
        ("T4", t4_orphan_after_reboot),
        ("T5", t5_three_devices_dismissed_within_a_second),
        ("T6", t6_dozing_phone_dismissed_by_sip_then_by_polling),
        ("T7", t7_web_shows_native_call),
        ("T8", t8_second_call_refused_while_on_a_call),
        ("T9", t9_sip_blocked_dismissed_by_push_or_poll),
        ("T10", t10_push_blocked_dismissed_by_sip),
        ("T11", t11_backgrounded_dismissed_without_websocket),
        ("T12", t12_all_channels_fail_poll_dismisses),
        ("T13", t13_held_call_cannot_ring),
        ("T14", t14_late_sip_on_ended_call_is_ignored),
        ("T15", t15_two_answers_10ms_apart_bridge_once),
        ("G14", g14_remote_hold_reaches_every_device),
        ("G5a", crate::glare::g5a_call_back_answers_the_ringing_call),
        ("G5b", crate::glare::g5b_crossing_calls_keep_the_lower_id),
    ]
}

/// Scenario verdicts in T1..T15 order; serialises as a JSON object in that order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdicts(pub Vec<(String, String)>);

impl Verdicts {
    /// Scenarios that did not pass.
    pub fn failed(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter().filter(|(_, v)| v != "pass")
    }
}

impl serde::Serialize for Verdicts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Runs every scenario: name → `pass` or `fail: …`.
pub fn run_all() -> Verdicts {
    Verdicts(
        all()
            .into_iter()
            .map(|(name, f)| {
                let verdict = match std::panic::catch_unwind(f) {
                    Ok(Ok(())) => "pass".to_owned(),
                    Ok(Err(why)) => format!("fail: {why}"),
                    Err(_) => "fail: panicked".to_owned(),
                };
                (name.to_owned(), verdict)
            })
            .collect(),
    )
}

pub(crate) fn ensure(ok: bool, why: impl FnOnce() -> String) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

fn clean(world: &World) -> Outcome {
    match world.violations().first() {
        None => Ok(()),
        Some(v) => Err(format!("seed {}: {}: {}", v.seed, v.invariant, v.detail)),
    }
}

fn device(platform: Platform) -> DevicePlan {
    DevicePlan::idle(platform)
}

fn answering(platform: Platform, at: u64) -> DevicePlan {
    DevicePlan {
        answer_at: Some(at),
        ..DevicePlan::idle(platform)
    }
}

fn final_state(world: &World, dev: usize) -> Option<CallState> {
    world.devices[dev]
        .agent()
        .and_then(|a| a.call_state(&world.session_id))
}

/// The (channel, ms after the backend ended ringing) of the device's dismissal.
fn dismissal(world: &World, dev: usize) -> Option<(Channel, u64, StopReason)> {
    let end = world.obs.ring_ended_at?;
    world.devices[dev]
        .stops
        .iter()
        .find_map(|(at, reason, channel)| {
            channel.map(|c| (c, at.saturating_sub(end), reason.clone()))
        })
}

/// T1: a device with an active call; the app is killed and restarted. Expected: the orphan is
/// detected and shown (CallKit end / notification), the device reports ENDED, the backend
/// ends the call.
pub fn t1_orphan_after_crash_during_active_call() -> Outcome {
    let mut phone = answering(Platform::Ios, 2_000);
    phone.faults.kill_at = Some(10_000);
    phone.faults.restart_after = 5_000;
    let world = World::new(Plan::quiet(101, vec![phone], 120_000)).run();
    clean(&world)?;
    let d = &world.devices[0];
    ensure(d.orphans == [CallState::Active], || {
        format!("orphans found on restart: {:?}", d.orphans)
    })?;
    ensure(final_state(&world, 0) == Some(CallState::Ended), || {
        format!("device ends {:?}", final_state(&world, 0))
    })?;
    let session = world.session().ok_or("no session")?;
    ensure(
        session.is_closed() && session.answered_device() == Some(&d.id),
        || "backend did not close the answered call".to_owned(),
    )
}

/// T2: a device rings; the app is killed and restarted; nobody answers. Expected: a missed call
/// is shown on the device after restart.
pub fn t2_missed_call_after_crash_while_ringing() -> Outcome {
    let mut phone = device(Platform::Android);
    phone.faults.kill_at = Some(5_000);
    phone.faults.restart_after = 3_000;
    let world = World::new(Plan::quiet(102, vec![phone], 20_000)).run();
    clean(&world)?;
    let d = &world.devices[0];
    ensure(d.restarts == 1 && d.missed_shown == 1, || {
        format!(
            "restarts {} missed-call notifications {}",
            d.restarts, d.missed_shown
        )
    })?;
    ensure(final_state(&world, 0) == Some(CallState::Missed), || {
        format!("device ends {:?}", final_state(&world, 0))
    })
}

/// T3: an outbound call in CONNECTING; the app is killed and restarted. Expected: no orphan,
/// because CONNECTING is never persisted.
pub fn t3_connecting_call_is_not_an_orphan() -> Outcome {
    let me = DeviceId::new("android-0");
    let id = CallSessionId::new("v3:outbound");
    let mut agent = DeviceAgent::new(me.clone(), Platform::Android, AgentConfig::default());
    let fx = agent
        .handle(
            Input::Sdk {
                call_session_id: id.clone(),
                direction: Direction::Outbound,
                state: SdkState::parse(Platform::Android, "CONNECTING")
                    .map_err(|e| e.to_string())?,
                cause: None,
            },
            Timestamp::from_millis(0),
        )
        .map_err(|e| e.to_string())?;
    ensure(agent.call_state(&id) == Some(CallState::Connecting), || {
        "call is not CONNECTING".to_owned()
    })?;
    let stored = fx
        .iter()
        .rev()
        .find_map(|e| match e {
            Effect::Persist(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| agent.snapshot());
    ensure(stored.calls.is_empty(), || {
        "CONNECTING was persisted".to_owned()
    })?;
    let (restored, fx) = DeviceAgent::restore(
        &me,
        Platform::Android,
        AgentConfig::default(),
        stored,
        Timestamp::from_millis(5_000),
    )
    .map_err(|e| e.to_string())?;
    ensure(
        !fx.iter().any(|e| matches!(e, Effect::OrphanEnded { .. }))
            && restored.call_state(&id).is_none(),
        || format!("restart produced {fx:?}"),
    )
}

/// T4: an active call, then the device reboots (down for 90 s). Expected: the orphan is
/// detected after the reboot.
pub fn t4_orphan_after_reboot() -> Outcome {
    let mut phone = answering(Platform::Android, 3_000);
    phone.faults.kill_at = Some(8_000);
    phone.faults.restart_after = 90_000;
    let world = World::new(Plan::quiet(104, vec![phone], 300_000)).run();
    clean(&world)?;
    let d = &world.devices[0];
    ensure(d.orphans == [CallState::Active], || {
        format!("orphans found after reboot: {:?}", d.orphans)
    })?;
    ensure(final_state(&world, 0) == Some(CallState::Ended), || {
        format!("device ends {:?}", final_state(&world, 0))
    })
}

/// T5: three devices ring; Android answers. Expected: iOS ends its CallKit call with
/// answered-elsewhere and the web tab hangs up via the WebSocket, both within 1 s of the
/// answer, with WebSocket and SIP up.
pub fn t5_three_devices_dismissed_within_a_second() -> Outcome {
    let mut plan = Plan::quiet(
        105,
        vec![
            device(Platform::Ios),
            answering(Platform::Android, 4_000),
            device(Platform::Web),
        ],
        40_000,
    );
    // The spec's path: the web tab hangs up via the WebSocket, which here always beats
    // Telnyx's SIP CANCEL (at least 115 ms: API call plus SIP); with overlapping latencies
    // the first channel would depend on the seed's draws.
    plan.latencies.websocket = crate::faults::Latency::new(20, 100);
    let world = World::new(plan).run();
    clean(&world)?;
    let android = world.devices[1].id.clone();
    let answered_at = world.devices[1]
        .answered_at
        .ok_or("android never answered")?;
    for dev in [0, 2] {
        let d = &world.devices[dev];
        let (at, stop, _) = d
            .stops
            .first()
            .ok_or_else(|| format!("dev{dev} never stopped"))?;
        let elsewhere = DismissReason::AnsweredElsewhere {
            device_id: android.clone(),
        };
        // Whichever channel stops the ringer first, the call ends as answered elsewhere (a SIP
        // CANCEL silences at once; the reason follows on the next backend channel).
        ensure(
            matches!(stop, StopReason::Dismissed { reason } if *reason == elsewhere)
                || *stop == StopReason::LegCancelled,
            || format!("dev{dev} stopped with {stop:?}"),
        )?;
        let outcome = d
            .agent()
            .and_then(|a| a.tombstone(&world.session_id))
            .and_then(|t| t.reason.clone());
        ensure(outcome.as_ref() == Some(&elsewhere), || {
            format!("dev{dev} ended with reason {outcome:?}")
        })?;
        let took = at - answered_at;
        ensure(took <= 1_000, || {
            format!("dev{dev} rang {took}ms after the answer")
        })?;
        ensure(final_state(&world, dev) == Some(CallState::Ended), || {
            format!("dev{dev} ends {:?}", final_state(&world, dev))
        })?;
    }
    ensure(
        world.devices[2].stops[0].2 == Some(Channel::WebSocket),
        || format!("web dismissed via {:?}", world.devices[2].stops[0].2),
    )
}

/// T6: Android and iOS ring, both dozing (pushes held back, no WebSocket listener); iOS
/// answers. Expected: Android is dismissed by the SIP BYE; when SIP fails too, by polling
/// within 3 s plus one round trip.
pub fn t6_dozing_phone_dismissed_by_sip_then_by_polling() -> Outcome {
    for sip_lost in [false, true] {
        let mut android = device(Platform::Android);
        android.faults.doze = true;
        android.faults.backgrounded = true;
        android.faults.sip_lost = sip_lost;
        let mut ios = answering(Platform::Ios, 4_000);
        ios.faults.doze = true;
        ios.faults.backgrounded = true;
        let world = World::new(Plan::quiet(106, vec![android, ios], 40_000)).run();
        clean(&world)?;
        let (channel, took, _) = dismissal(&world, 0).ok_or("android never dismissed")?;
        let expected = if sip_lost {
            Channel::Poll
        } else {
            Channel::Sip
        };
        ensure(channel == expected, || {
            format!("sip_lost={sip_lost}: dismissed via {channel}")
        })?;
        let bound = POLL_INTERVAL_MS + 2 * world.plan().latencies.http.max_ms;
        ensure(took <= bound, || {
            format!("dismissed {took}ms after the answer")
        })?;
    }
    Ok(())
}

/// T7: an active call on iOS. Expected: the web app is told the call is live on the iPhone
/// ("In Call (Native)" badge) and the registry shows it.
pub fn t7_web_shows_native_call() -> Outcome {
    let plan = Plan::quiet(
        107,
        vec![answering(Platform::Ios, 2_000), device(Platform::Web)],
        30_000,
    );
    let mut world = World::new(plan);
    world.run_until(10_000);
    let ios = world.devices[0].id.clone();
    let active = block(
        world
            .store
            .active_calls(&ringmaster_core::UserId::new("user-1")),
    )
    .map_err(|e| e.to_string())?;
    ensure(
        active.len() == 1 && active[0].device_id.as_ref() == Some(&ios),
        || format!("registry during the call: {active:?}"),
    )?;
    ensure(world.devices[1].other_active.contains(&ios), || {
        format!("web badge shows {:?}", world.devices[1].other_active)
    })?;
    let world = world.run();
    clean(&world)
}

/// T8: an active call on Android; the web app tries an outbound call. Expected: the backend
/// refuses it as "user already on a call" (the registry's compare-and-set says busy).
pub fn t8_second_call_refused_while_on_a_call() -> Outcome {
    let plan = Plan::quiet(
        108,
        vec![answering(Platform::Android, 2_000), device(Platform::Web)],
        30_000,
    );
    let mut world = World::new(plan);
    world.run_until(10_000);
    let user = ringmaster_core::UserId::new("user-1");
    let outbound = CallSessionId::new("v3:web-outbound");
    let mut commit = Commit::new(
        outbound.clone(),
        user.clone(),
        None,
        serde_json::json!({"outbound": true}),
        "bridged",
        Timestamp::from_millis(world.now()),
    );
    commit
        .registry
        .push(RegistryChange::Set(ringmaster_store::ActiveCall {
            user_id: user,
            call_session_id: outbound,
            device_id: Some(world.devices[1].id.clone()),
            started_at: Timestamp::from_millis(world.now()),
            platform: Some("web".to_owned()),
            state: ringmaster_core::CallState::Active,
            since: Timestamp::from_millis(world.now()),
        }));
    let outcome = block(world.store.commit(commit)).map_err(|e| e.to_string())?;
    let android = world.devices[0].id.clone();
    match outcome {
        CommitOutcome::Busy { active }
            if active.len() == 1 && active[0].device_id.as_ref() == Some(&android) => {}
        other => return Err(format!("second call was not refused: {other:?}")),
    }
    let world = world.run();
    clean(&world)
}

/// The busy rule as the server runs it (issue 11, item 6): the user's other call becomes
/// active on another device while this one rings, then the Android device answers this one.
/// The store refuses the second active-call entry; the engine tells the session
/// (`Input::RegistryBusy`) and runs the answer again. Expected, as on the server: nothing is
/// bridged, the call is recorded busy, every device here ends it with reason `busy`, and the
/// other call keeps the user's entry. No invariant is violated: the refusal is the rule at
/// work, not a fault.
pub fn busy_answer_while_on_another_call_is_turned_away() -> Outcome {
    let plan = Plan::quiet(
        116,
        vec![answering(Platform::Android, 4_000), device(Platform::Web)],
        30_000,
    );
    let mut world = World::new(plan);
    world.run_until(2_000);
    let user = world.user().clone();
    let other = CallSessionId::new("v3:other-call");
    let now = Timestamp::from_millis(world.now());
    let mut commit = Commit::new(
        other.clone(),
        user.clone(),
        None,
        serde_json::json!({"elsewhere": true}),
        "bridged",
        now,
    );
    commit
        .registry
        .push(RegistryChange::Set(ringmaster_store::ActiveCall {
            user_id: user.clone(),
            call_session_id: other.clone(),
            device_id: Some(DeviceId::new("desk-phone")),
            started_at: now,
            platform: Some("ios".to_owned()),
            state: CallState::Active,
            since: now,
        }));
    match block(world.store.commit(commit)).map_err(|e| e.to_string())? {
        CommitOutcome::Committed { .. } => {}
        other => return Err(format!("the other call was not stored: {other:?}")),
    }
    let world = world.run();
    clean(&world)?;
    ensure(world.obs.registry_busy > 0, || {
        "the registry never refused the answer".to_owned()
    })?;
    let session = world.session().ok_or("no session")?;
    ensure(session.status() == SessionStatus::Busy, || {
        format!("recorded {}", session.status())
    })?;
    ensure(world.telnyx.bridged_devices.is_empty(), || {
        format!("bridged {:?}", world.telnyx.bridged_devices)
    })?;
    for dev in 0..world.devices.len() {
        let status = world.status_for(dev).ok_or("no status")?;
        ensure(status.reason == Some(DismissReason::Busy), || {
            format!("dev{dev} told {:?}", status.reason)
        })?;
    }
    let active = block(world.store.active_calls(&user)).map_err(|e| e.to_string())?;
    ensure(
        active.len() == 1 && active[0].call_session_id == other,
        || format!("registry after: {active:?}"),
    )
}

/// Runs "device B has these faults, device A answers" and returns B's dismissal.
fn b_dismissed(
    seed: u64,
    faults: impl FnOnce(&mut DevicePlan),
) -> Result<(World, Channel, u64), String> {
    let mut b = device(Platform::Android);
    faults(&mut b);
    let plan = Plan::quiet(seed, vec![answering(Platform::Ios, 4_500), b], 40_000);
    let world = World::new(plan).run();
    clean(&world)?;
    let (channel, took, reason) = dismissal(&world, 1).ok_or("B was never dismissed")?;
    ensure(
        matches!(
            reason,
            StopReason::Dismissed { .. } | StopReason::LegCancelled
        ),
        || format!("B stopped with {reason:?}"),
    )?;
    ensure(final_state(&world, 1) == Some(CallState::Ended), || {
        format!("B ends {:?}", final_state(&world, 1))
    })?;
    Ok((world, channel, took))
}

/// T9: SIP BYE to device B is blocked; A answers. Expected: B is dismissed by push or polling.
pub fn t9_sip_blocked_dismissed_by_push_or_poll() -> Outcome {
    let (_, channel, _) = b_dismissed(109, |b| {
        b.faults.sip_lost = true;
        b.faults.backgrounded = true;
    })?;
    ensure(matches!(channel, Channel::Push | Channel::Poll), || {
        format!("dismissed via {channel}")
    })
}

/// T10: pushes to device B are blocked; A answers. Expected: B is dismissed by the SIP BYE.
pub fn t10_push_blocked_dismissed_by_sip() -> Outcome {
    let (_, channel, _) = b_dismissed(110, |b| {
        b.faults.push_blocked = true;
        b.faults.backgrounded = true;
    })?;
    ensure(channel == Channel::Sip, || {
        format!("dismissed via {channel}")
    })
}

/// T11: device B's app is backgrounded (no WebSocket listener); A answers. Expected: B is
/// dismissed without the WebSocket (the spec names SIP BYE or polling; here the push, which is
/// up, may also win).
pub fn t11_backgrounded_dismissed_without_websocket() -> Outcome {
    let (_, channel, _) = b_dismissed(111, |b| b.faults.backgrounded = true)?;
    ensure(channel != Channel::WebSocket, || {
        "a backgrounded app was dismissed via the WebSocket".to_owned()
    })
}

/// T12: SIP, push and WebSocket all fail for device B; A answers. Expected: B is dismissed by
/// polling within 3 s plus one round trip.
pub fn t12_all_channels_fail_poll_dismisses() -> Outcome {
    let (world, channel, took) = b_dismissed(112, |b| {
        b.faults.sip_lost = true;
        b.faults.push_blocked = true;
        b.faults.ws_down = true;
    })?;
    ensure(channel == Channel::Poll, || {
        format!("dismissed via {channel}")
    })?;
    let bound = POLL_INTERVAL_MS + 2 * world.plan().latencies.http.max_ms;
    ensure(took <= bound, || {
        format!("dismissed {took}ms after the answer, bound {bound}ms")
    })
}

/// T13: a held call receives a ring. Expected: the state machine rejects it and nothing
/// changes.
pub fn t13_held_call_cannot_ring() -> Outcome {
    let at = Timestamp::from_millis;
    let mut call = Call::new(Direction::Inbound, at(0));
    for t in [Trigger::IncomingCall, Trigger::LocalAnswer, Trigger::Hold] {
        call.apply(t, at(1)).map_err(|e| e.to_string())?;
    }
    let before = call.clone();
    ensure(
        matches!(
            call.apply(Trigger::IncomingCall, at(2)),
            Err(TransitionError::Illegal {
                state: CallState::OnHold,
                ..
            })
        ) && call == before,
        || "core accepted HELD -> RINGING".to_owned(),
    )?;
    // The same through the device agent, fed by the SDK.
    let id = CallSessionId::new("v3:t13");
    let mut agent = DeviceAgent::new(
        DeviceId::new("a"),
        Platform::Android,
        AgentConfig::default(),
    );
    let ring = |agent: &mut DeviceAgent| {
        agent.handle(
            Input::Sdk {
                call_session_id: id.clone(),
                direction: Direction::Inbound,
                state: SdkState::ringing(Platform::Android),
                cause: None,
            },
            at(3),
        )
    };
    ring(&mut agent).map_err(|e| e.to_string())?;
    for action in [AppAction::Answer, AppAction::Hold] {
        agent
            .handle(
                Input::App {
                    call_session_id: id.clone(),
                    action,
                },
                at(4),
            )
            .map_err(|e| e.to_string())?;
    }
    let snapshot = agent.snapshot();
    ensure(
        matches!(ring(&mut agent), Err(AgentError::Refused { .. })) && agent.snapshot() == snapshot,
        || "agent accepted HELD -> RINGING".to_owned(),
    )
}

/// T14: a finished call receives a late RECONNECTING. Expected: rejected as a late event;
/// late SIP is ignored.
pub fn t14_late_sip_on_ended_call_is_ignored() -> Outcome {
    let at = Timestamp::from_millis;
    let mut call = Call::new(Direction::Inbound, at(0));
    for t in [Trigger::IncomingCall, Trigger::LocalAnswer, Trigger::Hangup] {
        call.apply(t, at(1)).map_err(|e| e.to_string())?;
    }
    ensure(
        call.apply(Trigger::NetworkChange, at(2))
            .is_err_and(|e| e.is_late())
            && call.state() == CallState::Ended,
        || "core accepted DONE -> RECONNECTING".to_owned(),
    )?;
    let id = CallSessionId::new("v3:t14");
    let mut agent = DeviceAgent::new(DeviceId::new("i"), Platform::Ios, AgentConfig::default());
    let sdk = |name: &str| -> Result<Input, String> {
        Ok(Input::Sdk {
            call_session_id: id.clone(),
            direction: Direction::Inbound,
            state: SdkState::parse(Platform::Ios, name).map_err(|e| e.to_string())?,
            cause: None,
        })
    };
    for name in ["RINGING", "ACTIVE", "DONE"] {
        agent.handle(sdk(name)?, at(3)).map_err(|e| e.to_string())?;
    }
    let fx = agent
        .handle(sdk("RECONNECTING")?, at(4))
        .map_err(|e| e.to_string())?;
    ensure(
        fx.is_empty() && agent.call_state(&id) == Some(CallState::Ended),
        || format!("late RECONNECTING produced {fx:?}"),
    )?;
    // A late VoIP push for it is reported to CallKit and ended at once, never rung.
    let fx = agent
        .handle(
            Input::IncomingCall {
                call_session_id: id.clone(),
                from: "+1555".into(),
                sent_at: at(0),
                via: Delivery::Push { voip: true },
            },
            at(5),
        )
        .map_err(|e| e.to_string())?;
    ensure(
        matches!(fx.as_slice(), [Effect::ReportThenEnd { .. }]),
        || format!("late VoIP push produced {fx:?}"),
    )
}

/// T15: two devices answer within 10 ms. Expected: exactly one is bridged and recorded as the
/// winner; the other ends. Run over many seeds, with the two answer webhooks forced onto
/// different coordinator nodes at the same moment so the compare-and-set decides.
pub fn t15_two_answers_10ms_apart_bridge_once() -> Outcome {
    let mut conflicts = 0;
    for seed in 0..60u64 {
        let mut plan = Plan::quiet(
            1500 + seed,
            vec![
                answering(Platform::Android, 3_000),
                answering(Platform::Ios, 3_010),
                device(Platform::Web),
            ],
            30_000,
        );
        // Identical webhook latency and slow commits: both answers are handled concurrently.
        plan.latencies.webhook = crate::faults::Latency::new(100, 100);
        plan.latencies.sip_up = crate::faults::Latency::new(50, 50);
        plan.latencies.processing = crate::faults::Latency::new(20, 30);
        let world = World::new(plan).run();
        clean(&world)?;
        conflicts += world.obs.cas_conflicts;
        let bridged = &world.telnyx.bridged_devices;
        ensure(bridged.len() == 1, || {
            format!("seed {seed}: bridged {bridged:?}")
        })?;
        let winner = *bridged.iter().next().unwrap_or(&usize::MAX);
        let loser = 1 - winner.min(1);
        let session = world.session().ok_or("no session")?;
        ensure(
            session.answered_device() == Some(&world.devices[winner].id),
            || format!("seed {seed}: winner not recorded"),
        )?;
        ensure(final_state(&world, loser) == Some(CallState::Ended), || {
            format!("seed {seed}: loser ends {:?}", final_state(&world, loser))
        })?;
    }
    ensure(conflicts > 0, || {
        "the two answers never raced on the store's compare-and-set".to_owned()
    })
}

/// G-14: the remote party holds an answered call, then resumes. The phone's agent gets the
/// raw re-offers, classifies them with the core's SDP rules, moves to REMOTE_HOLD and back and
/// reports each move; the backend session accepts the reports and publishes them, and the
/// user's web tab takes the published states.
pub fn g14_remote_hold_reaches_every_device() -> Outcome {
    use ringmaster_core::session::{
        Action, Command, Effect as Fx, Input as SessionInput, NewInbound, NotifyEvent,
        ProviderEvent, ProviderEventKind, RingTarget, Session, SessionConfig,
    };
    use ringmaster_core::{CallControlId, TenantId, UserId};
    let at = Timestamp::from_millis;
    let id = CallSessionId::new("g14");
    let (phone, web) = (DeviceId::new("android-0"), DeviceId::new("web-1"));
    let target = |d: &DeviceId, platform: &str| RingTarget {
        device_id: d.clone(),
        sip_uri: format!("sip:{d}@sip.telnyx.com"),
        platform: platform.to_owned(),
    };
    let mut session = Session::new_inbound(
        NewInbound {
            id: id.clone(),
            tenant: TenantId::new("t"),
            user: UserId::new("u"),
            caller_leg: CallControlId::new("caller"),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            devices: vec![target(&phone, "android"), target(&web, "web")],
            busy: false,
            config: SessionConfig::default(),
        },
        at(0),
    )
    .map_err(|e| e.to_string())?;
    let mut published = Vec::new();
    let mut run = |s: &mut Session, input: SessionInput, t: u64| -> Result<Vec<Fx>, String> {
        let fx = s.handle(input, at(t)).map_err(|e| e.to_string())?;
        published.extend(fx.iter().filter_map(|e| match e {
            Fx::Notify(n) => match &n.event {
                NotifyEvent::CallStateChanged {
                    device: Some(d),
                    state,
                    version,
                    ..
                } => Some((d.clone(), *state, *version)),
                _ => None,
            },
            _ => None,
        }));
        Ok(fx)
    };
    // Ring both, the phone answers, the caller is answered and bridged.
    let dials: Vec<(String, DeviceId)> = run(&mut session, SessionInput::Start, 0)?
        .into_iter()
        .filter_map(|e| match e {
            Fx::Telnyx(Command {
                command_id,
                action: Action::Dial {
                    device: Some(d), ..
                },
                ..
            }) => Some((command_id, d)),
            _ => None,
        })
        .collect();
    for (command_id, d) in dials {
        let ccid = CallControlId::new(format!("leg-{d}"));
        run(
            &mut session,
            SessionInput::DialResult {
                command_id,
                result: Ok(ccid),
            },
            100,
        )?;
    }
    let answer = run(
        &mut session,
        SessionInput::Provider(ProviderEvent::new(
            format!("leg-{phone}"),
            None,
            ProviderEventKind::Answered,
        )),
        1_000,
    )?
    .into_iter()
    .find_map(|e| match e {
        Fx::Telnyx(Command {
            command_id,
            action: Action::Answer { .. },
            ..
        }) => Some(command_id),
        _ => None,
    })
    .ok_or("the caller was not answered")?;
    run(
        &mut session,
        SessionInput::CommandResult {
            command_id: answer,
            result: Ok(()),
        },
        1_100,
    )?;
    let bridged = ProviderEvent::new("caller", None, ProviderEventKind::Bridged);
    run(&mut session, SessionInput::Provider(bridged), 1_200)?;

    // The phone's agent answers, then sees the remote hold and resume re-offers.
    let mut agent = DeviceAgent::new(phone.clone(), Platform::Android, AgentConfig::default());
    let offer = |direction: &str| {
        format!(
            "v=0\r\no=FreeSWITCH 1 2 IN IP4 192.0.2.10\r\ns=FreeSWITCH\r\n\
             c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 23456 RTP/AVP 0\r\n\
             a=rtpmap:0 PCMU/8000\r\na={direction}\r\n"
        )
    };
    let inputs = [
        Input::IncomingCall {
            call_session_id: id.clone(),
            from: "+15550001111".into(),
            sent_at: at(0),
            via: Delivery::WebSocket,
        },
        Input::App {
            call_session_id: id.clone(),
            action: AppAction::Answer,
        },
        Input::SdpReoffer {
            call_session_id: id.clone(),
            sdp: offer("sendonly"),
        },
        Input::SdpReoffer {
            call_session_id: id.clone(),
            sdp: offer("sendrecv"),
        },
    ];
    let mut states = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let t = 1_000 + 1_000 * i as u64;
        for e in agent.handle(input, at(t)).map_err(|e| e.to_string())? {
            if let Effect::ReportTransition(r) = e {
                let report = SessionInput::DeviceReport {
                    device: r.device_id,
                    seq: r.seq,
                    from: r.from,
                    to: r.to,
                    trigger: Some(r.trigger),
                    at: Some(r.at),
                    exclude_socket: None,
                    channel: None,
                };
                run(&mut session, report, t + 50)?;
            }
        }
        states.push(agent.call_state(&id));
    }
    ensure(
        states[2] == Some(CallState::RemoteHold) && states[3] == Some(CallState::Active),
        || format!("phone went through {states:?}"),
    )?;
    let phone_states: Vec<CallState> = published
        .iter()
        .filter(|(d, _, _)| *d == phone)
        .map(|(_, s, _)| *s)
        .collect();
    ensure(
        phone_states.ends_with(&[CallState::RemoteHold, CallState::Active]),
        || format!("the backend published {phone_states:?}"),
    )?;
    ensure(published.windows(2).all(|w| w[0].2 < w[1].2), || {
        format!("versions did not grow: {published:?}")
    })?;
    // The web tab takes every published state of the phone.
    let mut tab = DeviceAgent::new(web, Platform::Web, AgentConfig::default());
    for (device, state, _) in &published {
        let input = Input::CallStateChanged {
            call_session_id: id.clone(),
            device: Some(device.clone()),
            state: *state,
        };
        tab.handle(input, at(9_000))
            .map_err(|e| format!("web tab refused {state}: {e}"))?;
    }
    Ok(())
}
