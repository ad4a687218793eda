//! The statements of a group-writer batch, run through rusqlite off the async runtime.
//!
//! Through sqlx every statement is a round trip to the connection's worker thread (a channel
//! send, a wake-up, a reply): a new call's commit is a dozen statements, and the profile of
//! `ringmaster bench ingest` put most of the time in those hand-offs. Here a whole batch costs
//! a few hand-offs.
//!
//! A database file gets a rusqlite connection of the group writer's own ([`Opener`]), which
//! keeps its statements prepared across batches. An in-memory database exists only on the
//! sqlx writer connection, whose handle is borrowed for each batch with `lock_handle`: that
//! parks sqlx's worker for as long as the lock is held, so both never use the connection at
//! once, and every batch ends its transaction (and finalizes its statements) before the lock
//! is released. rusqlite 0.32 and sqlx 0.8 link the same `libsqlite3-sys` 0.30, so the
//! handle's type is the same for both.

use ringmaster_core::{CallSessionId, DeviceId};
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sqlx::pool::PoolConnection;
use sqlx::Sqlite;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::checkpoint::BACKSTOP_PAGES;
use super::group::{EffectStatus, EffectUpdate, Pending, Written, Wrote};
use super::leases::Leases;
use super::SqliteSync;
use crate::codec::{
    active_from, call_leg_upsert_sql, call_record_upsert_sql, commit_claimable_sql,
    host_event_insert_sql, int, ms, opt_ms, outbox_insert_sql, pending_host_events_sql, unsigned,
    RowExt,
};
use crate::error::StoreError;
use crate::limits::{self, EncodedCommit};
use crate::registry::{ActiveCall, RegistryChange};
use crate::session::{Commit, CommitOutcome, Lane};

/// The history upserts, shared with PostgreSQL (built once; prepared once per batch).
static CALL_RECORD_UPSERT: LazyLock<String> = LazyLock::new(|| call_record_upsert_sql('?'));
/// The call-leg upsert (see above).
static CALL_LEG_UPSERT: LazyLock<String> = LazyLock::new(|| call_leg_upsert_sql('?'));
/// The host-event relay's read and insert, shared with PostgreSQL.
static PENDING_HOST_EVENTS: LazyLock<String> = LazyLock::new(|| pending_host_events_sql('?'));
/// See above.
static HOST_EVENT_INSERT: LazyLock<String> = LazyLock::new(|| host_event_insert_sql('?'));
/// A commit's own claimable effects, shared with PostgreSQL's lease of them.
static COMMIT_CLAIMABLE: LazyLock<String> = LazyLock::new(|| commit_claimable_sql('?'));

/// Statements kept prepared (the commit path uses about 15, plus one outbox insert per effect
/// count).
const STATEMENTS: usize = 64;

/// Opens the group writer's own connection to a database file.
#[derive(Clone, Debug)]
pub(super) struct Opener {
    /// The database file, which exists and is migrated.
    pub(super) path: PathBuf,
    /// How hard commits go to disk, as on the store's other connections.
    pub(super) sync: SqliteSync,
    /// How long a write waits for another process's write lock.
    pub(super) busy_timeout: Duration,
}

