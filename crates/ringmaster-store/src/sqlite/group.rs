//! The group writer: every hot-path write of an SQLite store (session commits and outbox
//! status updates) queues here, and whatever queued while one transaction ran is written in
//! the next, under one `COMMIT` and so one fsync. Each caller is answered only once that
//! transaction is committed, so nothing is acknowledged before it is durable.
//!
//! Outbox status updates ride in the same transaction as commits: with `synchronous=FULL`
//! each used to be a transaction (and an fsync) of its own, several per call. So does the
//! host-event relay's move from the outbox to the event log: as a transaction of its own
//! through sqlx it held the one writer connection for two round trips per event every poll,
//! and every commit queued behind it waited that long.

use ringmaster_core::CallSessionId;
use sqlx::SqlitePool;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::leases::Leases;
use super::writer::{batch_failed, write_locked, Durable, Opener, Own};
use crate::error::StoreError;
use crate::limits::{self, EncodedCommit};
use crate::session::{Commit, CommitOutcome};

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;
/// Writes waiting for the group writer before callers wait to queue.
pub(super) const QUEUE: usize = 4096;

/// What an outbox status update sets.
#[derive(Debug)]
pub(super) enum EffectStatus {
    /// Delivered: never sent again.
    Done,
    /// One more failed attempt; due again at `retry_at` (ms).
    Failed { error: String, retry_at: i64 },
    /// Given up for good.
    Abandoned { error: String },
    /// Not attempted; due again no earlier than `until` (ms).
    Deferred { until: i64 },
}

/// One outbox row's status update.
#[derive(Debug)]
pub(super) struct EffectUpdate {
    pub(super) session_id: CallSessionId,
    pub(super) seq: u64,
    pub(super) status: EffectStatus,
}

/// A commit checked and encoded by its caller, before it queues: the writer, which every
/// write waits for, only writes, while the JSON encoding runs in the callers, side by side.
pub(super) struct Checked {
    pub(super) commit: Commit,
    pub(super) encoded: EncodedCommit,
}

impl Checked {
    /// `commit` within the store's limits and encoded, or why it is not.
    pub(super) fn new(commit: Commit) -> Result<Box<Self>, StoreError> {
        let encoded = limits::commit(&commit)?;
        Ok(Box::new(Self { commit, encoded }))
    }
}

/// A write queued for the group writer, with where its result goes.
pub(super) enum Pending {
    /// A session commit.
    Commit(
        Box<Checked>,
        oneshot::Sender<Result<CommitOutcome, StoreError>>,
    ),
    /// An outbox status update.
    Effect(EffectUpdate, oneshot::Sender<Result<bool, StoreError>>),
    /// Moves up to this many pending host events from the outbox to the event log.
    PublishHost(u32, oneshot::Sender<Result<u32, StoreError>>),
}

/// What one write of a batch did.
#[derive(Debug)]
pub(super) enum Wrote {
    /// A commit's outcome.
    Commit(CommitOutcome),
    /// A status update was applied; true when it marked a row done that held back a pending
    /// row with its ordering key.
    Updated(bool),
    /// This many host events were published.
    Published(u32),
}

impl Wrote {
    /// The commit's outcome (every commit's slot holds one).
    pub(super) fn commit(self) -> Result<CommitOutcome, StoreError> {
        match self {
            Self::Commit(outcome) => Ok(outcome),
            _ => Err(group_gone()),
        }
    }

    /// How many host events were published (a publish's slot holds the count).
    fn published(self) -> Result<u32, StoreError> {
        match self {
            Self::Published(n) => Ok(n),
            _ => Err(group_gone()),
        }
    }
}

pub(super) fn group_gone() -> StoreError {
    StoreError::Backend(sqlx::Error::PoolClosed)
}

/// What the group writer's queue carries.
pub(super) enum Queued {
    /// A write.
    Write(Pending),
    /// Ends the writer once everything queued before it is written.
    Stop,
}

