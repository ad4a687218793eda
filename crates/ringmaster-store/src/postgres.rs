//! The PostgreSQL backend: for several `ringmaster` processes sharing one database.
//!
//! Transactions run at READ COMMITTED. The compare-and-set is the session UPDATE's
//! `WHERE version = $n` (a racer blocks on the row lock, then re-checks the new version), a
//! creation race is decided by the primary key, and the one-active-call rule holds because a
//! commit that sets a registry entry first takes a transaction-scoped advisory lock per user.

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, DeviceId, Timestamp, UserId};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Acquire, PgConnection, Postgres, Row, Transaction};
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::cluster::{DialLedger, OutboxWakeups};
use crate::codec::{
    self, active_from, billing_from, bind_billing, bind_call, bind_device, bind_leg,
    bind_timeline_tail, call_from, call_page, claimable_ids_sql, device_from, due_effects_sql,
    due_from, int, leg_from, ms, opt_ms, outbox_from, outbox_insert_sql, prune_history_sql,
    prune_sql, session_from, timeline_from, unsigned, RowExt, BILLING_COLUMNS, CALL_COLUMNS,
    DEVICE_COLUMNS, OUTBOX_COLUMNS, USER_COLUMNS,
};
use crate::directory::{Device, PushProvider, User, UserSettings};
use crate::error::StoreError;
use crate::history::{CallDetail, CallRecord, HistoryCursor, Page, TimelineEntry};
use crate::limits;
use crate::registry::{ActiveCall, RegistryChange};
use crate::session::{Commit, CommitOutcome, Lane, OutboxEntry, Pruned, Retention, StoredSession};
use crate::Store;

/// The history upserts, shared with SQLite's writer (built once).
static CALL_RECORD_UPSERT: LazyLock<String> = LazyLock::new(|| codec::call_record_upsert_sql('$'));
/// The call-leg upsert (see above).
static CALL_LEG_UPSERT: LazyLock<String> = LazyLock::new(|| codec::call_leg_upsert_sql('$'));
/// The lease of a commit's own claimable effects ([`crate::CommitClaim`]).
static COMMIT_CLAIM: LazyLock<String> = LazyLock::new(codec::commit_claim_sql);

mod dial_ledger;
mod ops;
mod schema;
mod webhooks;

pub use schema::{create_schema, drop_schema, schema_url};

pub use dial_ledger::PgDialLedger;

/// Connections per store; enough for a burst of concurrent commits on one process.
const MAX_CONNECTIONS: u32 = 10;
/// How long an operation waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// The channel the outbox trigger (migration 0008) notifies on every insert.
const OUTBOX_CHANNEL: &str = "ringmaster_outbox";
/// Pause before listening again after the wake-up listener could not reconnect.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// A [`Store`] in a PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:5432/db`, libpq-style parameters such as
    /// `options[search_path]=...` allowed) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::invalid(
                "database url",
                "a PostgreSQL URL starts with `postgres://` (e.g. postgres://user@host/db)",
            ));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::invalid("database url", e.to_string()))?;
        Self::open_with(options).await
    }

    /// Connects with ready-made options and applies pending migrations.
    pub async fn open_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    async fn load_user(
        conn: &mut PgConnection,
        row: Option<PgRow>,
    ) -> Result<Option<User>, StoreError> {
        let Some(row) = row else { return Ok(None) };
        let id = row.text("id")?;
        let numbers = sqlx::query_scalar::<_, String>(
            "SELECT number FROM user_numbers WHERE user_id = $1 ORDER BY position",
        )
        .bind(&id)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(codec::user_from(&row, numbers)?))
    }

    /// The user matching `condition`, which has exactly one `$1` bound to `value`.
    async fn user_where(&self, condition: &str, value: &str) -> Result<Option<User>, StoreError> {
        if !storable(value) {
            return Ok(None);
        }
        // REPEATABLE READ: the user row and its numbers from one snapshot.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {condition}");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&mut *tx)
            .await?;
        let user = Self::load_user(&mut tx, row).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Runs an outbox status update; distinguishes "no such effect" from "not pending".
    async fn update_effect(
        &self,
        sql: &str,
        session_id: &CallSessionId,
        seq: u64,
        error: Option<&str>,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let seq_i = effect_key(session_id, seq)?;
        let mut tx = self.pool.begin().await?;
        let mut query = sqlx::query(sql);
        if let Some(error) = error {
            query = query.bind(limits::truncate_error(&error.replace('\0', "\u{fffd}")));
        }
        if let Some(retry_at) = retry_at {
            query = query.bind(retry_at);
        }
        let changed = query
            .bind(session_id.as_str())
            .bind(seq_i)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            effect_exists(&mut *tx, session_id, seq).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `seq` as stored, or `NotFound` for a key no row can have.
fn effect_key(session_id: &CallSessionId, seq: u64) -> Result<i64, StoreError> {
    let seq_i = int(seq)?;
    if !storable(session_id.as_str()) {
        return Err(StoreError::not_found(
            "effect",
            format!("{session_id}#{seq}"),
        ));
    }
    Ok(seq_i)
}

/// `NotFound` unless the outbox holds the effect: an update that changed nothing either found
/// it no longer pending (not an error) or found no such effect.
async fn effect_exists<'e>(
    db: impl sqlx::PgExecutor<'e>,
    session_id: &CallSessionId,
    seq: u64,
) -> Result<(), StoreError> {
    let exists = sqlx::query("SELECT 1 FROM outbox WHERE session_id = $1 AND seq = $2")
        .bind(session_id.as_str())
        .bind(int(seq)?)
        .fetch_optional(db)
        .await?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(StoreError::not_found(
            "effect",
            format!("{session_id}#{seq}"),
        ))
    }
}

