//! `/metrics` as Prometheus scrapes it: every family is there and moves with a real call.

mod common;

use common::push_mock::*;
use common::pusher::PusherClient;
use common::*;
use prometheus_parse::{Sample, Scrape, Value};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::io::BufRead as _;

async fn scrape(h: &Harness) -> Scrape {
    let resp = h
        .http
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.unwrap();
    Scrape::parse(std::io::Cursor::new(text).lines()).expect("Prometheus text format")
}

/// The samples of one family.
fn family<'a>(s: &'a Scrape, name: &str) -> Vec<&'a Sample> {
    s.samples.iter().filter(|x| x.metric == name).collect()
}

/// A counter's or gauge's value, or a histogram's observation count.
fn number(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
        Value::Summary(_) => panic!("{} is a summary, not a histogram", sample.metric),
    }
}

/// The family's total over the samples whose labels include `labels`.
fn total(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    family(s, name)
        .into_iter()
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(number)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_exported_and_moves_with_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let mock = PushMock::start().await;
    let h = Harness::start(Options {
        realtime: true,
        push: PushMode::Send(mock.sender(dir.path())),
        ..Options::default()
    })
    .await;
    let before = scrape(&h).await;
    for name in [
        "ringmaster_store_cas_conflicts_total",
        "ringmaster_dials_queued",
        "ringmaster_calls",
    ] {
        assert!(!family(&before, name).is_empty(), "{name} missing");
    }

    let user = h.user(&["ios", "android", "web"], false, false).await;
    let (ios, android, web) = (&user.devices[0], &user.devices[1], &user.devices[2]);
    for (device, provider, token) in [(ios, "apns", IOS_TOKEN), (android, "fcm", ANDROID_TOKEN)] {
        let (status, body) = h
            .request(
                Method::PUT,
                &format!("/api/voip/devices/{}/push-token", device.id),
                Some(&device.token),
                Some(json!({"provider": provider, "token": token})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut tab = PusherClient::connect(h.addr).await;
    tab.subscribe(&web.token, &format!("private-user.{}", user.id))
        .await;

    let (call, caller) = h.call(&user);
    let legs = h.ringing(&call, &user).await;
    let ringing = scrape(&h).await;
    assert!(
        total(&ringing, "ringmaster_calls", &[("state", "ringing")]) >= 1.0,
        "the ringing call is counted"
    );
    assert!(total(&ringing, "ringmaster_websocket_connections", &[]) >= 1.0);

    h.emulator.answer(&legs[2]).unwrap();
    h.wait_status(&call, web, "bridged").await;
    eventually("both phones dismissed by push", || {
        (mock
            .pushes()
            .iter()
            .filter(|p| p.push_type() == "call_ended")
            .count()
            == 2)
            .then_some(())
    })
    .await;
    // The answering tab sends what it measured: the MOS histogram counts it.
    let (status, body) = h
        .request(
            Method::POST,
            &format!("/api/voip/calls/{call}/quality"),
            Some(&web.token),
            Some(
                json!({"samples": [{"seq": 1, "at": unix_now_ms(), "direction": "inbound",
                "codec": "opus", "rtt_ms": 40, "jitter_ms": 2, "loss_pct": 0.5}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    h.emulator.hangup(&caller).unwrap();
    h.wait_status(&call, web, "ended").await;
    // The last dismissal and the last command result may still be on their way.
    let after = eventually_scrape(&h, |s| {
        total(
            s,
            "ringmaster_dismissal_seconds",
            &[("channel", "websocket")],
        ) > total(
            &before,
            "ringmaster_dismissal_seconds",
            &[("channel", "websocket")],
        )
    })
    .await;

    let moved = |name: &str, labels: &[(&str, &str)]| {
        let (was, is) = (total(&before, name, labels), total(&after, name, labels));
        assert!(is > was, "{name} {labels:?} did not move: {was} -> {is}");
    };
    moved(
        "ringmaster_telnyx_webhooks_total",
        &[("type", "call.initiated"), ("outcome", "processed")],
    );
    moved(
        "ringmaster_telnyx_webhooks_total",
        &[("type", "call.hangup")],
    );
    moved("ringmaster_webhook_ingest_seconds", &[]);
    moved(
        "ringmaster_store_commit_seconds",
        &[("outcome", "committed")],
    );
    moved(
        "ringmaster_dispatch_total",
        &[("kind", "setup"), ("outcome", "done")],
    );
    moved(
        "ringmaster_dispatch_total",
        &[("kind", "realtime"), ("outcome", "done")],
    );
    moved("ringmaster_dismissal_seconds", &[("channel", "push")]);
    moved("ringmaster_dismissal_seconds", &[("channel", "websocket")]);
    moved(
        "ringmaster_pushes_total",
        &[("platform", "ios"), ("outcome", "delivered")],
    );
    moved(
        "ringmaster_pushes_total",
        &[("platform", "android"), ("outcome", "delivered")],
    );
    moved(
        "ringmaster_websocket_messages_total",
        &[("direction", "out")],
    );
    moved(
        "ringmaster_websocket_messages_total",
        &[("direction", "in")],
    );
    moved("ringmaster_call_mos", &[("platform", "web")]);
    for lane in ["release", "setup", "realtime", "push", "host"] {
        assert_eq!(
            family(&after, "ringmaster_outbox_depth")
                .iter()
                .filter(|s| s.labels.get("lane") == Some(lane))
                .count(),
            1,
            "outbox depth of lane {lane}"
        );
        assert!(!family(&after, "ringmaster_outbox_oldest_age_seconds").is_empty());
    }
    assert_eq!(
        total(&after, "ringmaster_calls", &[("state", "ringing")]),
        0.0,
        "the call is over"
    );
    let dismissal = family(&after, "ringmaster_dismissal_seconds");
    assert!(
        dismissal
            .iter()
            .all(|s| matches!(s.value, Value::Histogram(_))),
        "dismissal latency is a histogram"
    );
    drop(tab);
}

/// Scrapes until `ready` holds (metrics recorded after a response may lag it a little).
async fn eventually_scrape(h: &Harness, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let s = scrape(h).await;
        if ready(&s) || std::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_move_to_their_own_listener() {
    let h = Harness::start(Options {
        metrics_listen: true,
        ..Options::default()
    })
    .await;
    let (status, _) = h.request(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not on the main listener");
    let addr = h.server().metrics_addr().expect("a metrics listener");
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let s = Scrape::parse(std::io::Cursor::new(text).lines()).unwrap();
    assert!(!family(&s, "ringmaster_calls").is_empty());
}

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
