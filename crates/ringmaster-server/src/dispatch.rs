//! The outbox dispatcher: executes committed Telnyx commands and notifications, feeds command
//! outcomes back into their sessions, and marks each effect done. It drains after every commit
//! (the engine kicks it) and sweeps periodically, so effects committed before a crash or
//! restart are still sent, with the same `command_id`.

use crate::engine::{Applied, Engine};
use crate::notify::{Notifiers, NotifyError};
use crate::provider;
use ringmaster_core::session::{Effect, Input};
use ringmaster_core::CallSessionId;
use ringmaster_store::{OutboxEntry, Store};
use ringmaster_telnyx::TelnyxClient;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Effects read from the outbox per drain.
const BATCH: u32 = 500;
/// Effects executed at the same time.
const CONCURRENCY: usize = 64;
/// Attempts before a retried effect is given up.
const MAX_ATTEMPTS: u32 = 6;
/// Wait before the first retry of a failed effect; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(250);
/// How long shutdown waits for effects in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

type Key = (CallSessionId, u64);

/// Executes outbox effects. Run one per process with [`Dispatcher::run`].
pub struct Dispatcher {
    store: Arc<dyn Store>,
    engine: Engine,
    telnyx: TelnyxClient,
    connection_id: String,
    notifiers: Notifiers,
    kick: Arc<Notify>,
    sweep: Duration,
    in_flight: Mutex<HashSet<Key>>,
    /// Finished effects still in `in_flight`; released at the start of the next drain, before
    /// the outbox is read, so an effect marked done during a read is never picked up again.
    finished: Mutex<Vec<Key>>,
    not_before: Mutex<HashMap<Key, Instant>>,
    permits: Arc<Semaphore>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What to do with an effect after one attempt.
enum Disposition {
    Done,
    Retry(String),
    Abandon(String),
}

impl Dispatcher {
    /// A dispatcher; `kick` is the engine's wake-up signal, `sweep` the idle re-check period.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Engine,
        telnyx: TelnyxClient,
        connection_id: String,
        notifiers: Notifiers,
        kick: Arc<Notify>,
        sweep: Duration,
    ) -> Self {
        Self {
            store,
            engine,
            telnyx,
            connection_id,
            notifiers,
            kick,
            sweep,
            in_flight: Mutex::new(HashSet::new()),
            finished: Mutex::new(Vec::new()),
            not_before: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(CONCURRENCY)),
        }
    }

    /// Drains the outbox until `shutdown` turns true, then lets effects in flight finish (for
    /// up to a grace period; the rest stay pending in the store for the next start).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.drain(&mut tasks).await {
                tracing::warn!(error = %e, "outbox read failed");
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(self.sweep) => {}
                _ = shutdown.changed() => {}
            }
        }
        // Let effects in flight finish and record their results, so a clean stop re-sends
        // nothing; whatever is still running after the grace period is redone on the next
        // start (with the same command_id).
        let finish = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, finish).await.is_err() {
            tracing::warn!("effects still in flight at shutdown; they will be redone");
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    async fn drain(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), ringmaster_store::StoreError> {
        {
            let finished = std::mem::take(&mut *lock(&self.finished));
            let mut in_flight = lock(&self.in_flight);
            for key in finished {
                in_flight.remove(&key);
            }
        }
        let pending = self.store.pending_effects(BATCH).await?;
        let now = Instant::now();
        for entry in pending {
            let key = (entry.session_id.clone(), entry.seq);
            if lock(&self.not_before)
                .get(&key)
                .is_some_and(|due| *due > now)
            {
                continue;
            }
            if !lock(&self.in_flight).insert(key.clone()) {
                continue;
            }
            let me = self.clone();
            let permits = self.permits.clone();
            tasks.spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                me.dispatch(entry).await;
                lock(&me.finished).push(key);
            });
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(call_session_id = %entry.session_id, seq = entry.seq))]
    async fn dispatch(&self, entry: OutboxEntry) {
        let key = (entry.session_id.clone(), entry.seq);
        let disposition = match serde_json::from_value::<Effect>(entry.effect.clone()) {
            Ok(Effect::Telnyx(command)) => self.command(&entry, command).await,
            Ok(Effect::Notify(n)) => match self.notifiers.deliver(&n).await {
                Ok(_) => Disposition::Done,
                Err(NotifyError::Temporary(e)) => Disposition::Retry(e),
                Err(NotifyError::Permanent(e)) => Disposition::Abandon(e),
            },
            Ok(other) => Disposition::Abandon(format!(
                "effect {:?} does not belong in the outbox",
                std::mem::discriminant(&other)
            )),
            Err(e) => Disposition::Abandon(format!("unreadable effect: {e}")),
        };
        let (sid, seq) = (&entry.session_id, entry.seq);
        let result = match disposition {
            Disposition::Done => {
                lock(&self.not_before).remove(&key);
                self.store.mark_effect_done(sid, seq).await
            }
            Disposition::Retry(e) if entry.attempts + 1 < MAX_ATTEMPTS => {
                let wait = RETRY_BASE.saturating_mul(1 << entry.attempts.min(6));
                tracing::warn!(error = %e, attempt = entry.attempts + 1, ?wait, "effect failed; will retry");
                lock(&self.not_before).insert(key, Instant::now() + wait);
                self.store.mark_effect_failed(sid, seq, &e).await
            }
            Disposition::Retry(e) | Disposition::Abandon(e) => {
                tracing::error!(error = %e, "effect abandoned");
                lock(&self.not_before).remove(&key);
                self.store.mark_effect_abandoned(sid, seq, &e).await
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record the effect's outcome; it will be redone");
        }
    }

    async fn command(
        &self,
        entry: &OutboxEntry,
        command: ringmaster_core::session::Command,
    ) -> Disposition {
        let outcome = match provider::execute(&self.telnyx, &self.connection_id, &command).await {
            Ok(outcome) => outcome,
            Err(t)
                if provider::retry_transient(&command.action)
                    && entry.attempts + 1 < MAX_ATTEMPTS =>
            {
                return Disposition::Retry(t.message);
            }
            // No final answer and not worth waiting for: the session decides what a failed
            // command means (drop the leg, retry the bridge, ...).
            Err(t) => Err(t.as_final),
        };
        let ok = outcome.is_ok();
        let input: Input = provider::result_input(&command, outcome);
        // Keyed by the outbox entry, so a re-dispatch after a crash feeds the result once.
        let dedupe = format!("effect:{}:{}", entry.session_id, entry.seq);
        match self
            .engine
            .apply(&entry.session_id, input, Some(dedupe))
            .await
        {
            Ok(Applied::Refused(e)) => {
                tracing::warn!(command_id = %command.command_id, error = %e, "session refused a command result");
                Disposition::Done
            }
            Ok(_) => {
                tracing::debug!(command_id = %command.command_id, ok, "command done");
                Disposition::Done
            }
            // The command ran but its result is not recorded: redo it (same command_id).
            Err(e) => Disposition::Retry(format!("recording the result failed: {e}")),
        }
    }
}
