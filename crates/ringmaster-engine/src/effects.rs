//! One attempt at one outbox effect and the record of its outcome: the dispatcher's decisions,
//! shared by the server (which runs attempts concurrently, per lane) and the step dispatcher
//! ([`crate::step`]). A command's final answer, or its give-up, goes back to its session as an
//! input; a release is retried until Telnyx confirms it; an `incoming_call` past the ring
//! timeout is dropped as stale.

use crate::clock::Clock;
use crate::engine::{Applied, Engine, EngineError};
use crate::executor::{CommandAttempt, EffectExecutor, NotifyAttempt};
use crate::retry::{
    attempts_for, backoff_cap, is_stale, retried_until_confirmed, retry_wait, DEFAULT_RING_TIMEOUT,
    NOTIFY_ATTEMPTS,
};
use rand::{RngCore, SeedableRng};
use ringmaster_core::session::{Command, Effect, NotifyEvent};
use ringmaster_core::Timestamp;
use ringmaster_store::{Lane, OutboxEntry, Store};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do with an effect after one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Finished: mark it done.
    Done,
    /// Failed for now; the provider's `Retry-After`, if it gave one.
    Retry(String, Option<Duration>),
    /// Will never succeed: stop.
    Abandon(String),
}

/// What the dispatcher recorded for an effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Marked done.
    Done,
    /// Marked failed, to be tried again at this time.
    Retry(Timestamp),
    /// Given up for good.
    Abandoned,
}

impl Recorded {
    /// The outcome's name in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Retry(_) => "retry",
            Self::Abandoned => "abandoned",
        }
    }
}

/// What [`EffectRunner::record`] wrote, and what it means for the rest of the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recording {
    /// The outcome recorded.
    pub recorded: Recorded,
    /// The effect may have held back a pending effect with its ordering key, free to go now:
    /// a notification done ahead of another for its target, or given up on.
    pub freed_successor: bool,
}

/// Runs attempts through an executor and records their outcomes in the store.
pub struct EffectRunner {
    store: Arc<dyn Store>,
    engine: Engine,
    clock: Arc<dyn Clock>,
    ring_timeout: Duration,
    /// Draws the retry jitter; seeded by the simulator so its runs replay.
    rng: Mutex<Box<dyn RngCore + Send>>,
}

fn decode(entry: &OutboxEntry) -> Result<Effect, serde_json::Error> {
    serde_json::from_value::<Effect>(entry.effect.clone())
}

fn is_incoming_call(effect: &Effect) -> bool {
    matches!(effect, Effect::Notify(n) if matches!(n.event, NotifyEvent::IncomingCall { .. }))
}

