//! The outbox dispatcher: executes committed Telnyx commands and notifications, feeds command
//! outcomes back into their sessions, and marks each effect done. It drains after every commit
//! (the engine kicks it) and sweeps periodically, so effects committed before a crash or
//! restart are still sent, with the same `command_id`.
//!
//! A failed effect is not tried again before its backoff, or before the provider's
//! `Retry-After` when that is later. The store keeps only the attempt count, so these
//! "not before" times live in memory: a restart forgets them and retries at once, which is
//! safe (every effect is idempotent) and at worst earns another `Retry-After`.
//!
//! Dials go through the account's [`DialLimiter`] first and wait for a free slot, outside the
//! concurrency limit so queued dials do not hold up hangups.

use crate::clock::{Clock, SystemClock};
use crate::dial_limit::{DialLimit, DialLimiter, DialPriority};
use crate::engine::{Applied, Engine};
use crate::notify::{Notifiers, NotifyError};
use crate::provider;
use ringmaster_core::session::{Action, Effect, Input};
use ringmaster_core::{CallSessionId, Timestamp};
use ringmaster_store::{OutboxEntry, Store};
use ringmaster_telnyx::TelnyxClient;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

/// Effects read from the outbox per drain.
const BATCH: u32 = 500;
/// Effects executed at the same time.
const CONCURRENCY: usize = 64;
/// Attempts before a retried effect is given up.
const MAX_ATTEMPTS: u32 = 6;
/// Wait before the first retry of a failed effect; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(250);
/// Longest provider `Retry-After` honoured; a longer one is capped so the effect is still
/// retried (and eventually given up) instead of parked for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
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
    clock: Arc<dyn Clock>,
    dials: Arc<DialLimiter>,
    in_flight: Mutex<HashSet<Key>>,
    /// Finished effects still in `in_flight`; released at the start of the next drain, before
    /// the outbox is read, so an effect marked done during a read is never picked up again.
    finished: Mutex<Vec<Key>>,
    /// Failed effects not to be tried again before the given time (by `clock`).
    not_before: Mutex<HashMap<Key, Timestamp>>,
    permits: Arc<Semaphore>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What to do with an effect after one attempt.
enum Disposition {
    Done,
    /// Failed for now; the provider's `Retry-After`, if it gave one.
    Retry(String, Option<Duration>),
    Abandon(String),
}

/// How long to wait before retrying an effect that failed `attempts` times before this
/// failure: exponential backoff, but never less than the provider asked for (capped).
pub fn retry_wait(attempts: u32, retry_after: Option<Duration>) -> Duration {
    let backoff = RETRY_BASE.saturating_mul(1 << attempts.min(6));
    retry_after.map_or(backoff, |ra| backoff.max(ra.min(MAX_RETRY_AFTER)))
}

/// The queue priority of a dial; `None` for any other effect. An inbound ring dials a device
/// linked to the caller's leg; click-to-call dials the device unlinked, then the destination.
fn dial_priority(effect: &Effect) -> Option<DialPriority> {
    match effect {
        Effect::Telnyx(c) => match &c.action {
            Action::Dial {
                device: Some(_),
                link_to: Some(_),
                ..
            } => Some(DialPriority::InboundRing),
            Action::Dial { .. } => Some(DialPriority::ClickToCall),
            _ => None,
        },
        _ => None,
    }
}

