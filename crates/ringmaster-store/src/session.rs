//! Versioned call sessions, the atomic commit that advances them, and their outbox.

use ringmaster_core::{CallSessionId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{BillingRecord, CallRecord, LegRecord, TimelineEntry};
use crate::registry::{ActiveCall, RegistryChange};

/// A session as stored: the orchestrator's document plus what the store indexes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    /// Telnyx `call_session_id`.
    pub id: CallSessionId,
    /// The called (or calling) user; fixed when the session is created.
    pub user_id: UserId,
    /// 1 after creation, +1 per commit; the compare-and-set token.
    pub version: u64,
    /// The orchestrator's serialised `Session`; opaque to the store.
    pub doc: Value,
    /// When the session's next timer fires, if any.
    pub next_deadline: Option<Timestamp>,
    /// Short state name (`ringing`, `bridged`, ...) for queries and operators.
    pub state_label: String,
}

/// Everything one handled input changes, applied all-or-nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// The session being created or advanced.
    pub session_id: CallSessionId,
    /// Owner, stored on creation and ignored afterwards.
    pub user_id: UserId,
    /// `None`: create (the session must not exist). `Some(v)`: the stored version must be `v`.
    pub expected_version: Option<u64>,
    /// The new session document.
    pub doc: Value,
    /// The new state label.
    pub state_label: String,
    /// The new next deadline (`None` cancels any timer).
    pub next_deadline: Option<Timestamp>,
    /// Effects to dispatch, appended to the outbox in this order.
    pub effects: Vec<Value>,
    /// Identity of the input (webhook `data.id`, `device:{id}:{seq}`); a key already
    /// processed makes the whole commit a no-op.
    pub dedupe_key: Option<String>,
    /// Active-call registry changes, applied in order.
    pub registry: Vec<RegistryChange>,
    /// Call history rows, upserted by `call_session_id`.
    pub calls: Vec<CallRecord>,
    /// Per-leg rows, upserted by `call_control_id`.
    pub legs: Vec<LegRecord>,
    /// Billing records to insert; one already stored for the call is kept as it is.
    pub billing: Vec<BillingRecord>,
    /// Timeline entries, appended in this order.
    pub timeline: Vec<TimelineEntry>,
    /// When the input was handled (stamps outbox entries and the dedupe key).
    pub at: Timestamp,
}

impl Commit {
    /// A commit that only writes the session; add effects and side tables with the fields.
    pub fn new(
        session_id: CallSessionId,
        user_id: UserId,
        expected_version: Option<u64>,
        doc: Value,
        state_label: impl Into<String>,
        at: Timestamp,
    ) -> Self {
        Self {
            session_id,
            user_id,
            expected_version,
            doc,
            state_label: state_label.into(),
            next_deadline: None,
            effects: Vec::new(),
            dedupe_key: None,
            registry: Vec::new(),
            calls: Vec::new(),
            legs: Vec::new(),
            billing: Vec::new(),
            timeline: Vec::new(),
            at,
        }
    }
}

/// What happened to a [`Commit`]. Only `Committed` changed anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommitOutcome {
    /// Everything was written.
    Committed {
        /// The session's new version.
        version: u64,
        /// The outbox sequence numbers given to `Commit::effects`, in the same order.
        effect_seqs: Vec<u64>,
    },
    /// The version did not match (or the session already existed): reload and handle again.
    Conflict {
        /// The stored version, `None` if the session does not exist.
        current_version: Option<u64>,
    },
    /// The dedupe key was already processed: the input was handled before.
    Duplicate,
    /// A registry `Set` would give a user without call waiting a second active call.
    Busy {
        /// The user's active calls that blocked it.
        active: Vec<ActiveCall>,
    },
}

/// One effect waiting in (or retried from) the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The session that produced the effect.
    pub session_id: CallSessionId,
    /// Per-session sequence, increasing across commits; with the session id it is the
    /// effect's idempotency key (e.g. the Telnyx `command_id`).
    pub seq: u64,
    /// The effect as the orchestrator serialised it.
    pub effect: Value,
    /// Failed dispatch attempts so far.
    pub attempts: u32,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// When the effect was committed.
    pub created_at: Timestamp,
}