impl From<Pending> for Queued {
    fn from(write: Pending) -> Self {
        Self::Write(write)
    }
}

/// `first` and every write queued behind it, up to [`MAX_BATCH`]. A stop closes the queue: no
/// new write gets in, and those already in it are still taken, by this batch or the next.
fn gather(first: Queued, queue: &mut mpsc::Receiver<Queued>) -> Vec<Pending> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut next = Some(first);
    while let Some(queued) = next.take() {
        match queued {
            Queued::Write(write) => batch.push(write),
            Queued::Stop => queue.close(),
        }
        if batch.len() < MAX_BATCH {
            next = queue.try_recv().ok();
        }
    }
    batch
}

/// The connection the group writer writes with.
pub(super) enum WriterConn {
    /// A connection of its own to the database file, kept open, so the statements it
    /// prepares stay prepared from batch to batch (preparing them anew for each batch was
    /// 6 % of the CPU time of `ringmaster bench lifecycle`, on the path of every commit).
    Owned {
        conn: Own,
        opener: Arc<Opener>,
        /// Taken for each batch, and by the store's other writes (through sqlx) for each of
        /// their transactions, so the two connections take turns in order instead of
        /// meeting SQLite's busy handler, which sleeps for milliseconds at a time.
        gate: Arc<Mutex<()>>,
    },
    /// The writer pool's one connection, borrowed for each batch: an in-memory database
    /// exists only on that connection.
    Borrowed(SqlitePool),
}

/// A running group writer.
#[derive(Debug)]
pub(super) enum Writer {
    /// On a thread of its own (a database file).
    Thread(std::thread::JoinHandle<()>),
    /// A task borrowing sqlx's connection (an in-memory database).
    Task(tokio::task::JoinHandle<()>),
}

impl Writer {
    /// Starts the group writer of `queue` on `conn`. Takes every write queued meanwhile (up to
    /// [`MAX_BATCH`]), writes them in one transaction and answers each caller once it is
    /// committed. The outbox leases of the effects it updated are released after the commit
    /// (not before: a claim reads committed rows, and must not see a row unleased while it
    /// still reads as pending), and each updater is answered only after its lease is gone, so
    /// its dispatcher never claims the row again under the old lease.
    ///
    /// The release waits for any claim in progress (a claim holds its turn across its read),
    /// so it runs beside the writer: commits are answered, and the next batch starts,
    /// without waiting for a dispatcher's read.
    ///
    /// After a [`Queued::Stop`] it takes no new writes, writes what is queued, and ends,
    /// closing its connection.
    pub(super) fn start(
        conn: WriterConn,
        leases: Arc<Leases>,
        queue: mpsc::Receiver<Queued>,
    ) -> Result<Self, StoreError> {
        let runtime = Handle::current();
        Ok(match conn {
            WriterConn::Owned { conn, opener, gate } => {
                let (to_sync, unsynced) = std::sync::mpsc::channel();
                let syncer = {
                    let (leases, runtime) = (Arc::clone(&leases), runtime.clone());
                    spawn_thread("sqlite-wal-sync", move || {
                        sync_wal(&unsynced, &leases, &runtime);
                    })?
                };
                let sync = WalSync { to_sync, syncer };
                Self::Thread(spawn_thread("sqlite-group-writer", move || {
                    own_writer(conn, &opener, &gate, &leases, queue, sync, &runtime);
                })?)
            }
            WriterConn::Borrowed(pool) => {
                Self::Task(runtime.spawn(borrowing_writer(pool, leases, queue)))
            }
        })
    }

    /// Waits until the writer has ended (after a [`Queued::Stop`], or once every sender is
    /// gone).
    pub(super) async fn join(self) {
        match self {
            Self::Thread(thread) => super::join_thread(thread).await,
            Self::Task(task) => {
                let _ = task.await;
            }
        }
    }
}

