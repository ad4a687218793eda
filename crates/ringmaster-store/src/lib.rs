//! Ringmaster's store: everything the coordinator keeps between inputs.
//!
//! One [`Store`] trait, three backends that pass the same [`conformance`] suite:
//! [`SqliteStore`] (the embedded default), [`PostgresStore`] (shared by several processes)
//! and [`MemoryStore`] (deterministic, for the simulator). The one path a call's state
//! changes is [`Store::commit`]: session document, outbox effects, dedupe key, registry,
//! history and timeline, all-or-nothing, guarded by the session's version.

mod codec;
pub mod conformance;
pub mod directory;
pub mod error;
pub mod history;
pub mod limits;
pub mod memory;
pub mod postgres;
pub mod registry;
pub mod session;
pub mod session_commit;
pub mod sqlite;

pub use directory::{Device, DevicePlatform, PushProvider, User, UserSettings};
pub use error::StoreError;
pub use history::{
    CallDetail, CallDirection, CallRecord, CallStatus, LegRecord, Page, TimelineEntry,
    TimelineSource,
};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use registry::{ActiveCall, RegistryChange};
pub use session::{Commit, CommitOutcome, OutboxEntry, StoredSession};
pub use session_commit::{call_status, session_commit};
pub use sqlite::{SqliteStore, SqliteSync};

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, DeviceId, Timestamp, UserId};
/// History statuses of a call that has not ended.
pub const UNFINISHED_STATUSES: [CallStatus; 3] = [
    CallStatus::Ringing,
    CallStatus::Answered,
    CallStatus::Bridged,
];

/// Durable state of the coordinator. Shared as `Arc<dyn Store>`.
///
/// Every method either fully succeeds or changes nothing.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user with its numbers. Fails with `AlreadyExists` for a taken id and
    /// `NumberTaken` when a number already routes to someone.
    async fn create_user(&self, user: User) -> Result<User, StoreError>;

    /// The user with this id.
    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError>;

    /// The user a number (E.164, exact match) routes to.
    async fn user_by_number(&self, number: &str) -> Result<Option<User>, StoreError>;

    /// Changes a user's call-waiting and voicemail switches and returns the updated user.
    async fn update_user_settings(
        &self,
        id: &UserId,
        settings: UserSettings,
    ) -> Result<User, StoreError>;

    /// Registers a device of an existing user (`NotFound` otherwise).
    async fn create_device(&self, device: Device) -> Result<Device, StoreError>;

    /// The device with this id (revoked ones included).
    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError>;

    /// All devices of a user, revoked ones included, oldest first.
    async fn devices_of_user(&self, user_id: &UserId) -> Result<Vec<Device>, StoreError>;

    /// Records the device's current push token and clears it from every other device: a
    /// token reaches one app install, so a phone re-registered under another user must stop
    /// getting the first user's pushes.
    async fn set_push_token(
        &self,
        id: &DeviceId,
        provider: PushProvider,
        token: &str,
    ) -> Result<(), StoreError>;

    /// Forgets the device's push token if it is still `token` (a push service rejected it);
    /// returns whether it was cleared. A token registered meanwhile is kept.
    async fn clear_push_token(&self, id: &DeviceId, token: &str) -> Result<bool, StoreError>;

    /// Marks a device revoked; it stays listed but must no longer be dialled or trusted.
    async fn revoke_device(&self, id: &DeviceId) -> Result<(), StoreError>;

    /// Replaces the device's token hash (a re-issued token); the old token stops working.
    async fn set_device_token(&self, id: &DeviceId, token_hash: &str) -> Result<(), StoreError>;

    /// How many of the user's calls have not ended yet (ringing, answered or bridged).
    async fn unfinished_calls(&self, user_id: &UserId) -> Result<u64, StoreError>;

    /// Up to `limit` timeline entries of a call of this user, oldest first, skipping the
    /// first `offset`, and the timeline's total length; `None` for another user's call.
    async fn call_timeline(
        &self,
        user_id: &UserId,
        call_session_id: &CallSessionId,
        offset: u64,
        limit: u32,
    ) -> Result<Option<(Vec<TimelineEntry>, u64)>, StoreError>;

    /// The session with this id.
    async fn load_session(&self, id: &CallSessionId) -> Result<Option<StoredSession>, StoreError>;

    /// Applies a commit atomically; see [`CommitOutcome`] for the non-error results.
    ///
    /// Checked in this order: dedupe key (`Duplicate`), version (`Conflict`), registry
    /// (`Busy`). Invalid input or a history row owned by another user/session is an
    /// `Invalid` error. Anything but `Committed` leaves the store unchanged.
    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError>;

    /// Whether an input with this dedupe key has been committed.
    async fn is_processed(&self, dedupe_key: &str) -> Result<bool, StoreError>;

    /// Forgets dedupe keys processed before `before`; returns how many.
    async fn prune_processed(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Up to `limit` undispatched effects in commit order (per session, in `seq` order).
    /// Failed effects stay pending until done or abandoned.
    async fn pending_effects(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Marks an effect dispatched. Idempotent; `NotFound` for an unknown effect.
    async fn mark_effect_done(
        &self,
        session_id: &CallSessionId,
        seq: u64,
    ) -> Result<(), StoreError>;

    /// Records a failed attempt (attempts + 1, error kept); the effect stays pending.
    async fn mark_effect_failed(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Gives up on an effect: it leaves the pending list with its error kept.
    async fn mark_effect_abandoned(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Up to `limit` sessions whose next deadline is at or before `now`, earliest first.
    async fn due_sessions(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(CallSessionId, Timestamp)>, StoreError>;

    /// The user's active calls, oldest first.
    async fn active_calls(&self, user_id: &UserId) -> Result<Vec<ActiveCall>, StoreError>;

    /// The user's calls, newest first. `cursor` is a previous page's `next_cursor`;
    /// `limit` is capped at [`limits::MAX_PAGE`] and must be at least 1.
    async fn list_calls(
        &self,
        user_id: &UserId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<CallRecord>, StoreError>;

    /// A call of this user with its legs and timeline; `None` for another user's call.
    async fn get_call(
        &self,
        user_id: &UserId,
        call_session_id: &CallSessionId,
    ) -> Result<Option<CallDetail>, StoreError>;

    /// Waits for in-flight writes and releases the backend's resources.
    async fn close(&self);
}
