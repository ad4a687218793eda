//! The in-memory backend: deterministic (ordered maps, no clock, no randomness, no timers),
//! for the simulator and for tests. Every future it returns is ready on first poll, so it can
//! be driven without a runtime (e.g. `futures::executor::block_on`).

use async_trait::async_trait;
use ringmaster_core::{CallControlId, CallSessionId, DeviceId, Timestamp, UserId};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::directory::{Device, PushProvider, User, UserSettings};
use crate::error::StoreError;
use crate::history::{
    BillingRecord, CallDetail, CallRecord, CallStatus, HistoryCursor, LegRecord, Page,
    TimelineEntry,
};
use crate::limits;
use crate::registry::{ActiveCall, RegistryChange};
use crate::session::{
    Commit, CommitClaim, CommitOutcome, Lane, OutboxEntry, Pruned, Retention, StoredSession,
};
use crate::Store;

mod ops;
mod webhooks;

/// A [`Store`] held in process memory. Clones share the same data.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    quality: Arc<Mutex<crate::quality::QualityState>>,
}

#[derive(Debug, Default)]
struct State {
    users: BTreeMap<UserId, User>,
    numbers: BTreeMap<String, UserId>,
    devices: BTreeMap<DeviceId, Device>,
    sessions: BTreeMap<CallSessionId, SessionRow>,
    deadlines: BTreeSet<(u64, CallSessionId)>,
    outbox: BTreeMap<u64, OutboxRow>,
    outbox_index: BTreeMap<(CallSessionId, u64), u64>,
    pending: BTreeSet<u64>,
    next_outbox_id: u64,
    processed: BTreeMap<String, Timestamp>,
    active: BTreeMap<UserId, BTreeMap<CallSessionId, ActiveCall>>,
    calls: BTreeMap<CallSessionId, CallRecord>,
    legs: BTreeMap<CallControlId, LegRecord>,
    timeline: BTreeMap<CallSessionId, Vec<TimelineEntry>>,
    billing: BTreeMap<CallSessionId, BillingRecord>,
    webhooks: webhooks::WebhookState,
    timer_leases: crate::timer_leases::TimerLeases,
}

#[derive(Debug)]
struct SessionRow {
    session: StoredSession,
    effect_seq: u64,
    closed: bool,
    updated_at: Timestamp,
    quarantined: Option<Timestamp>,
}

#[derive(Debug)]
struct OutboxRow {
    entry: OutboxEntry,
    order_key: Option<String>,
    pending: bool,
    /// The claimer holding the row, and until when.
    lease: Option<(String, Timestamp)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The quality tables (kept apart from the call state they never share a write with).
    pub(crate) fn quality(&self) -> MutexGuard<'_, crate::quality::QualityState> {
        self.quality.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation validates first and then applies infallibly, so the data behind a
        // poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn sorted_active(set: &BTreeMap<CallSessionId, ActiveCall>) -> Vec<ActiveCall> {
    let mut calls: Vec<ActiveCall> = set.values().cloned().collect();
    calls.sort_by(|a, b| {
        (a.started_at, &a.call_session_id).cmp(&(b.started_at, &b.call_session_id))
    });
    calls
}

impl State {
    fn user_with_numbers(&self, id: &UserId) -> Option<User> {
        self.users.get(id).cloned()
    }

    fn call_waiting(&self, user_id: &UserId) -> bool {
        self.users.get(user_id).is_some_and(|u| u.call_waiting)
    }

    fn outbox_row(
        &mut self,
        session_id: &CallSessionId,
        seq: u64,
    ) -> Result<(u64, &mut OutboxRow), StoreError> {
        let id = *self
            .outbox_index
            .get(&(session_id.clone(), seq))
            .ok_or_else(|| StoreError::not_found("effect", format!("{session_id}#{seq}")))?;
        let row = self
            .outbox
            .get_mut(&id)
            .ok_or_else(|| StoreError::Corrupt(format!("outbox index points at {id}")))?;
        Ok((id, row))
    }

