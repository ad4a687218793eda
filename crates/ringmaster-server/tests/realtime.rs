//! The Pusher-protocol layer served by the coordinator: a raw protocol 7 client authenticates
//! with a device token, joins its user's private channel and sees real emulated calls.

mod common;

use common::pusher::{Ended, PusherClient};
use common::*;
use reqwest::{Method, StatusCode};
use ringmaster_realtime::ChannelName;
use ringmaster_telnyx::emulator::{EndpointScript, LegState};
use serde_json::{json, Value};

fn realtime() -> Options {
    Options {
        realtime: true,
        ..Options::default()
    }
}

fn channel_of(user: &User) -> String {
    format!("private-user.{}", user.id)
}

/// Reads events until one named `name` arrives; returns it with the events skipped on the way.
async fn until_event(client: &mut PusherClient, name: &str) -> (Value, Vec<(String, Value)>) {
    let mut skipped = Vec::new();
    loop {
        let (event, _, data) = client.next_event().await;
        if event == name {
            return (data, skipped);
        }
        skipped.push((event, data));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_tab_rings_and_is_dismissed_over_the_websocket_even_without_its_sip_leg() {
    let h = Harness::start(realtime()).await;
    let user = h.user(&["android", "web"], false, false).await;
    let (phone, web) = (&user.devices[0], &user.devices[1]);
    // G-11: the tab's INVITE never arrives, so only the WebSocket can tell it about the call.
    h.emulator
        .script_endpoint(&web.sip_uri, EndpointScript::Unreachable);
    let mut tab = PusherClient::connect(h.addr).await;
    tab.subscribe(&web.token, &channel_of(&user)).await;

    let (call, _) = h.call(&user);
    let (event, channel, incoming) = tab.next_event().await;
    assert_eq!(event, "incoming_call", "{incoming}");
    assert_eq!(channel, channel_of(&user));
    assert_eq!(incoming["call_session_id"], call.as_str());
    assert_eq!(incoming["from"], CALLER);
    assert_eq!(incoming["to"], user.number.as_str());

    let leg = eventually("the phone rings", || {
        h.leg_of(&call, phone)
            .filter(|l| l.state == LegState::Ringing)
    })
    .await;
    h.emulator.answer(&leg.call_control_id).unwrap();
    let (ended, _) = until_event(&mut tab, "call_ended").await;
    assert_eq!(ended["call_session_id"], call.as_str());
    assert_eq!(ended["reason"], "answered_elsewhere");
    assert_eq!(ended["device_id"], phone.id.as_str());
    assert!(
        ended["version"].as_u64() > incoming["version"].as_u64(),
        "{incoming} then {ended}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_join_another_users_channel_and_a_forged_subscribe_is_closed() {
    let h = Harness::start(realtime()).await;
    let alice = h.user(&["web"], false, false).await;
    let bob = h.user(&["web"], false, false).await;
    let alice_token = &alice.devices[0].token;
    let mut client = PusherClient::connect(h.addr).await;

    for foreign in [channel_of(&bob), format!("presence-user.{}", bob.id)] {
        let (status, body) = client.authorize(alice_token, &foreign).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{foreign}: {body}");
    }
    let (status, _) = client
        .authorize("not-a-device-token", &channel_of(&alice))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = client
        .authorize(&bob.devices[0].token, &channel_of(&alice))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A signature for her own channel does not open Bob's: the server closes with 4009.
    let (status, own) = client.authorize(alice_token, &channel_of(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    client
        .send_subscribe(&channel_of(&bob), own["auth"].as_str().unwrap())
        .await;
    let (frames, ended) = client.until_closed().await;
    assert_eq!(ended, Ended::Close(4009), "{frames:?}");

    // The server keeps serving everyone else.
    let mut bobs = PusherClient::connect(h.addr).await;
    bobs.subscribe(&bob.devices[0].token, &channel_of(&bob))
        .await;
    let (call, _) = h.call(&bob);
    let (event, _, data) = bobs.next_event().await;
    assert_eq!(event, "incoming_call");
    assert_eq!(data["call_session_id"], call.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reporting_socket_is_left_out_of_its_own_call_state_changed() {
    let h = Harness::start(realtime()).await;
    let user = h.user(&["android", "web"], false, false).await;
    let (phone, web) = (&user.devices[0], &user.devices[1]);
    let channel = channel_of(&user);
    let mut tab = PusherClient::connect(h.addr).await;
    tab.subscribe(&web.token, &channel).await;
    let mut app = PusherClient::connect(h.addr).await;
    app.subscribe(&phone.token, &channel).await;

    let (call, _) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    h.emulator.answer(&legs[0]).unwrap();
    h.wait_status(&call, phone, "bridged").await;

    let path = format!("/api/voip/calls/{call}/events");
    let answered = json!({"seq": 1, "from": "RINGING_INBOUND", "to": "ACTIVE",
                          "trigger": {"type": "local_answer"}});
    let (status, reply) = h.post(&path, &phone.token, answered).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    // The phone holds the call, reporting from the socket it listens on.
    let hold = json!({"seq": 2, "from": "ACTIVE", "to": "ON_HOLD", "trigger": {"type": "hold"}});
    let resp = h
        .http
        .post(format!("{}{path}", h.url))
        .bearer_auth(&phone.token)
        .header("X-Socket-ID", &app.socket_id)
        .json(&hold)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let is_report = |data: &Value, state: &str| {
        data["device_id"] == phone.id.as_str() && data["state"] == state
    };
    loop {
        let (changed, _) = until_event(&mut tab, "call_state_changed").await;
        if is_report(&changed, "ON_HOLD") {
            assert_eq!(changed["call_session_id"], call.as_str());
            break;
        }
    }
    // Every publish reaches all subscribers at once, so a marker published now arrives at the
    // phone after anything the hold report sent it.
    let marker = ChannelName::parse(&channel).unwrap();
    h.server()
        .realtime()
        .unwrap()
        .publish(&marker, "marker", &json!({}), None)
        .await
        .unwrap();
    let (_, seen) = until_event(&mut app, "marker").await;
    let changes: Vec<_> = seen
        .iter()
        .filter(|(e, _)| e == "call_state_changed")
        .map(|(_, d)| d.clone())
        .collect();
    assert!(
        changes.iter().any(|d| is_report(d, "ACTIVE")),
        "a report without a socket id reaches every socket: {changes:?}"
    );
    assert!(
        !changes.iter().any(|d| is_report(d, "ON_HOLD")),
        "the phone got its own echo: {changes:?}"
    );

    let bad = json!({"socket_id": "not-a-socket", "seq": 3, "from": "ON_HOLD", "to": "ACTIVE",
                     "trigger": {"type": "resume"}});
    let (status, reply) = h
        .request(Method::POST, &path, Some(&phone.token), Some(bad))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["error"]["code"], "invalid_socket_id");
    let resume =
        json!({"seq": 3, "from": "ON_HOLD", "to": "ACTIVE", "trigger": {"type": "resume"}});
    let (status, reply) = h.post(&path, &phone.token, resume).await;
    assert_eq!(reply["status"], "accepted", "{reply}");
    assert_eq!(status, StatusCode::OK, "a bad socket id changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_auth_answers_cors_preflights_and_readyz_reports_the_websocket() {
    let h = Harness::start(Options {
        realtime: true,
        push: PushMode::Off,
        ..Options::default()
    })
    .await;
    let resp = h
        .http
        .request(Method::OPTIONS, format!("{}/broadcasting/auth", h.url))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-socket-id",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let allowed = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");

    let (status, ready) = h.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ready["websocket"]["configured"], true);
    assert_eq!(ready["push"]["configured"], false);
}
