//! Call quality analytics routes: devices send samples and lifecycle events under the call's
//! `call_session_id`, read a call's report and export it; operators read the fleet view.
//! Only the call's own user sees anything of a call; any other call is a 404.

use crate::app::AppState;
use crate::auth::{Admin, DeviceAuth};
use crate::error::{ApiError, ApiResult};
use crate::quality::{csv_export, fleet, has_poor_window, streams, FleetView, StreamReport};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ringmaster_core::quality::{assess, Codec, MediaDirection, MediaSample, NetworkStats};
use ringmaster_core::{CallSessionId, DeviceId, Timestamp};
use ringmaster_store::{
    AnalyticsEvent, CallDetail, CallRecord, QualityItem, QualitySample, SampleSource,
    TimelineSource,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// Largest ingestion body.
pub const QUALITY_BODY_LIMIT: usize = 256 * 1024;
/// Most items (samples, SDK reports, events) one request may carry.
pub const MAX_ITEMS_PER_REQUEST: usize = 500;
/// How far ahead of the server's clock a device's `at` may be.
const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(600);
/// Longest delay an event may report (one hour).
const MAX_EVENT_DURATION_MS: u64 = 3_600_000;
/// Largest count or byte total accepted (JSON-safe integers).
const MAX_COUNT: u64 = (1 << 53) - 1;
/// Longest free-text event message.
const MAX_MESSAGE_LEN: usize = 1024;
/// Longest short text (leg, app version, reason, component).
const MAX_SHORT_LEN: usize = 128;
/// Largest event `metadata` object, encoded.
const MAX_METADATA_BYTES: usize = 4096;
/// Samples read for one fleet view; more in the range are reported as `truncated`.
const MAX_FLEET_SAMPLES: u32 = 50_000;
/// Fleet range when the request gives none.
const DEFAULT_FLEET_RANGE_MS: u64 = 24 * 3_600_000;
/// Longest fleet range.
const MAX_FLEET_RANGE_MS: u64 = 31 * 24 * 3_600_000;

/// The device routes (`/api/voip/calls/{id}/quality...`).
pub fn device_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/voip/calls/{call_id}/quality",
            get(report)
                .post(ingest)
                .layer(DefaultBodyLimit::max(QUALITY_BODY_LIMIT)),
        )
        .route("/api/voip/calls/{call_id}/quality/export", get(export))
}

/// The admin routes (`/api/admin/quality`).
pub fn admin_routes() -> Router<AppState> {
    Router::new().route("/api/admin/quality", get(fleet_view))
}

// ---------------------------------------------------------------------------------------------
// Request shapes

/// Network the device was on.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum NetworkType {
    Wifi,
    Cellular,
    Ethernet,
    Other,
}

impl NetworkType {
    fn as_str(self) -> &'static str {
        match self {
            NetworkType::Wifi => "wifi",
            NetworkType::Cellular => "cellular",
            NetworkType::Ethernet => "ethernet",
            NetworkType::Other => "other",
        }
    }
}

/// `POST /api/voip/calls/{id}/quality` body. Every list is optional; together they hold at
/// most [`MAX_ITEMS_PER_REQUEST`] items.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QualityBatchRequest {
    #[serde(default)]
    client: Option<ClientInfo>,
    #[serde(default)]
    samples: Vec<SampleIn>,
    #[serde(default)]
    telnyx_metrics: Vec<TelnyxMetricsIn>,
    #[serde(default)]
    telnyx_reports: Vec<TelnyxReportIn>,
    #[serde(default)]
    events: Vec<EventIn>,
}

/// What the app says about itself, applied to every item of the batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientInfo {
    #[serde(default)]
    app_version: Option<String>,
    #[serde(default)]
    network_type: Option<NetworkType>,
}

/// Ringmaster's own sample shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleIn {
    seq: u64,
    at: u64,
    #[serde(default)]
    leg: Option<String>,
    direction: MediaDirection,
    codec: Codec,
    rtt_ms: f64,
    jitter_ms: f64,
    loss_pct: f64,
    #[serde(default)]
    jitter_buffer_discards: Option<u64>,
    #[serde(default)]
    bytes: Option<u64>,
    #[serde(default)]
    mos: Option<f64>,
    #[serde(default)]
    burst_ratio: Option<f64>,
    #[serde(default)]
    network_type: Option<NetworkType>,
}

