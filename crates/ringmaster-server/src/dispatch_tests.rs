//! Dispatcher behaviour under a manual clock: lanes, starvation, one retry layer, releases
//! retried until confirmed, setup give-ups reported to the session, stale and ordered
//! notifications, queued dials, leases held by other nodes, inbound rings ahead of
//! click-to-call dials.

use super::*;
use crate::clock::ManualClock;
use crate::engine::{Created, Step};
use crate::notify::Notifier;
use async_trait::async_trait;
use rand::SeedableRng as _;
use ringmaster_core::session::{
    Action, Channel, ClientStateRef, HangupCause, HangupSource, Input, NewInbound, Notification,
    ProviderEvent, ProviderEventKind, RingTarget, Session, SessionConfig, SessionStatus,
};
use ringmaster_core::{CallControlId, DeviceId, DismissReason, TenantId, UserId};
use ringmaster_engine::retry::RETRY_BASE;
use ringmaster_store::MemoryStore;
use ringmaster_telnyx::emulator::FailNext;
use ringmaster_telnyx::emulator::Faults;
use ringmaster_telnyx::{ClientConfig, Emulator, EmulatorConfig, EmulatorHandle};
use std::sync::atomic::AtomicUsize;

/// What a test notifier does with each notification.
#[derive(Clone, Copy)]
enum Behaviour {
    Deliver,
    /// Fails the first `n` deliveries with this `Retry-After`, then delivers.
    FailFirst(usize, Duration),
    /// Never answers (a provider that hangs).
    Hang,
    /// Delivers after this long, in real time.
    Slow(Duration),
}

/// Records every notification it is handed, in order.
struct Recorder {
    behaviour: Behaviour,
    calls: AtomicUsize,
    seen: Mutex<Vec<String>>,
}

impl Recorder {
    fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour,
            calls: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<String> {
        lock(&self.seen).clone()
    }
}

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, n: &Notification, _: &EffectId) -> Result<(), NotifyError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let target = match &n.channel {
            Channel::Push { device, .. } => device.to_string(),
            Channel::WebSocket => "ws".to_owned(),
        };
        lock(&self.seen).push(format!("{}:{target}", n.event.name()));
        match self.behaviour {
            Behaviour::Deliver => Ok(()),
            Behaviour::FailFirst(n, retry_after) if call < n => Err(NotifyError::Temporary {
                message: "503 from the provider".into(),
                retry_after: Some(retry_after),
            }),
            Behaviour::FailFirst(..) => Ok(()),
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Slow(after) => {
                tokio::time::sleep(after).await;
                Ok(())
            }
        }
    }
}

/// A dispatcher over the in-memory store, the Telnyx emulator and recording notifiers.
struct Rig {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    engine: Engine,
    emulator: EmulatorHandle,
    dispatcher: Arc<Dispatcher>,
    push: Arc<Recorder>,
}

impl Rig {
    async fn new(push: Behaviour, dials: DialLimit) -> Self {
        Self::build(push, dials, None).await
    }

    /// A rig whose engine hands its commits' effects to the dispatcher (`node-a`, leasing
    /// rows for `lease`), and where nothing else wakes it: the engine's kick reaches no one
    /// and the sweep is an hour.
    async fn handing_off(push: Behaviour, lease: Duration) -> Self {
        Self::build(push, DialLimit::default(), Some(lease)).await
    }

