//! FCM HTTP v1 client against a local HTTP/2 server.

mod common;

use axum::http::Version;
use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ringmaster_push::{
    FcmClient, FcmConfig, PushError, PushKind, PushMessage, PushOutcome, ServiceAccount,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const DEVICE: &str = "fcm-token-abc:APA91b_x-y";

fn token_reply(n: usize) -> Reply {
    Reply::new(200, json!({"access_token": format!("ya29.token-{n}"), "expires_in": 3599, "token_type": "Bearer"}).to_string())
}

fn ok_reply(_: usize) -> Reply {
    Reply::new(200, r#"{"name":"projects/test-project/messages/0:1"}"#)
}

fn fcm_error(status: u16, rpc_status: &str, error_code: &str, message: &str) -> Reply {
    let mut details = vec![
        json!({"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":error_code}),
    ];
    if message.contains("registration token") {
        details.push(json!({"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":message}]}));
    }
    Reply::new(
        status,
        json!({"error":{"code":status,"message":message,"status":rpc_status,"details":details}})
            .to_string(),
    )
}

struct Fixture {
    server: MockServer,
    clock: Arc<ManualClock>,
    client: FcmClient,
}

async fn fixture(send_replies: Vec<Reply>) -> Fixture {
    let server = MockServer::start().await;
    server.route("/token", vec![], token_reply);
    server.route("/v1/", send_replies, ok_reply);
    let clock = ManualClock::new();
    let account = ServiceAccount::from_json(
        &json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "key-1",
            "private_key": FCM_PRIVATE_KEY,
            "client_email": "push@test-project.iam.gserviceaccount.com",
            "token_uri": format!("{}/token", server.url()),
        })
        .to_string(),
    )
    .unwrap();
    let mut config = FcmConfig::new(account);
    config.base_url = server.url();
    config.retry = tiny_policy();
    let client = FcmClient::new(config, clock.clone()).unwrap();
    Fixture {
        server,
        clock,
        client,
    }
}

fn call_ended() -> PushMessage {
    PushMessage::new(PushKind::CallEnded)
        .with("call_session_id", "cs-1")
        .with("reason", "answered_elsewhere")
        .with("device_id", "dev-9")
}

#[tokio::test]
async fn sends_a_high_priority_data_message_with_a_signed_service_account_token() {
    let f = fixture(vec![]).await;
    let mut message = call_ended();
    message.ttl = Duration::from_secs(45);
    message.collapse_key = Some("cs-1".into());
    let outcome = f.client.send(DEVICE, &message).await;
    assert_eq!(
        outcome,
        PushOutcome::Delivered {
            id: Some("projects/test-project/messages/0:1".into())
        }
    );

    let token_requests = f.server.requests_to("/token");
    assert_eq!(token_requests.len(), 1);
    let t = &token_requests[0];
    assert_eq!(t.version, Version::HTTP_2);
    assert_eq!(
        t.header("content-type"),
        "application/x-www-form-urlencoded"
    );
    let form: Vec<(String, String)> = serde_urlencoded_pairs(&t.body);
    assert_eq!(
        form[0],
        (
            "grant_type".into(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into()
        )
    );
    let assertion = &form.iter().find(|(k, _)| k == "assertion").unwrap().1;

    // The JWT verifies with the service account's public key and carries Google's claims.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[format!("{}/token", f.server.url())]);
    validation.validate_exp = false;
    let decoded = jsonwebtoken::decode::<Value>(
        assertion,
        &DecodingKey::from_rsa_pem(FCM_PUBLIC_KEY.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap();
    assert_eq!(decoded.header.kid.as_deref(), Some("key-1"));
    let claims = decoded.claims;
    assert_eq!(claims["iss"], "push@test-project.iam.gserviceaccount.com");
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    assert_eq!(claims["iat"], f.clock.unix());
    assert_eq!(claims["exp"], f.clock.unix() + 3600);
    // A key other than the service account's does not verify it.
    let other = DecodingKey::from_ec_pem(APNS_PUBLIC_KEY.as_bytes()).unwrap();
    assert!(
        jsonwebtoken::decode::<Value>(assertion, &other, &Validation::new(Algorithm::ES256))
            .is_err()
    );

    let sends = f.server.requests_to("/v1/");
    assert_eq!(sends.len(), 1);
    let s = &sends[0];
    assert_eq!(s.path, "/v1/projects/test-project/messages:send");
    assert_eq!(s.version, Version::HTTP_2);
    assert_eq!(s.header("authorization"), "Bearer ya29.token-1");
    assert_eq!(
        s.json(),
        json!({"message":{
            "token": DEVICE,
            "data": {"type":"call_ended","call_session_id":"cs-1","reason":"answered_elsewhere","device_id":"dev-9"},
            "android": {"priority":"HIGH","ttl":"45s","collapse_key":"cs-1"}
        }})
    );
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(body).unwrap();
    text.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.replace("%3A", ":"))
        })
        .collect()
}

