//! Exhaustive model check (stateright) of the answer race: K devices answer at once, each
//! answer webhook is handled by some coordinator node that loads the session, runs the real
//! [`Session::handle`], and commits with compare-and-set on the version; nodes crash before
//! committing (the webhook is redelivered) and after sending an outbox command but before
//! marking it done (it is sent again; Telnyx executes a `command_id` once).
//!
//! The caller may hang up at any point (its webhook handled like the others), and Telnyx may
//! refuse a bridge (the session retries once after its delay, then gives up).
//!
//! Properties, over every interleaving:
//! - **never two bridges**: at most one device is ever bridged to the caller;
//! - **winner recorded**: every bridged device is the session's recorded winner, in every
//!   later state too;
//! - **nothing bridged after the caller left**: once the caller's hangup is committed, no
//!   commit puts a bridge in the outbox;
//! - **at most two bridge attempts**.
//!
//! [`AnswerRace::without_cas`] commits without comparing versions (last writer wins): the
//! mutation the check must catch. It shows up as a wrong recorded winner; with
//! [`AnswerRace::with_worker_command_ids`] (each worker makes up its own command id, as a
//! driver drawing random ids would) Telnyx no longer folds the racing bridges into one, and the
//! same mutation bridges two devices.

use ringmaster_core::session::{
    Action as TelnyxAction, CallerAnswer, Command, CommandError, Effect, HangupCause, HangupSource,
    Input, NewInbound, ProviderEvent, ProviderEventKind, RingTarget, Session, SessionConfig,
    DEFAULT_BRIDGE_RETRY_DELAY_MS,
};
use ringmaster_core::{CallControlId, CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use stateright::{Checker, Model, Property};
use std::collections::BTreeSet;

const NOW: Timestamp = Timestamp::from_millis(10_000);
/// When timer ticks run: after any bridge retry delay, before any other deadline.
const LATER: Timestamp = Timestamp::from_millis(10_000 + 2 * DEFAULT_BRIDGE_RETRY_DELAY_MS);

/// The model: K answering devices, a crash budget, and whether the store compares versions.
#[derive(Clone, Debug)]
pub struct AnswerRace {
    /// Devices answering at once.
    pub devices: usize,
    /// Node crashes allowed in one execution (before a commit, or after a send).
    pub crashes: u8,
    /// Whether commits compare the loaded version (the real store does).
    pub compare_and_set: bool,
    /// Whether each worker gives its commands an id of its own instead of the session's
    /// deterministic one (the mutant that lets Telnyx execute racing bridges twice).
    pub worker_command_ids: bool,
    /// Whether the caller may hang up.
    pub caller_hangup: bool,
    /// How many bridge commands Telnyx may refuse.
    pub bridge_failures: u8,
    initial: String,
}

/// One coordinator worker handling one device's `call.answered` webhook.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Worker {
    /// Waiting to (re)load the session.
    Idle,
    /// Loaded this version of the session document.
    Loaded {
        /// Version read.
        version: u64,
        /// Session JSON read.
        doc: String,
    },
    /// The webhook is handled (committed or found a duplicate).
    Done,
}

/// A bridge command in the outbox.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Outboxed {
    /// Idempotency key sent to Telnyx.
    pub command_id: String,
    /// The device leg bridged to the caller.
    pub device: usize,
    /// Marked dispatched.
    pub done: bool,
}

/// A state of the race.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RaceState {
    /// Store: session version.
    pub version: u64,
    /// Store: session document.
    pub doc: String,
    /// Store: the session's recorded winner.
    pub winner: Option<usize>,
    /// Store: answer webhooks committed (the dedupe keys).
    pub processed: BTreeSet<usize>,
    /// Store: outbox bridge commands.
    pub outbox: Vec<Outboxed>,
    /// One worker per answering device.
    pub workers: Vec<Worker>,
    /// Telnyx: command ids executed.
    pub executed: BTreeSet<String>,
    /// Telnyx: devices bridged to the caller.
    pub bridged: BTreeSet<usize>,
    /// Crashes left.
    pub crashes_left: u8,
    /// Bridge refusals left.
    pub failures_left: u8,
    /// Telnyx: the caller hung up.
    pub caller_gone: bool,
    /// Store: the caller's hangup is committed.
    pub hangup_committed: bool,
    /// A commit after the caller's hangup put a bridge in the outbox.
    pub bridge_after_hangup: bool,
    /// Distinct bridge commands ever put in the outbox.
    pub bridge_attempts: usize,
}

