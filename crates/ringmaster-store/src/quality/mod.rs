//! Call quality analytics: media samples and lifecycle events devices send, keyed by
//! `call_session_id` and deduplicated by (device, seq).
//!
//! A device numbers what it sends with one sequence of its own. One sequence number is one
//! item: a media sample, a lifecycle event, or a Telnyx SDK report that yields several
//! samples (its `part`s). An item whose (device, seq) was already stored is a duplicate and
//! changes nothing; a batch is stored all-or-nothing.

pub(crate) mod cases;
mod memory;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use ringmaster_core::quality::{check_range, Codec, MediaDirection, MAX_BURST_RATIO};
use ringmaster_core::{CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Database, Encode, Executor, IntoArguments, Type};
use std::fmt;
use std::str::FromStr;

use crate::codec::{int, json, ms, parsed, ts, unsigned, RowExt, Statement};
use crate::directory::{string_enum, DevicePlatform};
use crate::error::StoreError;
use crate::limits;

pub(crate) use memory::QualityState;

/// Most items (samples, events, reports) one batch may hold.
pub const MAX_QUALITY_ITEMS: usize = 1000;
/// Most samples one item may expand to (a Telnyx call report's intervals).
pub const MAX_SAMPLE_PARTS: usize = 1000;
/// Most samples or events one read returns.
pub const MAX_QUALITY_READ: u32 = 100_000;

/// Where a sample's figures came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleSource {
    /// Ringmaster's own sample shape.
    App,
    /// A Telnyx WebRTC SDK `CallQualityMetrics` (the `onCallQualityChange` callback).
    TelnyxMetrics,
    /// One interval of a Telnyx WebRTC SDK call report (`CallReportPayload.stats`).
    TelnyxReport,
}

string_enum!(SampleSource, "source", {
    App => "app",
    TelnyxMetrics => "telnyx_metrics",
    TelnyxReport => "telnyx_report",
});

/// One measurement of one media stream on one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualitySample {
    /// The measuring device.
    pub device_id: DeviceId,
    /// The device's sequence number of the item this sample belongs to.
    pub seq: u64,
    /// Position within the item (0 for a single sample).
    pub part: u32,
    /// The call.
    pub call_session_id: CallSessionId,
    /// The call's user.
    pub user_id: UserId,
    /// The user's tenant.
    pub tenant_id: TenantId,
    /// When it was measured (device clock).
    pub at: Timestamp,
    /// When the server received it.
    pub received_at: Timestamp,
    /// The leg it was measured on (e.g. a `call_control_id`), when the device knows it.
    pub leg: Option<String>,
    /// Which way the audio flows.
    pub direction: MediaDirection,
    /// The codec in use.
    pub codec: Codec,
    /// Where the figures came from.
    pub source: SampleSource,
    /// Round-trip time, ms.
    pub rtt_ms: f64,
    /// Jitter, ms.
    pub jitter_ms: f64,
    /// Loss, percent; `None` when the report did not say.
    pub loss_pct: Option<f64>,
    /// `BurstR` used for the estimate.
    pub burst_ratio: f64,
    /// Packets the jitter buffer discarded, when reported.
    pub jitter_buffer_discards: Option<u64>,
    /// Bytes received (inbound) or sent (outbound), when reported.
    pub bytes: Option<u64>,
    /// The MOS the device computed, when it sent one.
    pub reported_mos: Option<f64>,
    /// The MOS used for analytics: the reported one, else the E-model's.
    pub mos: f64,
    /// The device's platform.
    pub platform: DevicePlatform,
    /// The app's version, when sent.
    pub app_version: Option<String>,
    /// Network type (`wifi`, `cellular`, ...), when sent.
    pub network_type: Option<String>,
}

/// A lifecycle analytics event (push received, answer delay, SDK connect, errors...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalyticsEvent {
    /// The reporting device.
    pub device_id: DeviceId,
    /// The device's sequence number.
    pub seq: u64,
    /// The call.
    pub call_session_id: CallSessionId,
    /// The call's user.
    pub user_id: UserId,
    /// The user's tenant.
    pub tenant_id: TenantId,
    /// When it happened (device clock).
    pub at: Timestamp,
    /// When the server received it.
    pub received_at: Timestamp,
    /// What happened (`push_received`, `answer_delay`, ...).
    pub kind: String,
    /// The delay it measures, when it measures one.
    pub duration_ms: Option<u64>,
    /// Anything else the device sent (reason, component, message...).
    pub detail: Value,
    /// The device's platform.
    pub platform: DevicePlatform,
    /// The app's version, when sent.
    pub app_version: Option<String>,
}