    /// Ids of up to `limit` due rows of `lane` that `claimable` accepts, earliest due first
    /// (ties in commit order), as the SQL backends take them. An earlier pending row with the
    /// same ordering key holds a row back, claimable or not.
    fn due_ids(
        &self,
        lane: Lane,
        now: Timestamp,
        limit: u32,
        claimable: impl Fn(&OutboxRow) -> bool,
    ) -> Vec<u64> {
        let mut blocked: BTreeSet<(&CallSessionId, &str)> = BTreeSet::new();
        let mut due = Vec::new();
        let limit = limits::limit(limit);
        for id in &self.pending {
            let Some(row) = self.outbox.get(id) else {
                continue;
            };
            if row.entry.lane != lane {
                continue;
            }
            // `pending` is in commit order, so the first pending row per key is the head.
            if let Some(key) = &row.order_key {
                if !blocked.insert((&row.entry.session_id, key.as_str())) {
                    continue;
                }
            }
            let quarantined = self
                .sessions
                .get(&row.entry.session_id)
                .is_some_and(|s| s.quarantined.is_some());
            if row.entry.next_attempt_at <= now
                && !(quarantined && lane != Lane::Release)
                && claimable(row)
            {
                due.push((row.entry.next_attempt_at, *id));
            }
        }
        due.sort_unstable();
        due.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    fn commit(&mut self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        limits::commit(&commit)?;

        if let Some(key) = &commit.dedupe_key {
            if self.processed.contains_key(key) {
                return Ok(CommitOutcome::Duplicate);
            }
        }

        let current = self.sessions.get(&commit.session_id);
        match (commit.expected_version, current) {
            (None, Some(row)) => {
                return Ok(CommitOutcome::Conflict {
                    current_version: Some(row.session.version),
                })
            }
            (Some(_), None) => {
                return Ok(CommitOutcome::Conflict {
                    current_version: None,
                })
            }
            (Some(expected), Some(row)) if row.session.version != expected => {
                return Ok(CommitOutcome::Conflict {
                    current_version: Some(row.session.version),
                })
            }
            _ => {}
        }

        // Registry: run the changes against working copies of the touched users' sets.
        let mut registry: BTreeMap<UserId, BTreeMap<CallSessionId, ActiveCall>> = BTreeMap::new();
        for change in &commit.registry {
            let user_id = match change {
                RegistryChange::Set(a) => &a.user_id,
                RegistryChange::Clear { user_id, .. } => user_id,
            };
            let set = registry
                .entry(user_id.clone())
                .or_insert_with(|| self.active.get(user_id).cloned().unwrap_or_default());
            match change {
                RegistryChange::Set(active) => {
                    let other_call = set.keys().any(|s| *s != active.call_session_id);
                    if other_call && !self.call_waiting(&active.user_id) {
                        return Ok(CommitOutcome::Busy {
                            active: sorted_active(set),
                        });
                    }
                    set.insert(active.call_session_id.clone(), active.clone());
                }
                RegistryChange::Clear {
                    call_session_id, ..
                } => {
                    set.remove(call_session_id);
                }
            }
        }

        // History rows may be rewritten but never moved to another user or session.
        let mut call_owner: BTreeMap<&CallSessionId, &UserId> = BTreeMap::new();
        for call in &commit.calls {
            let owner = call_owner
                .get(&call.call_session_id)
                .copied()
                .or_else(|| self.calls.get(&call.call_session_id).map(|c| &c.user_id));
            if owner.is_some_and(|o| *o != call.user_id) {
                return Err(StoreError::invalid(
                    "call record",
                    format!("call {} belongs to another user", call.call_session_id),
                ));
            }
            call_owner.insert(&call.call_session_id, &call.user_id);
        }
        let mut leg_owner: BTreeMap<&CallControlId, &CallSessionId> = BTreeMap::new();
        for leg in &commit.legs {
            let owner = leg_owner.get(&leg.call_control_id).copied().or_else(|| {
                self.legs
                    .get(&leg.call_control_id)
                    .map(|l| &l.call_session_id)
            });
            if owner.is_some_and(|o| *o != leg.call_session_id) {
                return Err(StoreError::invalid(
                    "leg record",
                    format!("leg {} belongs to another call", leg.call_control_id),
                ));
            }
            leg_owner.insert(&leg.call_control_id, &leg.call_session_id);
        }

        // Everything is checked: apply.
        let Commit {
            session_id,
            user_id,
            expected_version,
            doc,
            state_label,
            next_deadline,
            closed,
            effects,
            dedupe_key,
            registry: _,
            calls,
            legs,
            billing,
            timeline,
            at,
            claim,
        } = commit;

        let (version, first_seq) = match self.sessions.get_mut(&session_id) {
            Some(row) => {
                if let Some(old) = row.session.next_deadline {
                    self.deadlines
                        .remove(&(old.as_millis(), session_id.clone()));
                }
                row.session.version += 1;
                row.session.doc = doc;
                row.session.state_label = state_label;
                row.session.next_deadline = next_deadline;
                row.closed = closed;
                row.updated_at = at;
                let first = row.effect_seq + 1;
                row.effect_seq += effects.len() as u64;
                (row.session.version, first)
            }
            None => {
                debug_assert!(expected_version.is_none());
                self.sessions.insert(
                    session_id.clone(),
                    SessionRow {
                        session: StoredSession {
                            id: session_id.clone(),
                            user_id,
                            version: 1,
                            doc,
                            next_deadline,
                            state_label,
                            quarantined: false,
                        },
                        effect_seq: effects.len() as u64,
                        closed,
                        updated_at: at,
                        quarantined: None,
                    },
                );
                (1, 1)
            }
        };
        let quarantined = self
            .sessions
            .get(&session_id)
            .is_some_and(|r| r.quarantined.is_some());
        if let (Some(deadline), false) = (next_deadline, quarantined) {
            self.deadlines
                .insert((deadline.as_millis(), session_id.clone()));
        }

        let mut effect_seqs = Vec::with_capacity(effects.len());
        for (seq, effect) in (first_seq..).zip(effects) {
            let id = self.next_outbox_id;
            self.next_outbox_id += 1;
            self.outbox.insert(
                id,
                OutboxRow {
                    entry: OutboxEntry {
                        session_id: session_id.clone(),
                        seq,
                        effect: effect.effect,
                        attempts: 0,
                        last_error: None,
                        created_at: at,
                        lane: effect.lane,
                        next_attempt_at: at,
                    },
                    order_key: effect.order_key,
                    pending: true,
                    lease: None,
                },
            );
            self.outbox_index.insert((session_id.clone(), seq), id);
            self.pending.insert(id);
            effect_seqs.push(seq);
        }
        let claimed = match claim {
            Some(claim) => self.claim_at_commit(&session_id, &effect_seqs, claim),
            None => Vec::new(),
        };

        if let Some(key) = dedupe_key {
            self.processed.insert(key, at);
        }
        for (user, set) in registry {
            if set.is_empty() {
                self.active.remove(&user);
            } else {
                self.active.insert(user, set);
            }
        }
        for call in calls {
            self.calls.insert(call.call_session_id.clone(), call);
        }
        for leg in legs {
            self.legs.insert(leg.call_control_id.clone(), leg);
        }
        for bill in billing {
            // Written once: a later record for the same call changes nothing.
            self.billing
                .entry(bill.call_session_id.clone())
                .or_insert(bill);
        }
        for entry in timeline {
            self.timeline
                .entry(entry.call_session_id.clone())
                .or_default()
                .push(entry);
        }

        Ok(CommitOutcome::Committed {
            version,
            effect_seqs,
            claimed,
        })
    }

    /// Leases the rows of `seqs` (a commit's new effects) that a claim could take now, as
    /// `due_ids` decides: not a host event, not held back by an earlier pending
    /// row with the same ordering key, not of a quarantined session unless a release.
    fn claim_at_commit(
        &mut self,
        session_id: &CallSessionId,
        seqs: &[u64],
        claim: CommitClaim,
    ) -> Vec<u64> {
        let quarantined = self
            .sessions
            .get(session_id)
            .is_some_and(|r| r.quarantined.is_some());
        let mut keys: BTreeSet<&str> = BTreeSet::new();
        let mut claimed = Vec::new();
        let rows = self
            .outbox_index
            .range((session_id.clone(), 0)..=(session_id.clone(), u64::MAX));
        for (&(_, seq), id) in rows {
            let Some(row) = self.outbox.get(id).filter(|r| r.pending) else {
                continue;
            };
            // The first pending row per key is the one a claim may take.
            let head = row.order_key.as_deref().is_none_or(|k| keys.insert(k));
            let lane = row.entry.lane;
            if seqs.contains(&seq)
                && head
                && lane != Lane::Host
                && !(quarantined && lane != Lane::Release)
            {
                claimed.push((seq, *id));
            }
        }
        for (_, id) in &claimed {
            if let Some(row) = self.outbox.get_mut(id) {
                row.lease = Some((claim.owner.clone(), claim.until));
            }
        }
        claimed.into_iter().map(|(seq, _)| seq).collect()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_user(&self, user: User) -> Result<User, StoreError> {
        limits::user(&user)?;
        let mut state = self.lock();
        if state.users.contains_key(&user.id) {
            return Err(StoreError::already_exists("user", user.id.as_str()));
        }
        if let Some(taken) = user.numbers.iter().find(|n| state.numbers.contains_key(*n)) {
            return Err(StoreError::NumberTaken {
                number: taken.clone(),
            });
        }
        for number in &user.numbers {
            state.numbers.insert(number.clone(), user.id.clone());
        }
        state.users.insert(user.id.clone(), user.clone());
        Ok(user)
    }

    async fn get_user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        Ok(self.lock().user_with_numbers(id))
    }

    async fn user_by_number(&self, number: &str) -> Result<Option<User>, StoreError> {
        let state = self.lock();
        Ok(state
            .numbers
            .get(number)
            .and_then(|id| state.user_with_numbers(id)))
    }

    async fn update_user_settings(
        &self,
        id: &UserId,
        settings: UserSettings,
    ) -> Result<User, StoreError> {
        let mut state = self.lock();
        let user = state
            .users
            .get_mut(id)
            .ok_or_else(|| StoreError::not_found("user", id.as_str()))?;
        user.call_waiting = settings.call_waiting;
        user.voicemail_enabled = settings.voicemail_enabled;
        Ok(user.clone())
    }

    async fn create_device(&self, device: Device) -> Result<Device, StoreError> {
        limits::device(&device)?;
        let mut state = self.lock();
        if !state.users.contains_key(&device.user_id) {
            return Err(StoreError::not_found("user", device.user_id.as_str()));
        }
        if state.devices.contains_key(&device.id) {
            return Err(StoreError::already_exists("device", device.id.as_str()));
        }
        state.devices.insert(device.id.clone(), device.clone());
        Ok(device)
    }

    async fn get_device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        Ok(self.lock().devices.get(id).cloned())
    }

