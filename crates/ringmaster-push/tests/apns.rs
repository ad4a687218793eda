//! APNs client against a local HTTP/2 server.

mod common;

use axum::http::Version;
use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ringmaster_push::{
    Alert, ApnsClient, ApnsConfig, Platform, PushError, PushKind, PushMessage, PushOutcome,
    PushSender,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const BUNDLE: &str = "com.example.ringmaster";

fn ok_reply(n: usize) -> Reply {
    Reply::new(200, "").header("apns-id", format!("00000000-0000-0000-0000-{n:012}"))
}

fn reason(status: u16, reason: &str) -> Reply {
    Reply::new(status, json!({ "reason": reason }).to_string())
}

async fn fixture(replies: Vec<Reply>) -> (MockServer, Arc<ManualClock>, ApnsClient) {
    let server = MockServer::start().await;
    server.route("/3/device/", replies, ok_reply);
    let clock = ManualClock::new();
    let client = client_for(&server, clock.clone());
    (server, clock, client)
}

fn client_for(server: &MockServer, clock: Arc<ManualClock>) -> ApnsClient {
    let mut config = ApnsConfig::new("KEYID12345", "TEAMID6789", APNS_PRIVATE_KEY, BUNDLE);
    config.base_url = server.url();
    config.retry = tiny_policy();
    ApnsClient::new(config, clock).unwrap()
}

/// Verifies the provider token with the public key and returns its claims.
fn provider_claims(authorization: &str) -> Value {
    let jwt = authorization
        .strip_prefix("bearer ")
        .expect("bearer scheme");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.required_spec_claims = HashSet::new();
    let key = DecodingKey::from_ec_pem(APNS_PUBLIC_KEY.as_bytes()).unwrap();
    let decoded =
        jsonwebtoken::decode::<Value>(jwt, &key, &validation).expect("provider token verifies");
    assert_eq!(decoded.header.kid.as_deref(), Some("KEYID12345"));
    decoded.claims
}

fn incoming_call() -> PushMessage {
    PushMessage::new(PushKind::IncomingCall)
        .with("call_session_id", "cs-1")
        .with("caller", "+15550100")
}

fn call_ended() -> PushMessage {
    PushMessage::new(PushKind::CallEnded)
        .with("call_session_id", "cs-1")
        .with("reason", "answered_elsewhere")
}

#[tokio::test]
async fn incoming_call_goes_as_voip_push_with_a_signed_provider_token() {
    let (server, clock, client) = fixture(vec![]).await;
    let outcome = client.send(DEVICE, &incoming_call()).await;
    assert_eq!(
        outcome,
        PushOutcome::Delivered {
            id: Some("00000000-0000-0000-0000-000000000001".into())
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.path, format!("/3/device/{DEVICE}"));
    assert_eq!(r.header("apns-topic"), "com.example.ringmaster.voip");
    assert_eq!(r.header("apns-push-type"), "voip");
    assert_eq!(r.header("apns-priority"), "10");
    assert_eq!(r.header("apns-expiration"), (clock.unix() + 30).to_string());
    assert_eq!(
        r.json(),
        json!({"type":"incoming_call","call_session_id":"cs-1","caller":"+15550100"})
    );
    let claims = provider_claims(r.header("authorization"));
    assert_eq!(claims, json!({"iss":"TEAMID6789","iat":clock.unix()}));
}

#[tokio::test]
async fn dismissals_are_never_voip() {
    let (server, _clock, client) = fixture(vec![]).await;
    let alert = Alert {
        title: "Call answered".into(),
        body: "Answered on another device".into(),
    };
    let mut with_alert = call_ended();
    with_alert.alert = Some(alert);
    for message in [
        call_ended(),
        with_alert,
        PushMessage::new(PushKind::CallStateChanged),
    ] {
        assert!(matches!(
            client.send(DEVICE, &message).await,
            PushOutcome::Delivered { .. }
        ));
    }
    let requests = server.requests();
    for r in &requests {
        assert_eq!(r.header("apns-topic"), BUNDLE);
        assert_ne!(r.header("apns-push-type"), "voip");
    }
    // Silent dismissal: a background push, which Apple requires at priority 5.
    assert_eq!(requests[0].header("apns-push-type"), "background");
    assert_eq!(requests[0].header("apns-priority"), "5");
    assert_eq!(
        requests[0].json(),
        json!({"aps":{"content-available":1},"type":"call_ended","call_session_id":"cs-1","reason":"answered_elsewhere"})
    );
    // With text: an alert push.
    assert_eq!(requests[1].header("apns-push-type"), "alert");
    assert_eq!(requests[1].header("apns-priority"), "10");
    assert_eq!(
        requests[1].json()["aps"]["alert"],
        json!({"title":"Call answered","body":"Answered on another device"})
    );
    assert_eq!(requests[2].json()["type"], "call_state_changed");
}

#[tokio::test]
async fn provider_token_is_reused_then_renewed_before_an_hour() {
    let (server, clock, client) = fixture(vec![]).await;
    let start = clock.unix();
    client.send(DEVICE, &call_ended()).await;
    clock.advance(Duration::from_secs(49 * 60));
    client.send(DEVICE, &call_ended()).await;
    clock.advance(Duration::from_secs(60));
    client.send(DEVICE, &call_ended()).await;
    let tokens: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.header("authorization").to_owned())
        .collect();
    assert_eq!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2]);
    assert_eq!(provider_claims(&tokens[2])["iat"], start + 50 * 60);
}