/// A Telnyx WebRTC SDK `CallQualityMetrics` (iOS `toDictionary()`, Android and Flutter
/// `toJson()`), wrapped with the app's sequence number, time and codec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelnyxMetricsIn {
    seq: u64,
    at: u64,
    codec: Codec,
    #[serde(default)]
    leg: Option<String>,
    metrics: TelnyxMetrics,
}

/// The SDK's fields; others it may add are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TelnyxMetrics {
    /// Seconds.
    jitter: f64,
    /// Seconds.
    rtt: f64,
    mos: f64,
    #[serde(default)]
    inbound_audio: Option<Map<String, Value>>,
    #[serde(default)]
    remote_inbound_audio: Option<Map<String, Value>>,
}

/// A Telnyx WebRTC SDK call report (`CallReportPayload`, what the SDK posts to
/// `/call_report`), wrapped with the app's sequence number and codec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelnyxReportIn {
    seq: u64,
    codec: Codec,
    #[serde(default)]
    leg: Option<String>,
    report: TelnyxCallReport,
}

#[derive(Debug, Deserialize)]
struct TelnyxCallReport {
    stats: Vec<TelnyxInterval>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TelnyxInterval {
    interval_end_utc: String,
    #[serde(default)]
    audio: Option<TelnyxAudio>,
    #[serde(default)]
    connection: Option<TelnyxConnection>,
}

#[derive(Debug, Deserialize)]
struct TelnyxAudio {
    #[serde(default)]
    inbound: Option<TelnyxInbound>,
}

/// Cumulative counters since the call started, plus the interval's mean jitter (ms).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TelnyxInbound {
    #[serde(default)]
    packets_received: Option<u64>,
    #[serde(default)]
    bytes_received: Option<u64>,
    #[serde(default)]
    packets_lost: Option<i64>,
    #[serde(default)]
    packets_discarded: Option<u64>,
    #[serde(default)]
    jitter_avg: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TelnyxConnection {
    /// Seconds.
    #[serde(default)]
    round_trip_time_avg: Option<f64>,
}

/// A lifecycle analytics event.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum EventKind {
    /// A push for this call reached the device.
    PushReceived,
    /// From push arrival to the ringing UI (`duration_ms` required).
    PushToRing,
    /// From ringing to the user's answer (`duration_ms` required).
    AnswerDelay,
    /// The Telnyx SDK's socket connected.
    SdkConnected,
    /// The Telnyx SDK's socket went away (`reason`).
    SdkDisconnected,
    /// Something failed (`message` required, `component`).
    Error,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            EventKind::PushReceived => "push_received",
            EventKind::PushToRing => "push_to_ring",
            EventKind::AnswerDelay => "answer_delay",
            EventKind::SdkConnected => "sdk_connected",
            EventKind::SdkDisconnected => "sdk_disconnected",
            EventKind::Error => "error",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    seq: u64,
    at: u64,
    #[serde(rename = "type")]
    kind: EventKind,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// `202` body of an ingestion.
#[derive(Debug, Serialize)]
pub struct IngestResponse {
    /// Items stored.
    pub accepted: u32,
    /// Items already stored before (same device and seq).
    pub duplicates: u32,
}

// ---------------------------------------------------------------------------------------------
// Validation

fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> ApiError {
    let field = field.into();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_quality",
        format!("{field}: {reason}"),
    )
    .with_details(serde_json::json!({ "field": field }))
}

fn in_range(field: &str, value: f64, min: f64, max: f64) -> ApiResult<f64> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            field,
            format!("must be a finite number in {min}..={max}, got {value}"),
        ))
    }
}

fn count(field: &str, value: u64) -> ApiResult<u64> {
    if value <= MAX_COUNT {
        Ok(value)
    } else {
        Err(invalid(field, format!("must be at most {MAX_COUNT}")))
    }
}