/// PostgreSQL text cannot hold NUL, and validation keeps control characters out of every
/// stored key, so a lookup by such a key finds nothing without asking the server.
pub(crate) fn storable(raw: &str) -> bool {
    !raw.contains('\0')
}

async fn current_version(
    tx: &mut Transaction<'_, Postgres>,
    id: &CallSessionId,
) -> Result<Option<u64>, StoreError> {
    sqlx::query_scalar::<_, i64>("SELECT version FROM sessions WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .map(unsigned)
        .transpose()
}

const ACTIVE_SQL: &str = "SELECT user_id, call_session_id, device_id, started_at, platform, \
     state, since \
     FROM active_calls WHERE user_id = $1 ORDER BY started_at, call_session_id";

async fn active_of(
    tx: &mut Transaction<'_, Postgres>,
    user_id: &UserId,
) -> Result<Vec<ActiveCall>, StoreError> {
    sqlx::query(ACTIVE_SQL)
        .bind(user_id.as_str())
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(active_from)
        .collect()
}

/// Serialises registry changes per user until the transaction ends. Users are locked in one
/// global order so two commits touching the same users cannot deadlock.
async fn lock_registries(
    tx: &mut Transaction<'_, Postgres>,
    changes: &[RegistryChange],
) -> Result<(), StoreError> {
    let users: BTreeSet<&str> = changes
        .iter()
        .filter_map(|change| match change {
            RegistryChange::Set(active) => Some(active.user_id.as_str()),
            RegistryChange::Clear { .. } => None,
        })
        .collect();
    for user in users {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('ringmaster.registry:' || $1, 0))",
        )
        .bind(user)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Applies one commit in `tx` and ends `tx`: committed, or rolled back when the commit is a
/// conflict, duplicate, busy or fails. In a batch `tx` is a savepoint, so such a commit undoes
/// only itself and leaves the rest of the batch.
async fn commit_in(
    mut tx: Transaction<'_, Postgres>,
    commit: &Commit,
) -> Result<CommitOutcome, StoreError> {
    let encoded = limits::commit(commit)?;
    let at = ms(commit.at)?;
    let deadline = opt_ms(commit.next_deadline)?;
    let n_effects = commit.effects.len() as i64;

    // A racer with the same key waits here until the holder commits or rolls back.
    if let Some(key) = &commit.dedupe_key {
        let fresh = sqlx::query(
            "INSERT INTO processed_inputs (dedupe_key, session_id, processed_at) \
             VALUES ($1, $2, $3) ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(key)
        .bind(commit.session_id.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fresh == 0 {
            tx.rollback().await?;
            return Ok(CommitOutcome::Duplicate);
        }
    }

    let (version, last_seq) = match commit.expected_version {
        None => {
            let created = sqlx::query(
                "INSERT INTO sessions (id, user_id, version, doc, state_label, \
                 next_deadline, effect_seq, created_at, updated_at, closed) \
                 VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $7, $8) ON CONFLICT (id) DO NOTHING",
            )
            .bind(commit.session_id.as_str())
            .bind(commit.user_id.as_str())
            .bind(&encoded.doc)
            .bind(&commit.state_label)
            .bind(deadline)
            .bind(n_effects)
            .bind(at)
            .bind(commit.closed)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if created == 0 {
                let current_version = current_version(&mut tx, &commit.session_id).await?;
                tx.rollback().await?;
                return Ok(CommitOutcome::Conflict { current_version });
            }
            (1, n_effects)
        }
        Some(expected) => {
            // Under READ COMMITTED a blocked racer re-evaluates the WHERE against the
            // winner's row, so only one UPDATE per version can match.
            let row = sqlx::query(
                "UPDATE sessions SET version = version + 1, doc = $1, state_label = $2, \
                 next_deadline = $3, effect_seq = effect_seq + $4, updated_at = $5, \
                 closed = $8, timer_lease_until = NULL \
                 WHERE id = $6 AND version = $7 RETURNING version, effect_seq",
            )
            .bind(&encoded.doc)
            .bind(&commit.state_label)
            .bind(deadline)
            .bind(n_effects)
            .bind(at)
            .bind(commit.session_id.as_str())
            .bind(int(expected)?)
            .bind(commit.closed)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                let current_version = current_version(&mut tx, &commit.session_id).await?;
                tx.rollback().await?;
                return Ok(CommitOutcome::Conflict { current_version });
            };
            (
                row.try_get::<i64, _>("version")?,
                row.try_get::<i64, _>("effect_seq")?,
            )
        }
    };

    lock_registries(&mut tx, &commit.registry).await?;
    for change in &commit.registry {
        match change {
            RegistryChange::Set(active) => {
                // Read after taking the lock: each statement sees every commit so far.
                let current = active_of(&mut tx, &active.user_id).await?;
                let other_call = current
                    .iter()
                    .any(|a| a.call_session_id != active.call_session_id);
                if other_call {
                    let call_waiting = sqlx::query_scalar::<_, bool>(
                        "SELECT call_waiting FROM users WHERE id = $1",
                    )
                    .bind(active.user_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or(false);
                    if !call_waiting {
                        tx.rollback().await?;
                        return Ok(CommitOutcome::Busy { active: current });
                    }
                }
                sqlx::query(
                    "INSERT INTO active_calls (user_id, call_session_id, device_id, \
                     started_at, platform, state, since) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (user_id, call_session_id) DO UPDATE SET \
                     device_id = excluded.device_id, started_at = excluded.started_at, \
                     platform = excluded.platform, state = excluded.state, \
                     since = excluded.since",
                )
                .bind(active.user_id.as_str())
                .bind(active.call_session_id.as_str())
                .bind(active.device_id.as_ref().map(DeviceId::as_str))
                .bind(ms(active.started_at)?)
                .bind(active.platform.as_deref())
                .bind(active.state.as_str())
                .bind(ms(active.since)?)
                .execute(&mut *tx)
                .await?;
            }
            RegistryChange::Clear {
                user_id,
                call_session_id,
            } => {
                sqlx::query("DELETE FROM active_calls WHERE user_id = $1 AND call_session_id = $2")
                    .bind(user_id.as_str())
                    .bind(call_session_id.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }

    let first_seq = unsigned(last_seq - n_effects + 1)?;
    let effect_seqs: Vec<u64> = (first_seq..).take(encoded.effects.len()).collect();
    if !effect_seqs.is_empty() {
        // One multi-row statement: the hot path makes no round trip per effect.
        let sql = outbox_insert_sql('$', effect_seqs.len());
        let mut insert = sqlx::query(&sql);
        for ((seq, json), effect) in effect_seqs
            .iter()
            .zip(&encoded.effects)
            .zip(&commit.effects)
        {
            insert = insert
                .bind(commit.session_id.as_str())
                .bind(int(*seq)?)
                .bind(json)
                .bind(at)
                .bind(effect.lane.as_str())
                .bind(at)
                .bind(effect.order_key.as_deref());
        }
        insert.execute(&mut *tx).await?;
    }
    let mut claimed = Vec::new();
    if let (Some(claim), false) = (&commit.claim, effect_seqs.is_empty()) {
        let seqs: Vec<i64> = sqlx::query_scalar(&COMMIT_CLAIM)
            .bind(commit.session_id.as_str())
            .bind(int(first_seq)?)
            .bind(&claim.owner)
            .bind(ms(claim.until)?)
            .fetch_all(&mut *tx)
            .await?;
        claimed = seqs.into_iter().map(unsigned).collect::<Result<_, _>>()?;
        // RETURNING has no order.
        claimed.sort_unstable();
    }

    for (call, quality) in commit.calls.iter().zip(&encoded.quality) {
        let upsert = sqlx::query(&CALL_RECORD_UPSERT);
        let written = bind_call(upsert, call, quality.as_deref())?
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if written == 0 {
            tx.rollback().await?;
            return Err(StoreError::invalid(
                "call record",
                format!("call {} belongs to another user", call.call_session_id),
            ));
        }
    }

    for bill in &commit.billing {
        // Written once: a redelivered or repeated final row leaves the first record.
        let insert = sqlx::query(
            "INSERT INTO billing_records (call_session_id, user_id, tenant_id, unit, \
             quantity, billable_seconds, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (call_session_id) DO NOTHING",
        );
        bind_billing(insert, bill)?.execute(&mut *tx).await?;
    }

    for leg in &commit.legs {
        let upsert = sqlx::query(&CALL_LEG_UPSERT);
        let written = bind_leg(upsert, leg)?
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if written == 0 {
            tx.rollback().await?;
            return Err(StoreError::invalid(
                "leg record",
                format!("leg {} belongs to another call", leg.call_control_id),
            ));
        }
    }

    for (entry, detail) in commit.timeline.iter().zip(&encoded.details) {
        let insert = sqlx::query(
            "INSERT INTO call_timeline (call_session_id, at, source, device_id, kind, \
             from_state, to_state, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(entry.call_session_id.as_str());
        bind_timeline_tail(insert, entry, detail)?
            .execute(&mut *tx)
            .await?;
    }

    tx.commit().await?;
    Ok(CommitOutcome::Committed {
        version: unsigned(version)?,
        effect_seqs,
        claimed,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_user(&self, user: User) -> Result<User, StoreError> {
        limits::user(&user)?;
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, tenant_id, name, call_waiting, voicemail_enabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(user.id.as_str())
        .bind(user.tenant_id.as_str())
        .bind(&user.name)
        .bind(user.call_waiting)
        .bind(user.voicemail_enabled)
        .bind(ms(user.created_at)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::already_exists("user", user.id.as_str()));
        }
        for (position, number) in user.numbers.iter().enumerate() {
            let inserted = sqlx::query(
                "INSERT INTO user_numbers (number, user_id, position) VALUES ($1, $2, $3) \
                 ON CONFLICT (number) DO NOTHING",
            )
            .bind(number)
            .bind(user.id.as_str())
            .bind(position as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::NumberTaken {
                    number: number.clone(),
                });
            }
        }
        tx.commit().await?;
        Ok(user)
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.user_where("id = $1", id.as_str()).await
    }

    async fn user_by_number(&self, number: &str) -> Result<Option<User>, StoreError> {
        self.user_where(
            "id = (SELECT user_id FROM user_numbers WHERE number = $1)",
            number,
        )
        .await
    }

    async fn update_user_settings(
        &self,
        id: &UserId,
        settings: UserSettings,
    ) -> Result<User, StoreError> {
        if !storable(id.as_str()) {
            return Err(StoreError::not_found("user", id.as_str()));
        }
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE users SET call_waiting = $1, voicemail_enabled = $2 WHERE id = $3 \
             RETURNING id, tenant_id, name, call_waiting, voicemail_enabled, created_at",
        )
        .bind(settings.call_waiting)
        .bind(settings.voicemail_enabled)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let user = Self::load_user(&mut tx, row)
            .await?
            .ok_or_else(|| StoreError::not_found("user", id.as_str()))?;
        tx.commit().await?;
        Ok(user)
    }

    async fn create_device(&self, device: Device) -> Result<Device, StoreError> {
        limits::device(&device)?;
        let mut tx = self.pool.begin().await?;
        // FOR SHARE keeps the user from disappearing before the device row lands.
        let user_exists = sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR SHARE")
            .bind(device.user_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !user_exists {
            return Err(StoreError::not_found("user", device.user_id.as_str()));
        }
        let insert = sqlx::query(
            "INSERT INTO devices (id, user_id, platform, sip_uri, token_hash, push_token, \
             push_provider, revoked, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO NOTHING",
        );
        let inserted = bind_device(insert, &device)?
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Err(StoreError::already_exists("device", device.id.as_str()));
        }
        tx.commit().await?;
        Ok(device)
    }

    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        if !storable(id.as_str()) {
            return Ok(None);
        }
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1");
        sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(device_from)
            .transpose()
    }

    async fn devices_by_sip_uri(&self, sip_uri: &str) -> Result<Vec<Device>, StoreError> {
        if !storable(sip_uri) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE sip_uri = $1 ORDER BY created_at, id"
        );
        sqlx::query(&sql)
            .bind(sip_uri)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(device_from)
            .collect()
    }

    async fn devices_of_user(&self, user_id: &UserId) -> Result<Vec<Device>, StoreError> {
        if !storable(user_id.as_str()) {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY created_at, id"
        );
        sqlx::query(&sql)
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(device_from)
            .collect()
    }

    async fn set_push_token(
        &self,
        id: &DeviceId,
        provider: PushProvider,
        token: &str,
    ) -> Result<(), StoreError> {
        limits::push_token(token)?;
        if !storable(id.as_str()) {
            return Err(StoreError::not_found("device", id.as_str()));
        }
        let mut tx = self.pool.begin().await?;
        let changed =
            sqlx::query("UPDATE devices SET push_token = $1, push_provider = $2 WHERE id = $3")
                .bind(token)
                .bind(provider.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if changed == 0 {
            return Err(StoreError::not_found("device", id.as_str()));
        }
        sqlx::query(
            "UPDATE devices SET push_token = NULL, push_provider = NULL \
             WHERE push_token = $1 AND id <> $2",
        )
        .bind(token)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_device_token(&self, id: &DeviceId, token_hash: &str) -> Result<(), StoreError> {
        limits::text("token hash", token_hash, limits::MAX_TOKEN_HASH_LEN)?;
        if !storable(id.as_str()) {
            return Err(StoreError::not_found("device", id.as_str()));
        }
        let changed = sqlx::query("UPDATE devices SET token_hash = $1 WHERE id = $2")
            .bind(token_hash)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::not_found("device", id.as_str()));
        }
        Ok(())
    }

    async fn unfinished_calls(&self, user_id: &UserId) -> Result<u64, StoreError> {
        if !storable(user_id.as_str()) {
            return Ok(0);
        }
        let statuses: Vec<&str> = crate::UNFINISHED_STATUSES
            .iter()
            .map(|s| s.as_str())
            .collect();
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM call_records WHERE user_id = $1 AND status = ANY($2)",
        )
        .bind(user_id.as_str())
        .bind(&statuses)
        .fetch_one(&self.pool)
        .await?;
        unsigned(n)
    }

    async fn call_timeline(
        &self,
        user_id: &UserId,
        call_session_id: &CallSessionId,
        offset: u64,
        limit: u32,
    ) -> Result<Option<(Vec<TimelineEntry>, u64)>, StoreError> {
        if !storable(user_id.as_str()) || !storable(call_session_id.as_str()) {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let owned =
            sqlx::query("SELECT 1 FROM call_records WHERE call_session_id = $1 AND user_id = $2")
                .bind(call_session_id.as_str())
                .bind(user_id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        if !owned {
            return Ok(None);
        }
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM call_timeline WHERE call_session_id = $1")
                .bind(call_session_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
        let page = sqlx::query(
            "SELECT call_session_id, at, source, device_id, kind, from_state, to_state, detail \
             FROM call_timeline WHERE call_session_id = $1 ORDER BY seq LIMIT $2 OFFSET $3",
        )
        .bind(call_session_id.as_str())
        .bind(i64::from(limit.min(limits::MAX_PAGE)))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(timeline_from)
        .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(Some((page, unsigned(total)?)))
    }

    async fn clear_push_token(&self, id: &DeviceId, token: &str) -> Result<bool, StoreError> {
        if !storable(id.as_str()) {
            return Err(StoreError::not_found("device", id.as_str()));
        }
        let mut tx = self.pool.begin().await?;
        let cleared = storable(token)
            && sqlx::query(
                "UPDATE devices SET push_token = NULL, push_provider = NULL \
                 WHERE id = $1 AND push_token = $2",
            )
            .bind(id.as_str())
            .bind(token)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
        if !cleared {
            let exists = sqlx::query("SELECT 1 FROM devices WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !exists {
                return Err(StoreError::not_found("device", id.as_str()));
            }
        }
        tx.commit().await?;
        Ok(cleared)
    }

    async fn revoke_device(&self, id: &DeviceId) -> Result<(), StoreError> {
        if !storable(id.as_str()) {
            return Err(StoreError::not_found("device", id.as_str()));
        }
        let changed = sqlx::query("UPDATE devices SET revoked = TRUE WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::not_found("device", id.as_str()));
        }
        Ok(())
    }

    async fn load_session(&self, id: &CallSessionId) -> Result<Option<StoredSession>, StoreError> {
        if !storable(id.as_str()) {
            return Ok(None);
        }
        let Some(row) = sqlx::query(
            "SELECT id, user_id, version, doc, state_label, next_deadline, quarantined_at FROM sessions \
             WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(session_from(&row)?))
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        commit_in(self.pool.begin().await?, &commit).await
    }

    /// One transaction for the whole batch, a savepoint per commit; nothing is reported
    /// committed before that transaction is.
    async fn commit_batch(&self, commits: Vec<Commit>) -> Vec<Result<CommitOutcome, StoreError>> {
        let n = commits.len();
        if n == 0 {
            return Vec::new();
        }
        let failed = |e: &dyn std::fmt::Display| {
            (0..n)
                .map(|_| {
                    Err(StoreError::Backend(sqlx::Error::Protocol(format!(
                        "group commit failed: {e}"
                    ))))
                })
                .collect()
        };
        let mut outer = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return failed(&e),
        };
        let mut results = Vec::with_capacity(n);
        for commit in &commits {
            let outcome = match outer.begin().await {
                Ok(savepoint) => commit_in(savepoint, commit).await,
                Err(e) => Err(e.into()),
            };
            results.push(outcome);
        }
        match outer.commit().await {
            Ok(()) => results,
            Err(e) => failed(&e),
        }
    }

    async fn is_processed(&self, dedupe_key: &str) -> Result<bool, StoreError> {
        if !storable(dedupe_key) {
            return Ok(false);
        }
        Ok(
            sqlx::query("SELECT 1 FROM processed_inputs WHERE dedupe_key = $1")
                .bind(dedupe_key)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    async fn prune_processed(&self, before: Timestamp) -> Result<u64, StoreError> {
        let before = ms(before).unwrap_or(i64::MAX);
        Ok(
            sqlx::query("DELETE FROM processed_inputs WHERE processed_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn pending_effects(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE o.status = 'pending' ORDER BY o.id LIMIT $1"
        );
        sqlx::query(&sql)
            .bind(limits::limit(limit) as i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(outbox_from)
            .collect()
    }

    async fn mark_effect_done(
        &self,
        session_id: &CallSessionId,
        seq: u64,
    ) -> Result<bool, StoreError> {
        let seq_i = effect_key(session_id, seq)?;
        // The outer query reads the table as it was before the update: the rows it looks for
        // are other, still pending ones.
        let (changed, waiting): (i64, bool) = sqlx::query_as(
            "WITH done AS (UPDATE outbox SET status = 'done', lease_owner = NULL, \
               lease_until = NULL \
               WHERE session_id = $1 AND seq = $2 AND status = 'pending' RETURNING order_key) \
             SELECT (SELECT count(*) FROM done), EXISTS (SELECT 1 FROM done d \
               JOIN outbox e ON e.session_id = $1 AND e.order_key = d.order_key \
               WHERE e.seq > $2 AND e.status = 'pending')",
        )
        .bind(session_id.as_str())
        .bind(seq_i)
        .fetch_one(&self.pool)
        .await?;
        if changed == 0 {
            effect_exists(&self.pool, session_id, seq).await?;
        }
        Ok(waiting)
    }

    async fn due_effects(
        &self,
        lane: Lane,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        sqlx::query(&due_effects_sql('$'))
            .bind(lane.as_str())
            .bind(ms(now).unwrap_or(i64::MAX))
            .bind(limits::limit(limit) as i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(outbox_from)
            .collect()
    }

    async fn claim_due_effects(
        &self,
        lane: Lane,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        limits::text("lease owner", owner, limits::MAX_ID_LEN)?;
        // SKIP LOCKED: a row another node is claiming right now is passed over instead of
        // waited for; READ COMMITTED re-checks a row changed since the snapshot, so a row
        // claimed a moment ago is not returned twice.
        let sql = format!(
            "UPDATE outbox AS o SET lease_owner = $4, lease_until = $5 \
             WHERE o.id IN ({} FOR UPDATE OF o SKIP LOCKED) RETURNING {OUTBOX_COLUMNS}, o.id",
            claimable_ids_sql('$')
        );
        let mut rows = sqlx::query(&sql)
            .bind(lane.as_str())
            .bind(ms(now).unwrap_or(i64::MAX))
            .bind(limits::limit(limit) as i64)
            .bind(owner)
            .bind(ms(lease_until)?)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| Ok((row.integer("id")?, row)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING has no order: commit order is the outbox id's.
        rows.sort_by_key(|(id, _)| *id);
        rows.iter().map(|(_, row)| outbox_from(row)).collect()
    }

    async fn claim_due_effects_all(
        &self,
        lanes: &[(Lane, u32)],
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let lanes = crate::session::claim_lanes(owner, lanes)?;
        if lanes.is_empty() {
            return Ok(Vec::new());
        }
        // One statement: each lane's rows are picked (and locked, SKIP LOCKED) in a CTE of
        // its own, so a lane's limit and order are exactly those of its one-lane claim.
        let sql = codec::claim_all_sql(lanes.len());
        let mut query = sqlx::query(&sql)
            .bind(ms(now).unwrap_or(i64::MAX))
            .bind(owner)
            .bind(ms(lease_until)?);
        for &(lane, limit) in &lanes {
            query = query.bind(lane.as_str()).bind(limit as i64);
        }
        let mut rows = query
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| Ok((outbox_from(&row)?, row.integer("id")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING has no order: lanes in the order asked, each earliest due first.
        rows.sort_by_key(|(entry, id)| {
            let lane = lanes.iter().position(|(lane, _)| *lane == entry.lane);
            (lane, entry.next_attempt_at, *id)
        });
        Ok(rows.into_iter().map(|(entry, _)| entry).collect())
    }

    async fn outbox_wakeups(&self) -> Result<Option<OutboxWakeups>, StoreError> {
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&self.pool)
            .await?;
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(OUTBOX_CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = listener.try_recv() => next,
                    () = tx.closed() => return,
                };
                match next {
                    Ok(Some(n)) if n.payload() != schema => continue,
                    // `Ok(None)`: the connection was lost and is re-established on the next
                    // call; what was committed meanwhile was not signalled, so wake anyway.
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox wake-up listener failed; retrying");
                        tokio::time::sleep(LISTEN_RETRY).await;
                    }
                }
                // Full means a wake-up is already pending: they coalesce.
                let _ = tx.try_send(());
            }
        });
        Ok(Some(OutboxWakeups::new(rx)))
    }

    fn dial_ledger(&self) -> Option<Arc<dyn DialLedger>> {
        Some(Arc::new(PgDialLedger {
            pool: self.pool.clone(),
        }))
    }

    async fn mark_effect_failed(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<(), StoreError> {
        // Parameters are numbered in bind order: error, then retry_at, then the key.
        self.update_effect(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2, \
             lease_owner = NULL, lease_until = NULL \
             WHERE session_id = $3 AND seq = $4 AND status = 'pending'",
            session_id,
            seq,
            Some(error),
            Some(ms(retry_at)?),
        )
        .await
    }

    async fn defer_effect(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        until: Timestamp,
    ) -> Result<(), StoreError> {
        let seq_i = int(seq)?;
        if !storable(session_id.as_str()) {
            return Err(StoreError::not_found(
                "effect",
                format!("{session_id}#{seq}"),
            ));
        }
        let changed = sqlx::query(
            "UPDATE outbox SET next_attempt_at = GREATEST(next_attempt_at, $1), \
             lease_owner = NULL, lease_until = NULL \
             WHERE session_id = $2 AND seq = $3",
        )
        .bind(ms(until)?)
        .bind(session_id.as_str())
        .bind(seq_i)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::not_found(
                "effect",
                format!("{session_id}#{seq}"),
            ));
        }
        Ok(())
    }

    async fn quarantine_session(
        &self,
        id: &CallSessionId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        if !storable(id.as_str()) {
            return Ok(false);
        }
        let found = sqlx::query(
            "UPDATE sessions SET quarantined_at = COALESCE(quarantined_at, $1), \
             quarantine_reason = COALESCE(quarantine_reason, $2) WHERE id = $3",
        )
        .bind(ms(at)?)
        .bind(limits::truncate_error(&reason.replace('\0', "\u{fffd}")))
        .bind(id.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(found > 0)
    }

    async fn quarantined_sessions(&self, limit: u32) -> Result<Vec<CallSessionId>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM sessions WHERE quarantined_at IS NOT NULL \
             ORDER BY quarantined_at, id LIMIT $1",
        )
        .bind(limits::limit(limit) as i64)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(CallSessionId::new)
        .collect())
    }

    async fn prune(&self, retention: Retention) -> Result<Pruned, StoreError> {
        let [effects, processed, sessions] = prune_sql('$');
        let mut tx = self.pool.begin().await?;
        let mut pruned = Pruned::default();
        for (sql, cutoff, count) in [
            (
                effects,
                retention.finished_effects_before,
                &mut pruned.effects,
            ),
            (processed, retention.processed_before, &mut pruned.processed),
            (
                sessions,
                retention.closed_sessions_before,
                &mut pruned.sessions,
            ),
        ] {
            *count = sqlx::query(&sql)
                .bind(ms(cutoff).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if let Some(cutoff) = retention.history_before {
            let cutoff = ms(cutoff).unwrap_or(i64::MAX);
            // The call records go last, so their count is the one kept.
            for sql in prune_history_sql('$') {
                pruned.calls = sqlx::query(&sql)
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
        }
        tx.commit().await?;
        Ok(pruned)
    }

    async fn mark_effect_abandoned(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.update_effect(
            "UPDATE outbox SET status = 'abandoned', last_error = $1, lease_owner = NULL, \
             lease_until = NULL \
             WHERE session_id = $2 AND seq = $3 AND status = 'pending'",
            session_id,
            seq,
            Some(error),
            None,
        )
        .await
    }

    async fn due_sessions(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(CallSessionId, Timestamp)>, StoreError> {
        let now = ms(now).unwrap_or(i64::MAX);
        sqlx::query(
            "SELECT id, next_deadline FROM sessions \
             WHERE next_deadline IS NOT NULL AND quarantined_at IS NULL AND next_deadline <= $1 \
             ORDER BY next_deadline, id LIMIT $2",
        )
        .bind(now)
        .bind(limits::limit(limit) as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(due_from)
        .collect()
    }

    async fn claim_due_sessions(
        &self,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Vec<(CallSessionId, Timestamp)>, StoreError> {
        limits::text("lease owner", owner, limits::MAX_ID_LEN)?;
        // SKIP LOCKED: a session another node is claiming or committing right now is passed
        // over instead of waited for; READ COMMITTED re-checks a row changed since the
        // snapshot, so a session claimed a moment ago is not returned twice.
        let mut due = sqlx::query(
            "UPDATE sessions AS s SET timer_lease_owner = $3, timer_lease_until = $4 \
             WHERE s.id IN (SELECT id FROM sessions \
                 WHERE next_deadline IS NOT NULL AND quarantined_at IS NULL \
                 AND next_deadline <= $1 \
                 AND (timer_lease_until IS NULL OR timer_lease_until <= $1 \
                      OR timer_lease_owner = $3) \
                 ORDER BY next_deadline, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING s.id, s.next_deadline",
        )
        .bind(ms(now).unwrap_or(i64::MAX))
        .bind(limits::limit(limit) as i64)
        .bind(owner)
        .bind(ms(lease_until)?)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(due_from)
        .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING has no order.
        due.sort_by(|(a, at), (b, bt)| (at, a.as_str()).cmp(&(bt, b.as_str())));
        Ok(due)
    }

    async fn active_calls(&self, user_id: &UserId) -> Result<Vec<ActiveCall>, StoreError> {
        if !storable(user_id.as_str()) {
            return Ok(Vec::new());
        }
        sqlx::query(ACTIVE_SQL)
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(active_from)
            .collect()
    }

    async fn list_calls(
        &self,
        user_id: &UserId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<CallRecord>, StoreError> {
        let limit = limits::page_limit(limit)?;
        let cursor = cursor.map(str::parse::<HistoryCursor>).transpose()?;
        if !storable(user_id.as_str())
            || cursor
                .as_ref()
                .is_some_and(|c| !storable(c.call_session_id.as_str()))
        {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let fetch = limit as i64 + 1;
        let rows = match &cursor {
            None => {
                let sql = format!(
                    "SELECT {CALL_COLUMNS} FROM call_records WHERE user_id = $1 \
                     ORDER BY started_at DESC, call_session_id DESC LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(user_id.as_str())
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(cursor) => {
                let sql = format!(
                    "SELECT {CALL_COLUMNS} FROM call_records WHERE user_id = $1 \
                     AND (started_at < $2 OR (started_at = $2 AND call_session_id < $3)) \
                     ORDER BY started_at DESC, call_session_id DESC LIMIT $4"
                );
                sqlx::query(&sql)
                    .bind(user_id.as_str())
                    .bind(ms(cursor.started_at)?)
                    .bind(cursor.call_session_id.as_str())
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let more = rows.len() > limit;
        let items = rows
            .iter()
            .take(limit)
            .map(call_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(call_page(items, more))
    }

    async fn get_call(
        &self,
        user_id: &UserId,
        call_session_id: &CallSessionId,
    ) -> Result<Option<CallDetail>, StoreError> {
        if !storable(user_id.as_str()) || !storable(call_session_id.as_str()) {
            return Ok(None);
        }
        // One snapshot: record, legs and timeline as of the same instant.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM call_records WHERE call_session_id = $1 AND user_id = $2"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(call_session_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let call = call_from(&row)?;
        let legs = sqlx::query(
            "SELECT call_control_id, call_session_id, device_id, status, started_at, \
             answered_at, ended_at, hangup_cause FROM call_legs WHERE call_session_id = $1 \
             ORDER BY started_at, call_control_id",
        )
        .bind(call_session_id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(leg_from)
        .collect::<Result<Vec<_>, _>>()?;
        let timeline = sqlx::query(
            "SELECT call_session_id, at, source, device_id, kind, from_state, to_state, detail \
             FROM call_timeline WHERE call_session_id = $1 ORDER BY seq",
        )
        .bind(call_session_id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(timeline_from)
        .collect::<Result<Vec<_>, _>>()?;
        let billing = sqlx::query(&format!(
            "SELECT {BILLING_COLUMNS} FROM billing_records WHERE call_session_id = $1"
        ))
        .bind(call_session_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(billing_from)
        .transpose()?;
        tx.commit().await?;
        Ok(Some(CallDetail {
            call,
            legs,
            timeline,
            billing,
        }))
    }

    async fn live_calls(&self, limit: u32) -> Result<Vec<CallRecord>, StoreError> {
        let limit = limits::page_limit(limit)?;
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM call_records \
             WHERE status IN ('ringing', 'answered', 'bridged') \
             ORDER BY started_at DESC, call_session_id DESC LIMIT $1"
        );
        sqlx::query(&sql)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(call_from)
            .collect()
    }

    async fn timeline_since(
        &self,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<TimelineEntry>, StoreError> {
        let limit = limits::batch_limit(limit)?;
        sqlx::query(
            "SELECT call_session_id, at, source, device_id, kind, from_state, to_state, detail \
             FROM call_timeline WHERE at >= $1 ORDER BY at, call_session_id, seq LIMIT $2",
        )
        .bind(ms(since)?)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(timeline_from)
        .collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
