//! Outbound webhook endpoints and the event log they are delivered from.
//!
//! Each endpoint keeps a cursor into the append-only `host_events` log: events after it are
//! delivered one at a time, oldest first, so each endpoint sees events in commit order, and an
//! event is retried (same `webhook-id`) until it is delivered or the endpoint is disabled.

use crate::codec::{opt_ts, ts, unsigned, RowExt};
use crate::error::StoreError;
use async_trait::async_trait;
use ringmaster_core::Timestamp;
use serde::Serialize;

/// A registered endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookEndpoint {
    /// `whe_...`.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// Subscribed event types.
    pub events: Vec<String>,
    /// `whsec_` + base64 of the signing key.
    #[serde(skip)]
    pub secret: String,
    /// When it was registered.
    pub created_at: Timestamp,
    /// Position in the event log up to which everything was delivered (or not subscribed).
    pub cursor: u64,
    /// Failed attempts on the next event.
    pub attempts: u32,
    /// Not retried before this time.
    pub next_attempt_at: Timestamp,
    /// Start of the current run of failures.
    pub failing_since: Option<Timestamp>,
    /// When it was disabled for failing too long.
    pub disabled_at: Option<Timestamp>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
}

/// One entry of the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Position in the log (commit order).
    pub seq: u64,
    /// The `webhook-id`.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The exact body delivered.
    pub body: String,
}

/// The outcome of one delivery attempt, to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptResult {
    /// The event's log position.
    pub seq: u64,
    /// Its `webhook-id`.
    pub event_id: String,
    /// When it was tried.
    pub at: Timestamp,
    /// The endpoint's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// What went wrong; `None` when delivered.
    pub error: Option<String>,
    /// When to try again (failures only).
    pub next_attempt_at: Timestamp,
    /// Disable the endpoint, with this reason.
    pub disable: Option<String>,
}

/// One recorded attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// The event's `webhook-id`.
    pub event_id: String,
    /// When.
    pub at: Timestamp,
    /// The endpoint's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// What went wrong; `None` when delivered.
    pub error: Option<String>,
}

/// Attempts kept per endpoint.
pub const KEPT_ATTEMPTS: u32 = 50;

/// Storage of outbound webhooks; every backend implements it.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Moves up to `limit` pending host events from the outbox to the event log, in outbox
    /// order, marking them done in the same transaction; returns how many moved.
    async fn publish_host_events(&self, limit: u32) -> Result<u32, StoreError>;
    /// Appends an event that no session commit carries (a rejected push token) straight to
    /// the log; an event id already logged is left alone.
    async fn log_host_event(&self, event: &crate::host_event::HostEvent) -> Result<(), StoreError>;
    /// Registers an endpoint; it receives events logged from now on.
    async fn create_webhook_endpoint(
        &self,
        endpoint: WebhookEndpoint,
    ) -> Result<WebhookEndpoint, StoreError>;
    /// Every endpoint, oldest first.
    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// Removes an endpoint and its attempts; false when there was none.
    async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError>;
    /// Up to `limit` logged events after `cursor`, oldest first.
    async fn events_after(&self, cursor: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError>;
    /// Moves an endpoint's cursor forward to `seq` (events it does not subscribe to).
    async fn skip_webhook_events(&self, id: &str, seq: u64) -> Result<(), StoreError>;
    /// Records an attempt: a delivery moves the cursor to it and clears the failure run; a
    /// failure schedules the retry, and may disable the endpoint.
    async fn record_webhook_attempt(
        &self,
        id: &str,
        attempt: AttemptResult,
    ) -> Result<(), StoreError>;
    /// The endpoint's latest attempts, newest first.
    async fn webhook_attempts(
        &self,
        id: &str,
        limit: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError>;
}

/// A host event from the outbox as the log keeps it: its id, type, and the exact body every
/// delivery sends (`{"type","timestamp","data"}`).
pub(crate) fn logged_body(effect: &str) -> Result<LoggedEvent, StoreError> {
    let event: crate::host_event::HostEvent = serde_json::from_str(effect)
        .map_err(|e| StoreError::Corrupt(format!("host event in the outbox: {e}")))?;
    let timestamp = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(event.at.as_millis()) * 1_000_000,
    )
    .ok()
    .and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_default();
    let body = serde_json::to_string(&EventBody {
        event_type: &event.event_type,
        timestamp,
        data: &event.data,
    })
    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(LoggedEvent {
        seq: 0,
        event_id: event.event_id,
        event_type: event.event_type,
        body,
    })
}

/// The body of a delivery.
#[derive(Serialize)]
struct EventBody<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a crate::host_event::EventData,
}

/// Columns of `webhook_endpoints` that [`endpoint_from`] reads.
pub(crate) const ENDPOINT_COLUMNS: &str = "id, url, events, secret, created_at, cursor, \
     attempts, next_attempt_at, failing_since, disabled_at, disabled_reason";

/// An endpoint from a row of [`ENDPOINT_COLUMNS`].
pub(crate) fn endpoint_from(r: &impl RowExt) -> Result<WebhookEndpoint, StoreError> {
    Ok(WebhookEndpoint {
        id: r.text("id")?,
        url: r.text("url")?,
        events: serde_json::from_str(&r.text("events")?)
            .map_err(|e| StoreError::Corrupt(format!("endpoint events: {e}")))?,
        secret: r.text("secret")?,
        created_at: ts(r.integer("created_at")?)?,
        cursor: unsigned(r.integer("cursor")?)?,
        attempts: u32::try_from(r.integer("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: ts(r.integer("next_attempt_at")?)?,
        failing_since: opt_ts(r.opt_integer("failing_since")?)?,
        disabled_at: opt_ts(r.opt_integer("disabled_at")?)?,
        disabled_reason: r.opt_text("disabled_reason")?,
    })
}

/// A logged event from a row of `seq, event_id, event_type, body`.
pub(crate) fn event_from(r: &impl RowExt) -> Result<LoggedEvent, StoreError> {
    Ok(LoggedEvent {
        seq: unsigned(r.integer("seq")?)?,
        event_id: r.text("event_id")?,
        event_type: r.text("event_type")?,
        body: r.text("body")?,
    })
}

/// An attempt from a row of `event_id, at, status_code, error`.
pub(crate) fn attempt_from(r: &impl RowExt) -> Result<AttemptRecord, StoreError> {
    Ok(AttemptRecord {
        event_id: r.text("event_id")?,
        at: ts(r.integer("at")?)?,
        status_code: r
            .opt_integer("status_code")?
            .and_then(|c| u16::try_from(c).ok()),
        error: r.opt_text("error")?,
    })
}
