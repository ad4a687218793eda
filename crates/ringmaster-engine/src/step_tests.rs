//! The step dispatcher on the in-memory store, a fake executor and a manual clock: lanes in
//! order, a provider's `Retry-After` honoured, a setup give-up reported to its session,
//! releases retried until confirmed, a dead node's rows taken after their lease.

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::dial_limit::{DialLimit, DialLimiter};
use crate::engine::{build_commit, Created, Engine, Step};
use crate::executor::{CommandAttempt, NotifyAttempt};
use crate::retry::SETUP_ATTEMPTS;
use async_trait::async_trait;
use ringmaster_core::session::{
    Action, Command, CommandError, Input, NewInbound, Notification, RingTarget, Session,
    SessionConfig,
};
use ringmaster_core::{CallControlId, DeviceId, TenantId, UserId};
use ringmaster_store::{MemoryStore, OutboxEntry};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::Notify;

/// How the fake provider answers.
#[derive(Default)]
struct Script {
    /// Transient failures left per Telnyx action name, answered 503.
    fail_commands: HashMap<&'static str, u32>,
    /// Transient failures left for notifications, with the provider's `Retry-After`.
    fail_notify: Option<(u32, Duration)>,
}

/// Records every attempt and answers per its [`Script`].
#[derive(Default)]
struct Fake {
    script: Mutex<Script>,
    attempts: Mutex<Vec<String>>,
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Dial { .. } => "dial",
        Action::Hangup { .. } => "hangup",
        Action::Reject { .. } => "reject",
        Action::Answer { .. } => "answer",
        Action::Bridge { .. } => "bridge",
        _ => "other",
    }
}

#[async_trait]
impl EffectExecutor for Fake {
    async fn command(&self, _entry: &OutboxEntry, command: &Command) -> CommandAttempt {
        let name = action_name(&command.action);
        self.attempts.lock().unwrap().push(name.to_owned());
        let mut script = self.script.lock().unwrap();
        let answer = |result: Result<(), CommandError>| match &command.action {
            Action::Dial { .. } => Input::DialResult {
                command_id: command.command_id.clone(),
                result: result.map(|()| CallControlId::new(format!("v3:{}", command.command_id))),
            },
            _ => Input::CommandResult {
                command_id: command.command_id.clone(),
                result,
            },
        };
        match script.fail_commands.get_mut(name) {
            Some(left) if *left > 0 => {
                *left -= 1;
                let error = CommandError {
                    code: None,
                    message: "503".into(),
                };
                CommandAttempt::Transient {
                    message: "503 from Telnyx".into(),
                    retry_after: None,
                    given_up: answer(Err(error)),
                }
            }
            _ => CommandAttempt::Answered(answer(Ok(()))),
        }
    }

    async fn notify(&self, _entry: &OutboxEntry, n: &Notification) -> NotifyAttempt {
        self.attempts
            .lock()
            .unwrap()
            .push(n.event.name().to_owned());
        let mut script = self.script.lock().unwrap();
        match &mut script.fail_notify {
            Some((left, retry_after)) if *left > 0 => {
                *left -= 1;
                NotifyAttempt::Temporary {
                    message: "503 from the push provider".into(),
                    retry_after: Some(*retry_after),
                }
            }
            _ => NotifyAttempt::Delivered,
        }
    }
}

struct Rig {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    engine: Engine,
    fake: Arc<Fake>,
    dispatcher: StepDispatcher,
}

const LEASE: Duration = Duration::from_secs(30);

impl Rig {
    fn new(script: Script) -> Self {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
        let engine = Engine::new(store.clone(), clock.clone(), Arc::new(Notify::new()));
        let fake = Arc::new(Fake {
            script: Mutex::new(script),
            attempts: Mutex::default(),
        });
        let runner = EffectRunner::new(store.clone(), engine.clone(), clock.clone()).with_seed(7);
        let dials = DialGate::new(Arc::new(DialLimiter::new(DialLimit::default())));
        let dispatcher = StepDispatcher::new(store.clone(), runner, fake.clone(), dials, "node-a")
            .with_lease(LEASE);
        Self {
            store,
            clock,
            engine,
            fake,
            dispatcher,
        }
    }

    /// A ringing inbound call to one device; its opening effects stay in the outbox.
    async fn call(&self, id: &str) -> CallSessionId {
        let new = NewInbound {
            id: CallSessionId::new(id),
            tenant: TenantId::new("t"),
            user: UserId::new("u"),
            caller_leg: CallControlId::new(format!("caller-{id}")),
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            devices: vec![RingTarget {
                device_id: DeviceId::new("phone"),
                sip_uri: "sip:phone@sip.telnyx.com".into(),
                platform: "ios".into(),
            }],
            busy: false,
            config: SessionConfig::default(),
        };
        let session = Session::new_inbound(new, self.clock.now()).unwrap();
        let created = self.engine.create(session, None, Vec::new()).await.unwrap();
        assert!(matches!(created, Created::Committed(_)));
        CallSessionId::new(id)
    }

    /// Commits `effects` to the session's outbox, as if the session had produced them.
    async fn queue(&self, id: &CallSessionId, effects: Vec<Effect>) {
        let (session, version) = self.engine.load(id).await.unwrap().unwrap();
        let step = Step {
            effects,
            timeline: Vec::new(),
        };
        let commit = build_commit(&session, Some(version), step, None, self.clock.now()).unwrap();
        self.store.commit(commit).await.unwrap();
    }