#[tokio::test]
async fn dead_device_tokens_are_reported_invalid() {
    for reply in [
        reason(410, "Unregistered"),
        reason(400, "BadDeviceToken"),
        Reply::new(410, ""),
    ] {
        let (server, _, client) = fixture(vec![reply]).await;
        let outcome = client.send(DEVICE, &incoming_call()).await;
        assert!(
            matches!(outcome, PushOutcome::InvalidToken { .. }),
            "{outcome:?}"
        );
        assert_eq!(server.requests().len(), 1);
    }
}

#[tokio::test]
async fn other_rejections_are_fatal_without_retry() {
    for (reply, status) in [
        (reason(400, "BadTopic"), 400),
        (reason(413, "PayloadTooLarge"), 413),
        (reason(400, "DeviceTokenNotForTopic"), 400),
    ] {
        let (server, _, client) = fixture(vec![reply]).await;
        let outcome = client.send(DEVICE, &call_ended()).await;
        assert!(
            matches!(&outcome, PushOutcome::Fatal(PushError::Rejected { status: s, .. }) if *s == status),
            "{outcome:?}"
        );
        assert_eq!(server.requests().len(), 1);
    }
}

#[tokio::test]
async fn an_expired_provider_token_is_resigned_once() {
    let (server, _, client) = fixture(vec![reason(403, "ExpiredProviderToken")]).await;
    assert!(matches!(
        client.send(DEVICE, &call_ended()).await,
        PushOutcome::Delivered { .. }
    ));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    // ES256 signatures are randomised, so a re-signed token differs even within the same second.
    assert_ne!(
        requests[0].header("authorization"),
        requests[1].header("authorization")
    );
    provider_claims(requests[1].header("authorization"));

    let server = MockServer::start().await;
    server.route("/3/device/", vec![], |_| {
        reason(403, "InvalidProviderToken")
    });
    let outcome = client_for(&server, ManualClock::new())
        .send(DEVICE, &call_ended())
        .await;
    assert!(
        matches!(outcome, PushOutcome::Fatal(PushError::Credentials(_))),
        "{outcome:?}"
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn throttling_and_outages_are_retried_honouring_retry_after() {
    let (server, clock, client) = fixture(vec![
        reason(429, "TooManyRequests").header("retry-after", "3"),
        reason(503, "ServiceUnavailable"),
    ])
    .await;
    assert!(matches!(
        client.send(DEVICE, &incoming_call()).await,
        PushOutcome::Delivered { .. }
    ));
    assert_eq!(server.requests().len(), 3);
    assert_eq!(
        clock.sleeps(),
        vec![Duration::from_secs(3), Duration::from_millis(20)]
    );

    let server = MockServer::start().await;
    server.route("/3/device/", vec![], |_| reason(500, "InternalServerError"));
    let outcome = client_for(&server, ManualClock::new())
        .send(DEVICE, &incoming_call())
        .await;
    assert_eq!(
        outcome,
        PushOutcome::Retryable {
            retry_after: None,
            reason: "InternalServerError".into()
        }
    );
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn bad_tokens_and_oversized_payloads_never_reach_the_network() {
    let (server, _, client) = fixture(vec![]).await;
    for bad in ["", "not-hex-zz", "ab/../cd", &"a".repeat(201)] {
        assert!(
            matches!(
                client.send(bad, &call_ended()).await,
                PushOutcome::InvalidToken { .. }
            ),
            "{bad}"
        );
    }
    let big = call_ended().with("blob", "x".repeat(4200));
    assert!(matches!(
        client.send(DEVICE, &big).await,
        PushOutcome::Fatal(PushError::InvalidMessage(_))
    ));
    // VoIP pushes get 5 KB.
    let voip = incoming_call().with("blob", "x".repeat(4200));
    assert!(matches!(
        client.send(DEVICE, &voip).await,
        PushOutcome::Delivered { .. }
    ));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn bad_keys_and_token_lifetimes_are_refused_up_front() {
    let config = ApnsConfig::new("K", "T", "not a key", BUNDLE);
    assert!(matches!(
        ApnsClient::new(config, ManualClock::new()),
        Err(PushError::Credentials(_))
    ));
    let mut config = ApnsConfig::new("K", "T", APNS_PRIVATE_KEY, BUNDLE);
    config.token_refresh = Duration::from_secs(3600);
    assert!(ApnsClient::new(config, ManualClock::new()).is_err());
}

#[tokio::test]
async fn the_sender_routes_by_platform_and_reports_missing_clients() {
    let (server, _, client) = fixture(vec![]).await;
    let sender = PushSender::new(None, Some(client));
    assert!(sender.is_enabled());
    assert!(sender.supports(Platform::Ios) && !sender.supports(Platform::Android));
    assert!(matches!(
        sender.send(Platform::Ios, DEVICE, &call_ended()).await,
        PushOutcome::Delivered { .. }
    ));
    assert_eq!(
        sender.send(Platform::Android, "tok", &call_ended()).await,
        PushOutcome::Fatal(PushError::NotConfigured("Android (FCM)"))
    );
    assert_eq!(server.requests().len(), 1);
    assert!(!PushSender::default().is_enabled());
}
