//! Outbox and timer leases of an SQLite database, kept in memory: an SQLite file serves one
//! process, so a claim needs no disk write (with `synchronous = FULL` every write is an fsync,
//! which would delay every dispatch and tick). Every store opened on the same file in this
//! process shares one table, so claimers through different stores still never share a row.
//! A commit that claims its own effects ([`crate::CommitClaim`]) has the group writer lease
//! them before its transaction commits.

use ringmaster_core::{CallSessionId, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Who holds each leased row, and until when.
pub(crate) type LeaseMap = HashMap<(CallSessionId, u64), (String, Timestamp)>;

/// One database's leases.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    /// Outbox rows. Held only for map work, never across a read, so the group writer can
    /// lease a commit's own effects without waiting for a dispatcher's claim.
    outbox: Mutex<LeaseMap>,
    /// An outbox claim's turn, held across its read; a release takes it too. A lease ended
    /// while another owner's claim reads the row as still pending would let that claim take a
    /// row already done; two claims never interleave either.
    pub(crate) claiming: tokio::sync::Mutex<()>,
    /// Session timers, held across their claim's read.
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

    /// The outbox lease table, for map work only.
    pub(crate) fn outbox(&self) -> std::sync::MutexGuard<'_, LeaseMap> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leases `rows` to `owner` until `until` (a commit's own effects, before its
    /// transaction commits: no claim can see them yet).
    pub(crate) fn lease(&self, rows: &[(CallSessionId, u64)], owner: &str, until: Timestamp) {
        let mut leases = self.outbox();
        for row in rows {
            leases.insert(row.clone(), (owner.to_owned(), until));
        }
    }

    /// Ends the leases of these rows (done, failed, deferred or abandoned), once no claim is
    /// reading.
    pub(crate) async fn release_all(&self, rows: Vec<(CallSessionId, u64)>) {
        if rows.is_empty() {
            return;
        }
        let _turn = self.claiming.lock().await;
        self.forget(&rows);
    }

    /// Drops the leases of these rows at once (rows that were never written).
    pub(crate) fn forget(&self, rows: &[(CallSessionId, u64)]) {
        let mut leases = self.outbox();
        for row in rows {
            leases.remove(row);
        }
    }
}
