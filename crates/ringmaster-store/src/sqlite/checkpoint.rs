//! WAL checkpoints of a database file, on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that takes the WAL past its limit:
//! that commit copies the WAL's pages into the database file and fsyncs it before it returns,
//! and every commit queued behind it waits as long. In the lifecycle benchmark one batch in
//! forty paid for one, 1.7 ms at the median and up to 10 ms, on top of its own fsync.
//!
//! Here a thread with its own connection does that work in two steps:
//! 1. every [`INTERVAL`] while the WAL grows, a `PASSIVE` checkpoint, which takes no lock a
//!    writer needs: batches go on being written while it copies pages and fsyncs the
//!    database file;
//! 2. once the WAL holds [`RESTART_FRAMES`] frames, a `RESTART` checkpoint in the store's write
//!    turn. It copies only what was written since step 1, a few milliseconds' worth, and has
//!    the next transaction write the WAL from its start again. Without it the WAL would only
//!    grow (a `PASSIVE` checkpoint never catches up with a busy writer), and every append
//!    that grows the file costs its fsync a metadata write.
//!
//! The connection never waits in SQLite's busy handler: a checkpoint that would have to wait
//! (for another checkpoint, or for a reader still on old frames) stops short until the next
//! round. The writers keep an automatic checkpoint as a backstop ([`BACKSTOP_PAGES`]), so the
//! WAL stays bounded if this thread falls behind or stops.

use rusqlite::Connection;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::Mutex;

use crate::error::StoreError;

/// How often the WAL is checkpointed while it grows.
pub(super) const INTERVAL: Duration = Duration::from_millis(20);
/// The longest wait between rounds while nothing is written.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);
/// WAL frames (pages) after which the WAL is restarted.
pub(super) const RESTART_FRAMES: i64 = 1_000;
/// WAL pages after which a writer checkpoints by itself, in its commit.
pub(super) const BACKSTOP_PAGES: u32 = 8_000;

/// The checkpoint thread of one store.
#[derive(Debug)]
pub(super) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// A checkpoint mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Copies what no reader still needs; blocks no one.
    Passive,
    /// Copies everything, and has the next transaction write the WAL from its start; takes the
    /// write lock.
    Restart,
}

/// What one checkpoint saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Checkpointed {
    /// It stopped short (another checkpoint, or a reader on old frames).
    pub(super) busy: bool,
    /// Frames in the WAL.
    pub(super) wal_frames: i64,
    /// Of those, frames now in the database file.
    pub(super) copied: i64,
}

/// One checkpoint of `conn`'s database in `mode`.
pub(super) fn checkpoint(conn: &Connection, mode: Mode) -> Result<Checkpointed, StoreError> {
    let sql = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    let (busy, wal_frames, copied) = conn.prepare_cached(sql)?.query_row([], |row| {
        Ok((row.get::<_, i64>(0)?, row.get(1)?, row.get(2)?))
    })?;
    Ok(Checkpointed {
        busy: busy != 0,
        wal_frames,
        copied,
    })
}

/// One round: a passive checkpoint, then a restart in the write turn `gate` if the WAL is
/// long. Returns what the passive checkpoint saw.
pub(super) fn round(conn: &Connection, gate: &Mutex<()>) -> Result<Checkpointed, StoreError> {
    let passive = checkpoint(conn, Mode::Passive)?;
    if !passive.busy && passive.wal_frames >= RESTART_FRAMES {
        let _turn = gate.blocking_lock();
        // Stopping short (a reader still on old frames) is fine: the next round tries again.
        checkpoint(conn, Mode::Restart)?;
    }
    Ok(passive)
}

impl Checkpointer {
    /// Starts checkpointing through `conn` (a connection of its own to the database file),
    /// restarting the WAL in the write turn `gate`.
    pub(super) fn start(conn: Connection, gate: Arc<Mutex<()>>) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::ZERO)?;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &gate, &stopped))
            .map_err(|e| StoreError::Backend(sqlx::Error::Io(e)))?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread and waits until its connection is closed.
    pub(super) async fn stop(self) {
        drop(self.stop);
        super::join_thread(self.thread).await;
    }
}

