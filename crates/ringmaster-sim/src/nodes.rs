//! The coordinator nodes' view of the store. The simulator runs the production engine
//! (`ringmaster_engine::Engine`) on the in-memory store, but a node takes processing time
//! between loading a session and committing it, and other nodes commit meanwhile: each commit
//! is held until the world releases it (after the sampled processing delay), so concurrent
//! inputs race on compare-and-set as they do on a real cluster. Every store answer is recorded
//! for the world to act on (dispatch the outbox, arm timers, crash a node, count conflicts).

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_engine::SessionStore;
use ringmaster_store::{
    ActiveCall, Commit, CommitOutcome, MemoryStore, OutboxEffect, Store, StoreError, StoredSession,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

/// What one commit wrote, as the world needs it.
#[derive(Debug)]
pub(crate) struct Written {
    /// The session's new version.
    pub version: u64,
    /// Its new state label.
    pub state: String,
    /// Its next deadline.
    pub next_deadline: Option<Timestamp>,
    /// The outbox rows, with their sequence numbers.
    pub outbox: Vec<(u64, OutboxEffect)>,
    /// History rows written.
    pub history_rows: usize,
    /// Final history rows written (each final row comes with its billing record).
    pub final_rows: usize,
}

/// The store's answer to one commit.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Written.
    Committed(Box<Written>),
    /// Another node committed first.
    Conflict(Option<u64>),
    /// The input was already processed.
    Duplicate,
    /// The active-call entry was refused: these calls hold the user.
    Busy(Vec<ActiveCall>),
    /// The store failed.
    Failed(String),
}

/// Commits held and answered, shared by the world and the store view.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// The next commit may go through.
    open: bool,
    /// A commit is waiting for release.
    held: bool,
    /// Answers since the world last looked.
    answers: Vec<Answer>,
}

/// The shared gate.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedGate(Arc<Mutex<Gate>>);

impl SharedGate {
    fn lock(&self) -> MutexGuard<'_, Gate> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets the next commit through (`release`) or holds it, before the world polls a node.
    pub(crate) fn arm(&self, release: bool) {
        let mut gate = self.lock();
        gate.open = release;
        gate.held = false;
    }

    /// After a poll: whether a commit is waiting, and the store's answers meanwhile.
    pub(crate) fn take(&self) -> (bool, Vec<Answer>) {
        let mut gate = self.lock();
        (gate.held, std::mem::take(&mut gate.answers))
    }
}

/// Waits for the world to release one commit.
struct Release(SharedGate);

impl Future for Release {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let mut gate = self.0.lock();
        if std::mem::take(&mut gate.open) {
            Poll::Ready(())
        } else {
            // The world polls again when it releases this node; no waker is needed.
            gate.held = true;
            Poll::Pending
        }
    }
}

/// The in-memory store as the simulated nodes' engine sees it.
pub(crate) struct NodeStore {
    /// The store.
    pub store: MemoryStore,
    /// Where commits wait and answers go.
    pub gate: SharedGate,
}

#[async_trait]
impl SessionStore for NodeStore {
    async fn load_session(&self, id: &CallSessionId) -> Result<Option<StoredSession>, StoreError> {
        Store::load_session(&self.store, id).await
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        Release(self.gate.clone()).await;
        let state = commit.state_label.clone();
        let next_deadline = commit.next_deadline;
        let effects = commit.effects.clone();
        let history_rows = commit.calls.len();
        let final_rows = commit.billing.len();
        let result = Store::commit(&self.store, commit).await;
        let answer = match &result {
            Ok(CommitOutcome::Committed {
                version,
                effect_seqs,
                ..
            }) => Answer::Committed(Box::new(Written {
                version: *version,
                state,
                next_deadline,
                outbox: effect_seqs.iter().copied().zip(effects).collect(),
                history_rows,
                final_rows,
            })),
            Ok(CommitOutcome::Conflict { current_version }) => Answer::Conflict(*current_version),
            Ok(CommitOutcome::Duplicate) => Answer::Duplicate,
            Ok(CommitOutcome::Busy { active }) => Answer::Busy(active.clone()),
            Err(e) => Answer::Failed(e.to_string()),
        };
        self.gate.lock().answers.push(answer);
        result
    }

    async fn quarantine_session(
        &self,
        id: &CallSessionId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        Store::quarantine_session(&self.store, id, reason, at).await
    }
}