impl Opener {
    /// A new connection, set up as sqlx sets up the store's others.
    pub(super) fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        set_synchronous(&conn, self.sync)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Each commit of a batch is a savepoint, and the savepoints' journal of original pages
        // passes SQLite's 64 KiB spill limit after a couple of commits: it then went to a
        // temporary file, created and deleted for nearly every batch (open, create and evict
        // were ~8 % of the writer thread's time in `bench lifecycle`).
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The checkpoint thread does this work off the commit path; see `checkpoint`.
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        Ok(conn)
    }

    /// The group writer's own connection. When the store's commits wait for the disk
    /// ([`SqliteSync::Full`]), it commits at `synchronous = NORMAL` and comes with its WAL
    /// file, which the writer's sync thread makes durable after each batch (see
    /// [`super::group`]): in WAL mode `FULL` differs from `NORMAL` only by that sync at each
    /// commit, and taken off the writer it no longer holds up the next batch.
    pub(super) fn open_own(&self) -> Result<Own, StoreError> {
        let conn = self.open()?;
        if self.sync != SqliteSync::Full {
            return Ok(Own { conn, wal: None });
        }
        set_synchronous(&conn, SqliteSync::Normal)?;
        // Reading the database opens (and if need be creates) its WAL. SQLite deletes the WAL
        // only when the last connection to the file closes, so while this one is open the
        // file synced is the one it commits to.
        conn.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
        let mut path = self.path.clone().into_os_string();
        path.push("-wal");
        let wal =
            std::fs::File::open(&path).map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))?;
        Ok(Own {
            conn,
            wal: Some(Arc::new(wal)),
        })
    }

    /// Writes `batch` on `own` (opened first if `None`), and gives back the connection to
    /// keep, if any. The batch is committed but, with a WAL to sync, not yet durable.
    pub(super) fn write(
        &self,
        own: Option<Own>,
        batch: &[Pending],
        leases: &Leases,
    ) -> (Option<Own>, Vec<Written>) {
        let mut own = match own.map_or_else(|| self.open_own(), Ok) {
            Ok(own) => own,
            Err(e) => return (None, batch_failed(batch.len(), &e)),
        };
        let results = write_all(&mut own.conn, batch, leases);
        (Some(own), results)
    }
}

/// The group writer's connection to a database file.
pub(super) struct Own {
    pub(super) conn: Connection,
    /// The WAL to make durable before a commit is acknowledged; `None` when commits need not
    /// wait for the disk.
    pub(super) wal: Option<Arc<dyn Durable>>,
}

/// A file whose written data can be made durable.
pub(super) trait Durable: Send + Sync {
    /// Waits until everything written to it so far is on disk.
    fn sync(&self) -> std::io::Result<()>;
}

