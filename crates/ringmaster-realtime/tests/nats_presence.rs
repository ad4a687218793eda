//! Presence shared by nodes through the real NATS server (`./scripts/services` starts it;
//! override the URL with `RINGMASTER_TEST_NATS_URL`). Each test uses its own app id, so its
//! own subjects.

mod common;

use common::*;
use ringmaster_realtime::signing::sign_api_request;
use ringmaster_realtime::{
    NatsFanout, NatsFanoutConfig, NatsPresence, NatsPresenceConfig, RealtimeConfig, RealtimeHub,
};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CH: &str = "presence-user.42";
const ALICE: &str = r#"{"user_id":"42","user_info":{"name":"alice"}}"#;
const BOB: &str = r#"{"user_id":"7","user_info":{"name":"bob"}}"#;
const CAROL: &str = r#"{"user_id":"99","user_info":{"name":"carol"}}"#;

fn nats_url() -> String {
    std::env::var("RINGMASTER_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn unique_config() -> RealtimeConfig {
    let mut config = config();
    config.app_id = format!("test-{:016x}", rand::random::<u64>());
    config
}

/// A node: a hub on its own port sharing events and presence through NATS.
async fn node(config: &RealtimeConfig, node_timeout: Duration) -> (Server, NatsPresence) {
    let fanout = NatsFanout::connect(NatsFanoutConfig::for_app(nats_url(), config).unwrap())
        .await
        .unwrap_or_else(|e| {
            panic!("NATS must be running for this test (./scripts/services, or set RINGMASTER_TEST_NATS_URL): {e}")
        });
    let hub = RealtimeHub::with_fanout(config.clone(), fanout.clone());
    let presence = NatsPresence::start(
        fanout.client(),
        &hub,
        NatsPresenceConfig::for_app(config, node_timeout).unwrap(),
    )
    .await
    .unwrap();
    (Server::start_hub(hub).await, presence)
}

fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().unwrap()).unwrap()
}

/// Reads the next frame and checks it is `event` about `user_id`: anything before it is a
/// duplicate or an announcement that should not have been made.
async fn expect_member(client: &mut Client, event: &str, user_id: &str) {
    let frame = client.recv_event(event).await;
    assert_eq!(frame["channel"], CH);
    assert_eq!(data_of(&frame)["user_id"], user_id, "{frame}");
}