    async fn devices_by_sip_uri(&self, sip_uri: &str) -> Result<Vec<Device>, StoreError> {
        let state = self.lock();
        let mut devices: Vec<Device> = state
            .devices
            .values()
            .filter(|d| d.sip_uri == sip_uri)
            .cloned()
            .collect();
        devices.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(devices)
    }

    async fn devices_of_user(&self, user_id: &UserId) -> Result<Vec<Device>, StoreError> {
        let state = self.lock();
        let mut devices: Vec<Device> = state
            .devices
            .values()
            .filter(|d| d.user_id == *user_id)
            .cloned()
            .collect();
        devices.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(devices)
    }

    async fn set_push_token(
        &self,
        id: &DeviceId,
        provider: PushProvider,
        token: &str,
    ) -> Result<(), StoreError> {
        limits::push_token(token)?;
        let mut state = self.lock();
        let device = state
            .devices
            .get_mut(id)
            .ok_or_else(|| StoreError::not_found("device", id.as_str()))?;
        device.push_token = Some(token.to_owned());
        device.push_provider = Some(provider);
        for (other_id, other) in state.devices.iter_mut() {
            if other_id != id && other.push_token.as_deref() == Some(token) {
                other.push_token = None;
                other.push_provider = None;
            }
        }
        Ok(())
    }

