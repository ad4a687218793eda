//! `/broadcasting/auth` and the signed HTTP publish API.

mod common;

use common::*;
use ringmaster_realtime::signing::{self, sign_api_request};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn auth_form(server: &Server, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(server.http("/broadcasting/auth"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn auth_endpoint_signs_own_private_channel_and_the_signature_subscribes() {
    let server = Server::start(config()).await;
    let mut client = server.connect().await;
    let body = format!("socket_id={}&channel_name=private-user.42", client.id());
    let (status, json) = auth_form(&server, Some("tok-alice"), &body).await;
    assert_eq!(status, 200, "{json}");
    let auth = json["auth"].as_str().unwrap();
    assert!(auth.starts_with("app-key:"));
    assert!(signing::verify_channel_auth(
        KEY,
        SECRET,
        auth,
        client.id().as_str(),
        "private-user.42",
        None
    ));

    client
        .send(json!({"event":"pusher:subscribe","data":{"channel":"private-user.42","auth":auth}}))
        .await;
    client
        .recv_event("pusher_internal:subscription_succeeded")
        .await;
}

#[tokio::test]
async fn auth_endpoint_accepts_json_and_signs_presence_with_user_info() {
    let server = Server::start(config()).await;
    let res = reqwest::Client::new()
        .post(server.http("/broadcasting/auth"))
        .bearer_auth("tok-bob")
        .json(&json!({"socket_id":"123.456","channel_name":"presence-user.7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let channel_data = body["channel_data"].as_str().unwrap();
    let member: Value = serde_json::from_str(channel_data).unwrap();
    assert_eq!(member, json!({"user_id":"7","user_info":{"name":"bob"}}));
    assert!(signing::verify_channel_auth(
        KEY,
        SECRET,
        body["auth"].as_str().unwrap(),
        "123.456",
        "presence-user.7",
        Some(channel_data)
    ));
}

#[tokio::test]
async fn auth_endpoint_refuses_foreign_channels_bad_tokens_and_bad_input() {
    let server = Server::start(config()).await;
    let ok = "socket_id=1.2&channel_name=private-user.42";
    let cases: &[(Option<&str>, &str, u16, &str)] = &[
        (Some("tok-bob"), ok, 403, "forbidden_channel"),
        (
            Some("tok-alice"),
            "socket_id=1.2&channel_name=presence-user.7",
            403,
            "forbidden_channel",
        ),
        (
            Some("tok-alice"),
            "socket_id=1.2&channel_name=private-calls",
            403,
            "forbidden_channel",
        ),
        (None, ok, 401, "unauthenticated"),
        (Some("tok-nobody"), ok, 401, "unauthenticated"),
        (
            Some("tok-alice"),
            "socket_id=abc&channel_name=private-user.42",
            400,
            "invalid_socket_id",
        ),
        (
            Some("tok-alice"),
            "socket_id=1.2&channel_name=private-user.42%20x",
            400,
            "invalid_channel",
        ),
        (
            Some("tok-alice"),
            "socket_id=1.2&channel_name=user.42",
            400,
            "invalid_channel",
        ),
        (
            Some("tok-alice"),
            "socket_id=1.2&channel_name=private-encrypted-user.42",
            400,
            "invalid_channel",
        ),
        (
            Some("tok-alice"),
            "channel_name=private-user.42",
            400,
            "invalid_body",
        ),
    ];
    for (token, body, status, code) in cases {
        let (got, json) = auth_form(&server, *token, body).await;
        assert_eq!(
            (got, json["error"]["code"].as_str().unwrap_or_default()),
            (*status, *code),
            "{body}: {json}"
        );
    }
    let (status, _) = auth_form(
        &server,
        Some("tok-alice"),
        &format!("{ok}&pad={}", "x".repeat(8192)),
    )
    .await;
    assert_eq!(status, 413);
}

async fn post_signed(server: &Server, path: &str, body: &Value, timestamp: i64) -> (u16, Value) {
    let body = body.to_string();
    let query = sign_api_request(KEY, SECRET, "POST", path, body.as_bytes(), timestamp);
    post_raw(server, &format!("{path}?{query}"), body).await
}

async fn post_raw(server: &Server, path_and_query: &str, body: String) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(server.http(path_and_query))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn signed_events_are_delivered_and_socket_id_is_excluded() {
    let server = Server::start(config()).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    server.subscribe(&mut a, "private-user.42", None).await;
    server.subscribe(&mut b, "private-user.42", None).await;

    let event = json!({"name":"call_ended","data":"{\"reason\":\"timeout\"}","channels":["private-user.42"],"socket_id":a.id().as_str()});
    let (status, body) = post_signed(&server, "/apps/app-id/events", &event, now()).await;
    assert_eq!((status, body), (200, json!({})));
    let got = b.recv_event("call_ended").await;
    assert_eq!(got["data"], "{\"reason\":\"timeout\"}");

    let event = json!({"name":"second","data":{"k":1},"channel":"private-user.42"});
    assert_eq!(
        post_signed(&server, "/apps/app-id/events", &event, now())
            .await
            .0,
        200
    );
    a.recv_event("second").await; // `a` skipped call_ended, so this is its next frame
    let got = b.recv_event("second").await;
    assert_eq!(got["data"], "{\"k\":1}");
}

#[tokio::test]
async fn events_posted_one_after_another_arrive_in_that_order() {
    let server = Server::start(config()).await;
    let mut client = server.connect().await;
    server.subscribe(&mut client, "calls", None).await;
    for n in 0..40 {
        let event = json!({"channel":"calls","name":"step","data":n.to_string()});
        let (status, body) = post_signed(&server, "/apps/app-id/events", &event, now()).await;
        assert_eq!((status, body), (200, json!({})));
    }
    let batch = json!({"batch":[
        {"channel":"calls","name":"step","data":"40"},
        {"channel":"calls","name":"step","data":"41"},
    ]});
    assert_eq!(
        post_signed(&server, "/apps/app-id/batch_events", &batch, now())
            .await
            .0,
        200
    );
    for n in 0..42 {
        let got = client.recv_event("step").await;
        assert_eq!(got["data"], n.to_string(), "{got}");
    }
}

#[tokio::test]
async fn batch_events_publish_all_or_nothing() {
    let server = Server::start(config()).await;
    let mut client = server.connect().await;
    server.subscribe(&mut client, "calls", None).await;
    let batch = json!({"batch":[
        {"channel":"calls","name":"one","data":"1"},
        {"channel":"calls","name":"two","data":"2"},
    ]});
    assert_eq!(
        post_signed(&server, "/apps/app-id/batch_events", &batch, now())
            .await
            .0,
        200
    );
    client.recv_event("one").await;
    client.recv_event("two").await;

    let bad = json!({"batch":[
        {"channel":"calls","name":"three","data":"3"},
        {"channel":"bad channel","name":"four","data":"4"},
    ]});
    assert_eq!(
        post_signed(&server, "/apps/app-id/batch_events", &bad, now())
            .await
            .0,
        400
    );
    let item = json!({"channel":"calls","name":"x","data":"x"});
    let eleven = json!({"batch": vec![item; 11]});
    assert_eq!(
        post_signed(&server, "/apps/app-id/batch_events", &eleven, now())
            .await
            .0,
        400
    );
    server.marker("calls", 1).await;
    client.recv_event("marker").await; // "three" was never published
}

#[tokio::test]
async fn publish_api_rejects_bad_signatures_stale_timestamps_and_bad_events() {
    let mut cfg = config();
    cfg.max_event_bytes = 100;
    let server = Server::start(cfg).await;
    let event = json!({"name":"e","data":"{}","channel":"calls"});
    let path = "/apps/app-id/events";

    let (status, body) = post_signed(&server, path, &event, now() - 700).await;
    assert_eq!(
        (status, body["error"]["code"].as_str().unwrap()),
        (401, "timestamp_out_of_window")
    );
    assert_eq!(post_signed(&server, path, &event, now() + 700).await.0, 401);
    assert_eq!(post_signed(&server, path, &event, now() - 500).await.0, 200);

    // Signed for one body, sent with another.
    let query = sign_api_request(
        KEY,
        SECRET,
        "POST",
        path,
        event.to_string().as_bytes(),
        now(),
    );
    let (status, body) = post_raw(
        &server,
        &format!("{path}?{query}"),
        json!({"name":"f","data":"{}","channel":"calls"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str().unwrap()),
        (401, "body_md5_mismatch")
    );
    // Signed with the wrong secret.
    let query = sign_api_request(
        KEY,
        "not-the-secret",
        "POST",
        path,
        event.to_string().as_bytes(),
        now(),
    );
    assert_eq!(
        post_raw(&server, &format!("{path}?{query}"), event.to_string())
            .await
            .0,
        401
    );
    // Unsigned.
    assert_eq!(post_raw(&server, path, event.to_string()).await.0, 401);
    // Another app id.
    assert_eq!(
        post_signed(&server, "/apps/other/events", &event, now())
            .await
            .0,
        404
    );

    let too_big = json!({"name":"e","data":"x".repeat(101),"channel":"calls"});
    assert_eq!(post_signed(&server, path, &too_big, now()).await.0, 413);
    for bad in [
        json!({"name":"e","data":"{}"}),
        json!({"name":"e","data":"{}","channel":"calls","channels":["calls"]}),
        json!({"name":"","data":"{}","channel":"calls"}),
        json!({"name":"e","data":"{}","channel":"bad channel"}),
        json!({"name":"e","data":"{}","channel":"calls","socket_id":"nope"}),
        json!({"data":"{}","channel":"calls"}),
        json!("just a string"),
    ] {
        let (status, body) = post_signed(&server, path, &bad, now()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

async fn get_signed(server: &Server, path: &str, timestamp: i64) -> (u16, Value) {
    let query = sign_api_request(KEY, SECRET, "GET", path, b"", timestamp);
    let res = reqwest::get(server.http(&format!("{path}?{query}")))
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn channel_users_lists_a_presence_channels_members_for_signed_requests_only() {
    let server = Server::start(config()).await;
    let mut alice = server.connect().await;
    let mut bob = server.connect().await;
    let ch = "presence-room.1";
    server
        .subscribe(&mut alice, ch, Some(r#"{"user_id":"42"}"#))
        .await;
    server
        .subscribe(&mut bob, ch, Some(r#"{"user_id":7}"#))
        .await;
    let path = format!("/apps/{APP_ID}/channels/{ch}/users");
    let (status, body) = get_signed(&server, &path, now()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"users":[{"id":"42"},{"id":"7"}]}));

    let (status, body) =
        get_signed(&server, "/apps/app-id/channels/presence-empty/users", now()).await;
    assert_eq!((status, body), (200, json!({"users":[]})));
    let (status, body) = get_signed(&server, "/apps/app-id/channels/private-x/users", now()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_channel"))
    );
    let (status, _) = get_signed(&server, &path, now() - 3600).await;
    assert_eq!(status, 401);
    let res = reqwest::get(server.http(&path)).await.unwrap();
    assert_eq!(res.status(), 401);
    // A signature for another path does not open this one.
    let query = sign_api_request(
        KEY,
        SECRET,
        "GET",
        "/apps/app-id/channels/presence-empty/users",
        b"",
        now(),
    );
    let res = reqwest::get(server.http(&format!("{path}?{query}")))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}