    async fn build(push: Behaviour, dials: DialLimit, handoff: Option<Duration>) -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
        let kick = Arc::new(Notify::new());
        let mut engine = Engine::new(store.clone(), clock.clone(), kick.clone());
        let mut sweep = Duration::from_secs(1);
        let mut handed = None;
        if let Some(lease) = handoff {
            let (handoff, to_dispatcher) = ringmaster_engine::handoff::channel("node-a", lease);
            engine = Engine::new(store.clone(), clock.clone(), Arc::new(Notify::new()))
                .with_handoff(handoff);
            sweep = Duration::from_secs(3_600);
            handed = Some((to_dispatcher, lease));
        }
        let emulator = Emulator::start(EmulatorConfig::for_tests(None))
            .await
            .unwrap();
        // The client's own policy retries; the dispatcher must not let it.
        let telnyx =
            TelnyxClient::new(ClientConfig::new("test").with_base_url(emulator.base_url()))
                .unwrap();
        assert!(telnyx.config().retry.max_attempts > 1);
        let push = Recorder::new(push);
        let mut dispatcher = Dispatcher::new(
            store.clone(),
            engine.clone(),
            telnyx,
            "ringmaster-emulator".into(),
            Notifiers {
                websocket: Some(Recorder::new(Behaviour::Deliver)),
                push: Some(push.clone()),
            },
            kick,
            sweep,
        )
        .with_clock(clock.clone())
        .with_dial_budget(Arc::new(DialLimiter::new(dials)))
        .with_ring_timeout(Duration::from_secs(30));
        if let Some((to_dispatcher, lease)) = handed {
            dispatcher = dispatcher
                .with_lease("node-a", lease)
                .with_handoff(to_dispatcher);
        }
        Self {
            store,
            clock,
            engine,
            emulator,
            dispatcher: Arc::new(dispatcher),
            push,
        }
    }

    /// A ringing inbound call to `devices` (iOS phones), its opening effects already sent.
    async fn call(&self, id: &str, devices: &[&str]) -> CallSessionId {
        self.call_on(id, devices, "ios").await.0
    }

    /// A ringing inbound call to `devices` on `platform`; returns its opening outbox effects,
    /// which are marked sent.
    async fn call_on(
        &self,
        id: &str,
        devices: &[&str],
        platform: &str,
    ) -> (CallSessionId, Vec<Effect>) {
        let session = inbound(id, devices, platform, self.clock.now());
        let created = self.engine.create(session, None, Vec::new()).await.unwrap();
        assert!(matches!(created, Created::Committed(_)));
        let mut opening = Vec::new();
        for e in self.store.pending_effects(1_000).await.unwrap() {
            // Host-app events are the webhook relay's, not the dispatcher's.
            if e.lane != Lane::Host {
                opening.push(serde_json::from_value(e.effect.clone()).unwrap());
            }
            self.store
                .mark_effect_done(&e.session_id, e.seq)
                .await
                .unwrap();
        }
        (CallSessionId::new(id), opening)
    }

    /// Commits `effects` to the session's outbox, as if the session had produced them.
    async fn queue(&self, id: &CallSessionId, effects: Vec<Effect>) {
        let (session, version) = self.engine.load(id).await.unwrap().unwrap();
        let step = Step {
            effects,
            timeline: Vec::new(),
        };
        let commit =
            crate::engine::build_commit(&session, Some(version), step, None, self.clock.now())
                .unwrap();
        let outcome = self.store.commit(commit).await.unwrap();
        assert!(
            matches!(outcome, ringmaster_store::CommitOutcome::Committed { .. }),
            "{outcome:?}"
        );
    }

    async fn drain_and_finish(&self) {
        let mut tasks = JoinSet::new();
        self.dispatcher.drain(&mut tasks).await.unwrap();
        while tasks.join_next().await.is_some() {}
    }

    fn requests(&self, action: &str) -> usize {
        self.emulator
            .commands()
            .iter()
            .filter(|c| c.action == action)
            .count()
    }

    fn requests_to(&self, action: &str, ccid: &str) -> usize {
        self.emulator
            .commands()
            .iter()
            .filter(|c| c.action == action && c.call_control_id.as_deref() == Some(ccid))
            .count()
    }

    /// The dispatcher's pending effects (host-app events are the webhook relay's).
    async fn pending(&self) -> Vec<OutboxEntry> {
        let mut pending = self.store.pending_effects(2_000).await.unwrap();
        pending.retain(|e| e.lane != Lane::Host);
        pending
    }

    fn fail_next(&self, count: u32) {
        self.emulator
            .inject(Faults {
                fail_next: Some(FailNext {
                    count,
                    status: 503,
                    retry_after: None,
                }),
                ..Faults::default()
            })
            .unwrap();
    }
}

/// A new inbound call `id` from a caller leg `caller-{id}` ringing `devices` on `platform`.
fn inbound(id: &str, devices: &[&str], platform: &str, now: Timestamp) -> Session {
    let new = NewInbound {
        id: CallSessionId::new(id),
        tenant: TenantId::new("t"),
        user: UserId::new("u"),
        caller_leg: CallControlId::new(format!("caller-{id}")),
        from: "+15550001111".into(),
        to: "+15550002222".into(),
        devices: devices
            .iter()
            .map(|d| RingTarget {
                device_id: DeviceId::new(*d),
                sip_uri: format!("sip:{d}@sip.telnyx.com"),
                platform: platform.to_owned(),
            })
            .collect(),
        busy: false,
        config: SessionConfig::default(),
    };
    Session::new_inbound(new, now).unwrap()
}

