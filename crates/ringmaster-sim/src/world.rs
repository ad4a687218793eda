//! The discrete-event engine: a virtual clock, one seeded random number generator and an
//! event queue, driving the coordinator (the production `ringmaster_engine::Engine` on a
//! `MemoryStore`, reading the virtual clock, and each node's production outbox dispatcher,
//! `ringmaster_engine::StepDispatcher`, with the simulator's executor), the Telnyx network, the four dismissal channels
//! and one `DeviceAgent` per device. Nothing sleeps; a run is a pure function of its plan.

use crate::check::{Observations, Violation};
use crate::executor::{SharedWire, SimExecutor};
use crate::nodes::{Answer, NodeStore, SharedGate, Written};
use crate::plan::{Plan, CALL_AT};
use crate::telnyx::{SipUp, Telnyx};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringmaster_core::session::{
    Channel as NotifyChannel, Command, DeviceCallStatus, Input, NewInbound, Notification,
    NotifyEvent, RingTarget, Session, SessionConfig, SessionStatus,
};
use ringmaster_core::{
    CallControlId, CallSessionId, CallState, DeviceId, Direction, Platform, TenantId, Timestamp,
    UserId,
};
use ringmaster_device::{
    AgentConfig, AppAction, Delivery, DeviceAgent, Effect as DevEffect, Input as DevInput, Report,
    SdkCommand, SdkState, Snapshot, StopReason,
};
use ringmaster_engine::dial_gate::DialGate;
use ringmaster_engine::dial_limit::{DialLimit, DialLimiter};
use ringmaster_engine::{
    Applied, CommandAttempt, Created, Dispatched, EffectRunner, Engine, EngineError, ManualClock,
    Recorded, StepDispatcher, StepOutcome,
};
use ringmaster_store::{Lane, MemoryStore, OutboxEntry, Store};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Poll period of every device agent.
pub const POLL_INTERVAL_MS: u64 = 3_000;
/// Slack on top of the poll period and one round trip before a device still ringing after
/// the backend ended its call counts as a violation.
pub const DISMISS_MARGIN_MS: u64 = 1_000;
/// A run stops here at the latest (the longest Doze delay is 15 minutes).
pub const HORIZON_MS: u64 = 20 * 60_000;
/// Most trace lines kept per run.
const TRACE_LINES: usize = 4_000;
/// How long a node's claim on an outbox row lasts. It outlasts one attempt (two API latencies
/// of at most 120 ms, a few processing delays of at most 15 ms each), and is short so a
/// crashed node's rows go out again within seconds, as the sweeps need.
pub const LEASE_MS: u64 = 3_000;

/// Who called the coordinator.
#[derive(Clone, Debug)]
pub(crate) enum CoordInput {
    /// The inbound call arrived: create the session and start it.
    Create,
    /// An input for the session, with its dedupe key (webhook id) if it has one.
    Input {
        input: Input,
        dedupe: Option<String>,
    },
}

/// What the user does on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UserAction {
    Answer,
    Decline,
    Ignore,
    Hold,
    HangUp,
}

/// One scheduled event.
#[derive(Clone, Debug)]
pub(crate) enum Ev {
    /// An input reaches the load balancer; a node loads the session and handles it.
    Coord(CoordInput),
    /// The node's processing time is over: its held commit goes to the store
    /// (compare-and-set on the version it loaded).
    Commit { node: usize, flight: u64 },
    /// A crashed node is back (under a new lease owner) and drains the outbox.
    NodeRestart(usize),
    /// A node's dispatcher claims the outbox rows due now and runs each as its own flight;
    /// `None`: whichever node the load balancer would pick.
    Dispatch { node: Option<usize> },
    /// A session deadline may be due.
    TimerCheck,
    /// A Call Control command reaches Telnyx; its answer goes back under `ticket`.
    Telnyx { cmd: Command, ticket: u64 },
    /// Telnyx's answer to the request sent under `ticket` reaches the dispatcher waiting for it.
    Reply {
        ticket: u64,
        attempt: Box<CommandAttempt>,
    },
    /// Telnyx gives up on an unanswered leg (`timeout_secs`).
    DialTimeout(CallControlId),
    /// A SIP message from a device's SDK reaches Telnyx.
    SipUp { ccid: CallControlId, msg: SipUp },
    /// The PSTN caller hangs up.
    CallerHangup,
    /// Telnyx notices that a killed app's connected leg is dead.
    LegLost(CallControlId),
    /// A SIP INVITE reaches a device's SDK.
    Invite {
        dev: usize,
        ccid: CallControlId,
        epoch: u32,
    },
    /// Something reaches a device's agent. `epoch` is set for SIP, which dies with the app.
    ToDevice {
        dev: usize,
        input: Box<DevInput>,
        epoch: Option<u32>,
    },
    /// A device's poll timer fires.
    PollTick { dev: usize, gen: u64 },
    /// A poll request reaches the backend.
    PollAtBackend { dev: usize },
    /// A device's transition report reaches the backend.
    Report(Box<Report>),
    /// The user acts on a device.
    User { dev: usize, action: UserAction },
    /// The device's app is killed.
    Kill(usize),
    /// The device's app starts again.
    Restart(usize),
}

/// What a node's engine call or dispatch ended with.
enum Done {
    Created(Result<Created, EngineError>),
    Applied(Result<Applied, EngineError>),
    Dispatched(Dispatched),
}

/// What a flight is doing.
enum Job {
    /// Running an input through the engine.
    Coord(CoordInput),
    /// Dispatching the claimed outbox row with this sequence number.
    Effect(u64),
}

/// One piece of a node's work in progress: an input run by its engine, or one claimed outbox
/// row run by its dispatcher. It waits for its commit to be released (the gate) or, for a
/// command, for Telnyx's answer (the wire).
struct Flight {
    node: usize,
    job: Job,
    run: Pin<Box<dyn Future<Output = Done> + Send>>,
    /// The ticket of the command answer it waits for.
    waiting: Option<u64>,
    /// Its command failed transiently (so a `Done` means the dispatcher gave it up).
    transient: bool,
}

/// How the world polls a flight.
#[derive(Clone, Copy)]
enum Poke {
    /// A new engine call; a commit it reaches is held this long (its processing delay).
    Start(u64),
    /// Its held commit goes to the store.
    Release,
    /// A new dispatch, or an answer arrived: it runs on until it waits again.
    Resume,
}

