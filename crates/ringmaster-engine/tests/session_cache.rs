//! The engine's session cache and per-session turns (`Engine::with_session_cache`): a stale
//! copy costs one reload and never a wrong commit, inputs of one session on one engine queue
//! instead of losing the compare-and-set, and a quarantined session is never served from the
//! cache.

use async_trait::async_trait;
use ringmaster_core::session::{
    Action, Command, Effect, Input, NewInbound, RingTarget, Session, SessionConfig,
};
use ringmaster_core::{CallControlId, CallSessionId, DeviceId, TenantId, Timestamp, UserId};
use ringmaster_engine::{Applied, Clock, Engine, EngineError, ManualClock, SessionStore};
use ringmaster_store::{
    Commit, CommitOutcome, MemoryStore, Store, StoreError, StoredSession, TimelineEntry,
    TimelineSource,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const START: u64 = 1_700_000_000_000;

/// The in-memory store with a yield before every read and write, as a real store's round trip
/// would: concurrent inputs interleave between their load and their commit.
struct Yielding(Arc<MemoryStore>);

#[async_trait]
impl SessionStore for Yielding {
    async fn load_session(&self, id: &CallSessionId) -> Result<Option<StoredSession>, StoreError> {
        tokio::task::yield_now().await;
        Store::load_session(&*self.0, id).await
    }

    async fn commit(&self, commit: Commit) -> Result<CommitOutcome, StoreError> {
        tokio::task::yield_now().await;
        Store::commit(&*self.0, commit).await
    }

    async fn quarantine_session(
        &self,
        id: &CallSessionId,
        reason: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        Store::quarantine_session(&*self.0, id, reason, at).await
    }
}

fn engine(store: &Arc<MemoryStore>, clock: &Arc<ManualClock>, cache: bool) -> Engine {
    let engine = Engine::on_sessions(
        Arc::new(Yielding(store.clone())),
        clock.clone(),
        Arc::new(Notify::new()),
    );
    if cache {
        engine.with_session_cache(16)
    } else {
        engine
    }
}

fn call(clock: &ManualClock, id: &str) -> Session {
    let new = NewInbound {
        id: CallSessionId::new(id),
        tenant: TenantId::new("t"),
        user: UserId::new("u1"),
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
    Session::new_inbound(new, clock.now()).unwrap()
}

/// The dial `id`'s creation put in the outbox.
async fn dial(store: &MemoryStore, id: &str) -> Command {
    store
        .pending_effects(1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.session_id.as_str() == id)
        .filter_map(|e| match serde_json::from_value(e.effect) {
            Ok(Effect::Telnyx(c)) if matches!(c.action, Action::Dial { .. }) => Some(c),
            _ => None,
        })
        .next()
        .expect("the device is dialled")
}

async fn stored(store: &MemoryStore, id: &str) -> StoredSession {
    Store::load_session(store, &CallSessionId::new(id))
        .await
        .unwrap()
        .unwrap()
}

/// A timeline entry, so an input that changes nothing in the session is still committed.
fn note(id: &CallSessionId, kind: &str, at: Timestamp) -> Vec<TimelineEntry> {
    vec![TimelineEntry {
        call_session_id: id.clone(),
        at,
        source: TimelineSource::Backend,
        device_id: None,
        kind: kind.to_owned(),
        from_state: None,
        to_state: None,
        detail: serde_json::Value::Null,
    }]
}

/// Creates `c1`, answers its dial on `writer`, then lets the ring timeout fire on `reader`;
/// the stored document at the end.
async fn dial_then_timeout(
    cached: &Engine,
    other: &Engine,
    store: &MemoryStore,
    clock: &ManualClock,
) -> serde_json::Value {
    let id = CallSessionId::new("c1");
    cached
        .create(call(clock, "c1"), None, Vec::new())
        .await
        .unwrap();
    let dial = dial(store, "c1").await;
    let result = Input::DialResult {
        command_id: dial.command_id,
        result: Ok(CallControlId::new("leg-web-c1")),
    };
    let applied = other.apply(&id, result, None).await.unwrap();
    assert!(matches!(applied, Applied::Committed(_)), "{applied:?}");
    clock.advance(Duration::from_secs(31));
    let applied = cached.apply(&id, Input::Tick, None).await.unwrap();
    assert!(matches!(applied, Applied::Committed(_)), "{applied:?}");
    stored(store, "c1").await.doc
}

/// Another engine on the same store commits after this one cached the session: this one's
/// next input loses the compare-and-set once, reloads, and commits what a single engine
/// would have.
#[tokio::test]
async fn a_stale_cached_session_costs_one_reload_and_commits_correctly() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(START)));
    let cached = engine(&store, &clock, true);
    let other = engine(&store, &clock, false);
    let doc = dial_then_timeout(&cached, &other, &store, &clock).await;
    let stats = cached.stats();
    assert_eq!(stats.cas_conflicts, 1, "{stats:?}");
    assert_eq!(
        stats.cache_hits, 1,
        "the stale copy was tried first: {stats:?}"
    );
    assert_eq!(stats.loads, 1, "then reloaded once: {stats:?}");
    assert_eq!(stored(&store, "c1").await.version, 3);

    // The same inputs through one engine without a cache give the same document.
    let store1 = Arc::new(MemoryStore::new());
    let clock1 = Arc::new(ManualClock::new(Timestamp::from_millis(START)));
    let plain = engine(&store1, &clock1, false);
    let expected = dial_then_timeout(&plain, &plain, &store1, &clock1).await;
    assert_eq!(doc, expected);
}

