//! Prometheus metrics (`GET /metrics`).
//!
//! Counters and histograms are recorded where things happen, through the `metrics` facade and
//! one process-wide recorder installed by the first server ([`handle`]): several servers in
//! one process (the tests) add to the same counters. Gauges that describe stored state (live
//! calls, outbox backlog, queued dials) are read from the server being scraped just before
//! rendering.

use crate::app::AppState;
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use ringmaster_core::Timestamp;
use ringmaster_store::ops::LIVE_STATES;
use ringmaster_store::StoreError;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Telnyx webhooks received, by `type` and `outcome`.
pub const TELNYX_WEBHOOKS: &str = "ringmaster_telnyx_webhooks_total";
/// Seconds from a Telnyx webhook's arrival to its answer (verify, run, commit).
pub const INGEST_SECONDS: &str = "ringmaster_webhook_ingest_seconds";
/// The engine's commit metrics (seconds per commit by `outcome`, lost compare-and-sets), and
/// its timed commit.
pub use ringmaster_engine::commit_metrics::{timed_commit, CAS_CONFLICTS, COMMIT_SECONDS};
/// Pending outbox effects, by `lane`.
pub const OUTBOX_DEPTH: &str = "ringmaster_outbox_depth";
/// Age in seconds of the oldest pending outbox effect, by `lane`.
pub const OUTBOX_AGE: &str = "ringmaster_outbox_oldest_age_seconds";
/// Outbox effects executed, by `kind` and `outcome` (`done`, `retry`, `abandoned`).
pub const DISPATCHES: &str = "ringmaster_dispatch_total";
/// Dials waiting for the Telnyx dial rate limit.
pub const DIALS_QUEUED: &str = "ringmaster_dials_queued";
/// Seconds from the commit that dismissed a device to the dismissal's delivery, by `channel`.
pub const DISMISSAL_SECONDS: &str = "ringmaster_dismissal_seconds";
/// Pushes handed to FCM/APNs, by `platform` and `outcome`.
pub const PUSHES: &str = "ringmaster_pushes_total";
/// Deliveries of outbound webhooks to the host app, by event `type` and `outcome`.
pub const EVENT_WEBHOOKS: &str = "ringmaster_event_webhooks_total";
/// Calls in progress, by session `state`.
pub const CALLS: &str = "ringmaster_calls";
/// Histogram: MOS of the call quality samples devices sent (theirs, else the E-model's).
pub const MOS: &str = "ringmaster_call_mos";
/// Open WebSocket connections (recorded by the real-time layer).
pub use ringmaster_realtime::WS_CONNECTIONS;
/// WebSocket frames by `direction` (recorded by the real-time layer).
pub use ringmaster_realtime::WS_MESSAGES;

/// Histogram buckets, in seconds: a few milliseconds up to the dispatcher's longest waits.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// MOS histogram buckets: the spec's band edges (bad < 3.1 ≤ poor < 3.6 ≤ fair < 4.0 ≤ good
/// < 4.3 ≤ excellent).
const MOS_BUCKETS: &[f64] = &[1.0, 2.0, 2.6, 3.1, 3.6, 4.0, 4.3, 4.5];

/// Longest webhook body the metrics layer reads to learn the event type (the handler's own
/// limit).
const WEBHOOK_PEEK_LIMIT: usize = ringmaster_telnyx::MAX_WEBHOOK_BODY_BYTES;
/// Longest webhook answer read back for its outcome (they are a few dozen bytes).
const ANSWER_PEEK_LIMIT: usize = 16 * 1024;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder's handle, installing the recorder on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("bucket list is not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(MOS.to_owned()),
                MOS_BUCKETS,
            )
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be sparse");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(
        TELNYX_WEBHOOKS,
        "Telnyx webhooks received, by type and outcome"
    );
    describe_histogram!(
        INGEST_SECONDS,
        metrics::Unit::Seconds,
        "Time from a Telnyx webhook's arrival to its answer"
    );
    describe_histogram!(
        COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Time one store commit took, by outcome"
    );
    describe_counter!(CAS_CONFLICTS, "Commits that lost the compare-and-set");
    describe_gauge!(OUTBOX_DEPTH, "Pending outbox effects, by lane");
    describe_gauge!(
        OUTBOX_AGE,
        metrics::Unit::Seconds,
        "Age of the oldest pending outbox effect, by lane"
    );
    describe_counter!(DISPATCHES, "Outbox effects executed, by kind and outcome");
    describe_gauge!(DIALS_QUEUED, "Dials waiting for the Telnyx dial rate limit");
    describe_histogram!(
        DISMISSAL_SECONDS,
        metrics::Unit::Seconds,
        "Time from the dismissing commit to the dismissal's delivery, by channel"
    );
    describe_counter!(PUSHES, "Pushes handed to FCM/APNs, by platform and outcome");
    describe_gauge!(CALLS, "Calls in progress, by state");
    describe_histogram!(
        MOS,
        "MOS of the call quality samples devices sent (theirs, else the E-model's), by platform"
    );
    describe_counter!(
        EVENT_WEBHOOKS,
        "Outbound webhook deliveries to the host app, by type and outcome"
    );
    describe_gauge!(WS_CONNECTIONS, "Open WebSocket connections");
    describe_counter!(WS_MESSAGES, "WebSocket text frames, by direction");
    // Exported from the start, so "no conflicts yet" reads 0 rather than absent.
    counter!(CAS_CONFLICTS).increment(0);
}

/// Counts one executed outbox effect of `kind` (its lane) with `outcome`.
pub fn dispatched(kind: String, outcome: &'static str) {
    counter!(DISPATCHES, "kind" => kind, "outcome" => outcome).increment(1);
}

