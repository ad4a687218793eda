//! Versioned call sessions, the atomic commit that advances them, and their outbox.

use ringmaster_core::{CallSessionId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;
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
    /// The session was quarantined ([`crate::Store::quarantine_session`]): do not handle it.
    #[serde(default)]
    pub quarantined: bool,
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
    /// The session is over: nothing more can happen to it (retention may drop its hot state).
    pub closed: bool,
    /// Effects to dispatch, appended to the outbox in this order.
    pub effects: Vec<OutboxEffect>,
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
    /// Lease the effects a claim could take at once (see [`CommitClaim`]) to the committing
    /// node, in the same transaction, so it sends them without reading them back.
    pub claim: Option<CommitClaim>,
}

/// The lease a commit takes on its own effects: each one that [`crate::Store::due_effects`]
/// would return right after the commit (not held back by an earlier pending effect with its
/// ordering key, not of a quarantined session unless a release, not a host event) is leased
/// to `owner` until `until`, exactly as [`crate::Store::claim_due_effects`] would lease it.
/// Their sequence numbers come back in [`CommitOutcome::Committed`]'s `claimed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitClaim {
    /// Who the effects are leased to (the dispatcher's node id).
    pub owner: String,
    /// When the lease runs out.
    pub until: Timestamp,
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
            closed: false,
            effects: Vec::new(),
            dedupe_key: None,
            registry: Vec::new(),
            calls: Vec::new(),
            legs: Vec::new(),
            billing: Vec::new(),
            timeline: Vec::new(),
            at,
            claim: None,
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
        /// Those of them leased to the owner of `Commit::claim`, in order (empty without
        /// one).
        #[serde(default)]
        claimed: Vec<u64>,
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

/// The dispatch lane of an outbox effect. Each lane has its own concurrency and is read
/// separately, so a backlog in one (pushes waiting out a provider's `Retry-After`) never
/// holds back another (a hangup).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Hangups and rejects: a leg left up rings a phone or bills a call.
    Release,
    /// Dials, answers and bridges.
    Setup,
    /// WebSocket events.
    Realtime,
    /// FCM/APNs pushes.
    Push,
    /// Everything else (speak, recording).
    Other,
    /// Events for the host app's webhooks: moved to the event log by the webhook relay, never
    /// executed by the dispatcher.
    Host,
}

impl Lane {
    /// Every lane the dispatcher serves, in its order (releases first); [`Lane::Host`] is the
    /// webhook relay's.
    pub const ALL: [Lane; 5] = [
        Lane::Release,
        Lane::Setup,
        Lane::Realtime,
        Lane::Push,
        Lane::Other,
    ];

    /// The lane's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Release => "release",
            Lane::Setup => "setup",
            Lane::Realtime => "realtime",
            Lane::Push => "push",
            Lane::Other => "other",
            Lane::Host => "host",
        }
    }

    /// The lane with this stored name.
    pub fn from_name(name: &str) -> Option<Lane> {
        Lane::ALL
            .into_iter()
            .chain([Lane::Host])
            .find(|l| l.as_str() == name)
    }
}

/// Checks the lanes of a [`crate::Store::claim_due_effects_all`]: each dispatcher lane at
/// most once (the host lane is the webhook relay's, never claimed).
pub(crate) fn check_claim_lanes(lanes: &[(Lane, u32)]) -> Result<(), StoreError> {
    for (i, (lane, _)) in lanes.iter().enumerate() {
        if *lane == Lane::Host {
            return Err(StoreError::invalid("lanes", "the host lane is not claimed"));
        }
        if lanes[..i].iter().any(|(other, _)| other == lane) {
            return Err(StoreError::invalid("lanes", format!("{lane} listed twice")));
        }
    }
    Ok(())
}

/// The lanes a backend's one-read [`crate::Store::claim_due_effects_all`] reads: the owner and
/// lanes checked, each limit capped, lanes with nothing to claim left out.
pub(crate) fn claim_lanes(
    owner: &str,
    lanes: &[(Lane, u32)],
) -> Result<Vec<(Lane, usize)>, StoreError> {
    crate::limits::text("lease owner", owner, crate::limits::MAX_ID_LEN)?;
    check_claim_lanes(lanes)?;
    Ok(lanes
        .iter()
        .map(|&(lane, limit)| (lane, crate::limits::limit(limit)))
        .filter(|&(_, limit)| limit > 0)
        .collect())
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An effect to append to the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEffect {
    /// The effect as the orchestrator serialised it.
    pub effect: Value,
    /// The lane it is dispatched in.
    pub lane: Lane,
    /// Effects of one session with the same key are dispatched strictly in `seq` order (one
    /// notification target: an `incoming_call` never overtakes nor follows its `call_ended`
    /// out of order). `None`: no ordering constraint.
    pub order_key: Option<String>,
}

impl From<Value> for OutboxEffect {
    /// An unordered effect in the `other` lane.
    fn from(effect: Value) -> Self {
        Self {
            effect,
            lane: Lane::Other,
            order_key: None,
        }
    }
}

/// Cut-off times for [`crate::Store::prune`]: rows older than these are deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Dispatched or abandoned outbox rows created before this time.
    pub finished_effects_before: Timestamp,
    /// Dedupe keys processed before this time.
    pub processed_before: Timestamp,
    /// Hot state (the session row) of closed sessions last written before this time. Their
    /// history and timeline stay.
    pub closed_sessions_before: Timestamp,
    /// Call history (records, legs, timeline) of calls started before this time; `None`
    /// keeps history forever.
    pub history_before: Option<Timestamp>,
}

/// How many rows [`crate::Store::prune`] deleted, per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Outbox rows.
    pub effects: u64,
    /// Dedupe keys.
    pub processed: u64,
    /// Session rows.
    pub sessions: u64,
    /// Call records (their legs and timeline went with them).
    pub calls: u64,
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
    /// The lane it is dispatched in.
    pub lane: Lane,
    /// Not dispatched before this time (backoff, `Retry-After`, a dial's rate slot).
    pub next_attempt_at: Timestamp,
}
