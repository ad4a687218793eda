//! Outbox and timer leases of an SQLite database, kept in memory: an SQLite file serves one
//! process, so a claim needs no disk write (with `synchronous = FULL` every write is an fsync,
//! which would delay every dispatch and tick). Every store opened on the same file in this
//! process shares one table, so claimers through different stores still never share a row.

use ringmaster_core::{CallSessionId, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Who holds each leased row, and until when.
pub(crate) type LeaseMap = HashMap<(CallSessionId, u64), (String, Timestamp)>;

/// One database's leases. Each table is held across its claim's read, so two claims do not
/// interleave.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// Outbox rows.
    pub(crate) outbox: tokio::sync::Mutex<LeaseMap>,
    /// Session timers.
    pub(crate) timers: tokio::sync::Mutex<crate::timer_leases::TimerLeases>,
}

impl Leases {
    /// The table of the database file at `path`, shared with every store open on it here;
    /// `None` (an in-memory database, private to its store) gets a table of its own.
    pub(crate) fn for_file(path: Option<&str>) -> Arc<Self> {
        let Some(path) = path else {
            return Arc::default();
        };
        static OPEN: OnceLock<Mutex<HashMap<String, Weak<Leases>>>> = OnceLock::new();
        let mut open = OPEN
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.retain(|_, table| table.strong_count() > 0);
        if let Some(table) = open.get(path).and_then(Weak::upgrade) {
            return table;
        }
        let table = Arc::<Self>::default();
        open.insert(path.to_owned(), Arc::downgrade(&table));
        table
    }

    /// Ends the leases of these rows (done, failed, deferred or abandoned).
    pub(crate) async fn release_all(&self, rows: Vec<(CallSessionId, u64)>) {
        if rows.is_empty() {
            return;
        }
        let mut leases = self.outbox.lock().await;
        for row in &rows {
            leases.remove(row);
        }
    }
}
