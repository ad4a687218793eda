//! [`QualityStore`] on PostgreSQL: the shared SQL with numbered placeholders.

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, Timestamp};

use sqlx::Postgres;

use super::{
    call_events_sql, call_samples_sql, event_from, numbered, read_limit, sample_from,
    samples_between_sql, validate, write_items, CallQualityData, QualityIngest, QualityItem,
    QualitySample, QualityStore, WriteSql, PRUNE_EVENTS_SQL, PRUNE_SAMPLES_SQL, PRUNE_SEQS_SQL,
};
use crate::codec::ms;
use crate::error::StoreError;
use crate::postgres::{storable, PostgresStore};

fn storable_item(item: &QualityItem) -> bool {
    let texts: Vec<Option<&str>> = match item {
        QualityItem::Samples(samples) => samples
            .iter()
            .flat_map(|s| {
                [
                    s.leg.as_deref(),
                    s.app_version.as_deref(),
                    s.network_type.as_deref(),
                ]
            })
            .collect(),
        QualityItem::Event(e) => vec![Some(e.kind.as_str()), e.app_version.as_deref()],
    };
    texts.into_iter().flatten().all(storable)
}

#[async_trait]
impl QualityStore for PostgresStore {
    async fn record_quality(&self, items: Vec<QualityItem>) -> Result<QualityIngest, StoreError> {
        let details = validate(&items)?;
        if !items.iter().all(storable_item) {
            return Err(StoreError::invalid(
                "quality item",
                "contains a NUL character",
            ));
        }
        let sql = WriteSql::new(numbered);
        let mut tx = self.pool.begin().await?;
        let outcome = write_items::<Postgres>(
            &mut *tx,
            sqlx::postgres::PgQueryResult::rows_affected,
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
        if !storable(call_session_id.as_str()) {
            return Ok(CallQualityData::default());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let samples = sqlx::query(&numbered(&call_samples_sql()))
            .bind(call_session_id.as_str())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(sample_from)
            .collect::<Result<Vec<_>, _>>()?;
        let events = sqlx::query(&numbered(&call_events_sql()))
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
        sqlx::query(&numbered(&samples_between_sql()))
            .bind(ms(from).unwrap_or(i64::MAX))
            .bind(ms(to).unwrap_or(i64::MAX))
            .bind(read_limit(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(sample_from)
            .collect()
    }

    async fn prune_quality(&self, before: Timestamp) -> Result<u64, StoreError> {
        let before = ms(before).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        let mut pruned = 0;
        for sql in [PRUNE_SAMPLES_SQL, PRUNE_EVENTS_SQL] {
            pruned += sqlx::query(&numbered(sql))
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        sqlx::query(&numbered(PRUNE_SEQS_SQL))
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(pruned)
    }
}
