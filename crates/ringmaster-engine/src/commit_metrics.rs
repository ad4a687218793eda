//! The engine's store metrics: how long commits take, and how many lose the compare-and-set.
//! Recorded through the `metrics` facade; the server installs the exporter and describes them.

use crate::sessions::SessionStore;
use metrics::{counter, histogram};
use ringmaster_store::{Commit, CommitOutcome, StoreError};
use std::time::Instant;

/// Histogram: time one store commit took, by outcome.
pub const COMMIT_SECONDS: &str = "ringmaster_store_commit_seconds";
/// Counter: commits that lost the compare-and-set.
pub const CAS_CONFLICTS: &str = "ringmaster_store_cas_conflicts_total";

/// Commits through `store`, timing it and counting lost compare-and-sets.
pub async fn timed_commit(
    store: &dyn SessionStore,
    commit: Commit,
) -> Result<CommitOutcome, StoreError> {
    let started = Instant::now();
    let result = store.commit(commit).await;
    let outcome = match &result {
        Ok(CommitOutcome::Committed { .. }) => "committed",
        Ok(CommitOutcome::Conflict { .. }) => "conflict",
        Ok(CommitOutcome::Duplicate) => "duplicate",
        Ok(CommitOutcome::Busy { .. }) => "busy",
        Err(_) => "error",
    };
    histogram!(COMMIT_SECONDS, "outcome" => outcome).record(started.elapsed());
    if outcome == "conflict" {
        counter!(CAS_CONFLICTS).increment(1);
    }
    result
}
