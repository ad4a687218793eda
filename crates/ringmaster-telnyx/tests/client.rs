//! The REST client against the in-process emulator: retries on injected 5xx/429 and network
//! failures, and one action per `command_id` however often it is sent.

use ringmaster_core::CallControlId;
use ringmaster_telnyx::emulator::{CommandOutcome, FailNext, Faults, LegState};
use ringmaster_telnyx::{
    codes, AnswerRequest, BridgeRequest, ClientConfig, CommandId, DialRequest, Emulator,
    EmulatorConfig, EmulatorHandle, EndOutcome, HangupRequest, RejectCause, RejectRequest,
    RetryPolicy, TelnyxClient, TelnyxError,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(1),
    }
}

fn client_for(base_url: String, max_attempts: u32) -> TelnyxClient {
    TelnyxClient::new(ClientConfig {
        request_timeout: Duration::from_secs(2),
        retry: fast_policy(max_attempts),
        ..ClientConfig::new("test-key").with_base_url(base_url)
    })
    .unwrap()
}

async fn emulator() -> (EmulatorHandle, TelnyxClient) {
    let emulator = Emulator::start(EmulatorConfig::for_tests(None))
        .await
        .unwrap();
    let client = client_for(emulator.base_url(), 4);
    (emulator, client)
}

fn fail(count: u32, status: u16, retry_after: Option<&str>) -> Faults {
    Faults {
        fail_next: Some(FailNext {
            count,
            status,
            retry_after: retry_after.map(str::to_owned),
        }),
        ..Faults::default()
    }
}

fn outcomes(emulator: &EmulatorHandle, action: &str) -> Vec<CommandOutcome> {
    emulator
        .commands()
        .into_iter()
        .filter(|c| c.action == action)
        .map(|c| c.outcome)
        .collect()
}

fn webhooks_of(emulator: &EmulatorHandle, event_type: &str, ccid: &CallControlId) -> usize {
    emulator
        .webhooks()
        .iter()
        .filter(|w| {
            w.event_type == event_type && w.call_control_id.as_deref() == Some(ccid.as_str())
        })
        .count()
}

/// Webhooks are logged by the delivery task once sent; wait until it has drained.
async fn settle(emulator: &EmulatorHandle) {
    assert!(emulator.wait_for_webhooks(Duration::from_secs(10)).await);
}

#[tokio::test]
async fn server_errors_are_retried_and_the_command_acts_once() {
    let (emulator, client) = emulator().await;
    let call = emulator.inbound_call("+15550000001", "+15550000002");
    emulator.inject(fail(2, 503, None)).unwrap();

    let id = CommandId::new("answer-1");
    client
        .answer(&call.call_control_id, &id, &AnswerRequest::default())
        .await
        .unwrap();

    assert_eq!(
        outcomes(&emulator, "answer"),
        [
            CommandOutcome::FaultInjected,
            CommandOutcome::FaultInjected,
            CommandOutcome::Executed
        ]
    );
    assert!(emulator
        .commands()
        .iter()
        .all(|c| c.command_id.as_deref() == Some("answer-1")));
    settle(&emulator).await;
    assert_eq!(
        webhooks_of(&emulator, "call.answered", &call.call_control_id),
        1
    );
    assert_eq!(
        emulator.call(&call.call_control_id).unwrap().state,
        LegState::Answered
    );
}

#[tokio::test]
async fn rate_limits_are_retried_with_retry_after() {
    let (emulator, client) = emulator().await;
    emulator.inject(fail(1, 429, Some("0.02"))).unwrap();
    let dial = DialRequest::new("conn", "sip:alice@example.com", "+15550000001");
    let leg = client.dial(&CommandId::new("dial-1"), &dial).await.unwrap();
    assert_eq!(
        outcomes(&emulator, "dial"),
        [CommandOutcome::FaultInjected, CommandOutcome::Executed]
    );
    assert_eq!(emulator.calls().len(), 1);
    assert_eq!(emulator.calls()[0].call_control_id, leg.call_control_id);
}

#[tokio::test]
async fn retry_after_longer_than_allowed_gives_up_at_once() {
    let (emulator, client) = emulator().await;
    emulator.inject(fail(5, 429, Some("120"))).unwrap();
    let dial = DialRequest::new("conn", "sip:alice@example.com", "+15550000001");
    let err = client
        .dial(&CommandId::new("dial-1"), &dial)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TelnyxError::RetryAfterTooLong { status: 429, retry_after } if retry_after == Duration::from_secs(120)),
        "{err:?}"
    );
    assert_eq!(outcomes(&emulator, "dial"), [CommandOutcome::FaultInjected]);
    assert!(emulator.calls().is_empty());
}

