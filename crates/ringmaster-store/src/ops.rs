//! Read-only counts operators watch (`/metrics`), kept apart from the call path.

use crate::error::StoreError;
use async_trait::async_trait;
use ringmaster_core::Timestamp;

/// Session states counted as calls in progress, in the order metrics list them.
pub const LIVE_STATES: [&str; 4] = ["ringing", "answered", "bridged", "voicemail"];

/// Pending outbox effects of one lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// The lane, see [`outbox_lane`].
    pub lane: String,
    /// Pending effects.
    pub depth: u64,
    /// When the oldest pending effect was committed.
    pub oldest: Option<Timestamp>,
}

/// A snapshot of the counts behind the operational metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpsStats {
    /// Sessions per live state ([`LIVE_STATES`]); states without sessions are left out.
    pub live_sessions: Vec<(String, u64)>,
    /// Pending outbox effects per lane.
    pub outbox: Vec<OutboxBacklog>,
}

/// The lane an outbox effect is counted in: today its effect kind (`telnyx`, `notify`, ...),
/// the `type` tag of the serialised effect. The one place to change when the outbox grows
/// real lanes; the SQL backends group by the same tag.
pub fn outbox_lane(effect: &serde_json::Value) -> String {
    effect
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown")
        .to_owned()
}

/// Counts for operators; every backend implements it.
#[async_trait]
pub trait OpsStore: Send + Sync + 'static {
    /// Live sessions per state and the outbox backlog per lane.
    async fn ops_stats(&self) -> Result<OpsStats, StoreError>;
}
