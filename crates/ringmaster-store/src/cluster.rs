//! What several processes on one database share beyond the outbox leases every backend has
//! ([`crate::Store::claim_due_effects`]): wake-ups when another process commits outbox rows,
//! and one dial-slot ledger per Telnyx connection. Only [`crate::PostgresStore`] offers them; an SQLite file or a [`crate::MemoryStore`]
//! has one process, whose own signals and limiter suffice.

use crate::StoreError;
use async_trait::async_trait;
use ringmaster_core::Timestamp;
use std::time::Duration;
use tokio::sync::mpsc;

/// A signal that outbox rows were committed by some process on the same database. Signals
/// coalesce (one pending at most), and one can be lost while the listening connection is
/// re-established, so a dispatcher still polls as a fallback.
#[derive(Debug)]
pub struct OutboxWakeups {
    rx: mpsc::Receiver<()>,
}

impl OutboxWakeups {
    /// The receiving end of a wake-up channel; the listener holds the sender.
    pub(crate) fn new(rx: mpsc::Receiver<()>) -> Self {
        Self { rx }
    }

    /// Waits for the next wake-up; `None` once the listener has stopped for good.
    pub async fn recv(&mut self) -> Option<()> {
        self.rx.recv().await
    }
}

/// The rate a ledger enforces: at most `max_dials` slots inside any `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLimit {
    /// Slots per window (also the burst size); at least 1.
    pub max_dials: u32,
    /// Length of the sliding window.
    pub window: Duration,
}

/// The answer of a [`DialLedger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotOutcome {
    /// The slot is reserved: the dial may start at this time, not before.
    Granted(Timestamp),
    /// No slot at or before the asked bound; the earliest free one is at this time (nothing
    /// was reserved).
    Busy(Timestamp),
}

/// Dial slots shared by every process on the store: the sliding window of one account,
/// decided atomically in the database, so N processes together never grant more than the
/// limit in any window.
#[async_trait]
pub trait DialLedger: Send + Sync + std::fmt::Debug {
    /// Reserves the earliest slot at or after `now` for `account`, if that slot is at or
    /// before `not_after`; otherwise reserves nothing and says when the next one is free.
    /// Every process must use the same `limit` for an account: a different one resets it.
    async fn reserve(
        &self,
        account: &str,
        limit: SlotLimit,
        now: Timestamp,
        not_after: Timestamp,
    ) -> Result<SlotOutcome, StoreError>;
}
