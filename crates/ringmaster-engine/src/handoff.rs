//! The hand-off of a commit's own effects to this node's dispatcher. A commit made with a
//! [`Handoff`] leases the effects a claim could take at once to the dispatcher's node, in the
//! same transaction ([`CommitClaim`]), and the engine passes them over in memory: the
//! dispatcher starts them, in the committing task, without reading the outbox back. A
//! commit's hangups and `call_ended` notifications thus start as soon as it is durable, not
//! after the dispatcher has woken up and claimed them in a read of its own.
//!
//! The rows are leased like any claim's, so nothing else changes: what the dispatcher does not
//! start (no permit free, or it has stopped) stays leased to it and is claimed again by its
//! next drain, or by any node once the lease runs out.

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{Commit, CommitClaim, OutboxEntry};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What starts handed effects: this node's dispatcher.
#[async_trait]
pub trait Starter: Send + Sync {
    /// Starts `entries`, leased to this node; one it cannot start now stays leased to it.
    async fn start(&self, entries: Vec<OutboxEntry>);
}

/// Where the dispatcher puts its starter once it runs.
type Slot = Arc<OnceLock<Arc<dyn Starter>>>;

/// The engine's end: who the dispatcher is in the outbox's leases, and what starts effects.
#[derive(Clone)]
pub struct Handoff {
    owner: String,
    lease: Duration,
    starter: Slot,
}

/// The dispatcher's end: it binds its starter here when it starts.
pub struct Handed {
    owner: String,
    starter: Slot,
}

/// A hand-off from engine to dispatcher for the node `owner` whose claims lease rows for
/// `lease`.
pub fn channel(owner: impl Into<String>, lease: Duration) -> (Handoff, Handed) {
    let owner = owner.into();
    let starter = Slot::default();
    (
        Handoff {
            owner: owner.clone(),
            lease,
            starter: starter.clone(),
        },
        Handed { owner, starter },
    )
}

impl Handoff {
    /// The claim a commit made at `now` takes on its effects.
    pub fn claim(&self, now: Timestamp) -> CommitClaim {
        CommitClaim {
            owner: self.owner.clone(),
            until: now + self.lease,
        }
    }

    /// Starts the effects of `commit` with these sequence numbers (`claimed`, a subset of
    /// `effect_seqs`, which number `commit.effects`), as the outbox holds them, in the
    /// committing task: no other task has to be woken first. False when no dispatcher runs
    /// yet (the rows stay leased to its node, for its first drain).
    pub async fn hand(&self, commit: &Commit, effect_seqs: &[u64], claimed: &[u64]) -> bool {
        let entries: Vec<OutboxEntry> = effect_seqs
            .iter()
            .zip(&commit.effects)
            .filter(|(seq, _)| claimed.contains(seq))
            .map(|(&seq, effect)| OutboxEntry {
                session_id: CallSessionId::clone(&commit.session_id),
                seq,
                effect: effect.effect.clone(),
                attempts: 0,
                last_error: None,
                created_at: commit.at,
                lane: effect.lane,
                next_attempt_at: commit.at,
            })
            .collect();
        if entries.is_empty() {
            return true;
        }
        match self.starter.get() {
            Some(starter) => {
                starter.start(entries).await;
                true
            }
            None => false,
        }
    }
}

impl Handed {
    /// The node the handed effects are leased to.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Has `starter` start what the engine hands over from now on (once: a later call
    /// changes nothing).
    pub fn bind(&self, starter: Arc<dyn Starter>) {
        let _ = self.starter.set(starter);
    }
}
