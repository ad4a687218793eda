//! The HTTP surface: webhook guards, tenant scoping, device reports, admin API, history.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use ringmaster_core::session::NotifyEvent;
use ringmaster_telnyx::WebhookSigner;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_ignored_webhooks_change_nothing() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "web"], false, false).await;
    let (call, _caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    let snapshot = h.leg_of(&call, &user.devices[0]).unwrap();
    let before = h.session(&call).await.unwrap();
    let commands_before = h.emulator.commands().len();

    // A genuine-looking answer of device 0, and a new incoming call to the same user.
    let answer = telnyx_webhook(
        "call.answered",
        json!({"call_control_id": legs[0], "call_leg_id": snapshot.call_leg_id,
               "call_session_id": call, "client_state": snapshot.client_state}),
    );
    let incoming = telnyx_webhook(
        "call.initiated",
        json!({"call_control_id": "v3:forged", "call_leg_id": "forged",
               "call_session_id": "forged-session", "direction": "incoming",
               "from": CALLER, "to": user.number, "client_state": null}),
    );
    let now = unix_now();
    let stranger = WebhookSigner::generate();
    for body in [&answer, &incoming] {
        let (status, reply) = h.send_webhook(&stranger, now, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
        assert_eq!(reply["error"]["code"], "invalid_signature");
        let (status, reply) = h.send_webhook(&h.signer, now - 600, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "stale: {reply}");
        let (status, _) = h.send_webhook(&h.signer, now + 600, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "from the future");
    }
    let unsigned = h
        .http
        .post(format!("{}/webhooks/telnyx", h.url))
        .body(answer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

    let mut truncated = answer.clone();
    truncated.truncate(answer.len() / 2);
    let (status, reply) = h.send_webhook(&h.signer, now, truncated).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["error"]["code"], "invalid_webhook");
    let (status, _) = h
        .send_webhook(
            &h.signer,
            now,
            br#"{"event_type":"call_initiated"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "legacy v1 / no envelope");

    let mut huge = answer.clone();
    huge.extend(std::iter::repeat_n(b' ', 300 * 1024));
    let (status, reply) = h.send_webhook(&h.signer, now, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert_eq!(reply["error"]["code"], "payload_too_large");

    let dtmf = telnyx_webhook(
        "call.dtmf.received",
        json!({"call_control_id": legs[0], "call_leg_id": "x", "call_session_id": call,
               "digit": "5"}),
    );
    let (status, reply) = h.send_webhook(&h.signer, now, dtmf).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["status"], "ignored");
    let stray = telnyx_webhook(
        "call.hangup",
        json!({"call_control_id": "v3:nobody", "call_leg_id": "x",
               "call_session_id": "no-such-session", "hangup_cause": "normal_clearing"}),
    );
    let (status, reply) = h.send_webhook(&h.signer, now, stray).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["status"], "ignored");

    let after = h.session(&call).await.unwrap();
    assert_eq!(after, before, "the call did not move");
    assert!(h
        .session(&ringmaster_core::CallSessionId::new("forged-session"))
        .await
        .is_none());
    assert_eq!(h.emulator.commands().len(), commands_before);
    for d in &user.devices {
        assert_eq!(h.status(&call, d).await["status"], "ringing");
    }

    // The same answer, properly signed, is taken (and only once).
    let (status, reply) = h.send_webhook(&h.signer, now, answer.clone()).await;
    assert_eq!(
        (status, reply["status"].as_str()),
        (StatusCode::OK, Some("processed"))
    );
    let (status, reply) = h.send_webhook(&h.signer, now, answer).await;
    assert_eq!(
        (status, reply["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(
        h.session(&call)
            .await
            .unwrap()
            .answered_device()
            .map(|d| d.as_str()),
        Some(user.devices[0].id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_never_sees_another_users_call() {
    let h = Harness::start(Options::default()).await;
    let alice = h.user(&["ios", "web"], false, false).await;
    let bob = h.user(&["android"], false, false).await;
    let (call, _) = h.call(&alice);
    h.ringing(&call, &alice).await;
    let intruder = &bob.devices[0].token;

    let paths = [
        (Method::GET, format!("/api/voip/call-status/{call}")),
        (Method::GET, format!("/api/voip/calls/{call}")),
        (Method::POST, format!("/api/voip/calls/{call}/decline")),
        (Method::POST, format!("/api/voip/calls/{call}/ignore")),
        (Method::POST, format!("/api/voip/calls/{call}/events")),
    ];
    let report = json!({"seq": 1, "from": "IDLE", "to": "RINGING_INBOUND"});
    for (method, path) in &paths {
        let body = (method == Method::POST).then(|| report.clone());
        let (status, reply) = h.request(method.clone(), path, Some(intruder), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {reply}");
        assert_eq!(reply["error"]["code"], "not_found");
        // The same answer as for a call that does not exist at all.
        let missing = path.replace(call.as_str(), "no-such-call");
        let body = (method == Method::POST).then(|| report.clone());
        let (status2, reply2) = h
            .request(method.clone(), &missing, Some(intruder), body)
            .await;
        assert_eq!((status2, &reply2), (status, &reply));
    }
    let (_, history) = h.get("/api/voip/calls", intruder).await;
    assert_eq!(history["items"], json!([]));
    for d in &alice.devices {
        assert_eq!(h.status(&call, d).await["status"], "ringing");
    }

    for token in ["", "garbage", "rmd_dev_x.00"] {
        let (status, reply) = h
            .request(Method::GET, "/api/voip/my-active-call", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {reply}");
    }
    let (status, _) = h
        .request(Method::GET, "/api/voip/my-active-call", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_reports_are_checked_deduplicated_timelined_and_broadcast() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["ios", "web"], false, false).await;
    let (call, _) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    h.emulator.answer(&legs[0]).unwrap();
    h.wait_status(&call, &user.devices[0], "bridged").await;
    let phone = &user.devices[0];
    let path = format!("/api/voip/calls/{call}/events");

    let answered = json!({"seq": 7, "from": "RINGING_INBOUND", "to": "ACTIVE",
                          "trigger": {"type": "local_answer"}, "at": 1_700_000_000_000u64});
    let (status, reply) = h.post(&path, &phone.token, answered.clone()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"], "accepted");
    let (status, reply) = h.post(&path, &phone.token, answered).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["status"], "duplicate");

    let illegal = json!({"seq": 8, "from": "ENDED", "to": "ACTIVE"});
    let (status, reply) = h.post(&path, &phone.token, illegal).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert_eq!(reply["error"]["code"], "illegal_transition");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ENDED") && message.contains("ACTIVE"),
        "{message}"
    );
    // The trigger must be the one the table names for the pair.
    let wrong_trigger = json!({"seq": 9, "from": "ACTIVE", "to": "ON_HOLD",
                               "trigger": {"type": "remote_hold"}});
    let (status, _) = h.post(&path, &phone.token, wrong_trigger).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Outbound-only states make no sense on an inbound call.
    let wrong_direction = json!({"seq": 10, "from": "IDLE", "to": "CONNECTING"});
    let (status, _) = h.post(&path, &phone.token, wrong_direction).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, reply) = h
        .post(
            &path,
            &phone.token,
            json!({"seq": 11, "from": "LIMBO", "to": "ACTIVE"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let hold = json!({"seq": 12, "from": "ACTIVE", "to": "ON_HOLD", "trigger": {"type": "hold"}});
    let (status, _) = h.post(&path, &phone.token, hold).await;
    assert_eq!(status, StatusCode::OK);

    let detail = h.detail(&call, phone).await;
    let reports: Vec<_> = detail["timeline"]
        .as_array()
        .unwrap()
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
        reports,
        vec![
            (json!("RINGING_INBOUND"), json!("ACTIVE"), json!(7)),
            (json!("ACTIVE"), json!("ON_HOLD"), json!(12)),
        ]
    );
    let states = eventually("broadcast", || {
        let s: Vec<_> = h
            .notes_for(&call)
            .into_iter()
            .filter_map(|n| match n.event {
                NotifyEvent::CallStateChanged {
                    device: Some(d),
                    state,
                    previous_state,
                    ..
                } if d.as_str() == phone.id => Some(format!("{previous_state}->{state}")),
                _ => None,
            })
            .collect();
        (s.len() == 4).then_some(s)
    })
    .await;
    // The backend's own ring and bridge, then the phone's two accepted reports.
    assert_eq!(
        states,
        vec![
            "IDLE->RINGING_INBOUND",
            "RINGING_INBOUND->ACTIVE",
            "RINGING_INBOUND->ACTIVE",
            "ACTIVE->ON_HOLD"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_guards_and_validates() {
    let h = Harness::start(Options::default()).await;
    let body = json!({"name": "Ada", "numbers": [fresh_number()]});
    let (status, reply) = h
        .request(Method::POST, "/api/admin/users", None, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let (status, _) = h.post("/api/admin/users", "wrong", body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, user) = h.post("/api/admin/users", ADMIN, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, reply) = h.post("/api/admin/users", ADMIN, body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(reply["error"]["code"], "number_taken");
    let (status, reply) = h
        .post(
            "/api/admin/users",
            ADMIN,
            json!({"name": "Bob", "numbers": ["555-1234"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["error"]["code"], "invalid_number");

    let id = user["id"].as_str().unwrap();
    let devices = format!("/api/admin/users/{id}/devices");
    for bad in [
        json!({"platform": "symbian", "sip_uri": "sip:a@b"}),
        json!({"platform": "ios", "sip_uri": "tel:+15551234567"}),
        json!({"platform": "ios"}),
    ] {
        let (status, reply) = h.post(&devices, ADMIN, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {reply}");
    }
    let (status, reply) = h
        .post(
            "/api/admin/users/usr_nobody/devices",
            ADMIN,
            json!({"platform": "ios", "sip_uri": "sip:a@b"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    let (status, device) = h
        .post(
            &devices,
            ADMIN,
            json!({"platform": "web", "sip_uri": "sip:ada@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(device["token"].as_str().unwrap().starts_with("rmd_"));
    let (status, listed) = h.get(&format!("/api/admin/users/{id}"), ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["devices"][0]["id"], device["id"]);
    assert!(listed["devices"][0].get("token").is_none());

    let (status, reply) = h
        .request(
            Method::PATCH,
            &format!("/api/admin/users/{id}"),
            Some(ADMIN),
            Some(json!({"call_waiting": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["call_waiting"], true);

    // Malformed and oversized JSON get JSON errors too.
    let resp = h
        .http
        .post(format!("{}/api/admin/users", h.url))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["error"]["code"], "invalid_json");
    let resp = h
        .http
        .post(format!("{}/api/admin/users", h.url))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(format!("{{\"name\":\"{}\"}}", "x".repeat(100 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["error"]["code"], "payload_too_large");

    let (status, reply) = h.request(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, &reply["status"]), (StatusCode::OK, &json!("ok")));
    let (status, reply) = h.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["store"], "ok");
    assert_eq!(reply["push"]["configured"], true);
    let (status, reply) = h.request(Method::GET, "/nope", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(reply["error"]["code"], "not_found");
    let (status, _) = h.get("/api/admin/sandbox", ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not a sandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_newest_first() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["web"], false, false).await;
    let device = &user.devices[0];
    let mut calls = Vec::new();
    for _ in 0..3 {
        let (call, caller) = h.call(&user);
        h.ringing(&call, &user).await;
        h.emulator.hangup(&caller).unwrap();
        h.wait_status(&call, device, "missed").await;
        calls.push(call);
        // Calls in one millisecond would tie on start time; move on.
        h.clock.advance(std::time::Duration::from_millis(5));
    }
    let (status, first) = h.get("/api/voip/calls?limit=2", &device.token).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let ids: Vec<_> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_session_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![calls[2].to_string(), calls[1].to_string()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = h
        .get(
            &format!("/api/voip/calls?limit=2&cursor={cursor}"),
            &device.token,
        )
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["call_session_id"], calls[0].as_str());
    assert!(second["next_cursor"].is_null());
    let (status, _) = h
        .get("/api/voip/calls?cursor=not-a-cursor", &device.token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// `ringmaster serve` as run from the command line (sandbox mode, nothing configured but
/// the database), started twice on the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_tokens_survive_a_restart_of_serve_on_the_same_database() {
    use ringmaster_server::config::ServeArgs;
    use ringmaster_server::secrets::{SecretsHome, SECRETS_FILE};
    use ringmaster_server::serve_cmd::{launch, resolve_config};

    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        database_url: Some(format!("sqlite://{}/ringmaster.db", dir.path().display())),
        ..ServeArgs::default()
    };
    let http = reqwest::Client::new();
    let start = |config| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        launch(&config, listener).await.unwrap()
    };
    let active_call = |url: String, token: String| {
        let http = http.clone();
        async move {
            http.get(format!("{url}/api/voip/my-active-call"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };

    let config = resolve_config(args.clone()).unwrap();
    assert_eq!(
        config.generated_secrets,
        Some(SecretsHome::File(dir.path().join(SECRETS_FILE)))
    );
    let first = start(config.clone()).await;
    let url = first.server.url();
    let post = |path: &str, body: Value| {
        http.post(format!("{url}{path}"))
            .bearer_auth(config.admin_token.expose())
            .json(&body)
            .send()
    };
    let user: Value = post(
        "/api/admin/users",
        json!({"name": "Ada", "numbers": [fresh_number()]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let device: Value = post(
        &format!("/api/admin/users/{}/devices", user["id"].as_str().unwrap()),
        json!({"platform": "web", "sip_uri": "sip:ada@example.com"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = device["token"].as_str().unwrap().to_owned();
    assert_eq!(
        active_call(url.clone(), token.clone()).await,
        StatusCode::OK
    );
    first.shutdown().await;

    let again = resolve_config(args).unwrap();
    assert_eq!(again.admin_token, config.admin_token);
    assert_eq!(again.pusher.secret, config.pusher.secret);
    let second = start(again).await;
    assert_eq!(
        active_call(second.server.url(), token).await,
        StatusCode::OK,
        "the device token from before the restart must still be accepted"
    );
    assert_eq!(
        active_call(second.server.url(), "rmd_x.00".into()).await,
        StatusCode::UNAUTHORIZED
    );
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_api_answers_cross_origin_requests_and_admin_api_does_not() {
    let h = Harness::start(Options::default()).await;
    let user = h.user(&["web"], false, false).await;
    let origin = "https://app.example.com";
    let preflight = |path: &str| {
        h.http
            .request(Method::OPTIONS, format!("{}{path}", h.url))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,x-socket-id",
            )
            .send()
    };

    let resp = preflight("/api/voip/call-status/x").await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(resp
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    let allowed = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in ["authorization", "content-type", "x-socket-id"] {
        assert!(allowed.contains(h), "{h} not in {allowed}");
    }
    let methods = resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    for m in ["GET", "POST", "PUT", "DELETE"] {
        assert!(methods.contains(m), "{m} not in {methods}");
    }

    let resp = h
        .http
        .get(format!("{}/api/voip/my-active-call", h.url))
        .header("Origin", origin)
        .bearer_auth(&user.devices[0].token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    // Errors reach the tab too, so it can read the JSON error instead of a CORS failure.
    for (method, path, want) in [
        (
            Method::GET,
            "/api/voip/call-status/x",
            StatusCode::NOT_FOUND,
        ),
        (
            Method::DELETE,
            "/api/voip/my-active-call",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ] {
        let resp = h
            .http
            .request(method, format!("{}{path}", h.url))
            .header("Origin", origin)
            .bearer_auth(&user.devices[0].token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{path}");
        assert_eq!(resp.headers()["access-control-allow-origin"], "*", "{path}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }

    let resp = preflight("/api/admin/users").await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let resp = h
        .http
        .post(format!("{}/api/admin/users", h.url))
        .header("Origin", origin)
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Cross origin", "numbers": [fresh_number()]}))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}
