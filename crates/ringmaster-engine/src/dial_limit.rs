//! The per-account dial rate limit (design.md "Provider limits"): Telnyx accepts about 30
//! dials per second per account, counted over a 5-second window. Dials over the limit are
//! queued (delayed to the next free slot), never failed: a late ring beats a missed one.
//!
//! [`DialSchedule`] is the pure sliding-window decision (times in, grant times out);
//! [`DialLimiter`] shares one schedule between dispatcher tasks and keeps counters.
//! [`DialBudget`] is what the dispatcher asks: the in-process [`DialLimiter`] for one node, or
//! [`SharedDialBudget`] over the store's [`DialLedger`] when several nodes share a PostgreSQL
//! database, so N nodes together still dial at the account's rate.
//!
//! Inbound rings go ahead of click-to-call dials: a ring always gets a slot (later than now
//! when the window is full: it queues), while a click-to-call dial takes a slot only within
//! [`LOW_PRIORITY_HORIZON`] of now and otherwise is told to ask again when the queue ahead of
//! it has shrunk. So a click-to-call burst never books the slots a ring arriving after it
//! needs; a ring waits behind at most one horizon of click-to-call dials.

use crate::clock::Clock;
use async_trait::async_trait;
use ringmaster_core::session::Action;
use ringmaster_core::Timestamp;
use ringmaster_store::{DialLedger, SlotLimit, SlotOutcome, StoreError};
use std::cmp::Reverse;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// The window Telnyx counts dials over.
pub const TELNYX_DIAL_WINDOW: Duration = Duration::from_secs(5);
/// Telnyx's default dial rate per account.
pub const DEFAULT_DIALS_PER_SEC: u32 = 30;
/// How many start times [`DialLimiter::recent_starts`] keeps.
const START_LOG: usize = 4096;

/// One dial that went out: the slot it was given and when it was actually sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialStart {
    /// The slot the limiter granted.
    pub granted: Timestamp,
    /// When the dispatcher sent it (never before `granted`).
    pub sent: Timestamp,
}

/// At most `max_dials` dials start inside any `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialLimit {
    /// Dials allowed per window (also the burst size).
    pub max_dials: u32,
    /// Length of the sliding window.
    pub window: Duration,
}

impl DialLimit {
    /// `rate` dials per second over Telnyx's 5-second window (a burst of `5 × rate`).
    pub fn per_second(rate: u32) -> Self {
        Self {
            max_dials: rate.saturating_mul(5).max(1),
            window: TELNYX_DIAL_WINDOW,
        }
    }
}

impl Default for DialLimit {
    fn default() -> Self {
        Self::per_second(DEFAULT_DIALS_PER_SEC)
    }
}

/// Sliding-window scheduling of dial start times.
///
/// Grants never decrease, and each grant is at least one window after the grant `max_dials`
/// places before it, so no window holds more than `max_dials` grants.
#[derive(Clone, Debug)]
pub struct DialSchedule {
    limit: DialLimit,
    /// The last `max_dials` grants, oldest first: only they can delay the next one.
    recent: VecDeque<Timestamp>,
}

impl DialSchedule {
    /// An empty schedule under `limit` (a limit of 0 dials is treated as 1).
    pub fn new(limit: DialLimit) -> Self {
        let limit = DialLimit {
            max_dials: limit.max_dials.max(1),
            window: limit.window,
        };
        Self {
            limit,
            recent: VecDeque::with_capacity(limit.max_dials.min(1024) as usize),
        }
    }

    /// The limit in force.
    pub fn limit(&self) -> DialLimit {
        self.limit
    }

    /// The earliest slot at or after `now`, without reserving it.
    pub fn next_slot(&self, now: Timestamp) -> Timestamp {
        let mut at = now.max(self.recent.back().copied().unwrap_or(now));
        if self.recent.len() >= self.limit.max_dials as usize {
            if let Some(&oldest) = self.recent.front() {
                at = at.max(oldest + self.limit.window);
            }
        }
        at
    }

    /// Reserves the earliest slot at or after `now` and returns when that dial may start.
    pub fn reserve(&mut self, now: Timestamp) -> Timestamp {
        let at = self.next_slot(now);
        self.recent.push_back(at);
        while self.recent.len() > self.limit.max_dials as usize {
            self.recent.pop_front();
        }
        at
    }
}

