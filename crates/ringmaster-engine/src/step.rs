//! The dispatcher in step mode: one call of [`StepDispatcher::dispatch_due`] claims every due
//! effect a lane has room for (releases first), runs each through the executor, and records
//! its outcome, with the same rules as the server's dispatcher ([`crate::effects`],
//! [`crate::retry`], [`crate::dial_gate`]). A simulation calls it on its own timer in virtual
//! time; rows a crashed node claimed come back when their lease runs out, as on a cluster.

use crate::dial_gate::{dial_priority, DialGate, DialSlot};
use crate::effects::{EffectRunner, Recorded};
use crate::executor::EffectExecutor;
use crate::retry::{lane_concurrency, DEFAULT_LEASE};
use ringmaster_core::session::Effect;
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{Lane, OutboxEntry, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// What one step did with one effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatched {
    /// The effect's session.
    pub session_id: CallSessionId,
    /// Its sequence number in the session's outbox.
    pub seq: u64,
    /// The lane it was claimed from.
    pub lane: Lane,
    /// What happened.
    pub outcome: StepOutcome,
}

/// The outcome of one effect in a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Attempted; this was recorded.
    Attempted(Recorded),
    /// A dial waiting for its rate slot: deferred until then, not attempted.
    Deferred(Timestamp),
}

/// Dispatches due effects one step at a time.
pub struct StepDispatcher {
    store: Arc<dyn Store>,
    runner: EffectRunner,
    executor: Arc<dyn EffectExecutor>,
    dials: DialGate,
    node_id: String,
    lease: Duration,
}

impl StepDispatcher {
    /// A dispatcher claiming rows of `store` as `node_id` for [`DEFAULT_LEASE`], running them
    /// through `runner` and `executor`, dials through `dials`.
    pub fn new(
        store: Arc<dyn Store>,
        runner: EffectRunner,
        executor: Arc<dyn EffectExecutor>,
        dials: DialGate,
        node_id: impl Into<String>,
    ) -> Self {
        Self {
            store,
            runner,
            executor,
            dials,
            node_id: node_id.into(),
            lease: DEFAULT_LEASE,
        }
    }

    /// Claims rows for `lease` at a time.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Claims the effects due at `now`, lane by lane (releases first, each lane up to its
    /// concurrency), attempts each, records the outcomes, and returns them in that order.
    pub async fn dispatch_due(&self, now: Timestamp) -> Result<Vec<Dispatched>, StoreError> {
        let mut done = Vec::new();
        for lane in Lane::ALL {
            for entry in self.claim_lane(lane, now).await? {
                done.push(self.run_claimed(&entry, now).await);
            }
        }
        Ok(done)
    }

    /// Claims the effects of `lane` due at `now`, up to the lane's concurrency (none for a
    /// lane this dispatcher never runs), leasing them to this node. The simulator runs each
    /// claimed entry as its own flight ([`Self::run_claimed`]), so one slow command does not
    /// hold back the rest of a step.
    pub async fn claim_lane(
        &self,
        lane: Lane,
        now: Timestamp,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let limit = u32::try_from(lane_concurrency(lane)).unwrap_or(u32::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.store
            .claim_due_effects(lane, now, limit, &self.node_id, now + self.lease)
            .await
    }

    /// Runs one entry this node claimed at `now`: a dial waits for its rate slot (deferred),
    /// anything else is attempted and its outcome recorded.
    pub async fn run_claimed(&self, entry: &OutboxEntry, now: Timestamp) -> Dispatched {
        let dispatched = |outcome| Dispatched {
            session_id: entry.session_id.clone(),
            seq: entry.seq,
            lane: entry.lane,
            outcome,
        };
        let priority = serde_json::from_value::<Effect>(entry.effect.clone())
            .ok()
            .as_ref()
            .and_then(dial_priority);
        if let Some(priority) = priority {
            match self
                .dials
                .slot(&*self.store, entry, priority, now, self.lease)
                .await
            {
                DialSlot::Go(granted) => self.dials.budget().started(granted, now),
                DialSlot::Wait(until) => return dispatched(StepOutcome::Deferred(until)),
            }
        }
        let disposition = self.runner.attempt(entry, &*self.executor).await;
        let recording = self.runner.record(entry, disposition).await;
        dispatched(StepOutcome::Attempted(recording.recorded))
    }
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
