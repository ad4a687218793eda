//! What the backends share: value codecs between domain types and column values, the column
//! lists the SQL backends select, row-to-struct mappers and argument binders that work with
//! any `sqlx` database, and history paging.

use ringmaster_core::{CallControlId, CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use serde_json::Value;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};
use std::str::FromStr;

use crate::directory::{Device, PushProvider, User};
use crate::error::StoreError;
use crate::history::{BillingRecord, CallRecord, HistoryCursor, LegRecord, Page, TimelineEntry};
use crate::registry::ActiveCall;
use crate::session::{Lane, OutboxEntry, StoredSession};

/// Columns of `users` that [`user_from`] reads.
pub(crate) const USER_COLUMNS: &str =
    "id, tenant_id, name, call_waiting, voicemail_enabled, created_at";

/// Columns of `devices` that [`device_from`] reads.
pub(crate) const DEVICE_COLUMNS: &str =
    "id, user_id, platform, sip_uri, token_hash, push_token, push_provider, revoked, created_at";

/// Columns of `call_records` that [`call_from`] reads.
pub(crate) const CALL_COLUMNS: &str =
    "call_session_id, user_id, tenant_id, direction, from_number, \
     to_number, status, answered_device, started_at, answered_at, ended_at, hangup_cause, \
     recording_url, quality, bridged_at";

/// A stored millisecond count as a timestamp.
pub(crate) fn ts(ms: i64) -> Result<Timestamp, StoreError> {
    u64::try_from(ms)
        .map(Timestamp::from_millis)
        .map_err(|_| StoreError::Corrupt(format!("negative timestamp {ms}")))
}

/// A nullable stored millisecond count as a timestamp.
pub(crate) fn opt_ts(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(ts).transpose()
}

/// A stored counter (version, sequence) as unsigned.
pub(crate) fn unsigned(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative counter {v}")))
}

/// An unsigned number as a column value.
///
/// Validated inputs never exceed `i64::MAX`; this guards the rest (sequence numbers).
pub(crate) fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::invalid("number", format!("{v} out of range")))
}

/// A timestamp as a millisecond column value.
pub(crate) fn ms(t: Timestamp) -> Result<i64, StoreError> {
    int(t.as_millis())
}

/// A nullable timestamp as a millisecond column value.
pub(crate) fn opt_ms(t: Option<Timestamp>) -> Result<Option<i64>, StoreError> {
    t.map(ms).transpose()
}

/// Stored JSON text as a value.
pub(crate) fn json(raw: &str) -> Result<Value, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

/// A stored enum name as its type; an unknown name means the database is corrupt.
pub(crate) fn parsed<T: FromStr<Err = StoreError>>(raw: &str) -> Result<T, StoreError> {
    raw.parse()
        .map_err(|e: StoreError| StoreError::Corrupt(e.to_string()))
}

