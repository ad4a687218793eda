//! One truth for every device (issue 14): device reports go through the session, states travel
//! under one spelling with a version that only grows, and the active-call registry is decided
//! inside the commit. Signed webhooks (the emulator), the device API and the WebSocket.

mod common;

use common::pusher::PusherClient;
use common::*;
use reqwest::StatusCode;
use ringmaster_core::session::SessionStatus;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn realtime() -> Options {
    Options {
        realtime: true,
        ..Options::default()
    }
}

/// Reads WebSocket events until `done` says stop; returns every event read.
async fn events_until(
    client: &mut PusherClient,
    mut done: impl FnMut(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    loop {
        let (event, _, data) = client.next_event().await;
        let stop = done(&event, &data);
        seen.push((event, data));
        if stop {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_reports_are_session_inputs_and_every_event_of_a_call_is_newer() {
    let h = Harness::start(realtime()).await;
    let user = h.user(&["ios", "web"], false, false).await;
    let (phone, web) = (&user.devices[0], &user.devices[1]);
    let mut tab = PusherClient::connect(h.addr).await;
    tab.subscribe(&web.token, &format!("private-user.{}", user.id))
        .await;

    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    h.emulator.answer(&legs[0]).unwrap();
    h.wait_status(&call, phone, "bridged").await;
    let path = format!("/api/voip/calls/{call}/events");
    let version = |reply: &Value| reply["version"].as_u64().unwrap();

    let answered = json!({"seq": 5, "from": "RINGING_INBOUND", "to": "ACTIVE",
                          "trigger": {"type": "local_answer"}});
    let (status, first) = h.post(&path, &phone.token, answered.clone()).await;
    assert_eq!(
        (status, &first["status"]),
        (StatusCode::OK, &json!("accepted"))
    );
    // A retry, and an older report that overtook nothing: acknowledged, nothing moves.
    let (status, again) = h.post(&path, &phone.token, answered).await;
    assert_eq!(
        (status, &again["status"]),
        (StatusCode::OK, &json!("duplicate"))
    );
    assert_eq!(version(&again), version(&first));
    let older = json!({"seq": 3, "from": "IDLE", "to": "RINGING_INBOUND"});
    let (status, reply) = h.post(&path, &phone.token, older).await;
    assert_eq!(
        (status, &reply["status"]),
        (StatusCode::OK, &json!("duplicate"))
    );

    // Gaps are fine; the next report must start where the device's last one ended.
    let hold = json!({"seq": 9, "from": "ACTIVE", "to": "ON_HOLD", "trigger": {"type": "hold"}});
    let (status, held) = h.post(&path, &phone.token, hold).await;
    assert_eq!(
        (status, &held["status"]),
        (StatusCode::OK, &json!("accepted"))
    );
    assert!(version(&held) > version(&first));
    let stale_from =
        json!({"seq": 10, "from": "ACTIVE", "to": "ON_HOLD", "trigger": {"type": "hold"}});
    let (status, reply) = h.post(&path, &phone.token, stale_from).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["error"]["code"], "state_mismatch");
    assert_eq!(reply["error"]["last_reported"], "ON_HOLD");
    let wrong_trigger = json!({"seq": 11, "from": "ON_HOLD", "to": "ACTIVE",
                               "trigger": {"type": "remote_hold"}});
    let (status, reply) = h.post(&path, &phone.token, wrong_trigger).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["code"], "illegal_transition");

    // The caller hangs up: the backend publishes ENDED; later reports are refused.
    h.emulator.hangup(&caller).unwrap();
    h.wait_status(&call, phone, "ended").await;
    let late = json!({"seq": 12, "from": "ON_HOLD", "to": "ENDED",
                      "trigger": {"type": "hangup"}});
    let (status, reply) = h.post(&path, &phone.token, late).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["error"]["code"], "call_ended");
    let retry = json!({"seq": 9, "from": "ACTIVE", "to": "ON_HOLD", "trigger": {"type": "hold"}});
    let (status, reply) = h.post(&path, &phone.token, retry).await;
    assert_eq!(
        (status, &reply["status"]),
        (StatusCode::OK, &json!("duplicate"))
    );

    let seen = events_until(&mut tab, |event, data| {
        event == "call_state_changed" && data["state"] == "ENDED"
    })
    .await;
    let mine: Vec<_> = seen
        .iter()
        .filter(|(_, d)| d["call_session_id"] == call.as_str())
        .collect();
    let versions: Vec<u64> = mine
        .iter()
        .map(|(_, d)| d["version"].as_u64().unwrap())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions only grow: {mine:?}"
    );
    assert_eq!(mine[0].0, "incoming_call");
    let changes: Vec<_> = mine
        .iter()
        .filter(|(e, d)| e == "call_state_changed" && d["device_id"] == phone.id.as_str())
        .map(|(_, d)| d.clone())
        .collect();
    for d in &changes {
        let keys: BTreeSet<_> = d.as_object().unwrap().keys().cloned().collect();
        let want: BTreeSet<_> = [
            "call_session_id",
            "device_id",
            "platform",
            "state",
            "previous_state",
            "version",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(keys, want, "{d}");
        assert_eq!(d["platform"], "ios");
    }
    let pairs: Vec<_> = changes
        .iter()
        .map(|d| {
            (
                d["previous_state"].as_str().unwrap(),
                d["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("IDLE", "RINGING_INBOUND"),
            ("RINGING_INBOUND", "ACTIVE"),
            ("RINGING_INBOUND", "ACTIVE"),
            ("ACTIVE", "ON_HOLD"),
            ("ON_HOLD", "ENDED"),
        ],
        "backend ring, bridge, the phone's two reports (once each), backend end"
    );

    let detail = h.detail(&call, phone).await;
    let timeline = detail["timeline"].as_array().unwrap();
    let reported: Vec<_> = timeline
        .iter()
        .filter(|e| e["source"] == "device")
        .map(|e| {
            (
                e["from_state"].clone(),
                e["to_state"].clone(),
                e["detail"]["seq"].clone(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        [
            (json!("RINGING_INBOUND"), json!("ACTIVE"), json!(5)),
            (json!("ACTIVE"), json!("ON_HOLD"), json!(9)),
        ]
    );
    // Every state in the timeline is spelled canonically.
    for e in timeline {
        for field in ["from_state", "to_state"] {
            if let Some(s) = e[field].as_str() {
                assert!(s.parse::<ringmaster_core::CallState>().is_ok(), "{e}");
                assert_eq!(s, s.to_uppercase(), "{e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_call_waiting_a_second_answer_is_refused_inside_the_commit() {
    let h = Harness::start(realtime()).await;
    let user = h.user(&["ios", "android"], false, false).await;
    let (phone, tablet) = (&user.devices[0], &user.devices[1]);
    let mut app = PusherClient::connect(h.addr).await;
    app.subscribe(&tablet.token, &format!("private-user.{}", user.id))
        .await;

    // Two calls ring at once: neither is busy when it starts ringing.
    let (first, _) = h.call(&user);
    let first_legs = h.ringing(&first, &user).await;
    let (second, second_caller) = h.call(&user);
    let second_legs = h.ringing(&second, &user).await;

    h.emulator.answer(&first_legs[0]).unwrap();
    h.wait_status(&first, phone, "bridged").await;
    let (_, active) = h.get("/api/voip/my-active-call", &tablet.token).await;
    let entries = active["active_calls"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{active}");
    assert_eq!(entries[0]["call_session_id"], first.as_str());
    assert_eq!(entries[0]["device_id"], phone.id.as_str());
    assert_eq!(entries[0]["platform"], "ios");
    assert_eq!(entries[0]["state"], "ACTIVE");
    assert!(entries[0]["since"].as_u64().is_some(), "{active}");

    // The tablet answers the other call: the commit refuses it.
    h.emulator.answer(&second_legs[1]).unwrap();
    h.wait_status(&second, tablet, "busy").await;
    let seen = h.status(&second, tablet).await;
    assert_eq!(seen["reason"], "busy", "{seen}");
    let (_, active) = h.get("/api/voip/my-active-call", &tablet.token).await;
    assert_eq!(
        active["active_calls"].as_array().unwrap().len(),
        1,
        "{active}"
    );
    assert_eq!(active["active_call"]["call_session_id"], first.as_str());
    let session = h.session(&second).await.unwrap();
    assert_eq!(session.status(), SessionStatus::Busy);
    assert!(session.answered_device().is_none());
    // Its leg is hung up, never bridged, and the caller is turned away busy.
    eventually("the refused leg is hung up", || {
        (!h.executed_on("hangup", &second_legs[1]).is_empty()).then_some(())
    })
    .await;
    assert!(h.executed_on("bridge", &second_caller).is_empty());
    assert!(h.executed_on("bridge", &second_legs[1]).is_empty());
    eventually("the caller is released", || {
        let done = !h.executed_on("reject", &second_caller).is_empty()
            || !h.executed_on("hangup", &second_caller).is_empty();
        done.then_some(())
    })
    .await;
    let told = events_until(&mut app, |event, data| {
        event == "call_ended" && data["call_session_id"] == second.as_str()
    })
    .await;
    assert_eq!(told.last().unwrap().1["reason"], "busy");
    let detail = h.detail(&second, tablet).await;
    assert_eq!(detail["call"]["status"], "busy", "{detail}");
    let kinds = h.timeline(&second, tablet).await;
    assert!(kinds.iter().any(|k| k == "answer_refused"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_call_waiting_both_answered_calls_are_listed() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "web"], true, false).await;
    let (phone, web) = (&user.devices[0], &user.devices[1]);
    let (first, _) = h.call(&user);
    let first_legs = h.ringing(&first, &user).await;
    let (second, _) = h.call(&user);
    let second_legs = h.ringing(&second, &user).await;
    h.emulator.answer(&first_legs[0]).unwrap();
    h.emulator.answer(&second_legs[1]).unwrap();
    h.wait_status(&first, phone, "bridged").await;
    h.wait_status(&second, web, "bridged").await;

    let (_, active) = h.get("/api/voip/my-active-call", &web.token).await;
    let entries: BTreeSet<_> = active["active_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["call_session_id"].as_str().unwrap().to_owned(),
                e["device_id"].as_str().unwrap().to_owned(),
                e["platform"].as_str().unwrap().to_owned(),
                e["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<_> = [
        (
            first.to_string(),
            phone.id.clone(),
            "ios".to_owned(),
            "ACTIVE".to_owned(),
        ),
        (
            second.to_string(),
            web.id.clone(),
            "web".to_owned(),
            "ACTIVE".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(entries, want, "{active}");

    // A hold report moves the registry entry's state with it.
    let hold = json!({"seq": 1, "from": "ACTIVE", "to": "ON_HOLD", "trigger": {"type": "hold"}});
    let (status, reply) = h
        .post(
            &format!("/api/voip/calls/{first}/events"),
            &phone.token,
            hold,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, active) = h.get("/api/voip/my-active-call", &phone.token).await;
    let held = active["active_calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["call_session_id"] == first.as_str())
        .cloned()
        .unwrap();
    assert_eq!(held["state"], "ON_HOLD", "{active}");

    // G-14 on the phone: its agent saw a hold re-offer and reports REMOTE_HOLD, then the
    // resume; the registry and the timeline follow. The table has REMOTE_HOLD on mobile only.
    let path = format!("/api/voip/calls/{first}/events");
    let steps = [
        (2, "ON_HOLD", "ACTIVE", "resume"),
        (3, "ACTIVE", "REMOTE_HOLD", "remote_hold"),
    ];
    for (seq, from, to, trigger) in steps {
        let report = json!({"seq": seq, "from": from, "to": to, "trigger": {"type": trigger}});
        let (status, reply) = h.post(&path, &phone.token, report).await;
        assert_eq!(
            (status, &reply["status"]),
            (StatusCode::OK, &json!("accepted"))
        );
    }
    let state_of = |active: &Value, call: &str| {
        active["active_calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["call_session_id"] == call)
            .map(|e| e["state"].clone())
    };
    let (_, active) = h.get("/api/voip/my-active-call", &web.token).await;
    assert_eq!(
        state_of(&active, first.as_str()),
        Some(json!("REMOTE_HOLD"))
    );
    let resume = json!({"seq": 4, "from": "REMOTE_HOLD", "to": "ACTIVE",
                        "trigger": {"type": "remote_resume"}});
    let (status, _) = h.post(&path, &phone.token, resume).await;
    assert_eq!(status, StatusCode::OK);
    let (_, active) = h.get("/api/voip/my-active-call", &web.token).await;
    assert_eq!(state_of(&active, first.as_str()), Some(json!("ACTIVE")));
    let detail = h.detail(&first, phone).await;
    let moves: Vec<_> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "device")
        .map(|e| e["to_state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(moves, ["ON_HOLD", "ACTIVE", "REMOTE_HOLD", "ACTIVE"]);
    let web_remote = json!({"seq": 1, "from": "ACTIVE", "to": "REMOTE_HOLD",
                            "trigger": {"type": "remote_hold"}});
    let (status, reply) = h
        .post(
            &format!("/api/voip/calls/{second}/events"),
            &web.token,
            web_remote,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_counts_from_the_bridge_and_is_written_once() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["android"], false, false).await;
    let phone = &user.devices[0];
    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    h.emulator.answer(&legs[0]).unwrap();
    h.wait_status(&call, phone, "bridged").await;
    let detail = h.detail(&call, phone).await;
    assert!(
        detail["billing"].is_null(),
        "nothing billed mid-call: {detail}"
    );
    // 61 s of talk (on the server's clock) bill two minutes.
    h.clock.advance(std::time::Duration::from_secs(61));
    h.emulator.hangup(&caller).unwrap();
    h.wait_status(&call, phone, "ended").await;
    let detail = h.detail(&call, phone).await;
    let billing = &detail["billing"];
    assert_eq!(billing["call_session_id"], call.as_str(), "{detail}");
    assert_eq!(billing["unit"], "simple_call_minute");
    assert_eq!(billing["quantity"], 2);
    let seconds = billing["billable_seconds"].as_u64().unwrap();
    assert!((61..=62).contains(&seconds), "{detail}");
    assert_eq!(detail["call"]["billable_seconds"], seconds);
    // The device's leg hangs up after the caller: the record does not change.
    let written = billing.clone();
    assert!(h.emulator.wait_for_webhooks(PATIENCE).await);
    assert_eq!(h.detail(&call, phone).await["billing"], written);
}
