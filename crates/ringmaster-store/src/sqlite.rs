//! The embedded SQLite backend (WAL mode): the default for a single `ringmaster` process.
//!
//! Session commits and outbox status updates go through a group writer: the writes queued
//! while one transaction runs are written together in the next, each commit in its own
//! savepoint (so compare-and-set, dedupe and the registry are still checked per commit, and a
//! conflict undoes only that commit), and every caller is answered after the transaction is
//! committed. For a database file the group writer is a thread with a connection of its own,
//! which keeps its statements prepared; every other write (admin, pruning, quality, webhook
//! bookkeeping) goes through sqlx on the writer pool's one connection. The two take turns through the
//! store's write gate, so within the process they never meet SQLite's busy handler. Reads use
//! a small separate pool and see the last committed state (WAL readers do not block writers).
//! The WAL is checkpointed by a thread of its own, not inside a commit.

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, DeviceId, Timestamp, UserId};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex, OwnedMutexGuard};

use crate::codec::{
    self, active_from, billing_from, bind_device, call_from, call_page, device_from,
    due_effects_sql, due_from, int, leg_from, ms, outbox_from, prune_history_sql, prune_sql,
    session_from, timeline_from, unsigned, RowExt, BILLING_COLUMNS, CALL_COLUMNS, DEVICE_COLUMNS,
    OUTBOX_COLUMNS, USER_COLUMNS,
};
use crate::directory::{Device, PushProvider, User, UserSettings};
use crate::directory_cache::DirectoryCache;
use crate::error::StoreError;
use crate::history::{CallDetail, CallRecord, HistoryCursor, Page, TimelineEntry};
use crate::limits;
use crate::registry::ActiveCall;
use crate::session::{Commit, CommitOutcome, Lane, OutboxEntry, Pruned, Retention, StoredSession};
use crate::Store;

mod checkpoint;
mod group;
mod leases;
mod ops;
mod webhooks;
mod writer;

use checkpoint::{Checkpointer, BACKSTOP_PAGES};
use group::{
    group_gone, Checked, EffectStatus, EffectUpdate, Pending, Queued, Writer, WriterConn, QUEUE,
};
use leases::Leases;
use writer::Opener;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read connections for a file database.
const READERS: u32 = 4;
/// Bytes of the database file each reader maps (`PRAGMA mmap_size`).
const READER_MMAP: u64 = 256 << 20;

/// How hard SQLite pushes each commit to disk (`PRAGMA synchronous`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// Every commit is on disk before it is acknowledged: an acknowledged webhook survives a
    /// power loss (Telnyx does not resend one we answered 200).
    #[default]
    Full,
    /// WAL + NORMAL: survives a process crash, but an OS crash or power loss can lose the
    /// last commits.
    Normal,
}

impl std::str::FromStr for SqliteSync {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(StoreError::invalid("sqlite sync", "must be full or normal")),
        }
    }
}

impl SqliteSync {
    fn pragma(self) -> SqliteSynchronous {
        match self {
            Self::Full => SqliteSynchronous::Full,
            Self::Normal => SqliteSynchronous::Normal,
        }
    }
}

/// A [`Store`] in an SQLite database file (or `sqlite::memory:`).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    /// The queue of the group writer every session commit goes through.
    group: mpsc::Sender<Queued>,
    /// Users by number and devices by user; this process is the only writer of them.
    directory: Arc<DirectoryCache>,
    /// Outbox and timer leases, in memory (one process per file).
    leases: Arc<Leases>,
    /// Held by every write transaction through `writer`, and by the group writer for each
    /// batch when it has a connection of its own: the two take turns (see
    /// [`group::WriterConn::Owned`]).
    gate: Arc<Mutex<()>>,
    /// The group writer, until the store is closed.
    group_task: Arc<std::sync::Mutex<Option<Writer>>>,
    /// The WAL checkpoint thread of a database file, until the store is closed.
    checkpointer: Arc<std::sync::Mutex<Option<Checkpointer>>>,
}