/// Typed column access on any backend's row, so one mapper serves every SQL backend.
pub(crate) trait RowExt {
    /// A `TEXT NOT NULL` column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable `TEXT` column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// An `INTEGER`/`BIGINT NOT NULL` column.
    fn integer(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable `INTEGER`/`BIGINT` column.
    fn opt_integer(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A boolean column.
    fn flag(&self, column: &str) -> Result<bool, StoreError>;
    /// A `REAL`/`DOUBLE PRECISION NOT NULL` column.
    fn real(&self, column: &str) -> Result<f64, StoreError>;
    /// A nullable `REAL`/`DOUBLE PRECISION` column.
    fn opt_real(&self, column: &str) -> Result<Option<f64>, StoreError>;
}

impl<R> RowExt for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database>,
    String: Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database>,
    i64: Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database>,
    bool: Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database>,
    f64: Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn integer(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn flag(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn real(&self, column: &str) -> Result<f64, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_real(&self, column: &str) -> Result<Option<f64>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

/// A user from a row of [`USER_COLUMNS`] and its numbers (kept in another table).
pub(crate) fn user_from(row: &impl RowExt, numbers: Vec<String>) -> Result<User, StoreError> {
    Ok(User {
        id: UserId::new(row.text("id")?),
        tenant_id: TenantId::new(row.text("tenant_id")?),
        name: row.text("name")?,
        numbers,
        call_waiting: row.flag("call_waiting")?,
        voicemail_enabled: row.flag("voicemail_enabled")?,
        created_at: ts(row.integer("created_at")?)?,
    })
}

/// A device from a row of [`DEVICE_COLUMNS`].
pub(crate) fn device_from(row: &impl RowExt) -> Result<Device, StoreError> {
    Ok(Device {
        id: DeviceId::new(row.text("id")?),
        user_id: UserId::new(row.text("user_id")?),
        platform: parsed(&row.text("platform")?)?,
        sip_uri: row.text("sip_uri")?,
        token_hash: row.text("token_hash")?,
        push_token: row.opt_text("push_token")?,
        push_provider: row
            .opt_text("push_provider")?
            .as_deref()
            .map(parsed::<PushProvider>)
            .transpose()?,
        revoked: row.flag("revoked")?,
        created_at: ts(row.integer("created_at")?)?,
    })
}

/// A session from a `sessions` row (id, user_id, version, doc, state_label, next_deadline).
pub(crate) fn session_from(row: &impl RowExt) -> Result<StoredSession, StoreError> {
    Ok(StoredSession {
        id: CallSessionId::new(row.text("id")?),
        user_id: UserId::new(row.text("user_id")?),
        version: unsigned(row.integer("version")?)?,
        doc: json(&row.text("doc")?)?,
        next_deadline: opt_ts(row.opt_integer("next_deadline")?)?,
        state_label: row.text("state_label")?,
        quarantined: row.opt_integer("quarantined_at")?.is_some(),
    })
}

/// The `outbox` columns [`outbox_from`] reads (qualified by `o.`).
pub(crate) const OUTBOX_COLUMNS: &str = "o.session_id, o.seq, o.effect, o.attempts, \
     o.last_error, o.created_at, o.lane, o.next_attempt_at";

/// An outbox entry from an `outbox` row.
pub(crate) fn outbox_from(row: &impl RowExt) -> Result<OutboxEntry, StoreError> {
    let lane = row.text("lane")?;
    Ok(OutboxEntry {
        lane: Lane::from_name(&lane)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown outbox lane {lane:?}")))?,
        next_attempt_at: ts(row.integer("next_attempt_at")?.max(0))?,
        session_id: CallSessionId::new(row.text("session_id")?),
        seq: unsigned(row.integer("seq")?)?,
        effect: json(&row.text("effect")?)?,
        attempts: u32::try_from(unsigned(row.integer("attempts")?)?).unwrap_or(u32::MAX),
        last_error: row.opt_text("last_error")?,
        created_at: ts(row.integer("created_at")?)?,
    })
}

/// A due timer from a row of `sessions.id, sessions.next_deadline`.
pub(crate) fn due_from(row: &impl RowExt) -> Result<(CallSessionId, Timestamp), StoreError> {
    Ok((
        CallSessionId::new(row.text("id")?),
        ts(row.integer("next_deadline")?)?,
    ))
}

/// A registry entry from an `active_calls` row.
pub(crate) fn active_from(row: &impl RowExt) -> Result<ActiveCall, StoreError> {
    Ok(ActiveCall {
        user_id: UserId::new(row.text("user_id")?),
        call_session_id: CallSessionId::new(row.text("call_session_id")?),
        device_id: row.opt_text("device_id")?.map(DeviceId::new),
        started_at: ts(row.integer("started_at")?)?,
        platform: row.opt_text("platform")?,
        state: row
            .text("state")?
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("active_calls.state: {e}")))?,
        since: ts(row.integer("since")?)?,
    })
}

/// A call record from a row of [`CALL_COLUMNS`].
pub(crate) fn call_from(row: &impl RowExt) -> Result<CallRecord, StoreError> {
    Ok(CallRecord {
        call_session_id: CallSessionId::new(row.text("call_session_id")?),
        user_id: UserId::new(row.text("user_id")?),
        tenant_id: TenantId::new(row.text("tenant_id")?),
        direction: parsed(&row.text("direction")?)?,
        from: row.text("from_number")?,
        to: row.text("to_number")?,
        status: parsed(&row.text("status")?)?,
        answered_device: row.opt_text("answered_device")?.map(DeviceId::new),
        started_at: ts(row.integer("started_at")?)?,
        answered_at: opt_ts(row.opt_integer("answered_at")?)?,
        bridged_at: opt_ts(row.opt_integer("bridged_at")?)?,
        ended_at: opt_ts(row.opt_integer("ended_at")?)?,
        hangup_cause: row.opt_text("hangup_cause")?,
        recording_url: row.opt_text("recording_url")?,
        quality: row.opt_text("quality")?.as_deref().map(json).transpose()?,
    })
}

/// A leg record from a `call_legs` row.
pub(crate) fn leg_from(row: &impl RowExt) -> Result<LegRecord, StoreError> {
    Ok(LegRecord {
        call_control_id: CallControlId::new(row.text("call_control_id")?),
        call_session_id: CallSessionId::new(row.text("call_session_id")?),
        device_id: row.opt_text("device_id")?.map(DeviceId::new),
        status: row.text("status")?,
        started_at: ts(row.integer("started_at")?)?,
        answered_at: opt_ts(row.opt_integer("answered_at")?)?,
        ended_at: opt_ts(row.opt_integer("ended_at")?)?,
        hangup_cause: row.opt_text("hangup_cause")?,
    })
}

/// A timeline entry from a `call_timeline` row.
pub(crate) fn timeline_from(row: &impl RowExt) -> Result<TimelineEntry, StoreError> {
    Ok(TimelineEntry {
        call_session_id: CallSessionId::new(row.text("call_session_id")?),
        at: ts(row.integer("at")?)?,
        source: parsed(&row.text("source")?)?,
        device_id: row.opt_text("device_id")?.map(DeviceId::new),
        kind: row.text("kind")?,
        from_state: row.opt_text("from_state")?,
        to_state: row.opt_text("to_state")?,
        detail: json(&row.text("detail")?)?,
    })
}

/// A statement with positional arguments on any backend.
pub(crate) type Statement<'q, DB> = Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// Binds the columns of a `devices` insert: id, user_id, platform, sip_uri, token_hash,
/// push_token, push_provider, revoked, created_at.
pub(crate) fn bind_device<'q, DB>(
    query: Statement<'q, DB>,
    device: &'q Device,
) -> Result<Statement<'q, DB>, StoreError>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(device.id.as_str())
        .bind(device.user_id.as_str())
        .bind(device.platform.as_str())
        .bind(device.sip_uri.as_str())
        .bind(device.token_hash.as_str())
        .bind(device.push_token.as_deref())
        .bind(device.push_provider.map(PushProvider::as_str))
        .bind(device.revoked)
        .bind(ms(device.created_at)?))
}

