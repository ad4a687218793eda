//! The one path a call's state changes (design: "How one input flows"): load the session and
//! its version, run `Session::handle`, commit the new document with its effects using
//! compare-and-set, and retry from a fresh load when another writer got there first.

use crate::clock::Clock;
use crate::sessions::{SessionStore, Shared};
use ringmaster_core::session::{Effect, SessionError};
use ringmaster_core::session::{Input, Session};
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{
    session_commit, Commit, CommitOutcome, RegistryChange, Store, StoreError, TimelineEntry,
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
    Committed,
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

/// Runs inputs against stored sessions. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    kick: Arc<Notify>,
    quarantined: Arc<AtomicU64>,
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
            quarantined: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many sessions this engine has quarantined since it started.
    pub fn quarantined_count(&self) -> u64 {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// Takes a session that cannot be handled out of service (timers, dispatch), logged and
    /// counted, and returns the error its input gets.
    async fn quarantine(&self, id: &CallSessionId, reason: &str) -> EngineError {
        tracing::error!(call_session_id = %id, reason, "session quarantined");
        self.quarantined.fetch_add(1, Ordering::Relaxed);
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
        let mut registry_busy = false;
        for round in 0..MAX_ROUNDS {
            let Some((mut session, version)) = self.load(id).await? else {
                return Err(EngineError::UnknownSession(id.clone()));
            };
            let before = session.clone();
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
            if step.effects.is_empty() && step.timeline.is_empty() && session == before {
                return Ok(Applied::Unchanged(Box::new(session)));
            }
            let commit = build_commit(&session, Some(version), step, dedupe_key.clone(), now)?;
            match self.commit(commit, registry_busy).await? {
                Written::Committed => return Ok(Applied::Committed(Box::new(session))),
                Written::Duplicate => return Ok(Applied::Duplicate),
                Written::Busy => {
                    tracing::info!("user already on another call; the answer is refused");
                    registry_busy = true;
                }
                Written::Conflict => {
                    tracing::debug!(round, "lost compare-and-set; reloading");
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
            Written::Committed => Created::Committed(Box::new(session)),
            Written::Conflict | Written::Busy => Created::Exists,
            Written::Duplicate => Created::Duplicate,
        })
    }

    /// Commits. A registry conflict (`Busy`) goes back to the caller, which tells the session;
    /// once it has (`told`), a conflict left over (an entry rewritten for a call that is
    /// already physically connected) is resolved by committing without the entry.
    async fn commit(&self, mut commit: Commit, told: bool) -> Result<Written, EngineError> {
        let has_outbox = !commit.effects.is_empty();
        loop {
            match crate::commit_metrics::timed_commit(&*self.store, commit.clone()).await? {
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
                CommitOutcome::Committed { .. } => {
                    if has_outbox {
                        self.kick.notify_one();
                    }
                    return Ok(Written::Committed);
                }
                CommitOutcome::Conflict { .. } => return Ok(Written::Conflict),
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
