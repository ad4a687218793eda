//! The one path a call's state changes (design: "How one input flows"): load the session and
//! its version, run `Session::handle`, commit the new document with its effects using
//! compare-and-set, and retry from a fresh load when another writer got there first.

use crate::clock::Clock;
use crate::handoff::Handoff;
use crate::session_cache::{SessionCache, Turn, Turns};
use crate::sessions::{SessionStore, Shared};
use ringmaster_core::session::{Effect, SessionError};
use ringmaster_core::session::{Input, Session};
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{
    session_commit, Commit, CommitOutcome, Lane, RegistryChange, Store, StoreError, TimelineEntry,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Most load-handle-commit rounds for one input before giving up (each lost round means
/// another input of the same session was committed, so this only trips under a storm).
const MAX_ROUNDS: u32 = 64;

/// What handling one input produced, besides the session's own change.
#[derive(Debug, Default)]
pub struct Step {
    /// Effects from `Session::handle`.
    pub effects: Vec<Effect>,
    /// The input's own timeline entries (webhook arrivals).
    pub timeline: Vec<TimelineEntry>,
}

/// The result of [`Engine::apply`].
#[derive(Debug)]
pub enum Applied {
    /// The new session and its effects were committed.
    Committed(Box<Session>),
    /// The input changed nothing; nothing was written.
    Unchanged(Box<Session>),
    /// The input's dedupe key was already processed; nothing was written.
    Duplicate,
    /// The session refused the input (it changed nothing).
    Refused(SessionError),
}

/// The result of [`Engine::create`].
#[derive(Debug)]
pub enum Created {
    /// The session was created and started.
    Committed(Box<Session>),
    /// A session with this id already exists (created concurrently, or a redelivery).
    Exists,
    /// The creating input was already processed.
    Duplicate,
}

/// What a commit did, once a registry conflict has been resolved.
enum Written {
    /// Written; the session's new version.
    Committed(u64),
    Conflict,
    Duplicate,
    /// The store refused an active-call entry (another call, no call waiting).
    Busy,
}

/// Why an input could not be run to a commit.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No session has this id.
    #[error("no session {0}")]
    UnknownSession(CallSessionId),
    /// The store failed; the input may be retried.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored document is not a session this version can read.
    #[error("stored session {id} cannot be read: {reason}")]
    Corrupt {
        /// The session.
        id: CallSessionId,
        /// The decode error.
        reason: String,
    },
    /// Too many concurrent writers on one session; the input may be retried.
    #[error("session {0} kept changing under us; try again")]
    Contention(CallSessionId),
    /// The session is quarantined (it cannot be decoded, or handling it panicked); inputs to
    /// it are dropped so they never block other calls.
    #[error("session {0} is quarantined")]
    Quarantined(CallSessionId),
}

/// What an engine has done since it started (for benchmarks and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Sessions read from the store (`load`, and `apply` when the cache has no copy).
    pub loads: u64,
    /// Inputs that started from the session cache instead of a store read.
    pub cache_hits: u64,
    /// Commits that lost the compare-and-set (the input was handled again).
    pub cas_conflicts: u64,
    /// Commits written.
    pub commits: u64,
}

#[derive(Default)]
struct Counters {
    quarantined: AtomicU64,
    loads: AtomicU64,
    cache_hits: AtomicU64,
    cas_conflicts: AtomicU64,
    commits: AtomicU64,
}

/// Runs inputs against stored sessions. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    kick: Arc<Notify>,
    counters: Arc<Counters>,
    /// Set by [`Engine::with_session_cache`].
    cache: Option<Arc<(SessionCache, Turns)>>,
    /// Set by [`Engine::with_handoff`].
    handoff: Option<Handoff>,
}