fn command(id: &CallSessionId, n: u64, action: Action) -> Effect {
    Effect::Telnyx(Command {
        call_session_id: id.clone(),
        command_id: format!("{id}:test-{n}"),
        action,
    })
}

fn hangup(id: &CallSessionId, n: u64, ccid: &str) -> Effect {
    command(
        id,
        n,
        Action::Hangup {
            ccid: CallControlId::new(ccid),
        },
    )
}

/// A dial to `sip:x{n}@…`: a device rung for an inbound call (linked to the caller's leg), or
/// the calling device of a click-to-call.
fn dial(id: &CallSessionId, n: u64, priority: DialPriority) -> Effect {
    let inbound = priority == DialPriority::InboundRing;
    let device = inbound.then(|| DeviceId::new(format!("x{n}")));
    command(
        id,
        n,
        Action::Dial {
            to: format!("sip:x{n}@sip.telnyx.com"),
            from: "+15550001111".into(),
            timeout_secs: 30,
            client_state: ClientStateRef {
                session: id.clone(),
                device: device.clone(),
                leg: "device".into(),
                direction: None,
            },
            link_to: inbound.then(|| CallControlId::new("v3:caller")),
            device,
        },
    )
}

fn push(id: &CallSessionId, device: &str, event: NotifyEvent) -> Effect {
    Effect::Notify(Notification {
        tenant: TenantId::new("t"),
        user: UserId::new("u"),
        call_session_id: id.clone(),
        channel: Channel::Push {
            device: DeviceId::new(device),
            platform: "ios".into(),
        },
        event,
        exclude_socket: None,
    })
}

fn incoming() -> NotifyEvent {
    NotifyEvent::IncomingCall {
        from: "+15550001111".into(),
        to: "+15550002222".into(),
        version: 1,
    }
}

fn ended() -> NotifyEvent {
    NotifyEvent::CallEnded {
        reason: DismissReason::CallerCancelled,
        version: 2,
    }
}

#[test]
fn backoff_grows_with_jitter_is_capped_and_honours_retry_after() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let cap = Duration::from_secs(30);
    for attempts in 0..40 {
        let full = RETRY_BASE.saturating_mul(1 << attempts.min(16)).min(cap);
        let wait = retry_wait(attempts, None, cap, &mut rng);
        assert!(wait >= full / 2 && wait <= full, "{attempts}: {wait:?}");
    }
    // Jitter spreads effects that failed together.
    let waits: HashSet<Duration> = (0..20)
        .map(|_| retry_wait(3, None, cap, &mut rng))
        .collect();
    assert!(waits.len() > 1);
    let asked = Duration::from_secs(42);
    assert_eq!(retry_wait(0, Some(asked), cap, &mut rng), asked);
    assert!(retry_wait(2, Some(Duration::from_millis(1)), cap, &mut rng) >= RETRY_BASE * 2);
    assert_eq!(
        retry_wait(0, Some(Duration::from_secs(86_400)), cap, &mut rng),
        MAX_RETRY_AFTER
    );
}

#[tokio::test]
async fn a_throttled_notification_is_not_retried_before_its_retry_after() {
    let retry_after = Duration::from_secs(20);
    let rig = Rig::new(Behaviour::FailFirst(1, retry_after), DialLimit::default()).await;
    let id = rig.call("throttled", &[]).await;
    rig.queue(&id, vec![push(&id, "d1", ended())]).await;

    rig.drain_and_finish().await;
    assert_eq!(rig.push.calls(), 1);
    let pending = rig.pending().await;
    assert_eq!((pending.len(), pending[0].attempts), (1, 1));

    // Past the dispatcher's own first backoff, still inside the provider's Retry-After.
    rig.clock.advance(Duration::from_secs(5));
    rig.drain_and_finish().await;
    assert_eq!(rig.push.calls(), 1, "retried too early");

    rig.clock.advance(retry_after);
    rig.drain_and_finish().await;
    assert_eq!(rig.push.calls(), 2);
    assert!(rig.pending().await.is_empty());
}

