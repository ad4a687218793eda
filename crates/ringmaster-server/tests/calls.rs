//! End-to-end call flows: HTTP API and signed webhooks against the in-process emulator.

mod common;

use common::*;
use reqwest::StatusCode;
use ringmaster_core::session::{Channel, NotifyEvent};
use ringmaster_telnyx::emulator::{CommandOutcome, ControlError, FailNext, Faults, LegState};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_answer_of_three_is_bridged_and_the_others_are_dismissed() {
    one_answer_of_three(&Harness::start(Options::default()).await).await;
}

/// The same call on the PostgreSQL backend (a schema of its own on the real server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_answer_of_three_on_postgresql() {
    let mut h = Harness::start(Options {
        postgres: true,
        ..Options::default()
    })
    .await;
    let schema = h
        .pg_schema
        .clone()
        .expect("a PostgreSQL harness has a schema");
    one_answer_of_three(&h).await;
    // A server still writing (the timer loop claims every tick) would deadlock with DROP SCHEMA.
    h.stop().await;
    drop_postgres_schema(&schema).await;
}

async fn one_answer_of_three(h: &Harness) {
    let user = h.user(&["ios", "android", "web"], false, false).await;
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    for d in &user.devices {
        assert_eq!(h.status(&call, d).await["status"], "ringing");
    }

    h.emulator.answer(&legs[2]).unwrap();
    let web = &user.devices[2];
    let here = h.wait_status(&call, web, "bridged").await;
    assert_eq!(here["status"], "answered_here");

    assert_eq!(h.executed_on("bridge", &caller).len(), 1);
    assert_eq!(h.emulator.executed("bridge").len(), 1);
    for (leg, device) in legs.iter().zip(&user.devices).take(2) {
        eventually("loser hung up", || {
            (h.executed_on("hangup", leg).len() == 1).then_some(())
        })
        .await;
        let seen = h.status(&call, device).await;
        assert_eq!(seen["status"], "answered_elsewhere", "{seen}");
        assert_eq!(seen["reason"], "answered_elsewhere");
        assert_eq!(seen["device_id"], web.id.as_str());
    }
    assert!(h.executed_on("hangup", &legs[2]).is_empty());

    let (_, active) = h
        .get("/api/voip/my-active-call", &user.devices[0].token)
        .await;
    assert_eq!(active["active_call"]["call_session_id"], call.as_str());
    assert_eq!(active["active_call"]["device_id"], web.id.as_str());

    // WebSocket gets one call_ended for everyone; each phone also gets a push; the winner none.
    let notes = eventually("dismissals delivered", || {
        let n = h.notes_for(&call);
        (n.iter()
            .filter(|n| is_call_ended(n, "answered_elsewhere", true))
            .count()
            == 2)
            .then_some(n)
    })
    .await;
    assert_eq!(
        notes
            .iter()
            .filter(|n| is_call_ended(n, "answered_elsewhere", false))
            .count(),
        1
    );
    let pushed: HashSet<_> = notes
        .iter()
        .filter(|n| is_call_ended(n, "answered_elsewhere", true))
        .filter_map(|n| match &n.channel {
            Channel::Push { device, .. } => Some(device.as_str().to_owned()),
            Channel::WebSocket => None,
        })
        .collect();
    assert_eq!(
        pushed,
        HashSet::from([user.devices[0].id.clone(), user.devices[1].id.clone()])
    );

    // The caller hangs up: the device leg goes, the registry entry goes, history says ended.
    h.emulator.hangup(&caller).unwrap();
    h.wait_status(&call, web, "ended").await;
    let (_, active) = h.get("/api/voip/my-active-call", &web.token).await;
    assert!(active["active_call"].is_null(), "{active}");
    let detail = h.detail(&call, web).await;
    assert_eq!(detail["call"]["status"], "ended");
    assert_eq!(detail["call"]["answered_device"], web.id.as_str());
    assert_eq!(detail["legs"].as_array().unwrap().len(), 4);
    let (_, history) = h.get("/api/voip/calls", &web.token).await;
    assert_eq!(history["items"][0]["call_session_id"], call.as_str());
    // A talked call bills whole minutes, at least one.
    assert!(history["items"][0]["billable_seconds"].as_u64().unwrap() >= 1);
    assert_eq!(history["items"][0]["billing_minutes"], 1);
    assert_eq!(detail["call"]["billing_minutes"], 1);
    // The emulator reports MOS 4.5 on hangup: the history rates the call's audio.
    assert_eq!(
        detail["call"]["quality_summary"]["rating"], "excellent",
        "{detail}"
    );
    assert!(h.executed_twice().is_empty());
}