/// Binds the columns of a `call_records` upsert: call_session_id, user_id, tenant_id,
/// direction, from_number, to_number, status, answered_device, started_at, answered_at,
/// ended_at, hangup_cause, recording_url, quality (encoded JSON), billable_seconds,
/// billing_minutes, bridged_at.
pub(crate) fn bind_call<'q, DB>(
    query: Statement<'q, DB>,
    call: &'q CallRecord,
    quality: Option<&'q str>,
) -> Result<Statement<'q, DB>, StoreError>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(call.call_session_id.as_str())
        .bind(call.user_id.as_str())
        .bind(call.tenant_id.as_str())
        .bind(call.direction.as_str())
        .bind(call.from.as_str())
        .bind(call.to.as_str())
        .bind(call.status.as_str())
        .bind(call.answered_device.as_ref().map(DeviceId::as_str))
        .bind(ms(call.started_at)?)
        .bind(opt_ms(call.answered_at)?)
        .bind(opt_ms(call.ended_at)?)
        .bind(call.hangup_cause.as_deref())
        .bind(call.recording_url.as_deref())
        .bind(quality)
        .bind(int(call.billable_seconds())?)
        .bind(int(call.billing_minutes())?)
        .bind(opt_ms(call.bridged_at)?))
}

/// A billing record from a `billing_records` row.
pub(crate) fn billing_from(row: &impl RowExt) -> Result<BillingRecord, StoreError> {
    Ok(BillingRecord {
        call_session_id: CallSessionId::new(row.text("call_session_id")?),
        user_id: UserId::new(row.text("user_id")?),
        tenant_id: TenantId::new(row.text("tenant_id")?),
        unit: row.text("unit")?,
        quantity: unsigned(row.integer("quantity")?)?,
        billable_seconds: unsigned(row.integer("billable_seconds")?)?,
        created_at: ts(row.integer("created_at")?)?,
    })
}

