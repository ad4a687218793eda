//! The behaviour every [`Store`] backend must show, as one suite.
//!
//! A backend provides a [`Harness`] (fresh, empty data per instance; opening it twice gives two
//! stores on the same data, as after a restart) and stamps one test per case:
//!
//! ```text
//! ringmaster_store::store_conformance_tests!(MyHarness::new());
//! ```
//!
//! The stamped tests use `#[tokio::test]`, so the calling crate needs `tokio` (with `macros`
//! and `rt-multi-thread`). [`run_all`] runs the same cases from any async context.
//!
//! Cases panic on the first broken expectation, like any test.

use async_trait::async_trait;
use ringmaster_core::{
    CallControlId, CallSessionId, CallState, DeviceId, TenantId, Timestamp, UserId,
};
use serde_json::{json, Value};
use std::sync::Arc;

use crate::{
    ActiveCall, BillingRecord, CallDirection, CallRecord, CallStatus, Commit, CommitClaim,
    CommitOutcome, Device, DevicePlatform, Lane, LegRecord, MemoryStore, OutboxEffect, Pruned,
    PushProvider, RegistryChange, Retention, Store, StoreError, TimelineEntry, TimelineSource,
    User, UserSettings,
};

pub use crate::quality::cases::{
    invalid_quality_changes_nothing, quality_is_idempotent_per_device_and_seq,
    quality_reads_by_time_and_prunes,
};

/// Opens stores on one backend's data set.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A store on this harness's data; everything committed by earlier stores is visible.
    async fn open(&self) -> Arc<dyn Store>;
}

#[async_trait]
impl Harness for MemoryStore {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.clone())
    }
}

/// Stamps one `#[tokio::test]` per conformance case, each with a fresh `$harness`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($harness:expr) => {
        $crate::__conformance_cases!(tests $harness);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($mode:ident $harness:expr) => {
        $crate::__conformance_expand!($mode $harness;
            users_and_numbers
            devices_and_push_tokens
            session_create_and_compare_and_set
            concurrent_commits_have_one_winner
            concurrent_creates_have_one_winner
            dedupe_makes_a_repeat_a_no_op
            outbox_keeps_commit_order_and_tracks_dispatch
            outbox_lanes_due_times_and_target_order
            claimed_effects_are_leased_until_done_or_expired
            a_commit_claims_its_own_ready_effects
            concurrent_claims_never_share_a_row
            one_claim_of_every_lane_keeps_each_lanes_rules
            a_lanes_rows_go_earliest_due_first
            a_batch_commits_each_session_on_its_own
            a_batch_fails_only_its_racing_and_busy_commits
            directory_reads_follow_admin_writes
            an_acknowledged_batch_survives_a_crash
            quarantined_sessions_are_skipped
            retention_prunes_what_is_old_and_finished
            timers_fire_when_due
            claimed_timers_are_leased_until_committed_or_expired
            concurrent_timer_claims_never_share_a_session
            registry_allows_one_active_call_without_call_waiting
            registry_call_waiting_allows_several
            history_is_upserted_once_per_call
            history_keeps_declined_calls_apart
            history_is_scoped_to_its_user
            history_pages_newest_first
            live_calls_and_recent_timeline_span_every_user
            invalid_input_changes_nothing
            state_survives_reopen
            quality_is_idempotent_per_device_and_seq
            quality_reads_by_time_and_prunes
            invalid_quality_changes_nothing
            ops_stats_count_live_calls_and_the_outbox_backlog
            webhook_events_are_logged_in_order_and_endpoints_track_delivery
            push_tokens_move_and_tokens_reissue
            unfinished_calls_and_timeline_pages
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    (tests $harness:expr; $($case:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness;
                $crate::conformance::$case(&harness).await;
            }
        )*
    };
    (run $harness:expr; $($case:ident)*) => {
        $(
            {
                let harness = $harness;
                $crate::conformance::$case(&harness).await;
            }
        )*
    };
}

/// Runs every case in turn, each on a fresh harness from `fresh`. Needs a Tokio runtime
/// (the race cases spawn tasks).
pub async fn run_all<H: Harness, F: Fn() -> H>(fresh: F) {
    crate::__conformance_cases!(run fresh());
}

// ---------------------------------------------------------------------------------------------
// Builders

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn sid(raw: &str) -> CallSessionId {
    CallSessionId::new(raw)
}

fn uid(raw: &str) -> UserId {
    UserId::new(raw)
}

fn user(id: &str, tenant: &str, numbers: &[&str]) -> User {
    User {
        id: uid(id),
        tenant_id: TenantId::new(tenant),
        name: format!("User {id}"),
        numbers: numbers.iter().map(|n| n.to_string()).collect(),
        call_waiting: false,
        voicemail_enabled: true,
        created_at: t(1_000),
    }
}

fn device(id: &str, user: &str, created: u64) -> Device {
    Device {
        id: DeviceId::new(id),
        user_id: uid(user),
        platform: DevicePlatform::Ios,
        sip_uri: format!("sip:{id}@sip.telnyx.com"),
        token_hash: format!("hash-{id}"),
        push_token: None,
        push_provider: None,
        revoked: false,
        created_at: t(created),
    }
}

fn commit(session: &str, user: &str, expected: Option<u64>, label: &str) -> Commit {
    Commit::new(
        sid(session),
        uid(user),
        expected,
        json!({ "state": label, "session": session }),
        label,
        t(1_000),
    )
}

fn record(session: &str, user: &str, tenant: &str, started: u64) -> CallRecord {
    CallRecord {
        call_session_id: sid(session),
        user_id: uid(user),
        tenant_id: TenantId::new(tenant),
        direction: CallDirection::Inbound,
        from: "+15557770000".into(),
        to: "+15550000001".into(),
        status: CallStatus::Ringing,
        answered_device: None,
        started_at: t(started),
        answered_at: None,
        bridged_at: None,
        ended_at: None,
        hangup_cause: None,
        recording_url: None,
        quality: None,
    }
}

fn leg(control: &str, session: &str, device: &str, status: &str, started: u64) -> LegRecord {
    LegRecord {
        call_control_id: CallControlId::new(control),
        call_session_id: sid(session),
        device_id: Some(DeviceId::new(device)),
        status: status.into(),
        started_at: t(started),
        answered_at: None,
        ended_at: None,
        hangup_cause: None,
    }
}

fn entry(session: &str, at: u64, kind: &str, to_state: &str) -> TimelineEntry {
    TimelineEntry {
        call_session_id: sid(session),
        at: t(at),
        source: TimelineSource::Backend,
        device_id: None,
        kind: kind.into(),
        from_state: None,
        to_state: Some(to_state.into()),
        detail: json!({ "kind": kind }),
    }
}

fn active(user: &str, session: &str, device: &str, started: u64) -> ActiveCall {
    ActiveCall {
        user_id: uid(user),
        call_session_id: sid(session),
        device_id: Some(DeviceId::new(device)),
        started_at: t(started),
        platform: Some("ios".to_owned()),
        state: CallState::Active,
        since: t(started),
    }
}

async fn apply(store: &dyn Store, c: Commit) -> (u64, Vec<u64>) {
    match store.commit(c).await.expect("commit") {
        CommitOutcome::Committed {
            version,
            effect_seqs,
            ..
        } => (version, effect_seqs),
        other => panic!("expected Committed, got {other:?}"),
    }
}

fn is_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Invalid { .. }))
}

// ---------------------------------------------------------------------------------------------
// Directory