impl Durable for std::fs::File {
    fn sync(&self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// Sets `conn`'s `PRAGMA synchronous`.
fn set_synchronous(conn: &Connection, sync: SqliteSync) -> Result<(), StoreError> {
    let sql = match sync {
        SqliteSync::Full => "PRAGMA synchronous = FULL",
        SqliteSync::Normal => "PRAGMA synchronous = NORMAL",
    };
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// A database failure seen through rusqlite, as the store reports it.
fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(sqlx::Error::Io(std::io::Error::other(format!(
        "sqlite: {e}"
    ))))
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        backend(e)
    }
}

/// Every write of `batch` failed with `e`.
pub(super) fn batch_failed<T>(n: usize, e: &dyn std::fmt::Display) -> Vec<Result<T, StoreError>> {
    (0..n)
        .map(|_| {
            Err(StoreError::Backend(sqlx::Error::Protocol(format!(
                "group commit failed: {e}"
            ))))
        })
        .collect()
}

/// Writes `batch` in one transaction on `conn`'s handle (borrowed for the batch), on this
/// (blocking) thread; the results are in the batch's order.
pub(super) fn write_locked(
    conn: &mut PoolConnection<Sqlite>,
    batch: &[Pending],
    leases: &Leases,
) -> Vec<Written> {
    let runtime = tokio::runtime::Handle::current();
    let mut locked = match runtime.block_on(conn.lock_handle()) {
        Ok(locked) => locked,
        Err(e) => return batch_failed(batch.len(), &e),
    };
    // SAFETY: `locked` keeps sqlx's worker off this handle until it is dropped, after
    // `lite` (declared later, dropped first). `from_handle` never closes the handle, and
    // dropping `lite` finalizes the statements it prepared, so sqlx finds the connection as
    // it left it: no statement of ours and no open transaction (`write_all` always ends it).
    let lite = unsafe { Connection::from_handle(locked.as_raw_handle().as_ptr()) };
    let mut lite = match lite {
        Ok(lite) => lite,
        Err(e) => return batch_failed(batch.len(), &e),
    };
    lite.set_prepared_statement_cache_capacity(STATEMENTS);
    write_all(&mut lite, batch, leases)
}

/// Writes `batch` in one `BEGIN IMMEDIATE` transaction: each commit in its own savepoint (a
/// conflict, duplicate, busy user or failing commit undoes only itself), each status update
/// as one statement. If the transaction itself fails, every write fails. The effects its
/// commits claimed ([`crate::CommitClaim`]) are leased just before the `COMMIT` makes them
/// visible, so no claim of another owner can take them first.
fn write_all(conn: &mut Connection, batch: &[Pending], leases: &Leases) -> Vec<Written> {
    let outer = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return batch_failed(batch.len(), &e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for pending in batch {
        results.push(match pending {
            Pending::Commit(checked, _) => {
                commit_in(&outer, &checked.commit, &checked.encoded).map(Wrote::Commit)
            }
            Pending::Effect(update, _) => update_effect(&outer, update).map(Wrote::Updated),
            Pending::PublishHost(limit, _) => publish_host_in(&outer, *limit).map(Wrote::Published),
        });
        if outer.is_autocommit() {
            // SQLite rolled the whole transaction back (I/O error, disk full): nothing of it
            // is written.
            return batch_failed(batch.len(), &"the transaction was rolled back");
        }
    }
    let leased = lease_claimed(batch, &results, leases);
    match outer.commit() {
        Ok(()) => results,
        Err(e) => {
            leases.forget(&leased);
            batch_failed(batch.len(), &e)
        }
    }
}

/// Leases the effects each commit of `batch` claimed to its claim's owner; returns the rows.
fn lease_claimed(
    batch: &[Pending],
    results: &[Written],
    leases: &Leases,
) -> Vec<(CallSessionId, u64)> {
    let mut all = Vec::new();
    for (pending, result) in batch.iter().zip(results) {
        let (Pending::Commit(checked, _), Ok(Wrote::Commit(outcome))) = (pending, result) else {
            continue;
        };
        let (Some(claim), CommitOutcome::Committed { claimed, .. }) =
            (&checked.commit.claim, outcome)
        else {
            continue;
        };
        let rows: Vec<_> = claimed
            .iter()
            .map(|seq| (checked.commit.session_id.clone(), *seq))
            .collect();
        leases.lease(&rows, &claim.owner, claim.until);
        all.extend(rows);
    }
    all
}

/// Column access on a rusqlite row, so the shared row mappers read it.
struct Lite<'a, 'b>(&'a rusqlite::Row<'b>);

impl RowExt for Lite<'_, '_> {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        Ok(self.0.get(column)?)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.0.get(column)?)
    }

    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.0.get(column)?)
    }

    fn opt_integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.0.get(column)?)
    }

    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.0.get(column)?)
    }

    fn real(&self, column: &str) -> Result<f64, StoreError> {
        Ok(self.0.get(column)?)
    }

    fn opt_real(&self, column: &str) -> Result<Option<f64>, StoreError> {
        Ok(self.0.get(column)?)
    }
}

fn current_version(tx: &Connection, id: &str) -> Result<Option<u64>, StoreError> {
    tx.prepare_cached("SELECT version FROM sessions WHERE id = ?")?
        .query_row([id], |row| row.get::<_, i64>(0))
        .optional()?
        .map(unsigned)
        .transpose()
}

fn active_of(tx: &Connection, user_id: &str) -> Result<Vec<ActiveCall>, StoreError> {
    let mut stmt = tx.prepare_cached(super::ACTIVE_SQL)?;
    let mut rows = stmt.query([user_id])?;
    let mut active = Vec::new();
    while let Some(row) = rows.next()? {
        active.push(active_from(&Lite(row))?);
    }
    Ok(active)
}

/// A savepoint through cached statements (rusqlite's own `Savepoint` prepares its `SAVEPOINT`
/// and `RELEASE` anew each time, a measurable share of a batch). Dropped without
/// [`Point::release`], it is rolled back.
struct Point<'c> {
    conn: &'c Connection,
    released: bool,
}

impl<'c> Point<'c> {
    fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        conn.prepare_cached("SAVEPOINT one_write")?.execute([])?;
        Ok(Self {
            conn,
            released: false,
        })
    }

    fn release(mut self) -> Result<(), StoreError> {
        self.conn.prepare_cached("RELEASE one_write")?.execute([])?;
        self.released = true;
        Ok(())
    }
}