/// A write transaction on the writer pool, holding the store's write turn until it ends.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl WriteTx {
    /// Commits the transaction, then gives the turn back.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl SqliteStore {
    /// Opens (creating file, parent directory and schema as needed) the database at `url`,
    /// e.g. `sqlite://data/ringmaster.db` or `sqlite::memory:`, and applies pending migrations.
    /// Commits are fully synchronous ([`SqliteSync::Full`]).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, SqliteSync::default()).await
    }

    /// Like [`SqliteStore::open`] with the given durability. A directory it creates is
    /// private to the owner (0700) and so is the database file (0600), since it holds token
    /// hashes and call history.
    pub async fn open_with(url: &str, sync: SqliteSync) -> Result<Self, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::invalid(
                "database url",
                "an SQLite URL starts with `sqlite:` (e.g. sqlite://data/ringmaster.db)",
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::invalid("database url", e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync.pragma())
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");

        if in_memory {
            // Each connection to `:memory:` would be a separate database: keep exactly one
            // connection alive for the lifetime of the store.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            let writer = WriterConn::Borrowed(pool.clone());
            return Self::with_pools(
                pool.clone(),
                pool,
                writer,
                Arc::default(),
                Leases::for_file(None),
                None,
            );
        }

        private_file(options.get_filename())?;
        let path = options.get_filename().to_owned();
        let leases = Leases::for_file(options.get_filename().to_str());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // The group writer takes the connection for every batch: a ping each time would
            // be one more round trip to sqlx's worker per batch, for a local file.
            .test_before_acquire(false)
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", BACKSTOP_PAGES.to_string()),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        // Readers map the file: every batch moves the WAL on, which empties each reader's
        // page cache, and without the map every page it needs again is a `pread` copy.
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(
                options
                    .create_if_missing(false)
                    .pragma("mmap_size", READER_MMAP.to_string()),
            )
            .await?;
        let opener = Arc::new(Opener {
            path,
            sync,
            busy_timeout: BUSY_TIMEOUT,
        });
        let gate: Arc<Mutex<()>> = Arc::default();
        let (own, checkpointer) = tokio::task::spawn_blocking({
            let opener = Arc::clone(&opener);
            let gate = Arc::clone(&gate);
            move || -> Result<_, StoreError> {
                let own = opener.open_own()?;
                let checkpointer = Checkpointer::start(opener.open()?, gate)?;
                Ok((own, checkpointer))
            }
        })
        .await
        .map_err(|e| StoreError::Backend(sqlx::Error::Io(std::io::Error::other(e))))??;
        let group = WriterConn::Owned {
            conn: own,
            opener,
            gate: Arc::clone(&gate),
        };
        Self::with_pools(writer, reader, group, gate, leases, Some(checkpointer))
    }

    /// The `PRAGMA synchronous` level writes run with (0 off, 1 normal, 2 full, 3 extra).
    pub async fn synchronous(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&self.writer)
            .await?)
    }

    /// The store over its pools, with its group writer started on `group`.
    fn with_pools(
        writer: SqlitePool,
        reader: SqlitePool,
        group: WriterConn,
        gate: Arc<Mutex<()>>,
        leases: Arc<Leases>,
        checkpointer: Option<Checkpointer>,
    ) -> Result<Self, StoreError> {
        let (queue_tx, queue) = mpsc::channel(QUEUE);
        let task = Writer::start(group, leases.clone(), queue)?;
        Ok(Self {
            writer,
            reader,
            group: queue_tx,
            directory: Arc::default(),
            leases,
            gate,
            group_task: Arc::new(std::sync::Mutex::new(Some(task))),
            checkpointer: Arc::new(std::sync::Mutex::new(checkpointer)),
        })
    }

    /// A write transaction on the writer pool, in the store's write turn.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let turn = Arc::clone(&self.gate).lock_owned().await;
        // IMMEDIATE takes the write lock up front, so a read-then-write transaction can never
        // fail half-way with SQLITE_BUSY when another process writes.
        let tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: turn })
    }

    /// Runs one write statement on the writer pool, in the store's write turn.
    pub(crate) async fn execute_write<'q>(
        &self,
        query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<u64, StoreError> {
        let _turn = self.gate.lock().await;
        Ok(query.execute(&self.writer).await?.rows_affected())
    }

    async fn load_user(
        conn: &mut sqlx::SqliteConnection,
        row: Option<SqliteRow>,
    ) -> Result<Option<User>, StoreError> {
        let Some(row) = row else { return Ok(None) };
        let id = row.text("id")?;
        let numbers = sqlx::query_scalar::<_, String>(
            "SELECT number FROM user_numbers WHERE user_id = ? ORDER BY position",
        )
        .bind(&id)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(codec::user_from(&row, numbers)?))
    }

    /// The user matching `condition`, which has exactly one `?` bound to `value`.
    async fn user_where(&self, condition: &str, value: &str) -> Result<Option<User>, StoreError> {
        let mut tx = self.reader.begin().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {condition}");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&mut *tx)
            .await?;
        let user = Self::load_user(&mut tx, row).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Queues an outbox status update for the group writer and waits until it is durable.
    ///
    /// Waiting costs the dispatcher little (the update shares its batch's fsync with every
    /// commit queued meanwhile) and keeps the lease right: it is released only once the row
    /// reads as updated, so this node never re-claims an effect it has just delivered.
    async fn update_effect(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        status: EffectStatus,
    ) -> Result<bool, StoreError> {
        int(seq)?;
        let update = EffectUpdate {
            session_id: session_id.clone(),
            seq,
            status,
        };
        self.through_group(|reply| Pending::Effect(update, reply))
            .await
    }

    /// Queues one write for the group writer and waits for its answer.
    async fn through_group<T>(
        &self,
        write: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Pending,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.group
            .send(write(reply).into())
            .await
            .map_err(|_| group_gone())?;
        answer.await.map_err(|_| group_gone())?
    }
}

