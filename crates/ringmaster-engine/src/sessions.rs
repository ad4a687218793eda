//! The part of a store the engine needs: a session's document, its compare-and-set commit and
//! its quarantine. Every [`Store`] is one; a driver can also put its own in between (the
//! simulator holds commits back to interleave nodes).

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{Commit, CommitOutcome, Store, StoreError, StoredSession};

/// Sessions as the engine reads and writes them.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The stored session and its version (see [`Store::load_session`]).
    async fn load_session(&self, id: &CallSessionId) -> Result<Option<StoredSession>, StoreError>;

    /// Writes a session with its effects, compare-and-set (see [`Store::commit`]).
    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError>;

    /// Takes a session out of service (see [`Store::quarantine_session`]).
    async fn quarantine_session(
        &self,
        id: &CallSessionId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
impl<S: Store + ?Sized> SessionStore for S {
    async fn load_session(&self, id: &CallSessionId) -> Result<Option<StoredSession>, StoreError> {
        Store::load_session(self, id).await
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        Store::commit(self, commit).await
    }

    async fn quarantine_session(
        &self,
        id: &CallSessionId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        Store::quarantine_session(self, id, reason, at).await
    }
}

/// A shared [`Store`] as the engine's [`SessionStore`].
pub(crate) struct Shared(pub(crate) std::sync::Arc<dyn Store>);

#[async_trait]
impl SessionStore for Shared {
    async fn load_session(&self, id: &CallSessionId) -> Result<Option<StoredSession>, StoreError> {
        Store::load_session(&*self.0, id).await
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        Store::commit(&*self.0, commit).await
    }

    async fn quarantine_session(
        &self,
        id: &CallSessionId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        Store::quarantine_session(&*self.0, id, reason, at).await
    }
}