/// Which dials go first when dials queue: a ring of an inbound call (a caller is waiting on
/// the line, and the ring timeout runs) before anything a device asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DialPriority {
    /// Click-to-call legs (the calling device, then the destination).
    ClickToCall,
    /// A device rung for an inbound call.
    InboundRing,
}

impl DialPriority {
    /// The priority of a dial command: a device leg linked to the caller's leg rings for an
    /// inbound call; the calling device's leg and the destination of a click-to-call are the
    /// user's own dials. `None` for anything but a dial.
    pub fn of(action: &Action) -> Option<Self> {
        match action {
            Action::Dial {
                link_to: Some(_),
                device: Some(_),
                ..
            } => Some(Self::InboundRing),
            Action::Dial { .. } => Some(Self::ClickToCall),
            _ => None,
        }
    }
}

/// How far ahead a click-to-call dial may book a slot; beyond it, it asks again later.
pub const LOW_PRIORITY_HORIZON: Duration = Duration::from_secs(1);

/// Margin the shared budget adds to the account's window. Telnyx counts a dial when it
/// arrives, and a dial leaves a node some time after its slot (the wake-up, the claim, the
/// request); with every node dialling at the edge of the window, that lag would let a burst
/// and the next window's burst land closer than one window apart. Spacing bursts a window plus
/// this margin apart keeps arrivals within the limit while the lag stays under the margin.
pub const ARRIVAL_MARGIN: Duration = Duration::from_secs(1);

/// The answer to a dial asking for a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialGrant {
    /// Reserved: the dial may be sent at this time, never before.
    At(Timestamp),
    /// Nothing reserved (click-to-call behind a queue): ask again at this time.
    AskAgain(Timestamp),
}

/// The dial rate budget of one Telnyx account, as the dispatcher sees it. It queues, never
/// fails a dial: every answer is a time.
#[async_trait]
pub trait DialBudget: Send + Sync + std::fmt::Debug {
    /// Asks for a slot for a dial of `priority` at `now`: an inbound ring always gets one, a
    /// click-to-call dial only within [`LOW_PRIORITY_HORIZON`] (see the module docs).
    async fn request(
        &self,
        priority: DialPriority,
        now: Timestamp,
    ) -> Result<DialGrant, StoreError>;

    /// This node's counters.
    fn log(&self) -> &DialLog;

    /// Records that a dial granted `granted` was sent at `sent`.
    fn started(&self, granted: Timestamp, sent: Timestamp) {
        let mut starts = lock(&self.log().starts);
        starts.push_back(DialStart { granted, sent });
        if starts.len() > START_LOG {
            starts.pop_front();
        }
    }

    /// How many dials had to wait for a slot since the start (on this node).
    fn queued(&self) -> u64 {
        self.log().queued.load(Ordering::Relaxed)
    }

    /// The most recent dials this node sent (slots and send times by its clock), in
    /// recording order.
    fn recent_starts(&self) -> Vec<DialStart> {
        lock(&self.log().starts).iter().copied().collect()
    }
}

/// What a node's dial budget counts, for `/readyz` and `/metrics`.
#[derive(Debug, Default)]
pub struct DialLog {
    queued: AtomicU64,
    starts: Mutex<VecDeque<DialStart>>,
}

/// Whether a click-to-call dial may take `slot` when asked at `now`.
fn within_horizon(slot: Timestamp, now: Timestamp) -> bool {
    slot <= now + LOW_PRIORITY_HORIZON
}

/// When a click-to-call dial told to wait for `slot` should ask again: as soon as the slot is
/// inside its horizon.
fn ask_again_at(slot: Timestamp, now: Timestamp) -> Timestamp {
    now.max(slot - LOW_PRIORITY_HORIZON)
}

/// The dispatcher's shared dial limiter: one per Telnyx account.
#[derive(Debug)]
pub struct DialLimiter {
    schedule: Mutex<DialSchedule>,
    log: DialLog,
    /// Dials waiting in [`DialLimiter::acquire`], highest priority first, then oldest.
    waiting: Mutex<BTreeSet<(Reverse<DialPriority>, u64)>>,
    next_ticket: AtomicU64,
    /// Woken whenever a slot is taken or a waiter leaves, so the next in line re-checks.
    turn: Notify,
}

