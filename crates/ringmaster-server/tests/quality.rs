//! Call quality analytics end to end: ingestion of every accepted shape, idempotency, tenant
//! scoping, validation, the per-call report, the fleet view and the exports.

mod common;

use common::*;
use reqwest::StatusCode;
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_server::clock::system_now;
use ringmaster_telnyx::iso_time::format_iso;
use serde_json::{json, Value};

fn now_ms() -> u64 {
    system_now().as_millis()
}

fn quality_path(call: &CallSessionId) -> String {
    format!("/api/voip/calls/{call}/quality")
}

/// A ringing call to a user with the given devices.
async fn ringing_call(h: &Harness, platforms: &[&str]) -> (User, CallSessionId) {
    let user = h.user(platforms, false, false).await;
    let (call, _) = h.call(&user);
    h.ringing(&call, &user).await;
    (user, call)
}

fn sample(seq: u64, at: u64, rtt: f64, jitter: f64, loss: f64) -> Value {
    json!({"seq": seq, "at": at, "leg": "leg-a", "direction": "inbound", "codec": "opus",
           "rtt_ms": rtt, "jitter_ms": jitter, "loss_pct": loss})
}

async fn post(h: &Harness, call: &CallSessionId, token: &str, body: Value) -> (StatusCode, Value) {
    h.post(&quality_path(call), token, body).await
}

async fn report(h: &Harness, call: &CallSessionId, token: &str) -> Value {
    let (status, body) = h.get(&quality_path(call), token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn stream<'a>(report: &'a Value, device: &str, direction: &str) -> &'a Value {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device_id"] == device && s["direction"] == direction)
        .unwrap_or_else(|| panic!("no {direction} stream of {device} in {report}"))
}

fn series_len(report: &Value) -> usize {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["series"].as_array().unwrap().len())
        .sum()
}