impl Drop for Point<'_> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // If even this fails the transaction is broken, and `write_all` fails the batch.
        for sql in ["ROLLBACK TO one_write", "RELEASE one_write"] {
            if let Err(e) = self
                .conn
                .prepare_cached(sql)
                .and_then(|mut stmt| stmt.execute([]))
            {
                tracing::warn!(error = %e, "undoing a commit in its batch failed");
            }
        }
    }
}

/// Applies one commit (checked and encoded as `encoded`) inside `tx` (the batch's
/// transaction), in a savepoint of its own.
fn commit_in(
    tx: &Connection,
    commit: &Commit,
    encoded: &EncodedCommit,
) -> Result<CommitOutcome, StoreError> {
    let at = ms(commit.at)?;
    let deadline = opt_ms(commit.next_deadline)?;
    let n_effects = commit.effects.len() as i64;
    let sid = commit.session_id.as_str();
    let point = Point::begin(tx)?;

    if let Some(key) = &commit.dedupe_key {
        let fresh = tx
            .prepare_cached(
                "INSERT INTO processed_inputs (dedupe_key, session_id, processed_at) \
                 VALUES (?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
            )?
            .execute(params![key, sid, at])?;
        if fresh == 0 {
            return Ok(CommitOutcome::Duplicate);
        }
    }

    let (version, last_seq) = match commit.expected_version {
        None => {
            let created = tx
                .prepare_cached(
                    "INSERT INTO sessions (id, user_id, version, doc, state_label, \
                     next_deadline, closed, effect_seq, created_at, updated_at) \
                     VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![
                    sid,
                    commit.user_id.as_str(),
                    encoded.doc,
                    commit.state_label,
                    deadline,
                    commit.closed,
                    n_effects,
                    at,
                    at
                ])?;
            if created == 0 {
                let current_version = current_version(tx, sid)?;
                return Ok(CommitOutcome::Conflict { current_version });
            }
            (1, n_effects)
        }
        Some(expected) => {
            let row = tx
                .prepare_cached(
                    "UPDATE sessions SET version = version + 1, doc = ?, state_label = ?, \
                     next_deadline = ?, closed = ?, effect_seq = effect_seq + ?, \
                     updated_at = ? WHERE id = ? AND version = ? \
                     RETURNING version, effect_seq",
                )?
                .query_row(
                    params![
                        encoded.doc,
                        commit.state_label,
                        deadline,
                        commit.closed,
                        n_effects,
                        at,
                        sid,
                        int(expected)?
                    ],
                    |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
                )
                .optional()?;
            let Some(row) = row else {
                let current_version = current_version(tx, sid)?;
                return Ok(CommitOutcome::Conflict { current_version });
            };
            row
        }
    };

    for change in &commit.registry {
        match change {
            RegistryChange::Set(active) => {
                let current = active_of(tx, active.user_id.as_str())?;
                let other_call = current
                    .iter()
                    .any(|a| a.call_session_id != active.call_session_id);
                if other_call {
                    let call_waiting = tx
                        .prepare_cached("SELECT call_waiting FROM users WHERE id = ?")?
                        .query_row([active.user_id.as_str()], |row| row.get::<_, bool>(0))
                        .optional()?
                        .unwrap_or(false);
                    if !call_waiting {
                        return Ok(CommitOutcome::Busy { active: current });
                    }
                }
                tx.prepare_cached(
                    "INSERT INTO active_calls (user_id, call_session_id, device_id, \
                     started_at, platform, state, since) VALUES (?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (user_id, call_session_id) DO UPDATE SET \
                     device_id = excluded.device_id, started_at = excluded.started_at, \
                     platform = excluded.platform, state = excluded.state, \
                     since = excluded.since",
                )?
                .execute(params![
                    active.user_id.as_str(),
                    active.call_session_id.as_str(),
                    active.device_id.as_ref().map(DeviceId::as_str),
                    ms(active.started_at)?,
                    active.platform.as_deref(),
                    active.state.as_str(),
                    ms(active.since)?
                ])?;
            }
            RegistryChange::Clear {
                user_id,
                call_session_id,
            } => {
                tx.prepare_cached(
                    "DELETE FROM active_calls WHERE user_id = ? AND call_session_id = ?",
                )?
                .execute([user_id.as_str(), call_session_id.as_str()])?;
            }
        }
    }

    let first_seq = unsigned(last_seq - n_effects + 1)?;
    let effect_seqs: Vec<u64> = (first_seq..).take(encoded.effects.len()).collect();
    if !effect_seqs.is_empty() {
        // One multi-row statement for all of the commit's effects.
        let seqs = effect_seqs
            .iter()
            .map(|s| int(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let lanes: Vec<&str> = commit.effects.iter().map(|e| e.lane.as_str()).collect();
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(seqs.len() * 7);
        for (((seq, json), effect), lane) in seqs
            .iter()
            .zip(&encoded.effects)
            .zip(&commit.effects)
            .zip(&lanes)
        {
            values.extend([
                &sid as &dyn ToSql,
                seq,
                json,
                &at,
                lane,
                &at,
                &effect.order_key,
            ]);
        }
        tx.prepare_cached(&outbox_insert_sql('?', seqs.len()))?
            .execute(values.as_slice())?;
    }
    let claimed = match &commit.claim {
        Some(_) if !effect_seqs.is_empty() => tx
            .prepare_cached(&COMMIT_CLAIMABLE)?
            .query_map(params![sid, int(first_seq)?], |row| row.get::<_, i64>(0))?
            .map(|seq| unsigned(seq?))
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };

    for (call, quality) in commit.calls.iter().zip(&encoded.quality) {
        let written = tx.prepare_cached(&CALL_RECORD_UPSERT)?.execute(params![
            call.call_session_id.as_str(),
            call.user_id.as_str(),
            call.tenant_id.as_str(),
            call.direction.as_str(),
            call.from.as_str(),
            call.to.as_str(),
            call.status.as_str(),
            call.answered_device.as_ref().map(DeviceId::as_str),
            ms(call.started_at)?,
            opt_ms(call.answered_at)?,
            opt_ms(call.ended_at)?,
            call.hangup_cause.as_deref(),
            call.recording_url.as_deref(),
            quality.as_deref(),
            int(call.billable_seconds())?,
            int(call.billing_minutes())?,
            opt_ms(call.bridged_at)?
        ])?;
        if written == 0 {
            return Err(StoreError::invalid(
                "call record",
                format!("call {} belongs to another user", call.call_session_id),
            ));
        }
    }

    for bill in &commit.billing {
        // Written once: a redelivered or repeated final row leaves the first record.
        tx.prepare_cached(
            "INSERT INTO billing_records (call_session_id, user_id, tenant_id, unit, \
             quantity, billable_seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (call_session_id) DO NOTHING",
        )?
        .execute(params![
            bill.call_session_id.as_str(),
            bill.user_id.as_str(),
            bill.tenant_id.as_str(),
            bill.unit.as_str(),
            int(bill.quantity)?,
            int(bill.billable_seconds)?,
            ms(bill.created_at)?
        ])?;
    }

    for leg in &commit.legs {
        let written = tx.prepare_cached(&CALL_LEG_UPSERT)?.execute(params![
            leg.call_control_id.as_str(),
            leg.call_session_id.as_str(),
            leg.device_id.as_ref().map(DeviceId::as_str),
            leg.status.as_str(),
            ms(leg.started_at)?,
            opt_ms(leg.answered_at)?,
            opt_ms(leg.ended_at)?,
            leg.hangup_cause.as_deref()
        ])?;
        if written == 0 {
            return Err(StoreError::invalid(
                "leg record",
                format!("leg {} belongs to another call", leg.call_control_id),
            ));
        }
    }

    for (entry, detail) in commit.timeline.iter().zip(&encoded.details) {
        let session = entry.call_session_id.as_str();
        tx.prepare_cached(
            "INSERT INTO call_timeline (call_session_id, seq, at, source, device_id, kind, \
             from_state, to_state, detail) VALUES (?, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM call_timeline WHERE call_session_id = ?), \
             ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            session,
            session,
            ms(entry.at)?,
            entry.source.as_str(),
            entry.device_id.as_ref().map(DeviceId::as_str),
            entry.kind.as_str(),
            entry.from_state.as_deref(),
            entry.to_state.as_deref(),
            detail
        ])?;
    }

    point.release()?;
    Ok(CommitOutcome::Committed {
        version: unsigned(version)?,
        effect_seqs,
        claimed,
    })
}

