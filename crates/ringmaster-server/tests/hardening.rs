//! Limits, timeouts, revocation and secret hygiene of a running coordinator.

mod common;

use common::pusher::{Ended, PusherClient};
use common::*;
use reqwest::{Method, StatusCode};
use ringmaster_core::CallControlId;
use ringmaster_server::rate_limit::Rate;
use ringmaster_server::Settings;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_cut_while_normal_requests_are_served() {
    fn tight(s: &mut Settings) {
        s.http.header_read_timeout = Duration::from_millis(300);
        s.http.max_connections = 4;
    }
    let h = Harness::start(Options {
        settings: Some(tight),
        ..Options::default()
    })
    .await;
    // As many trickling clients as the server has connection slots.
    let mut lorises = Vec::new();
    for i in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        lorises.push(tokio::spawn(async move {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            // One header line every 100 ms, forever, unless the server hangs up.
            for n in 0.. {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let line = format!("X-Slow-{i}-{n}: y\r\n");
                if stream.write_all(line.as_bytes()).await.is_err() {
                    return "cut";
                }
                let mut buf = [0u8; 1024];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
                {
                    return "cut";
                }
                assert!(n < 600, "a trickling client was never cut");
            }
            unreachable!()
        }));
    }
    // A normal client gets its answer: the trickling ones lose their slots.
    let client = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    for _ in 0..3 {
        let resp = client
            .get(format!("{}/healthz", h.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    for loris in lorises {
        assert_eq!(loris.await.unwrap(), "cut");
    }
}

#[test]
fn serve_help_shows_no_secret_from_the_environment() {
    let secret = "s3cret-admin-token-from-the-environment";
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(["serve", "--help"])
        .env("RINGMASTER_ADMIN_TOKEN", secret)
        .env("RINGMASTER_TOKEN_SECRET", secret)
        .env("RINGMASTER_TELNYX_API_KEY", secret)
        .env("RINGMASTER_PUSHER_SECRET", secret)
        .env("RINGMASTER_PUSHER_KEY", "visible-pusher-key")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("RINGMASTER_ADMIN_TOKEN"), "{help}");
    assert!(!help.contains(secret), "{help}");
    // Values that are not secret are still shown, so hiding is targeted.
    assert!(help.contains("visible-pusher-key"), "{help}");
}

#[test]
fn a_short_admin_token_is_refused_outside_sandbox_mode() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringmaster"))
        .args(["serve", "--database-url", "sqlite::memory:"])
        .env("RINGMASTER_TELNYX_API_KEY", "KEY-live")
        .env("RINGMASTER_TELNYX_PUBLIC_KEY", "AAAA")
        .env("RINGMASTER_TELNYX_CONNECTION_ID", "conn")
        .env("RINGMASTER_ADMIN_TOKEN", "short-token")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 24 characters"), "{err}");
    assert!(!err.contains("short-token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_device_refuses_its_token_and_closes_its_sockets_with_4009() {
    let h = Harness::start(Options {
        realtime: true,
        ..Options::default()
    })
    .await;
    let user = h.user(&["web", "web"], false, false).await;
    let (gone, kept) = (&user.devices[0], &user.devices[1]);
    let channel = format!("private-user.{}", user.id);
    let mut gone_ws = PusherClient::connect(h.addr).await;
    gone_ws.subscribe(&gone.token, &channel).await;
    let mut kept_ws = PusherClient::connect(h.addr).await;
    kept_ws.subscribe(&kept.token, &channel).await;

    let (status, body) = h
        .request(
            Method::DELETE,
            &format!("/api/admin/devices/{}", gone.id),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sockets_closed"], 1);
    let (_, ended) = gone_ws.until_closed().await;
    assert_eq!(ended, Ended::Close(4009));
    let (status, _) = h.get("/api/voip/my-active-call", &gone.token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = gone_ws.authorize(&gone.token, &channel).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The other device of the user is untouched and still hears calls.
    assert_eq!(
        h.get("/api/voip/my-active-call", &kept.token).await.0,
        StatusCode::OK
    );
    let (call, _) = h.call(&user);
    loop {
        let (event, _, data) = kept_ws.next_event().await;
        if event == "incoming_call" {
            assert_eq!(data["call_session_id"], json!(call));
            break;
        }
    }
    // Only the remaining device is rung.
    let remaining = User {
        id: user.id.clone(),
        number: user.number.clone(),
        devices: vec![Device {
            id: kept.id.clone(),
            token: kept.token.clone(),
            sip_uri: kept.sip_uri.clone(),
            platform: kept.platform.clone(),
        }],
    };
    h.ringing(&call, &remaining).await;
    assert!(h.leg_of(&call, gone).is_none());

    let (status, body) = h
        .post(
            &format!("/api/admin/devices/{}/token", gone.id),
            ADMIN,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("device_revoked"))
    );
    let (status, _) = h
        .request(
            Method::DELETE,
            "/api/admin/devices/dev_nope",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reissued_token_replaces_the_old_one_and_tokens_can_expire() {
    fn ttl(s: &mut Settings) {
        s.device_token_ttl = Some(Duration::from_secs(3600));
    }
    let h = Harness::start(Options {
        settings: Some(ttl),
        ..Options::default()
    })
    .await;
    let user = h.user(&["android"], false, false).await;
    let device = &user.devices[0];
    let (status, body) = h
        .post(
            &format!("/api/admin/devices/{}/token", device.id),
            ADMIN,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fresh = body["token"].as_str().unwrap().to_owned();
    assert_ne!(fresh, device.token);
    let expires = body["token_expires_at"].as_u64().unwrap();
    assert!(expires > unix_now() + 3000 && expires <= unix_now() + 3600);
    assert_eq!(
        h.get("/api/voip/my-active-call", &device.token).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.get("/api/voip/my-active-call", &fresh).await.0,
        StatusCode::OK
    );
    h.clock.advance(Duration::from_secs(3601));
    let (status, body) = h.get("/api/voip/my-active-call", &fresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_token_moves_to_the_device_that_registered_it_last() {
    let h = Harness::start(Options::default()).await;
    let first = h.user(&["android"], false, false).await;
    let second = h.user(&["android"], false, false).await;
    for device in [&first.devices[0], &second.devices[0]] {
        let (status, body) = h
            .request(
                Method::PUT,
                &format!("/api/voip/devices/{}/push-token", device.id),
                Some(device.token.as_str()),
                Some(json!({"provider": "fcm", "token": "fcm-token-of-one-phone"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let first_view = h
        .get(&format!("/api/admin/users/{}", first.id), ADMIN)
        .await
        .1;
    let second_view = h
        .get(&format!("/api/admin/users/{}", second.id), ADMIN)
        .await
        .1;
    assert_eq!(first_view["devices"][0]["push_provider"], Value::Null);
    assert_eq!(second_view["devices"][0]["push_provider"], json!("fcm"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_call_is_rate_limited_per_device_with_retry_after() {
    fn limits(s: &mut Settings) {
        s.rate_limits.place_call.device = Rate::per_minute(2);
        s.rate_limits.max_unfinished_calls = 100;
    }
    let h = Harness::start(Options {
        settings: Some(limits),
        ..Options::default()
    })
    .await;
    let user = h.user(&["web", "web"], true, false).await;
    let place = |device: &Device| {
        h.http
            .post(format!("{}/api/voip/calls", h.url))
            .bearer_auth(&device.token)
            .json(&json!({"to": "+15550009999"}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(
            place(&user.devices[0]).await.unwrap().status(),
            StatusCode::CREATED
        );
    }
    let refused = place(&user.devices[0]).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // The refused request started nothing: still two calls.
    let (_, history) = h.get("/api/voip/calls", &user.devices[0].token).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
    // The other device has its own bucket.
    assert_eq!(
        place(&user.devices[1]).await.unwrap().status(),
        StatusCode::CREATED
    );
    // A minute later the bucket has refilled.
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(
        place(&user.devices[0]).await.unwrap().status(),
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_hold_more_unfinished_calls_than_the_cap() {
    fn limits(s: &mut Settings) {
        s.rate_limits.max_unfinished_calls = 2;
    }
    let h = Harness::start(Options {
        settings: Some(limits),
        ..Options::default()
    })
    .await;
    let user = h.user(&["web"], true, false).await;
    let token = &user.devices[0].token;
    for _ in 0..2 {
        let (status, body) = h
            .post("/api/voip/calls", token, json!({"to": "+15550009999"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = h
        .post("/api/voip/calls", token, json!({"to": "+15550009999"}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "too_many_calls");
}

/// A legal report body (the device starts ringing) with sequence `seq`.
/// The `seq`th report of an Android device that rings, answers, then holds and resumes: each
/// one legal after the one before, so only the limits under test can refuse it.
fn report(seq: u64) -> Value {
    let (from, to) = match seq {
        1 => ("IDLE", "RINGING_INBOUND"),
        2 => ("RINGING_INBOUND", "ACTIVE"),
        n if n % 2 == 1 => ("ACTIVE", "ON_HOLD"),
        _ => ("ON_HOLD", "ACTIVE"),
    };
    json!({"seq": seq, "from": from, "to": to})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_limited_capped_per_call_paginated_and_refused_after_the_end() {
    fn limits(s: &mut Settings) {
        s.rate_limits.report.device = Rate::per_minute(1000);
        s.rate_limits.max_timeline_entries = 12;
    }
    let h = Harness::start(Options {
        settings: Some(limits),
        ..Options::default()
    })
    .await;
    let user = h.user(&["android"], false, false).await;
    let device = &user.devices[0];
    let (call, caller) = h.call(&user);
    h.ringing(&call, &user).await;
    let path = format!("/api/voip/calls/{call}/events");
    let mut seq = 0;
    let refusal = loop {
        seq += 1;
        let (status, body) = h.post(&path, &device.token, report(seq)).await;
        if status != StatusCode::OK {
            break (status, body);
        }
        assert!(seq < 50, "the timeline cap never applied");
    };
    assert_eq!(refusal.0, StatusCode::CONFLICT, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "timeline_full");

    // The timeline reads in pages that add up to the whole.
    let mut kinds = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let (status, page) = h
            .get(
                &format!("/api/voip/calls/{call}/timeline?limit=5{q}"),
                &device.token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page["items"].as_array().unwrap().len() <= 5);
        kinds.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert_eq!(page["total"].as_u64().unwrap() as usize, kinds.len());
                break;
            }
        }
    }
    assert_eq!(kinds, h.timeline(&call, device).await);
    let stranger = h.user(&["android"], false, false).await;
    assert_eq!(
        h.get(
            &format!("/api/voip/calls/{call}/timeline"),
            &stranger.devices[0].token
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    h.emulator.hangup(&caller).unwrap();
    h.wait_status(&call, device, "missed").await;
    let (status, body) = h.post(&path, &device.token, report(seq + 1)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "call_ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_dial_leg_is_hung_up_once() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["android"], false, false).await;
    let (call, _) = h.call(&user);
    h.ringing(&call, &user).await;
    let leg = h.leg_of(&call, &user.devices[0]).unwrap();
    // Telnyx created a second leg for the same dial: same client_state, another id.
    let duplicate = CallControlId::new("v3:duplicate-leg-of-a-repeated-dial");
    let webhook = |event_type: &str| {
        json!({"data": {
            "record_type": "event",
            "event_type": event_type,
            "id": uuid::Uuid::new_v4().to_string(),
            "occurred_at": "2026-01-01T00:00:00.000Z",
            "payload": {
                "call_control_id": duplicate,
                "call_leg_id": "duplicate-leg",
                "call_session_id": leg.call_session_id,
                "client_state": leg.client_state,
                "direction": "outgoing",
                "from": leg.from,
                "to": leg.to,
                "state": "parked",
            }
        }})
        .to_string()
        .into_bytes()
    };
    let (status, body) = h
        .send_webhook(&h.signer, unix_now(), webhook("call.initiated"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "processed", "{body}");
    eventually("the duplicate leg is hung up", || {
        (h.received_on("hangup", &duplicate).len() == 1).then_some(())
    })
    .await;
    let (status, body) = h
        .send_webhook(&h.signer, unix_now(), webhook("call.answered"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "duplicate", "{body}");
    assert_eq!(h.received_on("hangup", &duplicate).len(), 1);
    // The real leg is untouched and the call still rings.
    assert!(h.received_on("hangup", &leg.call_control_id).is_empty());
    assert_eq!(
        h.status(&call, &user.devices[0]).await["call_status"],
        "ringing"
    );
    assert!(h
        .timeline(&call, &user.devices[0])
        .await
        .contains(&"stray_leg_hangup".to_owned()));
}