#[tokio::test]
async fn a_hangup_goes_out_at_once_behind_a_thousand_pushes_backing_off() {
    let rig = Rig::new(
        Behaviour::FailFirst(usize::MAX, Duration::from_secs(120)),
        DialLimit::default(),
    )
    .await;
    let id = rig.call("burst", &[]).await;
    let pushes = (0..1_000)
        .map(|i| push(&id, &format!("d{i}"), ended()))
        .collect();
    rig.queue(&id, pushes).await;
    // Every push is tried once and backs off.
    for _ in 0..1_000 {
        if rig.push.calls() >= 1_000 {
            break;
        }
        rig.drain_and_finish().await;
    }
    assert_eq!(rig.push.calls(), 1_000);

    rig.queue(&id, vec![hangup(&id, 1, "v3:leg-1")]).await;
    rig.drain_and_finish().await;
    assert_eq!(rig.requests("hangup"), 1, "the hangup waited behind pushes");
    assert_eq!(rig.push.calls(), 1_000, "no push retried before its time");
    let pending = rig.pending().await;
    assert_eq!(pending.len(), 1_000);
    assert!(pending.iter().all(|e| e.lane == Lane::Push));
}

#[tokio::test]
async fn a_hanging_push_provider_holds_back_no_telnyx_command() {
    let rig = Rig::new(Behaviour::Hang, DialLimit::default()).await;
    let id = rig.call("hung", &[]).await;
    let pushes = (0..200)
        .map(|i| push(&id, &format!("d{i}"), ended()))
        .collect();
    rig.queue(&id, pushes).await;
    let mut tasks = JoinSet::new();
    rig.dispatcher.drain(&mut tasks).await.unwrap();
    assert_eq!(
        tasks.len(),
        lane_concurrency(Lane::Push),
        "the push lane is full of hung deliveries"
    );

    rig.queue(&id, vec![hangup(&id, 1, "v3:leg-1")]).await;
    rig.dispatcher.drain(&mut tasks).await.unwrap();
    // The hangup task is the only one that can finish.
    tokio::time::timeout(Duration::from_secs(10), tasks.join_next())
        .await
        .expect("the hangup finishes while every push hangs")
        .unwrap()
        .unwrap();
    assert_eq!(rig.requests("hangup"), 1);
    tasks.abort_all();
}

#[tokio::test]
async fn one_pass_claims_every_lane_within_its_permits_and_leases_no_more() {
    let rig = Rig::new(Behaviour::Hang, DialLimit::default()).await;
    let id = rig.call("one-read", &[]).await;
    let mut effects: Vec<Effect> = (0..70)
        .map(|i| push(&id, &format!("d{i}"), ended()))
        .collect();
    effects.push(hangup(&id, 1, "v3:leg-1"));
    rig.queue(&id, effects).await;
    let mut tasks = JoinSet::new();
    rig.dispatcher.drain(&mut tasks).await.unwrap();
    let pushes = lane_concurrency(Lane::Push);
    assert_eq!(tasks.len(), pushes + 1, "the hangup and a full push lane");
    tokio::time::timeout(Duration::from_secs(10), tasks.join_next())
        .await
        .expect("the hangup finishes while every push hangs")
        .unwrap()
        .unwrap();
    assert_eq!(rig.requests("hangup"), 1);

    // The push lane is full: the next pass neither claims nor starts any of its rows, and
    // re-sends nothing.
    rig.dispatcher.drain(&mut tasks).await.unwrap();
    assert_eq!(tasks.len(), pushes);
    assert_eq!(rig.requests("hangup"), 1);
    // Only the pushes in flight are leased: another node may take the rest.
    let now = rig.clock.now();
    let rest = rig
        .store
        .claim_due_effects(Lane::Push, now, 1_000, "other-node", now + DEFAULT_LEASE)
        .await
        .unwrap();
    assert_eq!(rest.len(), 70 - pushes);
    tasks.abort_all();
    tokio::task::yield_now().await;
    assert_eq!(rig.push.calls(), pushes);
}