/// What `slot` holds, leaving it empty (the first `close` of a store's clones takes it).
fn take<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// Waits for `thread` to end without holding up an async worker.
async fn join_thread(thread: std::thread::JoinHandle<()>) {
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
}

fn io_error(what: &str, path: &std::path::Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(sqlx::Error::Io(std::io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    )))
}

/// Creates the database's directory (0700) and file (0600) before SQLite does, so neither is
/// ever readable by other users; an existing file readable by others is tightened. SQLite
/// gives its `-wal` and `-shm` files the database file's mode.
pub(crate) fn private_file(path: &std::path::Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o700);
            }
            builder
                .create(dir)
                .map_err(|e| io_error("creating", dir, e))?;
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options
        .open(path)
        .map_err(|e| io_error("creating", path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = file.metadata().map_err(|e| io_error("reading", path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "database file was readable by others; setting it to 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_error("restricting", path, e))?;
        }
    }
    drop(file);
    Ok(())
}

const ACTIVE_SQL: &str = "SELECT user_id, call_session_id, device_id, started_at, platform, \
     state, since \
     FROM active_calls WHERE user_id = ? ORDER BY started_at, call_session_id";

impl SqliteStore {
    /// How many outbox rows owners other than `owner` hold past `now` (leases run out are
    /// dropped): a claim reads past them, so they do not use up its limit.
    fn leases_held(&self, owner: &str, now: Timestamp) -> usize {
        let mut leases = self.leases.outbox();
        leases.retain(|_, (_, until)| *until > now);
        leases
            .values()
            .filter(|(holder, _)| holder != owner)
            .count()
    }
}

/// The directory as stored; the trait methods add the cache.
impl SqliteStore {
    async fn create_user_db(&self, user: User) -> Result<User, StoreError> {
        limits::user(&user)?;
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, tenant_id, name, call_waiting, voicemail_enabled, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
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
                "INSERT INTO user_numbers (number, user_id, position) VALUES (?, ?, ?) \
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

    async fn update_user_settings_db(
        &self,
        id: &UserId,
        settings: UserSettings,
    ) -> Result<User, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE users SET call_waiting = ?, voicemail_enabled = ? WHERE id = ? \
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

    async fn create_device_db(&self, device: Device) -> Result<Device, StoreError> {
        limits::device(&device)?;
        let mut tx = self.begin_write().await?;
        let user_exists = sqlx::query("SELECT 1 FROM users WHERE id = ?")
            .bind(device.user_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !user_exists {
            return Err(StoreError::not_found("user", device.user_id.as_str()));
        }
        let insert = sqlx::query(
            "INSERT INTO devices (id, user_id, platform, sip_uri, token_hash, push_token, \
             push_provider, revoked, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
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

    async fn set_push_token_db(
        &self,
        id: &DeviceId,
        provider: PushProvider,
        token: &str,
    ) -> Result<(), StoreError> {
        limits::push_token(token)?;
        let mut tx = self.begin_write().await?;
        let changed =
            sqlx::query("UPDATE devices SET push_token = ?, push_provider = ? WHERE id = ?")
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
             WHERE push_token = ? AND id <> ?",
        )
        .bind(token)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn clear_push_token_db(&self, id: &DeviceId, token: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let cleared = sqlx::query(
            "UPDATE devices SET push_token = NULL, push_provider = NULL \
             WHERE id = ? AND push_token = ?",
        )
        .bind(id.as_str())
        .bind(token)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !cleared {
            let exists = sqlx::query("SELECT 1 FROM devices WHERE id = ?")
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

    async fn revoke_device_db(&self, id: &DeviceId) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query("UPDATE devices SET revoked = 1 WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::not_found("device", id.as_str()));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_number_db(&self, number: &str) -> Result<Option<User>, StoreError> {
        self.user_where(
            "id = (SELECT user_id FROM user_numbers WHERE number = ?)",
            number,
        )
        .await
    }

    async fn devices_of_user_db(&self, user_id: &UserId) -> Result<Vec<Device>, StoreError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ? ORDER BY created_at, id"
        );
        sqlx::query(&sql)
            .bind(user_id.as_str())
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(device_from)
            .collect()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: User) -> Result<User, StoreError> {
        let result = self.create_user_db(user).await;
        self.directory.invalidate();
        result
    }

    async fn update_user_settings(
        &self,
        id: &UserId,
        settings: UserSettings,
    ) -> Result<User, StoreError> {
        let result = self.update_user_settings_db(id, settings).await;
        self.directory.invalidate();
        result
    }

    async fn create_device(&self, device: Device) -> Result<Device, StoreError> {
        let result = self.create_device_db(device).await;
        self.directory.invalidate();
        result
    }

    async fn set_push_token(
        &self,
        id: &DeviceId,
        provider: PushProvider,
        token: &str,
    ) -> Result<(), StoreError> {
        let result = self.set_push_token_db(id, provider, token).await;
        self.directory.invalidate();
        result
    }

    async fn clear_push_token(&self, id: &DeviceId, token: &str) -> Result<bool, StoreError> {
        let result = self.clear_push_token_db(id, token).await;
        self.directory.invalidate();
        result
    }

    async fn revoke_device(&self, id: &DeviceId) -> Result<(), StoreError> {
        let result = self.revoke_device_db(id).await;
        self.directory.invalidate();
        result
    }

    async fn set_device_token(&self, id: &DeviceId, token_hash: &str) -> Result<(), StoreError> {
        limits::text("token hash", token_hash, limits::MAX_TOKEN_HASH_LEN)?;
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query("UPDATE devices SET token_hash = ? WHERE id = ?")
            .bind(token_hash)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Err(StoreError::not_found("device", id.as_str()));
        }
        tx.commit().await?;
        self.directory.invalidate();
        Ok(())
    }

    async fn unfinished_calls(&self, user_id: &UserId) -> Result<u64, StoreError> {
        let [a, b, c] = crate::UNFINISHED_STATUSES.map(|s| s.as_str());
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM call_records WHERE user_id = ? AND status IN (?, ?, ?)",
        )
        .bind(user_id.as_str())
        .bind(a)
        .bind(b)
        .bind(c)
        .fetch_one(&self.reader)
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
        let mut tx = self.reader.begin().await?;
        let owned =
            sqlx::query("SELECT 1 FROM call_records WHERE call_session_id = ? AND user_id = ?")
                .bind(call_session_id.as_str())
                .bind(user_id.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        if !owned {
            return Ok(None);
        }
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM call_timeline WHERE call_session_id = ?")
                .bind(call_session_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
        let page = sqlx::query(
            "SELECT call_session_id, at, source, device_id, kind, from_state, to_state, detail \
             FROM call_timeline WHERE call_session_id = ? ORDER BY seq LIMIT ? OFFSET ?",
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

    async fn user_by_number(&self, number: &str) -> Result<Option<User>, StoreError> {
        if let Some(user) = self.directory.user_by_number(number) {
            return Ok(user);
        }
        let generation = self.directory.generation();
        let user = self.user_by_number_db(number).await?;
        self.directory
            .put_user_by_number(generation, number, user.clone());
        Ok(user)
    }

    async fn devices_of_user(&self, user_id: &UserId) -> Result<Vec<Device>, StoreError> {
        if let Some(devices) = self.directory.devices_of_user(user_id) {
            return Ok(devices);
        }
        let generation = self.directory.generation();
        let devices = self.devices_of_user_db(user_id).await?;
        self.directory
            .put_devices(generation, user_id, devices.clone());
        Ok(devices)
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.user_where("id = ?", id.as_str()).await
    }

    async fn devices_by_sip_uri(&self, sip_uri: &str) -> Result<Vec<Device>, StoreError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE sip_uri = ? ORDER BY created_at, id"
        );
        sqlx::query(&sql)
            .bind(sip_uri)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(device_from)
            .collect()
    }

    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?");
        sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(device_from)
            .transpose()
    }

    async fn load_session(&self, id: &CallSessionId) -> Result<Option<StoredSession>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, user_id, version, doc, state_label, next_deadline, quarantined_at FROM sessions \
             WHERE id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(session_from(&row)?))
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        let checked = Checked::new(commit)?;
        self.through_group(|reply| Pending::Commit(checked, reply))
            .await
    }

    async fn commit_batch(&self, commits: Vec<Commit>) -> Vec<Result<CommitOutcome, StoreError>> {
        // Queued back to back, they are written together unless the queue is long.
        let mut outcomes = Vec::with_capacity(commits.len());
        for commit in commits {
            let (reply, outcome) = oneshot::channel();
            outcomes.push(outcome);
            match Checked::new(commit) {
                Ok(checked) => {
                    // A writer gone drops the reply, which the wait below reports.
                    let _ = self
                        .group
                        .send(Pending::Commit(checked, reply).into())
                        .await;
                }
                // Refused before the batch: it writes nothing and fails alone.
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        let mut answered = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            answered.push(outcome.await.unwrap_or_else(|_| Err(group_gone())));
        }
        answered
    }

    async fn is_processed(&self, dedupe_key: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM processed_inputs WHERE dedupe_key = ?")
                .bind(dedupe_key)
                .fetch_optional(&self.reader)
                .await?
                .is_some(),
        )
    }

    async fn prune_processed(&self, before: Timestamp) -> Result<u64, StoreError> {
        let before = ms(before).unwrap_or(i64::MAX);
        let mut tx = self.begin_write().await?;
        let pruned = sqlx::query("DELETE FROM processed_inputs WHERE processed_at < ?")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    async fn pending_effects(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox o WHERE o.status = 'pending' ORDER BY o.id LIMIT ?"
        );
        sqlx::query(&sql)
            .bind(limits::limit(limit) as i64)
            .fetch_all(&self.reader)
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
        self.update_effect(session_id, seq, EffectStatus::Done)
            .await
    }

    async fn due_effects(
        &self,
        lane: Lane,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        sqlx::query(&due_effects_sql('?'))
            .bind(lane.as_str())
            .bind(ms(now).unwrap_or(i64::MAX))
            .bind(limits::limit(limit) as i64)
            .fetch_all(&self.reader)
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
        let limit = limits::limit(limit);
        let _turn = self.leases.claiming.lock().await;
        let held = self.leases_held(owner, now);
        let due = sqlx::query(&due_effects_sql('?'))
            .bind(lane.as_str())
            .bind(ms(now).unwrap_or(i64::MAX))
            .bind(i64::try_from(limit + held).unwrap_or(i64::MAX))
            .fetch_all(&self.reader)
            .await?;
        let mut claimed = Vec::with_capacity(limit.min(due.len()));
        let mut leases = self.leases.outbox();
        for row in &due {
            if claimed.len() >= limit {
                break;
            }
            let entry = outbox_from(row)?;
            let key = (entry.session_id.clone(), entry.seq);
            if leases.get(&key).is_some_and(|(holder, _)| holder != owner) {
                continue;
            }
            leases.insert(key, (owner.to_owned(), lease_until));
            claimed.push(entry);
        }
        Ok(claimed)
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
        let _turn = self.leases.claiming.lock().await;
        let held = self.leases_held(owner, now);
        let sql = codec::due_effects_all_sql('?', lanes.len());
        let mut query = sqlx::query(&sql).bind(ms(now).unwrap_or(i64::MAX));
        for &(lane, limit) in &lanes {
            query = query
                .bind(lane.as_str())
                .bind(i64::try_from(limit + held).unwrap_or(i64::MAX));
        }
        let rows = query.fetch_all(&self.reader).await?;
        let mut due = rows
            .iter()
            .map(|row| {
                let entry = outbox_from(row)?;
                let order = (
                    row.integer("claim_lane")?,
                    entry.next_attempt_at,
                    row.integer("claim_id")?,
                );
                Ok((order, entry))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Lane by lane in the order asked, each earliest due first (as the read picked them).
        due.sort_by_key(|(order, _)| *order);
        let mut claimed = Vec::with_capacity(due.len());
        let mut taken = vec![0; lanes.len()];
        let mut leases = self.leases.outbox();
        for (_, entry) in due {
            let Some(i) = lanes.iter().position(|(lane, _)| *lane == entry.lane) else {
                continue;
            };
            if taken[i] >= lanes[i].1 {
                continue;
            }
            let key = (entry.session_id.clone(), entry.seq);
            if leases.get(&key).is_some_and(|(holder, _)| holder != owner) {
                continue;
            }
            leases.insert(key, (owner.to_owned(), lease_until));
            taken[i] += 1;
            claimed.push(entry);
        }
        Ok(claimed)
    }

    async fn mark_effect_failed(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<(), StoreError> {
        let status = EffectStatus::Failed {
            error: error.to_owned(),
            retry_at: ms(retry_at)?,
        };
        self.update_effect(session_id, seq, status).await.map(drop)
    }

    async fn defer_effect(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        until: Timestamp,
    ) -> Result<(), StoreError> {
        let status = EffectStatus::Deferred { until: ms(until)? };
        self.update_effect(session_id, seq, status).await.map(drop)
    }

    async fn quarantine_session(
        &self,
        id: &CallSessionId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let found = self
            .execute_write(
                sqlx::query(
                    "UPDATE sessions SET quarantined_at = COALESCE(quarantined_at, ?), \
                     quarantine_reason = COALESCE(quarantine_reason, ?) WHERE id = ?",
                )
                .bind(ms(at)?)
                .bind(limits::truncate_error(reason))
                .bind(id.as_str()),
            )
            .await?;
        Ok(found > 0)
    }

    async fn quarantined_sessions(&self, limit: u32) -> Result<Vec<CallSessionId>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM sessions WHERE quarantined_at IS NOT NULL \
             ORDER BY quarantined_at, id LIMIT ?",
        )
        .bind(limits::limit(limit) as i64)
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(CallSessionId::new)
        .collect())
    }

    async fn prune(&self, retention: Retention) -> Result<Pruned, StoreError> {
        let [effects, processed, sessions] = prune_sql('?');
        let mut tx = self.begin_write().await?;
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
            for sql in prune_history_sql('?') {
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
        let status = EffectStatus::Abandoned {
            error: error.to_owned(),
        };
        self.update_effect(session_id, seq, status).await.map(drop)
    }

    async fn due_sessions(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(CallSessionId, Timestamp)>, StoreError> {
        let now = ms(now).unwrap_or(i64::MAX);
        sqlx::query(
            "SELECT id, next_deadline FROM sessions \
             WHERE next_deadline IS NOT NULL AND quarantined_at IS NULL AND next_deadline <= ? \
             ORDER BY next_deadline, id LIMIT ?",
        )
        .bind(now)
        .bind(limits::limit(limit) as i64)
        .fetch_all(&self.reader)
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
        let limit = limits::limit(limit);
        let mut leases = self.leases.timers.lock().await;
        // Read past the sessions other owners hold, so they do not use up the limit.
        let held = leases.held_by_others(owner, now);
        let due = sqlx::query(
            "SELECT id, version, next_deadline FROM sessions \
             WHERE next_deadline IS NOT NULL AND quarantined_at IS NULL AND next_deadline <= ? \
             ORDER BY next_deadline, id LIMIT ?",
        )
        .bind(ms(now).unwrap_or(i64::MAX))
        .bind(i64::try_from(limit + held).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| {
            let (id, deadline) = due_from(row)?;
            Ok((id, unsigned(row.integer("version")?)?, deadline))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(leases.claim(due, limit, owner, now, lease_until))
    }

    async fn active_calls(&self, user_id: &UserId) -> Result<Vec<ActiveCall>, StoreError> {
        sqlx::query(ACTIVE_SQL)
            .bind(user_id.as_str())
            .fetch_all(&self.reader)
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
        let fetch = limit as i64 + 1;
        let rows = match &cursor {
            None => {
                let sql = format!(
                    "SELECT {CALL_COLUMNS} FROM call_records WHERE user_id = ? \
                     ORDER BY started_at DESC, call_session_id DESC LIMIT ?"
                );
                sqlx::query(&sql)
                    .bind(user_id.as_str())
                    .bind(fetch)
                    .fetch_all(&self.reader)
                    .await?
            }
            Some(cursor) => {
                let started = ms(cursor.started_at)?;
                let sql = format!(
                    "SELECT {CALL_COLUMNS} FROM call_records WHERE user_id = ? \
                     AND (started_at < ? OR (started_at = ? AND call_session_id < ?)) \
                     ORDER BY started_at DESC, call_session_id DESC LIMIT ?"
                );
                sqlx::query(&sql)
                    .bind(user_id.as_str())
                    .bind(started)
                    .bind(started)
                    .bind(cursor.call_session_id.as_str())
                    .bind(fetch)
                    .fetch_all(&self.reader)
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
        // One read transaction: record, legs and timeline from the same snapshot.
        let mut tx = self.reader.begin().await?;
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM call_records WHERE call_session_id = ? AND user_id = ?"
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
             answered_at, ended_at, hangup_cause FROM call_legs WHERE call_session_id = ? \
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
             FROM call_timeline WHERE call_session_id = ? ORDER BY seq",
        )
        .bind(call_session_id.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(timeline_from)
        .collect::<Result<Vec<_>, _>>()?;
        let billing = sqlx::query(&format!(
            "SELECT {BILLING_COLUMNS} FROM billing_records WHERE call_session_id = ?"
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
             ORDER BY started_at DESC, call_session_id DESC LIMIT ?"
        );
        sqlx::query(&sql)
            .bind(limit as i64)
            .fetch_all(&self.reader)
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
             FROM call_timeline WHERE at >= ? ORDER BY at, call_session_id, seq LIMIT ?",
        )
        .bind(ms(since)?)
        .bind(limit as i64)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(timeline_from)
        .collect()
    }

    async fn close(&self) {
        // Queued behind every write already sent; a writer already gone needs no stop.
        let _ = self.group.send(Queued::Stop).await;
        if let Some(task) = take(&self.group_task) {
            // Its queue drained, the group writer has closed its connection.
            task.join().await;
        }
        if let Some(checkpointer) = take(&self.checkpointer) {
            checkpointer.stop().await;
        }
        self.writer.close().await;
        self.reader.close().await;
    }
}
