//! Protocol 7 rules and errors, checked with a raw WebSocket client.

mod common;

use common::*;
use ringmaster_realtime::{ChannelName, InProcessFanout, RealtimeHub};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().expect("data is a JSON string")).unwrap()
}

#[tokio::test]
async fn handshake_sends_socket_id_and_activity_timeout_as_a_json_string() {
    let server = Server::start(config()).await;
    let mut client = server.connect_path(&format!("/app/{KEY}?protocol=7")).await;
    let frame = client.recv().await;
    assert_eq!(frame["event"], "pusher:connection_established");
    let data = data_of(&frame);
    assert_eq!(data["activity_timeout"], 30);
    let id = data["socket_id"].as_str().unwrap();
    let (a, b) = id.split_once('.').unwrap();
    assert!(
        a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()),
        "{id}"
    );
    assert_eq!(server.hub.connection_count(), 1);
}

#[tokio::test]
async fn a_request_that_is_not_a_websocket_handshake_is_a_400_with_a_json_error() {
    let server = Server::start(config()).await;
    let url = server.http(&format!("/app/{KEY}?protocol=7"));
    let plain = reqwest::get(&url).await.unwrap();
    assert_eq!(plain.status(), 400);
    let body: Value = plain.json().await.unwrap();
    assert_eq!(
        body["error"]["code"], "invalid_websocket_handshake",
        "{body}"
    );
    // Upgrade headers but an old protocol version: refused the same way.
    let old = reqwest::Client::new()
        .get(&url)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "8")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 400);
    let posted = reqwest::Client::new().post(&url).send().await.unwrap();
    assert_eq!(posted.status(), 405);
}

#[tokio::test]
async fn unknown_app_key_is_refused_with_4001() {
    let server = Server::start(config()).await;
    let mut client = server.connect_path("/app/wrong-key?protocol=7").await;
    client.expect_error_close(4001).await;
    assert_eq!(server.hub.connection_count(), 0);
}

#[tokio::test]
async fn protocol_version_is_enforced() {
    let server = Server::start(config()).await;
    for (query, code) in [("", 4008), ("?protocol=6", 4007), ("?protocol=seven", 4006)] {
        let mut client = server.connect_path(&format!("/app/{KEY}{query}")).await;
        client.expect_error_close(code).await;
    }
}

#[tokio::test]
async fn ping_gets_pong() {
    let server = Server::start(config()).await;
    let mut client = server.connect().await;
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    client.recv_event("pusher:pong").await;
}

#[tokio::test]
async fn public_channel_receives_hub_events_until_unsubscribed() {
    let server = Server::start(config()).await;
    let mut client = server.connect().await;
    assert_eq!(
        server.subscribe(&mut client, "calls", None).await,
        json!({})
    );
    server.subscribe(&mut client, "other", None).await;
    let channel = ChannelName::parse("calls").unwrap();
    let delivered = server
        .hub
        .publish(&channel, "call_ended", &json!({"reason":"timeout"}), None)
        .await
        .unwrap();
    assert_eq!(delivered, 1);
    let frame = client.recv_event("call_ended").await;
    assert_eq!(frame["channel"], "calls");
    assert_eq!(data_of(&frame), json!({"reason":"timeout"}));

    client
        .send(json!({"event":"pusher:unsubscribe","data":{"channel":"calls"}}))
        .await;
    eventually(|| server.hub.subscription_count("calls") == 0).await;
    assert_eq!(
        server
            .hub
            .publish(&channel, "call_ended", &json!({}), None)
            .await
            .unwrap(),
        0
    );
    server.marker("other", 1).await;
    assert_eq!(client.recv_event("marker").await["channel"], "other");
}

#[tokio::test]
async fn private_channel_needs_a_valid_signature_and_a_bad_one_closes_with_4009() {
    let server = Server::start(config()).await;
    let mut bystander = server.connect().await;
    server
        .subscribe(&mut bystander, "private-user.7", None)
        .await;

    let mut client = server.connect().await;
    server.subscribe(&mut client, "private-user.42", None).await;

    // A signature made for another channel does not open this one.
    let stolen = server.auth(&client, "private-user.42", None);
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"private-user.7","auth":stolen}}))
        .await;
    let err = client.recv_event("pusher:subscription_error").await;
    assert_eq!(err["channel"], "private-user.7");
    assert_eq!(err["data"]["status"], 401);
    client.expect_error_close(4009).await;
    eventually(|| server.hub.subscription_count("private-user.42") == 0).await;

    // The other connection is unaffected.
    server.marker("private-user.7", 1).await;
    bystander.recv_event("marker").await;
}

