//! Exhaustive model check (stateright) of the answer race: K devices answer at once, each
//! answer webhook is handled by some coordinator node that loads the session, runs the real
//! [`Session::handle`], and commits with compare-and-set on the version; nodes crash before
//! committing (the webhook is redelivered) and after sending an outbox command but before
//! marking it done (it is sent again; Telnyx executes a `command_id` once).
//!
//! Properties, over every interleaving:
//! - **never two bridges**: at most one device is ever bridged to the caller;
//! - **winner recorded**: every bridged device is the session's recorded winner, in every
//!   later state too.
//!
//! [`AnswerRace::without_cas`] commits without comparing versions (last writer wins): the
//! mutation the check must catch.

use ringmaster_core::session::{
    Action as TelnyxAction, CallerAnswer, Command, Effect, Input, NewInbound, ProviderEvent,
    ProviderEventKind, RingTarget, Session, SessionConfig,
};
use ringmaster_core::{CallControlId, CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use stateright::{Checker, Model, Property};
use std::collections::BTreeSet;

const NOW: Timestamp = Timestamp::from_millis(10_000);

/// The model: K answering devices, a crash budget, and whether the store compares versions.
#[derive(Clone, Debug)]
pub struct AnswerRace {
    /// Devices answering at once.
    pub devices: usize,
    /// Node crashes allowed in one execution (before a commit, or after a send).
    pub crashes: u8,
    /// Whether commits compare the loaded version (the real store does).
    pub compare_and_set: bool,
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
            initial,
        })
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
        state.version += 1;
        state.doc = serde_json::to_string(&session).unwrap_or_default();
        state.winner = session
            .answered_device()
            .and_then(|d| (0..self.devices).find(|&i| device_id(i) == *d));
        state.processed.insert(w);
        for e in effects {
            if let Effect::Telnyx(Command {
                command_id,
                action: TelnyxAction::Bridge { to_ccid, .. },
                ..
            }) = e
            {
                if let Some(device) = (0..self.devices).find(|&i| leg(i) == to_ccid) {
                    state.outbox.push(Outboxed {
                        command_id,
                        device,
                        done: false,
                    });
                }
            }
        }
        state.workers[w] = Worker::Done;
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
            }
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
                if state.executed.insert(entry.command_id.clone()) {
                    state.bridged.insert(entry.device);
                }
                if matches!(action, RaceAction::Dispatch(_)) {
                    state.outbox[i].done = true;
                } else {
                    state.crashes_left -= 1;
                }
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("never two bridges", |_, s: &RaceState| s.bridged.len() <= 1),
            Property::always("winner recorded", |_, s: &RaceState| {
                s.bridged.iter().all(|d| s.winner == Some(*d))
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

/// Checks the race exhaustively and reports.
pub fn check(devices: usize, crashes: u8, compare_and_set: bool) -> Result<ModelReport, String> {
    let mut model = AnswerRace::new(devices, crashes)?;
    if !compare_and_set {
        model = model.without_cas();
    }
    let checker = model.check();
    let counterexamples = ["never two bridges", "winner recorded"]
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
        devices,
        crashes,
        compare_and_set,
        unique_states: checker.unique_state_count(),
        counterexamples,
        bridge_reachable: checker.discovery("a bridge happens").is_some(),
    })
}
