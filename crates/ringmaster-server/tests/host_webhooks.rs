//! Outbound webhooks as the host app receives them: verified by the `standardwebhooks` Python
//! library, in commit order, none lost and none duplicated, through a receiver outage; and an
//! endpoint that keeps failing is disabled.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use ringmaster_server::host_webhooks::WebhookSettings;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// The Python venv `./scripts/test-ops` prepares.
fn python() -> PathBuf {
    let venv = std::env::var("RINGMASTER_OPS_VENV")
        .unwrap_or_else(|_| "/var/tmp/ringmaster-ops-venv".to_owned());
    let python = Path::new(&venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/test-ops (or ./scripts/test), which creates it",
        python.display()
    );
    python
}

/// The receiver process, stopped when dropped.
struct Receiver(Child);

impl Receiver {
    fn start(port: u16, secret: &str, log: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/receiver/standard_webhooks_receiver.py");
        let child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(secret)
            .arg(log)
            .spawn()
            .expect("start the Python receiver");
        let receiver = Self(child);
        // Up before it matters: an endpoint may be disabled while it fails to connect.
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        receiver
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn received(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn register(h: &Harness, url: &str, events: &[&str]) -> Value {
    let (status, body) = h
        .post(
            "/api/admin/webhook-endpoints",
            ADMIN,
            json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Polls `GET /api/admin/webhook-endpoints/{id}` until `done` holds.
async fn endpoint_until(h: &Harness, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, e) = h
            .get(&format!("/api/admin/webhook-endpoints/{id}"), ADMIN)
            .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        if done(&e) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ALL: [&str; 7] = [
    "call.ringing",
    "call.answered",
    "call.missed",
    "call.declined",
    "call.ended",
    "voicemail.saved",
    "device.push_token_invalid",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_receiver_outage_in_commit_order_exactly_once() {
    let h = Harness::start(Options::default()).await;
    let port = free_port();
    let endpoint = register(&h, &format!("http://127.0.0.1:{port}/hooks"), &ALL).await;
    let secret = endpoint["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{endpoint}");
    assert_eq!(endpoint["disabled"], false);
    let id = endpoint["id"].as_str().unwrap();

    // The receiver is down while two calls happen: one answered on the web device, one
    // the caller gives up on.
    let user = h.user(&["ios", "web"], false, false).await;
    let web = &user.devices[1];
    let (first, caller) = h.call(&user);
    let legs = h.ringing(&first, &user).await;
    h.emulator.answer(&legs[1]).unwrap();
    h.wait_status(&first, web, "bridged").await;
    h.emulator.hangup(&caller).unwrap();
    h.wait_status(&first, web, "ended").await;
    let (second, caller) = h.call(&user);
    h.ringing(&second, &user).await;
    h.emulator.hangup(&caller).unwrap();
    h.wait_status(&second, web, "missed").await;

    let failing = endpoint_until(&h, id, "deliveries fail while the receiver is down", |e| {
        e["failed_attempts"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(failing["disabled"], false);
    assert!(failing["failing_since"].is_u64(), "{failing}");
    assert_eq!(
        failing["recent_attempts"][0]["delivered"], false,
        "{failing}"
    );

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let _receiver = Receiver::start(port, secret, &log);
    let got = eventually("every event delivered once the receiver is up", || {
        let got = received(&log);
        (got.len() >= 5).then_some(got)
    })
    .await;
    // Late retries would show up as extra lines.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = {
        let again = received(&log);
        assert_eq!(
            again.len(),
            got.len(),
            "more deliveries than events: {again:#?}"
        );
        again
    };

    assert!(got.iter().all(|g| g.get("invalid").is_none()), "{got:#?}");
    let ids: HashSet<&str> = got.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "a webhook-id arrived twice: {got:#?}");
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|g| {
            (
                g["data"]["call_session_id"].as_str().unwrap().to_owned(),
                g["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        (&first, "call.ringing"),
        (&first, "call.answered"),
        (&first, "call.ended"),
        (&second, "call.ringing"),
        (&second, "call.missed"),
    ]
    .iter()
    .map(|(c, t)| (c.to_string(), (*t).to_owned()))
    .collect();
    assert_eq!(seen, expected, "events out of commit order or lost");

    let ended = &got[2]["data"];
    assert_eq!(ended["device_id"], web.id.as_str(), "{ended}");
    assert_eq!(ended["user_id"], user.id.as_str());
    assert!(ended["duration_secs"].is_u64(), "{ended}");
    assert_eq!(ended["billable_seconds"], ended["duration_secs"]);
    assert!(ended["hangup_cause"].is_string(), "{ended}");
    assert!(got[4]["data"]["hangup_cause"].is_string());

    let healthy = endpoint_until(&h, id, "the endpoint recovered", |e| {
        e["failed_attempts"] == 0
    })
    .await;
    assert!(healthy["failing_since"].is_null(), "{healthy}");
    assert_eq!(healthy["recent_attempts"][0]["delivered"], true);
    assert!(healthy.get("secret").is_none(), "the secret is shown once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_keeps_failing_is_disabled_and_only_subscribed_events_go_out() {
    let h = Harness::start(Options {
        webhooks: Some(WebhookSettings {
            disable_after: Duration::from_millis(400),
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
            poll: Duration::from_millis(50),
        }),
        ..Options::default()
    })
    .await;
    let dead = register(&h, &format!("http://127.0.0.1:{}/", free_port()), &ALL).await;
    let port = free_port();
    let live = register(&h, &format!("http://127.0.0.1:{port}/"), &["call.missed"]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.jsonl");
    let _receiver = Receiver::start(port, live["secret"].as_str().unwrap(), &log);

    let user = h.user(&["web"], false, false).await;
    let (call, caller) = h.call(&user);
    h.ringing(&call, &user).await;
    h.emulator.hangup(&caller).unwrap();

    let dead_id = dead["id"].as_str().unwrap().to_owned();
    let disabled = endpoint_until(&h, &dead_id, "the failing endpoint is disabled", |e| {
        e["disabled"] == true
    })
    .await;
    assert!(disabled["disabled_reason"].is_string(), "{disabled}");
    assert!(disabled["disabled_at"].is_u64());
    let attempts = disabled["recent_attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2 && attempts.iter().all(|a| a["delivered"] == false));
    // Nothing more is tried once it is disabled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, later) = h
        .get(&format!("/api/admin/webhook-endpoints/{dead_id}"), ADMIN)
        .await;
    assert_eq!(later["recent_attempts"], disabled["recent_attempts"]);
    let (_, list) = h.get("/api/admin/webhook-endpoints", ADMIN).await;
    let shown = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == dead_id.as_str())
        .unwrap();
    assert_eq!(shown["disabled"], true);

    let got = eventually("the subscribed event arrives", || {
        let got = received(&log);
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 1, "only call.missed is subscribed: {got:#?}");
    assert_eq!(got[0]["type"], "call.missed");
    assert_eq!(got[0]["data"]["call_session_id"], call.as_str());

    let (status, _) = h
        .request(
            Method::DELETE,
            &format!("/api/admin/webhook-endpoints/{dead_id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .get(&format!("/api/admin/webhook-endpoints/{dead_id}"), ADMIN)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_endpoints_are_refused() {
    let h = Harness::start(Options::default()).await;
    for body in [
        json!({"url": "ftp://example.com", "events": ["call.ended"]}),
        json!({"url": "https://example.com/h", "events": []}),
        json!({"url": "https://example.com/h", "events": ["call.exploded"]}),
        json!({"url": "https://example.com/h", "events": ["call.ended"], "extra": 1}),
    ] {
        let (status, reply) = h
            .post("/api/admin/webhook-endpoints", ADMIN, body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {reply}");
        assert!(reply["error"]["code"].is_string());
    }
    let (status, _) = h
        .post(
            "/api/admin/webhook-endpoints",
            "not-the-admin",
            json!({"url": "https://example.com/h", "events": ["call.ended"]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, list) = h.get("/api/admin/webhook-endpoints", ADMIN).await;
    assert_eq!(list["items"], json!([]));
}