#[tokio::test]
async fn signature_for_another_socket_or_missing_auth_is_refused() {
    let server = Server::start(config()).await;
    let victim = server.connect().await;
    let replayed = server.auth(&victim, "private-user.42", None);
    let mut attacker = server.connect().await;
    attacker.send(json!({"event":"pusher:subscribe","data":{"channel":"private-user.42","auth":replayed}})).await;
    attacker.recv_event("pusher:subscription_error").await;
    attacker.expect_error_close(4009).await;

    let mut no_auth = server.connect().await;
    no_auth
        .send(json!({"event":"pusher:subscribe","data":{"channel":"private-user.42"}}))
        .await;
    no_auth.recv_event("pusher:subscription_error").await;
    no_auth.expect_error_close(4009).await;
    assert_eq!(server.hub.subscription_count("private-user.42"), 0);
}

#[tokio::test]
async fn presence_members_are_announced_per_user_not_per_connection() {
    let server = Server::start(config()).await;
    let ch = "presence-room.1";
    let alice_data = r#"{"user_id":"42","user_info":{"name":"alice"}}"#;
    let bob_data = r#"{"user_id":7,"user_info":{"name":"bob"}}"#;

    let mut alice = server.connect().await;
    let data = server.subscribe(&mut alice, ch, Some(alice_data)).await;
    assert_eq!(
        data["presence"],
        json!({"ids":["42"],"hash":{"42":{"name":"alice"}},"count":1})
    );

    let mut bob = server.connect().await;
    let data = server.subscribe(&mut bob, ch, Some(bob_data)).await;
    assert_eq!(data["presence"]["count"], 2);
    assert_eq!(data["presence"]["ids"], json!(["42", "7"]));
    assert_eq!(data["presence"]["hash"]["7"], json!({"name":"bob"}));

    let added = alice.recv_event("pusher_internal:member_added").await;
    assert_eq!(
        data_of(&added),
        json!({"user_id":"7","user_info":{"name":"bob"}})
    );

    // Alice's second device joins and leaves: bob hears nothing about it.
    let mut alice2 = server.connect().await;
    server.subscribe(&mut alice2, ch, Some(alice_data)).await;
    drop(alice2);
    eventually(|| server.hub.subscription_count(ch) == 2).await;
    server.marker(ch, 1).await;
    assert_eq!(data_of(&bob.recv_event("marker").await), json!({"n":1}));

    // Alice's last connection leaves: now bob hears it.
    drop(alice);
    let removed = bob.recv_event("pusher_internal:member_removed").await;
    assert_eq!(data_of(&removed), json!({"user_id":"42"}));
    assert_eq!(server.hub.presence_members(ch).len(), 1);
}

#[tokio::test]
async fn presence_without_channel_data_is_unauthorized() {
    let server = Server::start(config()).await;
    let mut client = server.connect().await;
    let auth = server.auth(&client, "presence-room.1", None);
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"presence-room.1","auth":auth}}))
        .await;
    client.recv_event("pusher:subscription_error").await;
    client.expect_error_close(4009).await;
}

#[tokio::test]
async fn presence_channel_data_without_user_id_is_rejected_but_connection_stays() {
    let server = Server::start(config()).await;
    let mut client = server.connect().await;
    let cd = r#"{"user_info":{}}"#;
    let auth = server.auth(&client, "presence-room.1", Some(cd));
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"presence-room.1","auth":auth,"channel_data":cd}}))
        .await;
    let err = client.recv_event("pusher:subscription_error").await;
    assert_eq!(err["data"]["type"], "InvalidChannelData");
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    client.recv_event("pusher:pong").await;
}