fn short_text(field: &str, value: Option<String>, spaces: bool) -> ApiResult<Option<String>> {
    let Some(v) = value else { return Ok(None) };
    let printable = if spaces {
        !v.trim().is_empty() && !v.chars().any(char::is_control)
    } else {
        !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic())
    };
    if printable && v.len() <= MAX_SHORT_LEN {
        Ok(Some(v))
    } else {
        Err(invalid(
            field,
            format!(
                "must be 1 to {MAX_SHORT_LEN} printable characters{}",
                if spaces { "" } else { " without spaces" }
            ),
        ))
    }
}

/// Who sent the batch, about which call, and when the server received it.
struct Origin<'a> {
    auth: &'a DeviceAuth,
    call: &'a CallRecord,
    now: Timestamp,
    oldest: Timestamp,
    app_version: Option<String>,
    network_type: Option<&'static str>,
}

impl Origin<'_> {
    fn at(&self, field: &str, at: u64) -> ApiResult<Timestamp> {
        let latest = self.now.as_millis() + MAX_CLOCK_AHEAD.as_millis() as u64;
        if at < self.oldest.as_millis() || at > latest {
            return Err(invalid(
                field,
                format!(
                    "must be ms since the epoch between {} and {latest} (the retention window)",
                    self.oldest.as_millis()
                ),
            ));
        }
        Ok(Timestamp::from_millis(at))
    }

    fn seq(&self, field: &str, seq: u64) -> ApiResult<u64> {
        if seq <= i64::MAX as u64 {
            Ok(seq)
        } else {
            Err(invalid(field, "must be at most 2^63 - 1"))
        }
    }

    fn sample(
        &self,
        (seq, part): (u64, u32),
        at: Timestamp,
        stream: &Stream,
        figures: Figures,
    ) -> QualitySample {
        QualitySample {
            device_id: self.auth.device.id.clone(),
            seq,
            part,
            call_session_id: self.call.call_session_id.clone(),
            user_id: self.call.user_id.clone(),
            tenant_id: self.call.tenant_id.clone(),
            at,
            received_at: self.now,
            leg: stream.leg.clone(),
            direction: stream.direction,
            codec: stream.codec,
            source: stream.source,
            rtt_ms: figures.rtt_ms,
            jitter_ms: figures.jitter_ms,
            loss_pct: figures.loss_pct,
            burst_ratio: figures.burst_ratio,
            jitter_buffer_discards: figures.discards,
            bytes: figures.bytes,
            reported_mos: figures.reported_mos,
            mos: figures.mos,
            platform: self.auth.device.platform,
            app_version: self.app_version.clone(),
            network_type: figures
                .network_type
                .or(self.network_type)
                .map(str::to_owned),
        }
    }
}

/// Which stream a sample belongs to and where it came from.
struct Stream {
    leg: Option<String>,
    direction: MediaDirection,
    codec: Codec,
    source: SampleSource,
}

/// A sample's measured figures, validated.
struct Figures {
    rtt_ms: f64,
    jitter_ms: f64,
    loss_pct: Option<f64>,
    burst_ratio: f64,
    discards: Option<u64>,
    bytes: Option<u64>,
    reported_mos: Option<f64>,
    mos: f64,
    network_type: Option<&'static str>,
}

impl Figures {
    /// Validates the figures and fills `mos`: the reported one, else the E-model's.
    fn new(
        field: &str,
        codec: Codec,
        rtt_ms: f64,
        jitter_ms: f64,
        loss_pct: Option<f64>,
        burst_ratio: Option<f64>,
        reported_mos: Option<f64>,
    ) -> ApiResult<Figures> {
        let rtt_ms = in_range(&format!("{field}.rtt_ms"), rtt_ms, 0.0, 60_000.0)?;
        let jitter_ms = in_range(&format!("{field}.jitter_ms"), jitter_ms, 0.0, 60_000.0)?;
        let loss_pct = loss_pct
            .map(|l| in_range(&format!("{field}.loss_pct"), l, 0.0, 100.0))
            .transpose()?;
        let burst_ratio = burst_ratio
            .map(|b| in_range(&format!("{field}.burst_ratio"), b, 1.0, 100.0))
            .transpose()?
            .unwrap_or(1.0);
        let reported_mos = reported_mos
            .map(|m| in_range(&format!("{field}.mos"), m, 1.0, 5.0))
            .transpose()?;
        let model = assess(MediaSample {
            network: NetworkStats {
                rtt_ms,
                jitter_ms,
                loss_pct: loss_pct.unwrap_or(0.0),
            },
            codec,
            burst_ratio,
        })
        .map_err(|e| invalid(field, e))?;
        Ok(Figures {
            rtt_ms,
            jitter_ms,
            loss_pct,
            burst_ratio,
            discards: None,
            bytes: None,
            mos: reported_mos.unwrap_or(model.mos),
            reported_mos,
            network_type: None,
        })
    }
}

