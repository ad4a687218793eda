//! [`OpsStore`] for the in-memory store.

use super::MemoryStore;
use crate::error::StoreError;
use crate::ops::{OpsStats, OpsStore, OutboxBacklog, LIVE_STATES};
use async_trait::async_trait;
use std::collections::BTreeMap;

#[async_trait]
impl OpsStore for MemoryStore {
    async fn ops_stats(&self) -> Result<OpsStats, StoreError> {
        let state = self.lock();
        let mut live: BTreeMap<String, u64> = BTreeMap::new();
        for row in state.sessions.values() {
            let label = &row.session.state_label;
            if LIVE_STATES.contains(&label.as_str()) {
                *live.entry(label.clone()).or_default() += 1;
            }
        }
        let mut lanes: BTreeMap<String, OutboxBacklog> = BTreeMap::new();
        for id in &state.pending {
            let Some(row) = state.outbox.get(id) else {
                continue;
            };
            let lane = row.entry.lane.as_str().to_owned();
            let backlog = lanes.entry(lane.clone()).or_insert(OutboxBacklog {
                lane,
                depth: 0,
                oldest: None,
            });
            backlog.depth += 1;
            let at = row.entry.created_at;
            backlog.oldest = Some(backlog.oldest.map_or(at, |o| o.min(at)));
        }
        Ok(OpsStats {
            live_sessions: live.into_iter().collect(),
            outbox: lanes.into_values().collect(),
        })
    }
}