/// A step of the race.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum RaceAction {
    /// Worker `w` loads the session.
    Load(usize),
    /// Worker `w` handles its webhook and commits.
    Commit(usize),
    /// Worker `w`'s node crashes before committing; the webhook will be redelivered.
    CrashBeforeCommit(usize),
    /// The dispatcher sends outbox entry `i` and marks it done.
    Dispatch(usize),
    /// The dispatcher sends outbox entry `i` and crashes before marking it done.
    DispatchThenCrash(usize),
    /// Telnyx refuses outbox entry `i`; the error comes back to the session.
    DispatchFails(usize),
    /// The caller hangs up; its webhook is handled.
    CallerHangup,
    /// The session's timer fires (a bridge retry is due).
    Tick,
}

fn device_id(i: usize) -> DeviceId {
    DeviceId::new(format!("dev-{i}"))
}

fn leg(i: usize) -> CallControlId {
    CallControlId::new(format!("leg-{i}"))
}

/// A ringing session with the caller answered and every device leg's id known: the moment
/// before the answers.
fn ringing_session(devices: usize) -> Result<Session, String> {
    let mut s = Session::new_inbound(
        NewInbound {
            id: CallSessionId::new("race"),
            tenant: TenantId::new("t"),
            user: UserId::new("u"),
            caller_leg: CallControlId::new("caller"),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            devices: (0..devices)
                .map(|i| RingTarget {
                    device_id: device_id(i),
                    sip_uri: format!("sip:dev-{i}@sip.telnyx.com"),
                    platform: "android".into(),
                })
                .collect(),
            busy: false,
            config: SessionConfig {
                caller_answer: CallerAnswer::Immediately,
                ..SessionConfig::default()
            },
        },
        NOW,
    )
    .map_err(|e| e.to_string())?;
    let start = s.handle(Input::Start, NOW).map_err(|e| e.to_string())?;
    let mut dial = 0;
    for e in start {
        let Effect::Telnyx(Command {
            command_id, action, ..
        }) = e
        else {
            continue;
        };
        let input = match action {
            TelnyxAction::Dial { .. } => {
                let ccid = leg(dial);
                dial += 1;
                Input::DialResult {
                    command_id,
                    result: Ok(ccid),
                }
            }
            _ => Input::CommandResult {
                command_id,
                result: Ok(()),
            },
        };
        s.handle(input, NOW).map_err(|e| e.to_string())?;
    }
    Ok(s)
}

impl AnswerRace {
    /// The race between `devices` answers with up to `crashes` node crashes, checked against
    /// the real store semantics (compare-and-set on).
    pub fn new(devices: usize, crashes: u8) -> Result<Self, String> {
        let initial =
            serde_json::to_string(&ringing_session(devices)?).map_err(|e| e.to_string())?;
        Ok(Self {
            devices,
            crashes,
            compare_and_set: true,
            worker_command_ids: false,
            caller_hangup: false,
            bridge_failures: 0,
            initial,
        })
    }

    /// Lets the caller hang up at any point, and Telnyx refuse up to `bridge_failures` bridges.
    pub fn with_hangup_and_failures(mut self, bridge_failures: u8) -> Self {
        self.caller_hangup = true;
        self.bridge_failures = bridge_failures;
        self
    }

    /// The mutant: each worker makes up its own command ids.
    pub fn with_worker_command_ids(mut self) -> Self {
        self.worker_command_ids = true;
        self
    }

    /// The mutation: commits overwrite whatever is stored, without comparing versions.
    pub fn without_cas(mut self) -> Self {
        self.compare_and_set = false;
        self
    }

    /// Runs the checker to completion (breadth first, one thread).
    pub fn check(self) -> impl Checker<Self> {
        self.checker().spawn_bfs().join()
    }

    fn commit(&self, state: &mut RaceState, w: usize, version: u64, doc: &str) {
        let Ok(mut session) = serde_json::from_str::<Session>(doc) else {
            return;
        };
        let event = ProviderEvent::new(leg(w), None, ProviderEventKind::Answered);
        let Ok(effects) = session.handle(Input::Provider(event), NOW) else {
            // Refused input: nothing to commit, the webhook is dropped.
            state.workers[w] = Worker::Done;
            return;
        };
        if state.processed.contains(&w) {
            state.workers[w] = Worker::Done;
            return;
        }
        if self.compare_and_set && version != state.version {
            // Conflict: reload and handle again.
            state.workers[w] = Worker::Idle;
            return;
        }
        state.processed.insert(w);
        self.store(state, &session, effects, Some(w));
        state.workers[w] = Worker::Done;
    }