/// `GET /apps/{id}/channels/{CH}/users`, signed.
async fn users(server: &Server, app_id: &str) -> Vec<String> {
    let path = format!("/apps/{app_id}/channels/{CH}/users");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let query = sign_api_request(KEY, SECRET, "GET", &path, b"", now);
    let res = reqwest::get(server.http(&format!("{path}?{query}")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn members_are_announced_once_cluster_wide_and_listed_on_every_node() {
    let config = unique_config();
    let timeout = Duration::from_secs(15);
    let (a, _a_presence) = node(&config, timeout).await;
    let (b, b_presence) = node(&config, timeout).await;
    let mut bob = b.connect().await;
    b.subscribe(&mut bob, CH, Some(BOB)).await;

    eventually(|| a.hub.presence_members(CH).len() == 1).await;

    // Alice's first socket anywhere makes her present: B's sockets hear of it once.
    let mut alice_a = a.connect().await;
    let joined = a.subscribe(&mut alice_a, CH, Some(ALICE)).await;
    expect_member(&mut bob, "pusher_internal:member_added", "42").await;
    assert_eq!(joined["presence"]["ids"], json!(["42", "7"]), "{joined}");
    assert_eq!(users(&b, &config.app_id).await, ["42", "7"]);
    assert_eq!(users(&a, &config.app_id).await, ["42", "7"]);

    // Her second socket, on B, and the first one closing change nobody's list.
    let mut alice_b = b.connect().await;
    let joined = b.subscribe(&mut alice_b, CH, Some(ALICE)).await;
    assert_eq!(joined["presence"]["count"], 2);
    assert_eq!(joined["presence"]["hash"]["42"], json!({"name":"alice"}));
    drop(alice_a);
    eventually(|| a.hub.subscription_count(CH) == 0).await;
    // Carol joining on A after that proves that A's leave was not announced on B: her
    // member_added is the next thing Bob hears.
    let mut carol = a.connect().await;
    a.subscribe(&mut carol, CH, Some(CAROL)).await;
    expect_member(&mut bob, "pusher_internal:member_added", "99").await;
    expect_member(&mut alice_b, "pusher_internal:member_added", "99").await;

    // A node that starts now is told who is present.
    let (c, _c_presence) = node(&config, timeout).await;
    eventually(|| c.hub.presence_members(CH).len() == 3).await;
    let mut watcher = c.connect().await;
    let joined = c.subscribe(&mut watcher, CH, Some(BOB)).await;
    assert_eq!(joined["presence"]["ids"], json!(["42", "7", "99"]));

    // Junk on the presence subject is dropped and counted; presence goes on.
    let raw = async_nats::connect(nats_url()).await.unwrap();
    let subject = b_presence.subject().to_owned();
    for junk in [
        "not json".to_owned(),
        json!({"node":5,"message":{"kind":"join","channel":"private-x","user_id":"1"}}).to_string(),
        "x".repeat(ringmaster_realtime::nats_presence::MAX_MESSAGE_BYTES + 1),
    ] {
        raw.publish(subject.clone(), junk.into()).await.unwrap();
    }
    raw.flush().await.unwrap();
    eventually(|| b_presence.dropped() >= 3).await;

    // Alice's last socket, on B, closing removes her everywhere, once.
    drop(alice_b);
    expect_member(&mut bob, "pusher_internal:member_removed", "42").await;
    expect_member(&mut watcher, "pusher_internal:member_removed", "42").await;
    drop(carol);
    expect_member(&mut bob, "pusher_internal:member_removed", "99").await;
    expect_member(&mut watcher, "pusher_internal:member_removed", "99").await;
    eventually(|| a.hub.presence_members(CH).len() == 1).await;
    assert_eq!(users(&a, &config.app_id).await, ["7"]);
}

#[tokio::test]
async fn a_node_that_dies_has_its_members_removed_after_the_timeout() {
    let config = unique_config();
    let timeout = Duration::from_secs(2);
    let (a, a_presence) = node(&config, timeout).await;
    let (b, _b_presence) = node(&config, timeout).await;
    let mut bob = b.connect().await;
    b.subscribe(&mut bob, CH, Some(BOB)).await;
    let mut alice = a.connect().await;
    a.subscribe(&mut alice, CH, Some(ALICE)).await;
    expect_member(&mut bob, "pusher_internal:member_added", "42").await;

    // Heartbeats keep A's members while it lives.
    tokio::time::sleep(2 * timeout).await;
    assert_eq!(users(&b, &config.app_id).await, ["42", "7"]);

    // A's presence stops without a word, as when its process is killed.
    drop(a_presence);
    expect_member(&mut bob, "pusher_internal:member_removed", "42").await;
    assert_eq!(users(&b, &config.app_id).await, ["7"]);
    // Alice's socket is still open on A, which still counts her.
    assert_eq!(a.hub.presence_members(CH).len(), 2);
}

#[tokio::test]
async fn a_node_that_says_goodbye_has_its_members_removed_at_once() {
    let config = unique_config();
    // A timeout no test waits for: the removal can only come from the goodbye.
    let timeout = Duration::from_secs(600);
    let (a, a_presence) = node(&config, timeout).await;
    let (b, _b_presence) = node(&config, timeout).await;
    let mut bob = b.connect().await;
    b.subscribe(&mut bob, CH, Some(BOB)).await;
    let mut alice = a.connect().await;
    a.subscribe(&mut alice, CH, Some(ALICE)).await;
    expect_member(&mut bob, "pusher_internal:member_added", "42").await;
    a_presence.goodbye().await;
    expect_member(&mut bob, "pusher_internal:member_removed", "42").await;
}