/// The columns [`billing_from`] reads.
pub(crate) const BILLING_COLUMNS: &str =
    "call_session_id, user_id, tenant_id, unit, quantity, billable_seconds, created_at";

/// Binds the columns of a `billing_records` insert: call_session_id, user_id, tenant_id, unit,
/// quantity, billable_seconds, created_at.
pub(crate) fn bind_billing<'q, DB>(
    query: Statement<'q, DB>,
    bill: &'q BillingRecord,
) -> Result<Statement<'q, DB>, StoreError>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(bill.call_session_id.as_str())
        .bind(bill.user_id.as_str())
        .bind(bill.tenant_id.as_str())
        .bind(bill.unit.as_str())
        .bind(int(bill.quantity)?)
        .bind(int(bill.billable_seconds)?)
        .bind(ms(bill.created_at)?))
}

/// Binds the columns of a `call_legs` upsert: call_control_id, call_session_id, device_id,
/// status, started_at, answered_at, ended_at, hangup_cause.
pub(crate) fn bind_leg<'q, DB>(
    query: Statement<'q, DB>,
    leg: &'q LegRecord,
) -> Result<Statement<'q, DB>, StoreError>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(leg.call_control_id.as_str())
        .bind(leg.call_session_id.as_str())
        .bind(leg.device_id.as_ref().map(DeviceId::as_str))
        .bind(leg.status.as_str())
        .bind(ms(leg.started_at)?)
        .bind(opt_ms(leg.answered_at)?)
        .bind(opt_ms(leg.ended_at)?)
        .bind(leg.hangup_cause.as_deref()))
}

/// Binds the columns of a `call_timeline` insert that follow the session id (which each
/// backend binds itself): at, source, device_id, kind, from_state, to_state, detail.
pub(crate) fn bind_timeline_tail<'q, DB>(
    query: Statement<'q, DB>,
    entry: &'q TimelineEntry,
    detail: &'q str,
) -> Result<Statement<'q, DB>, StoreError>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(ms(entry.at)?)
        .bind(entry.source.as_str())
        .bind(entry.device_id.as_ref().map(DeviceId::as_str))
        .bind(entry.kind.as_str())
        .bind(entry.from_state.as_deref())
        .bind(entry.to_state.as_deref())
        .bind(detail))
}

/// A history page from the first `limit` records of an over-fetched listing; `more` says
/// whether the listing had another record after them.
pub(crate) fn call_page(items: Vec<CallRecord>, more: bool) -> Page<CallRecord> {
    let next_cursor = match items.last() {
        Some(last) if more => Some(HistoryCursor::after(last).to_string()),
        _ => None,
    };
    Page { items, next_cursor }
}