    async fn set_device_token(&self, id: &DeviceId, token_hash: &str) -> Result<(), StoreError> {
        limits::text("token hash", token_hash, limits::MAX_TOKEN_HASH_LEN)?;
        let mut state = self.lock();
        let device = state
            .devices
            .get_mut(id)
            .ok_or_else(|| StoreError::not_found("device", id.as_str()))?;
        device.token_hash = token_hash.to_owned();
        Ok(())
    }

    async fn unfinished_calls(&self, user_id: &UserId) -> Result<u64, StoreError> {
        let state = self.lock();
        Ok(state
            .calls
            .values()
            .filter(|c| c.user_id == *user_id && crate::UNFINISHED_STATUSES.contains(&c.status))
            .count() as u64)
    }

    async fn call_timeline(
        &self,
        user_id: &UserId,
        call_session_id: &CallSessionId,
        offset: u64,
        limit: u32,
    ) -> Result<Option<(Vec<TimelineEntry>, u64)>, StoreError> {
        let state = self.lock();
        if state
            .calls
            .get(call_session_id)
            .is_none_or(|c| c.user_id != *user_id)
        {
            return Ok(None);
        }
        let all = state
            .timeline
            .get(call_session_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let page = all
            .iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit.min(limits::MAX_PAGE) as usize)
            .cloned()
            .collect();
        Ok(Some((page, all.len() as u64)))
    }

