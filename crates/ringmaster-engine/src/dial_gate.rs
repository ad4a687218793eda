//! Dials pass the account's [`DialBudget`] before they go out. A dial waiting for its rate
//! slot is not in flight: it is deferred in the store until its slot (or until it should ask
//! again), holding no permit, and it is never sent before its slot.

use crate::dial_limit::{DialBudget, DialGrant, DialPriority};
use ringmaster_core::session::Effect;
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{OutboxEntry, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Wait before asking again after the dial budget could not be read.
const DIAL_BUDGET_RETRY: Duration = Duration::from_secs(1);

/// Whether a dial may go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialSlot {
    /// Send it now; it was granted this slot.
    Go(Timestamp),
    /// Deferred in the store until this time.
    Wait(Timestamp),
}

/// The priority of a dial command; `None` for every other effect.
pub fn dial_priority(effect: &Effect) -> Option<DialPriority> {
    match effect {
        Effect::Telnyx(c) => DialPriority::of(&c.action),
        _ => None,
    }
}

/// The dial budget and the slots it granted to deferred dials.
#[derive(Debug)]
pub struct DialGate {
    budget: Arc<dyn DialBudget>,
    /// Slots granted to deferred dials, used when they come due (not granted again). A slot
    /// whose row another node took meanwhile is dropped after a lease.
    slots: Mutex<HashMap<(CallSessionId, u64), Timestamp>>,
}

impl DialGate {
    /// Dials through `budget`.
    pub fn new(budget: Arc<dyn DialBudget>) -> Self {
        Self {
            budget,
            slots: Mutex::default(),
        }
    }

    /// The budget dials go through.
    pub fn budget(&self) -> &Arc<dyn DialBudget> {
        &self.budget
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<(CallSessionId, u64), Timestamp>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the dial in `entry` may go at `now`; when it has to wait, it is deferred in
    /// `store` until its slot or until it should ask again. `lease` bounds how long a granted
    /// slot is kept for a row that may have gone to another node.
    pub async fn slot(
        &self,
        store: &dyn Store,
        entry: &OutboxEntry,
        priority: DialPriority,
        now: Timestamp,
        lease: Duration,
    ) -> DialSlot {
        let key = (entry.session_id.clone(), entry.seq);
        let held = {
            let mut slots = self.slots();
            let stale = now - lease;
            slots.retain(|_, at| *at >= stale);
            slots.remove(&key)
        };
        let (reserved, until) = match held {
            Some(at) => (true, at),
            None => match self.budget.request(priority, now).await {
                Ok(DialGrant::At(at)) => (true, at),
                Ok(DialGrant::AskAgain(at)) => (false, at),
                Err(e) => {
                    tracing::warn!(call_session_id = %entry.session_id, error = %e, "dial budget unavailable; dial waits");
                    (false, now + DIAL_BUDGET_RETRY)
                }
            },
        };
        if reserved && until <= now {
            return DialSlot::Go(until);
        }
        if reserved {
            self.slots().insert(key, until);
        }
        tracing::info!(
            call_session_id = %entry.session_id,
            seq = entry.seq,
            ?priority,
            slot_reserved = reserved,
            wait = ?until.saturating_since(now),
            queued_dials = self.budget.queued(),
            "dial rate limit reached; dial queued"
        );
        if let Err(e) = store
            .defer_effect(&entry.session_id, entry.seq, until)
            .await
        {
            tracing::warn!(call_session_id = %entry.session_id, error = %e, "could not defer a dial");
        }
        DialSlot::Wait(until)
    }
}