/// A positional parameter: `?N` for SQLite, `$N` for PostgreSQL.
fn param(p: char, n: usize) -> String {
    format!("{p}{n}")
}

/// `n` positional parameters, comma-separated.
fn params_list(p: char, n: usize) -> String {
    (1..=n).map(|i| param(p, i)).collect::<Vec<_>>().join(", ")
}

/// The host-event relay's read: the oldest pending host-lane outbox rows (id, effect,
/// created_at), through the pending-rows index; binds the lane and the limit.
pub(crate) fn pending_host_events_sql(p: char) -> String {
    format!(
        "SELECT id, effect, created_at FROM outbox WHERE status = 'pending' \
         AND lane = {} ORDER BY id LIMIT {}",
        param(p, 1),
        param(p, 2)
    )
}

/// One event into the host-event log, once per `event_id`; binds event_id, event_type, body
/// and created_at.
pub(crate) fn host_event_insert_sql(p: char) -> String {
    format!(
        "INSERT INTO host_events (event_id, event_type, body, created_at) \
         VALUES ({}, {}, {}, {}) ON CONFLICT (event_id) DO NOTHING",
        param(p, 1),
        param(p, 2),
        param(p, 3),
        param(p, 4)
    )
}

/// Upsert of one call record on its `call_session_id`, binding its 17 columns in the order
/// listed; a record of another user is left alone. `p` is the parameter sigil (`?` or `$`).
pub(crate) fn call_record_upsert_sql(p: char) -> String {
    format!(
        "INSERT INTO call_records (call_session_id, user_id, tenant_id, direction, \
         from_number, to_number, status, answered_device, started_at, answered_at, \
         ended_at, hangup_cause, recording_url, quality, billable_seconds, \
         billing_minutes, bridged_at) VALUES ({}) \
         ON CONFLICT (call_session_id) DO UPDATE SET \
         tenant_id = excluded.tenant_id, direction = excluded.direction, \
         from_number = excluded.from_number, to_number = excluded.to_number, \
         status = excluded.status, answered_device = excluded.answered_device, \
         started_at = excluded.started_at, answered_at = excluded.answered_at, \
         ended_at = excluded.ended_at, hangup_cause = excluded.hangup_cause, \
         recording_url = excluded.recording_url, quality = excluded.quality, \
         billable_seconds = excluded.billable_seconds, \
         billing_minutes = excluded.billing_minutes, bridged_at = excluded.bridged_at \
         WHERE call_records.user_id = excluded.user_id",
        params_list(p, 17)
    )
}

/// Upsert of one call leg on its `call_control_id`, binding its 8 columns in the order
/// listed; a leg of another call is left alone. `p` is the parameter sigil (`?` or `$`).
pub(crate) fn call_leg_upsert_sql(p: char) -> String {
    format!(
        "INSERT INTO call_legs (call_control_id, call_session_id, device_id, status, \
         started_at, answered_at, ended_at, hangup_cause) VALUES ({}) \
         ON CONFLICT (call_control_id) DO UPDATE SET \
         device_id = excluded.device_id, status = excluded.status, \
         started_at = excluded.started_at, answered_at = excluded.answered_at, \
         ended_at = excluded.ended_at, hangup_cause = excluded.hangup_cause \
         WHERE call_legs.call_session_id = excluded.call_session_id",
        params_list(p, 8)
    )
}

/// Columns of one outbox row written by [`outbox_insert_sql`].
const OUTBOX_INSERT_COLUMNS: usize = 7;

/// One multi-row `INSERT` of `rows` outbox rows; each row binds session id, seq, effect,
/// created_at, lane, next_attempt_at and order_key. `p` is the parameter sigil (`?` or `$`).
pub(crate) fn outbox_insert_sql(p: char, rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO outbox (session_id, seq, effect, created_at, lane, next_attempt_at, \
         order_key) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let first = row * OUTBOX_INSERT_COLUMNS + 1;
        let params: Vec<String> = (first..first + OUTBOX_INSERT_COLUMNS)
            .map(|n| param(p, n))
            .collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    sql
}