/// The writer of a database file, on a thread of its own: a commit waits for one wake-up (this
/// thread's), not for a runtime worker to run the writer's task and then for a blocking thread
/// to run its batch. With both cores busy, each of those hand-offs could wait milliseconds for
/// a CPU.
///
/// When commits wait for the disk, a second thread syncs the WAL after each batch with a
/// commit and only then answers its callers, while this one goes on to the next batch: the
/// sync of one batch and the writing of the next overlap instead of taking turns. One sync
/// makes every batch written before it durable, so batches that pile up behind a slow sync
/// share the next one. A batch of status updates alone is answered at once, as before: the
/// next sync makes it durable along with itself (a loss can only make an effect pending
/// again, and the dispatcher sends it once more).
fn own_writer(
    own: Own,
    opener: &Opener,
    gate: &Mutex<()>,
    leases: &Arc<Leases>,
    mut queue: mpsc::Receiver<Queued>,
    sync: WalSync,
    runtime: &Handle,
) {
    let mut own = Some(own);
    while let Some(first) = queue.blocking_recv() {
        let batch = gather(first, &mut queue);
        if batch.is_empty() {
            continue;
        }
        let (results, wal) = {
            let _turn = gate.blocking_lock();
            let taken = own.take();
            match std::panic::catch_unwind(AssertUnwindSafe(|| opener.write(taken, &batch, leases)))
            {
                Ok((kept, results)) => {
                    let wal = kept.as_ref().and_then(|o| o.wal.clone());
                    own = kept;
                    (results, wal)
                }
                // The connection went down with the batch; the next batch opens a new one.
                Err(_) => {
                    tracing::error!("the SQLite group writer's batch panicked");
                    (batch_failed(batch.len(), &"the batch panicked"), None)
                }
            }
        };
        let updates_only = batch.iter().all(|p| matches!(p, Pending::Effect(..)));
        match wal.filter(|_| !updates_only) {
            Some(wal) => {
                let written = Unsynced {
                    wal,
                    batch,
                    results,
                };
                // The sync thread is gone only if it panicked: sync here instead.
                if let Err(unsent) = sync.to_sync.send(written) {
                    sync_and_answer(vec![unsent.0], leases, runtime);
                }
            }
            None => answer(batch, results, leases, runtime),
        }
    }
    // The sync thread answers what it holds and ends.
    drop(sync.to_sync);
    if sync.syncer.join().is_err() {
        tracing::error!("the SQLite WAL sync thread panicked");
    }
}

/// The group writer's way to its WAL sync thread.
struct WalSync {
    to_sync: std::sync::mpsc::Sender<Unsynced>,
    syncer: std::thread::JoinHandle<()>,
}

/// A thread named `name` running `f`.
fn spawn_thread(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))
}

/// A batch written and committed, waiting for its WAL to reach the disk.
struct Unsynced {
    wal: Arc<dyn Durable>,
    batch: Vec<Pending>,
    results: Vec<Written>,
}

/// The WAL sync thread: syncs what the writer wrote, then answers its callers, in order.
fn sync_wal(
    unsynced: &std::sync::mpsc::Receiver<Unsynced>,
    leases: &Arc<Leases>,
    runtime: &Handle,
) {
    while let Ok(first) = unsynced.recv() {
        let mut ready = vec![first];
        ready.extend(unsynced.try_iter());
        sync_and_answer(ready, leases, runtime);
    }
}

/// Syncs the WAL once for all of `ready`, then answers each batch's callers; if the sync
/// fails, the commits may not be durable and their callers are told they failed. One sync
/// covers every batch written before it: the WAL is appended in order, and `fdatasync` acts on
/// the file, whichever descriptor it is called through (a reopened connection's included).
fn sync_and_answer(ready: Vec<Unsynced>, leases: &Arc<Leases>, runtime: &Handle) {
    let synced = ready.last().map_or(Ok(()), |last| last.wal.sync());
    if let Err(e) = &synced {
        tracing::error!(error = %e, "syncing the SQLite WAL failed");
    }
    for written in ready {
        let results = match &synced {
            Ok(()) => written.results,
            Err(e) => batch_failed(written.batch.len(), &format!("WAL sync failed: {e}")),
        };
        answer(written.batch, results, leases, runtime);
    }
}