    /// Writes `session` with `effects` as the next version; `worker` names the worker whose
    /// commit it is (for the mutant's command ids).
    fn store(
        &self,
        state: &mut RaceState,
        session: &Session,
        effects: Vec<Effect>,
        worker: Option<usize>,
    ) {
        state.version += 1;
        state.doc = serde_json::to_string(session).unwrap_or_default();
        state.winner = session
            .answered_device()
            .and_then(|d| (0..self.devices).find(|&i| device_id(i) == *d));
        for e in effects {
            if let Effect::Telnyx(Command {
                command_id,
                action: TelnyxAction::Bridge { to_ccid, .. },
                ..
            }) = e
            {
                if let Some(device) = (0..self.devices).find(|&i| leg(i) == to_ccid) {
                    let command_id = match worker.filter(|_| self.worker_command_ids) {
                        Some(w) => format!("{command_id}@worker-{w}"),
                        None => command_id,
                    };
                    state.bridge_after_hangup |= state.hangup_committed;
                    state.bridge_attempts += 1;
                    state.outbox.push(Outboxed {
                        command_id,
                        device,
                        done: false,
                    });
                }
            }
        }
    }

    /// Handles `input` on the stored session in one step (a node that loads, handles and
    /// commits with nothing in between; with compare-and-set that is what any interleaving
    /// of it amounts to). A refused input changes nothing.
    fn apply(&self, state: &mut RaceState, input: Input, at: Timestamp) {
        let Ok(mut session) = serde_json::from_str::<Session>(&state.doc) else {
            return;
        };
        if let Ok(effects) = session.handle(input, at) {
            self.store(state, &session, effects, None);
        }
    }
}

impl AnswerRace {
    /// Telnyx refused a bridge: the error goes back to the session under the session's own
    /// command id (the mutant's suffix is the worker's, not the session's).
    fn refused(&self, state: &mut RaceState, entry: &Outboxed, error: CommandError) {
        let command_id = entry
            .command_id
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned();
        let input = Input::CommandResult {
            command_id,
            result: Err(error),
        };
        self.apply(state, input, NOW);
    }
}

impl Model for AnswerRace {
    type State = RaceState;
    type Action = RaceAction;

    fn init_states(&self) -> Vec<RaceState> {
        vec![RaceState {
            version: 1,
            doc: self.initial.clone(),
            winner: None,
            processed: BTreeSet::new(),
            outbox: Vec::new(),
            workers: vec![Worker::Idle; self.devices],
            executed: BTreeSet::new(),
            bridged: BTreeSet::new(),
            crashes_left: self.crashes,
            failures_left: self.bridge_failures,
            caller_gone: false,
            hangup_committed: false,
            bridge_after_hangup: false,
            bridge_attempts: 0,
        }]
    }

    fn actions(&self, state: &RaceState, actions: &mut Vec<RaceAction>) {
        for (w, worker) in state.workers.iter().enumerate() {
            match worker {
                Worker::Idle => actions.push(RaceAction::Load(w)),
                Worker::Loaded { .. } => {
                    actions.push(RaceAction::Commit(w));
                    if state.crashes_left > 0 {
                        actions.push(RaceAction::CrashBeforeCommit(w));
                    }
                }
                Worker::Done => {}
            }
        }
        for (i, entry) in state.outbox.iter().enumerate() {
            if !entry.done {
                actions.push(RaceAction::Dispatch(i));
                if state.crashes_left > 0 {
                    actions.push(RaceAction::DispatchThenCrash(i));
                }
                if state.failures_left > 0 {
                    actions.push(RaceAction::DispatchFails(i));
                }
            }
        }
        if self.caller_hangup && !state.caller_gone {
            actions.push(RaceAction::CallerHangup);
        }
        let due = serde_json::from_str::<Session>(&state.doc)
            .ok()
            .and_then(|s| s.next_deadline())
            .is_some_and(|d| d <= LATER);
        if due {
            actions.push(RaceAction::Tick);
        }
    }