#[tokio::test]
async fn a_rate_limit_outlasting_the_retries_keeps_its_retry_after() {
    let (emulator, _) = emulator().await;
    let client = client_for(emulator.base_url(), 2);
    emulator.inject(fail(5, 429, Some("0.02"))).unwrap();
    let dial = DialRequest::new("conn", "sip:alice@example.com", "+15550000001");
    let err = client
        .dial(&CommandId::new("dial-1"), &dial)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TelnyxError::Api {
                status: 429,
                attempts: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(codes::TOO_MANY_REQUESTS));
    assert_eq!(err.retry_after(), Some(Duration::from_millis(20)));
    assert_eq!(
        outcomes(&emulator, "dial"),
        [CommandOutcome::FaultInjected, CommandOutcome::FaultInjected]
    );
    assert!(emulator.calls().is_empty());
}

#[tokio::test]
async fn exhausted_retries_return_the_last_error_and_nothing_happened() {
    let (emulator, _) = emulator().await;
    let client = client_for(emulator.base_url(), 3);
    let call = emulator.inbound_call("+15550000001", "+15550000002");
    emulator.inject(fail(10, 500, None)).unwrap();
    let err = client
        .answer(
            &call.call_control_id,
            &CommandId::new("a"),
            &AnswerRequest::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TelnyxError::Http {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(outcomes(&emulator, "answer").len(), 3);
    assert_eq!(
        emulator.call(&call.call_control_id).unwrap().state,
        LegState::Parked
    );
}

#[tokio::test]
async fn repeated_command_id_is_deduplicated_not_repeated() {
    let (emulator, client) = emulator().await;
    let dial = DialRequest::new("conn", "sip:alice@example.com", "+15550000001");
    let id = CommandId::new("session-9:dial:0");
    let first = client.dial(&id, &dial).await.unwrap();
    // E.g. the response was lost and the outbox re-dispatched the same effect.
    let second = client.dial(&id, &dial).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(emulator.calls().len(), 1, "one leg, not two");

    let hang = CommandId::new("session-9:hangup:0");
    let a = client
        .hangup(&first.call_control_id, &hang, &HangupRequest::default())
        .await
        .unwrap();
    let b = client
        .hangup(&first.call_control_id, &hang, &HangupRequest::default())
        .await
        .unwrap();
    assert!(matches!(a, EndOutcome::Ended(_)));
    assert_eq!(a, b, "the repeat gets the same result");
    assert_eq!(
        outcomes(&emulator, "dial"),
        [CommandOutcome::Executed, CommandOutcome::Deduplicated]
    );
    assert_eq!(
        outcomes(&emulator, "hangup"),
        [CommandOutcome::Executed, CommandOutcome::Deduplicated]
    );
    settle(&emulator).await;
    assert_eq!(
        webhooks_of(&emulator, "call.initiated", &first.call_control_id),
        1
    );
    assert_eq!(
        webhooks_of(&emulator, "call.hangup", &first.call_control_id),
        1
    );
}

#[tokio::test]
async fn fault_then_retry_then_duplicate_send_still_acts_once() {
    let (emulator, client) = emulator().await;
    let call = emulator.inbound_call("+15550000001", "+15550000002");
    emulator.inject(fail(1, 502, None)).unwrap();
    let id = CommandId::new("hangup-x");
    for _ in 0..3 {
        client
            .hangup(&call.call_control_id, &id, &HangupRequest::default())
            .await
            .unwrap();
    }
    assert_eq!(
        outcomes(&emulator, "hangup"),
        [
            CommandOutcome::FaultInjected,
            CommandOutcome::Executed,
            CommandOutcome::Deduplicated,
            CommandOutcome::Deduplicated
        ]
    );
    settle(&emulator).await;
    assert_eq!(
        webhooks_of(&emulator, "call.hangup", &call.call_control_id),
        1
    );
}

#[tokio::test]
async fn hangup_and_reject_of_an_ended_call_count_as_success() {
    let (emulator, client) = emulator().await;
    let call = emulator.inbound_call("+15550000001", "+15550000002");
    emulator.hangup(&call.call_control_id).unwrap();
    let outcome = client
        .hangup(
            &call.call_control_id,
            &CommandId::new("h"),
            &HangupRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(outcome, EndOutcome::AlreadyEnded);
    let outcome = client
        .reject(
            &call.call_control_id,
            &CommandId::new("r"),
            &RejectRequest {
                cause: RejectCause::UserBusy,
                client_state: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome, EndOutcome::AlreadyEnded);
    // Other commands report 90018 as an error, without retrying.
    let err = client
        .answer(
            &call.call_control_id,
            &CommandId::new("a"),
            &AnswerRequest::default(),
        )
        .await
        .unwrap_err();
    assert!(err.has_code(codes::CALL_ALREADY_ENDED), "{err:?}");
    assert!(matches!(
        err,
        TelnyxError::Api {
            status: 422,
            attempts: 1,
            ..
        }
    ));
}

#[tokio::test]
async fn unknown_call_is_90015_and_not_retried() {
    let (emulator, client) = emulator().await;
    let err = client
        .hangup(
            &CallControlId::new("v3:no-such-call"),
            &CommandId::new("h"),
            &HangupRequest::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::INVALID_CALL_CONTROL_ID));
    assert_eq!(err.status(), Some(422));
    assert_eq!(outcomes(&emulator, "hangup"), [CommandOutcome::Failed]);
}

#[tokio::test]
async fn bridge_of_an_unanswered_leg_is_90034() {
    let (emulator, client) = emulator().await;
    let call = emulator.inbound_call("+15550000001", "+15550000002");
    let mut dial = DialRequest::new("conn", "sip:bob@example.com", "+15550000002");
    dial.link_to = Some(call.call_control_id.clone());
    let leg = client.dial(&CommandId::new("d"), &dial).await.unwrap();
    client
        .answer(
            &call.call_control_id,
            &CommandId::new("a"),
            &AnswerRequest::default(),
        )
        .await
        .unwrap();
    let err = client
        .bridge(
            &call.call_control_id,
            &CommandId::new("b"),
            &BridgeRequest::to(leg.call_control_id.clone()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::CALL_NOT_ANSWERED));
    // A refused command is not remembered: once the leg answers, the same id goes through.
    emulator.answer(&leg.call_control_id).unwrap();
    client
        .bridge(
            &call.call_control_id,
            &CommandId::new("b"),
            &BridgeRequest::to(leg.call_control_id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        emulator.call(&call.call_control_id).unwrap().bridged_with,
        Some(leg.call_control_id)
    );
}

#[tokio::test]
async fn invalid_dial_gets_typed_validation_errors() {
    let (emulator, client) = emulator().await;
    let bad_to = DialRequest::new("conn", "555-1234", "+15550000001");
    let err = client
        .dial(&CommandId::new("1"), &bad_to)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::NOT_E164));
    let mut bad_timeout = DialRequest::new("conn", "+15550000009", "+15550000001");
    bad_timeout.timeout_secs = Some(2);
    let err = client
        .dial(&CommandId::new("2"), &bad_timeout)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(codes::OUT_OF_RANGE));
    let empty = DialRequest::new("", "+15550000009", "+15550000001");
    let err = client.dial(&CommandId::new("3"), &empty).await.unwrap_err();
    assert_eq!(err.code(), Some(codes::MISSING_PARAMETER));
    assert!(emulator.calls().is_empty());
}

#[tokio::test]
async fn wrong_api_key_is_rejected_and_not_retried() {
    let mut config = EmulatorConfig::for_tests(None);
    config.api_key = Some("right".into());
    let emulator = Emulator::start(config).await.unwrap();
    let client = TelnyxClient::new(ClientConfig {
        retry: fast_policy(4),
        ..ClientConfig::new("wrong").with_base_url(emulator.base_url())
    })
    .unwrap();
    let dial = DialRequest::new("conn", "+15550000009", "+15550000001");
    let err = client.dial(&CommandId::new("1"), &dial).await.unwrap_err();
    assert!(
        matches!(
            err,
            TelnyxError::Api {
                status: 401,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(codes::AUTH_FAILED));
    assert_eq!(outcomes(&emulator, "dial"), [CommandOutcome::Unauthorized]);
}

#[tokio::test]
async fn silent_server_times_out_on_every_attempt() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU32::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            open.push(socket); // never answer
        }
    });
    let client = TelnyxClient::new(ClientConfig {
        request_timeout: Duration::from_millis(50),
        retry: fast_policy(2),
        ..ClientConfig::new("k").with_base_url(format!("http://{addr}/v2"))
    })
    .unwrap();
    let err = client
        .hangup(
            &CallControlId::new("v3:x"),
            &CommandId::new("h"),
            &HangupRequest::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, TelnyxError::Timeout { attempts: 2 }),
        "{err:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let client = TelnyxClient::new(ClientConfig {
        retry: fast_policy(3),
        ..ClientConfig::new("k").with_base_url(format!("http://{addr}/v2"))
    })
    .unwrap();
    let err = client
        .dial(
            &CommandId::new("d"),
            &DialRequest::new("c", "+15550000009", "+15550000001"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, TelnyxError::Transport { attempts: 3, .. }),
        "{err:?}"
    );
}
