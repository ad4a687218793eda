//! Ringmaster's store: everything the coordinator keeps between inputs.
//!
//! One [`Store`] trait, three backends that pass the same [`conformance`] suite:
//! [`SqliteStore`] (the embedded default), [`PostgresStore`] (shared by several processes)
//! and [`MemoryStore`] (deterministic, for the simulator). The one path a call's state
//! changes is [`Store::commit`]: session document, outbox effects, dedupe key, registry,
//! history and timeline, all-or-nothing, guarded by the session's version.

pub mod cluster;
mod codec;
pub mod conformance;
pub mod directory;
mod directory_cache;
pub mod error;
pub mod history;
pub mod host_event;
pub mod limits;
pub mod memory;
pub mod migrate;
pub mod ops;
pub mod postgres;
pub mod quality;
pub mod registry;
pub mod session;
pub mod session_commit;
pub mod sqlite;
mod timer_leases;
pub mod webhook_store;

pub use cluster::{DialLedger, OutboxWakeups, SlotLimit, SlotOutcome};
pub use directory::{Device, DevicePlatform, PushProvider, User, UserSettings};
pub use error::StoreError;
pub use history::{
    BillingRecord, CallDetail, CallDirection, CallRecord, CallStatus, LegRecord, Page,
    TimelineEntry, TimelineSource, SIMPLE_CALL_MINUTE,
};
pub use memory::MemoryStore;
pub use migrate::{migrate, AppliedMigration};
pub use ops::{OpsStats, OpsStore, OutboxBacklog};
pub use postgres::PostgresStore;
pub use quality::{
    AnalyticsEvent, CallQualityData, QualityIngest, QualityItem, QualitySample, QualityStore,
    SampleSource,
};
pub use registry::{ActiveCall, RegistryChange};
pub use session::{
    Commit, CommitClaim, CommitOutcome, Lane, OutboxEffect, OutboxEntry, Pruned, Retention,
    StoredSession,
};
pub use session_commit::{call_status, session_commit};
pub use sqlite::{SqliteStore, SqliteSync};
pub use webhook_store::WebhookStore;

use async_trait::async_trait;
use ringmaster_core::{CallSessionId, DeviceId, Timestamp, UserId};
/// History statuses of a call that has not ended.
pub const UNFINISHED_STATUSES: [CallStatus; 3] = [
    CallStatus::Ringing,
    CallStatus::Answered,
    CallStatus::Bridged,
];