    fn next_state(&self, last: &RaceState, action: RaceAction) -> Option<RaceState> {
        let mut state = last.clone();
        match action {
            RaceAction::Load(w) => {
                state.workers[w] = if state.processed.contains(&w) {
                    // The redelivered webhook is a duplicate.
                    Worker::Done
                } else {
                    Worker::Loaded {
                        version: state.version,
                        doc: state.doc.clone(),
                    }
                };
            }
            RaceAction::Commit(w) => {
                let Worker::Loaded { version, doc } = state.workers[w].clone() else {
                    return None;
                };
                self.commit(&mut state, w, version, &doc);
            }
            RaceAction::CrashBeforeCommit(w) => {
                state.crashes_left -= 1;
                state.workers[w] = Worker::Idle;
            }
            RaceAction::Dispatch(i) | RaceAction::DispatchThenCrash(i) => {
                let entry = state.outbox[i].clone();
                let fresh = state.executed.insert(entry.command_id.clone());
                if fresh && state.caller_gone {
                    // Telnyx refuses to bridge a leg that is gone.
                    state.outbox[i].done = true;
                    let error = CommandError::call_ended("call has already ended");
                    self.refused(&mut state, &entry, error);
                    return Some(state);
                }
                if fresh {
                    state.bridged.insert(entry.device);
                }
                if matches!(action, RaceAction::Dispatch(_)) {
                    state.outbox[i].done = true;
                } else {
                    state.crashes_left -= 1;
                }
            }
            RaceAction::DispatchFails(i) => {
                let entry = state.outbox[i].clone();
                state.failures_left -= 1;
                state.outbox[i].done = true;
                if !state.executed.insert(entry.command_id.clone()) {
                    // Already executed once: Telnyx answers the repeat with the first result.
                    return Some(state);
                }
                self.refused(
                    &mut state,
                    &entry,
                    CommandError::new("90034", "not bridged"),
                );
            }
            RaceAction::CallerHangup => {
                state.caller_gone = true;
                let event = ProviderEvent::new(
                    "caller",
                    None,
                    ProviderEventKind::Hangup {
                        cause: HangupCause::NormalClearing,
                        source: HangupSource::Caller,
                        quality: None,
                    },
                );
                self.apply(&mut state, Input::Provider(event), NOW);
                state.hangup_committed = true;
            }
            RaceAction::Tick => self.apply(&mut state, Input::Tick, LATER),
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("never two bridges", |_, s: &RaceState| s.bridged.len() <= 1),
            Property::always("winner recorded", |_, s: &RaceState| {
                s.bridged.iter().all(|d| s.winner == Some(*d))
            }),
            Property::always(
                "nothing bridged after the caller left",
                |_, s: &RaceState| !s.bridge_after_hangup,
            ),
            Property::always("at most two bridge attempts", |_, s: &RaceState| {
                s.bridge_attempts <= 2
            }),
            Property::sometimes("a bridge happens", |_, s: &RaceState| !s.bridged.is_empty()),
        ]
    }
}

/// What one model check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelReport {
    /// Devices answering.
    pub devices: usize,
    /// Crash budget.
    pub crashes: u8,
    /// Whether compare-and-set was on.
    pub compare_and_set: bool,
    /// Distinct states explored.
    pub unique_states: usize,
    /// Properties that failed, with the counterexample's actions.
    pub counterexamples: Vec<(String, Vec<String>)>,
    /// Whether a bridge is reachable at all (sanity).
    pub bridge_reachable: bool,
}

/// Which model to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelOptions {
    /// Devices answering.
    pub devices: usize,
    /// Crash budget.
    pub crashes: u8,
    /// Whether commits compare versions.
    pub compare_and_set: bool,
    /// The mutant with per-worker command ids.
    pub worker_command_ids: bool,
    /// Caller hangup on, with this many bridge refusals (`None`: neither).
    pub hangup_and_failures: Option<u8>,
}

/// The properties whose failure is a counterexample.
const SAFETY: [&str; 4] = [
    "never two bridges",
    "winner recorded",
    "nothing bridged after the caller left",
    "at most two bridge attempts",
];

/// Checks the race exhaustively and reports.
pub fn check(devices: usize, crashes: u8, compare_and_set: bool) -> Result<ModelReport, String> {
    check_with(ModelOptions {
        devices,
        crashes,
        compare_and_set,
        worker_command_ids: false,
        hangup_and_failures: None,
    })
}

/// Checks the model `options` describes exhaustively and reports.
pub fn check_with(options: ModelOptions) -> Result<ModelReport, String> {
    let mut model = AnswerRace::new(options.devices, options.crashes)?;
    if !options.compare_and_set {
        model = model.without_cas();
    }
    if options.worker_command_ids {
        model = model.with_worker_command_ids();
    }
    if let Some(failures) = options.hangup_and_failures {
        model = model.with_hangup_and_failures(failures);
    }
    let checker = model.check();
    let counterexamples = SAFETY
        .into_iter()
        .filter_map(|name| {
            checker.discovery(name).map(|path| {
                let steps = path
                    .into_actions()
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect();
                (name.to_owned(), steps)
            })
        })
        .collect();
    Ok(ModelReport {
        devices: options.devices,
        crashes: options.crashes,
        compare_and_set: options.compare_and_set,
        unique_states: checker.unique_state_count(),
        counterexamples,
        bridge_reachable: checker.discovery("a bridge happens").is_some(),
    })
}
