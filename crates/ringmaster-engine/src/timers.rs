//! Session timers are data (each session's next deadline, stored with it); [`tick_due`] reads
//! the store for due sessions and feeds them `Input::Tick`. Nothing sleeps per call, so a
//! restart loses no timer. The server's timer loop calls it on an interval.
//!
//! Quarantined sessions are never due, so a session that cannot be handled never holds back
//! the ring timeouts of the others.
//!
//! Every node runs this loop on the shared store; each claims the due sessions it ticks (a
//! lease, ended by the tick's commit), so one timer is ticked by one node.

use crate::engine::{Applied, Engine, EngineError};
use ringmaster_core::session::Input;
use ringmaster_store::Store;
use std::time::Duration;
use tokio::task::JoinSet;

/// Sessions ticked per poll.
const BATCH: u32 = 200;

/// How long a node's claim on a due session lasts. Shorter than the outbox lease
/// (`Settings.lease`): a tick is one load and one commit on the store, with no request to
/// Telnyx or a push service to wait for, and a dead node's claimed timers (ring timeouts) wait
/// this long before another node ticks them. A tick that outlasts it is merely ticked twice,
/// which compare-and-set makes harmless.
pub const TIMER_LEASE: Duration = Duration::from_secs(5);

/// Claims for `node_id` and ticks every session due now that no other node holds (up to a
/// batch); returns how many were ticked.
pub async fn tick_due(
    store: &dyn Store,
    engine: &Engine,
    node_id: &str,
) -> Result<usize, ringmaster_store::StoreError> {
    let now = engine.now();
    let due = store
        .claim_due_sessions(now, BATCH, node_id, now + TIMER_LEASE)
        .await?;
    let count = due.len();
    let mut ticks = JoinSet::new();
    for (id, deadline) in due {
        let engine = engine.clone();
        ticks.spawn(async move {
            match engine.apply(&id, Input::Tick, None).await {
                Ok(Applied::Committed(_)) => {
                    tracing::debug!(call_session_id = %id, deadline = deadline.as_millis(), "timer fired")
                }
                Ok(Applied::Refused(e)) => {
                    tracing::warn!(call_session_id = %id, error = %e, "tick refused")
                }
                Ok(_) => {}
                // Already logged and counted by the engine.
                Err(EngineError::Quarantined(_)) => {}
                Err(e) => tracing::warn!(call_session_id = %id, error = %e, "tick failed"),
            }
        });
    }
    while ticks.join_next().await.is_some() {}
    Ok(count)
}