#[tokio::test]
async fn garbage_closes_the_sender_while_others_keep_receiving() {
    let server = Server::start(config()).await;
    let mut good = server.connect().await;
    server.subscribe(&mut good, "calls", None).await;

    for garbage in [
        Message::Text("not json".into()),
        Message::Text("[1,2]".into()),
        Message::Text(r#"{"event":"pusher:subscribe","data":{"nochannel":1}}"#.into()),
        Message::Binary(vec![0, 159, 146, 150].into()),
    ] {
        let mut bad = server.connect().await;
        server.subscribe(&mut bad, "calls", None).await;
        bad.send_raw(garbage).await;
        let message = bad.expect_error_close(4100).await;
        assert_eq!(message, "Invalid message format");
    }
    eventually(|| server.hub.connection_count() == 1).await;
    server.marker("calls", 1).await;
    good.recv_event("marker").await;
}

#[tokio::test]
async fn oversize_messages_close_the_sender_while_others_keep_receiving() {
    let mut cfg = config();
    cfg.max_message_bytes = 1024;
    let server = Server::start(cfg).await;
    let mut good = server.connect().await;
    server.subscribe(&mut good, "calls", None).await;

    // Just over the limit: a clean Pusher error.
    let mut bad = server.connect().await;
    let padding = "x".repeat(1100);
    bad.send(json!({"event":"pusher:ping","data":{"pad":padding}}))
        .await;
    bad.expect_error_close(4100).await;

    // Far over the limit: refused from the frame header; the sender is cut off.
    let mut huge = server.connect().await;
    huge.send_raw(Message::Text("y".repeat(64 * 1024).into()))
        .await;
    let (_, ended) = huge.until_closed().await;
    if let Ended::Close(code, _) = ended {
        assert_eq!(code, 4100);
    }

    eventually(|| server.hub.connection_count() == 1).await;
    server.marker("calls", 1).await;
    good.recv_event("marker").await;
}

#[tokio::test]
async fn client_events_are_rejected_by_default_without_closing() {
    let server = Server::start(config()).await;
    let mut client = server.connect().await;
    server.subscribe(&mut client, "private-user.42", None).await;
    client
        .send(json!({"event":"client-typing","channel":"private-user.42","data":{}}))
        .await;
    let err = client.recv_event("pusher:error").await;
    assert_eq!(err["data"]["code"], 4301);
    client.send(json!({"event":"pusher:ping","data":{}})).await;
    client.recv_event("pusher:pong").await;
}

#[tokio::test]
async fn enabled_client_events_reach_other_subscribers_only() {
    let mut cfg = config();
    cfg.client_events = true;
    let server = Server::start(cfg).await;
    let ch = "private-room.9";
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    server.subscribe(&mut a, ch, None).await;
    server.subscribe(&mut b, ch, None).await;

    a.send(json!({"event":"client-typing","channel":ch,"data":{"who":"a"}}))
        .await;
    let got = b.recv_event("client-typing").await;
    assert_eq!(data_of(&got), json!({"who":"a"}));
    server.marker(ch, 1).await;
    a.recv_event("marker").await; // the sender did not get its own event first

    // Not on a public channel, and not on a channel the sender is not subscribed to.
    server.subscribe(&mut a, "public", None).await;
    a.send(json!({"event":"client-x","channel":"public","data":{}}))
        .await;
    assert_eq!(a.recv_event("pusher:error").await["data"]["code"], 4301);
    a.send(json!({"event":"client-x","channel":"private-elsewhere","data":{}}))
        .await;
    assert_eq!(a.recv_event("pusher:error").await["data"]["code"], 4301);
}

#[tokio::test]
async fn silent_clients_are_pinged_then_closed_with_4201() {
    let mut cfg = config();
    cfg.activity_timeout = Duration::from_millis(100);
    // Generous, so a loaded machine answering late does not look like a dead client.
    cfg.pong_timeout = Duration::from_secs(1);
    let server = Server::start(cfg).await;
    let mut client = server.connect().await;

    client.recv_event("pusher:ping").await;
    client.send(json!({"event":"pusher:pong","data":{}})).await;
    // Answering keeps it alive: the next thing is another ping, not a close.
    client.recv_event("pusher:ping").await;
    // Staying silent ends it.
    client.expect_error_close(4201).await;
}

#[tokio::test]
async fn websocket_control_frames_count_as_activity() {
    let mut cfg = config();
    cfg.activity_timeout = Duration::from_millis(100);
    // Generous, so a loaded machine answering late does not look like a dead client.
    cfg.pong_timeout = Duration::from_secs(1);
    let server = Server::start(cfg).await;
    let mut client = server.connect().await;
    client.recv_event("pusher:ping").await;
    client.send_raw(Message::Pong(Vec::new().into())).await;
    client.recv_event("pusher:ping").await;
}

#[tokio::test]
async fn publish_can_exclude_one_socket() {
    let server = Server::start(config()).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    server.subscribe(&mut a, "private-user.42", None).await;
    server.subscribe(&mut b, "private-user.42", None).await;
    let ch = ChannelName::parse("private-user.42").unwrap();
    let n = server
        .hub
        .publish(&ch, "call_state_changed", &json!({"v":1}), Some(a.id()))
        .await
        .unwrap();
    assert_eq!(n, 1);
    b.recv_event("call_state_changed").await;
    server.marker("private-user.42", 1).await;
    a.recv_event("marker").await;
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_a_backoff_code() {
    let mut cfg = config();
    cfg.send_queue = 1;
    let server = Server::start(cfg).await;
    let mut slow = server.connect().await;
    server.subscribe(&mut slow, "calls", None).await;
    let ch = ChannelName::parse("calls").unwrap();
    // The client reads nothing while this loop runs, and the single-threaded test runtime
    // gives the connection task no turn: once the kernel's socket buffers are full, frames
    // wait on the server, and the one past `send_queue` evicts the socket.
    let pad = "x".repeat(8 * 1024);
    let mut published = 0;
    while server
        .hub
        .publish(&ch, "tick", &json!({ "n": published, "pad": pad }), None)
        .await
        .unwrap()
        == 1
    {
        published += 1;
        assert!(published < 100_000, "never evicted");
    }
    assert!(published > 1, "{published}");
    let (frames, ended) = slow.until_closed().await;
    // Everything accepted before the eviction arrives, in order, then the error and close.
    assert_eq!(frames.len(), published + 1);
    for (n, frame) in frames[..published].iter().enumerate() {
        assert_eq!(frame["event"], "tick");
        let data: serde_json::Value =
            serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["n"], n);
    }
    assert_eq!(frames[published]["data"]["code"], 4100);
    assert!(matches!(ended, Ended::Close(4100, _)), "{ended:?}");
    eventually(|| server.hub.connection_count() == 0).await;
}

#[tokio::test]
async fn connection_limit_answers_4100() {
    let mut cfg = config();
    cfg.max_connections = 1;
    let server = Server::start(cfg).await;
    let _first = server.connect().await;
    let mut second = server.connect_path(&format!("/app/{KEY}?protocol=7")).await;
    second.expect_error_close(4100).await;
}

#[tokio::test]
async fn close_all_asks_clients_to_reconnect_with_4200() {
    let server = Server::start(config()).await;
    let mut client = server.connect().await;
    assert_eq!(server.hub.close_all(), 1);
    client.expect_error_close(4200).await;
}

#[tokio::test]
async fn bad_channel_names_and_channel_limit_give_subscription_errors() {
    let mut cfg = config();
    cfg.max_channels_per_connection = 1;
    let server = Server::start(cfg).await;
    let mut client = server.connect().await;
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"bad name!"}}))
        .await;
    assert_eq!(
        client.recv_event("pusher:subscription_error").await["data"]["type"],
        "InvalidChannel"
    );
    server.subscribe(&mut client, "one", None).await;
    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"two"}}))
        .await;
    assert_eq!(
        client.recv_event("pusher:subscription_error").await["data"]["type"],
        "LimitReached"
    );
    // Re-subscribing to a channel it holds is fine.
    server.subscribe(&mut client, "one", None).await;
}

#[tokio::test]
async fn hubs_sharing_a_fanout_deliver_each_others_events() {
    let fanout = InProcessFanout::new();
    let a = Server::start_hub(RealtimeHub::with_fanout(config(), fanout.clone())).await;
    let b = Server::start_hub(RealtimeHub::with_fanout(config(), fanout.clone())).await;
    let mut on_a = a.connect().await;
    let mut on_b = b.connect().await;
    a.subscribe(&mut on_a, "private-user.42", None).await;
    b.subscribe(&mut on_b, "private-user.42", None).await;
    let ch = ChannelName::parse("private-user.42").unwrap();
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
    assert_eq!(
        data_of(&on_b.recv_event("call_ended").await)["reason"],
        "answered_elsewhere"
    );
}
