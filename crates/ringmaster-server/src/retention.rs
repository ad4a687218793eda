//! What the coordinator keeps, and for how long (docs/operations: "Retention").
//!
//! Hot state is pruned on a schedule by the timer loop: dispatched outbox rows, dedupe keys
//! (webhook ids, device report numbers) and the session documents of calls that are over.
//! Call history (records, legs, timeline) is kept forever unless an operator sets a history
//! retention (`--history-retention-days`); call quality analytics for 90 days unless
//! `--quality-retention-days` says otherwise.

use ringmaster_core::Timestamp;
use ringmaster_store::{Pruned, Retention, Store, StoreError};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long each kind of row is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Dispatched or abandoned outbox rows (kept a while for operators' post-mortems).
    pub finished_effects: Duration,
    /// Dedupe keys; Telnyx stops redelivering within minutes, so a week is ample.
    pub dedupe_keys: Duration,
    /// The session document of a call that is over (its history stays).
    pub closed_sessions: Duration,
    /// Call history; `None` keeps it forever.
    pub history: Option<Duration>,
    /// Call quality samples and lifecycle events, by measurement time (uploads older than
    /// this are refused).
    pub quality: Duration,
    /// How often pruning runs.
    pub every: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            finished_effects: DAY,
            dedupe_keys: 7 * DAY,
            closed_sessions: DAY,
            history: None,
            quality: DAY * crate::config::DEFAULT_QUALITY_RETENTION_DAYS,
            every: Duration::from_secs(3600),
        }
    }
}

impl RetentionPolicy {
    /// The default policy, keeping history for `days` (0: forever).
    pub fn with_history_days(days: u32) -> Self {
        Self {
            history: (days > 0).then(|| DAY * days),
            ..Self::default()
        }
    }

    /// This policy, keeping call quality analytics for `days`.
    pub fn with_quality_days(self, days: u32) -> Self {
        Self {
            quality: DAY * days,
            ..self
        }
    }

    /// The store cut-offs at `now`.
    pub fn cutoffs(&self, now: Timestamp) -> Retention {
        Retention {
            finished_effects_before: now - self.finished_effects,
            processed_before: now - self.dedupe_keys,
            closed_sessions_before: now - self.closed_sessions,
            history_before: self.history.map(|keep| now - keep),
        }
    }
}

/// Prunes `store` once under `policy` at `now`, logging what went.
pub async fn prune(
    store: &dyn Store,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<Pruned, StoreError> {
    let pruned = store.prune(policy.cutoffs(now)).await?;
    let quality = store.prune_quality(now - policy.quality).await?;
    if quality > 0 {
        tracing::info!(
            samples_and_events = quality,
            "retention pruned old call quality analytics"
        );
    }
    if pruned != Pruned::default() {
        tracing::info!(
            effects = pruned.effects,
            dedupe_keys = pruned.processed,
            sessions = pruned.sessions,
            calls = pruned.calls,
            "retention pruned old rows"
        );
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_follow_the_policy() {
        let now = Timestamp::from_millis(100 * DAY.as_millis() as u64);
        let day = |n: u64| Timestamp::from_millis(n * DAY.as_millis() as u64);
        let r = RetentionPolicy::default().cutoffs(now);
        assert_eq!(r.finished_effects_before, day(99));
        assert_eq!(r.processed_before, day(93));
        assert_eq!(r.closed_sessions_before, day(99));
        assert_eq!(r.history_before, None, "history is kept unless asked");
        let r = RetentionPolicy::with_history_days(30).cutoffs(now);
        assert_eq!(r.history_before, Some(day(70)));
        assert_eq!(RetentionPolicy::with_history_days(0).history, None);
    }

    /// A web sample of call-1 measured at `at`.
    fn sample(seq: u64, at: Timestamp) -> ringmaster_store::QualitySample {
        use ringmaster_core::quality::{Codec, MediaDirection};
        use ringmaster_core::{CallSessionId, DeviceId, TenantId, UserId};
        ringmaster_store::QualitySample {
            device_id: DeviceId::new("d1"),
            seq,
            part: 0,
            call_session_id: CallSessionId::new("call-1"),
            user_id: UserId::new("u1"),
            tenant_id: TenantId::new("t1"),
            at,
            received_at: at,
            leg: None,
            direction: MediaDirection::Inbound,
            codec: Codec::Pcmu,
            source: ringmaster_store::SampleSource::App,
            rtt_ms: 40.0,
            jitter_ms: 2.0,
            loss_pct: Some(0.0),
            burst_ratio: 1.0,
            jitter_buffer_discards: None,
            bytes: None,
            reported_mos: None,
            mos: 4.4,
            platform: ringmaster_store::DevicePlatform::Web,
            app_version: None,
            network_type: None,
        }
    }

    #[tokio::test]
    async fn pruning_drops_quality_analytics_the_policy_no_longer_keeps() {
        use ringmaster_store::{MemoryStore, QualityItem, QualityStore};
        let day = |n: u64| Timestamp::from_millis(n * DAY.as_millis() as u64);
        let store = MemoryStore::new();
        let items = [(1, 70), (2, 92), (3, 94), (4, 100)]
            .map(|(seq, d)| QualityItem::Samples(vec![sample(seq, day(d))]));
        store.record_quality(items.to_vec()).await.unwrap();
        let policy = RetentionPolicy::default().with_quality_days(7);
        prune(&store, &policy, day(100)).await.unwrap();
        let kept: Vec<u64> = store
            .call_quality(&ringmaster_core::CallSessionId::new("call-1"))
            .await
            .unwrap()
            .samples
            .iter()
            .map(|s| s.seq)
            .collect();
        assert_eq!(kept, [3, 4]);
        assert_eq!(RetentionPolicy::default().quality, DAY * 90);
    }
}
