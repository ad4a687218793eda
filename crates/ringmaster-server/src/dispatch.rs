//! The outbox dispatcher: executes committed Telnyx commands and notifications, feeds command
//! outcomes back into their sessions, and marks each effect done. It drains after every commit
//! (the engine kicks it), when a scheduled retry comes due, and on a periodic sweep, so effects
//! committed before a crash or restart are still sent, with the same `command_id`.
//!
//! The outbox is served per [`Lane`], each lane with its own concurrency, releases first:
//! pushes waiting out a provider's `Retry-After`, or a push provider that hangs, never hold
//! back a hangup. One pass claims every lane with a free permit in one store read
//! ([`Store::claim_due_effects_all`], each lane with its own limit), so the effects of one
//! commit (a call's hangups and its `call_ended` notifications) start after one round trip,
//! not five. Backoff times are stored with each effect (`next_attempt_at`), so a restart
//! keeps them.
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
use crate::dial_limit::{DialBudget, DialLimit, DialLimiter, DialPriority};
use crate::engine::Engine;
use crate::notify::{Notifiers, NotifyError};
use crate::provider;
use crate::telemetry;
use async_trait::async_trait;
use ringmaster_core::session::{Channel, Command, Effect, Notification, NotifyEvent};
use ringmaster_core::{CallSessionId, EffectId, Timestamp};
use ringmaster_engine::dial_gate::{dial_priority, DialGate, DialSlot};
use ringmaster_engine::effects::{EffectRunner, Recorded};
use ringmaster_engine::executor::{CommandAttempt, EffectExecutor, NotifyAttempt};
use ringmaster_engine::handoff::Handed;
pub use ringmaster_engine::retry::{
    attempts_for, lane_concurrency, retry_wait, DEFAULT_LEASE, MAX_RETRY_AFTER, NOTIFY_ATTEMPTS,
    RELEASE_BACKOFF_CAP, SETUP_ATTEMPTS,
};
use ringmaster_store::{Lane, OutboxEntry, OutboxWakeups, Store, StoreError};
use ringmaster_telnyx::TelnyxClient;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

/// How long shutdown waits for effects in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Test-only fault hook, read once when a dispatcher is made: `RINGMASTER_FAULT=exit_after_claim`
/// ends the process right after its first claim of outbox rows, before sending any (the
/// crash between commit and dispatch that `tests/cluster.rs` needs another node to cover).
pub const FAULT_VAR: &str = "RINGMASTER_FAULT";
type Key = (CallSessionId, u64);