    async fn step(&self) -> Vec<Dispatched> {
        self.dispatcher
            .dispatch_due(self.clock.now())
            .await
            .unwrap()
    }

    /// Steps until nothing is due, moving the clock to each retry; every step's outcomes.
    async fn run_until_idle(&self) -> Vec<Dispatched> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let done = self.step().await;
            if done.is_empty() {
                let next = self
                    .store
                    .pending_effects(1_000)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.lane != Lane::Host)
                    .map(|e| e.next_attempt_at)
                    .min();
                match next {
                    Some(at) if at > self.clock.now() => self.clock.set(at),
                    _ => return all,
                }
            }
            all.extend(done);
        }
        panic!("the outbox never settled")
    }

    fn attempts(&self, what: &str) -> usize {
        self.fake
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| *a == what)
            .count()
    }

    async fn pending_in(&self, lane: Lane) -> usize {
        let pending = self.store.pending_effects(1_000).await.unwrap();
        pending.iter().filter(|e| e.lane == lane).count()
    }
}

fn hangup(id: &CallSessionId, ccid: &str) -> Effect {
    Effect::Telnyx(Command {
        call_session_id: id.clone(),
        command_id: format!("{id}:test-hangup"),
        action: Action::Hangup {
            ccid: CallControlId::new(ccid),
        },
    })
}

#[tokio::test]
async fn releases_go_first_then_setup_then_notifications() {
    let rig = Rig::new(Script::default());
    let id = rig.call("c1").await;
    rig.queue(&id, vec![hangup(&id, "v3:gone")]).await;
    let done = rig.step().await;
    assert!(done.iter().any(|d| d.lane == Lane::Release));
    assert!(done.iter().any(|d| d.lane == Lane::Setup));
    let order: Vec<usize> = done
        .iter()
        .map(|d| Lane::ALL.iter().position(|l| *l == d.lane).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
}

#[tokio::test]
async fn a_notification_waits_out_the_providers_retry_after() {
    let retry_after = Duration::from_secs(20);
    let rig = Rig::new(Script {
        fail_notify: Some((1, retry_after)),
        ..Script::default()
    });
    rig.call("c1").await;
    let start = rig.clock.now();
    let first = rig.step().await;
    let retry_at = first
        .iter()
        .find_map(|d| match d.outcome {
            StepOutcome::Attempted(Recorded::Retry(at)) => Some(at),
            _ => None,
        })
        .expect("the failed notification is retried");
    assert!(retry_at >= start + retry_after);
    // Not before its time.
    rig.clock.set(retry_at - Duration::from_secs(1));
    assert!(rig.step().await.is_empty());
    rig.clock.set(retry_at);
    let second = rig.step().await;
    assert!(second
        .iter()
        .all(|d| d.outcome == StepOutcome::Attempted(Recorded::Done)));
    assert!(!second.is_empty());
}

#[tokio::test]
async fn an_incoming_call_that_would_retry_past_the_ring_timeout_is_given_up() {
    let rig = Rig::new(Script {
        fail_notify: Some((u32::MAX, Duration::from_secs(3_600))),
        ..Script::default()
    });
    rig.call("c1").await;
    let done = rig.step().await;
    let tried = rig.attempts("incoming_call");
    assert!(tried > 0);
    assert!(done
        .iter()
        .any(|d| d.outcome == StepOutcome::Attempted(Recorded::Abandoned)));
    // Nothing is left to ring the device later.
    rig.run_until_idle().await;
    assert_eq!(rig.attempts("incoming_call"), tried);
}

#[tokio::test]
async fn a_dial_given_up_is_reported_to_the_session() {
    let rig = Rig::new(Script {
        fail_commands: HashMap::from([("dial", u32::MAX)]),
        ..Script::default()
    });
    let id = rig.call("c1").await;
    let (_, before) = rig.engine.load(&id).await.unwrap().unwrap();
    rig.run_until_idle().await;
    assert_eq!(rig.attempts("dial"), SETUP_ATTEMPTS as usize);
    // The session took the failed dial as an input (a new version), and with its only device
    // unreachable it lets the caller go.
    let (_, after) = rig.engine.load(&id).await.unwrap().unwrap();
    assert!(after > before);
    assert!(rig.attempts("hangup") + rig.attempts("reject") > 0);
}

#[tokio::test]
async fn a_release_is_retried_until_telnyx_confirms() {
    let failures = 3 * SETUP_ATTEMPTS;
    let rig = Rig::new(Script {
        fail_commands: HashMap::from([("hangup", failures)]),
        ..Script::default()
    });
    let id = rig.call("c1").await;
    rig.queue(&id, vec![hangup(&id, "v3:device-leg")]).await;
    rig.run_until_idle().await;
    assert_eq!(rig.attempts("hangup"), failures as usize + 1);
    assert_eq!(rig.pending_in(Lane::Release).await, 0);
}

#[tokio::test]
async fn rows_a_dead_node_claimed_go_out_after_its_lease() {
    let rig = Rig::new(Script::default());
    rig.call("c1").await;
    let now = rig.clock.now();
    // Another node claims everything and dies before sending.
    for lane in Lane::ALL {
        rig.store
            .claim_due_effects(lane, now, 100, "node-b", now + LEASE)
            .await
            .unwrap();
    }
    assert!(rig.step().await.is_empty());
    rig.clock.set(now + LEASE);
    let done = rig.step().await;
    assert!(!done.is_empty());
    assert!(done
        .iter()
        .all(|d| d.outcome == StepOutcome::Attempted(Recorded::Done)));
}