/// Every accepted shape in one batch: Ringmaster samples, a Telnyx SDK `CallQualityMetrics`,
/// a Telnyx SDK call report and each lifecycle event; the report shows them all, and the
/// events join the call's timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_shape_is_stored_and_reported() {
    let h = Harness::start(Options::default()).await;
    let (user, call) = ringing_call(&h, &["ios"]).await;
    let device = &user.devices[0];
    let t0 = now_ms() - 60_000;
    let iso = |ms: u64| format_iso(Timestamp::from_millis(ms));
    let interval = |start: u64, received: u64, lost: u64| {
        json!({
            "intervalStartUtc": iso(start), "intervalEndUtc": iso(start + 5_000),
            "audio": {
                "outbound": {"packetsSent": received, "bytesSent": received * 80,
                             "audioLevelAvg": 0.1, "bitrateAvg": 32000.0},
                "inbound": {"packetsReceived": received, "bytesReceived": received * 80,
                            "packetsLost": lost, "packetsDiscarded": 0,
                            "jitterBufferDelay": 1.5, "jitterBufferEmittedCount": 100,
                            "totalSamplesReceived": 48000, "concealedSamples": 0,
                            "concealmentEvents": 0, "audioLevelAvg": 0.2,
                            "jitterAvg": 3.2, "bitrateAvg": 32000.0}
            },
            "connection": {"roundTripTimeAvg": 0.045, "packetsSent": received,
                           "packetsReceived": received, "bytesSent": 1, "bytesReceived": 1}
        })
    };
    let body = json!({
        "client": {"app_version": "3.2.1 (77)", "network_type": "wifi"},
        "samples": [sample(1, t0, 40.0, 2.0, 0.0)],
        "telnyx_metrics": [{
            "seq": 2, "at": t0 + 5_000, "codec": "opus", "leg": "leg-a",
            "metrics": {
                "jitter": 0.004, "rtt": 0.05, "mos": 4.2, "quality": "good",
                "inboundAudio": {"packetsLost": 10, "packetsReceived": 990, "jitter": 0.004},
                "remoteInboundAudio": {"fractionLost": 0.02, "roundTripTime": 0.05,
                                       "jitter": 0.003, "packetsLost": 5}
            }
        }],
        "telnyx_reports": [{
            "seq": 3, "codec": "opus", "leg": "leg-a",
            "report": {
                "summary": {"callId": "5c6d", "telnyxSessionId": call, "sdkVersion": "2.1.0",
                            "direction": "inbound", "state": "done"},
                "stats": [interval(t0 + 10_000, 250, 0), interval(t0 + 15_000, 500, 25)],
                "logs": [{"timestamp": iso(t0), "level": "info", "message": "started"}]
            }
        }],
        "events": [
            {"seq": 4, "at": t0 - 3_000, "type": "push_received"},
            {"seq": 5, "at": t0 - 2_500, "type": "push_to_ring", "duration_ms": 500},
            {"seq": 6, "at": t0 - 500, "type": "answer_delay", "duration_ms": 2_000},
            {"seq": 7, "at": t0 - 4_000, "type": "sdk_connected"},
            {"seq": 8, "at": t0 + 30_000, "type": "sdk_disconnected", "reason": "network lost"},
            {"seq": 9, "at": t0 + 31_000, "type": "error", "component": "audio",
             "message": "route change failed", "metadata": {"code": 7}}
        ]
    });
    let (status, reply) = post(&h, &call, &device.token, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    assert_eq!(reply, json!({"accepted": 9, "duplicates": 0}));

    let r = report(&h, &call, &device.token).await;
    let inbound = stream(&r, &device.id, "inbound");
    let series = inbound["series"].as_array().unwrap();
    assert_eq!(series.len(), 4, "{inbound}");
    // The app's own sample is estimated by the E-model; the SDK's MOS is kept as sent.
    assert_eq!(series[0]["estimated"], true);
    assert_eq!(series[1]["estimated"], false);
    assert_eq!(series[1]["mos"], 4.2);
    assert!((series[1]["loss_pct"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    // The report's second interval lost 25 of 275 packets expected since the first.
    assert!((series[3]["loss_pct"].as_f64().unwrap() - 25.0 * 100.0 / 275.0).abs() < 1e-9);
    assert!((series[2]["rtt_ms"].as_f64().unwrap() - 45.0).abs() < 1e-9);
    let outbound = stream(&r, &device.id, "outbound");
    assert!((outbound["series"][0]["loss_pct"].as_f64().unwrap() - 2.0).abs() < 1e-9);

    let analytics: Vec<&str> = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "analytics")
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        analytics,
        [
            "sdk_connected",
            "push_received",
            "push_to_ring",
            "answer_delay",
            "sdk_disconnected",
            "error"
        ]
    );
    let timeline = r["timeline"].as_array().unwrap();
    assert!(timeline.iter().any(|e| e["source"] == "backend"), "{r}");
    let ats: Vec<u64> = timeline.iter().map(|e| e["at"].as_u64().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "{ats:?}");
    let delay = timeline
        .iter()
        .find(|e| e["kind"] == "answer_delay")
        .unwrap();
    assert_eq!(delay["duration_ms"], 2_000);
}

/// Resending a batch stores nothing twice: every item counts as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_batches_are_counted_once() {
    let h = Harness::start(Options::default()).await;
    let (user, call) = ringing_call(&h, &["android"]).await;
    let token = &user.devices[0].token;
    let t0 = now_ms() - 30_000;
    let batch = json!({
        "samples": [sample(10, t0, 50.0, 3.0, 0.5), sample(11, t0 + 5_000, 50.0, 3.0, 0.5)],
        "events": [{"seq": 12, "at": t0, "type": "sdk_connected"}]
    });
    let (status, first) = post(&h, &call, token, batch.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first, json!({"accepted": 3, "duplicates": 0}));
    let (status, again) = post(&h, &call, token, batch).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again, json!({"accepted": 0, "duplicates": 3}));
    // A batch mixing a seen seq with a new one stores only the new one.
    let mixed = json!({"samples": [sample(11, t0 + 5_000, 50.0, 3.0, 0.5),
                                   sample(13, t0 + 10_000, 50.0, 3.0, 0.5)]});
    let (_, mixed) = post(&h, &call, token, mixed).await;
    assert_eq!(mixed, json!({"accepted": 1, "duplicates": 1}));
    let r = report(&h, &call, token).await;
    assert_eq!(series_len(&r), 3);
}