impl Engine {
    /// An engine over `store`; `kick` wakes the dispatcher after a commit with outbox effects.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, kick: Arc<Notify>) -> Self {
        Self::on_sessions(Arc::new(Shared(store)), clock, kick)
    }

    /// An engine over any [`SessionStore`] (the simulator's, which interleaves nodes).
    pub fn on_sessions(
        store: Arc<dyn SessionStore>,
        clock: Arc<dyn Clock>,
        kick: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            clock,
            kick,
            counters: Arc::default(),
            cache: None,
            handoff: None,
        }
    }

    /// Leases each commit's effects that can go out at once to this node's dispatcher, in
    /// the commit, and hands them over in memory ([`crate::handoff`]); the dispatcher is
    /// kicked only for what it has to read back.
    pub fn with_handoff(mut self, handoff: Handoff) -> Self {
        self.handoff = Some(handoff);
        self
    }

    /// Remembers up to `capacity` sessions this engine committed or loaded, so an input to
    /// one of them skips the store read, and runs the inputs of one session one at a time, so
    /// they queue instead of losing each other's compare-and-set. The commit still checks
    /// the version: a stale entry (another node committed) costs a reload, never a wrong
    /// commit. The inputs of one session wait for each other on a tokio lock, so only a
    /// driver that runs the engine on a runtime should turn this on (not the simulator).
    pub fn with_session_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(Arc::new((SessionCache::new(capacity), Turns::default())));
        self
    }

    /// How many sessions this engine has quarantined since it started.
    pub fn quarantined_count(&self) -> u64 {
        self.counters.quarantined.load(Ordering::Relaxed)
    }

    /// Counts of loads, cache hits, lost compare-and-sets and commits since it started.
    pub fn stats(&self) -> EngineStats {
        let c = &self.counters;
        EngineStats {
            loads: c.loads.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cas_conflicts: c.cas_conflicts.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
        }
    }

    fn forget(&self, id: &CallSessionId) {
        if let Some(cache) = &self.cache {
            cache.0.forget(id);
        }
    }

    fn remember(&self, session: &Arc<Session>, version: u64) {
        if let Some(cache) = &self.cache {
            cache.0.put(session.id(), session.clone(), version);
        }
    }

    /// The session's turn on this engine, when inputs are serialised.
    async fn turn(&self, id: &CallSessionId) -> Option<Turn<'_>> {
        match &self.cache {
            Some(cache) => Some(cache.1.take(id).await),
            None => None,
        }
    }

    /// The session and version an input starts from: the remembered copy, or a store read.
    async fn current(
        &self,
        id: &CallSessionId,
    ) -> Result<Option<(Arc<Session>, u64)>, EngineError> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.0.get(id)) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(hit));
        }
        let Some((session, version)) = self.load(id).await? else {
            return Ok(None);
        };
        let session = Arc::new(session);
        self.remember(&session, version);
        Ok(Some((session, version)))
    }

    /// Takes a session that cannot be handled out of service (timers, dispatch), logged and
    /// counted, and returns the error its input gets.
    async fn quarantine(&self, id: &CallSessionId, reason: &str) -> EngineError {
        tracing::error!(call_session_id = %id, reason, "session quarantined");
        self.counters.quarantined.fetch_add(1, Ordering::Relaxed);
        self.forget(id);
        if let Err(e) = self
            .store
            .quarantine_session(id, reason, self.clock.now())
            .await
        {
            // It stays due; the next input or tick tries again.
            tracing::warn!(call_session_id = %id, error = %e, "could not record the quarantine");
        }
        EngineError::Quarantined(id.clone())
    }

    /// Runs `f` (a session's handling of an input). A panic there is a bug in one call: the
    /// session is quarantined and the panic stops here, so every other call keeps being served.
    pub async fn guard<T>(
        &self,
        id: &CallSessionId,
        f: impl FnOnce() -> T,
    ) -> Result<T, EngineError> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => Ok(value),
            Err(panic) => {
                let reason = format!("handling an input panicked: {}", panic_message(&panic));
                Err(self.quarantine(id, &reason).await)
            }
        }
    }

    /// The clock sessions are driven by.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The session and its store version.
    /// A session that cannot be decoded is quarantined (`EngineError::Quarantined`).
    pub async fn load(&self, id: &CallSessionId) -> Result<Option<(Session, u64)>, EngineError> {
        self.counters.loads.fetch_add(1, Ordering::Relaxed);
        let stored = match self.store.load_session(id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return Ok(None),
            Err(StoreError::Corrupt(reason)) => return Err(self.quarantine(id, &reason).await),
            Err(e) => return Err(e.into()),
        };
        if stored.quarantined {
            return Err(EngineError::Quarantined(id.clone()));
        }
        match serde_json::from_value(stored.doc) {
            Ok(session) => Ok(Some((session, stored.version))),
            Err(e) => Err(self
                .quarantine(id, &format!("stored session does not decode: {e}"))
                .await),
        }
    }

    /// Handles `input` on session `id` and commits the outcome.
    pub async fn apply(
        &self,
        id: &CallSessionId,
        input: Input,
        dedupe_key: Option<String>,
    ) -> Result<Applied, EngineError> {
        self.apply_logged(id, input, dedupe_key, |_| Vec::new())
            .await
    }

    /// Like [`Engine::apply`], with the input's own timeline entries (a webhook's arrival)
    /// built by `arrival` for the time of each round. Every effect comes from
    /// `Session::handle`. When the store refuses the active-call entry an answer asked for,
    /// the session is told (`Input::RegistryBusy`) and the input runs again on a fresh copy.
    #[tracing::instrument(skip_all, fields(call_session_id = %id))]
    pub async fn apply_logged<F>(
        &self,
        id: &CallSessionId,
        input: Input,
        dedupe_key: Option<String>,
        arrival: F,
    ) -> Result<Applied, EngineError>
    where
        F: Fn(Timestamp) -> Vec<TimelineEntry> + Send,
    {
        let _turn = self.turn(id).await;
        let outcome = self.apply_rounds(id, input, dedupe_key, arrival).await;
        match &outcome {
            Ok(Applied::Committed(_) | Applied::Unchanged(_) | Applied::Refused(_)) => {}
            // Whatever the store holds now is not what this engine remembers (a duplicate
            // was written by someone else; an error may or may not have committed).
            Ok(Applied::Duplicate) | Err(_) => self.forget(id),
        }
        outcome
    }

    async fn apply_rounds<F>(
        &self,
        id: &CallSessionId,
        input: Input,
        dedupe_key: Option<String>,
        arrival: F,
    ) -> Result<Applied, EngineError>
    where
        F: Fn(Timestamp) -> Vec<TimelineEntry> + Send,
    {
        let mut registry_busy = false;
        for round in 0..MAX_ROUNDS {
            let Some((before, version)) = self.current(id).await? else {
                return Err(EngineError::UnknownSession(id.clone()));
            };
            let mut session = Session::clone(&before);
            let now = self.clock.now();
            let handled = self
                .guard(id, || {
                    let mut effects = Vec::new();
                    let inputs = registry_busy
                        .then_some(Input::RegistryBusy)
                        .into_iter()
                        .chain([input.clone()]);
                    for input in inputs {
                        effects.extend(session.handle(input, now)?);
                    }
                    Ok(effects)
                })
                .await?;
            let step = match handled {
                Ok(effects) => Step {
                    effects,
                    timeline: arrival(now),
                },
                Err(e) => return Ok(Applied::Refused(e)),
            };
            if step.effects.is_empty() && step.timeline.is_empty() && session == *before {
                return Ok(Applied::Unchanged(Box::new(session)));
            }
            let commit = build_commit(&session, Some(version), step, dedupe_key.clone(), now)?;
            match self.commit(commit, registry_busy).await? {
                Written::Committed(version) => {
                    let session = Arc::new(session);
                    self.remember(&session, version);
                    return Ok(Applied::Committed(Box::new(Arc::unwrap_or_clone(session))));
                }
                Written::Duplicate => return Ok(Applied::Duplicate),
                Written::Busy => {
                    tracing::info!("user already on another call; the answer is refused");
                    registry_busy = true;
                }
                Written::Conflict => {
                    tracing::debug!(round, "lost compare-and-set; reloading");
                    self.forget(id);
                    // Outside a tokio runtime (the simulator), the event order spreads the
                    // writers out instead.
                    if round > 8 && tokio::runtime::Handle::try_current().is_ok() {
                        tokio::time::sleep(Duration::from_millis(u64::from(round))).await;
                    }
                }
            }
        }
        Err(EngineError::Contention(id.clone()))
    }

    /// Stores a new session after running `Input::Start` on it.
    #[tracing::instrument(skip_all, fields(call_session_id = %session.id()))]
    pub async fn create(
        &self,
        mut session: Session,
        dedupe_key: Option<String>,
        timeline: Vec<TimelineEntry>,
    ) -> Result<Created, EngineError> {
        let now = self.clock.now();
        let effects = match session.handle(Input::Start, now) {
            Ok(fx) => fx,
            // A fresh session accepts Start; anything else is a bug worth surfacing loudly.
            Err(e) => {
                return Err(EngineError::Corrupt {
                    id: session.id().clone(),
                    reason: format!("new session refused Start: {e}"),
                })
            }
        };
        let step = Step { effects, timeline };
        let commit = build_commit(&session, None, step, dedupe_key, now)?;
        Ok(match self.commit(commit, true).await? {
            Written::Committed(version) => {
                let session = Arc::new(session);
                self.remember(&session, version);
                Created::Committed(Box::new(Arc::unwrap_or_clone(session)))
            }
            Written::Conflict | Written::Busy => Created::Exists,
            Written::Duplicate => Created::Duplicate,
        })
    }

    /// Hands the effects `commit` claimed to the dispatcher; false when it still has to read
    /// the outbox: no hand-off, or one that failed, or an effect for it left unclaimed (held
    /// back, or of a quarantined session; host events are the webhook relay's).
    async fn hand_off(&self, commit: &Commit, effect_seqs: &[u64], claimed: &[u64]) -> bool {
        let Some(handoff) = &self.handoff else {
            return false;
        };
        let unclaimed = effect_seqs
            .iter()
            .zip(&commit.effects)
            .any(|(seq, effect)| effect.lane != Lane::Host && !claimed.contains(seq));
        handoff.hand(commit, effect_seqs, claimed).await && !unclaimed
    }

    /// Commits. A registry conflict (`Busy`) goes back to the caller, which tells the session;
    /// once it has (`told`), a conflict left over (an entry rewritten for a call that is
    /// already physically connected) is resolved by committing without the entry.
    async fn commit(&self, mut commit: Commit, told: bool) -> Result<Written, EngineError> {
        let has_outbox = !commit.effects.is_empty();
        if let (Some(handoff), true) = (&self.handoff, has_outbox) {
            commit.claim = Some(handoff.claim(commit.at));
        }
        loop {
            let outcome = crate::commit_metrics::timed_commit(&*self.store, commit.clone()).await;
            if outcome.is_err() {
                // It may have been written or not: the next input reads the store.
                self.forget(&commit.session_id);
            }
            match outcome? {
                CommitOutcome::Busy { .. } if !told => return Ok(Written::Busy),
                CommitOutcome::Busy { active } => {
                    tracing::warn!(
                        call_session_id = %commit.session_id,
                        other_calls = active.len(),
                        "user already has an active call; entry left out of the registry"
                    );
                    commit
                        .registry
                        .retain(|c| !matches!(c, RegistryChange::Set(_)));
                }
                CommitOutcome::Committed {
                    version,
                    effect_seqs,
                    claimed,
                } => {
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                    if has_outbox && !self.hand_off(&commit, &effect_seqs, &claimed).await {
                        self.kick.notify_one();
                    }
                    return Ok(Written::Committed(version));
                }
                CommitOutcome::Conflict { .. } => {
                    self.counters.cas_conflicts.fetch_add(1, Ordering::Relaxed);
                    return Ok(Written::Conflict);
                }
                CommitOutcome::Duplicate => return Ok(Written::Duplicate),
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The store's history status for a session status (the shared mapping).
pub use ringmaster_store::call_status;

/// The commit of `session` after an input: the store's shared session-to-commit mapping, with
/// the step's own timeline entries before the session's.
pub fn build_commit(
    session: &Session,
    expected_version: Option<u64>,
    step: Step,
    dedupe_key: Option<String>,
    now: Timestamp,
) -> Result<Commit, EngineError> {
    session_commit(
        session,
        expected_version,
        &step.effects,
        step.timeline,
        dedupe_key,
        now,
    )
    .map_err(|e| EngineError::Corrupt {
        id: session.id().clone(),
        reason: e.to_string(),
    })
}
