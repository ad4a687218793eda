//! [`WebhookStore`] for the in-memory store.

use super::MemoryStore;
use crate::error::StoreError;
use crate::host_event::HOST_EVENT_LANE;
use crate::ops::outbox_lane;
use crate::webhook_store::{
    logged_body, AttemptRecord, AttemptResult, LoggedEvent, WebhookEndpoint, WebhookStore,
    KEPT_ATTEMPTS,
};
use async_trait::async_trait;
use ringmaster_core::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// The webhook tables.
#[derive(Debug, Default)]
pub(super) struct WebhookState {
    events: Vec<LoggedEvent>,
    event_ids: BTreeSet<String>,
    endpoints: BTreeMap<String, WebhookEndpoint>,
    attempts: BTreeMap<String, Vec<AttemptRecord>>,
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn publish_host_events(&self, limit: u32) -> Result<u32, StoreError> {
        let mut state = self.lock();
        let ids: Vec<u64> = state
            .pending
            .iter()
            .copied()
            .filter(|id| {
                state
                    .outbox
                    .get(id)
                    .is_some_and(|row| outbox_lane(&row.entry.effect) == HOST_EVENT_LANE)
            })
            .take(limit as usize)
            .collect();
        // Validate everything first, so a bad entry changes nothing.
        let logged = ids
            .iter()
            .map(|id| {
                let row = &state.outbox[id];
                logged_body(&row.entry.effect.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (id, mut event) in ids.iter().zip(logged) {
            state.pending.remove(id);
            if let Some(row) = state.outbox.get_mut(id) {
                row.pending = false;
            }
            if state.webhooks.event_ids.insert(event.event_id.clone()) {
                event.seq = state.webhooks.events.len() as u64 + 1;
                state.webhooks.events.push(event);
            }
        }
        Ok(ids.len() as u32)
    }

    async fn log_host_event(&self, event: &crate::host_event::HostEvent) -> Result<(), StoreError> {
        let effect =
            serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut logged = logged_body(&effect)?;
        let mut state = self.lock();
        if state.webhooks.event_ids.insert(logged.event_id.clone()) {
            logged.seq = state.webhooks.events.len() as u64 + 1;
            state.webhooks.events.push(logged);
        }
        Ok(())
    }

    async fn create_webhook_endpoint(
        &self,
        mut endpoint: WebhookEndpoint,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut state = self.lock();
        if state.webhooks.endpoints.contains_key(&endpoint.id) {
            return Err(StoreError::AlreadyExists {
                kind: "webhook endpoint",
                id: endpoint.id,
            });
        }
        endpoint.cursor = state.webhooks.events.len() as u64;
        state
            .webhooks
            .endpoints
            .insert(endpoint.id.clone(), endpoint.clone());
        Ok(endpoint)
    }

    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let mut all: Vec<WebhookEndpoint> =
            self.lock().webhooks.endpoints.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let mut state = self.lock();
        state.webhooks.attempts.remove(id);
        Ok(state.webhooks.endpoints.remove(id).is_some())
    }

    async fn events_after(&self, cursor: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError> {
        let state = self.lock();
        Ok(state
            .webhooks
            .events
            .iter()
            .skip(cursor as usize)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn skip_webhook_events(&self, id: &str, seq: u64) -> Result<(), StoreError> {
        if let Some(e) = self.lock().webhooks.endpoints.get_mut(id) {
            e.cursor = e.cursor.max(seq);
        }
        Ok(())
    }

    async fn record_webhook_attempt(&self, id: &str, a: AttemptResult) -> Result<(), StoreError> {
        let mut state = self.lock();
        let Some(e) = state.webhooks.endpoints.get_mut(id) else {
            return Ok(());
        };
        if a.error.is_none() {
            e.cursor = e.cursor.max(a.seq);
            e.attempts = 0;
            e.next_attempt_at = Timestamp::from_millis(0);
            e.failing_since = None;
        } else {
            e.attempts += 1;
            e.next_attempt_at = a.next_attempt_at;
            e.failing_since.get_or_insert(a.at);
            if let Some(reason) = &a.disable {
                e.disabled_at = Some(a.at);
                e.disabled_reason = Some(reason.clone());
            }
        }
        let log = state.webhooks.attempts.entry(id.to_owned()).or_default();
        log.push(AttemptRecord {
            event_id: a.event_id,
            at: a.at,
            status_code: a.status_code,
            error: a.error,
        });
        let excess = log.len().saturating_sub(KEPT_ATTEMPTS as usize);
        log.drain(..excess);
        Ok(())
    }

    async fn webhook_attempts(
        &self,
        id: &str,
        limit: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let state = self.lock();
        Ok(state
            .webhooks
            .attempts
            .get(id)
            .map(|log| log.iter().rev().take(limit as usize).cloned().collect())
            .unwrap_or_default())
    }
}
