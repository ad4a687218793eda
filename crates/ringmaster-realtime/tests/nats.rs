//! Two nodes linked through the real NATS server (`./scripts/services` starts it; override the
//! URL with `RINGMASTER_TEST_NATS_URL`). Each test uses its own app id, so its own subject.

mod common;

use common::*;
use ringmaster_realtime::{
    ChannelName, NatsFanout, NatsFanoutConfig, NatsFanoutError, RealtimeConfig, RealtimeHub,
};
use serde_json::{json, Value};
use std::sync::Arc;

const CHANNEL: &str = "private-user.42";

fn nats_url() -> String {
    std::env::var("RINGMASTER_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn unique_config() -> RealtimeConfig {
    let mut config = config();
    config.app_id = format!("test-{:016x}", rand::random::<u64>());
    config
}

async fn nats_fanout(config: &RealtimeConfig) -> Arc<NatsFanout> {
    let url = nats_url();
    NatsFanout::connect(NatsFanoutConfig::for_app(&url, config).unwrap())
        .await
        .unwrap_or_else(|e| {
            panic!("NATS must be running for this test (./scripts/services, or set RINGMASTER_TEST_NATS_URL): {e}")
        })
}

fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().unwrap()).unwrap()
}

/// Reads the next frame and checks it is marker `n`: anything in between is a duplicate or a
/// message that should have been dropped.
async fn expect_marker(client: &mut Client, n: u32) {
    let frame = client.recv_event("marker").await;
    assert_eq!(data_of(&frame)["n"], n, "{frame}");
}

#[tokio::test]
async fn events_cross_nodes_once_and_invalid_messages_are_dropped() {
    let config = unique_config();
    let a = Server::start_hub(RealtimeHub::with_fanout(
        config.clone(),
        nats_fanout(&config).await,
    ))
    .await;
    let b = Server::start_hub(RealtimeHub::with_fanout(
        config.clone(),
        nats_fanout(&config).await,
    ))
    .await;
    let mut on_a = a.connect().await;
    let mut on_b = b.connect().await;
    a.subscribe(&mut on_a, CHANNEL, None).await;
    b.subscribe(&mut on_b, CHANNEL, None).await;

    // A third party writes straight onto the subject: invalid messages first, then a valid one
    // from the same connection, which NATS delivers after them.
    let subject = NatsFanoutConfig::for_app(nats_url(), &config)
        .unwrap()
        .subject;
    let raw = async_nats::connect(nats_url())
        .await
        .expect("raw NATS client");
    let too_big_data = "x".repeat(config.max_event_bytes + 1);
    let huge = "y".repeat(4 * config.max_event_bytes + 128 * 1024);
    let invalid = [
        "not json".to_owned(),
        "{}".to_owned(),
        json!({"origin":9,"channels":[CHANNEL],"name":"bad_big","data":too_big_data}).to_string(),
        json!({"origin":9,"channels":[CHANNEL],"name":"bad\u{1}name","data":"1"}).to_string(),
        json!({"origin":9,"channels":[CHANNEL,"bad channel!"],"name":"bad_channel","data":"1"})
            .to_string(),
        json!({"origin":9,"channels":[CHANNEL],"name":"bad_except","data":"1","except":"nope"})
            .to_string(),
        json!({"origin":9,"channels":[CHANNEL],"name":"bad_huge","data":"1","pad":huge})
            .to_string(),
    ];
    for payload in invalid {
        raw.publish(subject.clone(), payload.into()).await.unwrap();
    }
    let valid =
        json!({"origin":9,"channels":[CHANNEL],"name":"from_outside","data":"{\"ok\":true}"});
    raw.publish(subject.clone(), valid.to_string().into())
        .await
        .unwrap();
    raw.flush().await.unwrap();
    for client in [&mut on_a, &mut on_b] {
        let frame = client.recv_event("from_outside").await;
        assert_eq!(data_of(&frame)["ok"], true);
    }

    let ch = ChannelName::parse(CHANNEL).unwrap();
    let local = a
        .hub
        .publish(
            &ch,
            "call_ended",
            &json!({"reason":"answered_elsewhere"}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(local, 1);
    on_a.recv_event("call_ended").await;
    let frame = on_b.recv_event("call_ended").await;
    assert_eq!(data_of(&frame)["reason"], "answered_elsewhere");

    // B's marker reaches A after any echo of A's event would have; A's second marker reaches B
    // after any duplicate of A's event or echo of B's marker would have.
    b.marker(CHANNEL, 1).await;
    expect_marker(&mut on_b, 1).await;
    expect_marker(&mut on_a, 1).await;
    a.marker(CHANNEL, 2).await;
    expect_marker(&mut on_a, 2).await;
    expect_marker(&mut on_b, 2).await;
}

#[tokio::test]
async fn other_apps_events_stay_on_their_own_subject() {
    let config = unique_config();
    let other = unique_config();
    let start = |config: RealtimeConfig| async move {
        let fanout = nats_fanout(&config).await;
        Server::start_hub(RealtimeHub::with_fanout(config, fanout)).await
    };
    let a = start(config.clone()).await;
    let b = start(config).await;
    let stranger = start(other.clone()).await;
    let stranger_peer = start(other).await;
    let mut on_b = b.connect().await;
    let mut on_peer = stranger_peer.connect().await;
    b.subscribe(&mut on_b, CHANNEL, None).await;
    stranger_peer.subscribe(&mut on_peer, CHANNEL, None).await;
    stranger.marker(CHANNEL, 99).await;
    // Once the stranger's peer has it, NATS has routed it everywhere it goes, so B would have
    // queued it before A's marker.
    expect_marker(&mut on_peer, 99).await;
    a.marker(CHANNEL, 1).await;
    expect_marker(&mut on_b, 1).await;
}

#[tokio::test]
async fn an_unreachable_nats_server_is_a_connect_error() {
    // Port 1 on loopback is closed, so the connection is refused at once.
    let config = NatsFanoutConfig::for_app("nats://127.0.0.1:1", &unique_config()).unwrap();
    match NatsFanout::connect(config).await {
        Err(NatsFanoutError::Connect { url, .. }) => assert_eq!(url, "nats://127.0.0.1:1"),
        Err(other) => panic!("expected a connect error, got {other}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}