/// One simulated device.
#[derive(Debug)]
pub struct Dev {
    /// Its id.
    pub id: DeviceId,
    /// Its platform.
    pub platform: Platform,
    pub(crate) plan: crate::plan::DevicePlan,
    pub(crate) agent: Option<DeviceAgent>,
    pub(crate) stored: Snapshot,
    /// Bumped when the app dies: SIP sent to an older epoch is lost with the old SDK socket.
    pub(crate) epoch: u32,
    /// The SIP leg the SDK knows, with the epoch it was learned in.
    pub(crate) leg: Option<(CallControlId, u32)>,
    pub(crate) pending_answer: bool,
    pub(crate) poll_gen: u64,
    /// When the ringer came on, while it is on.
    pub(crate) ring_started: Option<u64>,
    pub(crate) ring_deadline_flagged: bool,
    /// The ringer came on at least once.
    pub ever_rang: bool,
    /// Every StopRinging: (time, reason, channel).
    pub stops: Vec<(u64, StopReason, Option<ringmaster_device::Channel>)>,
    /// Every transition the agent reported, in order.
    pub reports: Vec<Report>,
    /// Missed-call notifications shown.
    pub missed_shown: u32,
    /// Orphans found on restart.
    pub orphans: Vec<CallState>,
    /// Late VoIP pushes reported to CallKit and ended.
    pub report_then_end: u32,
    /// Devices this one was told the call is live on (web badge).
    pub other_active: Vec<DeviceId>,
    /// Inputs the agent refused.
    pub refused: Vec<String>,
    /// When the user pressed answer here.
    pub answered_at: Option<u64>,
    /// Restarts of the app.
    pub restarts: u32,
}

impl Dev {
    /// The agent, while the app runs.
    pub fn agent(&self) -> Option<&DeviceAgent> {
        self.agent.as_ref()
    }

    /// Whether the user answered here.
    pub fn answered_locally(&self) -> bool {
        self.reports
            .iter()
            .any(|r| r.trigger == ringmaster_core::Trigger::LocalAnswer)
    }

    /// Whether the user declined here.
    pub fn declined_locally(&self) -> bool {
        self.reports
            .iter()
            .any(|r| r.trigger == ringmaster_core::Trigger::Decline)
    }
}

/// A simulation run.
pub struct World {
    pub(crate) plan: Plan,
    pub(crate) rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    /// The coordinator's store.
    pub store: MemoryStore,
    /// The call's session id.
    pub session_id: CallSessionId,
    pub(crate) user: UserId,
    pub(crate) tenant: TenantId,
    started: bool,
    nodes: Vec<bool>,
    clock: Arc<ManualClock>,
    engine: Engine,
    gate: SharedGate,
    wire: SharedWire,
    /// Each node's dispatcher: the production step dispatcher with the simulator's executor.
    dispatchers: Vec<Arc<StepDispatcher>>,
    /// Boots of each node: a restarted node claims under a new owner name.
    boots: Vec<u32>,
    /// The flight waiting for each ticket's answer.
    tickets: BTreeMap<u64, u64>,
    /// Outbox rows each node's flights are dispatching: (node, seq).
    in_flight: BTreeSet<(usize, u64)>,
    /// Drains scheduled, by time and node: one is enough however many finished rows ask.
    kicks: BTreeSet<(u64, Option<usize>)>,
    flights: BTreeMap<u64, Flight>,
    next_flight: u64,
    timers: std::collections::BTreeSet<u64>,
    commits: usize,
    crashed: bool,
    /// The Telnyx network.
    pub telnyx: Telnyx,
    /// The user's devices.
    pub devices: Vec<Dev>,
    /// Reports accepted by the backend, per device and sequence.
    pub backend_reports: BTreeMap<usize, BTreeMap<u64, Report>>,
    /// Everything checked and measured.
    pub obs: Observations,
    trace: Vec<String>,
}

pub(crate) fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    // MemoryStore futures are ready on first poll.
    futures::executor::block_on(f)
}

