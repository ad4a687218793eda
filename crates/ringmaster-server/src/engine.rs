//! The one path a call's state changes (design: "How one input flows"): load the session and
//! its version, run `Session::handle`, commit the new document with its effects using
//! compare-and-set, and retry from a fresh load when another writer got there first.

use crate::clock::Clock;
use ringmaster_core::session::{Effect, SessionError};
use ringmaster_core::session::{Input, Session};
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{
    session_commit, Commit, CommitOutcome, RegistryChange, Store, StoreError, TimelineEntry,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Most load-handle-commit rounds for one input before giving up (each lost round means
/// another input of the same session was committed, so this only trips under a storm).
const MAX_ROUNDS: u32 = 64;

/// What handling one input produced, besides the session's own change.
#[derive(Debug, Default)]
pub struct Step {
    /// Effects from `Session::handle` (or built by the caller, e.g. a device report's
    /// notification).
    pub effects: Vec<Effect>,
    /// Extra timeline entries (webhook arrivals, device reports).
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
}

/// Runs inputs against stored sessions. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    kick: Arc<Notify>,
}

impl Engine {
    /// An engine over `store`; `kick` wakes the dispatcher after a commit with outbox effects.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, kick: Arc<Notify>) -> Self {
        Self { store, clock, kick }
    }

    /// The clock sessions are driven by.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The session and its store version.
    pub async fn load(&self, id: &CallSessionId) -> Result<Option<(Session, u64)>, EngineError> {
        let Some(stored) = self.store.load_session(id).await? else {
            return Ok(None);
        };
        let session = serde_json::from_value(stored.doc).map_err(|e| EngineError::Corrupt {
            id: id.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some((session, stored.version)))
    }

    /// Handles `input` on session `id` and commits the outcome.
    pub async fn apply(
        &self,
        id: &CallSessionId,
        input: Input,
        dedupe_key: Option<String>,
    ) -> Result<Applied, EngineError> {
        self.apply_with(id, dedupe_key, |session, now| {
            Ok(Step {
                effects: session.handle(input.clone(), now)?,
                timeline: Vec::new(),
            })
        })
        .await
    }

    /// Like [`Engine::apply`], with the change computed by `step` (called again, on a fresh
    /// copy of the session, after every lost compare-and-set).
    #[tracing::instrument(skip_all, fields(call_session_id = %id))]
    pub async fn apply_with<F>(
        &self,
        id: &CallSessionId,
        dedupe_key: Option<String>,
        mut step: F,
    ) -> Result<Applied, EngineError>
    where
        F: FnMut(&mut Session, Timestamp) -> Result<Step, SessionError> + Send,
    {
        for round in 0..MAX_ROUNDS {
            let Some((mut session, version)) = self.load(id).await? else {
                return Err(EngineError::UnknownSession(id.clone()));
            };
            let before = session.clone();
            let now = self.clock.now();
            let step = match step(&mut session, now) {
                Ok(step) => step,
                Err(e) => return Ok(Applied::Refused(e)),
            };
            if step.effects.is_empty() && step.timeline.is_empty() && session == before {
                return Ok(Applied::Unchanged(Box::new(session)));
            }
            let commit = build_commit(&session, Some(version), step, dedupe_key.clone(), now)?;
            match self.commit(commit).await? {
                Written::Committed => return Ok(Applied::Committed(Box::new(session))),
                Written::Duplicate => return Ok(Applied::Duplicate),
                Written::Conflict => {
                    tracing::debug!(round, "lost compare-and-set; reloading");
                    if round > 8 {
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
        Ok(match self.commit(commit).await? {
            Written::Committed => Created::Committed(Box::new(session)),
            Written::Conflict => Created::Exists,
            Written::Duplicate => Created::Duplicate,
        })
    }

    /// Commits; a registry conflict (`Busy`) is resolved by committing without the registry
    /// entry, because by then the call is physically bridged and its state must still be
    /// recorded (two calls raced past the busy check at ring time).
    async fn commit(&self, mut commit: Commit) -> Result<Written, EngineError> {
        let has_outbox = !commit.effects.is_empty();
        loop {
            match crate::telemetry::timed_commit(&*self.store, commit.clone()).await? {
                CommitOutcome::Busy { active } => {
                    tracing::warn!(
                        call_session_id = %commit.session_id,
                        other_calls = active.len(),
                        "user already has an active call; bridged call not added to the registry"
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
