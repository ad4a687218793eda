//! What the coordinator keeps, and for how long (docs/operations: "Retention").
//!
//! Hot state is pruned on a schedule by the timer loop: dispatched outbox rows, dedupe keys
//! (webhook ids, device report numbers) and the session documents of calls that are over.
//! Call history (records, legs, timeline) is kept forever unless an operator sets a history
//! retention (`--history-retention-days`).

use ringmaster_core::Timestamp;
use ringmaster_store::{Pruned, Retention, Store, StoreError};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long each kind of row is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Dispatched or abandoned outbox rows (kept a while for operators' post-mortems).
    pub finished_effects: Duration,
    /// Dedupe keys; Telnyx stops redelivering within minutes, so a week is ample.
    pub dedupe_keys: Duration,
    /// The session document of a call that is over (its history stays).
    pub closed_sessions: Duration,
    /// Call history; `None` keeps it forever.
    pub history: Option<Duration>,
    /// How often pruning runs.
    pub every: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            finished_effects: DAY,
            dedupe_keys: 7 * DAY,
            closed_sessions: DAY,
            history: None,
            every: Duration::from_secs(3600),
        }
    }
}

impl RetentionPolicy {
    /// The default policy, keeping history for `days` (0: forever).
    pub fn with_history_days(days: u32) -> Self {
        Self {
            history: (days > 0).then(|| DAY * days),
            ..Self::default()
        }
    }

    /// The store cut-offs at `now`.
    pub fn cutoffs(&self, now: Timestamp) -> Retention {
        Retention {
            finished_effects_before: now - self.finished_effects,
            processed_before: now - self.dedupe_keys,
            closed_sessions_before: now - self.closed_sessions,
            history_before: self.history.map(|keep| now - keep),
        }
    }
}

/// Prunes `store` once under `policy` at `now`, logging what went.
pub async fn prune(
    store: &dyn Store,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<Pruned, StoreError> {
    let pruned = store.prune(policy.cutoffs(now)).await?;
    if pruned != Pruned::default() {
        tracing::info!(
            effects = pruned.effects,
            dedupe_keys = pruned.processed,
            sessions = pruned.sessions,
            calls = pruned.calls,
            "retention pruned old rows"
        );
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_follow_the_policy() {
        let now = Timestamp::from_millis(100 * DAY.as_millis() as u64);
        let day = |n: u64| Timestamp::from_millis(n * DAY.as_millis() as u64);
        let r = RetentionPolicy::default().cutoffs(now);
        assert_eq!(r.finished_effects_before, day(99));
        assert_eq!(r.processed_before, day(93));
        assert_eq!(r.closed_sessions_before, day(99));
        assert_eq!(r.history_before, None, "history is kept unless asked");
        let r = RetentionPolicy::with_history_days(30).cutoffs(now);
        assert_eq!(r.history_before, Some(day(70)));
        assert_eq!(RetentionPolicy::with_history_days(0).history, None);
    }
}
