//! Admin routes of the operator view: calls ringing or up now, and per-channel dismissal
//! latency computed from the stored timelines (the backend's "ring over" entry, then each
//! device's report of its dismissal naming the channel that reached it first).

use crate::app::AppState;
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use ringmaster_core::{CallSessionId, CallState, Timestamp};
use ringmaster_device::Channel;
use ringmaster_store::limits::{MAX_BATCH, MAX_PAGE};
use ringmaster_store::{CallRecord, TimelineEntry, TimelineSource};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default latency window: the last hour.
const DEFAULT_WINDOW_SECS: u64 = 3600;
/// Longest latency window accepted: one day.
const MAX_WINDOW_SECS: u64 = 86_400;
/// Backend timeline entries that end the ring for every device: someone answered, or the call
/// ended unanswered (declined, cancelled, timed out).
const RING_OVER: [&str; 2] = ["answered", "ended"];

/// The operator routes (admin token).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/admin/live-calls", get(live_calls))
        .route("/api/admin/dismissal-latency", get(dismissal_latency))
}

/// `GET /api/admin/live-calls` answer.
#[derive(Debug, Serialize)]
pub struct LiveCalls {
    /// Calls still ringing (`status` `ringing`).
    pub ringing: Vec<CallRecord>,
    /// Calls answered and not over (`answered`, `bridged`).
    pub active: Vec<CallRecord>,
}

/// `GET /api/admin/live-calls`: every user's calls ringing or up now, newest first (at most
/// 200 in all).
#[utoipa::path(get,
    path = "/api/admin/live-calls",
    tag = "admin",
    security(("admin_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn live_calls(_: Admin, State(app): State<AppState>) -> ApiResult<Json<LiveCalls>> {
    let calls = app.store.live_calls(MAX_PAGE).await?;
    let (ringing, active) = calls
        .into_iter()
        .partition(|c| c.status == ringmaster_store::CallStatus::Ringing);
    Ok(Json(LiveCalls { ringing, active }))
}

/// `GET /api/admin/dismissal-latency` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyQuery {
    /// Seconds back from now (default 3600, at most 86400).
    #[serde(default)]
    window_secs: Option<u64>,
}

/// Latency figures of one dismissal channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelLatency {
    /// `sip`, `websocket`, `push` or `poll`.
    pub channel: &'static str,
    /// Dismissals this channel delivered first.
    pub count: usize,
    /// Median, ms (`None` without samples).
    pub p50_ms: Option<u64>,
    /// 95th percentile, ms.
    pub p95_ms: Option<u64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<u64>,
}

/// `GET /api/admin/dismissal-latency` answer.
#[derive(Debug, Serialize)]
pub struct LatencyReport {
    /// Start of the window.
    pub since: Timestamp,
    /// Length of the window, seconds.
    pub window_secs: u64,
    /// One entry per channel, in the design's order.
    pub channels: Vec<ChannelLatency>,
    /// Timeline entries read.
    pub entries_read: usize,
    /// Whether the window held more entries than one read takes (1000): the figures then cover
    /// its oldest part only.
    pub truncated: bool,
}

/// `GET /api/admin/dismissal-latency?window_secs=`: per channel, p50/p95/p99 of the time from
/// the backend ending the ring to each device reporting its dismissal.
#[utoipa::path(get,
    path = "/api/admin/dismissal-latency",
    tag = "admin",
    security(("admin_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn dismissal_latency(
    _: Admin,
    State(app): State<AppState>,
    query: Result<Query<LatencyQuery>, QueryRejection>,
) -> ApiResult<Json<LatencyReport>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let window_secs = q.window_secs.unwrap_or(DEFAULT_WINDOW_SECS);
    if window_secs == 0 || window_secs > MAX_WINDOW_SECS {
        return Err(ApiError::bad_request(format!(
            "window_secs must be 1..={MAX_WINDOW_SECS}"
        )));
    }
    let now = app.engine.now().as_millis();
    let since = Timestamp::from_millis(now.saturating_sub(window_secs * 1000));
    let entries = app.store.timeline_since(since, MAX_BATCH).await?;
    Ok(Json(LatencyReport {
        since,
        window_secs,
        channels: latency_by_channel(&entries),
        entries_read: entries.len(),
        truncated: entries.len() >= MAX_BATCH as usize,
    }))
}

/// The channel a device report names in its detail (`channel`), if it names a known one.
fn reported_channel(entry: &TimelineEntry) -> Option<Channel> {
    let name = entry.detail.get("channel")?.as_str()?;
    Channel::ALL.into_iter().find(|c| c.as_str() == name)
}