impl EffectRunner {
    /// A runner on `store` feeding command results through `engine`, reading `clock`, with the
    /// default ring timeout and retry jitter from the system's entropy.
    pub fn new(store: Arc<dyn Store>, engine: Engine, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            engine,
            clock,
            ring_timeout: DEFAULT_RING_TIMEOUT,
            rng: Mutex::new(Box::new(rand::rngs::StdRng::from_entropy())),
        }
    }

    /// Reads `clock` for staleness and retry times.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// An `incoming_call` notification older than `ring_timeout` is dropped as stale.
    pub fn with_ring_timeout(mut self, ring_timeout: Duration) -> Self {
        self.ring_timeout = ring_timeout;
        self
    }

    /// Draws retry jitter from a generator seeded with `seed` (replayable runs).
    pub fn with_seed(self, seed: u64) -> Self {
        *self.rng.lock().unwrap_or_else(|p| p.into_inner()) =
            Box::new(rand::rngs::StdRng::seed_from_u64(seed));
        self
    }

    /// The clock it reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The engine command results go through.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// One attempt at `entry` through `executor`: what to do with it next.
    pub async fn attempt(&self, entry: &OutboxEntry, executor: &dyn EffectExecutor) -> Disposition {
        match decode(entry) {
            Ok(Effect::Telnyx(command)) => self.command(entry, &command, executor).await,
            Ok(Effect::Notify(n)) => {
                let incoming = matches!(n.event, NotifyEvent::IncomingCall { .. });
                if incoming && is_stale(entry, self.ring_timeout, self.clock.now()) {
                    tracing::info!(event = n.event.name(), "stale incoming_call dropped");
                    return Disposition::Done;
                }
                match executor.notify(entry, &n).await {
                    NotifyAttempt::Delivered => Disposition::Done,
                    NotifyAttempt::Temporary {
                        message,
                        retry_after,
                    } => Disposition::Retry(message, retry_after),
                    NotifyAttempt::Permanent(e) => Disposition::Abandon(e),
                }
            }
            Ok(other) => Disposition::Abandon(format!(
                "effect {:?} does not belong in the outbox",
                std::mem::discriminant(&other)
            )),
            Err(e) => Disposition::Abandon(format!("unreadable effect: {e}")),
        }
    }

    /// The retry decision for `entry` after `disposition`, at `now`: a failed notification is
    /// given up after [`NOTIFY_ATTEMPTS`], or once it would be stale by its next try.
    pub fn decide(
        &self,
        entry: &OutboxEntry,
        disposition: &Disposition,
        now: Timestamp,
    ) -> Recorded {
        match disposition {
            Disposition::Done => Recorded::Done,
            Disposition::Abandon(_) => Recorded::Abandoned,
            Disposition::Retry(_, retry_after) => {
                let wait = {
                    let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
                    retry_wait(
                        entry.attempts,
                        *retry_after,
                        backoff_cap(entry.lane),
                        &mut *rng,
                    )
                };
                let notification = matches!(entry.lane, Lane::Realtime | Lane::Push);
                let stale = notification
                    && decode(entry).is_ok_and(|fx| is_incoming_call(&fx))
                    && is_stale(entry, self.ring_timeout, now + wait);
                if notification && (stale || entry.attempts + 1 >= NOTIFY_ATTEMPTS) {
                    Recorded::Abandoned
                } else {
                    Recorded::Retry(now + wait)
                }
            }
        }
    }

    /// Records `disposition` for `entry` in the store (done, failed until its next try, or
    /// abandoned) and returns what it recorded. A store failure is logged: the effect's lease
    /// runs out and it is redone.
    pub async fn record(&self, entry: &OutboxEntry, disposition: Disposition) -> Recording {
        let (sid, seq) = (&entry.session_id, entry.seq);
        let recorded = self.decide(entry, &disposition, self.clock.now());
        let (error, retry_after) = match &disposition {
            Disposition::Done => ("", None),
            Disposition::Retry(e, retry_after) => (e.as_str(), *retry_after),
            Disposition::Abandon(e) => (e.as_str(), None),
        };
        let notification = matches!(entry.lane, Lane::Realtime | Lane::Push);
        let result = match recorded {
            Recorded::Done => self.store.mark_effect_done(sid, seq).await,
            Recorded::Retry(at) => {
                tracing::warn!(
                    error,
                    attempt = entry.attempts + 1,
                    ?at,
                    ?retry_after,
                    "effect failed; will retry"
                );
                self.store
                    .mark_effect_failed(sid, seq, error, at)
                    .await
                    .map(|()| false)
            }
            Recorded::Abandoned => {
                if matches!(disposition, Disposition::Retry(..)) {
                    tracing::warn!(
                        error,
                        attempts = entry.attempts + 1,
                        "notification given up"
                    );
                } else {
                    tracing::error!(error, "effect abandoned");
                }
                self.store
                    .mark_effect_abandoned(sid, seq, error)
                    .await
                    .map(|()| notification)
            }
        };
        let freed_successor = result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not record the effect's outcome; it will be redone");
            false
        });
        Recording {
            recorded,
            freed_successor,
        }
    }

    /// Whether the leg a release targets is already gone by the session's account (its
    /// hangup webhook arrived): then the release is confirmed without another request.
    async fn release_confirmed(&self, entry: &OutboxEntry, command: &Command) -> bool {
        let Some(ccid) = command.action.target() else {
            return false;
        };
        match self.engine.load(&entry.session_id).await {
            Ok(Some((session, _))) => session.leg_ended(ccid),
            _ => false,
        }
    }

    async fn command(
        &self,
        entry: &OutboxEntry,
        command: &Command,
        executor: &dyn EffectExecutor,
    ) -> Disposition {
        let release = retried_until_confirmed(&command.action);
        if release && entry.attempts > 0 && self.release_confirmed(entry, command).await {
            tracing::info!(command_id = %command.command_id, "leg already hung up; release confirmed");
            return Disposition::Done;
        }
        let input = match executor.command(entry, command).await {
            CommandAttempt::Answered(input) => input,
            // Releases are retried until Telnyx confirms; a leg left up rings or bills.
            CommandAttempt::Transient {
                message,
                retry_after,
                ..
            } if release || entry.attempts + 1 < attempts_for(&command.action) => {
                return Disposition::Retry(message, retry_after)
            }
            // Given up: the session decides what a failed command means (drop the leg, retry
            // the bridge, ...).
            CommandAttempt::Transient {
                message, given_up, ..
            } => {
                tracing::warn!(command_id = %command.command_id, error = %message, "command given up");
                given_up
            }
        };
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
                tracing::debug!(command_id = %command.command_id, "command done");
                Disposition::Done
            }
            Err(e @ (EngineError::Quarantined(_) | EngineError::UnknownSession(_))) => {
                tracing::warn!(command_id = %command.command_id, error = %e, "command result dropped");
                Disposition::Done
            }
            // The command ran but its result is not recorded: redo it (same command_id).
            Err(e) => Disposition::Retry(format!("recording the result failed: {e}"), None),
        }
    }
}
