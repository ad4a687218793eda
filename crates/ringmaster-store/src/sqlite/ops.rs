//! [`OpsStore`] for SQLite.

use super::SqliteStore;
use crate::codec::{opt_ts, unsigned};
use crate::error::StoreError;
use crate::ops::{OpsStats, OpsStore, OutboxBacklog, LIVE_STATES};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl OpsStore for SqliteStore {
    async fn ops_stats(&self) -> Result<OpsStats, StoreError> {
        let live = sqlx::query(
            "SELECT state_label, COUNT(*) AS n FROM sessions \
             WHERE state_label IN (?, ?, ?, ?) GROUP BY state_label ORDER BY state_label",
        )
        .bind(LIVE_STATES[0])
        .bind(LIVE_STATES[1])
        .bind(LIVE_STATES[2])
        .bind(LIVE_STATES[3])
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("state_label")?, unsigned(r.try_get("n")?)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
        // By the dispatch lane each row was committed with.
        let outbox = sqlx::query(
            "SELECT lane, \
             COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox \
             WHERE status = 'pending' GROUP BY lane ORDER BY lane",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|r| {
            Ok(OutboxBacklog {
                lane: r.try_get("lane")?,
                depth: unsigned(r.try_get("n")?)?,
                oldest: opt_ts(r.try_get("oldest")?)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(OpsStats {
            live_sessions: live,
            outbox,
        })
    }
}