/// Moves up to `limit` pending host events from the outbox to the event log inside `tx`, in
/// outbox order, in a savepoint of its own (an event that cannot be read undoes only this
/// write); returns how many moved.
fn publish_host_in(tx: &Connection, limit: u32) -> Result<u32, StoreError> {
    let point = Point::begin(tx)?;
    let rows = tx
        .prepare_cached(&PENDING_HOST_EVENTS)?
        .query_map(params![Lane::Host.as_str(), limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (id, effect, created_at) in &rows {
        let event = crate::webhook_store::logged_body(effect)?;
        tx.prepare_cached(&HOST_EVENT_INSERT)?.execute(params![
            event.event_id,
            event.event_type,
            event.body,
            created_at
        ])?;
        tx.prepare_cached("UPDATE outbox SET status = 'done' WHERE id = ?")?
            .execute([id])?;
    }
    point.release()?;
    Ok(rows.len() as u32)
}

/// Applies one status update inside `tx`. A single `UPDATE` needs no savepoint: SQLite undoes
/// a failing statement by itself. "No such effect" is told apart from "no longer pending"
/// (which changes nothing and is not an error). True when it marked a row done that held
/// back a pending row with its ordering key.
fn update_effect(tx: &Connection, update: &EffectUpdate) -> Result<bool, StoreError> {
    let seq = int(update.seq)?;
    let sid = update.session_id.as_str();
    let (changed, only_pending) = match &update.status {
        EffectStatus::Done => {
            let done: Option<Option<String>> = tx
                .prepare_cached(
                    "UPDATE outbox SET status = 'done' \
                     WHERE session_id = ? AND seq = ? AND status = 'pending' \
                     RETURNING order_key",
                )?
                .query_row(params![sid, seq], |row| row.get(0))
                .optional()?;
            if let Some(key) = done {
                return Ok(match key {
                    Some(key) => tx
                        .prepare_cached(
                            "SELECT 1 FROM outbox WHERE session_id = ? AND order_key = ? \
                             AND seq > ? AND status = 'pending'",
                        )?
                        .exists(params![sid, key, seq])?,
                    None => false,
                });
            }
            (0, true)
        }
        EffectStatus::Failed { error, retry_at } => (
            tx.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, \
                 next_attempt_at = ? WHERE session_id = ? AND seq = ? AND status = 'pending'",
            )?
            .execute(params![limits::truncate_error(error), retry_at, sid, seq])?,
            true,
        ),
        EffectStatus::Abandoned { error } => (
            tx.prepare_cached(
                "UPDATE outbox SET status = 'abandoned', last_error = ? \
                 WHERE session_id = ? AND seq = ? AND status = 'pending'",
            )?
            .execute(params![limits::truncate_error(error), sid, seq])?,
            true,
        ),
        EffectStatus::Deferred { until } => (
            tx.prepare_cached(
                "UPDATE outbox SET next_attempt_at = MAX(next_attempt_at, ?) \
                 WHERE session_id = ? AND seq = ?",
            )?
            .execute(params![until, sid, seq])?,
            false,
        ),
    };
    if changed > 0 {
        return Ok(false);
    }
    let exists = only_pending
        && tx
            .prepare_cached("SELECT 1 FROM outbox WHERE session_id = ? AND seq = ?")?
            .exists(params![sid, seq])?;
    if exists {
        Ok(false)
    } else {
        Err(StoreError::not_found(
            "effect",
            format!("{}#{}", update.session_id, update.seq),
        ))
    }
}