/// Another user's device can neither send nor read a call's analytics: 404, as for a call
/// that does not exist, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_call_is_not_found() {
    let h = Harness::start(Options::default()).await;
    let (owner, call) = ringing_call(&h, &["ios"]).await;
    let stranger = h.user(&["ios"], false, false).await;
    let token = &stranger.devices[0].token;
    let (status, reply) = post(
        &h,
        &call,
        token,
        json!({"samples": [sample(1, now_ms(), 40.0, 2.0, 0.0)]}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    assert_eq!(reply["error"]["code"], "not_found");
    for path in [
        quality_path(&call),
        format!("{}/export?format=csv", quality_path(&call)),
    ] {
        let (status, _) = h.get(&path, token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = h
        .get(&quality_path(&CallSessionId::new("no-such-call")), token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = report(&h, &call, &owner.devices[0].token).await;
    assert_eq!(series_len(&r), 0);
}

/// A clean device and a device losing 10 % of packets on the same call: the first is
/// excellent with no dominant impairment, the second poor because of loss, with a poor
/// window; the fleet view splits them by platform and counts the call as having a poor window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_device_and_a_lossy_device_get_their_bands_and_impairments() {
    clean_and_lossy(&Harness::start(Options::default()).await).await;
}

/// The same call on the PostgreSQL backend (a schema of its own on the real server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_device_and_a_lossy_device_on_postgresql() {
    let mut h = Harness::start(Options {
        postgres: true,
        ..Options::default()
    })
    .await;
    let schema = h
        .pg_schema
        .clone()
        .expect("a PostgreSQL harness has a schema");
    clean_and_lossy(&h).await;
    // A server still writing would deadlock with DROP SCHEMA.
    h.stop().await;
    drop_postgres_schema(&schema).await;
}

async fn clean_and_lossy(h: &Harness) {
    let (user, call) = ringing_call(h, &["ios", "android"]).await;
    let (clean, lossy) = (&user.devices[0], &user.devices[1]);
    let t0 = now_ms() - 120_000;
    for (device, loss, network) in [(clean, 0.0, "wifi"), (lossy, 10.0, "cellular")] {
        let samples: Vec<Value> = (0..12)
            .map(|i| sample(100 + i, t0 + i * 5_000, 40.0, 2.0, loss))
            .collect();
        let body = json!({"client": {"app_version": "1.0.0", "network_type": network},
                          "samples": samples});
        let (status, reply) = post(h, &call, &device.token, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        assert_eq!(reply["accepted"], 12);
    }
    let r = report(h, &call, &clean.token).await;
    let good = stream(&r, &clean.id, "inbound");
    assert_eq!(good["rating"], "excellent", "{good}");
    assert_eq!(good["dominant_impairment"], Value::Null);
    assert_eq!(good["worst_window"]["rating"], "excellent");
    assert_eq!(good["time_in_band_ms"]["excellent"], 60_000);
    assert_eq!(good["platform"], "ios");
    let bad = stream(&r, &lossy.id, "inbound");
    assert_eq!(bad["rating"], "poor", "{bad}");
    assert_eq!(bad["dominant_impairment"], "loss");
    assert_eq!(bad["worst_window"]["rating"], "poor");
    assert_eq!(bad["time_in_band_ms"]["poor"], 60_000);
    let loss_cost = bad["impairments"]["loss"].as_f64().unwrap();
    assert!((loss_cost - 95.0 * 10.0 / 35.1).abs() < 1e-6, "{loss_cost}");
    assert_eq!(r["has_poor_window"], true);

    let (status, fleet) = h
        .get(
            &format!("/api/admin/quality?from={}&to={}", t0, now_ms()),
            ADMIN,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fleet}");
    assert_eq!(fleet["overall"]["samples"], 24);
    assert_eq!(fleet["by_platform"]["ios"]["bands"]["excellent"], 12);
    assert_eq!(fleet["by_platform"]["android"]["bands"]["poor"], 12);
    assert_eq!(fleet["by_network_type"]["cellular"]["samples"], 12);
    assert_eq!(fleet["by_app_version"]["1.0.0"]["samples"], 24);
    let hours: u64 = fleet["by_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(hours, 24);
    assert_eq!(fleet["calls"], 1);
    assert_eq!(fleet["calls_with_poor_window"], 1);
    assert_eq!(fleet["poor_window_share"], 1.0);
    assert_eq!(fleet["truncated"], false);

    let (status, _) = h.get("/api/admin/quality", &clean.token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, reply) = h.get("/api/admin/quality?from=10&to=5", ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");

    // Exports: one CSV row per sample under a header, and JSON with the raw samples.
    let resp = h
        .http
        .get(format!(
            "{}{}/export?format=csv",
            h.url,
            quality_path(&call)
        ))
        .bearer_auth(&clean.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(".csv"));
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 25);
    assert!(lines[0].starts_with("call_session_id,device_id,platform"));
    assert_eq!(
        lines.iter().filter(|l| l.contains(",poor,")).count(),
        12,
        "{csv}"
    );
    let (status, export) = h
        .get(&format!("{}/export", quality_path(&call)), &clean.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export["samples"].as_array().unwrap().len(), 24);
    assert_eq!(export["streams"].as_array().unwrap().len(), 2);
}

/// Bad input is refused with a 400 naming the field (413 when too large), and nothing of the
/// request is stored, not even its valid items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_stores_nothing() {
    let h = Harness::start(Options::default()).await;
    let (user, call) = ringing_call(&h, &["web"]).await;
    let token = &user.devices[0].token;
    let now = now_ms();
    let good = sample(1, now, 40.0, 2.0, 0.0);
    let with = |field: &str, value: Value| {
        let mut s = sample(2, now, 40.0, 2.0, 0.0);
        s[field] = value;
        json!({"samples": [good.clone(), s]})
    };
    let cases = [
        (with("rtt_ms", json!(-1.0)), "samples[1].rtt_ms"),
        (with("loss_pct", json!(150)), "samples[1].loss_pct"),
        (with("jitter_ms", Value::Null), "samples[1].jitter_ms"),
        (with("codec", json!("g729")), "samples[1].codec"),
        (with("direction", json!("sideways")), "samples[1].direction"),
        (with("mos", json!(7)), "samples[1].mos"),
        (with("at", json!(now + 3_600_000)), "samples[1].at"),
        (with("leg", json!("has space")), "samples[1].leg"),
        (with("surprise", json!(1)), "samples[1]"),
        (
            json!({"samples": [good.clone()],
                   "events": [{"seq": 3, "at": now, "type": "answer_delay"}]}),
            "events[0].duration_ms",
        ),
        (
            json!({"samples": [good.clone()],
                   "telnyx_metrics": [{"seq": 3, "at": now, "codec": "opus",
                                       "metrics": {"jitter": 0.01, "rtt": -0.2, "mos": 4.0}}]}),
            "telnyx_metrics[0].metrics.rtt",
        ),
        (
            json!({"samples": (0..501).map(|i| sample(10 + i, now, 40.0, 2.0, 0.0))
                                       .collect::<Vec<_>>()}),
            "samples",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = post(&h, &call, token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {reply}");
        // An unknown key is reported at its object or at the key itself.
        assert!(
            reply["error"]["field"].as_str().unwrap().starts_with(field),
            "{reply}"
        );
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{reply}"
        );
    }
    // JSON has no NaN: the parser stops at the token, and the message names its field.
    let raw = format!(
        r#"{{"samples": [{{"seq": 5, "at": {now}, "direction": "inbound", "codec": "pcmu",
            "rtt_ms": NaN, "jitter_ms": 1, "loss_pct": 0}}]}}"#
    );
    let resp = h
        .http
        .post(format!("{}{}", h.url, quality_path(&call)))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["error"]["field"], "samples[0].rtt_ms", "{reply}");
    // Over 256 KiB.
    let padding = "x".repeat(300 * 1024);
    let (status, reply) = post(
        &h,
        &call,
        token,
        json!({"samples": [good.clone()],
               "events": [{"seq": 3, "at": now, "type": "error", "message": padding}]}),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");

    let r = report(&h, &call, token).await;
    assert_eq!(series_len(&r), 0, "{r}");
    assert!(!r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["source"] == "analytics"));
    // The refused requests left their sequence numbers free.
    let (status, reply) = post(&h, &call, token, json!({"samples": [good]})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(reply, json!({"accepted": 1, "duplicates": 0}));
}
