//! [`WebhookStore`] for SQLite.

use super::group::Pending;
use super::SqliteStore;
use crate::codec::{host_event_insert_sql, int, ms, unsigned};
use crate::error::StoreError;
use crate::webhook_store::{
    attempt_from, endpoint_from, event_from, AttemptRecord, AttemptResult, LoggedEvent,
    WebhookEndpoint, WebhookStore, ENDPOINT_COLUMNS, KEPT_ATTEMPTS,
};
use async_trait::async_trait;

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn publish_host_events(&self, limit: u32) -> Result<u32, StoreError> {
        // In the group writer's next batch: no transaction (and fsync) of its own, and no
        // hold on the writer connection while commits wait.
        self.through_group(|reply| Pending::PublishHost(limit, reply))
            .await
    }

    async fn log_host_event(&self, event: &crate::host_event::HostEvent) -> Result<(), StoreError> {
        let effect =
            serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let logged = crate::webhook_store::logged_body(&effect)?;
        let sql = host_event_insert_sql('?');
        self.execute_write(
            sqlx::query(&sql)
                .bind(&logged.event_id)
                .bind(&logged.event_type)
                .bind(&logged.body)
                .bind(ms(event.at)?),
        )
        .await?;
        Ok(())
    }

    async fn create_webhook_endpoint(
        &self,
        mut endpoint: WebhookEndpoint,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut tx = self.begin_write().await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM host_events")
            .fetch_one(&mut *tx)
            .await?;
        endpoint.cursor = unsigned(last.unwrap_or(0))?;
        let events = serde_json::to_string(&endpoint.events)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, events, secret, created_at, cursor) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&endpoint.id)
        .bind(&endpoint.url)
        .bind(events)
        .bind(&endpoint.secret)
        .bind(ms(endpoint.created_at)?)
        .bind(int(endpoint.cursor)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    async fn webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id"
        ))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(endpoint_from)
        .collect()
    }

    async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let gone = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM webhook_attempts WHERE endpoint_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone > 0)
    }

    async fn events_after(&self, cursor: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError> {
        sqlx::query(
            "SELECT seq, event_id, event_type, body FROM host_events WHERE seq > ? \
             ORDER BY seq LIMIT ?",
        )
        .bind(int(cursor)?)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(event_from)
        .collect()
    }

    async fn skip_webhook_events(&self, id: &str, seq: u64) -> Result<(), StoreError> {
        self.execute_write(
            sqlx::query("UPDATE webhook_endpoints SET cursor = MAX(cursor, ?) WHERE id = ?")
                .bind(int(seq)?)
                .bind(id),
        )
        .await?;
        Ok(())
    }

    async fn record_webhook_attempt(&self, id: &str, a: AttemptResult) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if a.error.is_none() {
            sqlx::query(
                "UPDATE webhook_endpoints SET cursor = MAX(cursor, ?), attempts = 0, \
                 next_attempt_at = 0, failing_since = NULL WHERE id = ?",
            )
            .bind(int(a.seq)?)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE webhook_endpoints SET attempts = attempts + 1, next_attempt_at = ?, \
                 failing_since = COALESCE(failing_since, ?), \
                 disabled_at = CASE WHEN ? IS NULL THEN disabled_at ELSE ? END, \
                 disabled_reason = COALESCE(?, disabled_reason) WHERE id = ?",
            )
            .bind(ms(a.next_attempt_at)?)
            .bind(ms(a.at)?)
            .bind(a.disable.as_deref())
            .bind(ms(a.at)?)
            .bind(a.disable.as_deref())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO webhook_attempts (endpoint_id, event_id, at, status_code, error) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&a.event_id)
        .bind(ms(a.at)?)
        .bind(a.status_code.map(i64::from))
        .bind(a.error.as_deref())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE endpoint_id = ? AND id <= \
             (SELECT id FROM webhook_attempts WHERE endpoint_id = ? ORDER BY id DESC \
              LIMIT 1 OFFSET ?)",
        )
        .bind(id)
        .bind(id)
        .bind(i64::from(KEPT_ATTEMPTS))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn webhook_attempts(
        &self,
        id: &str,
        limit: u32,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        sqlx::query(
            "SELECT event_id, at, status_code, error FROM webhook_attempts \
             WHERE endpoint_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(attempt_from)
        .collect()
    }
}