#[tokio::test]
async fn a_release_is_retried_past_six_attempts_until_telnyx_answers_one_request_each() {
    let rig = Rig::new(Behaviour::Deliver, DialLimit::default()).await;
    let id = rig.call("brownout", &[]).await;
    rig.fail_next(9);
    rig.queue(&id, vec![hangup(&id, 1, "v3:gone")]).await;
    for attempt in 1..=9u32 {
        rig.drain_and_finish().await;
        assert_eq!(
            rig.requests("hangup"),
            attempt as usize,
            "one request per dispatcher attempt: no retries inside the client"
        );
        let pending = rig.pending().await;
        assert_eq!(pending.len(), 1, "a release is never given up");
        assert_eq!(pending[0].attempts, attempt);
        // Not retried before its backoff.
        rig.drain_and_finish().await;
        assert_eq!(rig.requests("hangup"), attempt as usize);
        rig.clock.advance(RELEASE_BACKOFF_CAP);
    }
    rig.drain_and_finish().await;
    assert_eq!(rig.requests("hangup"), 10);
    assert!(rig.pending().await.is_empty(), "Telnyx answered: done");
}

#[tokio::test]
async fn a_release_is_confirmed_by_the_legs_hangup_webhook() {
    let rig = Rig::new(Behaviour::Deliver, DialLimit::default()).await;
    let (id, opening) = rig.call_on("confirmed", &["d1"], "web").await;
    let dial = opening
        .iter()
        .find_map(|e| match e {
            Effect::Telnyx(c) if matches!(c.action, Action::Dial { .. }) => {
                Some(c.command_id.clone())
            }
            _ => None,
        })
        .expect("the call dials its device");
    // The dial's result gives the leg its id; then Telnyx reports the leg hung up.
    let dial_result = Input::DialResult {
        command_id: dial,
        result: Ok(CallControlId::new("v3:leg-d1")),
    };
    rig.engine.apply(&id, dial_result, None).await.unwrap();
    rig.fail_next(1);
    rig.queue(&id, vec![hangup(&id, 1, "v3:leg-d1")]).await;
    rig.drain_and_finish().await;
    assert_eq!(rig.requests_to("hangup", "v3:leg-d1"), 1);

    let event = ProviderEvent::new(
        "v3:leg-d1",
        Some(ClientStateRef {
            session: id.clone(),
            device: Some(DeviceId::new("d1")),
            leg: "device".into(),
            direction: None,
        }),
        ProviderEventKind::Hangup {
            cause: HangupCause::NormalClearing,
            source: HangupSource::Callee,
            quality: None,
        },
    );
    rig.engine
        .apply(&id, Input::Provider(event), None)
        .await
        .unwrap();
    let (session, _) = rig.engine.load(&id).await.unwrap().unwrap();
    assert!(session.leg_ended(&CallControlId::new("v3:leg-d1")));

    rig.clock.advance(RELEASE_BACKOFF_CAP);
    rig.drain_and_finish().await;
    assert_eq!(
        rig.requests_to("hangup", "v3:leg-d1"),
        1,
        "nothing left to hang up"
    );
    assert!(rig
        .pending()
        .await
        .iter()
        .all(|e| !e.effect.to_string().contains("v3:leg-d1")));
}

#[tokio::test]
async fn a_setup_command_gives_up_and_the_session_cleans_up() {
    let rig = Rig::new(Behaviour::Deliver, DialLimit::default()).await;
    let id2 = CallSessionId::new("dialled");
    let new = NewInbound {
        id: id2.clone(),
        tenant: TenantId::new("t"),
        user: UserId::new("u"),
        caller_leg: CallControlId::new("caller-dialled"),
        from: "+15550001111".into(),
        to: "+15550002222".into(),
        devices: vec![RingTarget {
            device_id: DeviceId::new("d1"),
            sip_uri: "sip:d1@sip.telnyx.com".into(),
            platform: "web".into(),
        }],
        busy: false,
        config: SessionConfig::default(),
    };
    let session = Session::new_inbound(new, rig.clock.now()).unwrap();
    rig.engine.create(session, None, Vec::new()).await.unwrap();
    // Only the dial matters here.
    for e in rig.pending().await {
        let fx: Effect = serde_json::from_value(e.effect.clone()).unwrap();
        if dial_priority(&fx).is_none() {
            rig.store
                .mark_effect_done(&e.session_id, e.seq)
                .await
                .unwrap();
        }
    }
    assert_eq!(rig.pending().await.len(), 1);
    rig.fail_next(100);
    for attempt in 1..=SETUP_ATTEMPTS {
        rig.drain_and_finish().await;
        assert_eq!(rig.requests("dial"), attempt as usize);
        rig.clock.advance(Duration::from_secs(60));
    }
    assert!(
        rig.pending()
            .await
            .iter()
            .all(|e| !e.effect.to_string().contains("\"dial\"")),
        "the dial was given up"
    );
    let (session, _) = rig.engine.load(&id2).await.unwrap().unwrap();
    assert_ne!(
        session.status(),
        SessionStatus::Ringing,
        "the session heard its only dial failed"
    );
}