/// The order a lane's due rows are taken in: earliest due first, ties in commit order (a fresh
/// row is due from its commit, so fresh rows go in commit order). It is the `outbox_due`
/// index's own order after the lane, so a claim reads its `limit` rows off the index and stops:
/// in commit order (`o.id` alone) SQLite had to visit and sort every due row of the lane on
/// every claim, and a burst of new calls leaves thousands of due dials behind.
const DUE_ORDER: &str = "o.next_attempt_at, o.id";

/// Due effects of one lane: binds lane, now and limit. A row with an ordering key waits for
/// every earlier pending row with the same session and key; releases of quarantined sessions
/// still go out, nothing else of theirs does.
pub(crate) fn due_effects_sql(p: char) -> String {
    let (lane, now, limit) = (param(p, 1), param(p, 2), param(p, 3));
    format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE {} ORDER BY {DUE_ORDER} LIMIT {limit}",
        due_condition(&lane, &now)
    )
}

/// Ids of the effects [`due_effects_sql`] would return, minus rows whose lease another owner
/// holds past `now`: binds lane, now, limit and owner. Rows the owner leased itself are
/// claimable again (its own drain skips what it has in flight; a restart under the same id
/// takes its rows back at once).
pub(crate) fn claimable_ids_sql(p: char) -> String {
    let (lane, now, limit, owner) = (param(p, 1), param(p, 2), param(p, 3), param(p, 4));
    format!(
        "SELECT o.id FROM outbox o WHERE {} \
         AND (o.lease_until IS NULL OR o.lease_until <= {now} OR o.lease_owner = {owner}) \
         ORDER BY {DUE_ORDER} LIMIT {limit}",
        due_condition(&lane, &now)
    )
}

/// Due effects of several lanes in one read: the rows [`due_effects_sql`] returns for each
/// lane, one `UNION ALL` member per lane (each with its own limit, so the plan per lane is
/// that of the one-lane read). Binds now, then lane and limit for each of `lanes` lanes.
/// Each row carries `claim_lane` (the lane's index in the bind order) and `claim_id` (its
/// outbox id) for the caller to order by (with `next_attempt_at`, as [`DUE_ORDER`]): no sort of
/// the whole union in SQL.
pub(crate) fn due_effects_all_sql(p: char, lanes: usize) -> String {
    let now = param(p, 1);
    let members: Vec<String> = (0..lanes)
        .map(|i| {
            let (lane, limit) = (param(p, 2 + 2 * i), param(p, 3 + 2 * i));
            format!(
                "SELECT * FROM (SELECT {OUTBOX_COLUMNS}, o.id AS claim_id, {i} AS claim_lane \
                 FROM outbox o WHERE {} ORDER BY {DUE_ORDER} LIMIT {limit})",
                due_condition(&lane, &now)
            )
        })
        .collect();
    members.join(" UNION ALL ")
}

/// The PostgreSQL claim of several lanes in one statement: each lane's claimable ids (as
/// [`claimable_ids_sql`], locked with `FOR UPDATE SKIP LOCKED`) in a CTE of its own, then one
/// `UPDATE` leasing them all. Binds now, owner, lease_until, then lane and limit for each of
/// `lanes` lanes. `RETURNING` has no order: the caller sorts.
pub(crate) fn claim_all_sql(lanes: usize) -> String {
    let (now, owner, until) = (param('$', 1), param('$', 2), param('$', 3));
    let ctes: Vec<String> = (0..lanes)
        .map(|i| {
            let (lane, limit) = (param('$', 4 + 2 * i), param('$', 5 + 2 * i));
            format!(
                "l{i} AS (SELECT o.id FROM outbox o WHERE {} \
                 AND (o.lease_until IS NULL OR o.lease_until <= {now} OR o.lease_owner = {owner}) \
                 ORDER BY {DUE_ORDER} LIMIT {limit} FOR UPDATE OF o SKIP LOCKED)",
                due_condition(&lane, &now)
            )
        })
        .collect();
    let ids: Vec<String> = (0..lanes).map(|i| format!("SELECT id FROM l{i}")).collect();
    format!(
        "WITH {} UPDATE outbox AS o SET lease_owner = {owner}, lease_until = {until} \
         WHERE o.id IN ({}) RETURNING {OUTBOX_COLUMNS}, o.id",
        ctes.join(", "),
        ids.join(" UNION ALL ")
    )
}

