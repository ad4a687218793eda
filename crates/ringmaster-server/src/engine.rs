//! The one path a call's state changes (design: "How one input flows"): load the session and
//! its version, run `Session::handle`, commit the new document with its effects using
//! compare-and-set, and retry from a fresh load when another writer got there first.

use crate::clock::Clock;
use ringmaster_core::session::{
    CallRecordUpdate, Direction, Effect, LegUpdate, RegistryUpdate, SessionError, SessionStatus,
    TimelineEntry as CoreTimelineEntry,
};
use ringmaster_core::session::{Input, Session};
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{
    ActiveCall, CallDirection, CallRecord, CallStatus, Commit, CommitOutcome, LegRecord,
    RegistryChange, Store, StoreError, TimelineEntry, TimelineSource,
};
use serde_json::{json, Value};
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
            match self.store.commit(commit.clone()).await? {
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

/// The store's history status for a session status. A call declined for everyone is
/// `declined` (neither missed nor talked), with the dismissal reason as its hangup cause.
pub fn call_status(status: SessionStatus) -> CallStatus {
    match status {
        SessionStatus::Ringing => CallStatus::Ringing,
        SessionStatus::Answered => CallStatus::Answered,
        SessionStatus::Bridged => CallStatus::Bridged,
        SessionStatus::Ended => CallStatus::Ended,
        SessionStatus::Declined => CallStatus::Declined,
        SessionStatus::Missed => CallStatus::Missed,
        SessionStatus::Voicemail => CallStatus::Voicemail,
        SessionStatus::Failed => CallStatus::Failed,
        SessionStatus::Busy => CallStatus::Busy,
    }
}

fn call_record(u: CallRecordUpdate) -> CallRecord {
    let hangup_cause = match (&u.dismiss_reason, u.hangup_cause) {
        // The dismissal says more than the SIP cause for calls nobody took.
        (Some(reason), _) if u.answered_at.is_none() => Some(reason.code().to_owned()),
        (_, Some(cause)) => Some(cause.as_str().to_owned()),
        (Some(reason), None) => Some(reason.code().to_owned()),
        (None, None) => u.failure.as_ref().map(|_| "failed".to_owned()),
    };
    CallRecord {
        call_session_id: u.call_session_id,
        user_id: u.user,
        tenant_id: u.tenant,
        direction: match u.direction {
            Direction::Inbound => CallDirection::Inbound,
            Direction::Outbound => CallDirection::Outbound,
        },
        from: u.from,
        to: u.to,
        status: call_status(u.status),
        answered_device: u.answered_device,
        started_at: u.started_at,
        answered_at: u.answered_at,
        ended_at: u.ended_at,
        hangup_cause,
        recording_url: u.recording_url,
        quality: u.quality,
    }
}

fn leg_record(u: LegUpdate, started_at: Timestamp) -> Option<LegRecord> {
    Some(LegRecord {
        call_control_id: u.call_control_id?,
        call_session_id: u.call_session_id,
        device_id: u.device,
        status: serde_json::to_value(u.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned()),
        started_at,
        answered_at: u.answered_at,
        ended_at: u.ended_at,
        hangup_cause: u.hangup_cause.map(|c| c.as_str().to_owned()),
    })
}

fn timeline_entry(t: CoreTimelineEntry) -> TimelineEntry {
    TimelineEntry {
        call_session_id: t.call_session_id,
        at: t.at,
        source: TimelineSource::Backend,
        device_id: t.device,
        kind: t.event,
        from_state: None,
        to_state: None,
        detail: t.detail.map_or(Value::Null, |d| json!({ "detail": d })),
    }
}

/// Splits a session's effects into the commit: outbox effects as JSON, the rest into the
/// store's registry, history, leg and timeline tables.
pub fn build_commit(
    session: &Session,
    expected_version: Option<u64>,
    step: Step,
    dedupe_key: Option<String>,
    now: Timestamp,
) -> Result<Commit, EngineError> {
    let corrupt = |e: serde_json::Error| EngineError::Corrupt {
        id: session.id().clone(),
        reason: e.to_string(),
    };
    let doc = serde_json::to_value(session).map_err(corrupt)?;
    let mut commit = Commit::new(
        session.id().clone(),
        session.user().clone(),
        expected_version,
        doc,
        session.status().as_str(),
        now,
    );
    commit.next_deadline = session.next_deadline();
    commit.dedupe_key = dedupe_key;
    let mut timeline = Vec::new();
    for effect in step.effects {
        if effect.is_outbox() {
            commit
                .effects
                .push(serde_json::to_value(&effect).map_err(corrupt)?);
            continue;
        }
        match effect {
            Effect::Registry(RegistryUpdate::Set(a)) => {
                commit.registry.push(RegistryChange::Set(ActiveCall {
                    user_id: a.user,
                    call_session_id: a.call_session_id,
                    device_id: Some(a.device),
                    started_at: a.started_at,
                }))
            }
            Effect::Registry(RegistryUpdate::Clear {
                user,
                call_session_id,
                ..
            }) => commit.registry.push(RegistryChange::Clear {
                user_id: user,
                call_session_id,
            }),
            Effect::History(update) => commit.calls.push(call_record(update)),
            Effect::Leg(update) => {
                // A leg enters the table once Telnyx has given it an id.
                if let Some(leg) = leg_record(update, session.created_at()) {
                    commit.legs.push(leg);
                }
            }
            Effect::Timeline(entry) => timeline.push(timeline_entry(entry)),
            Effect::Telnyx(_) | Effect::Notify(_) => {}
        }
    }
    // Only the newest snapshot of a row matters within one commit.
    dedupe_last(&mut commit.calls, |c| c.call_session_id.clone());
    dedupe_last(&mut commit.legs, |l| l.call_control_id.clone());
    // The input's own entries (webhook arrival, device report) come before its consequences.
    commit.timeline = step.timeline;
    commit.timeline.extend(timeline);
    Ok(commit)
}

fn dedupe_last<T, K: PartialEq>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
    let keys: Vec<K> = items.iter().map(&key).collect();
    let mut i = 0;
    items.retain(|_| {
        let keep = !keys[i + 1..].contains(&keys[i]);
        i += 1;
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_last_keeps_the_newest_of_each_key_in_order() {
        let mut v = vec![(1, "a"), (2, "b"), (1, "c"), (3, "d"), (2, "e")];
        dedupe_last(&mut v, |x| x.0);
        assert_eq!(v, vec![(1, "c"), (3, "d"), (2, "e")]);
    }

    use ringmaster_core::session::{
        HangupCause, HangupSource, NewInbound, ProviderEvent, ProviderEventKind, RingTarget,
        SessionConfig,
    };
    use ringmaster_core::{CallControlId, DeviceId, TenantId, UserId};

    /// A started inbound session ringing two devices whose dials succeeded, with every effect
    /// so far.
    fn ringing_call() -> (Session, Vec<Effect>) {
        let device = |id: &str| RingTarget {
            device_id: DeviceId::new(id),
            sip_uri: format!("sip:{id}@sip.telnyx.com"),
            platform: "android".to_owned(),
        };
        let mut session = Session::new_inbound(
            NewInbound {
                id: CallSessionId::new("s1"),
                tenant: TenantId::new("t1"),
                user: UserId::new("u1"),
                caller_leg: CallControlId::new("caller"),
                from: "+15550001111".to_owned(),
                to: "+15550002222".to_owned(),
                devices: vec![device("d1"), device("d2")],
                busy: false,
                config: SessionConfig::default(),
            },
            Timestamp::from_millis(1_000),
        )
        .unwrap();
        let mut effects = session
            .handle(Input::Start, Timestamp::from_millis(1_000))
            .unwrap();
        let dials: Vec<(String, DeviceId)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Telnyx(c) => match &c.action {
                    ringmaster_core::session::Action::Dial {
                        device: Some(d), ..
                    } => Some((c.command_id.clone(), d.clone())),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        for (command_id, d) in dials {
            let input = Input::DialResult {
                command_id,
                result: Ok(CallControlId::new(format!("leg-{d}"))),
            };
            effects.extend(
                session
                    .handle(input, Timestamp::from_millis(1_100))
                    .unwrap(),
            );
        }
        (session, effects)
    }

    fn commit_of(session: &Session, effects: Vec<Effect>) -> Commit {
        let step = Step {
            effects,
            timeline: Vec::new(),
        };
        build_commit(session, Some(1), step, None, Timestamp::from_millis(9_000)).unwrap()
    }

    #[test]
    fn a_call_declined_for_everyone_is_stored_as_declined_and_bills_nothing() {
        let (mut session, _) = ringing_call();
        let input = Input::DeviceDecline {
            device: DeviceId::new("d1"),
        };
        let effects = session
            .handle(input, Timestamp::from_millis(5_000))
            .unwrap();
        let commit = commit_of(&session, effects);
        assert_eq!(commit.state_label, "declined");
        assert_eq!(commit.calls.len(), 1);
        let call = &commit.calls[0];
        assert_eq!(call.status, CallStatus::Declined);
        assert_eq!(call.hangup_cause.as_deref(), Some("declined_elsewhere"));
        assert_eq!(call.answered_at, None);
        assert_eq!(call.billing_minutes(), 0);
    }

    #[test]
    fn a_device_rejecting_its_leg_keeps_the_cause_on_its_leg_row() {
        let (mut session, _) = ringing_call();
        let input = Input::Provider(ProviderEvent::new(
            "leg-d1",
            None,
            ProviderEventKind::Hangup {
                cause: HangupCause::CallRejected,
                source: HangupSource::Callee,
                quality: None,
            },
        ));
        let effects = session
            .handle(input, Timestamp::from_millis(5_000))
            .unwrap();
        let commit = commit_of(&session, effects);
        assert_eq!(commit.state_label, "ringing");
        assert!(commit.effects.is_empty(), "nothing to send or dismiss");
        assert_eq!(commit.legs.len(), 1);
        let leg = &commit.legs[0];
        assert_eq!(leg.call_control_id.as_str(), "leg-d1");
        assert_eq!(leg.status, "ended");
        assert_eq!(leg.hangup_cause.as_deref(), Some("call_rejected"));
        assert_eq!(leg.ended_at, Some(Timestamp::from_millis(5_000)));
    }

    #[test]
    fn declined_calls_are_neither_missed_nor_ended_in_history() {
        assert_eq!(call_status(SessionStatus::Declined), CallStatus::Declined);
        assert_eq!(call_status(SessionStatus::Ended), CallStatus::Ended);
        assert_eq!(call_status(SessionStatus::Missed), CallStatus::Missed);
    }
}