/// What one sequence number of a device carries.
#[derive(Clone, Debug, PartialEq)]
pub enum QualityItem {
    /// One or more samples (`part` 0, 1, ...), all with the item's seq.
    Samples(Vec<QualitySample>),
    /// One event.
    Event(AnalyticsEvent),
}

/// What claiming an item's sequence number records: device, seq, call, received_at.
pub(crate) type Claim<'a> = (&'a DeviceId, u64, &'a CallSessionId, Timestamp);

impl QualityItem {
    /// The item's claim; `None` for an item without samples (refused by validation).
    pub(crate) fn claim(&self) -> Option<Claim<'_>> {
        match self {
            QualityItem::Samples(samples) => samples
                .first()
                .map(|s| (&s.device_id, s.seq, &s.call_session_id, s.received_at)),
            QualityItem::Event(e) => Some((&e.device_id, e.seq, &e.call_session_id, e.received_at)),
        }
    }
}

/// How a batch went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityIngest {
    /// Items stored.
    pub accepted: u32,
    /// Items whose (device, seq) was already stored.
    pub duplicates: u32,
}

/// Everything stored for one call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallQualityData {
    /// Samples by device, leg, direction, time.
    pub samples: Vec<QualitySample>,
    /// Events by time.
    pub events: Vec<AnalyticsEvent>,
}

/// Storage of call quality analytics. Every [`Store`](crate::Store) implements it.
#[async_trait]
pub trait QualityStore: Send + Sync {
    /// Stores a batch all-or-nothing. An item whose (device, seq) is already stored (or
    /// appeared earlier in the batch) counts as a duplicate and is skipped.
    async fn record_quality(&self, items: Vec<QualityItem>) -> Result<QualityIngest, StoreError>;

    /// Everything stored for a call (the caller checks who may see it).
    async fn call_quality(
        &self,
        call_session_id: &CallSessionId,
    ) -> Result<CallQualityData, StoreError>;

    /// Up to `limit` samples measured in `[from, to)`, oldest first.
    async fn quality_samples_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<QualitySample>, StoreError>;

    /// Deletes samples and events measured before `before`, and the sequence numbers received
    /// before it; returns how many samples and events went.
    async fn prune_quality(&self, before: Timestamp) -> Result<u64, StoreError>;
}

fn opt_label(what: &'static str, raw: Option<&str>) -> Result<(), StoreError> {
    raw.map_or(Ok(()), |r| limits::label(what, r))
}

fn number(what: &'static str, value: f64, min: f64, max: f64) -> Result<(), StoreError> {
    check_range(what, value, min, max, "its range")
        .map_err(|e| StoreError::invalid(what, e.to_string()))
}

fn ids(
    device: &DeviceId,
    call: &CallSessionId,
    user: &UserId,
    tenant: &TenantId,
) -> Result<(), StoreError> {
    limits::id("device_id", device.as_str())?;
    limits::id("call_session_id", call.as_str())?;
    limits::id("user_id", user.as_str())?;
    limits::id("tenant_id", tenant.as_str())
}

fn when_and_version(
    seq: u64,
    at: Timestamp,
    received_at: Timestamp,
    app_version: Option<&str>,
) -> Result<(), StoreError> {
    int(seq)?;
    limits::timestamp("at", at)?;
    limits::timestamp("received_at", received_at)?;
    app_version.map_or(Ok(()), |v| {
        limits::text("app_version", v, limits::MAX_LABEL_LEN)
    })
}