#[tokio::test]
async fn access_token_is_cached_until_it_nearly_expires() {
    let f = fixture(vec![]).await;
    for _ in 0..3 {
        assert!(matches!(
            f.client.send(DEVICE, &call_ended()).await,
            PushOutcome::Delivered { .. }
        ));
    }
    assert_eq!(f.server.requests_to("/token").len(), 1);
    f.clock.advance(Duration::from_secs(3599 - 90));
    f.client.send(DEVICE, &call_ended()).await;
    assert_eq!(
        f.server.requests_to("/token").len(),
        1,
        "still valid for 90 s"
    );
    f.clock.advance(Duration::from_secs(60));
    f.client.send(DEVICE, &call_ended()).await;
    assert_eq!(
        f.server.requests_to("/token").len(),
        2,
        "renewed within the last minute"
    );
    let sends = f.server.requests_to("/v1/");
    assert_eq!(
        sends.last().unwrap().header("authorization"),
        "Bearer ya29.token-2"
    );
}

#[tokio::test]
async fn dead_tokens_are_reported_as_invalid_without_retrying() {
    for reply in [
        fcm_error(
            404,
            "NOT_FOUND",
            "UNREGISTERED",
            "Requested entity was not found.",
        ),
        fcm_error(
            400,
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
        ),
    ] {
        let f = fixture(vec![reply]).await;
        let outcome = f.client.send(DEVICE, &call_ended()).await;
        assert!(
            matches!(outcome, PushOutcome::InvalidToken { .. }),
            "{outcome:?}"
        );
        assert_eq!(f.server.requests_to("/v1/").len(), 1);
    }
}