#[tokio::test]
async fn a_stale_incoming_call_is_dropped() {
    let rig = Rig::new(Behaviour::Deliver, DialLimit::default()).await;
    let id = rig.call("late", &[]).await;
    rig.queue(&id, vec![push(&id, "d1", incoming())]).await;
    rig.clock.advance(Duration::from_secs(31));
    rig.drain_and_finish().await;
    assert_eq!(
        rig.push.calls(),
        0,
        "a ring after the ring timeout is pointless"
    );
    assert!(rig.pending().await.is_empty());
}

#[tokio::test]
async fn one_devices_notifications_keep_their_order() {
    let rig = Rig::new(
        Behaviour::FailFirst(1, Duration::from_secs(5)),
        DialLimit::default(),
    )
    .await;
    let id = rig.call("ordered", &[]).await;
    rig.queue(&id, vec![push(&id, "d1", incoming())]).await;
    rig.queue(
        &id,
        vec![push(&id, "d1", ended()), push(&id, "d2", ended())],
    )
    .await;
    rig.drain_and_finish().await;
    // d1's ring failed and holds back d1's dismissal; d2's dismissal is not held back.
    assert_eq!(rig.push.seen(), ["incoming_call:d1", "call_ended:d2"]);
    rig.clock.advance(Duration::from_secs(6));
    rig.drain_and_finish().await;
    rig.drain_and_finish().await;
    assert_eq!(
        rig.push.seen(),
        [
            "incoming_call:d1",
            "call_ended:d2",
            "incoming_call:d1",
            "call_ended:d1"
        ]
    );
    assert!(rig.pending().await.is_empty());
}

#[tokio::test]
async fn an_incoming_call_that_would_go_out_stale_is_dropped_and_its_dismissal_follows() {
    let rig = Rig::new(
        Behaviour::FailFirst(usize::MAX, Duration::from_secs(5)),
        DialLimit::default(),
    )
    .await;
    let id = rig.call("never-rang", &[]).await;
    rig.queue(&id, vec![push(&id, "d1", incoming())]).await;
    rig.queue(&id, vec![push(&id, "d1", ended())]).await;
    for _ in 0..10 {
        rig.drain_and_finish().await;
        rig.clock.advance(Duration::from_secs(6));
    }
    let seen = rig.push.seen();
    let first_end = seen.iter().position(|s| s == "call_ended:d1").unwrap();
    assert!(
        seen[first_end..].iter().all(|s| s == "call_ended:d1"),
        "no ring after the dismissal: {seen:?}"
    );
    assert!(seen[..first_end].iter().all(|s| s == "incoming_call:d1"));
}

#[tokio::test]
async fn a_dial_waiting_for_its_rate_slot_is_not_in_flight() {
    let limit = DialLimit {
        max_dials: 1,
        window: Duration::from_secs(10),
    };
    let rig = Rig::new(Behaviour::Deliver, limit).await;
    let id = rig.call("dials", &[]).await;
    let dial = |n: u64| dial(&id, n, DialPriority::ClickToCall);
    rig.queue(&id, vec![dial(1), dial(2), dial(3)]).await;
    rig.queue(
        &id,
        vec![command(
            &id,
            4,
            Action::Bridge {
                ccid: CallControlId::new("v3:a"),
                to_ccid: CallControlId::new("v3:b"),
            },
        )],
    )
    .await;
    rig.drain_and_finish().await;
    assert_eq!(rig.requests("dial"), 1);
    assert_eq!(rig.requests("bridge"), 1, "queued dials hold no setup slot");
    let queued: Vec<OutboxEntry> = rig
        .pending()
        .await
        .into_iter()
        .filter(|e| e.lane == Lane::Setup)
        .collect();
    assert_eq!(queued.len(), 2);
    assert!(queued
        .iter()
        .all(|e| e.attempts == 0 && e.next_attempt_at > rig.clock.now()));

    rig.clock.advance(Duration::from_secs(10));
    rig.drain_and_finish().await;
    assert_eq!(rig.requests("dial"), 2);
    rig.clock.advance(Duration::from_secs(10));
    rig.drain_and_finish().await;
    assert_eq!(rig.requests("dial"), 3);
}