fn run(conn: &Connection, gate: &Mutex<()>, stopped: &mpsc::Receiver<()>) {
    let mut wait = INTERVAL;
    let mut last_frames = -1;
    let mut failing = false;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        match round(conn, gate) {
            Ok(seen) => {
                failing = false;
                // An idle store is looked at less and less often, down to once a second.
                wait = if seen.wal_frames == last_frames {
                    (wait * 2).min(IDLE_INTERVAL)
                } else {
                    INTERVAL
                };
                last_frames = seen.wal_frames;
            }
            // Once per run of failures: the writers' backstop keeps the WAL bounded meanwhile.
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                }
                failing = true;
                wait = IDLE_INTERVAL;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;
    use std::path::Path;

    /// Small pages, so the WAL's frames are cheap to write.
    const PAGE: u64 = 512;

    /// A connection to a WAL database file of small pages, which checkpoints only when asked.
    fn open(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "page_size", PAGE).unwrap();
        conn.pragma_update(None, "journal_mode", "wal").unwrap();
        // No fsync: the tests are about which frames are where, not durability.
        conn.pragma_update(None, "synchronous", "off").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB)")
            .unwrap();
        conn
    }

    /// Writes `n` rows of about a page each in one transaction.
    fn write_pages(conn: &Connection, first: i64, n: i64) {
        let tx = conn.unchecked_transaction().unwrap();
        for id in first..first + n {
            tx.execute("INSERT INTO t VALUES (?1, ?2)", params![id, vec![7u8; 400]])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    #[test]
    fn a_busy_writer_s_wal_is_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open(&path);
        let gate = Arc::new(Mutex::new(()));
        let checkpointer = Checkpointer::start(open(&path), gate.clone()).unwrap();
        // Transactions back to back, each in the write turn as the store's writers take it: a
        // passive checkpoint alone never catches up with them, so without restarts the WAL
        // would hold every frame written.
        const WRITTEN: i64 = 80 * RESTART_FRAMES;
        let mut id = 0;
        while id < WRITTEN {
            let _turn = gate.blocking_lock();
            write_pages(&writer, id, 10);
            id += 10;
        }
        drop(checkpointer.stop);
        checkpointer.thread.join().unwrap();
        // The file keeps the length of the longest WAL.
        let wal = std::fs::metadata(path.with_extension("db-wal"))
            .unwrap()
            .len();
        let most = i64::try_from(wal / PAGE).unwrap();
        assert!(most < WRITTEN / 2, "the WAL grew to {most} frames");
        let rows: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, id);
    }

    #[test]
    fn a_restart_waits_for_the_write_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open(&path);
        write_pages(&writer, 0, RESTART_FRAMES);
        let gate = Arc::new(Mutex::new(()));
        let turn = gate.clone().try_lock_owned().unwrap();
        let (done_tx, done) = mpsc::channel();
        let checkpointer = std::thread::spawn({
            let (conn, gate) = (open(&path), gate.clone());
            move || {
                conn.busy_timeout(Duration::ZERO).unwrap();
                done_tx.send(round(&conn, &gate).unwrap()).unwrap();
            }
        });
        assert!(
            done.recv_timeout(Duration::from_millis(200)).is_err(),
            "the restart went ahead while a writer had the turn"
        );
        drop(turn);
        let seen = done.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(seen.wal_frames >= RESTART_FRAMES, "{seen:?}");
        checkpointer.join().unwrap();
        // Everything was copied: the next write starts the WAL from its beginning.
        write_pages(&writer, -1, 1);
        let after = checkpoint(&writer, Mode::Passive).unwrap();
        assert!(after.wal_frames < 10, "{after:?}");
    }
}