impl World {
    /// A world ready to run `plan`.
    pub fn new(plan: Plan) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(plan.seed);
        let devices = plan
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let id = DeviceId::new(format!("{}-{i}", d.platform));
                let agent =
                    DeviceAgent::new(id.clone(), d.platform, agent_config(plan.device_poll_ms));
                Dev {
                    stored: agent.snapshot(),
                    id,
                    platform: d.platform,
                    plan: d.clone(),
                    agent: Some(agent),
                    epoch: 0,
                    leg: None,
                    pending_answer: false,
                    poll_gen: 0,
                    ring_started: None,
                    ring_deadline_flagged: false,
                    ever_rang: false,
                    stops: Vec::new(),
                    reports: Vec::new(),
                    missed_shown: 0,
                    orphans: Vec::new(),
                    report_then_end: 0,
                    other_active: Vec::new(),
                    refused: Vec::new(),
                    answered_at: None,
                    restarts: 0,
                }
            })
            .collect();
        let nodes = vec![true; plan.nodes.max(1)];
        let store = MemoryStore::new();
        let gate = SharedGate::default();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(CALL_AT)));
        let engine = Engine::on_sessions(
            Arc::new(NodeStore {
                store: store.clone(),
                gate: gate.clone(),
            }),
            clock.clone(),
            // Each commit with outbox rows schedules a dispatch on its node (see `on_written`).
            Arc::new(tokio::sync::Notify::new()),
        );
        let wire = SharedWire::default();
        let dispatchers = (0..nodes.len())
            .map(|node| node_dispatcher(&plan, &store, &engine, &clock, &wire, node, 0))
            .collect();
        let boots = vec![0; nodes.len()];
        Self {
            plan,
            rng,
            now: CALL_AT,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            store,
            session_id: CallSessionId::new("v3:sim-call"),
            user: UserId::new("user-1"),
            tenant: TenantId::new("tenant-1"),
            started: false,
            nodes,
            clock,
            engine,
            gate,
            wire,
            dispatchers,
            boots,
            tickets: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            kicks: BTreeSet::new(),
            flights: BTreeMap::new(),
            next_flight: 0,
            timers: std::collections::BTreeSet::new(),
            commits: 0,
            crashed: false,
            telnyx: Telnyx::default(),
            devices,
            backend_reports: BTreeMap::new(),
            obs: Observations::default(),
            trace: Vec::new(),
        }
    }

    /// Runs the plan to the end and checks the end-of-run invariants.
    pub fn run(mut self) -> Self {
        self.run_until(HORIZON_MS);
        self.check_end();
        self
    }

    /// Processes every event up to `offset_ms` after the call arrived (starting the run if it
    /// has not started), checking the step invariants after each.
    pub fn run_until(&mut self, offset_ms: u64) {
        if !self.started {
            self.started = true;
            self.boot();
        }
        let limit = CALL_AT + offset_ms.min(HORIZON_MS);
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > limit {
                break;
            }
            self.queue.pop();
            self.set_now(at);
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            self.step(ev);
            self.check_step();
        }
        self.set_now(self.now.max(limit));
    }

    fn set_now(&mut self, now: u64) {
        self.now = now;
        self.clock.set(Timestamp::from_millis(now));
    }

    /// Ms since the call arrived.
    pub fn elapsed(&self) -> u64 {
        self.now.saturating_sub(CALL_AT)
    }

    /// Virtual time now (ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The plan being run.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The run's trace, one line per event.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// The called user.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The session as last committed.
    pub fn session(&self) -> Option<Session> {
        let stored = block(self.store.load_session(&self.session_id)).ok()??;
        serde_json::from_value(stored.doc).ok()
    }

    /// The backend's answer to this device's status poll now.
    pub fn status_for(&self, dev: usize) -> Option<DeviceCallStatus> {
        self.session()?.status_for(&self.devices[dev].id).ok()
    }

    /// Every violation found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.obs.violations
    }

    pub(crate) fn log(&mut self, line: impl FnOnce() -> String) {
        if self.trace.len() < TRACE_LINES {
            let t = self.now.saturating_sub(CALL_AT);
            self.trace.push(format!("[{t:>7}ms] {}", line()));
        }
    }

    pub(crate) fn violation(&mut self, invariant: &str, detail: String) {
        self.log(|| format!("VIOLATION {invariant}: {detail}"));
        let seed = self.plan.seed;
        self.obs.violations.push(Violation {
            seed,
            invariant: invariant.to_owned(),
            detail,
            trace: Vec::new(),
        });
    }

    pub(crate) fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert(self.seq, ev);
        self.queue.push(Reverse((self.now + delay, self.seq)));
    }

    pub(crate) fn sample(
        &mut self,
        pick: impl FnOnce(&crate::faults::Latencies) -> crate::faults::Latency,
    ) -> u64 {
        let l = pick(&self.plan.latencies);
        l.sample(&mut self.rng)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }

    fn boot(&mut self) {
        let plan = serde_json::to_string(&self.plan).unwrap_or_default();
        self.log(|| format!("plan: {plan}"));
        self.telnyx.add_caller();
        self.at(0, Ev::Coord(CoordInput::Create));
        let hangup = self.plan.caller_hangup_at;
        self.at(hangup, Ev::CallerHangup);
        for dev in 0..self.devices.len() {
            let p = self.devices[dev].plan.clone();
            for (at, action) in [
                (p.answer_at, UserAction::Answer),
                (p.decline_at, UserAction::Decline),
                (p.ignore_at, UserAction::Ignore),
            ] {
                if let Some(at) = at {
                    self.at(at, Ev::User { dev, action });
                }
            }
            if let Some(at) = p.faults.kill_at {
                self.at(at, Ev::Kill(dev));
            }
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Coord(input) => self.on_coord(input),
            Ev::Commit { node, flight } => self.on_commit(node, flight),
            Ev::NodeRestart(node) => self.on_node_restart(node),
            Ev::Dispatch { node } => self.on_dispatch(node),
            Ev::TimerCheck => self.on_timer_check(),
            Ev::Telnyx { cmd, ticket } => self.telnyx_command(cmd, ticket),
            Ev::Reply { ticket, attempt } => self.on_reply(ticket, *attempt),
            Ev::DialTimeout(ccid) => self.telnyx_dial_timeout(&ccid),
            Ev::SipUp { ccid, msg } => self.telnyx_sip_up(&ccid, msg),
            Ev::CallerHangup => self.telnyx_caller_hangup(),
            Ev::LegLost(ccid) => self.telnyx_leg_lost(&ccid),
            Ev::Invite { dev, ccid, epoch } => self.on_invite(dev, ccid, epoch),
            Ev::ToDevice { dev, input, epoch } => self.deliver_to_device(dev, *input, epoch),
            Ev::PollTick { dev, gen } => self.on_poll_tick(dev, gen),
            Ev::PollAtBackend { dev } => self.on_poll_at_backend(dev),
            Ev::Report(report) => self.on_report(*report),
            Ev::User { dev, action } => self.on_user(dev, action),
            Ev::Kill(dev) => self.on_kill(dev),
            Ev::Restart(dev) => self.on_restart(dev),
        }
    }

    // ---- coordinator -----------------------------------------------------------------------

    fn pick_node(&mut self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes.len()).filter(|&n| self.nodes[n]).collect();
        if up.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..up.len());
        Some(up[i])
    }

    fn new_inbound(&self) -> NewInbound {
        NewInbound {
            id: self.session_id.clone(),
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            caller_leg: CallControlId::new(crate::telnyx::CALLER_LEG),
            from: "+15550001111".to_owned(),
            to: "+15550002222".to_owned(),
            devices: self
                .devices
                .iter()
                .map(|d| RingTarget {
                    device_id: d.id.clone(),
                    sip_uri: format!("sip:{}@sip.telnyx.com", d.id),
                    platform: d.platform.as_str().to_owned(),
                })
                .collect(),
            busy: false,
            config: SessionConfig {
                ring_timeout_secs: self.plan.ring_timeout_secs,
                caller_answer: self.plan.caller_answer,
                ..SessionConfig::default()
            },
        }
    }

    /// A node runs the input through the engine until its commit is held (or it is done).
    fn on_coord(&mut self, input: CoordInput) {
        let Some(node) = self.pick_node() else {
            // Every node is down: the sender retries.
            self.at(500, Ev::Coord(input));
            return;
        };
        let delay = self.sample(|l| l.processing);
        let engine = self.engine.clone();
        let run: Pin<Box<dyn Future<Output = Done> + Send>> = match &input {
            CoordInput::Create => {
                let now = Timestamp::from_millis(self.now);
                let session = match Session::new_inbound(self.new_inbound(), now) {
                    Ok(s) => s,
                    Err(e) => return self.violation("session_created", e.to_string()),
                };
                self.log(|| format!("node{node} creates the session"));
                Box::pin(
                    async move { Done::Created(engine.create(session, None, Vec::new()).await) },
                )
            }
            CoordInput::Input {
                input: inner,
                dedupe,
            } => {
                let what = describe_input(inner);
                self.log(|| format!("node{node} handles {what}"));
                let (id, inner, dedupe) = (self.session_id.clone(), inner.clone(), dedupe.clone());
                Box::pin(async move { Done::Applied(engine.apply(&id, inner, dedupe).await) })
            }
        };
        self.next_flight += 1;
        let flight = self.next_flight;
        let flight_state = Flight {
            node,
            job: Job::Coord(input),
            run,
            waiting: None,
            transient: false,
        };
        self.drive(flight, flight_state, Poke::Start(delay));
    }

    /// The node's processing time is over: its held commit goes to the store, unless the node
    /// died meanwhile (then nothing was written: an input's sender retries; a dispatch dies
    /// with its node and its row waits out the lease).
    fn on_commit(&mut self, node: usize, flight: u64) {
        let Some(f) = self.flights.remove(&flight) else {
            return;
        };
        if !self.nodes[node] {
            if let Job::Coord(input) = f.job {
                self.at(1_000, Ev::Coord(input));
            }
            return;
        }
        self.drive(flight, f, Poke::Release);
    }

    /// Polls a node's flight: a new engine call (`Poke::Start`: its processing delay) runs up
    /// to its commit, which is held; a held one has its commit let through (`Poke::Release`);
    /// a dispatch runs until its command waits for Telnyx or its result's commit is held
    /// (`Poke::Resume`). The flight then finishes, or holds its next commit (after a lost
    /// compare-and-set, or after telling the session the registry is busy), which goes out
    /// after another processing delay, or waits for a command's answer.
    fn drive(&mut self, id: u64, mut flight: Flight, poke: Poke) {
        self.gate.arm(matches!(poke, Poke::Release));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let poll = flight.run.as_mut().poll(&mut cx);
        let (held, answers) = self.gate.take();
        let node = flight.node;
        if let Some(ticket) = self.send_wire(node, Some(id)) {
            flight.waiting = Some(ticket);
        }
        for answer in answers {
            self.on_store_answer(node, answer);
        }
        let dead_dispatch = !self.nodes[node] && matches!(flight.job, Job::Effect(_));
        match poll {
            Poll::Ready(done) => self.on_done(node, flight.job, flight.transient, done),
            // The node crashed at this flight's commit: the dispatch dies with it.
            Poll::Pending if dead_dispatch => {
                if let Some(ticket) = flight.waiting {
                    self.tickets.remove(&ticket);
                }
            }
            Poll::Pending if held => {
                let delay = match poke {
                    Poke::Start(delay) => delay,
                    Poke::Release | Poke::Resume => self.sample(|l| l.processing),
                };
                self.flights.insert(id, flight);
                self.at(delay, Ev::Commit { node, flight: id });
            }
            Poll::Pending if flight.waiting.is_some() => {
                self.flights.insert(id, flight);
            }
            Poll::Pending => self.violation(
                "engine",
                "the engine waited for something other than a commit or a command".to_owned(),
            ),
        }
    }

    /// What the last poll put on the wire: commands go to Telnyx after the API latency (their
    /// answers come back to flight `id`, if it lives on), notifications to the devices.
    /// Returns the ticket of the last command sent.
    fn send_wire(&mut self, node: usize, id: Option<u64>) -> Option<u64> {
        let (requests, sent) = self.wire.take();
        let mut last = None;
        for (ticket, cmd) in requests {
            if let Some(id) = id {
                self.tickets.insert(ticket, id);
            }
            last = Some(ticket);
            let command_id = cmd.command_id.clone();
            self.log(|| format!("node{node} sends command {command_id}"));
            let delay = self.sample(|l| l.api);
            self.at(delay, Ev::Telnyx { cmd, ticket });
        }
        for n in sent {
            self.notify_devices(&n);
        }
        last
    }

    /// Telnyx's answer reaches the dispatch that sent the request, if it still runs (a crashed
    /// node's requests are answered to nobody).
    fn on_reply(&mut self, ticket: u64, attempt: CommandAttempt) {
        let Some(id) = self.tickets.remove(&ticket) else {
            self.log(|| format!("answer {ticket} reaches a crashed node: lost"));
            return;
        };
        let Some(mut flight) = self.flights.remove(&id) else {
            return;
        };
        flight.waiting = None;
        if matches!(attempt, CommandAttempt::Transient { .. }) {
            flight.transient = true;
        }
        self.wire.answer(ticket, attempt);
        self.drive(id, flight, Poke::Resume);
    }

    /// Schedules a drain on `node` (`None`: any live node) after `delay`, unless one is already
    /// scheduled then.
    fn kick(&mut self, delay: u64, node: Option<usize>) {
        if self.kicks.insert((self.now + delay, node)) {
            self.at(delay, Ev::Dispatch { node });
        }
    }

    /// A node's dispatcher claims every row due now, lane by lane (releases first), and runs
    /// each as its own flight, so one slow command holds back nothing else.
    fn on_dispatch(&mut self, node: Option<usize>) {
        self.kicks.remove(&(self.now, node));
        let node = match node.filter(|&n| self.nodes[n]) {
            Some(n) => n,
            None => match self.pick_node() {
                Some(n) => n,
                None => {
                    // Every node is down: the first one back drains the outbox.
                    self.kick(500, None);
                    return;
                }
            },
        };
        let now = Timestamp::from_millis(self.now);
        let dispatcher = self.dispatchers[node].clone();
        for lane in Lane::ALL {
            let claimed = match block(dispatcher.claim_lane(lane, now)) {
                Ok(claimed) => claimed,
                Err(e) => {
                    self.violation("store", e.to_string());
                    continue;
                }
            };
            for entry in claimed {
                // The server's dispatcher skips rows it is already running, too.
                if !self.in_flight.insert((node, entry.seq)) {
                    continue;
                }
                self.next_flight += 1;
                let id = self.next_flight;
                let flight = Flight {
                    node,
                    job: Job::Effect(entry.seq),
                    run: run_claimed(dispatcher.clone(), entry, now),
                    waiting: None,
                    transient: false,
                };
                self.drive(id, flight, Poke::Resume);
            }
        }
    }

    fn on_store_answer(&mut self, node: usize, answer: Answer) {
        match answer {
            Answer::Committed(written) => self.on_written(node, *written),
            Answer::Conflict(current) => {
                self.obs.cas_conflicts += 1;
                self.log(|| format!("node{node} CONFLICT (now {current:?}): reload"));
            }
            Answer::Duplicate => self.log(|| format!("node{node} commit is a duplicate")),
            Answer::Busy(active) => {
                // The server's rule, run by the engine: the session is told and the input runs
                // again. Only a lone call turned away busy would break a promise (`check_end`).
                self.obs.registry_busy += 1;
                let others = active
                    .iter()
                    .filter(|a| a.call_session_id != self.session_id)
                    .count();
                if others > 0 {
                    self.obs.busy_with_other_call = true;
                }
                self.log(|| {
                    format!("node{node} registry BUSY ({others} other calls): the session is told")
                });
            }
            Answer::Failed(e) => self.violation("store", e),
        }
    }

    fn on_done(&mut self, node: usize, job: Job, transient: bool, done: Done) {
        let input = match job {
            Job::Coord(input) => input,
            Job::Effect(seq) => {
                self.in_flight.remove(&(node, seq));
                return match done {
                    Done::Dispatched(d) => self.on_dispatched(node, transient, d),
                    _ => self.violation("engine", "a dispatch ended as an engine call".to_owned()),
                };
            }
        };
        match done {
            Done::Dispatched(_) => {
                self.violation("engine", "an input ended as a dispatch".to_owned())
            }
            Done::Created(Ok(Created::Committed(_))) | Done::Applied(Ok(Applied::Committed(_))) => {
            }
            Done::Created(Ok(Created::Exists)) => {
                self.log(|| format!("node{node}: the session exists already"))
            }
            Done::Created(Ok(Created::Duplicate)) | Done::Applied(Ok(Applied::Duplicate)) => {
                self.log(|| format!("node{node} drops a duplicate"))
            }
            Done::Applied(Ok(Applied::Unchanged(_))) => {}
            Done::Applied(Ok(Applied::Refused(e))) => {
                self.obs.refused_inputs += 1;
                let what = match &input {
                    CoordInput::Input { input, .. } => describe_input(input),
                    CoordInput::Create => "start".to_owned(),
                };
                self.log(|| format!("node{node} refuses {what}: {e}"));
            }
            Done::Applied(Err(EngineError::UnknownSession(_))) => {
                // The input overtook the session's creation: its sender retries.
                self.at(100, Ev::Coord(input));
            }
            Done::Created(Err(e)) => self.violation("session_created", e.to_string()),
            Done::Applied(Err(e)) => self.violation("store", e.to_string()),
        }
    }

    /// One claimed row is through the dispatcher: it comes due again at its retry time or
    /// its dial slot; once finished, rows held back behind it may be due, so the node drains
    /// again (the server's dispatcher re-drains when an effect finishes, too).
    fn on_dispatched(&mut self, node: usize, transient: bool, d: Dispatched) {
        let seq = d.seq;
        let again = match d.outcome {
            StepOutcome::Attempted(Recorded::Retry(at)) => {
                self.obs.dispatch_retries += 1;
                self.log(|| format!("node{node} effect #{seq} will be retried"));
                at
            }
            StepOutcome::Deferred(until) => until,
            StepOutcome::Attempted(recorded) => {
                if recorded == Recorded::Done {
                    self.obs.effects_done += 1;
                }
                if recorded == Recorded::Abandoned {
                    self.obs.effects_abandoned += 1;
                    self.log(|| format!("node{node} effect #{seq} abandoned"));
                } else if transient {
                    self.obs.commands_given_up += 1;
                    self.log(|| format!("node{node} command #{seq} given up"));
                }
                Timestamp::from_millis(self.now)
            }
        };
        let delay = again.as_millis().saturating_sub(self.now);
        self.kick(delay, Some(node));
    }

    /// A commit went through: history bookkeeping, the node's dispatcher kicked (or the node
    /// crashes part way through dispatching, as planned), the session's timer armed.
    fn on_written(&mut self, node: usize, written: Written) {
        self.commits += 1;
        let (version, state) = (written.version, written.state.clone());
        self.log(|| format!("node{node} commits v{version} ({state})"));
        self.after_commit(&written);
        let mut outbox = Vec::new();
        for (seq, row) in &written.outbox {
            // Host events are for the host app's webhooks, which the simulation leaves out.
            if row.lane == Lane::Host {
                if let Err(e) = block(self.store.mark_effect_done(&self.session_id, *seq)) {
                    self.violation("store", e.to_string());
                }
                continue;
            }
            outbox.push(*seq);
        }
        self.obs.outbox_rows += outbox.len() as u64;
        let crash = self
            .plan
            .node_crash
            .clone()
            .filter(|c| !self.crashed && c.after_commit == self.commits);
        if let Some(crash) = crash {
            self.crash(node, &outbox, crash.sent_before_crash);
        } else if !outbox.is_empty() {
            self.kick(0, Some(node));
        }
        if let Some(deadline) = written.next_deadline {
            // One timer per deadline, however many commits carry it.
            if self.timers.insert(deadline.as_millis()) {
                let delay = deadline.as_millis().saturating_sub(self.now);
                self.at(delay, Ev::TimerCheck);
            }
        }
    }

    /// The node crashes right after a commit: its dispatcher has claimed what was due and sent
    /// `sent_before` of this commit's effects (`outbox`), recording none. Its dispatches die
    /// with it; the rows it claimed stay leased to it, and whichever node drains after the
    /// lease runs out sends them again (the same `command_id`).
    fn crash(&mut self, node: usize, outbox: &[u64], sent_before: usize) {
        self.crashed = true;
        let now = Timestamp::from_millis(self.now);
        let dispatcher = self.dispatchers[node].clone();
        let mut sent = 0;
        self.wire.set_dying(true);
        for lane in Lane::ALL {
            let claimed = block(dispatcher.claim_lane(lane, now)).unwrap_or_default();
            for entry in claimed {
                let ours = outbox.contains(&entry.seq);
                if sent >= sent_before || !ours || self.in_flight.contains(&(node, entry.seq)) {
                    continue;
                }
                sent += 1;
                let mut run = run_claimed(dispatcher.clone(), entry, now);
                self.gate.arm(false);
                let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                let _ = run.as_mut().poll(&mut cx);
                let (_, answers) = self.gate.take();
                self.send_wire(node, None);
                for answer in answers {
                    self.on_store_answer(node, answer);
                }
            }
        }
        self.wire.set_dying(false);
        self.nodes[node] = false;
        let dead: Vec<u64> = self
            .flights
            .iter()
            .filter(|(_, f)| f.node == node && matches!(f.job, Job::Effect(_)))
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            if let Some(ticket) = self.flights.remove(&id).and_then(|f| f.waiting) {
                self.tickets.remove(&ticket);
            }
        }
        self.in_flight.retain(|(n, _)| *n != node);
        let down = self.sample(|l| l.node_down);
        self.obs.node_crashes += 1;
        self.log(|| {
            format!(
                "node{node} CRASHES after commit, {sent}/{} effects sent, down {down}ms",
                outbox.len()
            )
        });
        self.at(down, Ev::NodeRestart(node));
        // The first drain after its lease runs out takes the dead node's rows.
        self.kick(LEASE_MS + 1, None);
    }

    /// A crashed node is back with a new lease owner name (as a restarted server process), so
    /// the rows its last life claimed wait out their lease like any dead node's.
    fn on_node_restart(&mut self, node: usize) {
        self.nodes[node] = true;
        self.boots[node] += 1;
        self.dispatchers[node] = node_dispatcher(
            &self.plan,
            &self.store,
            &self.engine,
            &self.clock,
            &self.wire,
            node,
            self.boots[node],
        );
        self.log(|| format!("node{node} restarts and drains the outbox"));
        self.kick(0, Some(node));
        self.on_timer_check();
    }

    fn on_timer_check(&mut self) {
        let due = block(
            self.store
                .due_sessions(Timestamp::from_millis(self.now), 100),
        )
        .unwrap_or_default();
        for _ in due {
            self.at(
                0,
                Ev::Coord(CoordInput::Input {
                    input: Input::Tick,
                    dedupe: None,
                }),
            );
        }
    }

    /// A notification the dispatcher sent: the devices it reaches, with the channel's latency
    /// and faults.
    fn notify_devices(&mut self, n: &Notification) {
        let sent_at = Timestamp::from_millis(self.now);
        match &n.channel {
            NotifyChannel::WebSocket => {
                for dev in 0..self.devices.len() {
                    let d = &self.devices[dev];
                    let listening = !(d.plan.faults.ws_down
                        || (d.platform.is_mobile() && d.plan.faults.backgrounded));
                    if !listening {
                        continue;
                    }
                    if let Some(input) =
                        notify_input(&n.event, &n.call_session_id, sent_at, Delivery::WebSocket)
                    {
                        let delay = self.sample(|l| l.websocket);
                        self.send_to_device(delay, dev, input, None);
                    }
                }
            }
            NotifyChannel::Push { device, .. } => {
                let Some(dev) = self.devices.iter().position(|d| d.id == *device) else {
                    return self.violation("push", format!("push to unknown device {device}"));
                };
                let voip = self.devices[dev].platform == Platform::Ios
                    && matches!(n.event, NotifyEvent::IncomingCall { .. });
                let p = self.plan.message_faults.push_drop;
                if self.devices[dev].plan.faults.push_blocked || self.chance(p) {
                    let name = n.event.name();
                    self.log(|| format!("push {name} to dev{dev} dropped"));
                    return;
                }
                let delay = if self.devices[dev].plan.faults.doze {
                    self.sample(|l| l.doze)
                } else {
                    self.sample(|l| l.push)
                };
                if let Some(input) = notify_input(
                    &n.event,
                    &n.call_session_id,
                    sent_at,
                    Delivery::Push { voip },
                ) {
                    self.send_to_device(delay, dev, input, None);
                }
            }
        }
    }

    /// Bookkeeping after each commit: when ringing ended, the history rows.
    fn after_commit(&mut self, written: &Written) {
        if self.obs.ring_ended_at.is_none() && written.state != SessionStatus::Ringing.as_str() {
            self.obs.ring_ended_at = Some(self.now);
            let status = written.state.clone();
            self.log(|| format!("backend: ringing is over ({status})"));
        }
        if written.history_rows > 0 && self.obs.final_history_rows > 0 {
            let status = written.state.clone();
            self.violation(
                "history_once",
                format!("history row ({status}) written after the final one"),
            );
        }
        self.obs.final_history_rows += u32::try_from(written.final_rows).unwrap_or(u32::MAX);
    }

    /// An input for the session, sent to the load balancer after `delay`.
    pub(crate) fn send_to_coordinator(&mut self, delay: u64, input: Input, dedupe: Option<String>) {
        self.at(delay, Ev::Coord(CoordInput::Input { input, dedupe }));
    }

    /// An input for device `dev`'s agent after `delay`; `epoch` is set for SIP, which dies
    /// with the app.
    pub(crate) fn send_to_device(
        &mut self,
        delay: u64,
        dev: usize,
        input: DevInput,
        epoch: Option<u32>,
    ) {
        self.at(
            delay,
            Ev::ToDevice {
                dev,
                input: Box::new(input),
                epoch,
            },
        );
    }

    // ---- devices ---------------------------------------------------------------------------

    fn on_invite(&mut self, dev: usize, ccid: CallControlId, epoch: u32) {
        if self.devices[dev].epoch != epoch || self.devices[dev].agent.is_none() {
            return;
        }
        if !self.telnyx.is_alive(&ccid) {
            // Telnyx cancelled the leg before the INVITE was delivered.
            return;
        }
        self.devices[dev].leg = Some((ccid.clone(), epoch));
        let state = SdkState::ringing(self.devices[dev].platform);
        let input = DevInput::Sdk {
            call_session_id: self.session_id.clone(),
            direction: Direction::Inbound,
            state,
            cause: None,
        };
        self.log(|| format!("dev{dev} SDK gets INVITE {ccid}"));
        self.deliver_to_device(dev, input, Some(epoch));
        if std::mem::take(&mut self.devices[dev].pending_answer) {
            let delay = self.sample(|l| l.sip_up);
            self.at(
                delay,
                Ev::SipUp {
                    ccid,
                    msg: SipUp::Answer,
                },
            );
        }
    }

    /// Feeds one input to a device's agent and carries out its effects.
    pub(crate) fn deliver_to_device(&mut self, dev: usize, input: DevInput, epoch: Option<u32>) {
        let d = &mut self.devices[dev];
        if epoch.is_some_and(|e| e != d.epoch) {
            return;
        }
        let Some(agent) = d.agent.as_mut() else {
            let what = describe_dev_input(&input);
            self.log(|| format!("dev{dev} is dead; {what} lost"));
            return;
        };
        let what = describe_dev_input(&input);
        match agent.handle(input, Timestamp::from_millis(self.now)) {
            Ok(fx) => {
                self.log(|| format!("dev{dev} <- {what}"));
                self.device_effects(dev, fx);
            }
            Err(e) => {
                let line = format!("{what}: {e}");
                self.log(|| format!("dev{dev} refuses {line}"));
                self.devices[dev].refused.push(line);
            }
        }
    }

    fn device_effects(&mut self, dev: usize, fx: Vec<DevEffect>) {
        for e in fx {
            match e {
                DevEffect::Persist(s) => self.devices[dev].stored = s,
                DevEffect::StartRinging { .. } => {
                    let d = &mut self.devices[dev];
                    d.ring_started = Some(self.now);
                    d.ever_rang = true;
                    self.log(|| format!("dev{dev} RINGS"));
                }
                DevEffect::StopRinging {
                    reason, channel, ..
                } => self.on_stop_ringing(dev, reason, channel),
                DevEffect::ReportTransition(r) => {
                    self.devices[dev].reports.push(r.clone());
                    let delay = self.sample(|l| l.http);
                    self.at(delay, Ev::Report(Box::new(r.clone())));
                    let p = self.plan.message_faults.report_dup;
                    if self.chance(p) {
                        let delay = self.sample(|l| l.http);
                        self.at(delay, Ev::Report(Box::new(r)));
                    }
                }
                DevEffect::ClearPersisted { .. } => {}
                DevEffect::ShowMissedCall { .. } => {
                    self.devices[dev].missed_shown += 1;
                    self.log(|| format!("dev{dev} shows a missed call"));
                }
                DevEffect::StartStatusPoll { interval_ms, .. } => {
                    self.devices[dev].poll_gen += 1;
                    let gen = self.devices[dev].poll_gen;
                    self.at(interval_ms, Ev::PollTick { dev, gen });
                }
                DevEffect::StopStatusPoll { .. } => self.devices[dev].poll_gen += 1,
                DevEffect::ReportThenEnd { .. } => self.devices[dev].report_then_end += 1,
                DevEffect::Sdk { command, .. } => self.sdk_command(dev, command),
                DevEffect::Backend { request, .. } => {
                    let device = self.devices[dev].id.clone();
                    let input = match request {
                        ringmaster_device::BackendRequest::Decline => {
                            Input::DeviceDecline { device }
                        }
                        ringmaster_device::BackendRequest::Ignore => Input::DeviceIgnore { device },
                    };
                    let delay = self.sample(|l| l.http);
                    self.send_to_coordinator(delay, input, None);
                }
                DevEffect::OrphanEnded { state, .. } => {
                    self.devices[dev].orphans.push(state);
                    self.log(|| format!("dev{dev} shows orphan ({state}) as disconnected"));
                }
                DevEffect::OtherDeviceActive { device_id, .. } => {
                    self.devices[dev].other_active.push(device_id)
                }
                DevEffect::OtherDeviceEnded { .. } => {}
            }
        }
    }

    fn on_stop_ringing(
        &mut self,
        dev: usize,
        reason: StopReason,
        channel: Option<ringmaster_device::Channel>,
    ) {
        let now = self.now;
        let started = self.devices[dev].ring_started.take();
        self.devices[dev].stops.push((now, reason.clone(), channel));
        self.log(|| format!("dev{dev} stops ringing: {reason:?} via {channel:?}"));
        let (Some(channel), Some(started), Some(end)) = (channel, started, self.obs.ring_ended_at)
        else {
            return;
        };
        let from = end.max(started);
        let latency = now.saturating_sub(from);
        self.obs.latencies.entry(channel).or_default().push(latency);
        if latency > POLL_INTERVAL_MS + 2 * self.plan.latencies.http.max_ms + DISMISS_MARGIN_MS {
            self.violation(
                "dismissed_in_time",
                format!("dev{dev} rang {latency}ms after the backend ended ringing"),
            );
            self.devices[dev].ring_deadline_flagged = true;
        }
    }

    fn sdk_command(&mut self, dev: usize, command: SdkCommand) {
        let d = &self.devices[dev];
        let leg = d.leg.clone().filter(|(_, e)| *e == d.epoch).map(|(c, _)| c);
        let msg = match command {
            SdkCommand::Answer => SipUp::Answer,
            SdkCommand::Reject => SipUp::Reject,
            SdkCommand::Hangup => SipUp::Bye,
            SdkCommand::Hold | SdkCommand::Resume => return,
        };
        let Some(ccid) = leg else {
            if msg == SipUp::Answer {
                // CallKit answered before the INVITE: the SDK answers when it arrives.
                self.devices[dev].pending_answer = true;
            }
            return;
        };
        let delay = self.sample(|l| l.sip_up);
        self.at(
            delay,
            Ev::SipUp {
                ccid: ccid.clone(),
                msg,
            },
        );
        if msg == SipUp::Bye {
            // The SDK reports DONE once the BYE is confirmed.
            let back = delay + self.sample(|l| l.sip_down);
            let epoch = self.devices[dev].epoch;
            let input = DevInput::Sdk {
                call_session_id: self.session_id.clone(),
                direction: Direction::Inbound,
                state: SdkState::done(self.devices[dev].platform),
                cause: ringmaster_core::sdk::EndCause::NormalClearing.example(),
            };
            self.send_to_device(back, dev, input, Some(epoch));
        }
    }

    fn on_poll_tick(&mut self, dev: usize, gen: u64) {
        let d = &self.devices[dev];
        if d.poll_gen != gen || d.agent.is_none() {
            return;
        }
        let delay = self.sample(|l| l.http);
        self.at(delay, Ev::PollAtBackend { dev });
        let period = self.plan.device_poll_ms;
        self.at(period, Ev::PollTick { dev, gen });
    }

    fn on_poll_at_backend(&mut self, dev: usize) {
        let Some(status) = self.status_for(dev) else {
            return;
        };
        let input = DevInput::PollResult {
            call_session_id: self.session_id.clone(),
            status,
        };
        let delay = self.sample(|l| l.http);
        self.send_to_device(delay, dev, input, None);
    }

    fn on_report(&mut self, r: Report) {
        let Some(dev) = self.devices.iter().position(|d| d.id == r.device_id) else {
            return self.violation(
                "reports",
                format!("report from unknown device {}", r.device_id),
            );
        };
        if !ringmaster_core::is_legal(r.from, r.to) {
            self.violation(
                "reports",
                format!("dev{dev} reported illegal {} -> {}", r.from, r.to),
            );
        }
        let seen = self.backend_reports.entry(dev).or_default();
        match seen.get(&r.seq) {
            Some(old) if *old == r => self.obs.duplicate_reports += 1,
            Some(old) => {
                let detail = format!(
                    "dev{dev} reused seq {} ({:?} then {:?})",
                    r.seq, old.to, r.to
                );
                self.violation("reports", detail);
            }
            None => {
                seen.insert(r.seq, r);
            }
        }
    }

    fn on_user(&mut self, dev: usize, action: UserAction) {
        let id = self.session_id.clone();
        let Some(agent) = self.devices[dev].agent.as_ref() else {
            return;
        };
        let ringing = agent.is_ringing(&id);
        let state = agent.call_state(&id);
        let app = match action {
            UserAction::Answer | UserAction::Decline | UserAction::Ignore if !ringing => return,
            UserAction::Answer => AppAction::Answer,
            UserAction::Decline => AppAction::Decline,
            UserAction::Ignore => AppAction::Ignore,
            UserAction::Hold
                if state == Some(CallState::Active) && self.devices[dev].platform.is_mobile() =>
            {
                AppAction::Hold
            }
            UserAction::HangUp
                if state.is_some_and(|s| {
                    !s.is_terminal()
                        && s != CallState::Disconnecting
                        && s != CallState::RingingInbound
                }) =>
            {
                AppAction::HangUp
            }
            UserAction::Hold | UserAction::HangUp => return,
        };
        self.log(|| format!("user on dev{dev}: {app:?}"));
        if app == AppAction::Answer {
            self.devices[dev].answered_at = Some(self.now);
            let p = self.devices[dev].plan.clone();
            if let Some(after) = p.hangup_after {
                self.at(
                    after,
                    Ev::User {
                        dev,
                        action: UserAction::HangUp,
                    },
                );
            }
            if let Some(after) = p.hold_after {
                self.at(
                    after,
                    Ev::User {
                        dev,
                        action: UserAction::Hold,
                    },
                );
            }
        }
        self.deliver_to_device(
            dev,
            DevInput::App {
                call_session_id: id,
                action: app,
            },
            None,
        );
    }

    fn on_kill(&mut self, dev: usize) {
        let d = &mut self.devices[dev];
        if d.agent.take().is_none() {
            return;
        }
        d.epoch += 1;
        d.leg = None;
        d.pending_answer = false;
        d.poll_gen += 1;
        d.ring_started = None;
        let restart = d.plan.faults.restart_after;
        self.log(|| format!("dev{dev} app KILLED (restart in {restart}ms)"));
        for ccid in self.telnyx.answered_legs_of(dev) {
            let delay = self.rng.gen_range(2_000..6_000);
            self.at(delay, Ev::LegLost(ccid));
        }
        self.at(restart, Ev::Restart(dev));
    }

    fn on_restart(&mut self, dev: usize) {
        let d = &self.devices[dev];
        let snapshot = Snapshot::from_json(&d.stored.to_json());
        let restored = snapshot.and_then(|s| {
            DeviceAgent::restore(
                &d.id,
                d.platform,
                agent_config(self.plan.device_poll_ms),
                s,
                Timestamp::from_millis(self.now),
            )
        });
        match restored {
            Ok((agent, fx)) => {
                self.devices[dev].agent = Some(agent);
                self.devices[dev].restarts += 1;
                self.log(|| format!("dev{dev} app restarted from its snapshot"));
                self.device_effects(dev, fx);
            }
            Err(e) => self.violation("snapshot", format!("dev{dev} could not restore: {e}")),
        }
    }
}