/// Checks a batch the way every backend must, before anything is written; returns the encoded
/// event details in item order (`None` for sample items).
pub(crate) fn validate(items: &[QualityItem]) -> Result<Vec<Option<String>>, StoreError> {
    if items.len() > MAX_QUALITY_ITEMS {
        return Err(StoreError::invalid(
            "quality batch",
            format!("more than {MAX_QUALITY_ITEMS} items"),
        ));
    }
    let mut details = Vec::with_capacity(items.len());
    for item in items {
        match item {
            QualityItem::Samples(samples) => {
                details.push(None);
                if samples.is_empty() || samples.len() > MAX_SAMPLE_PARTS {
                    return Err(StoreError::invalid(
                        "quality item",
                        format!("must hold 1 to {MAX_SAMPLE_PARTS} samples"),
                    ));
                }
                let first = &samples[0];
                for (i, s) in samples.iter().enumerate() {
                    if s.device_id != first.device_id || s.seq != first.seq || s.part as usize != i
                    {
                        return Err(StoreError::invalid(
                            "quality item",
                            "samples of one item share device and seq and number their parts 0, 1, ...",
                        ));
                    }
                    ids(&s.device_id, &s.call_session_id, &s.user_id, &s.tenant_id)?;
                    when_and_version(s.seq, s.at, s.received_at, s.app_version.as_deref())?;
                    opt_label("leg", s.leg.as_deref())?;
                    opt_label("network_type", s.network_type.as_deref())?;
                    number(
                        "rtt_ms",
                        s.rtt_ms,
                        0.0,
                        ringmaster_core::quality::MAX_DELAY_MS,
                    )?;
                    number(
                        "jitter_ms",
                        s.jitter_ms,
                        0.0,
                        ringmaster_core::quality::MAX_DELAY_MS,
                    )?;
                    if let Some(loss) = s.loss_pct {
                        number("loss_pct", loss, 0.0, 100.0)?;
                    }
                    number("burst_ratio", s.burst_ratio, 1.0, MAX_BURST_RATIO)?;
                    if let Some(mos) = s.reported_mos {
                        number("mos", mos, 1.0, 5.0)?;
                    }
                    number("mos", s.mos, 1.0, 5.0)?;
                    if let Some(n) = s.jitter_buffer_discards {
                        int(n)?;
                    }
                    if let Some(n) = s.bytes {
                        int(n)?;
                    }
                }
            }
            QualityItem::Event(e) => {
                ids(&e.device_id, &e.call_session_id, &e.user_id, &e.tenant_id)?;
                when_and_version(e.seq, e.at, e.received_at, e.app_version.as_deref())?;
                limits::label("kind", &e.kind)?;
                if let Some(n) = e.duration_ms {
                    int(n)?;
                }
                details.push(Some(limits::json(
                    "event detail",
                    &e.detail,
                    limits::MAX_JSON_BYTES,
                )?));
            }
        }
    }
    Ok(details)
}

/// `?` placeholders numbered `$1, $2, ...` for PostgreSQL.
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Claims (device, seq); a conflict means the item is a duplicate.
pub(crate) const CLAIM_SQL: &str = "INSERT INTO call_quality_seqs (device_id, seq, \
     call_session_id, received_at) VALUES (?, ?, ?, ?) ON CONFLICT (device_id, seq) DO NOTHING";

pub(crate) const SAMPLE_COLUMNS: &str = "device_id, seq, part, call_session_id, user_id, \
     tenant_id, at, received_at, leg, direction, codec, source, rtt_ms, jitter_ms, loss_pct, \
     burst_ratio, jitter_buffer_discards, bytes, reported_mos, mos, platform, app_version, \
     network_type";

pub(crate) const EVENT_COLUMNS: &str = "device_id, seq, call_session_id, user_id, tenant_id, \
     at, received_at, kind, duration_ms, detail, platform, app_version";

pub(crate) fn insert_sample_sql() -> String {
    format!(
        "INSERT INTO call_quality_samples ({SAMPLE_COLUMNS}) VALUES \
         (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
}

pub(crate) fn insert_event_sql() -> String {
    format!(
        "INSERT INTO call_analytics_events ({EVENT_COLUMNS}) VALUES \
         (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
}

pub(crate) fn call_samples_sql() -> String {
    format!(
        "SELECT {SAMPLE_COLUMNS} FROM call_quality_samples WHERE call_session_id = ? \
         ORDER BY device_id, leg, direction, at, seq, part"
    )
}

pub(crate) fn call_events_sql() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM call_analytics_events WHERE call_session_id = ? \
         ORDER BY at, device_id, seq"
    )
}

pub(crate) fn samples_between_sql() -> String {
    format!(
        "SELECT {SAMPLE_COLUMNS} FROM call_quality_samples WHERE at >= ? AND at < ? \
         ORDER BY at, device_id, seq, part LIMIT ?"
    )
}

