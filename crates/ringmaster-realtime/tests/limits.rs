//! Edge limits: connections per address, the subscribe deadline, revocation by device, and
//! the publish API's query-size cap.

mod common;

use common::*;
use ringmaster_core::DeviceId;
use ringmaster_realtime::signing::{sign_api_request, MAX_API_PARAMS};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test]
async fn one_address_gets_its_cap_of_sockets_and_the_next_is_refused_until_one_leaves() {
    let mut cfg = config();
    cfg.max_connections_per_ip = 3;
    let server = Server::start_with_peer_addr(cfg).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(server.connect().await);
    }
    let mut refused = server.connect_path(&format!("/app/{KEY}?protocol=7")).await;
    refused.expect_error_close(4100).await;
    assert_eq!(server.hub.connection_count(), 3);

    let mut gone = open.pop().unwrap();
    gone.ws.close(None).await.unwrap();
    drop(gone);
    eventually(|| server.hub.connection_count() == 2).await;
    // The freed slot is usable again, and the survivors still receive events.
    let _again = server.connect().await;
    let mut first = open.remove(0);
    server.subscribe(&mut first, "calls", None).await;
    server.marker("calls", 1).await;
    assert_eq!(
        first.recv_event("marker").await["data"],
        json!({"n": 1}).to_string()
    );
}

#[tokio::test]
async fn a_socket_that_never_subscribes_is_closed_and_a_subscribed_one_stays() {
    let mut cfg = config();
    cfg.subscribe_timeout = Duration::from_millis(300);
    let server = Server::start(cfg).await;
    let mut idle = server.connect().await;
    let mut busy = server.connect().await;
    server.subscribe(&mut busy, "calls", None).await;
    let message = idle.expect_error_close(4100).await;
    assert!(message.contains("subscription"), "{message}");
    // Well past the deadline, the subscribed socket still gets events.
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.marker("calls", 7).await;
    busy.recv_event("marker").await;
    assert_eq!(server.hub.connection_count(), 1);
}

#[tokio::test]
async fn revoking_a_device_closes_only_its_sockets_with_4009() {
    let server = Server::start(config()).await;
    let mut phone = server.connect().await;
    let mut web = server.connect().await;
    for (client, token) in [(&mut phone, "tok-alice"), (&mut web, "tok-alice-web")] {
        let res = reqwest::Client::new()
            .post(server.http("/broadcasting/auth"))
            .bearer_auth(token)
            .form(&[
                ("socket_id", client.id().as_str()),
                ("channel_name", "private-user.42"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let auth: Value = res.json().await.unwrap();
        client
            .send(json!({"event":"pusher:subscribe","data":{"channel":"private-user.42","auth":auth["auth"]}}))
            .await;
        client
            .recv_event("pusher_internal:subscription_succeeded")
            .await;
    }
    assert_eq!(
        server
            .hub
            .revoke_device(&DeviceId::new("alice-phone"))
            .await,
        1
    );
    phone.expect_error_close(4009).await;
    server.marker("private-user.42", 1).await;
    web.recv_event("marker").await;
    assert_eq!(
        server
            .hub
            .revoke_device(&DeviceId::new("alice-phone"))
            .await,
        0
    );
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn a_seventeenth_query_parameter_is_a_400_even_when_correctly_signed() {
    let server = Server::start(config()).await;
    let path = "/apps/app-id/events";
    let body = json!({"name":"e","data":"{}","channel":"calls"}).to_string();
    let signed = sign_api_request(KEY, SECRET, "POST", path, body.as_bytes(), now());
    let signed_count = signed.split('&').count();
    let padding: String = (0..(MAX_API_PARAMS + 1 - signed_count))
        .map(|i| format!("&pad{i}=1"))
        .collect();
    let client = reqwest::Client::new();
    let post = |query: String| {
        client
            .post(server.http(&format!("{path}?{query}")))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    let res = post(format!("{signed}{padding}")).await.unwrap();
    assert_eq!(res.status(), 400);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "too_many_parameters");
    // A huge unsigned query is refused the same way.
    let flood: String = (0..5000).map(|i| format!("k{i}=v&")).collect();
    assert_eq!(post(flood).await.unwrap().status(), 400);
    // Sixteen are still judged by their signature (the padding is not signed).
    let sixteen = padding.rsplit_once('&').map_or("", |(head, _)| head);
    let res = post(format!("{signed}{sixteen}")).await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(post(signed).await.unwrap().status(), 200);
}
