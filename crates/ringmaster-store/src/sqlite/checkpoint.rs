//! The WAL checkpointer: copies committed pages from the WAL back into the database file, off
//! the commit path.
//!
//! With SQLite's automatic checkpoint, the commit that takes the WAL past 1,000 pages runs
//! the checkpoint itself, inside the group writer's batch: every write queued behind it waits
//! out the page copy and the database file's fsync (the longest batches `ringmaster bench
//! lifecycle` saw). Here the writer runs with `wal_autocheckpoint=0`, and a connection of the
//! checkpointer's own runs a PASSIVE checkpoint every [`EVERY`]. A passive checkpoint never
//! takes the write lock, so commits go on while it copies, and the WAL stays short enough that
//! the next writer starts it again from the top (rewriting the file in place rather than
//! growing it, which costs each commit's fsync a metadata update).

use sqlx::SqlitePool;
use std::sync::Weak;
use std::time::Duration;

/// How often the checkpointer runs.
pub(super) const EVERY: Duration = Duration::from_millis(100);

/// Checkpoints through `pool` every [`EVERY`] until the store is gone (`alive` no longer
/// upgrades) or the pool is closed; then closes the pool.
pub(super) async fn checkpointer(pool: SqlitePool, alive: Weak<()>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.strong_count() == 0 || pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_optional(&pool)
            .await
        {
            if pool.is_closed() {
                break;
            }
            // The next tick tries again; the WAL only grows meanwhile.
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
    pool.close().await;
}