/// Two inputs of one session at once on one engine: with the cache both commit without a lost
/// compare-and-set (they queue); without it the same interleaving loses one.
#[tokio::test]
async fn concurrent_inputs_of_one_session_queue_instead_of_conflicting() {
    for cache in [true, false] {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(START)));
        let engine = engine(&store, &clock, cache);
        engine
            .create(call(&clock, "c1"), None, Vec::new())
            .await
            .unwrap();
        let id = CallSessionId::new("c1");
        let first = engine.apply_logged(&id, Input::Tick, Some("a".into()), |at| {
            note(&id, "first", at)
        });
        let second = engine.apply_logged(&id, Input::Tick, Some("b".into()), |at| {
            note(&id, "second", at)
        });
        let (first, second) = tokio::join!(first, second);
        assert!(matches!(first, Ok(Applied::Committed(_))), "{first:?}");
        assert!(matches!(second, Ok(Applied::Committed(_))), "{second:?}");
        assert_eq!(stored(&store, "c1").await.version, 3);
        let conflicts = engine.stats().cas_conflicts;
        if cache {
            assert_eq!(conflicts, 0, "queued inputs never conflict");
            assert_eq!(engine.stats().loads, 0, "both served from the cache");
        } else {
            assert!(conflicts > 0, "the control interleaving does race");
        }
    }
}

/// A session quarantined by this engine (its handling panicked) is forgotten: the next input
/// reads the store, sees the quarantine and is refused, instead of committing on the cached
/// copy.
#[tokio::test]
async fn a_quarantined_session_is_not_served_from_the_cache() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(START)));
    let engine = engine(&store, &clock, true);
    engine
        .create(call(&clock, "c1"), None, Vec::new())
        .await
        .unwrap();
    let id = CallSessionId::new("c1");
    let panicked = engine.guard(&id, || panic!("a bug in one call")).await;
    assert!(matches!(panicked, Err(EngineError::Quarantined(_))));
    clock.advance(Duration::from_secs(31));
    let applied = engine.apply(&id, Input::Tick, None).await;
    assert!(
        matches!(applied, Err(EngineError::Quarantined(_))),
        "{applied:?}"
    );
    assert_eq!(
        stored(&store, "c1").await.version,
        1,
        "nothing was committed"
    );
    assert_eq!(engine.stats().cache_hits, 0);
}