pub(crate) const PRUNE_SAMPLES_SQL: &str = "DELETE FROM call_quality_samples WHERE at < ?";
pub(crate) const PRUNE_EVENTS_SQL: &str = "DELETE FROM call_analytics_events WHERE at < ?";
pub(crate) const PRUNE_SEQS_SQL: &str = "DELETE FROM call_quality_seqs WHERE received_at < ?";

/// Binds a [`CLAIM_SQL`] for an item.
pub(crate) fn bind_claim<'q, DB>(
    query: Statement<'q, DB>,
    item: &'q QualityItem,
) -> Result<Statement<'q, DB>, StoreError>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    let (device, seq, call, received) = item
        .claim()
        .ok_or_else(|| StoreError::invalid("quality item", "holds no samples"))?;
    Ok(query
        .bind(device.as_str())
        .bind(int(seq)?)
        .bind(call.as_str())
        .bind(ms(received)?))
}

/// The statements [`write_items`] runs, in the backend's placeholder style.
pub(crate) struct WriteSql {
    pub(crate) claim: String,
    pub(crate) sample: String,
    pub(crate) event: String,
}

impl WriteSql {
    /// With `?` placeholders (SQLite), or numbered through `style` (PostgreSQL).
    pub(crate) fn new(style: fn(&str) -> String) -> Self {
        Self {
            claim: style(CLAIM_SQL),
            sample: style(&insert_sample_sql()),
            event: style(&insert_event_sql()),
        }
    }
}

/// Claims and writes a validated batch on `conn`, inside the caller's transaction.
/// `rows_affected` reads the backend's query result (sqlx has no trait for it).
pub(crate) async fn write_items<DB>(
    conn: &mut DB::Connection,
    rows_affected: fn(&DB::QueryResult) -> u64,
    sql: &WriteSql,
    items: &[QualityItem],
    details: &[Option<String>],
) -> Result<QualityIngest, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> f64: Encode<'q, DB> + Type<DB>,
    for<'q> Option<f64>: Encode<'q, DB> + Type<DB>,
{
    let mut outcome = QualityIngest::default();
    for (item, detail) in items.iter().zip(details) {
        let claimed = bind_claim(sqlx::query::<DB>(&sql.claim), item)?
            .execute(&mut *conn)
            .await?;
        if rows_affected(&claimed) == 0 {
            outcome.duplicates += 1;
            continue;
        }
        outcome.accepted += 1;
        match (item, detail) {
            (QualityItem::Samples(samples), _) => {
                for sample in samples {
                    bind_sample(sqlx::query::<DB>(&sql.sample), sample)?
                        .execute(&mut *conn)
                        .await?;
                }
            }
            (QualityItem::Event(event), Some(detail)) => {
                bind_event(sqlx::query::<DB>(&sql.event), event, detail)?
                    .execute(&mut *conn)
                    .await?;
            }
            (QualityItem::Event(_), None) => {
                return Err(StoreError::Corrupt("event without encoded detail".into()))
            }
        }
    }
    Ok(outcome)
}

fn opt_int(v: Option<u64>) -> Result<Option<i64>, StoreError> {
    v.map(int).transpose()
}

/// Binds an [`insert_sample_sql`] in [`SAMPLE_COLUMNS`] order.
pub(crate) fn bind_sample<'q, DB>(
    query: Statement<'q, DB>,
    s: &'q QualitySample,
) -> Result<Statement<'q, DB>, StoreError>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    f64: Encode<'q, DB> + Type<DB>,
    Option<f64>: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(s.device_id.as_str())
        .bind(int(s.seq)?)
        .bind(i64::from(s.part))
        .bind(s.call_session_id.as_str())
        .bind(s.user_id.as_str())
        .bind(s.tenant_id.as_str())
        .bind(ms(s.at)?)
        .bind(ms(s.received_at)?)
        .bind(s.leg.as_deref())
        .bind(s.direction.as_str())
        .bind(s.codec.as_str())
        .bind(s.source.as_str())
        .bind(s.rtt_ms)
        .bind(s.jitter_ms)
        .bind(s.loss_pct)
        .bind(s.burst_ratio)
        .bind(opt_int(s.jitter_buffer_discards)?)
        .bind(opt_int(s.bytes)?)
        .bind(s.reported_mos)
        .bind(s.mos)
        .bind(s.platform.as_str())
        .bind(s.app_version.as_deref())
        .bind(s.network_type.as_deref()))
}