/// `call.answered` for an emulated leg, as Telnyx would send it (a second delivery path that
/// races the emulator's own, sequential, webhook delivery).
fn answered_webhook(leg: &ringmaster_telnyx::emulator::CallSnapshot) -> Vec<u8> {
    json!({"data": {
        "record_type": "event",
        "event_type": "call.answered",
        "id": uuid::Uuid::new_v4().to_string(),
        "occurred_at": "2026-01-01T00:00:00.000Z",
        "payload": {
            "call_control_id": leg.call_control_id,
            "call_leg_id": leg.call_leg_id,
            "call_session_id": leg.call_session_id,
            "client_state": leg.client_state,
            "from": leg.from,
            "to": leg.to,
            "state": "answered",
        }
    }})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_answers_ten_ms_apart_bridge_once_across_200_concurrent_calls() {
    const CALLS: usize = 200;
    let h = std::sync::Arc::new(Harness::start(Options::default()).await);
    let mut users = Vec::new();
    for _ in 0..CALLS {
        users.push(h.user(&["android", "web"], false, false).await);
    }
    let calls: Vec<_> = users.iter().map(|u| h.call(u)).collect();
    let mut legs = Vec::new();
    for ((call, _), user) in calls.iter().zip(&users) {
        h.ringing(call, user).await;
        legs.push(
            user.devices
                .iter()
                .map(|d| h.leg_of(call, d).unwrap())
                .collect::<Vec<_>>(),
        );
    }

    // Every call: both devices pick up; their answers reach the server 10 ms apart, posted
    // directly for all calls at once (and again through the emulator's own delivery).
    for pair in &legs {
        for leg in pair {
            // The server may already have cancelled the second leg: it saw the first answer.
            match h.emulator.answer(&leg.call_control_id) {
                Ok(()) | Err(ControlError::Ended(_)) => {}
                Err(e) => panic!("answering {}: {e}", leg.call_control_id),
            }
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for pair in legs.clone() {
        let h = h.clone();
        tasks.spawn(async move {
            for (i, leg) in pair.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let (status, body) = h
                    .send_webhook(&h.signer, unix_now(), answered_webhook(leg))
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }

    for (call, _) in &calls {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let s = h.session(call).await.unwrap();
            if s.status().as_str() == "bridged" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {call} not bridged: {}",
                s.status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(h.emulator.wait_for_webhooks(Duration::from_secs(60)).await);
    for (((call, caller), user), pair) in calls.iter().zip(&users).zip(&legs) {
        assert_eq!(h.executed_on("bridge", caller).len(), 1, "call {call}");
        let winner = h
            .session(call)
            .await
            .unwrap()
            .answered_device()
            .cloned()
            .unwrap();
        for (device, leg) in user.devices.iter().zip(pair) {
            let won = winner.as_str() == device.id;
            let now = h.emulator.call(&leg.call_control_id).unwrap();
            assert_eq!(
                now.bridged_with.as_ref() == Some(caller),
                won,
                "call {call}"
            );
            let hangups = h.executed_on("hangup", &leg.call_control_id).len();
            assert_eq!(hangups, usize::from(!won), "call {call}");
        }
    }
    assert_eq!(h.emulator.executed("bridge").len(), CALLS);
    assert!(h.executed_twice().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hangup_while_ringing_cancels_every_leg_and_records_a_missed_call() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "android", "web"], false, false).await;
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;

    h.emulator.hangup(&caller).unwrap();
    let seen = h.wait_status(&call, &user.devices[0], "missed").await;
    assert_eq!(seen["status"], "missed");
    assert_eq!(seen["reason"], "caller_cancelled");
    for leg in &legs {
        eventually("leg cancelled", || {
            (h.emulator.call(leg)?.state == LegState::Ended).then_some(())
        })
        .await;
        assert_eq!(h.executed_on("hangup", leg).len(), 1);
    }
    assert!(h.emulator.executed("bridge").is_empty());
    let (_, history) = h.get("/api/voip/calls", &user.devices[1].token).await;
    let record = &history["items"][0];
    assert_eq!(record["call_session_id"], call.as_str());
    assert_eq!(record["status"], "missed");
    assert_eq!(record["hangup_cause"], "caller_cancelled");
    assert_eq!(record["billing_minutes"], 0, "a missed call bills nothing");
    // The dismissal is dispatched after the commit the history reflects, so it may trail it.
    eventually("call_ended over the WebSocket", || {
        h.notes_for(&call)
            .iter()
            .any(|n| is_call_ended(n, "caller_cancelled", false))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_timeout_goes_to_voicemail_and_keeps_the_recording() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["android", "web"], false, true).await;
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;

    h.clock.advance(Duration::from_secs(31));
    eventually("greeting, then recording", || {
        (h.executed_on("record_start", &caller).len() == 1).then_some(())
    })
    .await;
    assert_eq!(h.executed_on("answer", &caller).len(), 1);
    assert_eq!(h.executed_on("speak", &caller).len(), 1);
    for leg in &legs {
        assert_eq!(h.executed_on("hangup", leg).len(), 1);
    }
    // The caller leaves a message and hangs up; Telnyx then saves the recording.
    h.emulator.hangup(&caller).unwrap();
    let seen = h.wait_status(&call, &user.devices[0], "voicemail").await;
    assert_eq!(seen["status"], "missed");
    assert_eq!(seen["reason"], "timeout");
    let detail = eventually_detail(&h, &call, &user.devices[0]).await;
    let url = detail["call"]["recording_url"].as_str().unwrap();
    assert!(url.starts_with(&h.emulator.control_url()), "{url}");
    assert_eq!(detail["call"]["status"], "voicemail");
    let resp = h.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(h.executed_twice().is_empty());
}

async fn eventually_detail(
    h: &Harness,
    call: &ringmaster_core::CallSessionId,
    device: &Device,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let d = h.detail(call, device).await;
        if !d["call"]["recording_url"].is_null() {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "no recording: {d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rings one device with the caller already answered, so the device's answer makes the bridge
/// the very next command; fails the next `failures` commands; answers.
async fn bridge_with_failures(
    failures: u32,
) -> (
    Harness,
    User,
    ringmaster_core::CallSessionId,
    ringmaster_core::CallControlId,
    ringmaster_core::CallControlId,
) {
    let h = Harness::start(Options {
        caller_answer_immediately: true,
        ..Options::default()
    })
    .await;
    let user = h.user(&["ios"], false, false).await;
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    eventually("caller answered", || {
        (h.emulator.call(&caller)?.state == LegState::Answered).then_some(())
    })
    .await;
    assert!(h.emulator.wait_for_webhooks(PATIENCE).await);
    h.emulator
        .inject(Faults {
            fail_next: Some(FailNext {
                count: failures,
                status: 503,
                retry_after: None,
            }),
            ..Faults::default()
        })
        .unwrap();
    h.emulator.answer(&legs[0]).unwrap();
    (h, user, call, caller, legs[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_that_fails_once_is_retried() {
    let (h, user, call, caller, leg) = bridge_with_failures(1).await;
    let seen = h.wait_status(&call, &user.devices[0], "bridged").await;
    assert_eq!(seen["status"], "answered_here");
    let bridges = h.received_on("bridge", &caller);
    let outcomes: Vec<_> = bridges.iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        vec![CommandOutcome::FaultInjected, CommandOutcome::Executed]
    );
    assert_ne!(bridges[0].command_id, bridges[1].command_id);
    assert_eq!(
        h.emulator.call(&caller).unwrap().bridged_with.as_ref(),
        Some(&leg)
    );
    let timeline = h.timeline(&call, &user.devices[0]).await;
    assert!(
        timeline.iter().any(|k| k == "bridge_failed"),
        "{timeline:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_that_fails_twice_hangs_everything_up() {
    let (h, user, call, caller, leg) = bridge_with_failures(2).await;
    let seen = h.wait_status(&call, &user.devices[0], "failed").await;
    assert_eq!(seen["status"], "ended");
    for ccid in [&caller, &leg] {
        eventually("leg hung up", || {
            (h.emulator.call(ccid)?.state == LegState::Ended).then_some(())
        })
        .await;
        assert_eq!(h.executed_on("hangup", ccid).len(), 1);
    }
    assert!(h.emulator.executed("bridge").is_empty());
    assert_eq!(h.received_on("bridge", &caller).len(), 2);
    let detail = h.detail(&call, &user.devices[0]).await;
    assert_eq!(detail["call"]["status"], "failed");
    // Answered but never bridged: nothing is billed.
    assert_eq!(detail["call"]["billing_minutes"], 0, "{detail}");
    assert_eq!(detail["billing"]["quantity"], 0, "{detail}");
    assert_eq!(detail["billing"]["unit"], "simple_call_minute");
    let (_, active) = h
        .get("/api/voip/my-active-call", &user.devices[0].token)
        .await;
    assert!(active["active_call"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_webhooks_give_the_same_outcome() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "android", "web"], false, false).await;
    let duplicate_all = Faults {
        duplicate_next: Some(1000),
        ..Faults::default()
    };
    let reverse_two = Faults {
        reorder_next: Some(2),
        ..Faults::default()
    };
    h.emulator.inject(duplicate_all).unwrap();
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;

    // Two answers whose webhooks arrive in reverse order, each twice.
    h.emulator.inject(reverse_two.clone()).unwrap();
    h.emulator.answer(&legs[0]).unwrap();
    h.emulator.answer(&legs[1]).unwrap();
    h.wait_status(&call, &user.devices[0], "bridged").await;
    assert!(h.emulator.wait_for_webhooks(PATIENCE).await);
    let winner = h
        .session(&call)
        .await
        .unwrap()
        .answered_device()
        .cloned()
        .unwrap();
    let won = |leg: &ringmaster_core::CallControlId| {
        h.emulator.call(leg).unwrap().bridged_with.as_ref() == Some(&caller)
    };
    let winners: Vec<_> = legs.iter().filter(|l| won(l)).cloned().collect();
    assert_eq!(winners.len(), 1);
    let winner_leg = winners[0].clone();
    assert_eq!(
        h.leg_of(
            &call,
            user.devices
                .iter()
                .find(|d| d.id == winner.as_str())
                .unwrap()
        )
        .unwrap()
        .call_control_id,
        winner_leg
    );

    // The caller hangs up: its hangup and the device leg's arrive reversed, twice each.
    h.emulator.inject(reverse_two).unwrap();
    h.emulator.hangup(&caller).unwrap();
    h.wait_status(&call, &user.devices[0], "ended").await;
    assert!(h.emulator.wait_for_webhooks(PATIENCE).await);

    let webhooks = h.emulator.webhooks();
    let unique: HashSet<_> = webhooks.iter().map(|w| w.event_id.clone()).collect();
    assert_eq!(
        webhooks.len(),
        2 * unique.len(),
        "every webhook arrived twice"
    );
    assert!(webhooks.iter().all(|w| w.status == Some(200)));

    assert_eq!(h.emulator.executed("bridge").len(), 1);
    assert_eq!(h.emulator.executed("dial").len(), 3);
    for leg in &legs {
        let expected = usize::from(*leg != winner_leg);
        assert_eq!(h.executed_on("hangup", leg).len(), expected);
    }
    assert!(h.executed_twice().is_empty());
    let detail = h.detail(&call, &user.devices[0]).await;
    assert_eq!(detail["call"]["status"], "ended");
    assert_eq!(detail["call"]["answered_device"], winner.as_str());
    let arrivals = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("webhook."))
        .count();
    assert_eq!(arrivals, unique.len(), "each webhook recorded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_ring_keeps_the_timer_and_sends_nothing_twice() {
    let mut h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "web"], false, false).await;
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    eventually("dials recorded", || {
        (h.emulator.executed("dial").len() == 2).then_some(())
    })
    .await;

    h.restart().await;
    h.clock.advance(Duration::from_secs(31));
    let seen = h.wait_status(&call, &user.devices[0], "missed").await;
    assert_eq!(seen["reason"], "timeout");
    for leg in legs.iter().chain([&caller]) {
        eventually("hung up after the restart", || {
            (h.emulator.call(leg)?.state == LegState::Ended).then_some(())
        })
        .await;
        assert_eq!(h.received_on("hangup", leg).len(), 1);
    }
    assert_eq!(
        h.emulator
            .commands()
            .iter()
            .filter(|c| c.action == "dial")
            .count(),
        2
    );
    assert!(h.executed_twice().is_empty());
    assert!(h
        .emulator
        .commands()
        .iter()
        .all(|c| c.outcome == CommandOutcome::Executed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangups_that_failed_before_a_crash_are_sent_after_the_restart() {
    let mut h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "web"], false, false).await;
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    let telnyx_down = |count| Faults {
        fail_next: Some(FailNext {
            count,
            status: 503,
            retry_after: None,
        }),
        ..Faults::default()
    };
    h.emulator.inject(telnyx_down(1000)).unwrap();
    h.emulator.hangup(&caller).unwrap();
    eventually("every hangup tried and refused", || {
        legs.iter()
            .all(|l| !h.received_on("hangup", l).is_empty())
            .then_some(())
    })
    .await;

    h.crash().await;
    h.emulator.inject(telnyx_down(0)).unwrap();
    h.restart().await;
    for leg in &legs {
        eventually("hung up after the restart", || {
            (h.emulator.call(leg)?.state == LegState::Ended).then_some(())
        })
        .await;
        assert_eq!(h.executed_on("hangup", leg).len(), 1);
        assert!(h
            .received_on("hangup", leg)
            .iter()
            .any(|c| c.outcome == CommandOutcome::FaultInjected));
    }
    let seen = h.wait_status(&call, &user.devices[0], "missed").await;
    assert_eq!(seen["reason"], "caller_cancelled");
    assert!(h.executed_twice().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_user_gets_409_and_a_second_caller_gets_busy() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "web"], false, false).await;
    let (call, _caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    h.emulator.answer(&legs[0]).unwrap();
    h.wait_status(&call, &user.devices[0], "bridged").await;

    let (status, body) = h
        .post(
            "/api/voip/calls",
            &user.devices[1].token,
            json!({"to": "+15550009999"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "call_collision");
    assert_eq!(
        body["error"]["active_call"]["call_session_id"],
        call.as_str()
    );

    let (second, second_caller) = h.call(&user);
    let seen = h.wait_status(&second, &user.devices[1], "busy").await;
    assert_eq!(seen["reason"], "busy");
    let rejects = eventually("second caller rejected", || {
        let r = h.executed_on("reject", &second_caller);
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(rejects[0].body["cause"], "USER_BUSY");
    assert!(
        h.leg_of(&second, &user.devices[0]).is_none(),
        "no device rang"
    );
    let (_, history) = h.get("/api/voip/calls", &user.devices[0].token).await;
    assert_eq!(history["items"][0]["status"], "busy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_stops_every_device_and_an_ignore_only_one() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "android", "web"], false, false).await;
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;

    let path = format!("/api/voip/calls/{call}/ignore");
    let (status, body) = h.post(&path, &user.devices[0].token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("ignored leg hung up", || {
        (h.executed_on("hangup", &legs[0]).len() == 1).then_some(())
    })
    .await;
    assert_eq!(h.status(&call, &user.devices[1]).await["status"], "ringing");

    let path = format!("/api/voip/calls/{call}/decline");
    let (status, body) = h.post(&path, &user.devices[2].token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = h.wait_status(&call, &user.devices[1], "declined").await;
    assert_eq!(seen["status"], "declined_elsewhere");
    assert_eq!(seen["device_id"], user.devices[2].id.as_str());
    for leg in &legs {
        eventually("every leg gone", || {
            (h.emulator.call(leg)?.state == LegState::Ended).then_some(())
        })
        .await;
        assert_eq!(h.executed_on("hangup", leg).len(), 1);
    }
    let reject = eventually("caller rejected", || {
        h.executed_on("reject", &caller).into_iter().next()
    })
    .await;
    assert_eq!(reject.body["cause"], "USER_BUSY");
    let (status, body) = h.post(&path, &user.devices[1].token, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "not_ringing");
    // History tells a declined call from a missed or a talked one.
    let detail = h.detail(&call, &user.devices[0]).await;
    assert_eq!(detail["call"]["status"], "declined", "{detail}");
    assert_eq!(detail["call"]["hangup_cause"], "declined_elsewhere");
    assert!(detail["call"]["answered_at"].is_null());
    let (_, history) = h.get("/api/voip/calls", &user.devices[0].token).await;
    assert_eq!(history["items"][0]["status"], "declined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_call_rings_the_device_then_the_destination() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["web"], false, false).await;
    let device = &user.devices[0];
    let to = fresh_number();
    h.emulator.script_endpoint(
        &device.sip_uri,
        ringmaster_telnyx::emulator::EndpointScript::AnswerAfterMs(10),
    );
    h.emulator.script_endpoint(
        &to,
        ringmaster_telnyx::emulator::EndpointScript::AnswerAfterMs(10),
    );
    let (status, body) = h
        .post("/api/voip/calls", &device.token, json!({"to": to}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let call = ringmaster_core::CallSessionId::new(body["call_session_id"].as_str().unwrap());
    let seen = h.wait_status(&call, device, "bridged").await;
    assert_eq!(seen["status"], "answered_here");
    let dials = h.emulator.executed("dial");
    assert_eq!(dials.len(), 2);
    assert_eq!(dials[0].body["to"], device.sip_uri.as_str());
    assert_eq!(dials[1].body["to"], to.as_str());
    assert_eq!(dials[1].body["from"], user.number.as_str());
    let detail = h.detail(&call, device).await;
    assert_eq!(detail["call"]["direction"], "outbound");
    let (_, active) = h.get("/api/voip/my-active-call", &device.token).await;
    assert_eq!(active["active_call"]["call_session_id"], call.as_str());
    eventually("ACTIVE broadcast", || {
        h.notes_for(&call)
            .iter()
            .any(|n| {
                matches!(
                    &n.event,
                    NotifyEvent::CallStateChanged { state, .. }
                        if *state == ringmaster_core::CallState::Active
                )
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dials_over_the_rate_limit_are_queued_not_failed() {
    use ringmaster_server::dial_limit::{busiest_window, DialLimit};
    let limit = DialLimit {
        max_dials: 2,
        window: Duration::from_millis(300),
    };
    let h = Harness::start(Options {
        dial_limit: Some(limit),
        ..Options::default()
    })
    .await;
    let user = h
        .user(&["web", "web", "web", "web", "web"], false, false)
        .await;
    let (call, _caller) = h.call(&user);
    // Every device still rings: the limit delays dials, it never drops them.
    h.ringing(&call, &user).await;
    assert_eq!(h.emulator.executed("dial").len(), 5);

    // The limiter's slots and the dispatcher's send times, by the server's clock (no
    // wall-clock measurement here). Send times may lag their slots under load, so the limit
    // is checked on the slots, and each dial must have waited for its slot.
    let dials = &h.server().state().dials;
    let starts = dials.recent_starts();
    assert_eq!(starts.len(), 5);
    assert!(starts.iter().all(|s| s.sent >= s.granted), "{starts:?}");
    let mut slots: Vec<_> = starts.iter().map(|s| s.granted).collect();
    slots.sort();
    assert!(busiest_window(&slots, limit.window) <= 2, "{starts:?}");
    // Five dials at two per window need at least three windows: the last slot is two
    // windows after the first.
    let spread = slots[4].saturating_since(slots[0]);
    assert!(spread >= limit.window * 2, "{starts:?}");
    assert_eq!(dials.queued(), 3);
    let (code, ready) = h.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ready["dials"]["queued"], 3);
}
