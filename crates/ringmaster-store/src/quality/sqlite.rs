//! [`QualityStore`] on SQLite: writes on the store's one writer connection.

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, Timestamp};

use sqlx::Sqlite;

use super::{
    call_events_sql, call_samples_sql, event_from, read_limit, sample_from, samples_between_sql,
    validate, write_items, CallQualityData, QualityIngest, QualityItem, QualitySample,
    QualityStore, WriteSql, PRUNE_EVENTS_SQL, PRUNE_SAMPLES_SQL, PRUNE_SEQS_SQL,
};
use crate::codec::ms;
use crate::error::StoreError;
use crate::sqlite::SqliteStore;

#[async_trait]
impl QualityStore for SqliteStore {
    async fn record_quality(&self, items: Vec<QualityItem>) -> Result<QualityIngest, StoreError> {
        let details = validate(&items)?;
        let sql = WriteSql::new(str::to_owned);
        let mut tx = self.begin_write().await?;
        let outcome = write_items::<Sqlite>(
            &mut *tx,
            sqlx::sqlite::SqliteQueryResult::rows_affected,
            &sql,
            &items,
            &details,
        )
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn call_quality(
        &self,
        call_session_id: &CallSessionId,
    ) -> Result<CallQualityData, StoreError> {
        let mut tx = self.reader.begin().await?;
        let samples = sqlx::query(&call_samples_sql())
            .bind(call_session_id.as_str())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(sample_from)
            .collect::<Result<Vec<_>, _>>()?;
        let events = sqlx::query(&call_events_sql())
            .bind(call_session_id.as_str())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(event_from)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(CallQualityData { samples, events })
    }

    async fn quality_samples_between(
        &self,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<QualitySample>, StoreError> {
        sqlx::query(&samples_between_sql())
            .bind(ms(from).unwrap_or(i64::MAX))
            .bind(ms(to).unwrap_or(i64::MAX))
            .bind(read_limit(limit))
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(sample_from)
            .collect()
    }

    async fn prune_quality(&self, before: Timestamp) -> Result<u64, StoreError> {
        let before = ms(before).unwrap_or(i64::MAX);
        let mut tx = self.begin_write().await?;
        let mut pruned = 0;
        for sql in [PRUNE_SAMPLES_SQL, PRUNE_EVENTS_SQL] {
            pruned += sqlx::query(sql)
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        sqlx::query(PRUNE_SEQS_SQL)
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(pruned)
    }
}