#[tokio::test]
async fn a_row_another_node_leased_waits_for_the_lease_then_goes_out_once() {
    let rig = Rig::new(Behaviour::Deliver, DialLimit::default()).await;
    let id = rig.call("leased", &[]).await;
    rig.queue(&id, vec![hangup(&id, 1, "v3:leg-1")]).await;
    // Another node claimed the hangup and died before sending it.
    let lease = Duration::from_secs(30);
    let now = rig.clock.now();
    let taken = rig
        .store
        .claim_due_effects(Lane::Release, now, 10, "node-that-died", now + lease)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_ne!(rig.dispatcher.node_id(), "node-that-died");

    rig.drain_and_finish().await;
    rig.clock.advance(lease - Duration::from_millis(1));
    rig.drain_and_finish().await;
    assert_eq!(rig.requests("hangup"), 0, "sent while another node held it");

    rig.clock.advance(Duration::from_millis(1));
    rig.drain_and_finish().await;
    assert_eq!(rig.requests("hangup"), 1);
    rig.clock.advance(lease * 2);
    rig.drain_and_finish().await;
    assert_eq!(rig.requests("hangup"), 1, "sent once");
    assert!(rig.pending().await.is_empty());
}

#[tokio::test]
async fn an_inbound_ring_takes_the_next_dial_slot_before_a_waiting_click_to_call() {
    let window = Duration::from_secs(10);
    let limit = DialLimit {
        max_dials: 1,
        window,
    };
    let rig = Rig::new(Behaviour::Deliver, limit).await;
    let id = rig.call("priority", &[]).await;
    let start = rig.clock.now();
    rig.queue(&id, vec![dial(&id, 1, DialPriority::ClickToCall)])
        .await;
    rig.drain_and_finish().await;
    // The window is full: a click-to-call dial asks first, an inbound ring after it.
    rig.queue(&id, vec![dial(&id, 2, DialPriority::ClickToCall)])
        .await;
    rig.drain_and_finish().await;
    rig.queue(&id, vec![dial(&id, 3, DialPriority::InboundRing)])
        .await;
    rig.drain_and_finish().await;
    for _ in 0..30 {
        rig.clock.advance(Duration::from_secs(1));
        rig.drain_and_finish().await;
    }
    let order: Vec<String> = rig
        .emulator
        .commands()
        .into_iter()
        .filter(|c| c.action == "dial")
        .map(|c| c.body["to"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        order,
        [
            "sip:x1@sip.telnyx.com",
            "sip:x3@sip.telnyx.com",
            "sip:x2@sip.telnyx.com"
        ]
    );
    // Never before a slot, never two in a window, by the dispatcher's clock.
    let starts = rig.dispatcher.dials.budget().recent_starts();
    assert!(starts.iter().all(|s| s.sent >= s.granted), "{starts:?}");
    let slots: Vec<Timestamp> = starts.iter().map(|s| s.granted).collect();
    assert_eq!(crate::dial_limit::busiest_window(&slots, window), 1);
    assert_eq!(slots, [start, start + window, start + window * 2]);
}

impl Rig {
    /// A new inbound call ringing two iOS devices (`{id}-d1`, `{id}-d2`), committed
    /// through the engine, its effects left to the dispatcher.
    async fn ring(&self, id: &str) {
        let devices = [format!("{id}-d1"), format!("{id}-d2")];
        let devices: Vec<&str> = devices.iter().map(String::as_str).collect();
        let session = inbound(id, &devices, "ios", self.clock.now());
        let created = self.engine.create(session, None, Vec::new()).await.unwrap();
        assert!(matches!(created, Created::Committed(_)));
    }

    /// Waits until `dials` dials and `pushes` pushes have gone out.
    async fn sent(&self, dials: usize, pushes: usize) {
        let sent = async {
            while self.requests("dial") < dials || self.push.calls() < pushes {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), sent)
            .await
            .expect("the effects go out without a kick or a sweep");
    }
}

/// A commit's effects are leased to this node in the commit itself and handed to its
/// dispatcher in memory: another node's claim never gets them, and they go out with no kick,
/// no sweep and no read of the outbox.
#[tokio::test]
async fn a_commits_effects_are_leased_to_this_node_and_sent_without_a_read() {
    // Pushes hang, so theirs stay in flight (and leased) for the whole test.
    let lease = Duration::from_secs(30);
    let rig = Rig::handing_off(Behaviour::Hang, lease).await;
    let (_stop, stopped) = watch::channel(false);
    let running = tokio::spawn(rig.dispatcher.clone().run(stopped));
    rig.ring("handed").await;
    let every = Lane::ALL.map(|lane| (lane, 100));
    let now = rig.clock.now();
    let taken = rig
        .store
        .claim_due_effects_all(&every, now, "node-b", now + lease)
        .await
        .unwrap();
    assert!(
        taken.is_empty(),
        "another node claimed a row this node committed: {taken:?}"
    );
    rig.sent(2, 2).await;
    assert_eq!(
        rig.push.seen(),
        ["incoming_call:handed-d1", "incoming_call:handed-d2"]
    );
    running.abort();
}

/// A drain can read a commit's effects (leased to its own node) before the committing task
/// hands them over, and send them; the hand-off coming afterwards sends nothing again.
#[tokio::test]
async fn an_effect_a_drain_sent_before_its_hand_off_came_is_not_sent_again() {
    let rig = Rig::handing_off(Behaviour::Deliver, Duration::from_secs(30)).await;
    // No dispatcher runs yet, so the commit hands nothing over.
    rig.ring("early").await;
    let committed = rig.pending().await;
    let mut tasks = JoinSet::new();
    rig.dispatcher.drain(&mut tasks).await.unwrap();
    while tasks.join_next().await.is_some() {}
    assert_eq!((rig.requests("dial"), rig.push.calls()), (2, 2));
    // The next drain forgets what finished; only then does the late hand-off come.
    rig.dispatcher.drain(&mut tasks).await.unwrap();
    rig.dispatcher.start_handed(committed).await;
    let mut handed = std::mem::take(&mut *lock(&rig.dispatcher.handed_tasks));
    while handed.join_next().await.is_some() {}
    assert_eq!(rig.requests("dial"), 2, "a dial was sent twice");
    assert_eq!(rig.push.calls(), 2, "a ring was sent twice");

    // Once the dispatcher runs, commits hand their effects over and nothing is sent twice.
    let (_stop, stopped) = watch::channel(false);
    let running = tokio::spawn(rig.dispatcher.clone().run(stopped));
    tokio::time::sleep(Duration::from_millis(50)).await;
    rig.ring("later").await;
    rig.sent(4, 4).await;
    let seen = rig.push.seen();
    let once: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        once.len(),
        seen.len(),
        "a notification was sent twice: {seen:?}"
    );
    running.abort();
}

