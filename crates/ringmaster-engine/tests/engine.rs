//! The engine on the in-memory store, driven without a tokio runtime (as the simulator drives
//! it): creation, the compare-and-set path, timers by the clock, and the busy rule.

use futures::executor::block_on;
use ringmaster_core::session::{
    Action, ClientStateRef, Command, Effect, Input, NewInbound, ProviderEvent, ProviderEventKind,
    RejectCause, RingTarget, Session, SessionConfig, SessionStatus, LEG_DEVICE,
};
use ringmaster_core::{
    CallControlId, CallSessionId, CallState, DeviceId, TenantId, Timestamp, UserId,
};
use ringmaster_engine::{Applied, Clock, Created, Engine, EngineError, ManualClock};
use ringmaster_store::{ActiveCall, Commit, MemoryStore, RegistryChange, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const START: u64 = 1_700_000_000_000;

struct Rig {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    engine: Engine,
}

fn rig() -> Rig {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(START)));
    let engine = Engine::new(store.clone(), clock.clone(), Arc::new(Notify::new()));
    Rig {
        store,
        clock,
        engine,
    }
}

/// A new inbound call `id` for `user` ringing one web device, ring timeout 30 s.
fn call(rig: &Rig, id: &str, user: &str) -> Session {
    let new = NewInbound {
        id: CallSessionId::new(id),
        tenant: TenantId::new("t"),
        user: UserId::new(user),
        caller_leg: CallControlId::new(format!("caller-{id}")),
        from: "+15550001111".into(),
        to: "+15550002222".into(),
        devices: vec![RingTarget {
            device_id: DeviceId::new(format!("web-{id}")),
            sip_uri: format!("sip:web-{id}@sip.telnyx.com"),
            platform: "web".into(),
        }],
        busy: false,
        config: SessionConfig {
            ring_timeout_secs: 30,
            ..SessionConfig::default()
        },
    };
    Session::new_inbound(new, rig.clock.now()).unwrap()
}

/// The Telnyx commands `id` has in its outbox.
fn commands(rig: &Rig, id: &str) -> Vec<Command> {
    block_on(rig.store.pending_effects(1_000))
        .unwrap()
        .into_iter()
        .filter(|e| e.session_id.as_str() == id)
        .filter_map(|e| match serde_json::from_value(e.effect) {
            Ok(Effect::Telnyx(c)) => Some(c),
            _ => None,
        })
        .collect()
}

fn status(rig: &Rig, id: &str) -> SessionStatus {
    let (session, _) = block_on(rig.engine.load(&CallSessionId::new(id)))
        .unwrap()
        .unwrap();
    session.status()
}

#[test]
fn a_call_is_created_once_and_dials_its_device() {
    let rig = rig();
    let created = block_on(rig.engine.create(call(&rig, "c1", "u1"), None, Vec::new())).unwrap();
    assert!(matches!(created, Created::Committed(_)));
    assert!(commands(&rig, "c1")
        .iter()
        .any(|c| matches!(c.action, Action::Dial { .. })));
    // A redelivered call.initiated finds the session there.
    let again = block_on(rig.engine.create(call(&rig, "c1", "u1"), None, Vec::new())).unwrap();
    assert!(matches!(again, Created::Exists));
}

#[test]
fn an_input_to_an_unknown_session_is_an_error_and_writes_nothing() {
    let rig = rig();
    let id = CallSessionId::new("nobody");
    let result = block_on(rig.engine.apply(&id, Input::Tick, None));
    assert!(matches!(result, Err(EngineError::UnknownSession(i)) if i == id));
    assert!(block_on(rig.store.load_session(&id)).unwrap().is_none());
}

