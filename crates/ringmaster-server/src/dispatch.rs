//! The outbox dispatcher: executes committed Telnyx commands and notifications, feeds command
//! outcomes back into their sessions, and marks each effect done. It drains after every commit
//! (the engine kicks it), when a scheduled retry comes due, and on a periodic sweep, so effects
//! committed before a crash or restart are still sent, with the same `command_id`.
//!
//! The outbox is read per [`Lane`], each lane with its own concurrency, releases first: pushes
//! waiting out a provider's `Retry-After`, or a push provider that hangs, never hold back a
//! hangup. Backoff times are stored with each effect (`next_attempt_at`), so a restart keeps
//! them.
//!
//! This is the only retry layer: the Telnyx and push clients make one attempt per call.
//! - Releases (hangup, reject) are retried, with capped backoff, until Telnyx answers (success,
//!   90018 "already ended", or a refusal the session is told about), or until the leg's hangup
//!   webhook shows there is nothing left to release.
//! - Setup commands (dial, answer) and the rest give up after a few attempts, a bridge after
//!   one (the session retries bridges itself); the give-up goes to the session as the
//!   command's failed result, so it cleans up.
//! - Notifications give up after a few attempts; an `incoming_call` older than the ring
//!   timeout is dropped as stale. One target's notifications go out in commit order (the store
//!   holds back an effect while an earlier one for the same target is pending).
//!
//! Dials go through the account's [`DialBudget`] first, inbound rings ahead of click-to-call
//! dials. A dial waiting for its rate slot is not in flight: it is deferred in the store until
//! its slot and takes no setup permit, and it is never sent before its slot.
//!
//! Several nodes can share one outbox. Rows are claimed, not just read: each claim leases the
//! row to this node ([`Dispatcher::with_lease`]) so no other node sends it meanwhile; finishing,
//! failing or deferring it ends the lease. A node that dies leaves its rows leased until the
//! lease runs out; the next drain of any node (at most one sweep later) takes them. So a dead
//! node's effects go out within lease + sweep, once, with the same `command_id`. Other nodes'
//! commits wake this dispatcher through the store's [`Store::outbox_wakeups`] where it has
//! them (PostgreSQL LISTEN/NOTIFY); the sweep is the fallback.

use crate::clock::{Clock, SystemClock};
use crate::dial_limit::{DialBudget, DialGrant, DialLimit, DialLimiter, DialPriority};
use crate::engine::{Applied, Engine, EngineError};
use crate::notify::{Notifiers, NotifyError};
use crate::provider;
use crate::telemetry;
use ringmaster_core::session::{
    Action, Channel, Command, Effect, Input, Notification, NotifyEvent,
};
use ringmaster_core::{CallSessionId, EffectId, Timestamp};
use ringmaster_store::{Lane, OutboxEntry, OutboxWakeups, Store, StoreError};
use ringmaster_telnyx::TelnyxClient;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

/// Effects executed at the same time, per lane.
pub fn lane_concurrency(lane: Lane) -> usize {
    match lane {
        Lane::Release | Lane::Setup => 32,
        Lane::Realtime | Lane::Push => 64,
        Lane::Other => 8,
        // The webhook relay's lane: never dispatched here.
        Lane::Host => 0,
    }
}

/// Attempts before a dial, answer, speak or record command is given up and reported to its
/// session.
pub const SETUP_ATTEMPTS: u32 = 4;