/// Executes outbox effects. Run one per process with [`Dispatcher::run`].
pub struct Dispatcher {
    store: Arc<dyn Store>,
    /// The dispatcher's decisions (retries, give-ups, stale notifications), shared with the
    /// simulator.
    runner: EffectRunner,
    executor: ServerExecutor,
    kick: Arc<Notify>,
    sweep: Duration,
    clock: Arc<dyn Clock>,
    dials: DialGate,
    /// Who this node is in the outbox's leases.
    node_id: String,
    /// How long a claim holds a row.
    lease: Duration,
    /// [`FAULT_VAR`] asked to die right after claiming rows.
    exit_after_claim: bool,
    lanes: HashMap<Lane, LaneState>,
    in_flight: Mutex<HashSet<Key>>,
    /// Fresh effects (never attempted) a drain started: their commit may have leased them to
    /// this node and its hand-off still be on the way (a drain woken by another commit read
    /// them first). A handed effect found here was started already.
    drained_fresh: Mutex<Recent>,
    /// Finished effects still in `in_flight`; released at the start of the next drain, before
    /// the outbox is read, so an effect marked done during a read is never picked up again.
    finished: Mutex<Vec<Key>>,
    /// The earliest retry or dial slot scheduled since the last drain.
    wake_at: Mutex<Option<Timestamp>>,
    /// Effects this node's engine committed and leased to it ([`Dispatcher::with_handoff`]),
    /// until the dispatcher runs.
    handed: Mutex<Option<Handed>>,
    /// The flights of handed effects, spawned by the committing tasks.
    handed_tasks: Mutex<JoinSet<()>>,
    /// The dispatcher has stopped: handed effects are left leased for the next start.
    stopping: AtomicBool,
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

/// Sends effects for real: commands to Telnyx (one attempt each), notifications through the
/// notifiers.
struct ServerExecutor {
    telnyx: TelnyxClient,
    connection_id: String,
    notifiers: Notifiers,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl EffectExecutor for ServerExecutor {
    async fn command(&self, _entry: &OutboxEntry, command: &Command) -> CommandAttempt {
        match provider::execute(&self.telnyx, &self.connection_id, command).await {
            Ok(outcome) => CommandAttempt::Answered(provider::result_input(command, outcome)),
            Err(t) => CommandAttempt::Transient {
                given_up: provider::result_input(command, Err(t.as_final)),
                message: t.message,
                retry_after: t.retry_after,
            },
        }
    }

    async fn notify(&self, entry: &OutboxEntry, n: &Notification) -> NotifyAttempt {
        let effect_id = EffectId::of(&entry.session_id, entry.seq);
        match self.notifiers.deliver(n, &effect_id).await {
            Ok(delivery) => {
                if delivery == crate::notify::Delivery::Sent {
                    record_dismissal(n, entry.created_at, self.clock.now());
                }
                NotifyAttempt::Delivered
            }
            Err(NotifyError::Temporary {
                message,
                retry_after,
            }) => NotifyAttempt::Temporary {
                message,
                retry_after,
            },
            Err(NotifyError::Permanent(e)) => NotifyAttempt::Permanent(e),
        }
    }
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

/// One effect being sent, and its outcome recorded.
type Flight = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Starts what the engine hands over, on the dispatcher (held weakly: the dispatcher holds the
/// engine, whose hand-off holds this).
struct HandedStarter(std::sync::Weak<Dispatcher>);

#[async_trait]
impl ringmaster_engine::handoff::Starter for HandedStarter {
    async fn start(&self, entries: Vec<OutboxEntry>) {
        if let Some(dispatcher) = self.0.upgrade() {
            dispatcher.start_handed(entries).await;
        }
    }
}

/// Lets effects in flight finish and record their results, so a clean stop re-sends nothing;
/// whatever is still running after the grace period is redone on the next start (with the
/// same command_id).
async fn finish(mut tasks: JoinSet<()>) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!("effects still in flight at shutdown; they will be redone");
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Outbox rows seen recently, oldest first, so they can be forgotten by age.
#[derive(Default)]
struct Recent {
    rows: HashSet<Key>,
    order: std::collections::VecDeque<(Timestamp, Key)>,
}

impl Recent {
    fn insert(&mut self, key: Key, at: Timestamp) {
        if self.rows.insert(key.clone()) {
            self.order.push_back((at, key));
        }
    }

    /// Whether `key` was seen; it is forgotten either way.
    fn take(&mut self, key: &Key) -> bool {
        self.rows.remove(key)
    }

    /// Forgets the rows seen before `cutoff`.
    fn forget_before(&mut self, cutoff: Timestamp) {
        while let Some((at, _)) = self.order.front() {
            if *at >= cutoff {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.rows.remove(&key);
            }
        }
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
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Self {
            runner: EffectRunner::new(store.clone(), engine, clock.clone()),
            store,
            executor: ServerExecutor {
                telnyx: telnyx.single_attempt(),
                connection_id,
                notifiers,
                clock: clock.clone(),
            },
            kick,
            sweep,
            clock,
            dials: DialGate::new(Arc::new(DialLimiter::new(DialLimit::default()))),
            node_id: crate::app::default_node_id(),
            lease: DEFAULT_LEASE,
            exit_after_claim: std::env::var(FAULT_VAR).is_ok_and(|f| f == "exit_after_claim"),
            lanes,
            in_flight: Mutex::new(HashSet::new()),
            drained_fresh: Mutex::default(),
            finished: Mutex::new(Vec::new()),
            wake_at: Mutex::new(None),
            handed: Mutex::new(None),
            handed_tasks: Mutex::default(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Starts the effects this node's engine hands over (its [`ringmaster_engine::Engine`]
    /// made `with_handoff` with the other end) as they are committed, without reading them
    /// back. They must be leased to this dispatcher's node: set [`Dispatcher::with_lease`]
    /// first, with the node id the hand-off was made for.
    pub fn with_handoff(self, handed: Handed) -> Self {
        debug_assert_eq!(handed.owner(), self.node_id, "a hand-off for another node");
        *lock(&self.handed) = Some(handed);
        self
    }

    /// Uses `clock` for retry times and dial slots.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.runner = self.runner.with_clock(clock.clone());
        self.executor.clock = clock.clone();
        self.clock = clock;
        self
    }

    /// Puts dials through `budget` (one per Telnyx account; shared by every node when it is a
    /// [`crate::dial_limit::SharedDialBudget`]).
    pub fn with_dial_budget(mut self, budget: Arc<dyn DialBudget>) -> Self {
        self.dials = DialGate::new(budget);
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
        self.runner = self.runner.with_ring_timeout(ring_timeout);
        self
    }

    /// Drains the outbox until `shutdown` turns true, then lets effects in flight finish (for
    /// up to a grace period; the rest stay pending in the store for the next start). From
    /// now on the engine starts what it hands over itself, in the committing task, so those
    /// effects never wait for this loop.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if let Some(handed) = lock(&self.handed).take() {
            handed.bind(Arc::new(HandedStarter(Arc::downgrade(&self))));
        }
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
            {
                let mut handed = lock(&self.handed_tasks);
                while handed.try_join_next().is_some() {}
            }
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
        self.stopping.store(true, Ordering::SeqCst);
        let handed = std::mem::take(&mut *lock(&self.handed_tasks));
        tokio::join!(finish(tasks), finish(handed));
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

    /// One pass over every lane, releases first: one claim of every lane with a free permit
    /// (one store read, not one per lane), then starts every claimed effect there is a permit
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
        let mut wanted = Vec::with_capacity(Lane::ALL.len());
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
            wanted.push((lane, u32::try_from(free + busy).unwrap_or(u32::MAX)));
        }
        let claimed = self
            .store
            .claim_due_effects_all(&wanted, now, &self.node_id, now + self.lease)
            .await?;
        self.fault_after_claim(claimed.len());
        // Rows come lane by lane, releases first; a lane out of permits skips the rest of its
        // rows (they stay leased to this node, which claims them again on its next pass).
        lock(&self.drained_fresh).forget_before(now - self.lease);
        for entry in claimed {
            let fresh = entry.attempts == 0;
            let key = (entry.session_id.clone(), entry.seq);
            if let Some(flight) = self.admit(entry, now).await {
                tasks.spawn(flight);
                if fresh {
                    lock(&self.drained_fresh).insert(key, now);
                }
            }
        }
        Ok(())
    }

    /// Starts effects the engine committed and leased to this node ([`Handed`]), without
    /// reading them back. One that finds no permit stays leased to this node: its lane is
    /// marked saturated, so the next finished effect drains it.
    async fn start_handed(self: &Arc<Self>, entries: Vec<OutboxEntry>) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        self.fault_after_claim(entries.len());
        let now = self.clock.now();
        for entry in entries {
            let key = (entry.session_id.clone(), entry.seq);
            if lock(&self.drained_fresh).take(&key) {
                continue;
            }
            if let Some(flight) = self.admit(entry, now).await {
                lock(&self.handed_tasks).spawn(flight);
            }
        }
    }

    /// Admits `entry` (claimed by this node) to its lane: the flight that sends it, to be
    /// spawned, unless it is in flight already, its lane has no permit free, or it is a dial
    /// that must wait for its rate slot.
    async fn admit(self: &Arc<Self>, entry: OutboxEntry, now: Timestamp) -> Option<Flight> {
        let lane = entry.lane;
        let state = self.lanes.get(&lane)?;
        let key = (entry.session_id.clone(), entry.seq);
        // Taken at once: a drain and a committing task may both hold this entry.
        if !lock(&self.in_flight).insert(key.clone()) {
            return None;
        }
        let unstarted = |me: &Self| {
            lock(&me.in_flight).remove(&key);
            None
        };
        let Ok(permit) = state.permits.clone().try_acquire_owned() else {
            state.saturated.store(true, Ordering::Relaxed);
            return unstarted(self);
        };
        let effect = serde_json::from_value::<Effect>(entry.effect.clone());
        let mut slot = None;
        if let Some(priority) = effect.as_ref().ok().and_then(dial_priority) {
            match self.dial_slot(&entry, priority, now).await {
                Some(granted) => slot = Some(granted),
                None => return unstarted(self),
            }
        }
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        let (lane_busy, saturated) = (state.in_flight.clone(), state.saturated.clone());
        Some(Box::pin(async move {
            if let Some(granted) = slot {
                me.dials.budget().started(granted, me.clock.now());
            }
            let freed_successor = me.dispatch(entry).await;
            drop(permit);
            lane_busy.fetch_sub(1, Ordering::Relaxed);
            lock(&me.finished).push(key);
            // A full lane may have left due effects behind. A notification that held back
            // the next one for its target says so: only then is there more to read, and a
            // read after every notification would cost a store round trip each.
            if saturated.load(Ordering::Relaxed) || freed_successor {
                me.kick.notify_one();
            }
        }))
    }

    /// Ends the process once this node holds `claimed` rows it has not sent, if
    /// [`FAULT_VAR`] asks for it.
    fn fault_after_claim(&self, claimed: usize) {
        if self.exit_after_claim && claimed > 0 {
            tracing::warn!(rows = claimed, "{FAULT_VAR}=exit_after_claim: exiting");
            std::process::exit(3);
        }
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
        match self
            .dials
            .slot(&*self.store, entry, priority, now, self.lease)
            .await
        {
            DialSlot::Go(granted) => Some(granted),
            DialSlot::Wait(until) => {
                self.schedule_wake(until);
                None
            }
        }
    }

    /// Sends `entry` once and records the outcome; true when it freed a held-back effect.
    #[tracing::instrument(skip_all, fields(call_session_id = %entry.session_id, seq = entry.seq, lane = %entry.lane))]
    async fn dispatch(&self, entry: OutboxEntry) -> bool {
        let disposition = self.runner.attempt(&entry, &self.executor).await;
        let recording = self.runner.record(&entry, disposition).await;
        telemetry::dispatched(entry.lane.as_str().to_owned(), recording.recorded.label());
        if let Recorded::Retry(at) = recording.recorded {
            self.schedule_wake(at);
        }
        recording.freed_successor
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