    async fn clear_push_token(&self, id: &DeviceId, token: &str) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let device = state
            .devices
            .get_mut(id)
            .ok_or_else(|| StoreError::not_found("device", id.as_str()))?;
        if device.push_token.as_deref() != Some(token) {
            return Ok(false);
        }
        device.push_token = None;
        device.push_provider = None;
        Ok(true)
    }

    async fn revoke_device(&self, id: &DeviceId) -> Result<(), StoreError> {
        let mut state = self.lock();
        let device = state
            .devices
            .get_mut(id)
            .ok_or_else(|| StoreError::not_found("device", id.as_str()))?;
        device.revoked = true;
        Ok(())
    }

    async fn load_session(&self, id: &CallSessionId) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.lock().sessions.get(id).map(|row| row.session.clone()))
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        self.lock().commit(commit)
    }

    /// Under one lock: no reader sees part of a batch, and each commit is still all-or-nothing
    /// on its own (it is validated before anything is applied).
    async fn commit_batch(&self, commits: Vec<Commit>) -> Vec<Result<CommitOutcome, StoreError>> {
        let mut state = self.lock();
        commits.into_iter().map(|c| state.commit(c)).collect()
    }

    async fn is_processed(&self, dedupe_key: &str) -> Result<bool, StoreError> {
        Ok(self.lock().processed.contains_key(dedupe_key))
    }

    async fn prune_processed(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let old = state.processed.len();
        state.processed.retain(|_, at| *at >= before);
        Ok((old - state.processed.len()) as u64)
    }

    async fn pending_effects(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let state = self.lock();
        Ok(state
            .pending
            .iter()
            .take(limits::limit(limit))
            .filter_map(|id| state.outbox.get(id).map(|row| row.entry.clone()))
            .collect())
    }

    async fn mark_effect_done(
        &self,
        session_id: &CallSessionId,
        seq: u64,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let (id, row) = state.outbox_row(session_id, seq)?;
        let was_pending = std::mem::replace(&mut row.pending, false);
        row.lease = None;
        let key = row.order_key.clone();
        state.pending.remove(&id);
        let (Some(key), true) = (key, was_pending) else {
            return Ok(false);
        };
        let later = (
            Bound::Excluded((session_id.clone(), seq)),
            Bound::Included((session_id.clone(), u64::MAX)),
        );
        Ok(state.outbox_index.range(later).any(|(_, id)| {
            state
                .outbox
                .get(id)
                .is_some_and(|r| r.pending && r.order_key.as_ref() == Some(&key))
        }))
    }

    async fn due_effects(
        &self,
        lane: Lane,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let state = self.lock();
        Ok(state
            .due_ids(lane, now, limit, |_| true)
            .into_iter()
            .filter_map(|id| state.outbox.get(&id).map(|row| row.entry.clone()))
            .collect())
    }

    async fn claim_due_effects(
        &self,
        lane: Lane,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        limits::text("lease owner", owner, limits::MAX_ID_LEN)?;
        let mut state = self.lock();
        let ids = state.due_ids(lane, now, limit, |row| match &row.lease {
            Some((holder, until)) => holder == owner || *until <= now,
            None => true,
        });
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let row = state.outbox.get_mut(&id)?;
                row.lease = Some((owner.to_owned(), lease_until));
                Some(row.entry.clone())
            })
            .collect())
    }

    async fn mark_effect_failed(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        error: &str,
        retry_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let (_, row) = state.outbox_row(session_id, seq)?;
        if row.pending {
            row.entry.attempts = row.entry.attempts.saturating_add(1);
            row.entry.last_error = Some(limits::truncate_error(error));
            row.entry.next_attempt_at = retry_at;
            row.lease = None;
        }
        Ok(())
    }

    async fn defer_effect(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        until: Timestamp,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let (_, row) = state.outbox_row(session_id, seq)?;
        if row.pending {
            row.entry.next_attempt_at = row.entry.next_attempt_at.max(until);
            row.lease = None;
        }
        Ok(())
    }

    async fn quarantine_session(
        &self,
        id: &CallSessionId,
        _reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        // The reason is for operators reading a database; memory keeps only the time.
        let mut state = self.lock();
        let State {
            sessions,
            deadlines,
            ..
        } = &mut *state;
        let Some(row) = sessions.get_mut(id) else {
            return Ok(false);
        };
        if row.quarantined.is_none() {
            row.quarantined = Some(at);
            row.session.quarantined = true;
        }
        if let Some(old) = row.session.next_deadline {
            deadlines.remove(&(old.as_millis(), id.clone()));
        }
        Ok(true)
    }

    async fn quarantined_sessions(&self, limit: u32) -> Result<Vec<CallSessionId>, StoreError> {
        let state = self.lock();
        let mut found: Vec<(Timestamp, &CallSessionId)> = state
            .sessions
            .iter()
            .filter_map(|(id, row)| row.quarantined.map(|at| (at, id)))
            .collect();
        found.sort();
        Ok(found
            .into_iter()
            .take(limits::limit(limit))
            .map(|(_, id)| id.clone())
            .collect())
    }

    async fn prune(&self, retention: Retention) -> Result<Pruned, StoreError> {
        let mut state = self.lock();
        let state = &mut *state;
        let mut pruned = Pruned::default();

        let finished: Vec<u64> = state
            .outbox
            .iter()
            .filter(|(_, r)| !r.pending && r.entry.created_at < retention.finished_effects_before)
            .map(|(id, _)| *id)
            .collect();
        for id in finished {
            if let Some(row) = state.outbox.remove(&id) {
                state
                    .outbox_index
                    .remove(&(row.entry.session_id, row.entry.seq));
                pruned.effects += 1;
            }
        }

        let before = state.processed.len();
        state
            .processed
            .retain(|_, at| *at >= retention.processed_before);
        pruned.processed = (before - state.processed.len()) as u64;

        let busy: BTreeSet<&CallSessionId> = state
            .pending
            .iter()
            .filter_map(|id| state.outbox.get(id).map(|r| &r.entry.session_id))
            .collect();
        let closed: Vec<CallSessionId> = state
            .sessions
            .iter()
            .filter(|(id, r)| {
                r.closed
                    && r.quarantined.is_none()
                    && r.session.next_deadline.is_none()
                    && r.updated_at < retention.closed_sessions_before
                    && !busy.contains(id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in closed {
            state.sessions.remove(&id);
            pruned.sessions += 1;
        }

        if let Some(cutoff) = retention.history_before {
            let old: Vec<CallSessionId> = state
                .calls
                .iter()
                .filter(|(_, c)| c.started_at < cutoff)
                .map(|(id, _)| id.clone())
                .collect();
            for id in old {
                state.calls.remove(&id);
                state.timeline.remove(&id);
                state.legs.retain(|_, l| l.call_session_id != id);
                pruned.calls += 1;
            }
        }
        Ok(pruned)
    }

    async fn mark_effect_abandoned(
        &self,
        session_id: &CallSessionId,
        seq: u64,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let (id, row) = state.outbox_row(session_id, seq)?;
        if row.pending {
            row.pending = false;
            row.lease = None;
            row.entry.last_error = Some(limits::truncate_error(error));
            state.pending.remove(&id);
        }
        Ok(())
    }

    async fn due_sessions(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(CallSessionId, Timestamp)>, StoreError> {
        let state = self.lock();
        Ok(state
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now.as_millis())
            .take(limits::limit(limit))
            .map(|(at, id)| (id.clone(), Timestamp::from_millis(*at)))
            .collect())
    }

    async fn claim_due_sessions(
        &self,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<Vec<(CallSessionId, Timestamp)>, StoreError> {
        limits::text("lease owner", owner, limits::MAX_ID_LEN)?;
        let mut state = self.lock();
        let state = &mut *state;
        let due = state
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now.as_millis())
            .filter_map(|(at, id)| {
                let version = state.sessions.get(id)?.session.version;
                Some((id.clone(), version, Timestamp::from_millis(*at)))
            });
        Ok(state
            .timer_leases
            .claim(due, limits::limit(limit), owner, now, lease_until))
    }

    async fn active_calls(&self, user_id: &UserId) -> Result<Vec<ActiveCall>, StoreError> {
        Ok(self
            .lock()
            .active
            .get(user_id)
            .map(sorted_active)
            .unwrap_or_default())
    }

    async fn list_calls(
        &self,
        user_id: &UserId,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<CallRecord>, StoreError> {
        let limit = limits::page_limit(limit)?;
        let cursor = cursor.map(str::parse::<HistoryCursor>).transpose()?;
        let state = self.lock();
        let mut calls: Vec<&CallRecord> = state
            .calls
            .values()
            .filter(|c| c.user_id == *user_id)
            .filter(|c| cursor.as_ref().is_none_or(|cur| cur.precedes(c)))
            .collect();
        newest_first(&mut calls);
        let more = calls.len() > limit;
        let items: Vec<CallRecord> = calls.into_iter().take(limit).cloned().collect();
        Ok(crate::codec::call_page(items, more))
    }

    async fn get_call(
        &self,
        user_id: &UserId,
        call_session_id: &CallSessionId,
    ) -> Result<Option<CallDetail>, StoreError> {
        let state = self.lock();
        let Some(call) = state
            .calls
            .get(call_session_id)
            .filter(|c| c.user_id == *user_id)
        else {
            return Ok(None);
        };
        let mut legs: Vec<LegRecord> = state
            .legs
            .values()
            .filter(|l| l.call_session_id == *call_session_id)
            .cloned()
            .collect();
        legs.sort_by(|a, b| {
            (a.started_at, &a.call_control_id).cmp(&(b.started_at, &b.call_control_id))
        });
        Ok(Some(CallDetail {
            call: call.clone(),
            legs,
            timeline: state
                .timeline
                .get(call_session_id)
                .cloned()
                .unwrap_or_default(),
            billing: state.billing.get(call_session_id).cloned(),
        }))
    }

    async fn live_calls(&self, limit: u32) -> Result<Vec<CallRecord>, StoreError> {
        let limit = limits::page_limit(limit)?;
        let state = self.lock();
        let mut calls: Vec<&CallRecord> = state
            .calls
            .values()
            .filter(|c| {
                matches!(
                    c.status,
                    CallStatus::Ringing | CallStatus::Answered | CallStatus::Bridged
                )
            })
            .collect();
        newest_first(&mut calls);
        Ok(calls.into_iter().take(limit).cloned().collect())
    }

    async fn timeline_since(
        &self,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<TimelineEntry>, StoreError> {
        let limit = limits::batch_limit(limit)?;
        let state = self.lock();
        let mut entries: Vec<&TimelineEntry> = state
            .timeline
            .values()
            .flatten()
            .filter(|t| t.at >= since)
            .collect();
        // Stable: entries of one call keep their append order.
        entries.sort_by(|a, b| (a.at, &a.call_session_id).cmp(&(b.at, &b.call_session_id)));
        Ok(entries.into_iter().take(limit).cloned().collect())
    }

    async fn close(&self) {}
}

/// History order: newest first, ties broken by call id (as the SQL backends sort).
fn newest_first(calls: &mut [&CallRecord]) {
    calls.sort_by(|a, b| {
        (b.started_at, b.call_session_id.as_str()).cmp(&(a.started_at, a.call_session_id.as_str()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Drives a future that must not wait for anything.
    fn ready<T>(future: impl Future<Output = T>) -> T {
        let mut future = pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("the memory store must never wait"),
        }
    }

    #[test]
    fn runs_without_an_async_runtime() {
        let store = MemoryStore::new();
        let mut commit = Commit::new(
            CallSessionId::new("s1"),
            UserId::new("u1"),
            None,
            json!({}),
            "ringing",
            Timestamp::from_millis(5),
        );
        commit.next_deadline = Some(Timestamp::from_millis(30_005));
        commit.effects = vec![json!({ "dial": "d1" }).into()];
        let outcome = ready(store.commit(commit)).unwrap();
        assert_eq!(
            outcome,
            CommitOutcome::Committed {
                version: 1,
                effect_seqs: vec![1],
                claimed: vec![],
            }
        );
        let due = ready(store.due_sessions(Timestamp::from_millis(30_005), 10)).unwrap();
        assert_eq!(
            due,
            vec![(CallSessionId::new("s1"), Timestamp::from_millis(30_005))]
        );
        assert_eq!(ready(store.pending_effects(10)).unwrap().len(), 1);
    }

    #[test]
    fn clones_share_their_data() {
        let a = MemoryStore::new();
        let b = a.clone();
        let commit = Commit::new(
            CallSessionId::new("s1"),
            UserId::new("u1"),
            None,
            json!({ "x": 1 }),
            "ringing",
            Timestamp::from_millis(5),
        );
        ready(a.commit(commit)).unwrap();
        let loaded = ready(b.load_session(&CallSessionId::new("s1"))).unwrap();
        assert_eq!(loaded.map(|s| s.doc), Some(json!({ "x": 1 })));
    }
}