/// Attempts the dispatcher gives a non-release command. A bridge gets one: the session itself
/// retries a failed bridge once (with a new command, after `bridge_retry_delay_ms`), and two
/// layers retrying the same thing is what this module exists to prevent.
pub fn attempts_for(action: &Action) -> u32 {
    match action {
        Action::Bridge { .. } => 1,
        _ => SETUP_ATTEMPTS,
    }
}
/// Attempts before a notification is given up.
pub const NOTIFY_ATTEMPTS: u32 = 8;
/// Wait before the first retry; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(250);
/// Longest backoff between two tries of a release (it is retried until confirmed).
pub const RELEASE_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Longest backoff between two tries of anything else.
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Longest provider `Retry-After` honoured; a longer one is capped so the effect is still
/// retried (and eventually given up) instead of parked for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Ring timeout assumed for stale `incoming_call` detection until told otherwise.
const DEFAULT_RING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long shutdown waits for effects in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a claimed outbox row stays this node's ([`Dispatcher::with_lease`]).
///
/// It must outlast one attempt, or another node could send the same effect while this one
/// still waits for the answer: a Telnyx command is one request under the client's 5 s
/// timeout plus recording its result, a push one request under the 10 s APNs/FCM timeout
/// (plus an FCM OAuth token fetch of the same bound), a WebSocket publish is local. 30 s covers
/// the worst of these with room to spare; a longer lease only delays a dead node's rows.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Test-only fault hook, read once when a dispatcher is made: `RINGMASTER_FAULT=exit_after_claim`
/// ends the process right after its first claim of outbox rows, before sending any (the
/// crash between commit and dispatch that `tests/cluster.rs` needs another node to cover).
pub const FAULT_VAR: &str = "RINGMASTER_FAULT";
/// Wait before asking again after the dial budget could not be read.
const DIAL_BUDGET_RETRY: Duration = Duration::from_secs(1);

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
    dials: Arc<dyn DialBudget>,
    ring_timeout: Duration,
    /// Who this node is in the outbox's leases.
    node_id: String,
    /// How long a claim holds a row.
    lease: Duration,
    /// [`FAULT_VAR`] asked to die right after claiming rows.
    exit_after_claim: bool,
    lanes: HashMap<Lane, LaneState>,
    in_flight: Mutex<HashSet<Key>>,
    /// Finished effects still in `in_flight`; released at the start of the next drain, before
    /// the outbox is read, so an effect marked done during a read is never picked up again.
    finished: Mutex<Vec<Key>>,
    /// Dial slots granted to deferred dials, used when they come due (not granted again). A
    /// slot whose row another node took meanwhile is dropped after a lease.
    dial_slots: Mutex<HashMap<Key, Timestamp>>,
    /// The earliest retry or dial slot scheduled since the last drain.
    wake_at: Mutex<Option<Timestamp>>,
}