/// Whether `entry` is a device reporting that it stopped ringing because the call was over for
/// it (RINGING_INBOUND to ENDED or MISSED).
fn is_dismissal_report(entry: &TimelineEntry) -> bool {
    let ringing = CallState::RingingInbound.as_str();
    entry.source == TimelineSource::Device
        && entry.from_state.as_deref() == Some(ringing)
        && matches!(
            entry.to_state.as_deref(),
            Some(s) if s == CallState::Ended.as_str() || s == CallState::Missed.as_str()
        )
}

/// Per-channel latency percentiles over `entries` (any order, several calls).
pub fn latency_by_channel(entries: &[TimelineEntry]) -> Vec<ChannelLatency> {
    let mut ring_over: BTreeMap<&CallSessionId, u64> = BTreeMap::new();
    for e in entries {
        if e.source == TimelineSource::Backend && RING_OVER.contains(&e.kind.as_str()) {
            let at = e.at.as_millis();
            ring_over
                .entry(&e.call_session_id)
                .and_modify(|t| *t = (*t).min(at))
                .or_insert(at);
        }
    }
    let mut samples: BTreeMap<Channel, Vec<u64>> = BTreeMap::new();
    for e in entries.iter().filter(|e| is_dismissal_report(e)) {
        let (Some(channel), Some(&over)) = (reported_channel(e), ring_over.get(&e.call_session_id))
        else {
            continue;
        };
        if let Some(latency) = e.at.as_millis().checked_sub(over) {
            samples.entry(channel).or_default().push(latency);
        }
    }
    Channel::ALL
        .into_iter()
        .map(|channel| {
            let mut values = samples.remove(&channel).unwrap_or_default();
            values.sort_unstable();
            ChannelLatency {
                channel: channel.as_str(),
                count: values.len(),
                p50_ms: percentile(&values, 50),
                p95_ms: percentile(&values, 95),
                p99_ms: percentile(&values, 99),
            }
        })
        .collect()
}

/// Nearest-rank percentile of sorted `values`.
fn percentile(values: &[u64], p: usize) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let rank = (p * values.len()).div_ceil(100).max(1);
    values.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmaster_core::DeviceId;
    use serde_json::json;

    fn backend(call: &str, at: u64, kind: &str) -> TimelineEntry {
        TimelineEntry {
            call_session_id: CallSessionId::new(call),
            at: Timestamp::from_millis(at),
            source: TimelineSource::Backend,
            device_id: None,
            kind: kind.into(),
            from_state: None,
            to_state: None,
            detail: json!(null),
        }
    }

    fn dismissed(call: &str, at: u64, to: &str, channel: &str) -> TimelineEntry {
        TimelineEntry {
            call_session_id: CallSessionId::new(call),
            at: Timestamp::from_millis(at),
            source: TimelineSource::Device,
            device_id: Some(DeviceId::new("d")),
            kind: "device.transition".into(),
            from_state: Some("RINGING_INBOUND".into()),
            to_state: Some(to.into()),
            detail: json!({ "channel": channel }),
        }
    }

    #[test]
    fn latency_counts_from_the_first_ring_over_entry_per_channel() {
        let entries = vec![
            backend("c1", 1_000, "answered"),
            backend("c1", 9_000, "ended"),
            dismissed("c1", 1_040, "ENDED", "websocket"),
            dismissed("c1", 1_300, "ENDED", "push"),
            backend("c2", 5_000, "ended"),
            dismissed("c2", 5_020, "MISSED", "websocket"),
            // Not a dismissal: the device answered.
            dismissed("c2", 5_030, "ACTIVE", "websocket"),
            // No ring-over entry in the window for this call.
            dismissed("c3", 7_000, "ENDED", "sip"),
            // Unknown channel names are left out.
            dismissed("c2", 5_050, "ENDED", "carrier-pigeon"),
        ];
        let by: BTreeMap<_, _> = latency_by_channel(&entries)
            .into_iter()
            .map(|c| (c.channel, c))
            .collect();
        assert_eq!(by["websocket"].count, 2);
        assert_eq!(by["websocket"].p50_ms, Some(20));
        assert_eq!(by["websocket"].p99_ms, Some(40));
        assert_eq!(by["push"].p95_ms, Some(300));
        assert_eq!(by["sip"].count, 0);
        assert_eq!(by["sip"].p50_ms, None);
        assert_eq!(by.len(), 4);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50), Some(50));
        assert_eq!(percentile(&values, 95), Some(95));
        assert_eq!(percentile(&values, 99), Some(99));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