/// The writer of an in-memory database, borrowing sqlx's handle for each batch.
async fn borrowing_writer(
    pool: SqlitePool,
    leases: Arc<Leases>,
    mut queue: mpsc::Receiver<Queued>,
) {
    let runtime = Handle::current();
    while let Some(first) = queue.recv().await {
        let batch = gather(first, &mut queue);
        if batch.is_empty() {
            continue;
        }
        let (batch, results) = write_borrowed(&pool, batch, &leases).await;
        answer(batch, results, &leases, &runtime);
    }
}

/// Answers the callers of `batch`; updaters once their rows' leases are released.
fn answer(batch: Vec<Pending>, results: Vec<Written>, leases: &Arc<Leases>, runtime: &Handle) {
    let mut released = Vec::new();
    let mut updaters = Vec::new();
    for (pending, result) in batch.into_iter().zip(results) {
        // A caller that gave up waiting no longer needs the answer.
        match pending {
            Pending::Commit(_, reply) => {
                let _ = reply.send(result.and_then(Wrote::commit));
            }
            Pending::Effect(update, reply) => {
                if result.is_ok() {
                    released.push((update.session_id, update.seq));
                }
                updaters.push((reply, result.map(|w| matches!(w, Wrote::Updated(true)))));
            }
            Pending::PublishHost(_, reply) => {
                let _ = reply.send(result.and_then(Wrote::published));
            }
        }
    }
    if updaters.is_empty() {
        return;
    }
    let leases = leases.clone();
    runtime.spawn(async move {
        leases.release_all(released).await;
        for (reply, result) in updaters {
            let _ = reply.send(result);
        }
    });
}

/// The result of one write of a batch.
pub(super) type Written = Result<Wrote, StoreError>;

