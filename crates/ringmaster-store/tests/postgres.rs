//! The PostgreSQL backend against the shared conformance suite, plus what only it has.
//!
//! Needs a running server: `RINGMASTER_TEST_POSTGRES_URL`, or by default
//! `postgres://postgres@127.0.0.1:5432/test` (`./scripts/test` starts it). An unreachable
//! server fails the tests; it never skips them. Every harness works in a schema of its own,
//! dropped when the harness goes away, so parallel and repeated runs do not meet.

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use ringmaster_store::conformance::Harness;
use ringmaster_store::{
    ActiveCall, CallDirection, CallRecord, CallStatus, Commit, CommitOutcome, PostgresStore,
    RegistryChange, SqliteStore, Store, StoreError, TimelineEntry, TimelineSource, User,
};
use serde_json::json;
use sqlx::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn server_url() -> String {
    std::env::var("RINGMASTER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A fresh schema on the test server; every `open` is a store whose `search_path` is it.
struct PgSchema {
    server: String,
    schema: String,
}

impl PgSchema {
    async fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let schema = format!(
            "rm_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let server = server_url();
        ringmaster_store::postgres::create_schema(&server, &schema)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating schema {schema} on {server}: {e}. Start PostgreSQL (./scripts/test \
                     does) or set RINGMASTER_TEST_POSTGRES_URL to a reachable server."
                )
            });
        Self { server, schema }
    }

    fn url(&self) -> String {
        ringmaster_store::postgres::schema_url(&self.server, &self.schema)
    }
}

#[async_trait]
impl Harness for PgSchema {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(
            PostgresStore::open(&self.url())
                .await
                .unwrap_or_else(|e| panic!("open postgres store at {}: {e}", self.url())),
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let server = self.server.clone();
        let schema = self.schema.clone();
        // Drop cannot await, and the test's runtime may be shutting down: clean up on a
        // runtime of our own.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(ringmaster_store::postgres::drop_schema(&server, &schema))
                .map_err(|e| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test schema {}: {e}", self.schema),
            Err(_) => eprintln!("dropping test schema {} panicked", self.schema),
        }
    }
}

ringmaster_store::store_conformance_tests!(PgSchema::new().await);

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn create(session: &str, user: &str) -> Commit {
    Commit::new(
        CallSessionId::new(session),
        UserId::new(user),
        None,
        json!({ "s": session }),
        "ringing",
        t(1),
    )
}

fn record(session: &str, started: u64) -> CallRecord {
    CallRecord {
        call_session_id: CallSessionId::new(session),
        user_id: UserId::new("alice"),
        tenant_id: TenantId::new("t1"),
        direction: CallDirection::Inbound,
        from: "+15557770000".into(),
        to: "+15550000001".into(),
        status: CallStatus::Missed,
        answered_device: None,
        started_at: t(started),
        answered_at: None,
        bridged_at: None,
        ended_at: Some(t(started + 30_000)),
        hangup_cause: None,
        recording_url: None,
        quality: None,
    }
}