/// Durable state of the coordinator. Shared as `Arc<dyn Store>`. Call quality analytics
/// live in the supertrait [`QualityStore`].
///
/// Every method either fully succeeds or changes nothing.
#[async_trait]
pub trait Store: QualityStore + OpsStore + WebhookStore + Send + Sync + 'static {
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

    /// The devices registered with exactly this SIP URI (revoked ones included), oldest first:
    /// a `call.initiated` from it is a call the device placed itself.
    async fn devices_by_sip_uri(&self, sip_uri: &str) -> Result<Vec<Device>, StoreError>;

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

    /// Applies several commits, each all-or-nothing and checked on its own exactly as by
    /// [`Store::commit`] (a conflicting, duplicate, busy or invalid commit affects only
    /// itself); results are in order. A backend may write them in one transaction (group
    /// commit); none is reported committed before it is durable. The default applies them
    /// one by one.
    async fn commit_batch(&self, commits: Vec<Commit>) -> Vec<Result<CommitOutcome, StoreError>> {
        let mut results = Vec::with_capacity(commits.len());
        for commit in commits {
            results.push(self.commit(commit).await);
        }
        results
    }

    /// Whether an input with this dedupe key has been committed.
    async fn is_processed(&self, dedupe_key: &str) -> Result<bool, StoreError>;

    /// Forgets dedupe keys processed before `before`; returns how many.
    async fn prune_processed(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Up to `limit` undispatched effects in commit order (per session, in `seq` order).
    /// Failed effects stay pending until done or abandoned.
    async fn pending_effects(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Up to `limit` pending effects of `lane` due at `now` (`next_attempt_at <= now`),
    /// earliest due first, ties in commit order (a fresh effect is due from its commit, so
    /// fresh effects come in commit order; one backing off goes after those due before it).
    /// An effect with an `order_key` is left out while an earlier effect of the
    /// same session with the same key is still pending (due or not), so one target's
    /// notifications go out in order. Effects of quarantined sessions are left out.
    async fn due_effects(
        &self,
        lane: Lane,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Claims up to `limit` effects for `owner` until `lease_until`: the effects
    /// [`Store::due_effects`] returns (same order, same ordering-key hold-back and quarantine
    /// rules) minus those whose lease another owner holds past `now`. Rows `owner` already
    /// holds are claimable again (and their lease extended). Two owners claiming at the same
    /// time never get the same row. Done, failed, abandoned and deferred effects lose their
    /// lease.
    async fn claim_due_effects(
        &self,
        lane: Lane,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Claims, for each `(lane, limit)` of `lanes` in turn, what [`Store::claim_due_effects`]
    /// would claim for that lane and limit (same rules: order, ordering-key hold-back,
    /// quarantine, leases), in one read where the backend can: the dispatcher's pass over
    /// every lane costs one round trip, not one per lane. The rows come lane by lane in the
    /// order asked, each lane earliest due first. A limit of 0 claims nothing of its lane; a
    /// lane listed twice, or [`Lane::Host`], is `Invalid`. The default claims lane by lane.
    async fn claim_due_effects_all(
        &self,
        lanes: &[(Lane, u32)],
        now: Timestamp,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        limits::text("lease owner", owner, limits::MAX_ID_LEN)?;
        session::check_claim_lanes(lanes)?;
        let mut claimed = Vec::new();
        for &(lane, limit) in lanes {
            if limit > 0 {
                claimed.extend(
                    self.claim_due_effects(lane, now, limit, owner, lease_until)
                        .await?,
                );
            }
        }
        Ok(claimed)
    }

    /// A signal each time any process commits outbox rows to this store, or `None` when only
    /// this process writes it (then its own engine's kick is enough).
    async fn outbox_wakeups(&self) -> Result<Option<OutboxWakeups>, StoreError> {
        Ok(None)
    }

    /// The dial-slot ledger shared by every process on this store, or `None` when the store
    /// has one process (then an in-process limiter is exact).
    fn dial_ledger(&self) -> Option<std::sync::Arc<dyn DialLedger>> {
        None
    }

    /// Marks an effect dispatched. Idempotent; `NotFound` for an unknown effect. True when this
    /// call marked it and a pending effect with its ordering key waits behind it (it held that
    /// one back until now), so the dispatcher knows when a read can find more.
    async fn mark_effect_done(
        &self,
        session_id: &CallSessionId,
        seq: u64,
    ) -> Result<bool, StoreError>;

    /// Records a failed attempt (attempts + 1, error kept); the effect stays pending and is not
    /// due again before `retry_at`.
    async fn mark_effect_failed(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Makes a pending effect due no earlier than `until` without counting an attempt (a dial
    /// waiting for its rate slot). Idempotent; `NotFound` for an unknown effect.
    async fn defer_effect(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        until: Timestamp,
    ) -> Result<(), StoreError>;

    /// Gives up on an effect: it leaves the pending list with its error kept.
    async fn mark_effect_abandoned(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        error: &str,
    ) -> Result<(), StoreError>;

    /// Up to `limit` sessions whose next deadline is at or before `now`, earliest first.
    /// Quarantined sessions are never due.
    async fn due_sessions(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(CallSessionId, Timestamp)>, StoreError>;

    /// Claims up to `limit` due sessions for `owner` until `lease_until`: the sessions
    /// [`Store::due_sessions`] returns (same order, quarantined never due) minus those whose
    /// timer lease another owner holds past `now`. Sessions `owner` already holds are
    /// claimable again (and their lease extended). Two owners claiming at the same time never
    /// get the same session. A commit of the session ends its lease, so its next deadline is
    /// claimable at once.
    async fn claim_due_sessions(
        &self,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Vec<(CallSessionId, Timestamp)>, StoreError>;

    /// Quarantines a session that cannot be handled (its document does not decode, or
    /// handling it panicked): it is no longer due for timers and its effects are no longer
    /// dispatched, except releases (hanging up its legs is still right). Returns whether the
    /// session exists. Idempotent: the first reason is kept.
    async fn quarantine_session(
        &self,
        id: &CallSessionId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The ids of quarantined sessions, oldest quarantine first, up to `limit`.
    async fn quarantined_sessions(&self, limit: u32) -> Result<Vec<CallSessionId>, StoreError>;

    /// Deletes what `retention` says is old: finished outbox rows, dedupe keys, the hot state
    /// of closed sessions with nothing pending, and (when asked) call history.
    async fn prune(&self, retention: Retention) -> Result<Pruned, StoreError>;

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

    /// Calls of every user still ringing or up (status `ringing`, `answered` or `bridged`),
    /// newest first, at most `limit` (capped at [`limits::MAX_PAGE`], at least 1). For the
    /// operator view.
    async fn live_calls(&self, limit: u32) -> Result<Vec<CallRecord>, StoreError>;

    /// Timeline entries of every call at or after `since`, oldest first, at most `limit`
    /// (capped at [`limits::MAX_BATCH`], at least 1). For the operator's dismissal latency.
    async fn timeline_since(
        &self,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<TimelineEntry>, StoreError>;

    /// Waits for in-flight writes and releases the backend's resources.
    async fn close(&self);
}