fn number(map: &Map<String, Value>, key: &str) -> Option<f64> {
    map.get(key).and_then(Value::as_f64)
}

/// Loss as a percentage of packets expected, from counters.
fn loss_from(lost: f64, received: f64) -> Option<f64> {
    let expected = lost + received;
    (expected > 0.0 && lost >= 0.0).then(|| lost * 100.0 / expected)
}

fn samples_in(origin: &Origin<'_>, batch: Vec<SampleIn>) -> ApiResult<Vec<QualityItem>> {
    batch
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let field = format!("samples[{i}]");
            let seq = origin.seq(&format!("{field}.seq"), s.seq)?;
            let at = origin.at(&format!("{field}.at"), s.at)?;
            let leg = short_text(&format!("{field}.leg"), s.leg, false)?;
            let mut figures = Figures::new(
                &field,
                s.codec,
                s.rtt_ms,
                s.jitter_ms,
                Some(s.loss_pct),
                s.burst_ratio,
                s.mos,
            )?;
            figures.discards = s
                .jitter_buffer_discards
                .map(|n| count(&format!("{field}.jitter_buffer_discards"), n))
                .transpose()?;
            figures.bytes = s
                .bytes
                .map(|n| count(&format!("{field}.bytes"), n))
                .transpose()?;
            figures.network_type = s.network_type.map(NetworkType::as_str);
            let stream = Stream {
                leg,
                direction: s.direction,
                codec: s.codec,
                source: SampleSource::App,
            };
            Ok(QualityItem::Samples(vec![origin.sample(
                (seq, 0),
                at,
                &stream,
                figures,
            )]))
        })
        .collect()
}

/// An SDK metrics report becomes the inbound sample (jitter, RTT, the SDK's MOS, loss from
/// `inboundAudio` counters when present) and, when `remoteInboundAudio` is there, the outbound
/// sample as the far end saw it (`fractionLost`, `jitter`, `roundTripTime`).
fn metrics_in(origin: &Origin<'_>, batch: Vec<TelnyxMetricsIn>) -> ApiResult<Vec<QualityItem>> {
    batch
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let field = format!("telnyx_metrics[{i}]");
            let seq = origin.seq(&format!("{field}.seq"), m.seq)?;
            let at = origin.at(&format!("{field}.at"), m.at)?;
            let leg = short_text(&format!("{field}.leg"), m.leg, false)?;
            let metrics = &m.metrics;
            let secs =
                |name: &str, v: f64| in_range(&format!("{field}.metrics.{name}"), v, 0.0, 60.0);
            let rtt_ms = secs("rtt", metrics.rtt)? * 1000.0;
            let inbound_loss = metrics
                .inbound_audio
                .as_ref()
                .and_then(|a| loss_from(number(a, "packetsLost")?, number(a, "packetsReceived")?));
            let inbound = Figures::new(
                &format!("{field}.metrics"),
                m.codec,
                rtt_ms,
                secs("jitter", metrics.jitter)? * 1000.0,
                inbound_loss,
                None,
                Some(metrics.mos),
            )?;
            let mut stream = Stream {
                leg,
                direction: MediaDirection::Inbound,
                codec: m.codec,
                source: SampleSource::TelnyxMetrics,
            };
            let mut samples = vec![origin.sample((seq, 0), at, &stream, inbound)];
            if let Some(remote) = &metrics.remote_inbound_audio {
                let remote_field = format!("{field}.metrics.remoteInboundAudio");
                let fraction = number(remote, "fractionLost")
                    .map(|f| in_range(&format!("{remote_field}.fractionLost"), f, 0.0, 1.0))
                    .transpose()?;
                let outbound = Figures::new(
                    &remote_field,
                    m.codec,
                    number(remote, "roundTripTime").map_or(rtt_ms, |s| s * 1000.0),
                    number(remote, "jitter").map_or(0.0, |s| s * 1000.0),
                    fraction.map(|f| f * 100.0),
                    None,
                    None,
                )?;
                stream.direction = MediaDirection::Outbound;
                samples.push(origin.sample((seq, 1), at, &stream, outbound));
            }
            Ok(QualityItem::Samples(samples))
        })
        .collect()
}

