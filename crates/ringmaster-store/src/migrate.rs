//! Schema migrations on their own, as `ringmaster migrate` runs them: the same migrations
//! [`crate::PostgresStore::open`] and [`crate::SqliteStore::open`] apply, reported one by one.
//!
//! On PostgreSQL the migrator holds a session-level advisory lock (`pg_advisory_lock`, keyed
//! by the database name, the same lock sqlx takes when a store opens) from before it reads
//! which migrations are applied until it is done, so nodes starting together, or a `migrate`
//! next to a starting node, apply each migration exactly once and the others wait.

use crate::StoreError;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};
use std::collections::HashSet;
use std::str::FromStr as _;

/// One migration applied by [`migrate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version (the file's number).
    pub version: i64,
    /// Its description (the rest of the file name).
    pub description: String,
}

/// Applies the pending migrations of the database at `url` (`postgres://…` or `sqlite:…`)
/// and returns those it applied, oldest first; empty when the schema was already current.
pub async fn migrate(url: &str) -> Result<Vec<AppliedMigration>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::invalid("database url", e.to_string()))?;
        let mut conn = options.connect().await?;
        let applied = apply(&mut conn, sqlx::migrate!("./migrations/postgres")).await;
        conn.close().await?;
        applied
    } else if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::invalid("database url", e.to_string()))?
            .create_if_missing(true)
            .foreign_keys(true);
        if !(url.contains(":memory:") || url.contains("mode=memory")) {
            crate::sqlite::private_file(options.get_filename())?;
        }
        let mut conn = options.connect().await?;
        let applied = apply(&mut conn, sqlx::migrate!("./migrations/sqlite")).await;
        conn.close().await?;
        applied
    } else {
        Err(StoreError::invalid(
            "database url",
            "expected postgres://… or sqlite:…",
        ))
    }
}

/// Runs `migrator` on `conn` under the migration lock and reports what it applied.
async fn apply<C: Migrate>(
    conn: &mut C,
    mut migrator: Migrator,
) -> Result<Vec<AppliedMigration>, StoreError> {
    conn.lock().await?;
    let result = async {
        conn.ensure_migrations_table().await?;
        let before: HashSet<i64> = conn
            .list_applied_migrations()
            .await?
            .into_iter()
            .map(|m| m.version)
            .collect();
        // The lock is already held; sqlx's own would be a second, nested acquisition.
        migrator.set_locking(false);
        migrator.run_direct(&mut *conn).await?;
        Ok::<_, StoreError>(
            migrator
                .iter()
                .filter(|m| !m.migration_type.is_down_migration())
                .filter(|m| !before.contains(&m.version))
                .map(|m| AppliedMigration {
                    version: m.version,
                    description: m.description.to_string(),
                })
                .collect(),
        )
    }
    .await;
    let unlocked = conn.unlock().await;
    let applied = result?;
    unlocked?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrating_applies_each_migration_once_and_then_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/rm.db", dir.path().display());
        let first = migrate(&url).await.unwrap();
        let expected: Vec<i64> = sqlx::migrate!("./migrations/sqlite")
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(
            first.iter().map(|m| m.version).collect::<Vec<_>>(),
            expected
        );
        assert_eq!(migrate(&url).await.unwrap(), Vec::new());
        // A store opened afterwards finds the schema current.
        crate::SqliteStore::open(&url).await.unwrap();
        assert!(migrate("mysql://x").await.is_err());
    }
}