/// Node `node`'s dispatcher in its `boot`-th life: the production step dispatcher on the
/// shared store and engine, with the simulator's executor, a short lease, and retry jitter
/// seeded from the plan (so a seed replays).
fn node_dispatcher(
    plan: &Plan,
    store: &MemoryStore,
    engine: &Engine,
    clock: &Arc<ManualClock>,
    wire: &SharedWire,
    node: usize,
    boot: u32,
) -> Arc<StepDispatcher> {
    let store: Arc<dyn Store> = Arc::new(store.clone());
    let seed = plan.seed ^ ((node as u64) << 40) ^ (u64::from(boot) << 20);
    let runner = EffectRunner::new(store.clone(), engine.clone(), clock.clone())
        .with_ring_timeout(Duration::from_secs(u64::from(plan.ring_timeout_secs)))
        .with_seed(seed);
    let executor = Arc::new(SimExecutor { wire: wire.clone() });
    let dials = DialGate::new(Arc::new(DialLimiter::new(DialLimit::default())));
    let owner = format!("node{node}.{boot}");
    Arc::new(
        StepDispatcher::new(store, runner, executor, dials, owner)
            .with_lease(Duration::from_millis(LEASE_MS)),
    )
}

/// One claimed row run through the dispatcher, as a flight.
fn run_claimed(
    dispatcher: Arc<StepDispatcher>,
    entry: OutboxEntry,
    now: Timestamp,
) -> Pin<Box<dyn Future<Output = Done> + Send>> {
    Box::pin(async move { Done::Dispatched(dispatcher.run_claimed(&entry, now).await) })
}