/// A call report becomes one inbound sample per interval with inbound audio: the interval's
/// mean jitter and RTT, and loss from the growth of the cumulative counters since the
/// previous interval.
fn reports_in(origin: &Origin<'_>, batch: Vec<TelnyxReportIn>) -> ApiResult<Vec<QualityItem>> {
    batch
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let field = format!("telnyx_reports[{i}]");
            let seq = origin.seq(&format!("{field}.seq"), r.seq)?;
            let leg = short_text(&format!("{field}.leg"), r.leg, false)?;
            if r.report.stats.len() > ringmaster_store::quality::MAX_SAMPLE_PARTS {
                return Err(invalid(
                    format!("{field}.report.stats"),
                    "too many intervals",
                ));
            }
            let stream = Stream {
                leg,
                direction: MediaDirection::Inbound,
                codec: r.codec,
                source: SampleSource::TelnyxReport,
            };
            let (mut lost_before, mut received_before, mut discarded_before) = (0.0, 0.0, 0u64);
            let mut samples = Vec::new();
            for (j, interval) in r.report.stats.into_iter().enumerate() {
                let at_field = format!("{field}.report.stats[{j}]");
                let Some(inbound) = interval.audio.and_then(|a| a.inbound) else {
                    continue;
                };
                let end = ringmaster_telnyx::iso_time::parse_iso(&interval.interval_end_utc)
                    .ok_or_else(|| {
                        invalid(
                            format!("{at_field}.intervalEndUtc"),
                            "must be an RFC 3339 time",
                        )
                    })?;
                let at = origin.at(&format!("{at_field}.intervalEndUtc"), end.as_millis())?;
                let lost = inbound.packets_lost.unwrap_or(0).max(0) as f64;
                let received = inbound.packets_received.unwrap_or(0) as f64;
                let loss = loss_from(
                    (lost - lost_before).max(0.0),
                    (received - received_before).max(0.0),
                );
                (lost_before, received_before) = (lost, received);
                let discarded = inbound.packets_discarded;
                let mut figures = Figures::new(
                    &at_field,
                    r.codec,
                    interval
                        .connection
                        .and_then(|c| c.round_trip_time_avg)
                        .map_or(0.0, |s| s * 1000.0),
                    inbound.jitter_avg.unwrap_or(0.0),
                    Some(loss.unwrap_or(0.0)),
                    None,
                    None,
                )?;
                figures.discards = discarded.map(|d| d.saturating_sub(discarded_before));
                discarded_before = discarded.unwrap_or(discarded_before);
                figures.bytes = inbound.bytes_received;
                let part = u32::try_from(samples.len()).unwrap_or(u32::MAX);
                samples.push(origin.sample((seq, part), at, &stream, figures));
            }
            if samples.is_empty() {
                return Err(invalid(
                    format!("{field}.report.stats"),
                    "no interval has inbound audio statistics",
                ));
            }
            Ok(QualityItem::Samples(samples))
        })
        .collect()
}