/// Users are found by id and by each of their numbers; a number belongs to one user only.
pub async fn users_and_numbers(h: &dyn Harness) {
    let store = h.open().await;
    let alice = user("alice", "t1", &["+15550000001", "+15550000002"]);
    assert_eq!(store.create_user(alice.clone()).await.unwrap(), alice);
    assert_eq!(
        store.get_user(&uid("alice")).await.unwrap(),
        Some(alice.clone())
    );
    for n in ["+15550000001", "+15550000002"] {
        assert_eq!(store.user_by_number(n).await.unwrap(), Some(alice.clone()));
    }
    assert_eq!(store.user_by_number("+15550009999").await.unwrap(), None);
    assert_eq!(store.get_user(&uid("nobody")).await.unwrap(), None);

    // A taken number refuses the whole user, even from another tenant.
    let bob = user("bob", "t2", &["+15550000003", "+15550000002"]);
    match store.create_user(bob).await {
        Err(StoreError::NumberTaken { number }) => assert_eq!(number, "+15550000002"),
        other => panic!("expected NumberTaken, got {other:?}"),
    }
    assert_eq!(store.get_user(&uid("bob")).await.unwrap(), None);
    assert_eq!(store.user_by_number("+15550000003").await.unwrap(), None);

    let again = user("alice", "t1", &["+15550000004"]);
    assert!(matches!(
        store.create_user(again).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(store.user_by_number("+15550000004").await.unwrap(), None);

    for bad in [
        user("carol", "t1", &["5550000005"]),
        user("carol", "t1", &["+15550000005", "+15550000005"]),
        User {
            name: "  ".into(),
            ..user("carol", "t1", &[])
        },
        user("", "t1", &[]),
        user("carol", "t1", &vec!["+15550000005"; 40]),
    ] {
        assert!(is_invalid(store.create_user(bad).await));
    }
    assert_eq!(store.get_user(&uid("carol")).await.unwrap(), None);

    // Bob with a free number works now; numbers keep their order.
    let bob = user("bob", "t2", &["+15550000006", "+15550000003"]);
    store.create_user(bob.clone()).await.unwrap();
    assert_eq!(
        store.user_by_number("+15550000003").await.unwrap(),
        Some(bob)
    );

    let settings = UserSettings {
        call_waiting: true,
        voicemail_enabled: false,
    };
    let updated = store
        .update_user_settings(&uid("alice"), settings)
        .await
        .unwrap();
    assert!(updated.call_waiting && !updated.voicemail_enabled);
    assert_eq!(updated.numbers, alice.numbers);
    assert_eq!(store.get_user(&uid("alice")).await.unwrap(), Some(updated));
    assert!(matches!(
        store.update_user_settings(&uid("nobody"), settings).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Devices belong to an existing user; push tokens are replaced and pruned precisely.
pub async fn devices_and_push_tokens(h: &dyn Harness) {
    let store = h.open().await;
    assert!(matches!(
        store.create_device(device("d0", "alice", 1)).await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .create_user(user("alice", "t1", &["+15550000001"]))
        .await
        .unwrap();
    let d1 = device("d1", "alice", 10);
    let d2 = Device {
        platform: DevicePlatform::Web,
        push_token: Some("fcm-token".into()),
        push_provider: Some(PushProvider::Fcm),
        ..device("d2", "alice", 5)
    };
    store.create_device(d1.clone()).await.unwrap();
    store.create_device(d2.clone()).await.unwrap();
    assert_eq!(store.get_device(&d1.id).await.unwrap(), Some(d1.clone()));
    assert_eq!(
        store.devices_of_user(&uid("alice")).await.unwrap(),
        vec![d2.clone(), d1.clone()]
    );
    assert!(store.devices_of_user(&uid("bob")).await.unwrap().is_empty());
    assert_eq!(
        store
            .devices_by_sip_uri("sip:d1@sip.telnyx.com")
            .await
            .unwrap(),
        vec![d1.clone()]
    );
    assert!(store
        .devices_by_sip_uri("sip:nobody@sip.telnyx.com")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.create_device(device("d1", "alice", 11)).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let bad = Device {
        sip_uri: "alice@example.com".into(),
        ..device("d3", "alice", 12)
    };
    assert!(is_invalid(store.create_device(bad).await));
    let half = Device {
        push_token: Some("x".into()),
        ..device("d3", "alice", 12)
    };
    assert!(is_invalid(store.create_device(half).await));
    assert_eq!(store.get_device(&DeviceId::new("d3")).await.unwrap(), None);

    store
        .set_push_token(&d1.id, PushProvider::Apns, "tok1")
        .await
        .unwrap();
    store
        .set_push_token(&d1.id, PushProvider::Apns, "tok2")
        .await
        .unwrap();
    // A rejection of the old token must not drop the new one.
    assert!(!store.clear_push_token(&d1.id, "tok1").await.unwrap());
    let got = store.get_device(&d1.id).await.unwrap().unwrap();
    assert_eq!(got.push_token.as_deref(), Some("tok2"));
    assert_eq!(got.push_provider, Some(PushProvider::Apns));
    assert!(store.clear_push_token(&d1.id, "tok2").await.unwrap());
    let got = store.get_device(&d1.id).await.unwrap().unwrap();
    assert_eq!((got.push_token, got.push_provider), (None, None));
    assert!(is_invalid(
        store.set_push_token(&d1.id, PushProvider::Fcm, "").await
    ));
    assert!(matches!(
        store
            .set_push_token(&DeviceId::new("nope"), PushProvider::Fcm, "t")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.clear_push_token(&DeviceId::new("nope"), "t").await,
        Err(StoreError::NotFound { .. })
    ));

    store.revoke_device(&d2.id).await.unwrap();
    let listed = store.devices_of_user(&uid("alice")).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].revoked && !listed[1].revoked);
    assert!(matches!(
        store.revoke_device(&DeviceId::new("nope")).await,
        Err(StoreError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// Creation requires absence, updates require the current version, and both bump it.
pub async fn session_create_and_compare_and_set(h: &dyn Harness) {
    let store = h.open().await;
    assert_eq!(store.load_session(&sid("s1")).await.unwrap(), None);

    let mut create = commit("s1", "alice", None, "ringing");
    create.next_deadline = Some(t(31_000));
    let doc = create.doc.clone();
    assert_eq!(apply(&*store, create).await, (1, vec![]));
    let loaded = store.load_session(&sid("s1")).await.unwrap().unwrap();
    assert_eq!(loaded.id, sid("s1"));
    assert_eq!(loaded.user_id, uid("alice"));
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.doc, doc);
    assert_eq!(loaded.state_label, "ringing");
    assert_eq!(loaded.next_deadline, Some(t(31_000)));

    assert_eq!(
        store
            .commit(commit("s1", "alice", None, "other"))
            .await
            .unwrap(),
        CommitOutcome::Conflict {
            current_version: Some(1)
        }
    );
    assert_eq!(
        store
            .commit(commit("s1", "alice", Some(2), "other"))
            .await
            .unwrap(),
        CommitOutcome::Conflict {
            current_version: Some(1)
        }
    );
    assert_eq!(
        store.load_session(&sid("s1")).await.unwrap().unwrap(),
        loaded
    );

    // The owner is fixed at creation; the deadline is replaced (here: cancelled).
    let update = commit("s1", "mallory", Some(1), "bridged");
    let doc = update.doc.clone();
    assert_eq!(apply(&*store, update).await, (2, vec![]));
    let loaded = store.load_session(&sid("s1")).await.unwrap().unwrap();
    assert_eq!(
        (loaded.version, loaded.doc, loaded.state_label.as_str()),
        (2, doc, "bridged")
    );
    assert_eq!(loaded.user_id, uid("alice"));
    assert_eq!(loaded.next_deadline, None);

    assert_eq!(
        store
            .commit(commit("ghost", "alice", Some(1), "ringing"))
            .await
            .unwrap(),
        CommitOutcome::Conflict {
            current_version: None
        }
    );
    assert_eq!(store.load_session(&sid("ghost")).await.unwrap(), None);
}

const RACERS: usize = 50;
const ROUNDS: usize = 10;

/// Many commits against the same version: exactly one wins, and only its effects exist.
pub async fn concurrent_commits_have_one_winner(h: &dyn Harness) {
    let store = h.open().await;
    for round in 0..ROUNDS {
        let session = format!("race-{round}");
        apply(&*store, commit(&session, "alice", None, "ringing")).await;
        let tasks: Vec<_> = (0..RACERS)
            .map(|racer| {
                let store = store.clone();
                let session = session.clone();
                tokio::spawn(async move {
                    let mut c = commit(&session, "alice", Some(1), "answered");
                    c.doc = json!({ "winner": racer });
                    c.effects = vec![json!({ "bridge": racer }).into()];
                    c.dedupe_key = Some(format!("answer-{session}-{racer}"));
                    (racer, store.commit(c).await.expect("commit"))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (racer, outcome) = task.await.expect("task");
            match outcome {
                CommitOutcome::Committed { version, .. } => {
                    assert_eq!(version, 2);
                    winners.push(racer);
                }
                CommitOutcome::Conflict { current_version } => {
                    assert_eq!(current_version, Some(2))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let winner = winners[0];
        let loaded = store.load_session(&sid(&session)).await.unwrap().unwrap();
        assert_eq!(loaded.version, 2);
        assert_eq!(loaded.doc, json!({ "winner": winner }));
        let effects: Vec<Value> = store
            .pending_effects(1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.session_id.as_str() == session)
            .map(|e| e.effect)
            .collect();
        assert_eq!(effects, vec![json!({ "bridge": winner })]);
        for racer in 0..RACERS {
            let key = format!("answer-{session}-{racer}");
            assert_eq!(store.is_processed(&key).await.unwrap(), racer == winner);
        }
    }
}

/// Many creations of the same session: exactly one creates it.
pub async fn concurrent_creates_have_one_winner(h: &dyn Harness) {
    let store = h.open().await;
    for round in 0..ROUNDS {
        let session = format!("create-{round}");
        let tasks: Vec<_> = (0..RACERS)
            .map(|racer| {
                let store = store.clone();
                let session = session.clone();
                tokio::spawn(async move {
                    let mut c = commit(&session, "alice", None, "ringing");
                    c.doc = json!({ "creator": racer });
                    (racer, store.commit(c).await.expect("commit"))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (racer, outcome) = task.await.expect("task");
            match outcome {
                CommitOutcome::Committed { version: 1, .. } => winners.push(racer),
                CommitOutcome::Conflict {
                    current_version: Some(1),
                } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let loaded = store.load_session(&sid(&session)).await.unwrap().unwrap();
        assert_eq!(loaded.doc, json!({ "creator": winners[0] }));
    }
}

/// An input seen before changes nothing, whatever version it claims; refused commits do not
/// consume their key.
pub async fn dedupe_makes_a_repeat_a_no_op(h: &dyn Harness) {
    let store = h.open().await;
    let mut c = commit("s1", "alice", None, "ringing");
    c.dedupe_key = Some("evt-1".into());
    c.effects = vec![json!({ "dial": "d1" }).into()];
    apply(&*store, c).await;
    assert!(store.is_processed("evt-1").await.unwrap());
    assert!(!store.is_processed("evt-2").await.unwrap());

    for expected in [Some(1), Some(7), None] {
        let mut again = commit("s1", "alice", expected, "answered");
        again.dedupe_key = Some("evt-1".into());
        again.effects = vec![json!({ "dial": "again" }).into()];
        assert_eq!(store.commit(again).await.unwrap(), CommitOutcome::Duplicate);
    }
    let loaded = store.load_session(&sid("s1")).await.unwrap().unwrap();
    assert_eq!(
        (loaded.version, loaded.state_label.as_str()),
        (1, "ringing")
    );
    assert_eq!(store.pending_effects(100).await.unwrap().len(), 1);

    let mut stale = commit("s1", "alice", Some(9), "answered");
    stale.dedupe_key = Some("evt-3".into());
    stale.at = t(2_000);
    assert!(matches!(
        store.commit(stale.clone()).await.unwrap(),
        CommitOutcome::Conflict { .. }
    ));
    assert!(!store.is_processed("evt-3").await.unwrap());
    stale.expected_version = Some(1);
    assert_eq!(apply(&*store, stale).await.0, 2);
    assert!(store.is_processed("evt-3").await.unwrap());

    assert_eq!(store.prune_processed(t(1_500)).await.unwrap(), 1);
    assert!(!store.is_processed("evt-1").await.unwrap());
    assert!(store.is_processed("evt-3").await.unwrap());
}

/// Directory reads (which a backend may cache) see every admin write at once, including a
/// number that was unowned when first looked up.
pub async fn directory_reads_follow_admin_writes(h: &dyn Harness) {
    let store = h.open().await;
    assert!(store
        .user_by_number("+15550009999")
        .await
        .unwrap()
        .is_none());
    assert!(store.devices_of_user(&uid("zoe")).await.unwrap().is_empty());
    store
        .create_user(user("zoe", "t1", &["+15550009999"]))
        .await
        .unwrap();
    let found = store.user_by_number("+15550009999").await.unwrap();
    assert_eq!(found.map(|u| u.call_waiting), Some(false));
    store
        .update_user_settings(
            &uid("zoe"),
            UserSettings {
                call_waiting: true,
                voicemail_enabled: false,
            },
        )
        .await
        .unwrap();
    let found = store.user_by_number("+15550009999").await.unwrap();
    assert_eq!(found.map(|u| u.call_waiting), Some(true));

    store
        .create_device(device("z1", "zoe", 1_000))
        .await
        .unwrap();
    assert_eq!(store.devices_of_user(&uid("zoe")).await.unwrap().len(), 1);
    store
        .set_push_token(&DeviceId::new("z1"), PushProvider::Apns, "tok")
        .await
        .unwrap();
    let devices = store.devices_of_user(&uid("zoe")).await.unwrap();
    assert_eq!(devices[0].push_token.as_deref(), Some("tok"));
    store.revoke_device(&DeviceId::new("z1")).await.unwrap();
    assert!(store.devices_of_user(&uid("zoe")).await.unwrap()[0].revoked);
}

/// Commits of several sessions written together are still checked one by one: a
/// conflicting, duplicate or invalid commit fails alone and the others commit.
pub async fn a_batch_commits_each_session_on_its_own(h: &dyn Harness) {
    let store = h.open().await;
    let mut old = commit("s2", "bob", None, "ringing");
    old.dedupe_key = Some("seen".into());
    apply(&*store, old).await;

    let mut s1 = commit("s1", "alice", None, "ringing");
    s1.dedupe_key = Some("k1".into());
    s1.effects = vec![json!({ "op": "dial" }).into()];
    let stale = commit("s2", "bob", Some(5), "answered");
    let invalid = commit("", "nobody", None, "ringing");
    let fresh = commit("s2", "bob", Some(1), "answered");
    let mut replay = commit("s3", "carol", None, "ringing");
    replay.dedupe_key = Some("seen".into());
    let s4 = commit("s4", "dave", None, "ringing");

    let results = store
        .commit_batch(vec![s1, stale, invalid, fresh, replay, s4])
        .await;
    assert_eq!(results.len(), 6);
    assert_eq!(
        results[0].as_ref().unwrap(),
        &CommitOutcome::Committed {
            version: 1,
            effect_seqs: vec![1],
            claimed: vec![],
        }
    );
    assert_eq!(
        results[1].as_ref().unwrap(),
        &CommitOutcome::Conflict {
            current_version: Some(1)
        }
    );
    assert!(matches!(results[2], Err(StoreError::Invalid { .. })));
    assert!(matches!(
        results[3],
        Ok(CommitOutcome::Committed { version: 2, .. })
    ));
    assert_eq!(results[4].as_ref().unwrap(), &CommitOutcome::Duplicate);
    assert!(matches!(
        results[5],
        Ok(CommitOutcome::Committed { version: 1, .. })
    ));

    let version = |s: Option<crate::StoredSession>| s.map(|s| (s.version, s.state_label));
    assert_eq!(
        version(store.load_session(&sid("s1")).await.unwrap()),
        Some((1, "ringing".into()))
    );
    assert_eq!(
        version(store.load_session(&sid("s2")).await.unwrap()),
        Some((2, "answered".into()))
    );
    assert!(store.load_session(&sid("s3")).await.unwrap().is_none());
    assert!(store.load_session(&sid("s4")).await.unwrap().is_some());
    assert!(store.is_processed("k1").await.unwrap());
    assert_eq!(store.pending_effects(10).await.unwrap().len(), 1);
    assert!(store.commit_batch(Vec::new()).await.is_empty());
}

/// In a batch, two commits racing for one session version have one winner, a commit refused
/// by the registry (`Busy`) fails alone, and a later commit sees what an earlier one in the
/// same batch wrote.
pub async fn a_batch_fails_only_its_racing_and_busy_commits(h: &dyn Harness) {
    let store = h.open().await;
    store
        .create_user(user("alice", "t1", &["+15550000001"]))
        .await
        .unwrap();
    let mut c1 = commit("c1", "alice", None, "bridged");
    c1.registry = vec![RegistryChange::Set(active("alice", "c1", "d1", 100))];
    apply(&*store, c1).await;
    apply(&*store, commit("r", "bob", None, "ringing")).await;

    let mut winner = commit("r", "bob", Some(1), "answered");
    winner.effects = vec![json!({ "op": "bridge" }).into()];
    let mut loser = commit("r", "bob", Some(1), "ended");
    loser.effects = vec![json!({ "op": "hangup" }).into()];
    loser.dedupe_key = Some("loser".into());
    let busy = || {
        let mut c2 = commit("c2", "alice", None, "bridged");
        c2.registry = vec![RegistryChange::Set(active("alice", "c2", "d2", 200))];
        c2.effects = vec![json!({ "op": "bridge-c2" }).into()];
        c2.dedupe_key = Some("evt-c2".into());
        c2
    };
    let mut other = commit("c3", "carol", None, "ringing");
    other.effects = vec![json!({ "op": "dial" }).into()];

    let results = store.commit_batch(vec![winner, loser, busy(), other]).await;
    assert!(matches!(
        results[0],
        Ok(CommitOutcome::Committed { version: 2, .. })
    ));
    assert_eq!(
        results[1].as_ref().unwrap(),
        &CommitOutcome::Conflict {
            current_version: Some(2)
        }
    );
    assert_eq!(
        results[2].as_ref().unwrap(),
        &CommitOutcome::Busy {
            active: vec![active("alice", "c1", "d1", 100)]
        }
    );
    assert!(matches!(
        results[3],
        Ok(CommitOutcome::Committed { version: 1, .. })
    ));
    let stored = store.load_session(&sid("r")).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.state_label.as_str()),
        (2, "answered")
    );
    assert!(store.load_session(&sid("c2")).await.unwrap().is_none());
    assert!(!store.is_processed("loser").await.unwrap());
    assert!(!store.is_processed("evt-c2").await.unwrap());
    let mut ops: Vec<String> = store
        .pending_effects(10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.effect["op"].as_str().unwrap_or_default().to_owned())
        .collect();
    ops.sort();
    assert_eq!(ops, ["bridge", "dial"]);

    // The first call ends earlier in the same batch: the second may take its place.
    let mut end = commit("c1", "alice", Some(1), "ended");
    end.registry = vec![RegistryChange::Clear {
        user_id: uid("alice"),
        call_session_id: sid("c1"),
    }];
    let results = store.commit_batch(vec![end, busy()]).await;
    for result in &results {
        assert!(
            matches!(result, Ok(CommitOutcome::Committed { .. })),
            "{result:?}"
        );
    }
    assert_eq!(
        store.active_calls(&uid("alice")).await.unwrap(),
        vec![active("alice", "c2", "d2", 200)]
    );
}

/// A batch reported committed is durable: a store that goes away without closing (a crash
/// before any webhook was answered) loses none of it, and the redelivered inputs are
/// duplicates, not second commits.
pub async fn an_acknowledged_batch_survives_a_crash(h: &dyn Harness) {
    let batch = || {
        (1..=3)
            .map(|i| {
                let mut c = commit(&format!("call-{i}"), "alice", None, "ringing");
                c.dedupe_key = Some(format!("webhook-{i}"));
                c.effects = vec![json!({ "dial": i }).into()];
                c
            })
            .collect::<Vec<_>>()
    };
    {
        let store = h.open().await;
        for result in store.commit_batch(batch()).await {
            assert!(matches!(result, Ok(CommitOutcome::Committed { .. })));
        }
        // Dropped without `close`: nothing gets a chance to flush.
    }
    let again = h.open().await;
    for i in 1..=3 {
        let stored = again
            .load_session(&sid(&format!("call-{i}")))
            .await
            .unwrap();
        assert_eq!(stored.map(|s| s.version), Some(1));
    }
    assert_eq!(again.pending_effects(10).await.unwrap().len(), 3);
    for result in again.commit_batch(batch()).await {
        assert_eq!(result.unwrap(), CommitOutcome::Duplicate);
    }
    assert_eq!(again.pending_effects(10).await.unwrap().len(), 3);
}

fn lane_effect(op: &str, lane: Lane, order_key: Option<&str>) -> OutboxEffect {
    OutboxEffect {
        effect: json!({ "op": op }),
        lane,
        order_key: order_key.map(str::to_owned),
    }
}

async fn due_ops(store: &dyn Store, lane: Lane, now: u64) -> Vec<String> {
    store
        .due_effects(lane, t(now), 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.effect["op"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Each lane is read on its own; an effect is due at its `next_attempt_at`; a backing-off
/// notification holds back the later ones for the same target (and only those).
pub async fn outbox_lanes_due_times_and_target_order(h: &dyn Harness) {
    let store = h.open().await;
    let mut a = commit("a", "alice", None, "ringing");
    a.at = t(1_000);
    a.effects = vec![
        lane_effect("dial-1", Lane::Setup, None),
        lane_effect("ring-d1", Lane::Push, Some("push:d1")),
        lane_effect("ring-d2", Lane::Push, Some("push:d2")),
        lane_effect("ws-ring", Lane::Realtime, Some("ws:alice")),
    ];
    apply(&*store, a).await;
    let mut a2 = commit("a", "alice", Some(1), "ended");
    a2.at = t(1_100);
    a2.effects = vec![
        lane_effect("hangup-1", Lane::Release, None),
        lane_effect("ended-d1", Lane::Push, Some("push:d1")),
        lane_effect("ended-d2", Lane::Push, Some("push:d2")),
    ];
    apply(&*store, a2).await;

    assert_eq!(due_ops(&*store, Lane::Release, 1_100).await, ["hangup-1"]);
    assert_eq!(due_ops(&*store, Lane::Setup, 1_100).await, ["dial-1"]);
    assert_eq!(due_ops(&*store, Lane::Realtime, 1_100).await, ["ws-ring"]);
    assert!(due_ops(&*store, Lane::Other, 1_100).await.is_empty());
    // Each device's ring goes before its dismissal; the dismissals wait.
    assert_eq!(
        due_ops(&*store, Lane::Push, 1_100).await,
        ["ring-d1", "ring-d2"]
    );
    // Not due before they were committed.
    assert!(due_ops(&*store, Lane::Release, 1_099).await.is_empty());
    let entry = &store
        .due_effects(Lane::Release, t(2_000), 10)
        .await
        .unwrap()[0];
    assert_eq!(
        (entry.lane, entry.next_attempt_at),
        (Lane::Release, t(1_100))
    );

    // d1's ring backs off: neither it nor d1's dismissal is due; d2 carries on.
    store
        .mark_effect_failed(&sid("a"), 2, "503", t(5_000))
        .await
        .unwrap();
    // Done, d2's ring says it held back d2's dismissal; said once only.
    assert!(store.mark_effect_done(&sid("a"), 3).await.unwrap());
    assert!(!store.mark_effect_done(&sid("a"), 3).await.unwrap());
    // Nothing waits behind the WebSocket ring for alice's channel.
    assert!(!store.mark_effect_done(&sid("a"), 4).await.unwrap());
    assert_eq!(due_ops(&*store, Lane::Push, 4_999).await, ["ended-d2"]);
    // Earliest due first: ended-d2 has been due since 1_100, ring-d1 only from 5_000.
    assert_eq!(
        due_ops(&*store, Lane::Push, 5_000).await,
        ["ended-d2", "ring-d1"]
    );
    store
        .mark_effect_abandoned(&sid("a"), 2, "stale")
        .await
        .unwrap();
    assert_eq!(
        due_ops(&*store, Lane::Push, 5_000).await,
        ["ended-d1", "ended-d2"]
    );

    // A deferred dial is not due before its slot and counts no attempt.
    store.defer_effect(&sid("a"), 1, t(3_000)).await.unwrap();
    store.defer_effect(&sid("a"), 1, t(2_000)).await.unwrap();
    assert!(due_ops(&*store, Lane::Setup, 2_999).await.is_empty());
    let dial = store.due_effects(Lane::Setup, t(3_000), 10).await.unwrap();
    assert_eq!((dial.len(), dial[0].attempts), (1, 0));
    assert!(matches!(
        store.defer_effect(&sid("a"), 99, t(1)).await,
        Err(StoreError::NotFound { .. })
    ));

    // Many backing-off rows of one lane do not hide another lane's due row, nor a due row of
    // their own lane committed later.
    let mut b = commit("b", "bob", None, "ringing");
    b.at = t(1_000);
    b.effects = (0..50)
        .map(|i| lane_effect(&format!("push-{i}"), Lane::Push, None))
        .collect();
    apply(&*store, b).await;
    for seq in 1..=50 {
        store
            .mark_effect_failed(&sid("b"), seq, "503", t(60_000))
            .await
            .unwrap();
    }
    let mut b2 = commit("b", "bob", Some(1), "ended");
    b2.at = t(2_000);
    b2.effects = vec![
        lane_effect("late-push", Lane::Push, None),
        lane_effect("hangup-b", Lane::Release, None),
    ];
    apply(&*store, b2).await;
    let pushes: Vec<Value> = store
        .due_effects(Lane::Push, t(6_000), 3)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.effect["op"].clone())
        .collect();
    assert_eq!(
        pushes,
        [json!("ended-d1"), json!("ended-d2"), json!("late-push")]
    );
    assert_eq!(
        due_ops(&*store, Lane::Release, 6_000).await,
        ["hangup-1", "hangup-b"]
    );
}

async fn claim_ops(store: &dyn Store, lane: Lane, now: u64, owner: &str) -> Vec<String> {
    store
        .claim_due_effects(lane, t(now), 100, owner, t(now + 1_000))
        .await
        .unwrap()
        .iter()
        .map(|e| e.effect["op"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A claim returns what is due, leased to its owner for a while: another owner gets the row
/// only once the lease has run out or the row was failed or deferred (done and abandoned
/// rows leave). The owner itself may claim its rows again. A leased row still holds back the
/// later rows of its ordering key.
pub async fn claimed_effects_are_leased_until_done_or_expired(h: &dyn Harness) {
    let store = h.open().await;
    let mut a = commit("a", "alice", None, "ringing");
    a.at = t(1_000);
    a.effects = vec![
        lane_effect("dial-1", Lane::Setup, None),
        lane_effect("dial-2", Lane::Setup, None),
        lane_effect("dial-3", Lane::Setup, None),
        lane_effect("dial-4", Lane::Setup, None),
        lane_effect("ring-d1", Lane::Push, Some("push:d1")),
        lane_effect("ended-d1", Lane::Push, Some("push:d1")),
    ];
    apply(&*store, a).await;
    // Unleased, a claim is exactly the due list.
    let due = store.due_effects(Lane::Setup, t(1_000), 100).await.unwrap();
    let claimed = store
        .claim_due_effects(Lane::Setup, t(1_000), 3, "node-a", t(2_000))
        .await
        .unwrap();
    assert_eq!(claimed, due[..3].to_vec());
    assert!(is_invalid(
        store
            .claim_due_effects(Lane::Setup, t(1_000), 3, "", t(2_000))
            .await
    ));

    // Another owner gets only the unleased row, in order; the lease keeps the rest from it.
    assert_eq!(
        claim_ops(&*store, Lane::Setup, 1_500, "node-b").await,
        ["dial-4"]
    );
    assert!(claim_ops(&*store, Lane::Setup, 1_600, "node-c")
        .await
        .is_empty());
    // The holder may claim its own rows again (node-b's row stays node-b's).
    assert_eq!(
        claim_ops(&*store, Lane::Setup, 1_500, "node-a").await,
        ["dial-1", "dial-2", "dial-3"]
    );
    // node-a's leases now run to 2_500: one is done, one failed, one deferred.
    store.mark_effect_done(&sid("a"), 1).await.unwrap();
    store
        .mark_effect_failed(&sid("a"), 2, "503", t(1_700))
        .await
        .unwrap();
    store.defer_effect(&sid("a"), 3, t(1_800)).await.unwrap();
    assert!(claim_ops(&*store, Lane::Setup, 1_650, "node-c")
        .await
        .is_empty());
    assert_eq!(
        claim_ops(&*store, Lane::Setup, 1_700, "node-c").await,
        ["dial-2"]
    );
    assert_eq!(
        claim_ops(&*store, Lane::Setup, 1_800, "node-d").await,
        ["dial-3"]
    );
    // node-b's lease (until 2_500) expires: anyone may take its row, once.
    assert!(claim_ops(&*store, Lane::Setup, 2_499, "node-e")
        .await
        .is_empty());
    assert_eq!(
        claim_ops(&*store, Lane::Setup, 2_500, "node-e").await,
        ["dial-4"]
    );
    assert!(claim_ops(&*store, Lane::Setup, 2_600, "node-f")
        .await
        .is_empty());
    // Leases do not hide rows from the unleased reads.
    assert_eq!(
        store.pending_effects(100).await.unwrap().len(),
        5,
        "every row but the done one is pending"
    );

    // The ring is leased to node-a: node-b gets neither it nor the dismissal it holds back.
    assert_eq!(
        claim_ops(&*store, Lane::Push, 1_000, "node-a").await,
        ["ring-d1"]
    );
    assert!(claim_ops(&*store, Lane::Push, 1_100, "node-b")
        .await
        .is_empty());
    // Even past the ring's lease, the dismissal waits for it: only the ring is handed over.
    assert_eq!(
        claim_ops(&*store, Lane::Push, 2_000, "node-b").await,
        ["ring-d1"]
    );
    store
        .mark_effect_abandoned(&sid("a"), 5, "stale")
        .await
        .unwrap();
    assert_eq!(
        claim_ops(&*store, Lane::Push, 2_100, "node-c").await,
        ["ended-d1"]
    );
}

fn claimed_seqs(outcome: CommitOutcome) -> Vec<u64> {
    match outcome {
        CommitOutcome::Committed { claimed, .. } => claimed,
        other => panic!("expected Committed, got {other:?}"),
    }
}

/// A commit with a claim leases the effects a claim could take at once to the claim's owner,
/// as a claim would: not a host event, not one held back behind an earlier pending effect
/// with its ordering key (in this commit or an earlier one), not one of a quarantined session
/// unless a release. Other owners do not get them until the lease runs out; the owner's own
/// claims do.
pub async fn a_commit_claims_its_own_ready_effects(h: &dyn Harness) {
    let store = h.open().await;
    let every: Vec<(Lane, u32)> = Lane::ALL.iter().map(|l| (*l, 100)).collect();
    let claim = |until: u64| {
        Some(CommitClaim {
            owner: "node-a".into(),
            until: t(until),
        })
    };
    let mut a = commit("a", "alice", None, "ringing");
    a.effects = vec![
        lane_effect("hangup", Lane::Release, None),
        lane_effect("ring-d1", Lane::Push, Some("push:d1")),
        lane_effect("ended-d1", Lane::Push, Some("push:d1")),
        lane_effect("ws", Lane::Realtime, Some("ws:alice")),
        lane_effect("host", Lane::Host, None),
    ];
    a.claim = claim(2_000);
    let outcome = store.commit(a).await.unwrap();
    assert_eq!(claimed_seqs(outcome), [1, 2, 4]);
    // Leased: another owner gets nothing (the dismissal is held back by the ring).
    assert!(claim_all_ops(&*store, &every, 1_500, "node-b")
        .await
        .is_empty());
    assert_eq!(
        claim_all_ops(&*store, &every, 1_500, "node-a").await,
        ["hangup", "ws", "ring-d1"]
    );

    // A later commit's effect behind a pending one of its key is held back; the rest is not.
    let mut again = commit("a", "alice", Some(1), "answered");
    again.at = t(1_100);
    again.effects = vec![
        lane_effect("ws-2", Lane::Realtime, Some("ws:alice")),
        lane_effect("bridge", Lane::Setup, None),
    ];
    again.claim = claim(2_100);
    assert_eq!(claimed_seqs(store.commit(again).await.unwrap()), [7]);
    store.mark_effect_done(&sid("a"), 2).await.unwrap();
    // The ring is done: its dismissal was never leased, so anyone may claim it.
    assert_eq!(
        claim_all_ops(&*store, &[(Lane::Push, 10)], 1_600, "node-b").await,
        ["ended-d1"]
    );

    // Without a claim nothing is leased.
    let mut plain = commit("b", "bob", None, "ringing");
    plain.effects = vec![lane_effect("b-hangup", Lane::Release, None)];
    assert!(claimed_seqs(store.commit(plain).await.unwrap()).is_empty());
    assert_eq!(
        claim_all_ops(&*store, &[(Lane::Release, 10)], 1_600, "node-b").await,
        ["b-hangup"]
    );

    // A quarantined session's commit claims only its releases.
    let mut q = commit("q", "carol", None, "ringing");
    q.effects = vec![lane_effect("q-ring", Lane::Push, Some("push:q"))];
    store.commit(q).await.unwrap();
    store
        .quarantine_session(&sid("q"), "does not decode", t(1_000))
        .await
        .unwrap();
    let mut q2 = commit("q", "carol", Some(1), "ended");
    q2.effects = vec![
        lane_effect("q-hangup", Lane::Release, None),
        lane_effect("q-ws", Lane::Realtime, None),
    ];
    q2.claim = claim(2_000);
    assert_eq!(claimed_seqs(store.commit(q2).await.unwrap()), [2]);

    // Once the leases run out (node-a's own claim took its rows to 2_500), any owner takes
    // what is still pending.
    assert_eq!(
        claim_all_ops(&*store, &every, 2_499, "node-c").await,
        ["q-hangup", "bridge"]
    );
    assert_eq!(
        claim_all_ops(&*store, &every, 2_600, "node-c").await,
        ["hangup", "b-hangup", "q-hangup", "bridge", "ws", "ended-d1"]
    );

    // A claim with no owner is refused, and changes nothing.
    let mut bad = commit("c", "dave", None, "ringing");
    bad.effects = vec![lane_effect("c-hangup", Lane::Release, None)];
    bad.claim = Some(CommitClaim {
        owner: String::new(),
        until: t(2_000),
    });
    assert!(is_invalid(store.commit(bad).await));
    assert!(store.load_session(&sid("c")).await.unwrap().is_none());
}

async fn claim_all_ops(
    store: &dyn Store,
    lanes: &[(Lane, u32)],
    now: u64,
    owner: &str,
) -> Vec<String> {
    store
        .claim_due_effects_all(lanes, t(now), owner, t(now + 1_000))
        .await
        .unwrap()
        .iter()
        .map(|e| e.effect["op"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A lane's due rows are taken earliest due first, ties in commit order: a row backing off
/// goes after rows that were due before it, even ones committed later, and a limit takes the
/// rows that have waited longest.
pub async fn a_lanes_rows_go_earliest_due_first(h: &dyn Harness) {
    let store = h.open().await;
    let mut a = commit("a", "alice", None, "ringing");
    a.at = t(1_000);
    a.effects = vec![
        lane_effect("dial-a1", Lane::Setup, None),
        lane_effect("dial-a2", Lane::Setup, None),
    ];
    apply(&*store, a).await;
    // dial-a1 failed once and is due again at 2_500.
    store
        .mark_effect_failed(&sid("a"), 1, "503", t(2_500))
        .await
        .unwrap();
    let mut b = commit("b", "bob", None, "ringing");
    b.at = t(2_000);
    b.effects = vec![lane_effect("dial-b1", Lane::Setup, None)];
    apply(&*store, b).await;

    assert_eq!(
        due_ops(&*store, Lane::Setup, 3_000).await,
        ["dial-a2", "dial-b1", "dial-a1"]
    );
    let ops = |claimed: Vec<crate::OutboxEntry>| -> Vec<String> {
        claimed
            .iter()
            .map(|e| e.effect["op"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let first = store
        .claim_due_effects_all(&[(Lane::Setup, 2)], t(3_000), "node-a", t(4_000))
        .await
        .unwrap();
    assert_eq!(ops(first), ["dial-a2", "dial-b1"]);
    let single = store
        .claim_due_effects(Lane::Setup, t(3_000), 1, "node-b", t(4_000))
        .await
        .unwrap();
    assert_eq!(ops(single), ["dial-a1"]);
}

/// One claim of several lanes is each lane's claim in turn: lanes in the order asked, each in
/// commit order and within its own limit, with the ordering-key hold-back, the quarantine
/// rule and other owners' leases as in a one-lane claim.
pub async fn one_claim_of_every_lane_keeps_each_lanes_rules(h: &dyn Harness) {
    let store = h.open().await;
    let mut a = commit("a", "alice", None, "ringing");
    a.at = t(1_000);
    a.effects = vec![
        lane_effect("ring-d1", Lane::Push, Some("push:d1")),
        lane_effect("hangup-1", Lane::Release, None),
        lane_effect("ws-ring", Lane::Realtime, Some("ws:alice")),
        lane_effect("dial-1", Lane::Setup, None),
        lane_effect("hangup-2", Lane::Release, None),
        lane_effect("ws-ended", Lane::Realtime, Some("ws:alice")),
        lane_effect("ended-d1", Lane::Push, Some("push:d1")),
        lane_effect("hangup-3", Lane::Release, None),
        lane_effect("speak-1", Lane::Other, None),
        lane_effect("ring-d2", Lane::Push, Some("push:d2")),
    ];
    apply(&*store, a).await;
    let mut q = commit("q", "bob", None, "ringing");
    q.at = t(1_000);
    q.effects = vec![
        lane_effect("q-hangup", Lane::Release, None),
        lane_effect("q-push", Lane::Push, Some("push:q")),
    ];
    apply(&*store, q).await;
    store
        .quarantine_session(&sid("q"), "doc does not decode", t(1_000))
        .await
        .unwrap();

    // Unleased, the claim is each lane's due list in the order asked, within its limit.
    let every: Vec<(Lane, u32)> = Lane::ALL.iter().map(|&l| (l, 100)).collect();
    let mut expected = Vec::new();
    for lane in Lane::ALL {
        expected.extend(store.due_effects(lane, t(1_000), 100).await.unwrap());
    }
    let mut reversed = every.clone();
    reversed.reverse();
    let mut expected_reversed = Vec::new();
    for lane in Lane::ALL.iter().rev() {
        expected_reversed.extend(store.due_effects(*lane, t(1_000), 100).await.unwrap());
    }
    assert_eq!(
        store
            .claim_due_effects_all(&reversed, t(1_000), "node-a", t(1_001))
            .await
            .unwrap(),
        expected_reversed
    );
    // node-a's leases ran out at 1_001.
    assert_eq!(
        store
            .claim_due_effects_all(&every, t(1_001), "node-x", t(1_002))
            .await
            .unwrap(),
        expected
    );
    let ops: Vec<&str> = expected
        .iter()
        .map(|e| e.effect["op"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        ops,
        [
            "hangup-1", "hangup-2", "hangup-3", "q-hangup", "dial-1", "ws-ring", "ring-d1",
            "ring-d2", "speak-1"
        ]
    );

    // Per-lane limits; a limit of 0 claims nothing of that lane.
    let lanes = [
        (Lane::Release, 2),
        (Lane::Setup, 5),
        (Lane::Realtime, 10),
        (Lane::Push, 0),
        (Lane::Other, 1),
    ];
    assert_eq!(
        claim_all_ops(&*store, &lanes, 2_000, "node-a").await,
        ["hangup-1", "hangup-2", "dial-1", "ws-ring", "speak-1"]
    );
    // Another owner reads past node-a's leases: the next release, the pushes, nothing that
    // node-a holds or that a leased row holds back.
    assert_eq!(
        claim_all_ops(
            &*store,
            &[(Lane::Release, 1), (Lane::Push, 1)],
            2_100,
            "node-b"
        )
        .await,
        ["hangup-3", "ring-d1"]
    );
    assert_eq!(
        claim_all_ops(&*store, &every, 2_200, "node-c").await,
        ["q-hangup", "ring-d2"]
    );
    // The holder claims its own rows again.
    assert_eq!(
        claim_all_ops(&*store, &lanes, 2_300, "node-a").await,
        ["hangup-1", "hangup-2", "dial-1", "ws-ring", "speak-1"]
    );
    // Done rows leave and release what they held back (ring-d2 is still node-c's).
    store.mark_effect_done(&sid("a"), 3).await.unwrap();
    store.mark_effect_done(&sid("a"), 1).await.unwrap();
    assert_eq!(
        claim_all_ops(
            &*store,
            &[(Lane::Push, 10), (Lane::Realtime, 10)],
            2_400,
            "node-b"
        )
        .await,
        ["ended-d1", "ws-ended"]
    );

    // Nothing to claim, and what is refused.
    assert!(claim_all_ops(&*store, &[], 2_500, "node-a")
        .await
        .is_empty());
    assert!(is_invalid(
        store
            .claim_due_effects_all(&every, t(2_500), "", t(3_000))
            .await
    ));
    assert!(is_invalid(
        store
            .claim_due_effects_all(
                &[(Lane::Push, 1), (Lane::Push, 1)],
                t(2_500),
                "node-a",
                t(3_000)
            )
            .await
    ));
    assert!(is_invalid(
        store
            .claim_due_effects_all(&[(Lane::Host, 1)], t(2_500), "node-a", t(3_000))
            .await
    ));
}

/// Owners claiming the same lane at the same moment, each through its own store (as separate
/// processes would), never get the same row, and nothing is left out.
pub async fn concurrent_claims_never_share_a_row(h: &dyn Harness) {
    let store = h.open().await;
    let mut c = commit("many", "alice", None, "ringing");
    c.at = t(1_000);
    c.effects = (0..60)
        .map(|i| lane_effect(&format!("op-{i}"), Lane::Realtime, None))
        .collect();
    apply(&*store, c).await;
    let mut racers = Vec::new();
    for n in 0..4 {
        let racer = h.open().await;
        racers.push(tokio::spawn(async move {
            let owner = format!("node-{n}");
            let mut mine = Vec::new();
            for _ in 0..3 {
                let claimed = racer
                    .claim_due_effects(Lane::Realtime, t(1_000), 7, &owner, t(9_000))
                    .await
                    .unwrap();
                mine.extend(claimed.into_iter().map(|e| e.seq));
            }
            (owner, mine)
        }));
    }
    let mut owners: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    for racer in racers {
        let (owner, mine) = racer.await.unwrap();
        for seq in mine {
            // An owner may see its own row twice; another owner never does.
            if let Some(first) = owners.insert(seq, owner.clone()) {
                assert_eq!(first, owner, "row {seq} claimed by {first} and {owner}");
            }
        }
    }
    let rest = store
        .claim_due_effects(Lane::Realtime, t(1_000), 100, "sweeper", t(9_000))
        .await
        .unwrap();
    for e in &rest {
        assert!(
            owners.insert(e.seq, "sweeper".into()).is_none(),
            "row {} claimed twice",
            e.seq
        );
    }
    assert_eq!(owners.len(), 60, "every row claimed once");
}

/// A quarantined session is never due for timers; only its releases are still dispatched.
pub async fn quarantined_sessions_are_skipped(h: &dyn Harness) {
    let store = h.open().await;
    for (session, user) in [("bad", "alice"), ("good", "bob")] {
        let mut c = commit(session, user, None, "ringing");
        c.next_deadline = Some(t(2_000));
        c.effects = vec![
            lane_effect(&format!("{session}-hangup"), Lane::Release, None),
            lane_effect(&format!("{session}-push"), Lane::Push, Some("push:d")),
        ];
        apply(&*store, c).await;
    }
    assert!(
        !store
            .load_session(&sid("bad"))
            .await
            .unwrap()
            .unwrap()
            .quarantined
    );
    assert!(store
        .quarantine_session(&sid("bad"), "doc does not decode", t(1_500))
        .await
        .unwrap());
    assert!(store
        .quarantine_session(&sid("bad"), "again", t(1_600))
        .await
        .unwrap());
    assert!(!store
        .quarantine_session(&sid("nobody"), "x", t(1_600))
        .await
        .unwrap());
    assert!(
        store
            .load_session(&sid("bad"))
            .await
            .unwrap()
            .unwrap()
            .quarantined
    );
    assert_eq!(
        store.due_sessions(t(9_000), 10).await.unwrap(),
        vec![(sid("good"), t(2_000))]
    );
    assert_eq!(
        due_ops(&*store, Lane::Release, 9_000).await,
        ["bad-hangup", "good-hangup"]
    );
    assert_eq!(due_ops(&*store, Lane::Push, 9_000).await, ["good-push"]);
    assert_eq!(
        store.quarantined_sessions(10).await.unwrap(),
        vec![sid("bad")]
    );
    // Reopening keeps the quarantine.
    let again = h.open().await;
    assert_eq!(again.due_sessions(t(9_000), 10).await.unwrap().len(), 1);
}

/// Retention deletes finished outbox rows, old dedupe keys and closed sessions with nothing
/// pending; history only when asked.
pub async fn retention_prunes_what_is_old_and_finished(h: &dyn Harness) {
    let store = h.open().await;
    // "old": closed long ago, its effect done. "waiting": closed, an effect still pending.
    // "live": still ringing.
    for (session, user) in [("old", "alice"), ("waiting", "bob"), ("live", "carol")] {
        let mut c = commit(session, user, None, "ringing");
        c.at = t(1_000);
        c.dedupe_key = Some(format!("{session}-start"));
        c.effects = vec![lane_effect(&format!("{session}-dial"), Lane::Setup, None)];
        c.calls = vec![record(session, user, "t1", 1_000)];
        apply(&*store, c).await;
    }
    for session in ["old", "waiting"] {
        let mut c = commit(session, "x", Some(1), "ended");
        c.at = t(2_000);
        c.closed = true;
        apply(&*store, c).await;
    }
    store.mark_effect_done(&sid("old"), 1).await.unwrap();
    store
        .mark_effect_abandoned(&sid("live"), 1, "gave up")
        .await
        .unwrap();

    let keep_history = Retention {
        finished_effects_before: t(10_000),
        processed_before: t(10_000),
        closed_sessions_before: t(10_000),
        history_before: None,
    };
    assert_eq!(
        store.prune(keep_history).await.unwrap(),
        Pruned {
            effects: 2,
            processed: 3,
            sessions: 1,
            calls: 0
        }
    );
    assert!(store.load_session(&sid("old")).await.unwrap().is_none());
    assert!(store.load_session(&sid("waiting")).await.unwrap().is_some());
    assert!(store.load_session(&sid("live")).await.unwrap().is_some());
    assert_eq!(store.pending_effects(10).await.unwrap().len(), 1);
    assert!(!store.is_processed("old-start").await.unwrap());
    // History stays unless asked.
    assert!(store
        .get_call(&uid("alice"), &sid("old"))
        .await
        .unwrap()
        .is_some());

    // Nothing newer than the cut-offs goes.
    let early = Retention {
        finished_effects_before: t(500),
        processed_before: t(500),
        closed_sessions_before: t(500),
        history_before: Some(t(500)),
    };
    assert_eq!(store.prune(early).await.unwrap(), Pruned::default());

    let drop_history = Retention {
        history_before: Some(t(10_000)),
        ..keep_history
    };
    assert_eq!(store.prune(drop_history).await.unwrap().calls, 3);
    assert!(store
        .get_call(&uid("alice"), &sid("old"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_calls(&uid("carol"), None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
}

/// Effects come out in commit order with per-session sequences; done and abandoned effects
/// leave the queue, failed ones stay with their attempt count.
pub async fn outbox_keeps_commit_order_and_tracks_dispatch(h: &dyn Harness) {
    let store = h.open().await;
    let with_effects = |mut c: Commit, effects: &[&str], at: u64| {
        c.effects = effects.iter().map(|e| json!({ "op": e }).into()).collect();
        c.at = t(at);
        c
    };
    let a1 = with_effects(commit("a", "alice", None, "ringing"), &["a1", "a2"], 100);
    assert_eq!(apply(&*store, a1).await, (1, vec![1, 2]));
    let b1 = with_effects(commit("b", "bob", None, "ringing"), &["b1"], 100);
    assert_eq!(apply(&*store, b1).await, (1, vec![1]));
    let a2 = with_effects(
        commit("a", "alice", Some(1), "answered"),
        &["a3", "a4"],
        200,
    );
    assert_eq!(apply(&*store, a2).await, (2, vec![3, 4]));

    let pending = store.pending_effects(100).await.unwrap();
    let order: Vec<(String, u64, Value)> = pending
        .iter()
        .map(|e| (e.session_id.to_string(), e.seq, e.effect.clone()))
        .collect();
    let expected = [
        ("a", 1, "a1"),
        ("b", 1, "b1"),
        ("a", 3, "a3"),
        ("a", 4, "a4"),
    ];
    let mut expected: Vec<(String, u64, Value)> = expected
        .iter()
        .map(|(s, n, op)| (s.to_string(), *n, json!({ "op": op })))
        .collect();
    expected.insert(1, ("a".into(), 2, json!({ "op": "a2" })));
    assert_eq!(order, expected);
    assert!(pending
        .iter()
        .all(|e| e.attempts == 0 && e.last_error.is_none()));
    assert_eq!(pending[0].created_at, t(100));
    assert_eq!(pending[3].created_at, t(200));
    assert_eq!(
        store.pending_effects(2).await.unwrap(),
        pending[..2].to_vec()
    );
    assert!(store.pending_effects(0).await.unwrap().is_empty());

    // Effects without an ordering key hold nothing back.
    assert!(!store.mark_effect_done(&sid("a"), 1).await.unwrap());
    assert!(!store.mark_effect_done(&sid("a"), 1).await.unwrap());
    store
        .mark_effect_failed(&sid("a"), 2, "timeout", t(0))
        .await
        .unwrap();
    store
        .mark_effect_failed(&sid("a"), 2, "503 from Telnyx", t(0))
        .await
        .unwrap();
    store
        .mark_effect_abandoned(&sid("b"), 1, "gave up")
        .await
        .unwrap();
    // A late failure report for an abandoned effect does not resurrect it.
    store
        .mark_effect_failed(&sid("b"), 1, "late", t(0))
        .await
        .unwrap();

    let pending = store.pending_effects(100).await.unwrap();
    let keys: Vec<(String, u64)> = pending
        .iter()
        .map(|e| (e.session_id.to_string(), e.seq))
        .collect();
    assert_eq!(
        keys,
        vec![("a".into(), 2), ("a".into(), 3), ("a".into(), 4)]
    );
    assert_eq!(pending[0].attempts, 2);
    assert_eq!(pending[0].last_error.as_deref(), Some("503 from Telnyx"));

    for result in [
        store.mark_effect_done(&sid("a"), 99).await.map(drop),
        store.mark_effect_failed(&sid("zzz"), 1, "x", t(0)).await,
        store.mark_effect_abandoned(&sid("a"), 0, "x").await,
    ] {
        assert!(
            matches!(result, Err(StoreError::NotFound { .. })),
            "{result:?}"
        );
    }

    // Commits without effects keep the sequence going where it was.
    assert_eq!(
        apply(&*store, commit("a", "alice", Some(2), "bridged")).await,
        (3, vec![])
    );
    let a4 = with_effects(commit("a", "alice", Some(3), "ended"), &["a5"], 300);
    assert_eq!(apply(&*store, a4).await, (4, vec![5]));
}

/// Sessions come back once their deadline has passed, earliest first.
pub async fn timers_fire_when_due(h: &dyn Harness) {
    let store = h.open().await;
    for (session, deadline) in [
        ("s1", Some(5_000)),
        ("s2", Some(3_000)),
        ("s3", None),
        ("s4", Some(5_000)),
    ] {
        let mut c = commit(session, "alice", None, "ringing");
        c.next_deadline = deadline.map(t);
        apply(&*store, c).await;
    }
    let due = |now: u64, limit: u32| {
        let store = store.clone();
        async move {
            store
                .due_sessions(t(now), limit)
                .await
                .unwrap()
                .into_iter()
                .map(|(s, at)| (s.to_string(), at.as_millis()))
                .collect::<Vec<_>>()
        }
    };
    let pair = |s: &str, at: u64| (s.to_string(), at);
    assert!(due(2_999, 10).await.is_empty());
    assert_eq!(due(3_000, 10).await, vec![pair("s2", 3_000)]);
    assert_eq!(
        due(10_000, 10).await,
        vec![pair("s2", 3_000), pair("s1", 5_000), pair("s4", 5_000)]
    );
    assert_eq!(due(10_000, 1).await, vec![pair("s2", 3_000)]);

    apply(&*store, commit("s2", "alice", Some(1), "missed")).await;
    let mut later = commit("s1", "alice", Some(1), "voicemail");
    later.next_deadline = Some(t(20_000));
    apply(&*store, later).await;
    assert_eq!(due(10_000, 10).await, vec![pair("s4", 5_000)]);
    assert_eq!(
        due(20_000, 10).await,
        vec![pair("s4", 5_000), pair("s1", 20_000)]
    );
}

/// What `owner` claims of the sessions due at `now`, leased until `until`, as (id, deadline).
async fn claim_timers(
    store: &dyn Store,
    now: u64,
    limit: u32,
    owner: &str,
    until: u64,
) -> Vec<(String, u64)> {
    store
        .claim_due_sessions(t(now), limit, owner, t(until))
        .await
        .unwrap()
        .into_iter()
        .map(|(s, at)| (s.to_string(), at.as_millis()))
        .collect()
}

/// A claimed timer is skipped by other owners until its lease expires or the session commits
/// (then its next deadline is claimable at once); its owner may claim it again.
pub async fn claimed_timers_are_leased_until_committed_or_expired(h: &dyn Harness) {
    let store = h.open().await;
    for (session, deadline) in [
        ("s1", Some(3_000)),
        ("s2", Some(5_000)),
        ("s3", Some(2_000)),
        ("s4", None),
    ] {
        let mut c = commit(session, "alice", None, "ringing");
        c.next_deadline = deadline.map(t);
        apply(&*store, c).await;
    }
    store
        .quarantine_session(&sid("s3"), "doc does not decode", t(1_500))
        .await
        .unwrap();
    let pair = |s: &str, at: u64| (s.to_string(), at);
    assert!(is_invalid(
        store.claim_due_sessions(t(6_000), 10, "", t(7_000)).await
    ));

    // A held session does not use up another owner's limit.
    assert_eq!(
        claim_timers(&*store, 6_000, 1, "node-a", 7_000).await,
        [pair("s1", 3_000)]
    );
    assert_eq!(
        claim_timers(&*store, 6_000, 1, "node-b", 7_000).await,
        [pair("s2", 5_000)]
    );
    assert!(claim_timers(&*store, 6_000, 10, "node-c", 7_000)
        .await
        .is_empty());
    assert_eq!(
        claim_timers(&*store, 6_000, 10, "node-a", 8_000).await,
        [pair("s1", 3_000)],
        "an owner claims its own session again"
    );

    // The tick's commit ends node-a's lease: the next deadline is claimable at once.
    let mut tick = commit("s1", "alice", Some(1), "voicemail");
    tick.next_deadline = Some(t(6_500));
    apply(&*store, tick).await;
    assert_eq!(
        claim_timers(&*store, 6_500, 10, "node-c", 9_000).await,
        [pair("s1", 6_500)]
    );
    // node-b's lease on s2 ran out at 7 000.
    assert_eq!(
        claim_timers(&*store, 7_000, 10, "node-a", 9_000).await,
        [pair("s2", 5_000)]
    );
    assert!(claim_timers(&*store, 8_999, 10, "node-b", 10_000)
        .await
        .is_empty());
    // The plain read ignores leases.
    assert_eq!(store.due_sessions(t(8_999), 10).await.unwrap().len(), 2);
}

/// Owners claiming timers at the same moment, each through its own store (as separate
/// processes would), never get the same session, and nothing is left out.
pub async fn concurrent_timer_claims_never_share_a_session(h: &dyn Harness) {
    let store = h.open().await;
    for i in 0..60u64 {
        let mut c = commit(&format!("timer-{i:02}"), "alice", None, "ringing");
        c.next_deadline = Some(t(1_000 + i % 7));
        apply(&*store, c).await;
    }
    let mut racers = Vec::new();
    for n in 0..4 {
        let racer = h.open().await;
        racers.push(tokio::spawn(async move {
            let owner = format!("node-{n}");
            let mut mine = Vec::new();
            for _ in 0..3 {
                mine.extend(claim_timers(&*racer, 2_000, 7, &owner, 9_000).await);
            }
            (owner, mine)
        }));
    }
    let mut owners: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for racer in racers {
        let (owner, mine) = racer.await.unwrap();
        for (session, _) in mine {
            // An owner may see its own session twice; another owner never does.
            if let Some(first) = owners.insert(session.clone(), owner.clone()) {
                assert_eq!(first, owner, "{session} claimed by {first} and {owner}");
            }
        }
    }
    for (session, _) in claim_timers(&*store, 2_000, 100, "sweeper", 9_000).await {
        assert!(
            owners.insert(session.clone(), "sweeper".into()).is_none(),
            "{session} claimed twice"
        );
    }
    assert_eq!(owners.len(), 60, "every session claimed once");
}

// ---------------------------------------------------------------------------------------------
// Registry

/// Without call waiting a second active call is refused (and nothing of that commit lands);
/// `Clear` only removes the matching call.
pub async fn registry_allows_one_active_call_without_call_waiting(h: &dyn Harness) {
    let store = h.open().await;
    store
        .create_user(user("alice", "t1", &["+15550000001"]))
        .await
        .unwrap();
    let mut c1 = commit("c1", "alice", None, "bridged");
    c1.registry = vec![RegistryChange::Set(active("alice", "c1", "d1", 100))];
    apply(&*store, c1).await;
    assert_eq!(
        store.active_calls(&uid("alice")).await.unwrap(),
        vec![active("alice", "c1", "d1", 100)]
    );

    let mut c2 = commit("c2", "alice", None, "bridged");
    c2.registry = vec![RegistryChange::Set(active("alice", "c2", "d2", 200))];
    c2.effects = vec![json!({ "bridge": "c2" }).into()];
    c2.dedupe_key = Some("evt-c2".into());
    c2.calls = vec![record("c2", "alice", "t1", 200)];
    assert_eq!(
        store.commit(c2.clone()).await.unwrap(),
        CommitOutcome::Busy {
            active: vec![active("alice", "c1", "d1", 100)]
        }
    );
    assert_eq!(store.load_session(&sid("c2")).await.unwrap(), None);
    assert!(!store.is_processed("evt-c2").await.unwrap());
    assert!(store.pending_effects(10).await.unwrap().is_empty());
    assert_eq!(
        store.get_call(&uid("alice"), &sid("c2")).await.unwrap(),
        None
    );

    // Re-setting the same call updates it; clearing another call is a no-op.
    let mut c1b = commit("c1", "alice", Some(1), "bridged");
    c1b.registry = vec![
        RegistryChange::Set(active("alice", "c1", "d9", 150)),
        RegistryChange::Clear {
            user_id: uid("alice"),
            call_session_id: sid("c2"),
        },
    ];
    apply(&*store, c1b).await;
    assert_eq!(
        store.active_calls(&uid("alice")).await.unwrap(),
        vec![active("alice", "c1", "d9", 150)]
    );

    let mut end = commit("c1", "alice", Some(2), "ended");
    end.registry = vec![RegistryChange::Clear {
        user_id: uid("alice"),
        call_session_id: sid("c1"),
    }];
    apply(&*store, end).await;
    assert!(store.active_calls(&uid("alice")).await.unwrap().is_empty());
    assert_eq!(apply(&*store, c2).await.0, 1);
    assert_eq!(
        store.active_calls(&uid("alice")).await.unwrap(),
        vec![active("alice", "c2", "d2", 200)]
    );
    // Someone else's registry is untouched by all of this.
    assert!(store.active_calls(&uid("bob")).await.unwrap().is_empty());
}

/// With call waiting a user may hold several active calls.
pub async fn registry_call_waiting_allows_several(h: &dyn Harness) {
    let store = h.open().await;
    let mut waiting = user("wendy", "t1", &["+15550000001"]);
    waiting.call_waiting = true;
    store.create_user(waiting).await.unwrap();
    for (session, started) in [("c2", 200), ("c1", 100)] {
        let mut c = commit(session, "wendy", None, "bridged");
        c.registry = vec![RegistryChange::Set(active("wendy", session, "d1", started))];
        apply(&*store, c).await;
    }
    let both = vec![
        active("wendy", "c1", "d1", 100),
        active("wendy", "c2", "d1", 200),
    ];
    assert_eq!(store.active_calls(&uid("wendy")).await.unwrap(), both);

    store
        .update_user_settings(
            &uid("wendy"),
            UserSettings {
                call_waiting: false,
                voicemail_enabled: true,
            },
        )
        .await
        .unwrap();
    let mut c3 = commit("c3", "wendy", None, "bridged");
    c3.registry = vec![RegistryChange::Set(active("wendy", "c3", "d1", 300))];
    assert_eq!(
        store.commit(c3).await.unwrap(),
        CommitOutcome::Busy { active: both }
    );

    let mut end = commit("c1", "wendy", Some(1), "ended");
    end.registry = vec![RegistryChange::Clear {
        user_id: uid("wendy"),
        call_session_id: sid("c1"),
    }];
    apply(&*store, end).await;
    assert_eq!(
        store.active_calls(&uid("wendy")).await.unwrap(),
        vec![active("wendy", "c2", "d1", 200)]
    );
}

// ---------------------------------------------------------------------------------------------
// History

/// However many commits touch a call, it has one history record holding the last write, one
/// row per leg, and every timeline entry in order.
pub async fn history_is_upserted_once_per_call(h: &dyn Harness) {
    let store = h.open().await;
    let mut c = commit("s1", "alice", None, "ringing");
    c.calls = vec![record("s1", "alice", "t1", 1_000)];
    c.legs = vec![
        leg("v3:leg-2", "s1", "d2", "dialing", 1_010),
        leg("v3:leg-1", "s1", "d1", "dialing", 1_005),
    ];
    c.timeline = vec![entry("s1", 1_000, "webhook.call.initiated", "ringing")];
    apply(&*store, c).await;

    let mut answered = record("s1", "alice", "t1", 1_000);
    answered.status = CallStatus::Answered;
    answered.answered_device = Some(DeviceId::new("d1"));
    answered.answered_at = Some(t(4_000));
    answered.bridged_at = Some(t(4_000));
    let mut c = commit("s1", "alice", Some(1), "answered");
    c.calls = vec![answered.clone()];
    c.legs = vec![LegRecord {
        answered_at: Some(t(4_000)),
        ..leg("v3:leg-1", "s1", "d1", "answered", 1_005)
    }];
    c.timeline = vec![entry("s1", 4_000, "webhook.call.answered", "answered")];
    apply(&*store, c).await;

    let mut ended = answered.clone();
    ended.status = CallStatus::Ended;
    ended.ended_at = Some(t(65_500));
    ended.hangup_cause = Some("normal_clearing".into());
    ended.recording_url = Some("https://example.com/rec.wav".into());
    ended.quality = Some(json!({ "mos": 4.2 }));
    let mut c = commit("s1", "alice", Some(2), "ended");
    c.calls = vec![ended.clone()];
    let bill = BillingRecord::for_call(&ended, t(65_500));
    c.billing = vec![bill.clone()];
    c.legs = vec![
        LegRecord {
            answered_at: Some(t(4_000)),
            ended_at: Some(t(65_500)),
            hangup_cause: Some("normal_clearing".into()),
            ..leg("v3:leg-1", "s1", "d1", "ended", 1_005)
        },
        LegRecord {
            ended_at: Some(t(4_100)),
            hangup_cause: Some("answered_elsewhere".into()),
            ..leg("v3:leg-2", "s1", "d2", "dismissed", 1_010)
        },
    ];
    c.timeline = vec![
        entry("s1", 65_500, "webhook.call.hangup", "ended"),
        TimelineEntry {
            source: TimelineSource::Device,
            device_id: Some(DeviceId::new("d2")),
            from_state: Some("RINGING".into()),
            detail: json!({ "seq": 3 }),
            ..entry("s1", 4_200, "device.transition", "ENDED")
        },
    ];
    apply(&*store, c).await;
    // A replayed write of the same record still leaves exactly one, and the billing record
    // is the first one written.
    let mut c = commit("s1", "alice", Some(3), "ended");
    c.calls = vec![ended.clone()];
    c.billing = vec![BillingRecord {
        quantity: 99,
        created_at: t(90_000),
        ..bill.clone()
    }];
    apply(&*store, c).await;

    let page = store.list_calls(&uid("alice"), None, 50).await.unwrap();
    assert_eq!(page.items, vec![ended.clone()]);
    assert_eq!(page.next_cursor, None);
    assert_eq!(page.items[0].billable_seconds(), 62);
    assert_eq!(page.items[0].billing_minutes(), 2);

    let detail = store
        .get_call(&uid("alice"), &sid("s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.call, ended);
    assert_eq!(detail.billing, Some(bill));
    assert_eq!(detail.billing.as_ref().map(|b| b.quantity), Some(2));
    let legs: Vec<(&str, &str, Option<&str>)> = detail
        .legs
        .iter()
        .map(|l| {
            (
                l.call_control_id.as_str(),
                l.status.as_str(),
                l.hangup_cause.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        legs,
        vec![
            ("v3:leg-1", "ended", Some("normal_clearing")),
            ("v3:leg-2", "dismissed", Some("answered_elsewhere")),
        ]
    );
    let kinds: Vec<&str> = detail.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "webhook.call.initiated",
            "webhook.call.answered",
            "webhook.call.hangup",
            "device.transition",
        ]
    );
    let device_entry = &detail.timeline[3];
    assert_eq!(device_entry.source, TimelineSource::Device);
    assert_eq!(device_entry.device_id, Some(DeviceId::new("d2")));
    assert_eq!(device_entry.from_state.as_deref(), Some("RINGING"));
    assert_eq!(device_entry.detail, json!({ "seq": 3 }));
}

/// A call declined for everyone is recorded as `declined`, not as ended or missed, bills
/// nothing, and reads back the same after a restart.
pub async fn history_keeps_declined_calls_apart(h: &dyn Harness) {
    let store = h.open().await;
    let mut c = commit("sd", "alice", None, "ringing");
    c.calls = vec![record("sd", "alice", "t1", 1_000)];
    apply(&*store, c).await;
    let mut declined = record("sd", "alice", "t1", 1_000);
    declined.status = CallStatus::Declined;
    declined.ended_at = Some(t(95_000));
    declined.hangup_cause = Some("declined_elsewhere".into());
    let mut c = commit("sd", "alice", Some(1), "declined");
    c.calls = vec![declined.clone()];
    c.legs = vec![LegRecord {
        ended_at: Some(t(95_000)),
        hangup_cause: Some("normal_clearing".into()),
        ..leg("v3:sd-1", "sd", "d1", "ended", 1_000)
    }];
    apply(&*store, c).await;
    let mut missed = record("sm", "alice", "t1", 2_000);
    missed.status = CallStatus::Missed;
    missed.ended_at = Some(t(32_000));
    let mut c = commit("sm", "alice", None, "missed");
    c.calls = vec![missed.clone()];
    apply(&*store, c).await;

    for store in [store, h.open().await] {
        let page = store.list_calls(&uid("alice"), None, 10).await.unwrap();
        let statuses: Vec<(&str, CallStatus)> = page
            .items
            .iter()
            .map(|r| (r.call_session_id.as_str(), r.status))
            .collect();
        assert_eq!(
            statuses,
            vec![("sm", CallStatus::Missed), ("sd", CallStatus::Declined)]
        );
        let detail = store
            .get_call(&uid("alice"), &sid("sd"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(detail.call, declined);
        assert_eq!(detail.call.status.as_str(), "declined");
        assert_eq!(detail.call.billable_seconds(), 0);
        assert_eq!(detail.call.billing_minutes(), 0);
        assert_eq!(
            detail.legs[0].hangup_cause.as_deref(),
            Some("normal_clearing")
        );
    }
}

/// A user sees only their own calls; history cannot be moved to another user or call.
pub async fn history_is_scoped_to_its_user(h: &dyn Harness) {
    let store = h.open().await;
    let mut a = commit("sa", "alice", None, "ringing");
    a.calls = vec![record("sa", "alice", "t1", 1_000)];
    a.legs = vec![leg("v3:a1", "sa", "da", "dialing", 1_000)];
    apply(&*store, a).await;
    let mut b = commit("sb", "bob", None, "ringing");
    b.calls = vec![record("sb", "bob", "t2", 2_000)];
    apply(&*store, b).await;

    assert!(store
        .get_call(&uid("alice"), &sid("sa"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.get_call(&uid("bob"), &sid("sa")).await.unwrap(), None);
    assert_eq!(
        store.get_call(&uid("alice"), &sid("sb")).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_call(&uid("bob"), &sid("nope")).await.unwrap(),
        None
    );
    let bobs = store.list_calls(&uid("bob"), None, 10).await.unwrap();
    assert_eq!(bobs.items, vec![record("sb", "bob", "t2", 2_000)]);

    let before = store.get_call(&uid("alice"), &sid("sa")).await.unwrap();
    let mut steal = commit("sa", "alice", Some(1), "answered");
    steal.calls = vec![record("sa", "bob", "t2", 1_000)];
    steal.effects = vec![json!({ "leak": true }).into()];
    assert!(is_invalid(store.commit(steal).await));
    let mut move_leg = commit("sb", "bob", Some(1), "answered");
    move_leg.legs = vec![leg("v3:a1", "sb", "db", "answered", 2_000)];
    assert!(is_invalid(store.commit(move_leg).await));

    assert_eq!(
        store.get_call(&uid("alice"), &sid("sa")).await.unwrap(),
        before
    );
    assert_eq!(store.get_call(&uid("bob"), &sid("sa")).await.unwrap(), None);
    for s in ["sa", "sb"] {
        assert_eq!(
            store.load_session(&sid(s)).await.unwrap().unwrap().version,
            1
        );
    }
    assert!(store.pending_effects(10).await.unwrap().is_empty());
}

/// The operator's reads cross users: live calls newest first without finished ones, and
/// timeline entries from a moment on, oldest first.
pub async fn live_calls_and_recent_timeline_span_every_user(h: &dyn Harness) {
    let store = h.open().await;
    let mut a = commit("sa", "alice", None, "ringing");
    a.calls = vec![record("sa", "alice", "t1", 1_000)];
    a.timeline = vec![entry("sa", 1_000, "incoming", "ringing")];
    apply(&*store, a).await;
    let mut b = commit("sb", "bob", None, "bridged");
    b.calls = vec![CallRecord {
        status: CallStatus::Bridged,
        answered_at: Some(t(2_500)),
        ..record("sb", "bob", "t2", 2_000)
    }];
    b.timeline = vec![
        entry("sb", 2_000, "incoming", "ringing"),
        entry("sb", 2_500, "answered", "bridged"),
    ];
    apply(&*store, b).await;
    let mut c = commit("sc", "carol", None, "ended");
    c.calls = vec![CallRecord {
        status: CallStatus::Missed,
        ended_at: Some(t(3_500)),
        ..record("sc", "carol", "t1", 3_000)
    }];
    c.timeline = vec![entry("sc", 3_000, "incoming", "ringing")];
    apply(&*store, c).await;

    let live = store.live_calls(10).await.unwrap();
    let ids: Vec<&str> = live.iter().map(|c| c.call_session_id.as_str()).collect();
    assert_eq!(ids, ["sb", "sa"]);
    assert_eq!(store.live_calls(1).await.unwrap().len(), 1);
    assert!(is_invalid(store.live_calls(0).await));

    let recent = store.timeline_since(t(2_000), 10).await.unwrap();
    let seen: Vec<(&str, &str)> = recent
        .iter()
        .map(|e| (e.call_session_id.as_str(), e.kind.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("sb", "incoming"), ("sb", "answered"), ("sc", "incoming")]
    );
    assert_eq!(store.timeline_since(t(2_000), 2).await.unwrap().len(), 2);
    assert!(is_invalid(store.timeline_since(t(0), 0).await));
}

/// History pages go newest first, without gaps or repeats, ties broken by call id.
pub async fn history_pages_newest_first(h: &dyn Harness) {
    let store = h.open().await;
    for (session, started) in [
        ("c1", 100),
        ("c4", 500),
        ("c2", 200),
        ("c3b", 300),
        ("c3a", 300),
    ] {
        let mut c = commit(session, "alice", None, "ended");
        c.calls = vec![record(session, "alice", "t1", started)];
        apply(&*store, c).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_calls(&uid("alice"), cursor.as_deref(), 2)
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|c| c.call_session_id.to_string()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, vec!["c4", "c3b", "c3a", "c2", "c1"]);
    assert_eq!(pages, 3);

    let all = store.list_calls(&uid("alice"), None, 10_000).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next_cursor, None);
    let exact = store.list_calls(&uid("alice"), None, 5).await.unwrap();
    assert_eq!((exact.items.len(), exact.next_cursor), (5, None));
    assert!(is_invalid(store.list_calls(&uid("alice"), None, 0).await));
    assert!(is_invalid(
        store
            .list_calls(&uid("alice"), Some("not-a-cursor"), 2)
            .await
    ));
}

// ---------------------------------------------------------------------------------------------
// Robustness

/// Inputs beyond the limits are refused with `Invalid` and change nothing.
pub async fn invalid_input_changes_nothing(h: &dyn Harness) {
    let store = h.open().await;
    let mut bad: Vec<Commit> = vec![
        commit("s1", "alice", None, ""),
        commit("s1", "alice", None, "has space"),
        commit("", "alice", None, "ringing"),
        commit("s1", "alice", Some(0), "ringing"),
    ];
    let mut c = commit("s1", "alice", None, "ringing");
    c.doc = json!({ "blob": "x".repeat(crate::limits::MAX_DOC_BYTES) });
    bad.push(c);
    let mut c = commit("s1", "alice", None, "ringing");
    c.next_deadline = Some(t(u64::MAX));
    bad.push(c);
    let mut c = commit("s1", "alice", None, "ringing");
    c.effects = vec![crate::OutboxEffect::from(json!(1)); crate::limits::MAX_ITEMS_PER_COMMIT + 1];
    bad.push(c);
    let mut c = commit("s1", "alice", None, "ringing");
    c.dedupe_key = Some("k".repeat(crate::limits::MAX_DEDUPE_KEY_LEN + 1));
    bad.push(c);
    let mut c = commit("s1", "alice", None, "ringing");
    c.legs = vec![leg("v3:x", "s1", "d1", "Dialing Now", 1)];
    bad.push(c);
    let mut c = commit("s1", "alice", None, "ringing");
    c.dedupe_key = Some("evt-bad".into());
    c.effects = vec![json!({ "dial": 1 }).into()];
    c.calls = vec![CallRecord {
        from: String::new(),
        ..record("s1", "alice", "t1", 1)
    }];
    bad.push(c);

    for c in bad {
        let result = store.commit(c).await;
        assert!(
            matches!(result, Err(StoreError::Invalid { .. })),
            "{result:?}"
        );
    }
    assert_eq!(store.load_session(&sid("s1")).await.unwrap(), None);
    assert_eq!(store.load_session(&sid("")).await.unwrap(), None);
    assert!(!store.is_processed("evt-bad").await.unwrap());
    assert!(store.pending_effects(10).await.unwrap().is_empty());
    assert!(store
        .list_calls(&uid("alice"), None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
}

/// A restarted store sees every commit: directory, sessions, timers, pending effects with
/// their attempts, dedupe keys, registry and history; sequences continue.
pub async fn state_survives_reopen(h: &dyn Harness) {
    let first = h.open().await;
    let alice = user("alice", "t1", &["+15550000001"]);
    first.create_user(alice.clone()).await.unwrap();
    let d1 = device("d1", "alice", 10);
    first.create_device(d1.clone()).await.unwrap();
    let mut c = commit("s1", "alice", None, "bridged");
    c.next_deadline = Some(t(31_000));
    c.effects = vec![
        json!({ "n": 1 }).into(),
        json!({ "n": 2 }).into(),
        json!({ "n": 3 }).into(),
    ];
    c.dedupe_key = Some("evt-1".into());
    c.registry = vec![RegistryChange::Set(active("alice", "s1", "d1", 100))];
    c.calls = vec![record("s1", "alice", "t1", 100)];
    c.timeline = vec![entry("s1", 100, "webhook.call.initiated", "ringing")];
    apply(&*first, c).await;
    first.mark_effect_done(&sid("s1"), 1).await.unwrap();
    first
        .mark_effect_failed(&sid("s1"), 2, "connection reset", t(0))
        .await
        .unwrap();
    let session = first.load_session(&sid("s1")).await.unwrap();
    let call = first.get_call(&uid("alice"), &sid("s1")).await.unwrap();
    first.close().await;
    drop(first);

    let second = h.open().await;
    assert_eq!(second.get_user(&uid("alice")).await.unwrap(), Some(alice));
    assert_eq!(second.get_device(&d1.id).await.unwrap(), Some(d1));
    assert_eq!(second.load_session(&sid("s1")).await.unwrap(), session);
    let pending = second.pending_effects(10).await.unwrap();
    let summary: Vec<(u64, Value, u32)> = pending
        .iter()
        .map(|e| (e.seq, e.effect.clone(), e.attempts))
        .collect();
    assert_eq!(
        summary,
        vec![(2, json!({ "n": 2 }), 1), (3, json!({ "n": 3 }), 0)]
    );
    assert!(second.is_processed("evt-1").await.unwrap());
    assert_eq!(
        second.due_sessions(t(31_000), 10).await.unwrap(),
        vec![(sid("s1"), t(31_000))]
    );
    assert_eq!(
        second.active_calls(&uid("alice")).await.unwrap(),
        vec![active("alice", "s1", "d1", 100)]
    );
    assert_eq!(
        second.get_call(&uid("alice"), &sid("s1")).await.unwrap(),
        call
    );

    let mut dup = commit("s1", "alice", Some(1), "ended");
    dup.dedupe_key = Some("evt-1".into());
    assert_eq!(second.commit(dup).await.unwrap(), CommitOutcome::Duplicate);
    let mut next = commit("s1", "alice", Some(1), "ended");
    next.effects = vec![json!({ "n": 4 }).into()];
    assert_eq!(apply(&*second, next).await, (2, vec![4]));
    second.close().await;
}

pub async fn ops_stats_count_live_calls_and_the_outbox_backlog(h: &dyn Harness) {
    let store = h.open().await;
    assert_eq!(store.ops_stats().await.unwrap(), crate::OpsStats::default());
    let typed = |kind: &str| json!({ "type": kind });
    let mut a = commit("a", "alice", None, "ringing");
    a.effects = vec![
        in_lane(typed("telnyx"), Lane::Setup),
        in_lane(typed("telnyx"), Lane::Setup),
        in_lane(typed("notify"), Lane::Realtime),
    ];
    a.at = t(100);
    apply(&*store, a).await;
    let mut b = commit("b", "bob", None, "ringing");
    b.effects = vec![in_lane(typed("notify"), Lane::Realtime)];
    b.at = t(50);
    apply(&*store, b).await;
    apply(&*store, commit("c", "carol", None, "bridged")).await;
    apply(&*store, commit("d", "dave", None, "ended")).await;

    let stats = store.ops_stats().await.unwrap();
    assert_eq!(
        stats.live_sessions,
        vec![("bridged".to_owned(), 1), ("ringing".to_owned(), 2)]
    );
    let backlog = |lane: &str, depth: u64, oldest: u64| crate::OutboxBacklog {
        lane: lane.to_owned(),
        depth,
        oldest: Some(t(oldest)),
    };
    assert_eq!(
        stats.outbox,
        vec![backlog("realtime", 2, 50), backlog("setup", 2, 100)]
    );
    store.mark_effect_done(&sid("b"), 1).await.unwrap();
    let stats = store.ops_stats().await.unwrap();
    assert_eq!(
        stats.outbox,
        vec![backlog("realtime", 1, 100), backlog("setup", 2, 100)]
    );
}

pub async fn webhook_events_are_logged_in_order_and_endpoints_track_delivery(h: &dyn Harness) {
    use crate::host_event::{EventData, HostEvent};
    use crate::webhook_store::{AttemptResult, WebhookEndpoint};
    let store = h.open().await;
    let event = |key: &str, kind: &str| {
        let data = EventData {
            call_session_id: Some(key.to_owned()),
            user_id: "alice".to_owned(),
            ..EventData::default()
        };
        serde_json::to_value(HostEvent::new(kind, key, t(1_000), data)).unwrap()
    };
    let endpoint = |id: &str| WebhookEndpoint {
        id: id.to_owned(),
        url: "https://example.com/hook".to_owned(),
        events: vec!["call.ended".to_owned()],
        secret: "whsec_c2VjcmV0".to_owned(),
        created_at: t(500),
        cursor: 0,
        attempts: 0,
        next_attempt_at: t(500),
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
    };
    let first = store
        .create_webhook_endpoint(endpoint("whe_a"))
        .await
        .unwrap();
    assert_eq!(first.cursor, 0);

    let mut a = commit("a", "alice", None, "ringing");
    a.effects = vec![
        json!({ "type": "telnyx" }).into(),
        host(event("a", "call.ringing")),
    ];
    apply(&*store, a).await;
    let mut b = commit("a", "alice", Some(1), "ended");
    b.effects = vec![host(event("a", "call.ended"))];
    apply(&*store, b).await;
    assert_eq!(store.publish_host_events(100).await.unwrap(), 2);
    assert_eq!(store.publish_host_events(100).await.unwrap(), 0);
    let left = store.pending_effects(10).await.unwrap();
    assert_eq!(left.len(), 1, "only the command stays in the outbox");
    assert_eq!(left[0].effect["type"], "telnyx");

    let logged = store.events_after(0, 10).await.unwrap();
    let kinds: Vec<&str> = logged.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["call.ringing", "call.ended"]);
    assert!(logged[0].seq < logged[1].seq);
    assert_eq!(logged[1].event_id, "evt_a_call_ended");
    let body: Value = serde_json::from_str(&logged[1].body).unwrap();
    assert_eq!(body["type"], "call.ended");
    assert_eq!(body["timestamp"], "1970-01-01T00:00:01Z");
    assert_eq!(body["data"]["call_session_id"], "a");
    assert_eq!(
        store.events_after(logged[0].seq, 10).await.unwrap(),
        logged[1..].to_vec()
    );
    let second = store
        .create_webhook_endpoint(endpoint("whe_b"))
        .await
        .unwrap();
    assert_eq!(
        second.cursor, logged[1].seq,
        "a new endpoint gets only new events"
    );

    let attempt = |seq: u64, at: u64, error: Option<&str>, disable: Option<&str>| AttemptResult {
        seq,
        event_id: "evt_a_call_ended".to_owned(),
        at: t(at),
        status_code: Some(if error.is_some() { 503 } else { 204 }),
        error: error.map(str::to_owned),
        next_attempt_at: t(at + 100),
        disable: disable.map(str::to_owned),
    };
    let find = |all: Vec<WebhookEndpoint>, id: &str| all.into_iter().find(|e| e.id == id).unwrap();
    store
        .skip_webhook_events("whe_a", logged[0].seq)
        .await
        .unwrap();
    let seq = logged[1].seq;
    store
        .record_webhook_attempt("whe_a", attempt(seq, 2_000, Some("HTTP 503"), None))
        .await
        .unwrap();
    let a = find(store.webhook_endpoints().await.unwrap(), "whe_a");
    assert_eq!(
        (a.cursor, a.attempts, a.failing_since, a.next_attempt_at),
        (logged[0].seq, 1, Some(t(2_000)), t(2_100))
    );
    store
        .record_webhook_attempt("whe_a", attempt(seq, 3_000, None, None))
        .await
        .unwrap();
    let a = find(store.webhook_endpoints().await.unwrap(), "whe_a");
    assert_eq!((a.cursor, a.attempts, a.failing_since), (seq, 0, None));
    store
        .record_webhook_attempt(
            "whe_a",
            attempt(seq, 4_000, Some("refused"), Some("failing")),
        )
        .await
        .unwrap();
    let a = find(store.webhook_endpoints().await.unwrap(), "whe_a");
    assert_eq!(a.disabled_at, Some(t(4_000)));
    assert_eq!(a.disabled_reason.as_deref(), Some("failing"));
    let attempts = store.webhook_attempts("whe_a", 10).await.unwrap();
    let times: Vec<Timestamp> = attempts.iter().map(|a| a.at).collect();
    assert_eq!(times, [t(4_000), t(3_000), t(2_000)], "newest first");
    assert_eq!(attempts[1].status_code, Some(204));
    assert_eq!(attempts[1].error, None);

    let direct = HostEvent::new(
        "device.push_token_invalid",
        "dev1",
        t(5_000),
        EventData::default(),
    );
    store.log_host_event(&direct).await.unwrap();
    store.log_host_event(&direct).await.unwrap();
    let after = store.events_after(seq, 10).await.unwrap();
    assert_eq!(after.len(), 1, "an event id is logged once");
    assert_eq!(after[0].event_type, "device.push_token_invalid");

    assert!(store.delete_webhook_endpoint("whe_a").await.unwrap());
    assert!(!store.delete_webhook_endpoint("whe_a").await.unwrap());
    assert!(store
        .webhook_attempts("whe_a", 10)
        .await
        .unwrap()
        .is_empty());
    let ids: Vec<String> = store
        .webhook_endpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["whe_b"]);
}

/// A host-app event as the commit mapping queues it: in the webhook relay's lane.
fn host(effect: Value) -> OutboxEffect {
    in_lane(effect, Lane::Host)
}

/// An unordered outbox effect in `lane`.
fn in_lane(effect: Value, lane: Lane) -> OutboxEffect {
    OutboxEffect {
        effect,
        lane,
        order_key: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Hardening

/// A push token lives on one device only, and a device's token hash can be replaced.
pub async fn push_tokens_move_and_tokens_reissue(h: &dyn Harness) {
    let store = h.open().await;
    store.create_user(user("alice", "t1", &[])).await.unwrap();
    store.create_user(user("bob", "t1", &[])).await.unwrap();
    for (d, u) in [("a1", "alice"), ("a2", "alice"), ("b1", "bob")] {
        store.create_device(device(d, u, 1)).await.unwrap();
    }
    let id = DeviceId::new;
    store
        .set_push_token(&id("a1"), PushProvider::Apns, "phone")
        .await
        .unwrap();
    store
        .set_push_token(&id("a2"), PushProvider::Apns, "other")
        .await
        .unwrap();
    // The phone is re-registered under bob: alice's device must stop getting its pushes.
    store
        .set_push_token(&id("b1"), PushProvider::Apns, "phone")
        .await
        .unwrap();
    let token = |d: Option<Device>| d.and_then(|d| d.push_token);
    assert_eq!(token(store.get_device(&id("a1")).await.unwrap()), None);
    assert_eq!(
        store
            .get_device(&id("a1"))
            .await
            .unwrap()
            .unwrap()
            .push_provider,
        None
    );
    assert_eq!(
        token(store.get_device(&id("b1")).await.unwrap()).as_deref(),
        Some("phone")
    );
    assert_eq!(
        token(store.get_device(&id("a2")).await.unwrap()).as_deref(),
        Some("other")
    );

    store.set_device_token(&id("a2"), "hash-new").await.unwrap();
    assert_eq!(
        store
            .get_device(&id("a2"))
            .await
            .unwrap()
            .unwrap()
            .token_hash,
        "hash-new"
    );
    assert!(matches!(
        store.set_device_token(&id("nope"), "h").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(is_invalid(store.set_device_token(&id("a2"), "").await));
}

/// Unfinished calls are counted per user; a call's timeline reads in pages with its length.
pub async fn unfinished_calls_and_timeline_pages(h: &dyn Harness) {
    let store = h.open().await;
    for (i, status) in [CallStatus::Ringing, CallStatus::Bridged, CallStatus::Ended]
        .into_iter()
        .enumerate()
    {
        let session = format!("s{i}");
        let mut c = commit(&session, "alice", None, "x");
        c.calls = vec![CallRecord {
            status,
            ..record(&session, "alice", "t1", 1_000 + i as u64)
        }];
        apply(&*store, c).await;
    }
    let mut c = commit("b0", "bob", None, "x");
    c.calls = vec![record("b0", "bob", "t1", 1_000)];
    apply(&*store, c).await;
    assert_eq!(store.unfinished_calls(&uid("alice")).await.unwrap(), 2);
    assert_eq!(store.unfinished_calls(&uid("bob")).await.unwrap(), 1);
    assert_eq!(store.unfinished_calls(&uid("carol")).await.unwrap(), 0);

    let mut c = commit("s0", "alice", Some(1), "x");
    c.timeline = (0..5)
        .map(|i| entry("s0", 2_000 + i, &format!("k{i}"), "x"))
        .collect();
    apply(&*store, c).await;
    let kinds = |page: &[TimelineEntry]| page.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();
    let (page, total) = store
        .call_timeline(&uid("alice"), &sid("s0"), 0, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((kinds(&page), total), (vec!["k0".into(), "k1".into()], 5));
    let (page, _) = store
        .call_timeline(&uid("alice"), &sid("s0"), 4, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kinds(&page), vec!["k4".to_owned()]);
    let (page, total) = store
        .call_timeline(&uid("alice"), &sid("s0"), 9, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((page.len(), total), (0, 5));
    assert_eq!(
        store
            .call_timeline(&uid("bob"), &sid("s0"), 0, 2)
            .await
            .unwrap(),
        None
    );
}
