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
            "effect_id",
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

/// The common payload of the device's leg of a call it placed itself.
fn device_leg(ccid: &str, session: &str, from: &str, to: &str) -> Value {
    json!({"call_control_id": ccid, "call_leg_id": format!("leg-{ccid}"),
           "call_session_id": session, "client_state": null, "from": from, "to": to})
}

fn with(mut payload: Value, extra: Value) -> Value {
    let map = payload.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        map.insert(k.clone(), v.clone());
    }
    payload
}

async fn webhook(h: &Harness, event_type: &str, payload: Value) -> Value {
    let (status, reply) = h
        .send_webhook(&h.signer, unix_now(), telnyx_webhook(event_type, payload))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

/// The user's `my-active-call` entries as (call, device, state).
async fn active_entries(h: &Harness, device: &Device) -> Vec<(String, String, String)> {
    let (_, active) = h.get("/api/voip/my-active-call", &device.token).await;
    active["active_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["call_session_id"].as_str().unwrap().to_owned(),
                e["device_id"].as_str().unwrap().to_owned(),
                e["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn history_count(h: &Harness, device: &Device, call: &str) -> usize {
    let (_, history) = h.get("/api/voip/calls", &device.token).await;
    history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["call_session_id"] == call)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_phone_places_itself_is_one_outbound_session_from_its_webhook() {
    let h = Harness::start(realtime()).await;
    let user = h.user(&["android", "web"], false, false).await;
    let (phone, web) = (&user.devices[0], &user.devices[1]);
    let mut tab = PusherClient::connect(h.addr).await;
    tab.subscribe(&web.token, &format!("private-user.{}", user.id))
        .await;
    let dest = fresh_number();
    let call = format!("native-{}", uuid::Uuid::new_v4());
    let leg = device_leg("v3:native-leg-1", &call, &phone.sip_uri, &dest);

    // The webhook comes first; Telnyx calls the leg "outgoing" here.
    let initiated = with(
        leg.clone(),
        json!({"direction": "outgoing", "state": "bridging"}),
    );
    let reply = webhook(&h, "call.initiated", initiated).await;
    assert_eq!(reply["status"], "processed", "{reply}");
    let id = ringmaster_core::CallSessionId::new(&call);
    let session = h
        .session(&id)
        .await
        .expect("a session for the device's call");
    assert!(session.is_native());
    assert_eq!(session.direction(), ringmaster_core::Direction::Outbound);
    assert_eq!(
        active_entries(&h, web).await,
        [(call.clone(), phone.id.clone(), "CONNECTING".to_owned())]
    );

    // Then the phone's own report of the same call: matched, not doubled.
    let path = format!("/api/voip/calls/{call}/events");
    let report = json!({"seq": 1, "from": "IDLE", "to": "CONNECTING",
                        "trigger": {"type": "user_dials_mobile"},
                        "call_control_id": "v3:native-leg-1", "call_session_id": call,
                        "destination": dest});
    let (status, reply) = h.post(&path, &phone.token, report).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(history_count(&h, web, &call).await, 1);
    let detail = h.detail(&id, phone).await;
    assert_eq!(detail["call"]["direction"], "outbound", "{detail}");
    assert_eq!(detail["call"]["to"], dest.as_str());
    assert_eq!(detail["call"]["from"], user.number.as_str());

    // T8: while the user is on an outbound call, an inbound call meets the busy rule.
    let (second, second_caller) = h.call(&user);
    assert!(h.emulator.wait_for_webhooks(PATIENCE).await);
    let turned_away = h.session(&second).await.expect("the second call's session");
    assert_eq!(turned_away.status(), SessionStatus::Busy);
    eventually("the second caller is rejected busy", || {
        (!h.executed_on("reject", &second_caller).is_empty()).then_some(())
    })
    .await;

    // The far end answers, then hangs up.
    webhook(
        &h,
        "call.answered",
        with(leg.clone(), json!({"state": "answered"})),
    )
    .await;
    assert_eq!(
        active_entries(&h, web).await,
        [(call.clone(), phone.id.clone(), "ACTIVE".to_owned())]
    );
    let hangup = with(
        leg,
        json!({"state": "hangup", "hangup_cause": "normal_clearing", "hangup_source": "callee"}),
    );
    webhook(&h, "call.hangup", hangup).await;
    assert!(active_entries(&h, web).await.is_empty());
    let detail = h.detail(&id, phone).await;
    assert_eq!(detail["call"]["status"], "ended", "{detail}");
    assert!(!detail["call"]["answered_at"].is_null(), "{detail}");

    let seen = events_until(&mut tab, |event, data| {
        event == "call_state_changed"
            && data["call_session_id"] == call.as_str()
            && data["state"] == "ENDED"
    })
    .await;
    let states: Vec<_> = seen
        .iter()
        .filter(|(e, d)| e == "call_state_changed" && d["call_session_id"] == call.as_str())
        .map(|(_, d)| {
            assert_eq!(d["device_id"], phone.id.as_str());
            (
                d["state"].as_str().unwrap().to_owned(),
                d["version"].as_u64().unwrap(),
            )
        })
        .collect();
    let names: Vec<_> = states.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        ["CONNECTING", "CONNECTING", "ACTIVE", "ENDED"],
        "{states:?}"
    );
    assert!(states.windows(2).all(|w| w[0].1 < w[1].1), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_phone_places_itself_is_one_session_from_its_report_first() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios"], false, false).await;
    let phone = &user.devices[0];
    let dest = fresh_number();
    let call = format!("native-{}", uuid::Uuid::new_v4());
    let path = format!("/api/voip/calls/{call}/events");

    // Without the leg's ids an unknown call cannot be opened.
    let bare = json!({"seq": 1, "from": "IDLE", "to": "CONNECTING"});
    let (status, reply) = h.post(&path, &phone.token, bare).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["code"], "missing_call_ids");
    let other = json!({"seq": 1, "from": "IDLE", "to": "CONNECTING",
                       "call_session_id": "someone-else", "call_control_id": "v3:x",
                       "destination": dest});
    let (status, reply) = h.post(&path, &phone.token, other).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(h
        .session(&ringmaster_core::CallSessionId::new(&call))
        .await
        .is_none());

    let opening = json!({"seq": 1, "from": "IDLE", "to": "CONNECTING",
                         "call_control_id": "v3:native-leg-2", "call_session_id": call,
                         "destination": dest});
    let (status, reply) = h.post(&path, &phone.token, opening.clone()).await;
    assert_eq!(
        (status, &reply["status"]),
        (StatusCode::OK, &json!("accepted")),
        "{reply}"
    );
    let (status, reply) = h.post(&path, &phone.token, opening).await;
    assert_eq!(
        (status, &reply["status"]),
        (StatusCode::OK, &json!("duplicate")),
        "{reply}"
    );
    assert_eq!(
        active_entries(&h, phone).await,
        [(call.clone(), phone.id.clone(), "CONNECTING".to_owned())]
    );

    // Its webhook comes second, called "incoming" by Telnyx: the same session, no other.
    let leg = device_leg("v3:native-leg-2", &call, &phone.sip_uri, &dest);
    let initiated = with(
        leg.clone(),
        json!({"direction": "incoming", "state": "parked"}),
    );
    let reply = webhook(&h, "call.initiated", initiated).await;
    assert_eq!(reply["status"], "processed", "{reply}");
    assert_eq!(history_count(&h, phone, &call).await, 1);

    // The phone says the far end rang and answered: the call is connected by its word.
    for (seq, from, to, trigger) in [
        (2, "CONNECTING", "RINGING_OUTBOUND", "sip_ringing"),
        (3, "RINGING_OUTBOUND", "ACTIVE", "remote_answer"),
    ] {
        let report = json!({"seq": seq, "from": from, "to": to, "trigger": {"type": trigger}});
        let (status, reply) = h.post(&path, &phone.token, report).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let id = ringmaster_core::CallSessionId::new(&call);
    assert_eq!(h.status(&id, phone).await["call_status"], "bridged");
    assert_eq!(
        active_entries(&h, phone).await,
        [(call.clone(), phone.id.clone(), "ACTIVE".to_owned())]
    );
    let hangup = with(
        leg,
        json!({"state": "hangup", "hangup_cause": "normal_clearing", "hangup_source": "caller"}),
    );
    webhook(&h, "call.hangup", hangup).await;
    assert_eq!(h.status(&id, phone).await["call_status"], "ended");
    assert!(active_entries(&h, phone).await.is_empty());
    let kinds = h.timeline(&id, phone).await;
    assert!(kinds.iter().any(|k| k == "outgoing_native"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_to_call_leg_says_it_is_the_users_own_outbound_call() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["android"], false, false).await;
    let phone = &user.devices[0];
    let (status, body) = h
        .post(
            "/api/voip/calls",
            &phone.token,
            json!({"to": fresh_number()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["answer_ringing"], false);
    let dial = eventually("the phone is dialled", || {
        h.emulator.executed("dial").into_iter().next()
    })
    .await;
    let raw = dial.body["client_state"].as_str().unwrap();
    let cs = ringmaster_telnyx::EncodedClientState::from_raw(raw)
        .decode()
        .unwrap();
    assert_eq!(
        cs.session.as_str(),
        body["call_session_id"].as_str().unwrap()
    );
    assert_eq!(cs.direction, Some(ringmaster_core::Direction::Outbound));
    assert_eq!(
        cs.device.as_ref().map(|d| d.as_str()),
        Some(phone.id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_to_call_to_the_ringing_caller_answers_that_call_and_dials_nothing() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "web"], false, false).await;
    let phone = &user.devices[0];
    let (call, _) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    let dialled = h.emulator.executed("dial").len();
    assert_eq!(dialled, 2);

    let (status, body) = h
        .post("/api/voip/calls", &phone.token, json!({"to": CALLER}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["call_session_id"], call.as_str());
    assert_eq!(body["answer_ringing"], true);
    assert_eq!(body["status"], "ringing");
    let kinds = h.timeline(&call, phone).await;
    assert!(kinds.iter().any(|k| k == "call_back"), "{kinds:?}");

    // The phone answers its ringing leg, as the answer told it to.
    h.emulator.answer(&legs[0]).unwrap();
    let seen = h.wait_status(&call, phone, "bridged").await;
    assert_eq!(seen["status"], "answered_here");
    assert!(h.emulator.wait_for_webhooks(PATIENCE).await);
    assert_eq!(
        h.emulator.executed("dial").len(),
        dialled,
        "nothing new dialled"
    );
    let (_, history) = h.get("/api/voip/calls", &phone.token).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 1, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_calling_each_other_keep_the_call_with_the_lower_id() {
    let h = Harness::start(Options::default()).await;
    let ada = h.user(&["ios", "web"], false, false).await;
    let bob = h.user(&["android"], false, false).await;
    let (status, x) = h
        .post(
            "/api/voip/calls",
            &ada.devices[0].token,
            json!({"to": bob.number}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{x}");
    let (status, y) = h
        .post(
            "/api/voip/calls",
            &bob.devices[0].token,
            json!({"to": ada.number}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{y}");
    let x_id = ringmaster_core::CallSessionId::new(x["call_session_id"].as_str().unwrap());
    let y_id = ringmaster_core::CallSessionId::new(y["call_session_id"].as_str().unwrap());
    let (survivor, loser, loser_device) = if x_id.as_str() < y_id.as_str() {
        (&x_id, &y_id, &bob.devices[0])
    } else {
        (&y_id, &x_id, &ada.devices[0])
    };
    if loser == &y_id {
        assert_eq!(y["status"], "ended", "the second call says it lost: {y}");
    }
    let lost = h.status(loser, loser_device).await;
    assert_eq!(lost["call_status"], "ended", "{lost}");
    assert_eq!(lost["reason"], "replaced", "{lost}");
    let kept = h.session(survivor).await.unwrap();
    assert_eq!(kept.status(), SessionStatus::Ringing);
    // Every device of the loser's user is told on its channel (dispatched after the commit).
    eventually("call_ended replaced on the loser's channel", || {
        h.notes_for(loser)
            .iter()
            .any(|n| is_call_ended(n, "replaced", false))
            .then_some(())
    })
    .await;
    // The loser's ring of its calling device is hung up; only the survivor goes on.
    let leg = eventually("the loser's device leg", || {
        h.emulator
            .calls()
            .into_iter()
            .find(|c| c.to == loser_device.sip_uri)
    })
    .await;
    eventually("the loser's leg is hung up", || {
        (!h.executed_on("hangup", &leg.call_control_id).is_empty()).then_some(())
    })
    .await;
    let kinds = h.timeline(loser, loser_device).await;
    assert!(kinds.iter().any(|k| k == "replaced"), "{kinds:?}");
}
