//! The hand-off of a commit's own effects to this node's dispatcher. A commit made with a
//! [`Handoff`] leases the effects a claim could take at once to the dispatcher's node, in the
//! same transaction ([`CommitClaim`]), and the engine passes them over in memory: the
//! dispatcher starts them without reading the outbox back. A commit's hangups and
//! `call_ended` notifications thus go out one channel send after it is durable, not after
//! the dispatcher has woken up and claimed them in a read of its own.
//!
//! The rows are leased like any claim's, so nothing else changes: what the dispatcher does not
//! start (no permit free, or it has stopped) stays leased to it and is claimed again by its
//! next drain, or by any node once the lease runs out.

use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{Commit, CommitClaim, OutboxEntry};
use std::time::Duration;
use tokio::sync::mpsc;

/// The engine's end: who the dispatcher is in the outbox's leases, and where effects go.
#[derive(Clone, Debug)]
pub struct Handoff {
    owner: String,
    lease: Duration,
    to: mpsc::UnboundedSender<Vec<OutboxEntry>>,
}

/// The dispatcher's end: effects committed on this node, already leased to it.
#[derive(Debug)]
pub struct Handed {
    owner: String,
    from: mpsc::UnboundedReceiver<Vec<OutboxEntry>>,
}

/// A hand-off from engine to dispatcher for the node `owner` whose claims lease rows for
/// `lease`.
pub fn channel(owner: impl Into<String>, lease: Duration) -> (Handoff, Handed) {
    let owner = owner.into();
    let (to, from) = mpsc::unbounded_channel();
    (
        Handoff {
            owner: owner.clone(),
            lease,
            to,
        },
        Handed { owner, from },
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

    /// Hands the effects of `commit` with these sequence numbers (`claimed`, a subset of
    /// `effect_seqs`, which number `commit.effects`) to the dispatcher, as the outbox holds
    /// them; false when the dispatcher is gone (the rows stay leased to its node).
    pub fn hand(&self, commit: &Commit, effect_seqs: &[u64], claimed: &[u64]) -> bool {
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
        entries.is_empty() || self.to.send(entries).is_ok()
    }
}

impl Handed {
    /// The node the handed effects are leased to.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The next effects handed over, and any others already waiting; `None` once every
    /// engine holding the other end is gone.
    pub async fn recv(&mut self) -> Option<Vec<OutboxEntry>> {
        let mut entries = self.from.recv().await?;
        while let Ok(more) = self.from.try_recv() {
            entries.extend(more);
        }
        Some(entries)
    }
}
