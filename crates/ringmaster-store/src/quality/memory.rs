//! [`QualityStore`] in process memory, with the same validation and ordering as SQL.

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, DeviceId, Timestamp};
use std::collections::BTreeMap;

use super::{
    read_limit, validate, AnalyticsEvent, CallQualityData, QualityIngest, QualityItem,
    QualitySample, QualityStore,
};
use crate::error::StoreError;
use crate::memory::MemoryStore;

/// The quality tables of a [`MemoryStore`].
#[derive(Debug, Default)]
pub(crate) struct QualityState {
    /// Claimed (device, seq) → received_at.
    seqs: BTreeMap<(DeviceId, u64), Timestamp>,
    samples: Vec<QualitySample>,
    events: Vec<AnalyticsEvent>,
}

#[async_trait]
impl QualityStore for MemoryStore {
    async fn record_quality(&self, items: Vec<QualityItem>) -> Result<QualityIngest, StoreError> {
        validate(&items)?;
        let mut state = self.quality();
        let mut outcome = QualityIngest::default();
        for item in items {
            let Some((device, seq, _, received)) = item.claim() else {
                continue;
            };
            let key = (device.clone(), seq);
            if state.seqs.contains_key(&key) {
                outcome.duplicates += 1;
                continue;
            }
            state.seqs.insert(key, received);
            outcome.accepted += 1;
            match item {
                QualityItem::Samples(samples) => state.samples.extend(samples),
                QualityItem::Event(event) => state.events.push(event),
            }
        }
        Ok(outcome)
    }

    async fn call_quality(
        &self,
        call_session_id: &CallSessionId,
    ) -> Result<CallQualityData, StoreError> {
        let state = self.quality();
        let mut samples: Vec<QualitySample> = state
            .samples
            .iter()
            .filter(|s| &s.call_session_id == call_session_id)
            .cloned()
            .collect();
        samples.sort_by(|a, b| {
            (&a.device_id, &a.leg, a.direction, a.at, a.seq, a.part).cmp(&(
                &b.device_id,
                &b.leg,
                b.direction,
                b.at,
                b.seq,
                b.part,
            ))
        });
        let mut events: Vec<AnalyticsEvent> = state
            .events
            .iter()
            .filter(|e| &e.call_session_id == call_session_id)
            .cloned()
            .collect();
        events.sort_by(|a, b| (a.at, &a.device_id, a.seq).cmp(&(b.at, &b.device_id, b.seq)));
        Ok(CallQualityData { samples, events })
    }

    async fn quality_samples_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<QualitySample>, StoreError> {
        let state = self.quality();
        let mut samples: Vec<QualitySample> = state
            .samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .cloned()
            .collect();
        samples.sort_by(|a, b| {
            (a.at, &a.device_id, a.seq, a.part).cmp(&(b.at, &b.device_id, b.seq, b.part))
        });
        samples.truncate(usize::try_from(read_limit(limit)).unwrap_or(usize::MAX));
        Ok(samples)
    }

    async fn prune_quality(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut state = self.quality();
        let (samples, events) = (state.samples.len(), state.events.len());
        state.samples.retain(|s| s.at >= before);
        state.events.retain(|e| e.at >= before);
        state.seqs.retain(|_, received| *received >= before);
        Ok((samples - state.samples.len() + events - state.events.len()) as u64)
    }
}