#[tokio::test]
async fn a_bad_payload_is_fatal_not_a_dead_token() {
    let f = fixture(vec![fcm_error(
        400,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "Invalid value at 'message.android.ttl'",
    )])
    .await;
    let outcome = f.client.send(DEVICE, &call_ended()).await;
    assert!(
        matches!(
            outcome,
            PushOutcome::Fatal(PushError::Rejected { status: 400, .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(f.server.requests_to("/v1/").len(), 1);
}

#[tokio::test]
async fn unavailable_is_retried_with_backoff_and_retry_after_is_honoured() {
    let f = fixture(vec![
        fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "try later"),
        fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "slow down")
            .header("retry-after", "5"),
    ])
    .await;
    let outcome = f.client.send(DEVICE, &call_ended()).await;
    assert!(
        matches!(outcome, PushOutcome::Delivered { .. }),
        "{outcome:?}"
    );
    assert_eq!(f.server.requests_to("/v1/").len(), 3);
    assert_eq!(
        f.clock.sleeps(),
        vec![Duration::from_millis(10), Duration::from_secs(5)]
    );
}

#[tokio::test]
async fn retries_run_out_into_a_retryable_outcome() {
    let clock = ManualClock::new();
    let server = MockServer::start().await;
    server.route("/token", vec![], token_reply);
    server.route("/v1/", vec![], |_| {
        Reply::new(500, r#"{"error":{"status":"INTERNAL","message":"boom"}}"#)
    });
    let outcome = client_for(&server, clock.clone())
        .send(DEVICE, &call_ended())
        .await;
    assert_eq!(
        outcome,
        PushOutcome::Retryable {
            retry_after: None,
            reason: "INTERNAL: boom".into()
        }
    );
    assert_eq!(server.requests_to("/v1/").len(), 3);
    assert_eq!(
        clock.sleeps(),
        vec![Duration::from_millis(10), Duration::from_millis(20)]
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_the_policy_allows_is_handed_back() {
    let f = fixture(vec![Reply::new(429, "{}").header("retry-after", "120")]).await;
    let outcome = f.client.send(DEVICE, &call_ended()).await;
    assert!(
        matches!(outcome, PushOutcome::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(120)),
        "{outcome:?}"
    );
    assert_eq!(f.server.requests_to("/v1/").len(), 1);
    assert!(f.clock.sleeps().is_empty());
}

#[tokio::test]
async fn a_refused_access_token_is_renewed_once() {
    let f = fixture(vec![fcm_error(
        401,
        "UNAUTHENTICATED",
        "UNAUTHENTICATED",
        "expired",
    )])
    .await;
    let outcome = f.client.send(DEVICE, &call_ended()).await;
    assert!(
        matches!(outcome, PushOutcome::Delivered { .. }),
        "{outcome:?}"
    );
    assert_eq!(f.server.requests_to("/token").len(), 2);
    assert_eq!(
        f.server
            .requests_to("/v1/")
            .last()
            .unwrap()
            .header("authorization"),
        "Bearer ya29.token-2"
    );

    let server = MockServer::start().await;
    server.route("/token", vec![], token_reply);
    server.route("/v1/", vec![], |_| {
        fcm_error(401, "UNAUTHENTICATED", "UNAUTHENTICATED", "no")
    });
    let outcome = client_for(&server, ManualClock::new())
        .send(DEVICE, &call_ended())
        .await;
    assert!(
        matches!(outcome, PushOutcome::Fatal(PushError::Credentials(_))),
        "{outcome:?}"
    );
    assert_eq!(server.requests_to("/v1/").len(), 2);
}

#[tokio::test]
async fn a_token_endpoint_refusal_is_fatal_and_nothing_is_sent() {
    let server = MockServer::start().await;
    server.route("/token", vec![], |_| {
        Reply::new(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        )
    });
    server.route("/v1/", vec![], ok_reply);
    let outcome = client_for(&server, ManualClock::new())
        .send(DEVICE, &call_ended())
        .await;
    match outcome {
        PushOutcome::Fatal(PushError::Credentials(reason)) => {
            assert!(reason.contains("invalid_grant"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(server.requests_to("/v1/").is_empty());
}

#[tokio::test]
async fn a_token_endpoint_outage_is_retried() {
    let server = MockServer::start().await;
    server.route("/token", vec![Reply::new(503, "")], token_reply);
    server.route("/v1/", vec![], ok_reply);
    let clock = ManualClock::new();
    let outcome = client_for(&server, clock.clone())
        .send(DEVICE, &call_ended())
        .await;
    assert!(
        matches!(outcome, PushOutcome::Delivered { .. }),
        "{outcome:?}"
    );
    assert_eq!(server.requests_to("/token").len(), 2);
    assert_eq!(clock.sleeps().len(), 1);
}

#[tokio::test]
async fn huge_response_bodies_are_cut_off() {
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2 << 20));
    let f = fixture(vec![Reply::new(200, big)]).await;
    // The truncated body is not JSON any more, so no id; the push still counts as delivered.
    assert_eq!(
        f.client.send(DEVICE, &call_ended()).await,
        PushOutcome::Delivered { id: None }
    );
}

#[tokio::test]
async fn malformed_tokens_and_oversized_data_never_reach_the_network() {
    let f = fixture(vec![]).await;
    for bad in ["", "has space", &"a".repeat(5000)] {
        assert!(matches!(
            f.client.send(bad, &call_ended()).await,
            PushOutcome::InvalidToken { .. }
        ));
    }
    let big = call_ended().with("blob", "x".repeat(5000));
    assert!(matches!(
        f.client.send(DEVICE, &big).await,
        PushOutcome::Fatal(PushError::InvalidMessage(_))
    ));
    assert!(f.server.requests().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let account = account_json(&format!("{dead}/token"));
    let mut config = FcmConfig::new(ServiceAccount::from_json(&account).unwrap());
    config.base_url = dead;
    config.retry = tiny_policy();
    let clock = ManualClock::new();
    let outcome = FcmClient::new(config, clock.clone())
        .unwrap()
        .send(DEVICE, &call_ended())
        .await;
    assert!(
        matches!(outcome, PushOutcome::Retryable { .. }),
        "{outcome:?}"
    );
    assert_eq!(clock.sleeps().len(), 2);
}

#[test]
fn a_bad_private_key_is_refused_up_front() {
    let mut account = ServiceAccount::from_json(&account_json("http://127.0.0.1:9/token")).unwrap();
    account.private_key = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n".into();
    let err = FcmClient::new(FcmConfig::new(account), ManualClock::new()).unwrap_err();
    assert!(matches!(err, PushError::Credentials(_)));
    assert!(ServiceAccount::from_json("{}").is_err());
    assert!(!format!(
        "{:?}",
        ServiceAccount::from_json(&account_json("x")).unwrap()
    )
    .contains("PRIVATE KEY"));
}

fn account_json(token_uri: &str) -> String {
    json!({"project_id":"test-project","private_key":FCM_PRIVATE_KEY,"client_email":"push@test","token_uri":token_uri}).to_string()
}

fn client_for(server: &MockServer, clock: Arc<ManualClock>) -> FcmClient {
    let mut config = FcmConfig::new(
        ServiceAccount::from_json(&account_json(&format!("{}/token", server.url()))).unwrap(),
    );
    config.base_url = server.url();
    config.retry = tiny_policy();
    FcmClient::new(config, clock).unwrap()
}