/// Records how long a dismissal took to reach `channel` since its commit at `committed`.
pub fn dismissal_delivered(channel: &'static str, committed: Timestamp, now: Timestamp) {
    let latency = Duration::from_millis(now.as_millis().saturating_sub(committed.as_millis()));
    histogram!(DISMISSAL_SECONDS, "channel" => channel).record(latency);
}

/// Counts one delivery attempt of an outbound webhook.
pub fn host_webhook(event_type: &str, delivered: bool) {
    let outcome = if delivered { "delivered" } else { "failed" };
    counter!(EVENT_WEBHOOKS, "type" => event_type_label(event_type), "outcome" => outcome)
        .increment(1);
}

/// Counts one push handed to a provider.
pub fn push_sent(platform: &'static str, outcome: &'static str) {
    counter!(PUSHES, "platform" => platform, "outcome" => outcome).increment(1);
}

/// A label value safe to export: known-shaped event types pass, anything else is `other`.
fn event_type_label(event_type: &str) -> String {
    let plain = !event_type.is_empty()
        && event_type.len() <= 48
        && event_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
    if plain {
        event_type.to_owned()
    } else {
        "other".to_owned()
    }
}

#[derive(serde::Deserialize)]
struct WebhookPeek {
    data: WebhookPeekData,
}

#[derive(serde::Deserialize)]
struct WebhookPeekData {
    event_type: String,
}

#[derive(serde::Deserialize)]
struct AnswerPeek {
    status: String,
}

/// Route middleware of `POST /webhooks/telnyx`: counts each webhook by type and outcome and
/// times its ingestion. The type is only trusted (and exported) once the handler accepted the
/// signature; rejected requests count as `unverified`.
pub async fn track_webhook(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, WEBHOOK_PEEK_LIMIT).await else {
        counter!(TELNYX_WEBHOOKS, "type" => "unverified", "outcome" => "too_large").increment(1);
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "webhook body is too large",
        )
        .into_response();
    };
    let event_type = serde_json::from_slice::<WebhookPeek>(&bytes)
        .map(|p| event_type_label(&p.data.event_type))
        .unwrap_or_else(|_| "other".to_owned());
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = response.status();
    let (response, outcome) = if status.is_success() {
        let (parts, body) = response.into_parts();
        let answer = axum::body::to_bytes(body, ANSWER_PEEK_LIMIT)
            .await
            .unwrap_or_default();
        let status = serde_json::from_slice::<AnswerPeek>(&answer).map(|a| a.status);
        let outcome = match status.as_deref() {
            Ok("processed") => "processed",
            Ok("ignored") => "ignored",
            Ok("duplicate") => "duplicate",
            _ => "accepted",
        };
        (Response::from_parts(parts, Body::from(answer)), outcome)
    } else if status.is_server_error() {
        (response, "failed")
    } else {
        (response, "rejected")
    };
    let event_type = if status.is_success() || status.is_server_error() {
        event_type
    } else {
        "unverified".to_owned()
    };
    histogram!(INGEST_SECONDS).record(started.elapsed());
    counter!(TELNYX_WEBHOOKS, "type" => event_type, "outcome" => outcome).increment(1);
    response
}

/// Lanes always exported: the dispatcher's lanes and the webhook relay's.
const BASE_LANES: [&str; 6] = ["release", "setup", "realtime", "push", "other", "host"];

/// Lanes exported so far, so a drained lane reads 0 instead of its last depth.
static SEEN_LANES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Sets the gauges that describe `app`'s stored state.
async fn refresh_gauges(app: &AppState) -> Result<(), StoreError> {
    let stats = app.store.ops_stats().await?;
    for state in LIVE_STATES {
        let n = stats
            .live_sessions
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        gauge!(CALLS, "state" => state).set(n as f64);
    }
    let now = app.engine.now();
    let mut seen = SEEN_LANES.lock().unwrap_or_else(|p| p.into_inner());
    seen.extend(BASE_LANES.map(str::to_owned));
    for lane in seen.iter() {
        if !stats.outbox.iter().any(|b| &b.lane == lane) {
            gauge!(OUTBOX_DEPTH, "lane" => lane.clone()).set(0.0);
            gauge!(OUTBOX_AGE, "lane" => lane.clone()).set(0.0);
        }
    }
    for backlog in &stats.outbox {
        seen.insert(backlog.lane.clone());
        let age = backlog
            .oldest
            .map_or(0, |at| now.as_millis().saturating_sub(at.as_millis()))
            as f64
            / 1000.0;
        gauge!(OUTBOX_DEPTH, "lane" => backlog.lane.clone()).set(backlog.depth as f64);
        gauge!(OUTBOX_AGE, "lane" => backlog.lane.clone()).set(age);
    }
    gauge!(DIALS_QUEUED).set(app.dials.queued() as f64);
    Ok(())
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics_page(State(app): State<AppState>) -> Response {
    let handle = handle();
    if let Err(e) = refresh_gauges(&app).await {
        tracing::warn!(error = %e, "metrics: store counts unavailable");
    }
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// A router serving only `/metrics` (for `RINGMASTER_METRICS_LISTEN`).
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics_page))
        .with_state(state)
}

/// Records one call quality sample's MOS.
pub fn mos_sampled(mos: f64, platform: &'static str) {
    histogram!(MOS, "platform" => platform).record(mos);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_event_types_become_labels() {
        assert_eq!(event_type_label("call.hangup"), "call.hangup");
        assert_eq!(event_type_label("call.Hangup\""), "other");
        assert_eq!(event_type_label(&"a".repeat(100)), "other");
        assert_eq!(event_type_label(""), "other");
    }
}