fn events_in(origin: &Origin<'_>, batch: Vec<EventIn>) -> ApiResult<Vec<QualityItem>> {
    batch
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let field = format!("events[{i}]");
            let seq = origin.seq(&format!("{field}.seq"), e.seq)?;
            let at = origin.at(&format!("{field}.at"), e.at)?;
            let needs_duration = matches!(e.kind, EventKind::PushToRing | EventKind::AnswerDelay);
            let duration_ms = match e.duration_ms {
                Some(d) if d <= MAX_EVENT_DURATION_MS => Some(d),
                Some(_) => {
                    return Err(invalid(
                        format!("{field}.duration_ms"),
                        format!("must be at most {MAX_EVENT_DURATION_MS}"),
                    ))
                }
                None if needs_duration => {
                    return Err(invalid(
                        format!("{field}.duration_ms"),
                        format!("is required for {}", e.kind.as_str()),
                    ))
                }
                None => None,
            };
            let mut detail = Map::new();
            for (name, value) in [("reason", e.reason), ("component", e.component)] {
                if let Some(v) = short_text(&format!("{field}.{name}"), value, true)? {
                    detail.insert(name.into(), v.into());
                }
            }
            match e.message {
                Some(m) if !m.trim().is_empty() && m.len() <= MAX_MESSAGE_LEN => {
                    detail.insert("message".into(), m.into());
                }
                Some(_) => {
                    return Err(invalid(
                        format!("{field}.message"),
                        format!("must be 1 to {MAX_MESSAGE_LEN} bytes"),
                    ))
                }
                None if matches!(e.kind, EventKind::Error) => {
                    return Err(invalid(format!("{field}.message"), "is required for error"))
                }
                None => {}
            }
            if let Some(metadata) = e.metadata {
                let size = serde_json::to_vec(&metadata).map_or(usize::MAX, |v| v.len());
                if size > MAX_METADATA_BYTES {
                    return Err(invalid(
                        format!("{field}.metadata"),
                        format!("must encode to at most {MAX_METADATA_BYTES} bytes"),
                    ));
                }
                detail.insert("metadata".into(), Value::Object(metadata));
            }
            Ok(QualityItem::Event(AnalyticsEvent {
                device_id: origin.auth.device.id.clone(),
                seq,
                call_session_id: origin.call.call_session_id.clone(),
                user_id: origin.call.user_id.clone(),
                tenant_id: origin.call.tenant_id.clone(),
                at,
                received_at: origin.now,
                kind: e.kind.as_str().to_owned(),
                duration_ms,
                detail: Value::Object(detail),
                platform: origin.auth.device.platform,
                app_version: origin.app_version.clone(),
            }))
        })
        .collect()
}

/// Parses the body, naming the field of the first problem (also for tokens JSON does not
/// have, such as `NaN`).
fn parse_batch(body: &[u8]) -> ApiResult<QualityBatchRequest> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let batch: QualityBatchRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        invalid(field, e.into_inner())
    })?;
    de.end().map_err(|e| invalid("body", e))?;
    Ok(batch)
}

/// The call, if it is the device user's.
async fn own_call(app: &AppState, auth: &DeviceAuth, call_id: &str) -> ApiResult<CallDetail> {
    app.store
        .get_call(&auth.user.id, &CallSessionId::new(call_id))
        .await?
        .filter(|d| d.call.tenant_id == auth.user.tenant_id)
        .ok_or_else(|| ApiError::not_found("no such call"))
}

