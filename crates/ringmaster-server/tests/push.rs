//! Push delivery for real emulated calls, against a local HTTP/2 FCM/APNs stand-in; and the
//! push-token registration API.

mod common;

use common::push_mock::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn register(
    h: &Harness,
    device: &Device,
    provider: &str,
    token: &str,
) -> (StatusCode, Value) {
    h.request(
        Method::PUT,
        &format!("/api/voip/devices/{}/push-token", device.id),
        Some(&device.token),
        Some(json!({"provider": provider, "token": token})),
    )
    .await
}

/// The devices' push providers as the admin API shows them, by device id.
async fn providers(h: &Harness, user: &User) -> Vec<Value> {
    let (status, body) = h.get(&format!("/api/admin/users/{}", user.id), ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    user.devices
        .iter()
        .map(|d| {
            body["devices"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["id"] == d.id.as_str())
                .unwrap()["push_provider"]
                .clone()
        })
        .collect()
}

async fn pushes_until(
    mock: &PushMock,
    what: &str,
    done: impl Fn(&[Recorded]) -> bool,
) -> Vec<Recorded> {
    eventually(what, || {
        let pushes = mock.pushes();
        done(&pushes).then_some(pushes)
    })
    .await
}

fn count(pushes: &[Recorded], kind: &str) -> usize {
    pushes.iter().filter(|p| p.push_type() == kind).count()
}

fn find<'a>(pushes: &'a [Recorded], apns: bool, kind: &str) -> &'a Recorded {
    pushes
        .iter()
        .find(|p| p.is_apns() == apns && p.push_type() == kind)
        .unwrap_or_else(|| panic!("no {kind} push (apns: {apns}) in {pushes:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_get_a_voip_ring_and_a_non_voip_dismissal_for_a_real_call() {
    let dir = tempfile::tempdir().unwrap();
    let mock = PushMock::start().await;
    let h = Harness::start(Options {
        push: PushMode::Send(mock.sender(dir.path())),
        ..Options::default()
    })
    .await;
    let user = h.user(&["ios", "android", "web"], false, false).await;
    let (ios, android, web) = (&user.devices[0], &user.devices[1], &user.devices[2]);
    let (status, reply) = register(&h, ios, "apns", IOS_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["push_provider"], "apns");
    let (status, reply) = register(&h, android, "fcm", ANDROID_TOKEN).await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    let (call, _) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    let rings = pushes_until(&mock, "both phones rung by push", |p| {
        count(p, "incoming_call") == 2
    })
    .await;

    let voip = find(&rings, true, "incoming_call");
    assert_eq!(voip.path, format!("/3/device/{IOS_TOKEN}"));
    assert_eq!(voip.version, axum::http::Version::HTTP_2);
    assert_eq!(voip.header("apns-push-type"), "voip");
    assert_eq!(voip.header("apns-topic"), format!("{BUNDLE}.voip"));
    assert_eq!(voip.header("apns-priority"), "10");
    assert!(voip.header("authorization").starts_with("bearer "));
    let payload = voip.json();
    assert_eq!(payload["call_session_id"], call.as_str());
    assert_eq!(payload["from"], CALLER);
    assert_eq!(payload["to"], user.number.as_str());

    let data_msg = find(&rings, false, "incoming_call");
    assert_eq!(
        data_msg.path,
        format!("/v1/projects/{PROJECT}/messages:send")
    );
    assert_eq!(data_msg.header("authorization"), "Bearer test-access-token");
    let message = &data_msg.json()["message"];
    assert_eq!(message["token"], ANDROID_TOKEN);
    assert_eq!(message["data"]["call_session_id"], call.as_str());
    assert_eq!(message["android"]["priority"], "HIGH");

    // The web tab answers: both phones get a dismissal, iOS never as a VoIP push.
    h.emulator.answer(&legs[2]).unwrap();
    let all = pushes_until(&mock, "both phones dismissed by push", |p| {
        count(p, "call_ended") == 2
    })
    .await;
    let dismissal = find(&all, true, "call_ended");
    assert_eq!(dismissal.path, format!("/3/device/{IOS_TOKEN}"));
    assert_ne!(dismissal.header("apns-push-type"), "voip");
    assert_eq!(dismissal.header("apns-topic"), BUNDLE);
    let payload = dismissal.json();
    assert_eq!(payload["reason"], "answered_elsewhere");
    assert_eq!(payload["device_id"], web.id.as_str());
    assert_eq!(payload["call_session_id"], call.as_str());
    assert_eq!(payload["aps"]["content-available"], 1);
    let data = &find(&all, false, "call_ended").json()["message"]["data"];
    assert_eq!(data["reason"], "answered_elsewhere");
    assert_eq!(data["device_id"], web.id.as_str());
    // Nothing for the web device, nothing twice.
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(
        providers(&h, &user).await,
        [json!("apns"), json!("fcm"), Value::Null]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_the_providers_reject_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let mock = PushMock::start().await;
    mock.answer_with(reject_tokens);
    let h = Harness::start(Options {
        push: PushMode::Send(mock.sender(dir.path())),
        ..Options::default()
    })
    .await;
    let user = h.user(&["ios", "android"], false, false).await;
    register(&h, &user.devices[0], "apns", IOS_TOKEN).await;
    register(&h, &user.devices[1], "fcm", ANDROID_TOKEN).await;
    assert_eq!(providers(&h, &user).await, [json!("apns"), json!("fcm")]);

    let (call, _) = h.call(&user);
    h.ringing(&call, &user).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while providers(&h, &user).await != [Value::Null, Value::Null] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tokens never pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A dead token is not retried.
    let pushes = mock.pushes();
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    assert_eq!(count(&pushes, "incoming_call"), 2);

    // The host app is told, once per device, so it can ask for a new token.
    let store = &h.server().state().store;
    let invalid = loop {
        let invalid: Vec<Value> = store
            .events_after(0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "device.push_token_invalid")
            .map(|e| serde_json::from_str(&e.body).unwrap())
            .collect();
        if invalid.len() >= 2 || tokio::time::Instant::now() > deadline {
            break invalid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let mut devices: Vec<&str> = invalid
        .iter()
        .map(|e| e["data"]["device_id"].as_str().unwrap())
        .collect();
    devices.sort_unstable();
    let mut expected = vec![user.devices[0].id.as_str(), user.devices[1].id.as_str()];
    expected.sort_unstable();
    assert_eq!(devices, expected, "{invalid:#?}");
    assert!(invalid
        .iter()
        .all(|e| e["data"]["user_id"] == user.id.as_str() && e["data"]["reason"].is_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_token_registration_is_validated_and_limited_to_the_own_device() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "android", "web"], false, false).await;
    let other = h.user(&["ios"], false, false).await;
    let (ios, android, web) = (&user.devices[0], &user.devices[1], &user.devices[2]);
    let path = |d: &Device| format!("/api/voip/devices/{}/push-token", d.id);

    // Another device's id, of the same user or another one, is not found.
    for target in [android, &other.devices[0]] {
        let (status, reply) = h
            .request(
                Method::PUT,
                &path(target),
                Some(&ios.token),
                Some(json!({"provider": "apns", "token": IOS_TOKEN})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    }
    let (status, _) = h
        .request(
            Method::PUT,
            &path(ios),
            None,
            Some(json!({"provider": "apns", "token": IOS_TOKEN})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let cases = [
        (
            ios,
            json!({"provider": "gcm", "token": IOS_TOKEN}),
            StatusCode::BAD_REQUEST,
            "invalid_provider",
        ),
        (
            ios,
            json!({"provider": "apns", "token": "not hex!"}),
            StatusCode::BAD_REQUEST,
            "invalid_push_token",
        ),
        (
            ios,
            json!({"provider": "apns", "token": ""}),
            StatusCode::BAD_REQUEST,
            "invalid_push_token",
        ),
        (
            android,
            json!({"provider": "fcm", "token": "has space"}),
            StatusCode::BAD_REQUEST,
            "invalid_push_token",
        ),
        (
            ios,
            json!({"provider": "fcm", "token": ANDROID_TOKEN}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_provider",
        ),
        (
            web,
            json!({"provider": "fcm", "token": ANDROID_TOKEN}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "push_unsupported",
        ),
        (
            ios,
            json!({"provider": "apns", "token": IOS_TOKEN, "extra": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            android,
            json!({"provider": "fcm", "token": "x".repeat(5000)}),
            StatusCode::BAD_REQUEST,
            "invalid_push_token",
        ),
        (
            android,
            json!({"provider": "fcm", "token": "x".repeat(10_000)}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (device, body, want, code) in cases {
        let (status, reply) = h
            .request(
                Method::PUT,
                &path(device),
                Some(&device.token),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (want, Some(code)),
            "{body}: {reply}"
        );
    }
    assert_eq!(
        providers(&h, &user).await,
        [Value::Null, Value::Null, Value::Null],
        "bad input changed nothing"
    );

    let (status, _) = register(&h, android, "fcm", ANDROID_TOKEN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(providers(&h, &user).await[1], "fcm");
    let (status, reply) = h
        .request(Method::DELETE, &path(android), Some(&android.token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["registered"], false);
    assert_eq!(providers(&h, &user).await[1], Value::Null);
}
