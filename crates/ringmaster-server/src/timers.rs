//! Session timers are data (each session's next deadline, stored with it); this loop polls the
//! store for due sessions and feeds them `Input::Tick`. Nothing sleeps per call, so a restart
//! loses no timer. The same loop forgets dedupe keys older than a week.

use crate::engine::{Applied, Engine};
use ringmaster_core::session::Input;
use ringmaster_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Sessions ticked per poll.
const BATCH: u32 = 200;
/// How often old dedupe keys are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How long webhook ids and device report sequence numbers are remembered; Telnyx stops
/// redelivering within minutes, so a week is ample.
const KEEP_DEDUPE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Ticks due sessions every `interval` until `shutdown` turns true.
pub async fn run(
    store: Arc<dyn Store>,
    engine: Engine,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            match store.prune_processed(engine.now() - KEEP_DEDUPE).await {
                Ok(n) if n > 0 => tracing::info!(pruned = n, "forgot old dedupe keys"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning dedupe keys failed"),
            }
        }
        match store.due_sessions(engine.now(), BATCH).await {
            Ok(due) => {
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
                            Err(e) => tracing::warn!(call_session_id = %id, error = %e, "tick failed"),
                        }
                    });
                }
                while ticks.join_next().await.is_some() {}
            }
            Err(e) => tracing::warn!(error = %e, "reading due timers failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}