struct LaneState {
    permits: Arc<Semaphore>,
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// The last drain left due effects behind for want of a permit: finishing one re-drains.
    saturated: Arc<AtomicBool>,
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

/// The backoff before the next try of an effect that failed `attempts` times before this
/// failure: exponential from [`RETRY_BASE`] up to `cap`, with jitter over its upper half (so
/// effects that failed together spread out), and never less than the provider asked for
/// (`retry_after`, capped at [`MAX_RETRY_AFTER`]).
pub fn retry_wait(
    attempts: u32,
    retry_after: Option<Duration>,
    cap: Duration,
    rng: &mut impl rand::Rng,
) -> Duration {
    let backoff = RETRY_BASE.saturating_mul(1 << attempts.min(16)).min(cap);
    let half = backoff / 2;
    let jitter = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    let backoff = half + Duration::from_millis(rng.gen_range(0..=jitter));
    retry_after.map_or(backoff, |ra| backoff.max(ra.min(MAX_RETRY_AFTER)))
}

/// Times a delivered dismissal (`call_ended`) from its commit, per channel.
fn record_dismissal(n: &Notification, committed: Timestamp, now: Timestamp) {
    if matches!(n.event, NotifyEvent::CallEnded { .. }) {
        let channel = match n.channel {
            Channel::WebSocket => "websocket",
            Channel::Push { .. } => "push",
        };
        telemetry::dismissal_delivered(channel, committed, now);
    }
}

/// The priority of a dial command; `None` for every other effect.
fn dial_priority(effect: &Effect) -> Option<DialPriority> {
    match effect {
        Effect::Telnyx(c) => DialPriority::of(&c.action),
        _ => None,
    }
}

/// The next wake-up from another node; never, when the store gives none.
async fn next_wakeup(wakeups: &mut Option<OutboxWakeups>) {
    match wakeups {
        Some(w) => {
            if w.recv().await.is_none() {
                tracing::warn!("wake-ups from other nodes stopped; polling only");
                *wakeups = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

impl Dispatcher {
    /// A dispatcher; `kick` is the engine's wake-up signal, `sweep` the idle re-check period.
    /// It reads the system clock, dials at Telnyx's default rate in-process, assumes a 60 s
    /// ring timeout and leases rows for [`DEFAULT_LEASE`] as [`crate::app::default_node_id`]
    /// until told otherwise ([`Dispatcher::with_clock`], [`Dispatcher::with_dial_budget`],
    /// [`Dispatcher::with_ring_timeout`], [`Dispatcher::with_lease`]). `telnyx` is used with
    /// its retries off: the dispatcher is the retry layer.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Engine,
        telnyx: TelnyxClient,
        connection_id: String,
        notifiers: Notifiers,
        kick: Arc<Notify>,
        sweep: Duration,
    ) -> Self {
        let lanes = Lane::ALL
            .into_iter()
            .map(|lane| {
                let state = LaneState {
                    permits: Arc::new(Semaphore::new(lane_concurrency(lane))),
                    in_flight: Arc::default(),
                    saturated: Arc::default(),
                };
                (lane, state)
            })
            .collect();
        Self {
            store,
            engine,
            telnyx: telnyx.single_attempt(),
            connection_id,
            notifiers,
            kick,
            sweep,
            clock: Arc::new(SystemClock),
            dials: Arc::new(DialLimiter::new(DialLimit::default())),
            ring_timeout: DEFAULT_RING_TIMEOUT,
            node_id: crate::app::default_node_id(),
            lease: DEFAULT_LEASE,
            exit_after_claim: std::env::var(FAULT_VAR).is_ok_and(|f| f == "exit_after_claim"),
            lanes,
            in_flight: Mutex::new(HashSet::new()),
            finished: Mutex::new(Vec::new()),
            dial_slots: Mutex::new(HashMap::new()),
            wake_at: Mutex::new(None),
        }
    }

    /// Uses `clock` for retry times and dial slots.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Puts dials through `budget` (one per Telnyx account; shared by every node when it is a
    /// [`crate::dial_limit::SharedDialBudget`]).
    pub fn with_dial_budget(mut self, budget: Arc<dyn DialBudget>) -> Self {
        self.dials = budget;
        self
    }

    /// Claims outbox rows as `node_id` for `lease` at a time (longer than any one attempt:
    /// see [`DEFAULT_LEASE`]). The sweep is cut to half the lease at most, so rows a dead
    /// node leased are picked up soon after the lease runs out.
    pub fn with_lease(mut self, node_id: impl Into<String>, lease: Duration) -> Self {
        self.node_id = node_id.into();
        self.lease = lease;
        self.sweep = self.sweep.min(lease / 2);
        self
    }

    /// An `incoming_call` notification older than `ring_timeout` is dropped as stale.
    pub fn with_ring_timeout(mut self, ring_timeout: Duration) -> Self {
        self.ring_timeout = ring_timeout;
        self
    }

    /// Drains the outbox until `shutdown` turns true, then lets effects in flight finish (for
    /// up to a grace period; the rest stay pending in the store for the next start).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        let mut wakeups = match self.store.outbox_wakeups().await {
            Ok(wakeups) => wakeups,
            Err(e) => {
                tracing::warn!(error = %e, "no wake-ups from other nodes; polling only");
                None
            }
        };
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.drain(&mut tasks).await {
                tracing::warn!(error = %e, "outbox read failed");
            }
            while tasks.try_join_next().is_some() {}
            let wait = lock(&self.wake_at).take().map_or(self.sweep, |at| {
                at.saturating_since(self.clock.now()).min(self.sweep)
            });
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = next_wakeup(&mut wakeups) => {}
                _ = tokio::time::sleep(wait) => {}
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

    /// Who this node is in the outbox's leases.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    fn schedule_wake(&self, at: Timestamp) {
        let mut wake = lock(&self.wake_at);
        if wake.is_none_or(|w| at < w) {
            *wake = Some(at);
        }
    }

    /// One pass over every lane, releases first: starts every due effect there is a permit
    /// for.
    async fn drain(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Result<(), StoreError> {
        {
            let finished = std::mem::take(&mut *lock(&self.finished));
            let mut in_flight = lock(&self.in_flight);
            for key in finished {
                in_flight.remove(&key);
            }
        }
        let now = self.clock.now();
        for lane in Lane::ALL {
            let state = &self.lanes[&lane];
            state.saturated.store(false, Ordering::Relaxed);
            let free = state.permits.available_permits();
            if free == 0 {
                state.saturated.store(true, Ordering::Relaxed);
                continue;
            }
            // Effects in flight are still pending (and still ours to claim): read past them.
            let busy = state.in_flight.load(Ordering::Relaxed);
            let limit = u32::try_from(free + busy).unwrap_or(u32::MAX);
            let claimed = self
                .store
                .claim_due_effects(lane, now, limit, &self.node_id, now + self.lease)
                .await?;
            if self.exit_after_claim && !claimed.is_empty() {
                tracing::warn!(
                    rows = claimed.len(),
                    "{FAULT_VAR}=exit_after_claim: exiting"
                );
                std::process::exit(3);
            }
            for entry in claimed {
                let key = (entry.session_id.clone(), entry.seq);
                if lock(&self.in_flight).contains(&key) {
                    continue;
                }
                let Ok(permit) = state.permits.clone().try_acquire_owned() else {
                    state.saturated.store(true, Ordering::Relaxed);
                    break;
                };
                let effect = serde_json::from_value::<Effect>(entry.effect.clone());
                let mut slot = None;
                if let Some(priority) = effect.as_ref().ok().and_then(dial_priority) {
                    match self.dial_slot(&entry, priority, now).await {
                        Some(granted) => slot = Some(granted),
                        None => continue,
                    }
                }
                lock(&self.in_flight).insert(key.clone());
                state.in_flight.fetch_add(1, Ordering::Relaxed);
                let me = self.clone();
                let (lane_busy, saturated) = (state.in_flight.clone(), state.saturated.clone());
                tasks.spawn(async move {
                    if let Some(granted) = slot {
                        me.dials.started(granted, me.clock.now());
                    }
                    me.dispatch(entry, effect).await;
                    drop(permit);
                    lane_busy.fetch_sub(1, Ordering::Relaxed);
                    lock(&me.finished).push(key);
                    // A notification may have held back the next one for its target; a full
                    // lane may have left due effects behind.
                    if saturated.load(Ordering::Relaxed)
                        || matches!(lane, Lane::Realtime | Lane::Push)
                    {
                        me.kick.notify_one();
                    }
                });
            }
        }
        Ok(())
    }

    /// The dial slot this dial may use now, or `None` when it has to wait: then it is deferred
    /// in the store until its slot, or until it should ask again (not in flight, holding no
    /// permit).
    async fn dial_slot(
        &self,
        entry: &OutboxEntry,
        priority: DialPriority,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let key = (entry.session_id.clone(), entry.seq);
        let held = {
            let mut slots = lock(&self.dial_slots);
            let stale = now - self.lease;
            slots.retain(|_, at| *at >= stale);
            slots.remove(&key)
        };
        let (reserved, until) = match held {
            Some(at) => (true, at),
            None => match self.dials.request(priority, now).await {
                Ok(DialGrant::At(at)) => (true, at),
                Ok(DialGrant::AskAgain(at)) => (false, at),
                Err(e) => {
                    tracing::warn!(call_session_id = %entry.session_id, error = %e, "dial budget unavailable; dial waits");
                    (false, now + DIAL_BUDGET_RETRY)
                }
            },
        };
        if reserved && until <= now {
            return Some(until);
        }
        if reserved {
            lock(&self.dial_slots).insert(key, until);
        }
        tracing::info!(
            call_session_id = %entry.session_id,
            seq = entry.seq,
            ?priority,
            slot_reserved = reserved,
            wait = ?until.saturating_since(now),
            queued_dials = self.dials.queued(),
            "dial rate limit reached; dial queued"
        );
        if let Err(e) = self
            .store
            .defer_effect(&entry.session_id, entry.seq, until)
            .await
        {
            tracing::warn!(call_session_id = %entry.session_id, error = %e, "could not defer a dial");
        }
        self.schedule_wake(until);
        None
    }

    #[tracing::instrument(skip_all, fields(call_session_id = %entry.session_id, seq = entry.seq, lane = %entry.lane))]
    async fn dispatch(&self, entry: OutboxEntry, effect: Result<Effect, serde_json::Error>) {
        let disposition = match effect {
            Ok(Effect::Telnyx(command)) => self.command(&entry, command).await,
            Ok(Effect::Notify(n)) => {
                let incoming = matches!(n.event, NotifyEvent::IncomingCall { .. });
                if incoming && self.is_stale(&entry, self.clock.now()) {
                    tracing::info!(event = n.event.name(), "stale incoming_call dropped");
                    Disposition::Done
                } else {
                    let effect_id = EffectId::of(&entry.session_id, entry.seq);
                    match self.notifiers.deliver(&n, &effect_id).await {
                        Ok(delivery) => {
                            if delivery == crate::notify::Delivery::Sent {
                                record_dismissal(&n, entry.created_at, self.clock.now());
                            }
                            Disposition::Done
                        }
                        Err(NotifyError::Temporary {
                            message,
                            retry_after,
                        }) => Disposition::Retry(message, retry_after),
                        Err(NotifyError::Permanent(e)) => Disposition::Abandon(e),
                    }
                }
            }
            Ok(other) => Disposition::Abandon(format!(
                "effect {:?} does not belong in the outbox",
                std::mem::discriminant(&other)
            )),
            Err(e) => Disposition::Abandon(format!("unreadable effect: {e}")),
        };
        self.record(&entry, disposition).await;
    }

    /// Whether an `incoming_call` committed with `entry` is past the ring timeout at `at`.
    fn is_stale(&self, entry: &OutboxEntry, at: Timestamp) -> bool {
        entry.created_at + self.ring_timeout <= at
    }

    async fn record(&self, entry: &OutboxEntry, disposition: Disposition) {
        let (sid, seq) = (&entry.session_id, entry.seq);
        let now = self.clock.now();
        let lane = entry.lane.as_str().to_owned();
        let result = match disposition {
            Disposition::Done => {
                telemetry::dispatched(lane, "done");
                self.store.mark_effect_done(sid, seq).await
            }
            Disposition::Retry(e, retry_after) => {
                let release = entry.lane == Lane::Release;
                let cap = if release {
                    RELEASE_BACKOFF_CAP
                } else {
                    BACKOFF_CAP
                };
                let wait = retry_wait(entry.attempts, retry_after, cap, &mut rand::thread_rng());
                let notification = matches!(entry.lane, Lane::Realtime | Lane::Push);
                let stale = notification
                    && serde_json::from_value::<Effect>(entry.effect.clone()).is_ok_and(|fx| {
                        matches!(fx, Effect::Notify(n) if matches!(n.event, NotifyEvent::IncomingCall { .. }))
                    })
                    && self.is_stale(entry, now + wait);
                if notification && (stale || entry.attempts + 1 >= NOTIFY_ATTEMPTS) {
                    tracing::warn!(error = %e, attempts = entry.attempts + 1, stale, "notification given up");
                    telemetry::dispatched(lane, "abandoned");
                    self.store.mark_effect_abandoned(sid, seq, &e).await
                } else {
                    tracing::warn!(error = %e, attempt = entry.attempts + 1, ?wait, ?retry_after, "effect failed; will retry");
                    telemetry::dispatched(lane, "retry");
                    self.schedule_wake(now + wait);
                    self.store
                        .mark_effect_failed(sid, seq, &e, now + wait)
                        .await
                }
            }
            Disposition::Abandon(e) => {
                tracing::error!(error = %e, "effect abandoned");
                telemetry::dispatched(lane, "abandoned");
                self.store.mark_effect_abandoned(sid, seq, &e).await
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record the effect's outcome; it will be redone");
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

    async fn command(&self, entry: &OutboxEntry, command: Command) -> Disposition {
        let release = provider::retry_transient(&command.action);
        if release && entry.attempts > 0 && self.release_confirmed(entry, &command).await {
            tracing::info!(command_id = %command.command_id, "leg already hung up; release confirmed");
            return Disposition::Done;
        }
        let outcome = match provider::execute(&self.telnyx, &self.connection_id, &command).await {
            Ok(outcome) => outcome,
            // Releases are retried until Telnyx confirms; a leg left up rings or bills.
            Err(t) if release => return Disposition::Retry(t.message, t.retry_after),
            Err(t) if entry.attempts + 1 < attempts_for(&command.action) => {
                return Disposition::Retry(t.message, t.retry_after)
            }
            // Given up: the session decides what a failed command means (drop the leg, retry
            // the bridge, ...).
            Err(t) => {
                tracing::warn!(command_id = %command.command_id, error = %t.message, "command given up");
                Err(t.as_final)
            }
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
            Err(e @ (EngineError::Quarantined(_) | EngineError::UnknownSession(_))) => {
                tracing::warn!(command_id = %command.command_id, error = %e, "command result dropped");
                Disposition::Done
            }
            // The command ran but its result is not recorded: redo it (same command_id).
            Err(e) => Disposition::Retry(format!("recording the result failed: {e}"), None),
        }
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