/// The device agent configuration of a simulated device polling every `poll_ms`.
pub fn agent_config(poll_ms: u64) -> AgentConfig {
    AgentConfig {
        poll_interval_ms: poll_ms,
        ..AgentConfig::default()
    }
}

fn notify_input(
    event: &NotifyEvent,
    id: &CallSessionId,
    sent_at: Timestamp,
    via: Delivery,
) -> Option<DevInput> {
    Some(match event {
        NotifyEvent::IncomingCall { from, .. } => DevInput::IncomingCall {
            call_session_id: id.clone(),
            from: from.clone(),
            sent_at,
            via,
        },
        NotifyEvent::CallEnded { reason, .. } => DevInput::CallEnded {
            call_session_id: id.clone(),
            reason: reason.clone(),
            via,
        },
        NotifyEvent::CallStateChanged { device, state, .. } => {
            if via != Delivery::WebSocket {
                return None;
            }
            DevInput::CallStateChanged {
                call_session_id: id.clone(),
                device: device.clone(),
                state: *state,
            }
        }
    })
}

fn describe_input(input: &Input) -> String {
    match input {
        Input::Provider(p) => format!(
            "webhook {:?} on {}",
            p.kind,
            p.call_control_id.as_ref().map_or("?", |c| c.as_str())
        ),
        Input::DialResult { command_id, result } => format!("dial result {command_id} {result:?}"),
        Input::CommandResult { command_id, result } => {
            format!(
                "command result {command_id} {}",
                if result.is_ok() { "ok" } else { "error" }
            )
        }
        other => format!("{other:?}"),
    }
}

fn describe_dev_input(input: &DevInput) -> String {
    match input {
        DevInput::Sdk { state, cause, .. } => format!(
            "SDK {state:?}{}",
            cause
                .as_ref()
                .map_or(String::new(), |c| format!(" {:?}", c.classify()))
        ),
        DevInput::LegOffered { client_state, .. } => format!(
            "leg offered ({})",
            client_state
                .as_ref()
                .and_then(|cs| cs.direction)
                .map_or("incoming", |d| d.as_str())
        ),
        DevInput::IncomingCall { via, .. } => format!("incoming_call via {via:?}"),
        DevInput::CallEnded { reason, via, .. } => {
            format!("call_ended {} via {via:?}", reason.code())
        }
        DevInput::PollResult { status, .. } => format!("poll {:?}", status.status),
        DevInput::CallStateChanged { device, state, .. } => {
            format!("call_state_changed {state} on {device:?}")
        }
        DevInput::SdpReoffer { sdp, .. } => format!("SDP re-offer ({} bytes)", sdp.len()),
        DevInput::App { action, .. } => format!("app {action:?}"),
    }
}