/// `POST /api/voip/calls/{id}/quality`: stores samples, Telnyx SDK reports and lifecycle
/// events; `202 {"accepted","duplicates"}`. Any invalid item refuses the whole request.
#[utoipa::path(post,
    path = "/api/voip/calls/{call_id}/quality",
    tag = "device",
    request_body(content = serde_json::Value, description = "Quality samples, Telnyx SDK metrics and reports, lifecycle events"),
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 202, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn ingest(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<IngestResponse>)> {
    let detail = own_call(&app, &auth, &call_id).await?;
    let body = body.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a quality batch is at most {QUALITY_BODY_LIMIT} bytes"),
        )
    })?;
    let batch = parse_batch(&body)?;
    let items = batch.samples.len()
        + batch.telnyx_metrics.len()
        + batch.telnyx_reports.len()
        + batch.events.len();
    if items > MAX_ITEMS_PER_REQUEST {
        return Err(invalid(
            "samples",
            format!("a request carries at most {MAX_ITEMS_PER_REQUEST} items, got {items}"),
        ));
    }
    let now = app.engine.now();
    let client = batch.client;
    let app_version = short_text(
        "client.app_version",
        client.as_ref().and_then(|c| c.app_version.clone()),
        true,
    )?;
    let origin = Origin {
        auth: &auth,
        call: &detail.call,
        now,
        oldest: now - app.settings.retention.quality,
        app_version,
        network_type: client
            .as_ref()
            .and_then(|c| c.network_type)
            .map(NetworkType::as_str),
    };
    let mut all = samples_in(&origin, batch.samples)?;
    all.extend(metrics_in(&origin, batch.telnyx_metrics)?);
    all.extend(reports_in(&origin, batch.telnyx_reports)?);
    all.extend(events_in(&origin, batch.events)?);
    let scores: Vec<(f64, &'static str)> = all
        .iter()
        .filter_map(|item| match item {
            QualityItem::Samples(samples) => Some(samples),
            QualityItem::Event(_) => None,
        })
        .flatten()
        .map(|s| (s.mos, s.platform.as_str()))
        .collect();
    let outcome = app.store.record_quality(all).await?;
    // A batch with duplicates is a retry whose samples were counted the first time.
    if outcome.duplicates == 0 {
        for (mos, platform) in scores {
            crate::telemetry::mos_sampled(mos, platform);
        }
    }
    tracing::info!(
        call_session_id = %detail.call.call_session_id,
        device_id = %auth.device.id,
        accepted = outcome.accepted,
        duplicates = outcome.duplicates,
        "quality analytics received"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestResponse {
            accepted: outcome.accepted,
            duplicates: outcome.duplicates,
        }),
    ))
}

// ---------------------------------------------------------------------------------------------
// Reading

/// One entry of the joined timeline.
#[derive(Debug, Serialize)]
pub struct TimelineItem {
    /// When, ms.
    pub at: u64,
    /// `backend` or `device` (the call's own timeline) or `analytics` (a lifecycle event).
    pub source: &'static str,
    /// The device concerned.
    pub device_id: Option<DeviceId>,
    /// What happened.
    pub kind: String,
    /// State before, for transitions.
    pub from_state: Option<String>,
    /// State after, for transitions.
    pub to_state: Option<String>,
    /// The delay an analytics event measures.
    pub duration_ms: Option<u64>,
    /// The rest.
    pub detail: Value,
}

/// `GET /api/voip/calls/{id}/quality` body.
#[derive(Debug, Serialize)]
pub struct CallQualityReport {
    /// The call.
    pub call_session_id: CallSessionId,
    /// Its history record.
    pub call: CallRecord,
    /// One report per device, leg and direction.
    pub streams: Vec<StreamReport>,
    /// Whether any stream has a 10 s window below MOS 3.6.
    pub has_poor_window: bool,
    /// The call's timeline joined with the devices' lifecycle events, by time.
    pub timeline: Vec<TimelineItem>,
}

fn timeline(detail: &CallDetail, events: &[AnalyticsEvent]) -> Vec<TimelineItem> {
    let mut items: Vec<TimelineItem> = detail
        .timeline
        .iter()
        .map(|e| TimelineItem {
            at: e.at.as_millis(),
            source: match e.source {
                TimelineSource::Backend => "backend",
                TimelineSource::Device => "device",
            },
            device_id: e.device_id.clone(),
            kind: e.kind.clone(),
            from_state: e.from_state.clone(),
            to_state: e.to_state.clone(),
            duration_ms: None,
            detail: e.detail.clone(),
        })
        .chain(events.iter().map(|e| TimelineItem {
            at: e.at.as_millis(),
            source: "analytics",
            device_id: Some(e.device_id.clone()),
            kind: e.kind.clone(),
            from_state: None,
            to_state: None,
            duration_ms: e.duration_ms,
            detail: e.detail.clone(),
        }))
        .collect();
    // Stable: entries at the same time keep their own order.
    items.sort_by_key(|i| i.at);
    items
}

async fn build_report(
    app: &AppState,
    auth: &DeviceAuth,
    call_id: &str,
) -> ApiResult<(CallQualityReport, ringmaster_store::CallQualityData)> {
    let detail = own_call(app, auth, call_id).await?;
    let data = app.store.call_quality(&detail.call.call_session_id).await?;
    let streams = streams(&data.samples);
    let report = CallQualityReport {
        call_session_id: detail.call.call_session_id.clone(),
        has_poor_window: has_poor_window(&streams),
        timeline: timeline(&detail, &data.events),
        call: detail.call,
        streams,
    };
    Ok((report, data))
}