/// Takes a waiter out of the line even if its future is dropped (a cancelled dispatch).
struct Ticket<'a> {
    limiter: &'a DialLimiter,
    key: (Reverse<DialPriority>, u64),
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        lock(&self.limiter.waiting).remove(&self.key);
        self.limiter.turn.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DialLimiter {
    /// A limiter with nothing granted yet.
    pub fn new(limit: DialLimit) -> Self {
        Self {
            schedule: Mutex::new(DialSchedule::new(limit)),
            log: DialLog::default(),
            waiting: Mutex::new(BTreeSet::new()),
            next_ticket: AtomicU64::new(0),
            turn: Notify::new(),
        }
    }

    /// Waits for a dial slot, in priority order: a waiting inbound ring is granted the next
    /// free slot before any click-to-call dial that queued earlier. Returns the granted time
    /// (by `clock`).
    pub async fn acquire(&self, priority: DialPriority, clock: &dyn Clock) -> Timestamp {
        let key = (
            Reverse(priority),
            self.next_ticket.fetch_add(1, Ordering::Relaxed),
        );
        lock(&self.waiting).insert(key);
        let _ticket = Ticket { limiter: self, key };
        let mut waited = false;
        loop {
            let turn = self.turn.notified();
            tokio::pin!(turn);
            turn.as_mut().enable();
            let now = clock.now();
            let wait = {
                let mut waiting = lock(&self.waiting);
                if waiting.first() == Some(&key) {
                    let mut schedule = lock(&self.schedule);
                    let at = schedule.next_slot(now);
                    if at <= now {
                        schedule.reserve(now);
                        waiting.remove(&key);
                        drop((schedule, waiting));
                        self.turn.notify_waiters();
                        if waited {
                            self.log.queued.fetch_add(1, Ordering::Relaxed);
                        }
                        return now;
                    }
                    Some(at.saturating_since(now))
                } else {
                    None
                }
            };
            waited = true;
            match wait {
                Some(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut turn => {}
                    }
                }
                None => turn.await,
            }
        }
    }

    /// Dials waiting in [`DialLimiter::acquire`] now.
    pub fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }

    /// The limit in force.
    pub fn limit(&self) -> DialLimit {
        lock(&self.schedule).limit()
    }

    /// Reserves a dial slot for a dial asked for at `now`; returns when it may start. A slot
    /// later than `now` counts as a queued dial.
    pub fn reserve(&self, now: Timestamp) -> Timestamp {
        let at = lock(&self.schedule).reserve(now);
        if at > now {
            self.log.queued.fetch_add(1, Ordering::Relaxed);
        }
        at
    }
}

#[async_trait]
impl DialBudget for DialLimiter {
    async fn request(
        &self,
        priority: DialPriority,
        now: Timestamp,
    ) -> Result<DialGrant, StoreError> {
        if priority == DialPriority::ClickToCall {
            let next = lock(&self.schedule).next_slot(now);
            if !within_horizon(next, now) {
                return Ok(DialGrant::AskAgain(ask_again_at(next, now)));
            }
        }
        Ok(DialGrant::At(self.reserve(now)))
    }

    fn log(&self) -> &DialLog {
        &self.log
    }
}

/// The dial budget every node on one database shares: slots come from the store's
/// [`DialLedger`], keyed by the Telnyx connection, so any number of nodes together grant at
/// most the limit in any window. Nodes must agree on the limit and keep their clocks in step
/// (NTP): a slot is a time on the granting node's clock, and the dial is sent by that clock.
#[derive(Debug)]
pub struct SharedDialBudget {
    ledger: Arc<dyn DialLedger>,
    account: String,
    limit: DialLimit,
    log: DialLog,
}

impl SharedDialBudget {
    /// The budget of the account behind `account` (the Telnyx connection id) under `limit`.
    pub fn new(ledger: Arc<dyn DialLedger>, account: impl Into<String>, limit: DialLimit) -> Self {
        let account = account.into();
        Self {
            ledger,
            // Every node without a connection id (the sandbox) shares one budget.
            account: if account.trim().is_empty() {
                "default".to_owned()
            } else {
                account
            },
            limit,
            log: DialLog::default(),
        }
    }
}