/// A notification held back behind another for its target goes out once that one is done,
/// woken by the store's report that it was waiting: no sweep, no kick from a commit, and no
/// read after notifications that hold nothing back.
#[tokio::test]
async fn a_held_back_notification_goes_out_when_the_one_ahead_is_done() {
    let rig = Rig::handing_off(
        Behaviour::Slow(Duration::from_millis(500)),
        Duration::from_secs(30),
    )
    .await;
    let (_stop, stopped) = watch::channel(false);
    let running = tokio::spawn(rig.dispatcher.clone().run(stopped));
    tokio::time::sleep(Duration::from_millis(50)).await;
    rig.ring("waits").await;
    // Committed past the engine while both rings are in flight: nothing hands these over
    // or kicks the dispatcher, and each waits behind its device's ring.
    let id = CallSessionId::new("waits");
    rig.queue(
        &id,
        vec![
            push(&id, "waits-d1", ended()),
            push(&id, "waits-d2", ended()),
        ],
    )
    .await;
    rig.sent(2, 4).await;
    let seen = rig.push.seen();
    for device in ["waits-d1", "waits-d2"] {
        let ring = seen
            .iter()
            .position(|s| s == &format!("incoming_call:{device}"));
        let end = seen
            .iter()
            .position(|s| s == &format!("call_ended:{device}"));
        assert!(ring < end, "{device}'s dismissal before its ring: {seen:?}");
    }
    running.abort();
}