/// `GET /api/voip/calls/{id}/quality`: the call's quality report.
#[utoipa::path(get,
    path = "/api/voip/calls/{call_id}/quality",
    tag = "device",
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn report(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<CallQualityReport>> {
    Ok(Json(build_report(&app, &auth, &call_id).await?.0))
}

/// `GET /api/voip/calls/{id}/quality/export` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<ExportFormat>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExportFormat {
    Json,
    Csv,
}

/// The JSON export: the report plus every stored sample and event.
#[derive(Debug, Serialize)]
pub struct CallQualityExport {
    /// The report, as `GET .../quality` shows it.
    #[serde(flatten)]
    pub report: CallQualityReport,
    /// Every sample as stored.
    pub samples: Vec<QualitySample>,
    /// Every lifecycle event as stored.
    pub events: Vec<AnalyticsEvent>,
}

fn attachment(call: &CallSessionId, extension: &str) -> HeaderValue {
    let safe: String = call
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"call-quality-{safe}.{extension}\""
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// `GET /api/voip/calls/{id}/quality/export?format=json|csv`: one call's analytics as a
/// download (JSON by default).
#[utoipa::path(get,
    path = "/api/voip/calls/{call_id}/quality/export",
    tag = "device",
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn export(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (report, data) = build_report(&app, &auth, &call_id).await?;
    let id = report.call_session_id.clone();
    match q.format.unwrap_or(ExportFormat::Json) {
        ExportFormat::Json => Ok((
            [(header::CONTENT_DISPOSITION, attachment(&id, "json"))],
            Json(CallQualityExport {
                report,
                samples: data.samples,
                events: data.events,
            }),
        )
            .into_response()),
        ExportFormat::Csv => {
            let csv = csv_export(&data.samples).map_err(ApiError::internal)?;
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/csv; charset=utf-8"),
                    ),
                    (header::CONTENT_DISPOSITION, attachment(&id, "csv")),
                ],
                csv,
            )
                .into_response())
        }
    }
}

/// `GET /api/admin/quality` query: times as ms since the epoch or RFC 3339.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

fn instant(field: &str, raw: &str) -> ApiResult<u64> {
    raw.parse::<u64>()
        .ok()
        .or_else(|| ringmaster_telnyx::iso_time::parse_iso(raw).map(|t| t.as_millis()))
        .filter(|ms| *ms <= i64::MAX as u64)
        .ok_or_else(|| invalid(field, "must be ms since the epoch or an RFC 3339 time"))
}

/// `GET /api/admin/quality?from=&to=`: MOS distribution overall, by platform, app version,
/// network type and hour, and the share of calls with a poor 10 s window, over `[from, to)`
/// (default: the last 24 hours; at most 31 days).
#[utoipa::path(get,
    path = "/api/admin/quality",
    tag = "admin",
    security(("admin_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn fleet_view(
    _admin: Admin,
    State(app): State<AppState>,
    query: Result<Query<FleetQuery>, QueryRejection>,
) -> ApiResult<Json<FleetView>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let to = match &q.to {
        Some(raw) => instant("to", raw)?,
        None => app.engine.now().as_millis(),
    };
    let from = match &q.from {
        Some(raw) => instant("from", raw)?,
        None => to.saturating_sub(DEFAULT_FLEET_RANGE_MS),
    };
    if from >= to {
        return Err(invalid("from", "must be before to"));
    }
    if to - from > MAX_FLEET_RANGE_MS {
        return Err(invalid("to", "the range may span at most 31 days"));
    }
    let mut samples = app
        .store
        .quality_samples_between(
            Timestamp::from_millis(from),
            Timestamp::from_millis(to),
            MAX_FLEET_SAMPLES + 1,
        )
        .await?;
    let truncated = samples.len() > MAX_FLEET_SAMPLES as usize;
    samples.truncate(MAX_FLEET_SAMPLES as usize);
    Ok(Json(fleet(&samples, from, to, truncated)))
}