#[async_trait]
impl DialBudget for SharedDialBudget {
    async fn request(
        &self,
        priority: DialPriority,
        now: Timestamp,
    ) -> Result<DialGrant, StoreError> {
        let not_after = match priority {
            DialPriority::InboundRing => Timestamp::from_millis(u64::MAX),
            DialPriority::ClickToCall => now + LOW_PRIORITY_HORIZON,
        };
        let limit = SlotLimit {
            max_dials: self.limit.max_dials,
            window: self.limit.window + ARRIVAL_MARGIN,
        };
        Ok(
            match self
                .ledger
                .reserve(&self.account, limit, now, not_after)
                .await?
            {
                SlotOutcome::Granted(at) => {
                    if at > now {
                        self.log.queued.fetch_add(1, Ordering::Relaxed);
                    }
                    DialGrant::At(at)
                }
                SlotOutcome::Busy(next) => DialGrant::AskAgain(ask_again_at(next, now)),
            },
        )
    }

    fn log(&self) -> &DialLog {
        &self.log
    }
}

/// The largest number of `grants` inside any half-open interval of length `window`.
pub fn busiest_window(grants: &[Timestamp], window: Duration) -> usize {
    let mut sorted = grants.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[start] + window <= sorted[end] {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Timestamp {
        Timestamp::from_millis(v)
    }

    fn limit(max_dials: u32, window_ms: u64) -> DialLimit {
        DialLimit {
            max_dials,
            window: Duration::from_millis(window_ms),
        }
    }

    #[test]
    fn a_burst_up_to_the_limit_goes_at_once_and_the_rest_waits_for_later_windows() {
        let mut s = DialSchedule::new(limit(3, 1000));
        let grants: Vec<u64> = (0..8).map(|_| s.reserve(ms(10_000)).as_millis()).collect();
        assert_eq!(
            grants,
            [10_000, 10_000, 10_000, 11_000, 11_000, 11_000, 12_000, 12_000]
        );
    }

    #[test]
    fn slots_free_up_as_the_window_slides() {
        let mut s = DialSchedule::new(limit(2, 1000));
        assert_eq!(s.reserve(ms(0)), ms(0));
        assert_eq!(s.reserve(ms(400)), ms(400));
        // Two dials inside [0, 1000): the third waits until the first leaves the window.
        assert_eq!(s.reserve(ms(500)), ms(1000));
        assert_eq!(s.reserve(ms(5000)), ms(5000));
        assert_eq!(s.reserve(ms(5000)), ms(5000));
        assert_eq!(s.reserve(ms(5000)), ms(6000));
    }

    #[test]
    fn no_window_ever_holds_more_than_the_limit() {
        let mut s = DialSchedule::new(limit(4, 500));
        let mut grants = Vec::new();
        // Irregular arrivals, including a clock that steps back.
        for (i, t) in [
            0u64, 1, 1, 2, 3, 100, 90, 600, 601, 602, 603, 604, 605, 2000,
        ]
        .iter()
        .enumerate()
        {
            let g = s.reserve(ms(*t));
            assert!(g >= ms(*t), "dial {i} granted before it was asked for");
            grants.push(g);
        }
        assert!(grants.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(busiest_window(&grants, Duration::from_millis(500)), 4);
    }

    #[test]
    fn the_default_is_thirty_per_second_over_five_seconds() {
        assert_eq!(DialLimit::default(), limit(150, 5000));
        assert_eq!(DialLimit::per_second(2), limit(10, 5000));
    }

    #[test]
    fn the_limiter_counts_queued_dials_and_logs_starts() {
        let l = DialLimiter::new(limit(2, 1000));
        let grants: Vec<u64> = (0..5).map(|_| l.reserve(ms(0)).as_millis()).collect();
        assert_eq!(grants, [0, 0, 1000, 1000, 2000]);
        assert_eq!(l.queued(), 3);
        l.started(ms(1000), ms(1007));
        assert_eq!(
            l.recent_starts(),
            [DialStart {
                granted: ms(1000),
                sent: ms(1007)
            }]
        );
    }

    #[tokio::test]
    async fn a_queued_inbound_ring_goes_before_click_to_call_that_queued_earlier() {
        use crate::clock::SystemClock;
        use std::sync::Arc;
        let limiter = Arc::new(DialLimiter::new(limit(1, 300)));
        // Takes the only slot of the window: everything after queues.
        limiter
            .acquire(DialPriority::ClickToCall, &SystemClock)
            .await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let spawn = |name: &'static str, priority| {
            let (limiter, tx) = (limiter.clone(), tx.clone());
            tokio::spawn(async move {
                limiter.acquire(priority, &SystemClock).await;
                tx.send(name).unwrap();
            })
        };
        let mut tasks = vec![
            spawn("click-1", DialPriority::ClickToCall),
            spawn("click-2", DialPriority::ClickToCall),
        ];
        while limiter.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        tasks.push(spawn("inbound", DialPriority::InboundRing));
        let order: Vec<&str> = [rx.recv().await, rx.recv().await, rx.recv().await]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(order, ["inbound", "click-1", "click-2"]);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(limiter.queued(), 3);
        assert_eq!(limiter.waiting(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_line() {
        use crate::clock::SystemClock;
        let limiter = DialLimiter::new(limit(1, 200));
        limiter
            .acquire(DialPriority::ClickToCall, &SystemClock)
            .await;
        let cancelled = tokio::time::timeout(
            Duration::from_millis(10),
            limiter.acquire(DialPriority::InboundRing, &SystemClock),
        )
        .await;
        assert!(cancelled.is_err());
        assert_eq!(limiter.waiting(), 0);
        // The next dial still gets the next slot instead of waiting behind a ghost.
        limiter
            .acquire(DialPriority::ClickToCall, &SystemClock)
            .await;
    }

    #[tokio::test]
    async fn click_to_call_books_only_a_near_slot_and_rings_queue() {
        let l = DialLimiter::new(limit(2, 5000));
        let ask = |p, at| l.request(p, ms(at));
        assert_eq!(
            ask(DialPriority::ClickToCall, 0).await.unwrap(),
            DialGrant::At(ms(0))
        );
        assert_eq!(
            ask(DialPriority::ClickToCall, 0).await.unwrap(),
            DialGrant::At(ms(0))
        );
        // The next slot is 5 s away: beyond the horizon, so nothing is booked.
        assert_eq!(
            ask(DialPriority::ClickToCall, 0).await.unwrap(),
            DialGrant::AskAgain(ms(4000))
        );
        assert_eq!(
            ask(DialPriority::InboundRing, 0).await.unwrap(),
            DialGrant::At(ms(5000))
        );
        // Asking again, the click-to-call dial finds the ring that came after it ahead.
        assert_eq!(
            ask(DialPriority::ClickToCall, 4000).await.unwrap(),
            DialGrant::At(ms(5000))
        );
        assert_eq!(
            ask(DialPriority::InboundRing, 4000).await.unwrap(),
            DialGrant::At(ms(10_000))
        );
        assert_eq!(l.queued(), 3);
    }

    #[test]
    fn a_ring_linked_to_the_caller_is_inbound_and_the_rest_is_click_to_call() {
        use ringmaster_core::session::ClientStateRef;
        use ringmaster_core::{CallControlId, CallSessionId, DeviceId};
        let dial = |link: bool, device: bool| Action::Dial {
            to: "sip:d@sip.telnyx.com".into(),
            from: "+15550001111".into(),
            timeout_secs: 30,
            client_state: ClientStateRef {
                session: CallSessionId::new("s"),
                device: device.then(|| DeviceId::new("d")),
                leg: "device".into(),
                direction: None,
            },
            link_to: link.then(|| CallControlId::new("v3:caller")),
            device: device.then(|| DeviceId::new("d")),
        };
        assert_eq!(
            DialPriority::of(&dial(true, true)),
            Some(DialPriority::InboundRing)
        );
        // The calling device's leg, then the destination (linked, no device).
        assert_eq!(
            DialPriority::of(&dial(false, true)),
            Some(DialPriority::ClickToCall)
        );
        assert_eq!(
            DialPriority::of(&dial(true, false)),
            Some(DialPriority::ClickToCall)
        );
        let hangup = Action::Hangup {
            ccid: CallControlId::new("v3:x"),
        };
        assert_eq!(DialPriority::of(&hangup), None);
    }

    #[test]
    fn busiest_window_counts_half_open_intervals() {
        let g = [ms(0), ms(999), ms(1000), ms(1001)];
        assert_eq!(busiest_window(&g, Duration::from_millis(1000)), 3);
        assert_eq!(busiest_window(&[], Duration::from_millis(1000)), 0);
    }
}
