//! The dial budget every node on one PostgreSQL database shares (table `dial_budget`).

use async_trait::async_trait;
use ringmaster_core::Timestamp;
use sqlx::postgres::PgPool;
use sqlx::Row;

use crate::cluster::{DialLedger, SlotLimit, SlotOutcome};
use crate::codec::{int, ms, ts};
use crate::error::StoreError;
use crate::limits;

/// The sliding window of each account, one row each, decided by one `UPDATE` per slot so
/// concurrent nodes queue on the row lock instead of double-granting.
#[derive(Clone, Debug)]
pub struct PgDialLedger {
    pub(crate) pool: PgPool,
}

/// Reserves the next slot if it is at or before `$5`. The slot is the latest of now, the last
/// slot granted, and one window after the slot `max_dials` places back (the ring buffer's
/// head). Under READ COMMITTED a waiting racer re-reads the row it waited for, so it computes
/// its slot from the winner's.
const RESERVE_SQL: &str = "UPDATE dial_budget SET \
     grants[head + 1] = GREATEST($4, last_grant, grants[head + 1] + window_ms), \
     last_grant = GREATEST($4, last_grant, grants[head + 1] + window_ms), \
     head = (head + 1) % max_dials \
     WHERE account = $1 AND max_dials = $2 AND window_ms = $3 \
     AND GREATEST($4, last_grant, grants[head + 1] + window_ms) <= $5 \
     RETURNING last_grant";

const NEXT_SQL: &str = "SELECT max_dials, window_ms, \
     GREATEST($2, last_grant, grants[head + 1] + window_ms) AS next_slot \
     FROM dial_budget WHERE account = $1";

/// Creates the account's row, or restarts it under a changed limit (keeping `last_grant`, so
/// slots never go backwards).
const RESET_SQL: &str = "INSERT INTO dial_budget \
     (account, max_dials, window_ms, head, last_grant, grants) \
     VALUES ($1, $2, $3, 0, 0, array_fill(0::BIGINT, ARRAY[$2::INT])) \
     ON CONFLICT (account) DO UPDATE SET max_dials = excluded.max_dials, \
     window_ms = excluded.window_ms, head = 0, grants = excluded.grants \
     WHERE dial_budget.max_dials <> excluded.max_dials \
     OR dial_budget.window_ms <> excluded.window_ms";

/// Tries before a reservation gives up on an account whose limit other nodes keep changing.
const MAX_PASSES: usize = 8;

/// Largest window a ledger row keeps slots for; a larger limit is a configuration mistake.
const MAX_SLOTS: u32 = 100_000;

#[async_trait]
impl DialLedger for PgDialLedger {
    async fn reserve(
        &self,
        account: &str,
        limit: SlotLimit,
        now: Timestamp,
        not_after: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        limits::text("dial account", account, limits::MAX_ID_LEN)?;
        let max_dials = i64::from(limit.max_dials.clamp(1, MAX_SLOTS));
        let window = int(u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX))?;
        let now = ms(now)?;
        let not_after = ms(not_after).unwrap_or(i64::MAX);
        // The first pass may find no row (or one under another limit); a later one finds the
        // row the reset (ours or another node's) wrote, unless a node under another limit
        // keeps replacing it.
        for _ in 0..MAX_PASSES {
            let granted = sqlx::query_scalar::<_, i64>(RESERVE_SQL)
                .bind(account)
                .bind(max_dials)
                .bind(window)
                .bind(now)
                .bind(not_after)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(at) = granted {
                return Ok(SlotOutcome::Granted(ts(at)?));
            }
            let row = sqlx::query(NEXT_SQL)
                .bind(account)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                let same = row.try_get::<i64, _>("max_dials")? == max_dials
                    && row.try_get::<i64, _>("window_ms")? == window;
                let next: i64 = row.try_get("next_slot")?;
                if same && next > not_after {
                    return Ok(SlotOutcome::Busy(ts(next)?));
                }
                if same {
                    // Another node created the row after our update missed it: ask again.
                    continue;
                }
            }
            sqlx::query(RESET_SQL)
                .bind(account)
                .bind(max_dials)
                .bind(window)
                .execute(&self.pool)
                .await?;
        }
        Err(StoreError::invalid(
            "dial limit",
            "nodes disagree on the dial limit of this account",
        ))
    }
}
