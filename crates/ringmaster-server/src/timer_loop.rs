//! The server's timer loop: every interval it ticks the due sessions (the engine's
//! [`tick_due`]) and, on its own schedule, prunes old rows under the [`RetentionPolicy`].

use crate::retention::{self, RetentionPolicy};
use ringmaster_engine::timers::tick_due;
use ringmaster_engine::Engine;
use ringmaster_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Ticks due sessions every `interval` as `node_id` and prunes under `retention` until
/// `shutdown` turns true.
pub async fn run(
    store: Arc<dyn Store>,
    engine: Engine,
    node_id: String,
    interval: Duration,
    retention: RetentionPolicy,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if tokio::time::Instant::now() >= next_prune {
            next_prune += retention.every;
            if let Err(e) = retention::prune(&*store, &retention, engine.now()).await {
                tracing::warn!(error = %e, "pruning old rows failed");
            }
        }
        if let Err(e) = tick_due(&*store, &engine, &node_id).await {
            tracing::warn!(error = %e, "reading due timers failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}