/// Binds an [`insert_event_sql`] in [`EVENT_COLUMNS`] order; `detail` is the encoded JSON.
pub(crate) fn bind_event<'q, DB>(
    query: Statement<'q, DB>,
    e: &'q AnalyticsEvent,
    detail: &'q str,
) -> Result<Statement<'q, DB>, StoreError>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(e.device_id.as_str())
        .bind(int(e.seq)?)
        .bind(e.call_session_id.as_str())
        .bind(e.user_id.as_str())
        .bind(e.tenant_id.as_str())
        .bind(ms(e.at)?)
        .bind(ms(e.received_at)?)
        .bind(e.kind.as_str())
        .bind(opt_int(e.duration_ms)?)
        .bind(detail)
        .bind(e.platform.as_str())
        .bind(e.app_version.as_deref()))
}

fn corrupt<E: fmt::Display>(e: E) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn core_enum<T: FromStr>(raw: &str) -> Result<T, StoreError>
where
    T::Err: fmt::Display,
{
    raw.parse().map_err(corrupt)
}

fn opt_unsigned(v: Option<i64>) -> Result<Option<u64>, StoreError> {
    v.map(unsigned).transpose()
}

/// A sample from a row of [`SAMPLE_COLUMNS`].
pub(crate) fn sample_from(row: &impl RowExt) -> Result<QualitySample, StoreError> {
    Ok(QualitySample {
        device_id: DeviceId::new(row.text("device_id")?),
        seq: unsigned(row.integer("seq")?)?,
        part: u32::try_from(row.integer("part")?).map_err(corrupt)?,
        call_session_id: CallSessionId::new(row.text("call_session_id")?),
        user_id: UserId::new(row.text("user_id")?),
        tenant_id: TenantId::new(row.text("tenant_id")?),
        at: ts(row.integer("at")?)?,
        received_at: ts(row.integer("received_at")?)?,
        leg: row.opt_text("leg")?,
        direction: core_enum(&row.text("direction")?)?,
        codec: core_enum(&row.text("codec")?)?,
        source: parsed(&row.text("source")?)?,
        rtt_ms: row.real("rtt_ms")?,
        jitter_ms: row.real("jitter_ms")?,
        loss_pct: row.opt_real("loss_pct")?,
        burst_ratio: row.real("burst_ratio")?,
        jitter_buffer_discards: opt_unsigned(row.opt_integer("jitter_buffer_discards")?)?,
        bytes: opt_unsigned(row.opt_integer("bytes")?)?,
        reported_mos: row.opt_real("reported_mos")?,
        mos: row.real("mos")?,
        platform: parsed(&row.text("platform")?)?,
        app_version: row.opt_text("app_version")?,
        network_type: row.opt_text("network_type")?,
    })
}

/// An event from a row of [`EVENT_COLUMNS`].
pub(crate) fn event_from(row: &impl RowExt) -> Result<AnalyticsEvent, StoreError> {
    Ok(AnalyticsEvent {
        device_id: DeviceId::new(row.text("device_id")?),
        seq: unsigned(row.integer("seq")?)?,
        call_session_id: CallSessionId::new(row.text("call_session_id")?),
        user_id: UserId::new(row.text("user_id")?),
        tenant_id: TenantId::new(row.text("tenant_id")?),
        at: ts(row.integer("at")?)?,
        received_at: ts(row.integer("received_at")?)?,
        kind: row.text("kind")?,
        duration_ms: opt_unsigned(row.opt_integer("duration_ms")?)?,
        detail: json(&row.text("detail")?)?,
        platform: parsed(&row.text("platform")?)?,
        app_version: row.opt_text("app_version")?,
    })
}

/// The read limit actually used: at least 1, at most [`MAX_QUALITY_READ`].
pub(crate) fn read_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_QUALITY_READ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c < ? LIMIT ?"),
            "SELECT a FROM t WHERE b = $1 AND c < $2 LIMIT $3"
        );
        assert_eq!(
            insert_sample_sql().matches('?').count(),
            SAMPLE_COLUMNS.split(',').count()
        );
        assert_eq!(
            insert_event_sql().matches('?').count(),
            EVENT_COLUMNS.split(',').count()
        );
    }
}
