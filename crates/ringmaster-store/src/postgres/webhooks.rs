//! [`WebhookStore`] for PostgreSQL.

use super::PostgresStore;
use crate::codec::{host_event_insert_sql, int, ms, pending_host_events_sql, unsigned};
use crate::error::StoreError;
use crate::session::Lane;
use crate::webhook_store::{
    attempt_from, endpoint_from, event_from, AttemptRecord, AttemptResult, LoggedEvent,
    WebhookEndpoint, WebhookStore, ENDPOINT_COLUMNS, KEPT_ATTEMPTS,
};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn publish_host_events(&self, limit: u32) -> Result<u32, StoreError> {
        let mut tx = self.pool.begin().await?;
        // By lane, through the pending-rows index, not by the effect's JSON type (a scan of
        // every pending row).
        let rows = sqlx::query(&pending_host_events_sql('$'))
            .bind(Lane::Host.as_str())
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let insert = host_event_insert_sql('$');
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let effect: String = row.try_get("effect")?;
            let event = crate::webhook_store::logged_body(&effect)?;
            sqlx::query(&insert)
                .bind(&event.event_id)
                .bind(&event.event_type)
                .bind(&event.body)
                .bind(row.try_get::<i64, _>("created_at")?)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE outbox SET status = 'done' WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u32)
    }

    async fn log_host_event(&self, event: &crate::host_event::HostEvent) -> Result<(), StoreError> {
        let effect =
            serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let logged = crate::webhook_store::logged_body(&effect)?;
        sqlx::query(&host_event_insert_sql('$'))
            .bind(&logged.event_id)
            .bind(&logged.event_type)
            .bind(&logged.body)
            .bind(ms(event.at)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_webhook_endpoint(
        &self,
        mut endpoint: WebhookEndpoint,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut tx = self.pool.begin().await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM host_events")
            .fetch_one(&mut *tx)
            .await?;
        endpoint.cursor = unsigned(last.unwrap_or(0))?;
        let events = serde_json::to_string(&endpoint.events)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, events, secret, created_at, cursor) \
             VALUES ($1, $2, $3, $4, $5, $6)",
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
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(endpoint_from)
        .collect()
    }

    async fn delete_webhook_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM webhook_attempts WHERE endpoint_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone > 0)
    }

    async fn events_after(&self, cursor: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError> {
        sqlx::query(
            "SELECT seq, event_id, event_type, body FROM host_events WHERE seq > $1 \
             ORDER BY seq LIMIT $2",
        )
        .bind(int(cursor)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(event_from)
        .collect()
    }

    async fn skip_webhook_events(&self, id: &str, seq: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE webhook_endpoints SET cursor = GREATEST(cursor, $1) WHERE id = $2")
            .bind(int(seq)?)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_webhook_attempt(&self, id: &str, a: AttemptResult) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if a.error.is_none() {
            sqlx::query(
                "UPDATE webhook_endpoints SET cursor = GREATEST(cursor, $1), attempts = 0, \
                 next_attempt_at = 0, failing_since = NULL WHERE id = $2",
            )
            .bind(int(a.seq)?)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "UPDATE webhook_endpoints SET attempts = attempts + 1, next_attempt_at = $1, \
                 failing_since = COALESCE(failing_since, $2), \
                 disabled_at = CASE WHEN $3::text IS NULL THEN disabled_at ELSE $4 END, \
                 disabled_reason = COALESCE($5, disabled_reason) WHERE id = $6",
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
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(&a.event_id)
        .bind(ms(a.at)?)
        .bind(a.status_code.map(i64::from))
        .bind(a.error.as_deref())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE endpoint_id = $1 AND id <= \
             (SELECT id FROM webhook_attempts WHERE endpoint_id = $2 ORDER BY id DESC \
              LIMIT 1 OFFSET $3)",
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
             WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(attempt_from)
        .collect()
    }
}