#[test]
fn the_ring_timeout_fires_by_the_engines_clock() {
    let rig = rig();
    block_on(rig.engine.create(call(&rig, "c1", "u1"), None, Vec::new())).unwrap();
    let id = CallSessionId::new("c1");
    let early = block_on(rig.engine.apply(&id, Input::Tick, None)).unwrap();
    assert!(matches!(early, Applied::Unchanged(_)), "{early:?}");
    assert_eq!(status(&rig, "c1"), SessionStatus::Ringing);

    rig.clock.advance(Duration::from_secs(31));
    let late = block_on(rig.engine.apply(&id, Input::Tick, None)).unwrap();
    assert!(matches!(late, Applied::Committed(_)), "{late:?}");
    assert_ne!(status(&rig, "c1"), SessionStatus::Ringing);
}

#[test]
fn an_input_already_processed_is_a_duplicate() {
    let rig = rig();
    block_on(rig.engine.create(call(&rig, "c1", "u1"), None, Vec::new())).unwrap();
    let id = CallSessionId::new("c1");
    rig.clock.advance(Duration::from_secs(31));
    let key = Some("webhook-1".to_owned());
    let first = block_on(rig.engine.apply(&id, Input::Tick, key.clone())).unwrap();
    assert!(matches!(first, Applied::Committed(_)), "{first:?}");
    let version = block_on(rig.store.load_session(&id))
        .unwrap()
        .unwrap()
        .version;
    // The same key again: whatever the session would do, nothing more is written.
    rig.clock.advance(Duration::from_secs(60));
    let second = block_on(rig.engine.apply(&id, Input::Tick, key)).unwrap();
    assert!(
        matches!(second, Applied::Duplicate | Applied::Unchanged(_)),
        "{second:?}"
    );
    let after = block_on(rig.store.load_session(&id))
        .unwrap()
        .unwrap()
        .version;
    assert_eq!(after, version);
}

/// The busy rule: the user is on another call (no call waiting) when a device answers a second
/// call. The store refuses the second active-call entry; the engine tells the session
/// (`Input::RegistryBusy`) and runs the answer again, so the caller is turned away busy and the
/// other call keeps the user's entry.
#[test]
fn an_answer_the_registry_refuses_turns_the_caller_away_busy() {
    let rig = rig();
    let now = rig.clock.now();
    // The user's other call, already connected.
    let mut other = Commit::new(
        CallSessionId::new("other"),
        UserId::new("u1"),
        None,
        serde_json::json!({ "elsewhere": true }),
        "bridged",
        now,
    );
    other.registry.push(RegistryChange::Set(ActiveCall {
        user_id: UserId::new("u1"),
        call_session_id: CallSessionId::new("other"),
        device_id: Some(DeviceId::new("phone")),
        started_at: now,
        platform: Some("ios".into()),
        state: CallState::Active,
        since: now,
    }));
    block_on(rig.store.commit(other)).unwrap();

    block_on(rig.engine.create(call(&rig, "c2", "u1"), None, Vec::new())).unwrap();
    let id = CallSessionId::new("c2");
    let dial = commands(&rig, "c2")
        .into_iter()
        .find(|c| matches!(c.action, Action::Dial { .. }))
        .expect("the device is dialled");
    let leg = CallControlId::new("leg-web-c2");
    block_on(rig.engine.apply(
        &id,
        Input::DialResult {
            command_id: dial.command_id,
            result: Ok(leg.clone()),
        },
        None,
    ))
    .unwrap();

    let answered = ProviderEvent::new(
        leg,
        Some(ClientStateRef {
            session: id.clone(),
            device: Some(DeviceId::new("web-c2")),
            leg: LEG_DEVICE.to_owned(),
            direction: None,
        }),
        ProviderEventKind::Answered,
    );
    let applied = block_on(rig.engine.apply(&id, Input::Provider(answered), None)).unwrap();
    let Applied::Committed(session) = applied else {
        panic!("the refused answer is committed: {applied:?}");
    };
    assert_eq!(session.status(), SessionStatus::Busy);
    assert!(commands(&rig, "c2").iter().any(|c| matches!(
        c.action,
        Action::Reject {
            cause: RejectCause::UserBusy,
            ..
        }
    )));
    let active = block_on(rig.store.active_calls(&UserId::new("u1"))).unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].call_session_id, CallSessionId::new("other"));
}