/// The `WHERE` of a due effect of `lane` at `now` (both parameter placeholders).
fn due_condition(lane: &str, now: &str) -> String {
    format!("o.status = 'pending' AND o.lane = {lane} AND o.next_attempt_at <= {now} AND {READY}")
}

/// What makes a pending effect `o` claimable besides its lane and time: no earlier pending
/// effect of its session with its ordering key, and a session not quarantined (releases
/// excepted).
const READY: &str = "(o.order_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox e \
     WHERE e.session_id = o.session_id AND e.order_key = o.order_key \
     AND e.status = 'pending' AND e.seq < o.seq)) \
     AND (o.lane = 'release' OR NOT EXISTS (SELECT 1 FROM sessions s \
     WHERE s.id = o.session_id AND s.quarantined_at IS NOT NULL))";

/// The sequence numbers of a commit's own effects that a claim could take at once (see
/// [`crate::CommitClaim`]), read inside the commit: binds the session id and the commit's
/// first sequence number. Its rows are fresh, so pending and due.
pub(crate) fn commit_claimable_sql(p: char) -> String {
    let (session, first) = (param(p, 1), param(p, 2));
    format!(
        "SELECT o.seq FROM outbox o WHERE o.session_id = {session} AND o.seq >= {first} \
         AND o.lane <> 'host' AND {READY} ORDER BY o.seq"
    )
}

/// The PostgreSQL lease of what [`commit_claimable_sql`] selects: binds the session id, the
/// first sequence number, the owner and the lease's end; returns the leased sequence
/// numbers (in no order).
pub(crate) fn commit_claim_sql() -> String {
    let (session, first, owner, until) =
        (param('$', 1), param('$', 2), param('$', 3), param('$', 4));
    format!(
        "UPDATE outbox AS o SET lease_owner = {owner}, lease_until = {until} \
         WHERE o.session_id = {session} AND o.seq >= {first} AND o.lane <> 'host' AND {READY} \
         RETURNING o.seq"
    )
}

/// The retention deletes, each binding one cut-off time: finished outbox rows, dedupe keys,
/// closed sessions with nothing pending.
pub(crate) fn prune_sql(p: char) -> [String; 3] {
    let cutoff = param(p, 1);
    [
        format!("DELETE FROM outbox WHERE status <> 'pending' AND created_at < {cutoff}"),
        format!("DELETE FROM processed_inputs WHERE processed_at < {cutoff}"),
        format!(
            "DELETE FROM sessions WHERE closed AND quarantined_at IS NULL \
             AND next_deadline IS NULL AND updated_at < {cutoff} \
             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.session_id = sessions.id \
                             AND o.status = 'pending')"
        ),
    ]
}

/// The history deletes for calls started before a cut-off (bound once each): timeline and
/// legs first, the call records last (whose count is reported).
pub(crate) fn prune_history_sql(p: char) -> [String; 3] {
    let old = format!(
        "SELECT call_session_id FROM call_records WHERE started_at < {}",
        param(p, 1)
    );
    [
        format!("DELETE FROM call_timeline WHERE call_session_id IN ({old})"),
        format!("DELETE FROM call_legs WHERE call_session_id IN ({old})"),
        format!(
            "DELETE FROM call_records WHERE started_at < {}",
            param(p, 1)
        ),
    ]
}