impl Dispatcher {
    /// A dispatcher; `kick` is the engine's wake-up signal, `sweep` the idle re-check period.
    /// It reads the system clock and dials at Telnyx's default rate until told otherwise
    /// ([`Dispatcher::with_clock`], [`Dispatcher::with_dial_limiter`]).
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
            clock: Arc::new(SystemClock),
            dials: Arc::new(DialLimiter::new(DialLimit::default())),
            in_flight: Mutex::new(HashSet::new()),
            finished: Mutex::new(Vec::new()),
            not_before: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(CONCURRENCY)),
        }
    }

    /// Uses `clock` for retry times and dial slots.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Puts dials through `limiter` (shared per Telnyx account).
    pub fn with_dial_limiter(mut self, limiter: Arc<DialLimiter>) -> Self {
        self.dials = limiter;
        self
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
        let now = self.clock.now();
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
                let effect = serde_json::from_value::<Effect>(entry.effect.clone());
                if let Some(priority) = effect.as_ref().ok().and_then(dial_priority) {
                    me.wait_for_dial_slot(&entry, priority).await;
                }
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                me.dispatch(entry, effect).await;
                lock(&me.finished).push(key);
            });
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(call_session_id = %entry.session_id, seq = entry.seq))]
    async fn wait_for_dial_slot(&self, entry: &OutboxEntry, priority: DialPriority) {
        let asked = self.clock.now();
        let granted = self.dials.acquire(priority, &*self.clock).await;
        if granted > asked {
            tracing::info!(
                wait = ?granted.saturating_since(asked),
                ?priority,
                queued_dials = self.dials.queued(),
                "dial rate limit reached; dial was queued"
            );
        }
        self.dials.started(granted, self.clock.now());
    }

    #[tracing::instrument(skip_all, fields(call_session_id = %entry.session_id, seq = entry.seq))]
    async fn dispatch(&self, entry: OutboxEntry, effect: Result<Effect, serde_json::Error>) {
        let key = (entry.session_id.clone(), entry.seq);
        let disposition = match effect {
            Ok(Effect::Telnyx(command)) => self.command(&entry, command).await,
            Ok(Effect::Notify(n)) => match self.notifiers.deliver(&n).await {
                Ok(_) => Disposition::Done,
                Err(NotifyError::Temporary {
                    message,
                    retry_after,
                }) => Disposition::Retry(message, retry_after),
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
            Disposition::Retry(e, retry_after) if entry.attempts + 1 < MAX_ATTEMPTS => {
                let wait = retry_wait(entry.attempts, retry_after);
                tracing::warn!(error = %e, attempt = entry.attempts + 1, ?wait, ?retry_after, "effect failed; will retry");
                lock(&self.not_before).insert(key, self.clock.now() + wait);
                self.store.mark_effect_failed(sid, seq, &e).await
            }
            Disposition::Retry(e, _) | Disposition::Abandon(e) => {
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
                return Disposition::Retry(t.message, t.retry_after);
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
            Err(e) => Disposition::Retry(format!("recording the result failed: {e}"), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Notifier;
    use async_trait::async_trait;
    use ringmaster_core::session::{Channel, Notification, NotifyEvent};
    use ringmaster_core::{TenantId, UserId};
    use ringmaster_store::{Commit, MemoryStore};
    use ringmaster_telnyx::ClientConfig;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// Time that moves only when the test says so.
    #[derive(Default)]
    struct ManualClock(AtomicU64);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Timestamp {
            Timestamp::from_millis(1_700_000_000_000 + self.0.load(Ordering::SeqCst))
        }
    }

    /// Fails its first delivery with a provider `Retry-After`, then delivers.
    struct Throttled {
        calls: AtomicUsize,
        retry_after: Duration,
    }

    #[async_trait]
    impl Notifier for Throttled {
        async fn notify(&self, _: &Notification) -> Result<(), NotifyError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(NotifyError::Temporary {
                    message: "429 from the provider".into(),
                    retry_after: Some(self.retry_after),
                });
            }
            Ok(())
        }
    }

    #[test]
    fn the_providers_retry_after_beats_a_shorter_backoff_but_is_capped() {
        assert_eq!(retry_wait(0, None), RETRY_BASE);
        assert_eq!(retry_wait(2, None), RETRY_BASE * 4);
        let asked = Duration::from_secs(42);
        assert_eq!(retry_wait(0, Some(asked)), asked);
        assert_eq!(
            retry_wait(0, Some(Duration::from_millis(1))),
            RETRY_BASE,
            "a shorter Retry-After does not shorten the backoff"
        );
        assert_eq!(
            retry_wait(0, Some(Duration::from_secs(86_400))),
            MAX_RETRY_AFTER
        );
    }

    async fn drain_and_finish(dispatcher: &Arc<Dispatcher>) {
        let mut tasks = JoinSet::new();
        dispatcher.drain(&mut tasks).await.unwrap();
        while tasks.join_next().await.is_some() {}
    }

    #[tokio::test]
    async fn a_throttled_notification_is_not_retried_before_its_retry_after() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::default());
        let kick = Arc::new(Notify::new());
        let engine = Engine::new(store.clone(), clock.clone(), kick.clone());
        let retry_after = Duration::from_secs(60);
        let notifier = Arc::new(Throttled {
            calls: AtomicUsize::new(0),
            retry_after,
        });
        let telnyx =
            TelnyxClient::new(ClientConfig::new("unused").with_base_url("http://127.0.0.1:9"))
                .unwrap();
        let dispatcher = Arc::new(
            Dispatcher::new(
                store.clone(),
                engine,
                telnyx,
                "conn".into(),
                Notifiers {
                    websocket: Some(notifier.clone()),
                    push: None,
                },
                kick,
                Duration::from_secs(1),
            )
            .with_clock(clock.clone()),
        );
        let session = CallSessionId::new("throttled-call");
        let note = Effect::Notify(Notification {
            tenant: TenantId::new("t"),
            user: UserId::new("u"),
            call_session_id: session.clone(),
            channel: Channel::WebSocket,
            event: NotifyEvent::CallStateChanged {
                device: None,
                state: "ended".into(),
                version: 1,
            },
            exclude_socket: None,
        });
        let mut commit = Commit::new(
            session,
            UserId::new("u"),
            None,
            serde_json::json!({}),
            "ended",
            clock.now(),
        );
        commit.effects = vec![serde_json::to_value(&note).unwrap()];
        store.commit(commit).await.unwrap();

        drain_and_finish(&dispatcher).await;
        assert_eq!(notifier.calls.load(Ordering::SeqCst), 1);
        let pending = store.pending_effects(10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].attempts, 1);

        // Well past the dispatcher's own backoff, still inside the provider's Retry-After.
        clock.advance(Duration::from_secs(10));
        drain_and_finish(&dispatcher).await;
        assert_eq!(
            notifier.calls.load(Ordering::SeqCst),
            1,
            "retried too early"
        );

        clock.advance(retry_after);
        drain_and_finish(&dispatcher).await;
        assert_eq!(notifier.calls.load(Ordering::SeqCst), 2);
        assert!(store.pending_effects(10).await.unwrap().is_empty());
    }
}
