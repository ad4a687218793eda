//! Poison sessions (cannot be decoded, or `handle` panics) are quarantined and never hold back
//! other calls; retention prunes what a finished call leaves behind.

use ringmaster_core::session::{NewInbound, RingTarget, Session, SessionConfig, SessionStatus};
use ringmaster_core::{CallControlId, CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use ringmaster_server::clock::{Clock, ManualClock};
use ringmaster_server::engine::{Engine, EngineError};
use ringmaster_server::retention::{self, RetentionPolicy};
use ringmaster_server::timers;
use ringmaster_store::{Commit, MemoryStore, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

struct Rig {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    engine: Engine,
}

fn rig() -> Rig {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_700_000_000_000)));
    let engine = Engine::new(store.clone(), clock.clone(), Arc::new(Notify::new()));
    Rig {
        store,
        clock,
        engine,
    }
}

/// A ringing call to one web device, ring timeout 30 s.
async fn ringing_call(rig: &Rig, id: &str) -> CallSessionId {
    let new = NewInbound {
        id: CallSessionId::new(id),
        tenant: TenantId::new("t"),
        user: UserId::new(format!("user-{id}")),
        caller_leg: CallControlId::new(format!("caller-{id}")),
        from: "+15550001111".into(),
        to: "+15550002222".into(),
        devices: vec![RingTarget {
            device_id: DeviceId::new(format!("dev-{id}")),
            sip_uri: format!("sip:{id}@sip.telnyx.com"),
            platform: "web".into(),
        }],
        busy: false,
        config: SessionConfig {
            ring_timeout_secs: 30,
            ..SessionConfig::default()
        },
    };
    let session = Session::new_inbound(new, rig.clock.now()).unwrap();
    rig.engine.create(session, None, Vec::new()).await.unwrap();
    CallSessionId::new(id)
}

async fn status(rig: &Rig, id: &CallSessionId) -> SessionStatus {
    rig.engine.load(id).await.unwrap().unwrap().0.status()
}

#[tokio::test]
async fn undecodable_sessions_are_quarantined_and_ring_timeouts_still_fire() {
    let rig = rig();
    // 300 stored sessions this version cannot read, all due before the real call.
    for i in 0..300 {
        let mut c = Commit::new(
            CallSessionId::new(format!("poison-{i}")),
            UserId::new("someone"),
            None,
            json!({ "written_by": "a future version" }),
            "ringing",
            rig.clock.now(),
        );
        c.next_deadline = Some(rig.clock.now());
        rig.store.commit(c).await.unwrap();
    }
    let good = ringing_call(&rig, "good").await;
    rig.clock.advance(Duration::from_secs(31));

    // Each poll quarantines what it cannot read instead of retrying it forever.
    for _ in 0..3 {
        timers::tick_due(&*rig.store, &rig.engine, "node-test")
            .await
            .unwrap();
    }
    assert_ne!(
        status(&rig, &good).await,
        SessionStatus::Ringing,
        "the ring timeout fired despite 300 poison sessions ahead of it"
    );
    assert_eq!(rig.engine.quarantined_count(), 300);
    assert_eq!(
        rig.store.quarantined_sessions(1_000).await.unwrap().len(),
        300
    );
    assert!(rig
        .store
        .due_sessions(rig.clock.now(), 1_000)
        .await
        .unwrap()
        .iter()
        .all(|(id, _)| !id.as_str().starts_with("poison-")));
    // Inputs to a quarantined session are refused quickly, not retried.
    let poison = CallSessionId::new("poison-7");
    assert!(matches!(
        rig.engine
            .apply(&poison, ringmaster_core::session::Input::Tick, None)
            .await,
        Err(EngineError::Quarantined(id)) if id == poison
    ));
}

#[tokio::test]
async fn a_session_whose_handling_panics_is_quarantined() {
    let rig = rig();
    let bad = ringing_call(&rig, "bad").await;
    let good = ringing_call(&rig, "good").await;
    let result = rig
        .engine
        .guard(&bad, || -> () {
            panic!("a bug in one call's state machine")
        })
        .await;
    assert!(matches!(result, Err(EngineError::Quarantined(_))));
    assert_eq!(rig.engine.quarantined_count(), 1);
    assert_eq!(
        rig.store.quarantined_sessions(10).await.unwrap(),
        vec![bad.clone()]
    );

    rig.clock.advance(Duration::from_secs(31));
    assert_eq!(
        timers::tick_due(&*rig.store, &rig.engine, "node-test")
            .await
            .unwrap(),
        1,
        "only the healthy call is due"
    );
    assert_ne!(status(&rig, &good).await, SessionStatus::Ringing);
}

#[tokio::test]
async fn retention_prunes_a_finished_calls_hot_state_and_keeps_its_history() {
    let rig = rig();
    let id = ringing_call(&rig, "done").await;
    // Nobody answers: the call ends; every effect is dispatched.
    rig.clock.advance(Duration::from_secs(31));
    timers::tick_due(&*rig.store, &rig.engine, "node-test")
        .await
        .unwrap();
    assert!(rig.engine.load(&id).await.unwrap().unwrap().0.is_closed());
    for e in rig.store.pending_effects(100).await.unwrap() {
        rig.store
            .mark_effect_done(&e.session_id, e.seq)
            .await
            .unwrap();
    }
    let user = UserId::new("user-done");

    let policy = RetentionPolicy::default();
    let soon = retention::prune(&*rig.store, &policy, rig.clock.now())
        .await
        .unwrap();
    assert_eq!(
        soon.sessions, 0,
        "a call just over keeps its hot state a while"
    );
    assert!(rig.engine.load(&id).await.unwrap().is_some());

    rig.clock.advance(Duration::from_secs(2 * 24 * 3600));
    let later = retention::prune(&*rig.store, &policy, rig.clock.now())
        .await
        .unwrap();
    assert_eq!(later.sessions, 1);
    assert!(later.effects > 0);
    assert!(rig.engine.load(&id).await.unwrap().is_none());
    assert!(rig.store.pending_effects(100).await.unwrap().is_empty());
    assert!(
        rig.store.get_call(&user, &id).await.unwrap().is_some(),
        "history is kept by default"
    );

    let month = RetentionPolicy::with_history_days(30);
    rig.clock.advance(Duration::from_secs(31 * 24 * 3600));
    assert_eq!(
        retention::prune(&*rig.store, &month, rig.clock.now())
            .await
            .unwrap()
            .calls,
        1
    );
    assert!(rig.store.get_call(&user, &id).await.unwrap().is_none());
}