/// Writes `batch` in one transaction (see [`super::writer`]) on sqlx's connection, from a
/// blocking thread, so no async worker waits out the fsync. The results are in order.
async fn write_borrowed(
    pool: &SqlitePool,
    batch: Vec<Pending>,
    leases: &Arc<Leases>,
) -> (Vec<Pending>, Vec<Written>) {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => {
            let failed = batch_failed(batch.len(), &e);
            return (batch, failed);
        }
    };
    // The connection moves into the blocking task, so even if this future is dropped the
    // handle stays locked for as long as the batch runs.
    let leases = leases.clone();
    let ran = tokio::task::spawn_blocking(move || {
        let results = write_locked(&mut conn, &batch, &leases);
        (batch, results)
    })
    .await;
    match ran {
        Ok(done) => done,
        // The batch (and its callers' replies) went down with the task; they see the writer
        // gone. A runtime shutting down cancels the task; only a panic is a fault.
        Err(e) if e.is_cancelled() => {
            tracing::debug!("the SQLite group writer's batch was cancelled at shutdown");
            (Vec::new(), Vec::new())
        }
        Err(e) => {
            tracing::error!(error = %e, "the SQLite group writer's batch failed");
            (Vec::new(), Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::User;
    use crate::sqlite::{SqliteStore, SqliteSync};
    use crate::Store;
    use ringmaster_core::{TenantId, Timestamp, UserId};
    use serde_json::json;
    use std::time::Duration;

    fn create(session: &str) -> Commit {
        let mut commit = Commit::new(
            CallSessionId::new(session),
            UserId::new("alice"),
            None,
            json!({}),
            "ringing",
            Timestamp::from_millis(1),
        );
        commit.effects = vec![json!({ "type": "telnyx" }).into()];
        commit
    }

    #[tokio::test]
    async fn a_claim_in_progress_holds_back_no_commit_only_the_updates_it_leases() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        store.commit(create("a")).await.unwrap();
        // A dispatcher's claim holds its turn across its read.
        let claim = store.leases.claiming.lock().await;
        let (updated, mut update_answered) = oneshot::channel();
        let done = EffectUpdate {
            session_id: CallSessionId::new("a"),
            seq: 1,
            status: EffectStatus::Done,
        };
        store
            .group
            .send(Pending::Effect(done, updated).into())
            .await
            .unwrap();
        let (committed, commit_answered) = oneshot::channel();
        // Nor does a commit that leases its own effects.
        let mut b = create("b");
        b.claim = Some(crate::CommitClaim {
            owner: "node-a".into(),
            until: Timestamp::from_millis(60_000),
        });
        store
            .group
            .send(Pending::Commit(Checked::new(b).unwrap(), committed).into())
            .await
            .unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), commit_answered)
            .await
            .expect("a commit must not wait for a claim's read")
            .unwrap()
            .unwrap();
        assert!(
            matches!(&outcome, CommitOutcome::Committed { claimed, .. } if claimed == &[1]),
            "{outcome:?}"
        );
        // Written, but its updater hears so only once the row's lease is gone.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(update_answered.try_recv().is_err());
        assert!(store
            .pending_effects(10)
            .await
            .unwrap()
            .iter()
            .all(|e| e.session_id.as_str() != "a"));
        drop(claim);
        tokio::time::timeout(Duration::from_secs(10), update_answered)
            .await
            .expect("the update is answered once the claim is over")
            .unwrap()
            .unwrap();
    }

    /// A store in a fresh file, so it gets a group writer with a connection of its own.
    async fn file_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/ringmaster.db", dir.path().display());
        let store = SqliteStore::open(&url).await.unwrap();
        (dir, store)
    }

    /// An opener of the group writer's connection to `dir`'s store, as the store makes it.
    fn opener(dir: &tempfile::TempDir) -> Opener {
        Opener {
            path: dir.path().join("ringmaster.db"),
            sync: SqliteSync::Full,
            busy_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_fully_synchronous_store_s_writer_commits_at_normal_with_its_wal_to_sync() {
        let (dir, store) = file_store().await;
        store.commit(create("a")).await.unwrap();
        let own = opener(&dir).open_own().unwrap();
        let level: i64 = own
            .conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(
            level, 1,
            "the sync thread, not the COMMIT, waits for the disk"
        );
        own.wal
            .expect("a WAL to sync")
            .sync()
            .expect("the WAL file is open");
        let relaxed = Opener {
            sync: SqliteSync::Normal,
            ..opener(&dir)
        };
        assert!(relaxed.open_own().unwrap().wal.is_none());
    }

    /// A WAL whose sync waits until the test lets it go (or fails).
    struct HeldWal {
        go: std::sync::Mutex<std::sync::mpsc::Receiver<std::io::Result<()>>>,
        syncs: std::sync::atomic::AtomicUsize,
    }

    impl Durable for HeldWal {
        fn sync(&self) -> std::io::Result<()> {
            self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let go = self.go.lock().unwrap();
            go.recv().unwrap_or(Ok(()))
        }
    }

    fn written(
        wal: &Arc<HeldWal>,
    ) -> (
        Unsynced,
        oneshot::Receiver<Result<CommitOutcome, StoreError>>,
    ) {
        let (reply, answer) = oneshot::channel();
        let unsynced = Unsynced {
            wal: Arc::clone(wal) as Arc<dyn Durable>,
            batch: vec![Pending::Commit(Checked::new(create("a")).unwrap(), reply)],
            results: vec![Ok(Wrote::Commit(CommitOutcome::Duplicate))],
        };
        (unsynced, answer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_is_answered_only_once_its_wal_is_synced() {
        let (go, held) = std::sync::mpsc::channel();
        let wal = Arc::new(HeldWal {
            go: std::sync::Mutex::new(held),
            syncs: Default::default(),
        });
        let (to_sync, unsynced) = std::sync::mpsc::channel();
        let leases = Arc::new(Leases::default());
        let runtime = Handle::current();
        let syncer = std::thread::spawn(move || sync_wal(&unsynced, &leases, &runtime));
        let (first, mut first_answer) = written(&wal);
        to_sync.send(first).unwrap();
        // The sync is under way: two more batches wait for the next one, and share it.
        while wal.syncs.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (second, second_answer) = written(&wal);
        let (third, third_answer) = written(&wal);
        to_sync.send(second).unwrap();
        to_sync.send(third).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            first_answer.try_recv().is_err(),
            "answered before its WAL was synced"
        );
        go.send(Ok(())).unwrap();
        assert!(matches!(
            first_answer.await.unwrap(),
            Ok(CommitOutcome::Duplicate)
        ));
        go.send(Err(std::io::Error::other("disk gone"))).unwrap();
        for answer in [second_answer, third_answer] {
            let failed = answer.await.unwrap().unwrap_err();
            assert!(failed.to_string().contains("WAL sync failed"), "{failed}");
        }
        assert_eq!(wal.syncs.load(std::sync::atomic::Ordering::SeqCst), 2);
        drop(to_sync);
        syncer.join().unwrap();
    }

    #[tokio::test]
    async fn the_group_writer_keeps_its_savepoint_journal_in_memory() {
        let (dir, _store) = file_store().await;
        let opener = opener(&dir);
        let conn = opener.open().unwrap();
        let temp_store: i64 = conn
            .pragma_query_value(None, "temp_store", |row| row.get(0))
            .unwrap();
        assert_eq!(temp_store, 2, "temp_store must be MEMORY");
    }

    #[tokio::test]
    async fn a_closed_store_writes_nothing_more() {
        let (dir, store) = file_store().await;
        store.commit(create("a")).await.unwrap();
        store.close().await;
        assert!(
            store.commit(create("b")).await.is_err(),
            "a commit after close must fail, not be written"
        );
        drop(store);
        let url = format!("sqlite://{}/ringmaster.db", dir.path().display());
        let again = SqliteStore::open(&url).await.unwrap();
        let sessions: Vec<_> = again
            .pending_effects(10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.session_id)
            .collect();
        assert_eq!(sessions, vec![CallSessionId::new("a")]);
    }

    #[tokio::test]
    async fn a_file_store_checkpoints_its_wal_in_the_background() {
        let (dir, store) = file_store().await;
        let db = dir.path().join("ringmaster.db");
        let size = || std::fs::metadata(&db).unwrap().len();
        let before = size();
        for i in 0..100 {
            store.commit(create(&format!("s{i}"))).await.unwrap();
        }
        // Far fewer pages than a writer's own checkpoint waits for: only the checkpoint thread
        // moves them from the WAL into the database file.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing was checkpointed into the database file"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.close().await;
        assert!(
            store.checkpointer.lock().unwrap().is_none(),
            "closing the store stops its checkpoint thread"
        );
    }

    #[tokio::test]
    async fn other_writes_take_turns_with_the_group_writer() {
        let (_dir, store) = file_store().await;
        let store = Arc::new(store);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let committer = store.clone();
            tasks
                .spawn(async move { committer.commit(create(&format!("s{i}"))).await.map(|_| ()) });
            // An admin write, through sqlx on the store's other connection.
            let admin = store.clone();
            tasks.spawn(async move {
                admin
                    .create_user(User {
                        id: UserId::new(format!("u{i}")),
                        tenant_id: TenantId::new("t"),
                        name: "U".into(),
                        numbers: vec![format!("+1555{i:07}")],
                        call_waiting: false,
                        voicemail_enabled: false,
                        created_at: Timestamp::from_millis(1),
                    })
                    .await
                    .map(|_| ())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap()
                .expect("no write fails while the other path writes");
        }
        let pending = store.pending_effects(100).await.unwrap();
        assert_eq!(pending.len(), 40, "every commit's effect is in the outbox");
        for i in 0..40 {
            assert!(store
                .get_user(&UserId::new(format!("u{i}")))
                .await
                .unwrap()
                .is_some());
        }
    }
}