#[tokio::test]
async fn a_non_postgres_url_is_invalid() {
    for url in ["sqlite::memory:", "mysql://root@localhost/db", ""] {
        let err = PostgresStore::open(url).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn stores_in_different_schemas_do_not_see_each_other() {
    let (a, b) = (PgSchema::new().await, PgSchema::new().await);
    let (a, b) = (a.open().await, b.open().await);
    a.commit(create("s1", "alice")).await.unwrap();
    assert!(a
        .load_session(&CallSessionId::new("s1"))
        .await
        .unwrap()
        .is_some());
    assert!(b
        .load_session(&CallSessionId::new("s1"))
        .await
        .unwrap()
        .is_none());
    a.close().await;
    b.close().await;
}

/// A commit with outbox rows through one store (node) wakes the listener of another store on
/// the same schema; SQLite has no such signal (one process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_commit_wakes_every_node() {
    let schema = PgSchema::new().await;
    let (a, b) = (schema.open().await, schema.open().await);
    let mut wakeups = b
        .outbox_wakeups()
        .await
        .unwrap()
        .expect("PostgreSQL signals outbox commits");
    let mut c = create("s1", "alice");
    c.effects = vec![json!({ "op": "dial" }).into()];
    a.commit(c).await.unwrap();
    let woken = tokio::time::timeout(std::time::Duration::from_secs(30), wakeups.recv()).await;
    assert_eq!(
        woken,
        Ok(Some(())),
        "no wake-up for a commit on another node"
    );
    let sqlite = SqliteStore::open("sqlite::memory:").await.unwrap();
    assert!(sqlite.outbox_wakeups().await.unwrap().is_none());
    assert!(sqlite.dial_ledger().is_none());
    // The listener holds one of b's connections until its receiver is gone, and closing a
    // pool waits for every connection to come back.
    drop(wakeups);
    a.close().await;
    b.close().await;
}

/// Many different calls race to become a user's one active call: exactly one does, the
/// others are told the user is busy and leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_for_one_user_leave_one_active() {
    let harness = PgSchema::new().await;
    let store = harness.open().await;
    store
        .create_user(User {
            id: UserId::new("alice"),
            tenant_id: TenantId::new("t1"),
            name: "Alice".into(),
            numbers: vec!["+15550000001".into()],
            call_waiting: false,
            voicemail_enabled: true,
            created_at: t(1),
        })
        .await
        .unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|racer| {
            let store = store.clone();
            tokio::spawn(async move {
                let session = format!("call-{racer}");
                let mut c = create(&session, "alice");
                c.effects = vec![json!({ "bridge": racer }).into()];
                // History is written after the registry check: a longer transaction gives a
                // missing registry lock every chance to show.
                c.timeline = (0..30)
                    .map(|i| TimelineEntry {
                        call_session_id: CallSessionId::new(&session),
                        at: t(100 + i),
                        source: TimelineSource::Backend,
                        device_id: None,
                        kind: "webhook.call.initiated".into(),
                        from_state: None,
                        to_state: Some("ringing".into()),
                        detail: json!({ "i": i }),
                    })
                    .collect();
                c.registry = vec![RegistryChange::Set(ActiveCall {
                    user_id: UserId::new("alice"),
                    call_session_id: CallSessionId::new(&session),
                    device_id: Some(DeviceId::new("d1")),
                    started_at: t(100),
                    platform: Some("ios".into()),
                    state: ringmaster_core::CallState::Active,
                    since: t(100),
                })];
                (session, store.commit(c).await.expect("commit"))
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (session, outcome) = task.await.expect("task");
        match outcome {
            CommitOutcome::Committed { .. } => winners.push(session),
            CommitOutcome::Busy { active } => assert_eq!(active.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners {winners:?}");
    let active = store.active_calls(&UserId::new("alice")).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].call_session_id.as_str(), winners[0]);
    let pending = store.pending_effects(100).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].session_id.as_str(), winners[0]);
    store.close().await;
}

/// Ties in history are broken by byte order of the call id, exactly as SQLite does, whatever
/// the database's collation.
#[tokio::test]
async fn history_order_matches_sqlite_byte_order() {
    let harness = PgSchema::new().await;
    let pg = harness.open().await;
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open("sqlite::memory:").await.unwrap());
    let ids = ["a", "B", "_x", "b", "A1", "a-2", "Z", "z"];
    for store in [&pg, &sqlite] {
        for id in ids {
            let mut c = create(id, "alice");
            c.calls = vec![record(id, 500)];
            store.commit(c).await.unwrap();
        }
    }
    let pages = |store: Arc<dyn Store>| async move {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .list_calls(&UserId::new("alice"), cursor.as_deref(), 3)
                .await
                .unwrap();
            seen.extend(
                page.items
                    .into_iter()
                    .map(|c| c.call_session_id.to_string()),
            );
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break seen,
            }
        }
    };
    let from_pg = pages(pg.clone()).await;
    let mut bytewise: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    bytewise.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    assert_eq!(from_pg, bytewise);
    assert_eq!(from_pg, pages(sqlite).await);
    pg.close().await;

    // The test server may already sort bytewise; the columns must do so on any server.
    let mut conn = sqlx::PgConnection::connect(&harness.server).await.unwrap();
    let loose: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND column_name IN ('id', 'call_session_id', 'call_control_id') \
         AND data_type = 'text' AND collation_name IS DISTINCT FROM 'C'",
    )
    .bind(&harness.schema)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(loose.is_empty(), "ids without COLLATE \"C\": {loose:?}");
}
