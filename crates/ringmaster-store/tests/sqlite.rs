//! The SQLite backend against the shared conformance suite, plus what only SQLite has.

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, TenantId, Timestamp, UserId};
use ringmaster_store::conformance::Harness;
use ringmaster_store::{
    CallDirection, CallRecord, CallStatus, Commit, CommitOutcome, SqliteStore, Store, StoreError,
};
use serde_json::json;
use std::sync::Arc;
use tempfile::TempDir;

/// A database file in a fresh temporary directory; every `open` reopens the same file.
struct SqliteFile {
    dir: TempDir,
}

impl SqliteFile {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn url(&self) -> String {
        format!(
            "sqlite://{}",
            self.dir.path().join("ringmaster.db").display()
        )
    }
}

#[async_trait]
impl Harness for SqliteFile {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.url()).await.expect("open sqlite"))
    }
}

ringmaster_store::store_conformance_tests!(SqliteFile::new());

fn create(session: &str) -> Commit {
    Commit::new(
        CallSessionId::new(session),
        UserId::new("alice"),
        None,
        json!({ "s": session }),
        "ringing",
        Timestamp::from_millis(1),
    )
}

#[tokio::test]
async fn in_memory_url_works_and_is_private_to_the_store() {
    let a = SqliteStore::open("sqlite::memory:").await.unwrap();
    let b = SqliteStore::open("sqlite::memory:").await.unwrap();
    assert!(matches!(
        a.commit(create("s1")).await.unwrap(),
        CommitOutcome::Committed { version: 1, .. }
    ));
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
}

#[tokio::test]
async fn file_is_created_with_its_directory_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/ringmaster.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.commit(create("s1")).await.unwrap();
    store.close().await;
    assert!(path.exists());

    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn reopening_does_not_rerun_or_break_migrations() {
    let file = SqliteFile::new();
    for _ in 0..3 {
        let store = file.open().await;
        store.close().await;
    }
    let store = SqliteStore::open(&file.url()).await.unwrap();
    assert!(store.pending_effects(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_malformed_url_is_invalid() {
    let err = SqliteStore::open("postgres://nope").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
}

#[tokio::test]
async fn a_declined_call_is_stored_as_declined_with_no_billed_time() {
    let file = SqliteFile::new();
    let store = file.open().await;
    let mut c = create("s1");
    c.calls = vec![CallRecord {
        call_session_id: CallSessionId::new("s1"),
        user_id: UserId::new("alice"),
        tenant_id: TenantId::new("t1"),
        direction: CallDirection::Inbound,
        from: "+15557770000".into(),
        to: "+15550000001".into(),
        status: CallStatus::Declined,
        answered_device: None,
        started_at: Timestamp::from_millis(1_000),
        answered_at: None,
        bridged_at: None,
        ended_at: Some(Timestamp::from_millis(200_000)),
        hangup_cause: Some("declined_elsewhere".into()),
        recording_url: None,
        quality: None,
    }];
    store.commit(c).await.unwrap();
    store.close().await;

    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&file.url())
        .await
        .unwrap();
    let (status, seconds, minutes): (String, i64, i64) = sqlx::query_as(
        "SELECT status, billable_seconds, billing_minutes FROM call_records \
         WHERE call_session_id = 's1'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((status.as_str(), seconds, minutes), ("declined", 0, 0));
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_and_its_directory_are_private_to_the_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}/ringmaster.db", data.display());
    let store = SqliteStore::open(&url).await.unwrap();
    // A write makes SQLite create its WAL file too.
    store
        .create_user(ringmaster_store::User {
            id: UserId::new("u1"),
            tenant_id: TenantId::new("t"),
            name: "Ada".into(),
            numbers: vec![],
            call_waiting: false,
            voicemail_enabled: false,
            created_at: Timestamp::from_millis(1),
        })
        .await
        .unwrap();
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(data.clone()), 0o700);
    assert_eq!(mode(data.join("ringmaster.db")), 0o600);
    assert_eq!(mode(data.join("ringmaster.db-wal")), 0o600);
    store.close().await;

    // A database left world-readable by an older version is tightened on open.
    std::fs::set_permissions(
        data.join("ringmaster.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(mode(data.join("ringmaster.db")), 0o600);
    assert!(store.get_user(&UserId::new("u1")).await.unwrap().is_some());
    store.close().await;
}

#[tokio::test]
async fn synchronous_mode_is_full_unless_asked_otherwise() {
    use ringmaster_store::SqliteSync;
    let file = SqliteFile::new();
    for (sync, pragma) in [
        (SqliteSync::default(), 2i64),
        (SqliteSync::Normal, 1),
        (SqliteSync::Full, 2),
    ] {
        let store = SqliteStore::open_with(&file.url(), sync).await.unwrap();
        assert_eq!(store.synchronous().await.unwrap(), pragma, "{sync:?}");
        store.close().await;
    }
    assert_eq!("NORMAL".parse::<SqliteSync>().unwrap(), SqliteSync::Normal);
    assert!("off".parse::<SqliteSync>().is_err());
}
