//! Emulator behaviour: hangup causes, recordings, media, bridges, webhook faults and the HTTP
//! control API.

mod common;

use common::{emulator_with_receiver, is, Receiver};
use ringmaster_core::CallControlId;
use ringmaster_telnyx::emulator::{EndpointScript, Faults, LegState, RemoteRejectCause};
use ringmaster_telnyx::webhook::{Event, HangupCause, HangupSource};
use ringmaster_telnyx::{
    AnswerRequest, BridgeRequest, ClientConfig, CommandId, DialRequest, EmulatorHandle,
    HangupRequest, PlaybackStartRequest, RecordStartRequest, RecordingChannels, RecordingFormat,
    RejectCause, RejectRequest, RetryPolicy, SpeakRequest, TelnyxClient, TransferRequest,
};
use serde_json::{json, Value};

fn client(emulator: &EmulatorHandle) -> TelnyxClient {
    TelnyxClient::new(ClientConfig {
        retry: RetryPolicy::no_retries(),
        ..ClientConfig::new("k").with_base_url(emulator.base_url())
    })
    .unwrap()
}

/// An answered inbound call.
async fn answered_caller(
    emulator: &EmulatorHandle,
    receiver: &Receiver,
    client: &TelnyxClient,
) -> CallControlId {
    let call = emulator.inbound_call("+15550001000", "+15550002000");
    client
        .answer(
            &call.call_control_id,
            &CommandId::random(),
            &AnswerRequest::default(),
        )
        .await
        .unwrap();
    receiver
        .wait_for("call.answered", call.call_control_id.as_str())
        .await;
    call.call_control_id
}

async fn dial(
    client: &TelnyxClient,
    to: &str,
    link: Option<&CallControlId>,
    timeout: u32,
) -> CallControlId {
    let mut req = DialRequest::new("conn", to, "+15550002000");
    req.link_to = link.cloned();
    req.timeout_secs = Some(timeout);
    client
        .dial(&CommandId::random(), &req)
        .await
        .unwrap()
        .call_control_id
}

#[tokio::test]
async fn dialled_leg_times_out_after_its_timeout_secs() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    // 5 Telnyx seconds are 50 ms with test timing.
    let leg = dial(&client, "sip:nobody@example.com", None, 5).await;
    assert_eq!(
        receiver.hangup_of(leg.as_str()).await,
        (HangupCause::Timeout, HangupSource::Caller, "487".into())
    );
}

#[tokio::test]
async fn scripted_endpoints_reject_are_busy_or_unreachable() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    emulator.script_endpoint("sip:decline@x", EndpointScript::RejectAfterMs(5));
    emulator.script_endpoint("sip:busy@x", EndpointScript::Busy);
    emulator.script_endpoint("sip:gone@x", EndpointScript::Unreachable);
    let decline = dial(&client, "sip:decline@x", None, 600).await;
    let busy = dial(&client, "sip:busy@x", None, 600).await;
    let gone = dial(&client, "sip:gone@x", None, 600).await;
    assert_eq!(
        receiver.hangup_of(decline.as_str()).await,
        (
            HangupCause::CallRejected,
            HangupSource::Callee,
            "603".into()
        )
    );
    assert_eq!(
        receiver.hangup_of(busy.as_str()).await,
        (HangupCause::UserBusy, HangupSource::Callee, "486".into())
    );
    assert_eq!(
        receiver.hangup_of(gone.as_str()).await,
        (HangupCause::NotFound, HangupSource::Callee, "404".into())
    );
    // call.initiated always comes first.
    let events = receiver.events();
    let pos =
        |t: &str, c: &CallControlId| events.iter().position(|e| is(e, t, c.as_str())).unwrap();
    assert!(pos("call.initiated", &busy) < pos("call.hangup", &busy));
}

#[tokio::test]
async fn caller_cancel_before_answer_is_originator_cancel_and_leaves_device_legs_to_us() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    let call = emulator.inbound_call("+15550001000", "+15550002000");
    let leg = dial(&client, "sip:dev@x", Some(&call.call_control_id), 600).await;
    emulator.hangup(&call.call_control_id).unwrap();
    assert_eq!(
        receiver.hangup_of(call.call_control_id.as_str()).await,
        (
            HangupCause::OriginatorCancel,
            HangupSource::Caller,
            "487".into()
        )
    );
    // Telnyx does not cancel linked legs by itself: the coordinator must.
    assert_eq!(emulator.call(&leg).unwrap().state, LegState::Ringing);
    client
        .hangup(&leg, &CommandId::random(), &HangupRequest::default())
        .await
        .unwrap();
    assert_eq!(
        receiver.hangup_of(leg.as_str()).await.0,
        HangupCause::OriginatorCancel
    );
}

#[tokio::test]
async fn device_reject_and_inbound_reject_causes() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    let leg = dial(&client, "sip:dev@x", None, 600).await;
    emulator.reject(&leg, RemoteRejectCause::UserBusy).unwrap();
    assert_eq!(
        receiver.hangup_of(leg.as_str()).await,
        (HangupCause::UserBusy, HangupSource::Callee, "486".into())
    );

    let call = emulator.inbound_call("+15550001000", "+15550002000");
    client
        .reject(
            &call.call_control_id,
            &CommandId::random(),
            &RejectRequest {
                cause: RejectCause::CallRejected,
                client_state: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        receiver.hangup_of(call.call_control_id.as_str()).await,
        (
            HangupCause::CallRejected,
            HangupSource::Callee,
            "603".into()
        )
    );
}

#[tokio::test]
async fn recording_is_saved_after_the_recorded_leg_ends() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    let caller = answered_caller(&emulator, &receiver, &client).await;
    let result = client
        .record_start(
            &caller,
            &CommandId::random(),
            &RecordStartRequest {
                format: RecordingFormat::Wav,
                channels: RecordingChannels::Dual,
                play_beep: None,
                max_length: None,
                client_state: None,
            },
        )
        .await
        .unwrap();
    let recording_id = result.recording_id.unwrap();
    emulator.hangup(&caller).unwrap();
    let saved = receiver
        .wait_for("call.recording.saved", caller.as_str())
        .await;
    let events = receiver.events();
    let hangup_at = events
        .iter()
        .position(|e| is(e, "call.hangup", caller.as_str()))
        .unwrap();
    let saved_at = events
        .iter()
        .position(|e| is(e, "call.recording.saved", caller.as_str()))
        .unwrap();
    assert!(hangup_at < saved_at, "recording.saved follows hangup");
    let Event::CallRecordingSaved(p) = saved.event else {
        panic!()
    };
    assert_eq!(p.recording_id.as_deref(), Some(recording_id.as_str()));
    assert_eq!(p.channels.as_deref(), Some("dual"));
    let url = p.recording_urls.wav.unwrap();
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let wav = response.bytes().await.unwrap();
    assert_eq!(&wav[..4], b"RIFF");
}

#[tokio::test]
async fn speak_and_playback_end_with_webhooks() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    let caller = answered_caller(&emulator, &receiver, &client).await;
    client
        .speak(
            &caller,
            &CommandId::random(),
            &SpeakRequest {
                payload: "Please leave a message".into(),
                voice: "female".into(),
                language: Some("en-US".into()),
                payload_type: None,
                client_state: None,
            },
        )
        .await
        .unwrap();
    let ended = receiver.wait_for("call.speak.ended", caller.as_str()).await;
    let Event::CallSpeakEnded(p) = ended.event else {
        panic!()
    };
    assert_eq!(p.status.as_deref(), Some("completed"));

    client
        .playback_start(
            &caller,
            &CommandId::random(),
            &PlaybackStartRequest {
                audio_url: "http://example.com/beep.wav".into(),
                client_state: None,
            },
        )
        .await
        .unwrap();
    let ended = receiver
        .wait_for("call.playback.ended", caller.as_str())
        .await;
    let Event::CallPlaybackEnded(p) = ended.event else {
        panic!()
    };
    assert_eq!(p.media_url.as_deref(), Some("http://example.com/beep.wav"));
    assert_eq!(p.status.as_deref(), Some("completed"));
    receiver
        .wait_for("call.speak.started", caller.as_str())
        .await;
    receiver
        .wait_for("call.playback.started", caller.as_str())
        .await;
}

#[tokio::test]
async fn park_after_unbridge_keeps_the_other_leg_up() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    emulator.script_endpoint("sip:dev@x", EndpointScript::AnswerAfterMs(1));
    let caller = answered_caller(&emulator, &receiver, &client).await;
    let leg = dial(&client, "sip:dev@x", Some(&caller), 600).await;
    receiver.wait_for("call.answered", leg.as_str()).await;
    let mut bridge = BridgeRequest::to(leg.clone());
    bridge.park_after_unbridge = Some("self".into());
    client
        .bridge(&caller, &CommandId::random(), &bridge)
        .await
        .unwrap();
    receiver.wait_for("call.bridged", leg.as_str()).await;
    emulator.hangup(&leg).unwrap();
    assert_eq!(
        receiver.hangup_of(leg.as_str()).await,
        (
            HangupCause::NormalClearing,
            HangupSource::Callee,
            "200".into()
        )
    );
    let snapshot = emulator.call(&caller).unwrap();
    assert_eq!(snapshot.state, LegState::Answered);
    assert_eq!(snapshot.bridged_with, None);
}

#[tokio::test]
async fn bridge_on_answer_bridges_by_itself() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    emulator.script_endpoint("sip:dev@x", EndpointScript::AnswerAfterMs(1));
    let caller = answered_caller(&emulator, &receiver, &client).await;
    let mut req = DialRequest::new("conn", "sip:dev@x", "+15550002000");
    req.link_to = Some(caller.clone());
    req.bridge_on_answer = Some(true);
    let leg = client
        .dial(&CommandId::random(), &req)
        .await
        .unwrap()
        .call_control_id;
    receiver.wait_for("call.bridged", caller.as_str()).await;
    receiver.wait_for("call.bridged", leg.as_str()).await;
    assert_eq!(emulator.call(&leg).unwrap().bridged_with, Some(caller));
}

#[tokio::test]
async fn transfer_dials_a_new_leg_and_bridges_it_on_answer() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    emulator.script_endpoint("+15550003000", EndpointScript::AnswerAfterMs(1));
    let caller = answered_caller(&emulator, &receiver, &client).await;
    client
        .transfer(
            &caller,
            &CommandId::random(),
            &TransferRequest {
                to: "+15550003000".into(),
                from: None,
                timeout_secs: None,
                client_state: None,
            },
        )
        .await
        .unwrap();
    let bridged = receiver
        .wait_n(2, |e| e.event_type() == "call.bridged")
        .await;
    let new_leg = bridged
        .iter()
        .filter_map(|e| e.call().unwrap().call_control_id.clone())
        .find(|c| *c != caller)
        .unwrap();
    receiver.wait_for("call.initiated", new_leg.as_str()).await;
    receiver.wait_for("call.answered", new_leg.as_str()).await;
    let snapshot = emulator.call(&new_leg).unwrap();
    assert_eq!(snapshot.to, "+15550003000");
    assert_eq!(snapshot.bridged_with, Some(caller.clone()));
    assert_eq!(
        snapshot.call_session_id,
        emulator.call(&caller).unwrap().call_session_id
    );
}

#[tokio::test]
async fn duplicate_fault_sends_the_same_event_id_twice() {
    let (emulator, receiver) = emulator_with_receiver().await;
    emulator
        .inject(Faults {
            duplicate_next: Some(1),
            ..Faults::default()
        })
        .unwrap();
    let call = emulator.inbound_call("+15550001000", "+15550002000");
    let copies = receiver
        .wait_n(2, |e| {
            is(e, "call.initiated", call.call_control_id.as_str())
        })
        .await;
    assert_eq!(copies[0].id, copies[1].id);
}

#[tokio::test]
async fn reorder_fault_delivers_a_batch_backwards() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = client(&emulator);
    emulator.script_endpoint("sip:dev@x", EndpointScript::AnswerAfterMs(1));
    let caller = answered_caller(&emulator, &receiver, &client).await;
    let leg = dial(&client, "sip:dev@x", Some(&caller), 600).await;
    receiver.wait_for("call.answered", leg.as_str()).await;
    emulator
        .inject(Faults {
            reorder_next: Some(2),
            delay_ms: Some(1),
            ..Faults::default()
        })
        .unwrap();
    client
        .bridge(
            &caller,
            &CommandId::random(),
            &BridgeRequest::to(leg.clone()),
        )
        .await
        .unwrap();
    let bridged = receiver
        .wait_n(2, |e| e.event_type() == "call.bridged")
        .await;
    // Produced caller first, delivered caller last; occurred_at still tells the truth.
    assert!(is(&bridged[0], "call.bridged", leg.as_str()));
    assert!(is(&bridged[1], "call.bridged", caller.as_str()));
    assert!(bridged[0].occurred_at >= bridged[1].occurred_at);
}

#[tokio::test]
async fn failed_webhook_is_redelivered_with_a_higher_attempt() {
    let (emulator, receiver) = emulator_with_receiver().await;
    receiver.fail_next(1);
    let call = emulator.inbound_call("+15550001000", "+15550002000");
    let event = receiver
        .wait_for("call.initiated", call.call_control_id.as_str())
        .await;
    assert_eq!(event.meta.unwrap().attempt, Some(2));
    assert!(emulator.wait_for_webhooks(common::WAIT).await);
    let attempts: Vec<(u32, Option<u16>)> = emulator
        .webhooks()
        .iter()
        .map(|w| (w.attempt, w.status))
        .collect();
    assert_eq!(attempts, [(1, Some(500)), (2, Some(200))]);
}

#[tokio::test]
async fn webhooks_signed_with_another_key_are_refused_by_the_receiver() {
    // A receiver that trusts a different key from the emulator's.
    let stranger =
        Receiver::start(&ringmaster_telnyx::WebhookSigner::generate().public_key_b64()).await;
    let mut config = ringmaster_telnyx::EmulatorConfig::for_tests(Some(stranger.url.clone()));
    config.webhook_retries = 0;
    let other = ringmaster_telnyx::Emulator::start(config).await.unwrap();
    other.inbound_call("+15550001000", "+15550002000");
    assert!(other.wait_for_webhooks(common::WAIT).await);
    assert_eq!(
        stranger.rejected(),
        [ringmaster_telnyx::SignatureError::BadSignature]
    );
    assert!(stranger.events().is_empty());
}

#[tokio::test]
async fn control_api_over_http() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let http = reqwest::Client::new();
    let ctl = emulator.control_url();

    let key: Value = http
        .get(format!("{ctl}/public_key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(key["public_key"], emulator.public_key_b64());

    let response = http
        .post(format!("{ctl}/endpoints"))
        .json(&json!({"to": "sip:dev@x", "script": {"answer_after_ms": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bad = http
        .post(format!("{ctl}/endpoints"))
        .json(&json!({"to": "sip:dev@x", "script": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    let created: Value = http
        .post(format!("{ctl}/calls"))
        .json(&json!({"from": "+15550001000", "to": "+15550002000"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let caller = created["call_control_id"].as_str().unwrap().to_owned();
    receiver.wait_for("call.initiated", &caller).await;

    // Raw Telnyx-style command with a bearer key.
    let answer = http
        .post(format!(
            "{}/calls/{caller}/actions/answer",
            emulator.base_url()
        ))
        .bearer_auth("any")
        .json(&json!({"command_id": "c1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body, json!({"data": {"result": "ok"}}));
    let unauthenticated = http
        .post(format!(
            "{}/calls/{caller}/actions/answer",
            emulator.base_url()
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    let faults: Value = http
        .post(format!("{ctl}/faults"))
        .json(&json!({"fail_next": {"count": 1, "status": 429, "retry_after": "1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["fail_next"]["count"], 1);
    let limited = http
        .post(format!(
            "{}/calls/{caller}/actions/hangup",
            emulator.base_url()
        ))
        .bearer_auth("any")
        .json(&json!({"command_id": "c2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");

    let hangup = http
        .post(format!("{ctl}/calls/{caller}/hangup"))
        .send()
        .await
        .unwrap();
    assert_eq!(hangup.status(), 200);
    let snapshot: Value = hangup.json().await.unwrap();
    assert_eq!(snapshot["state"], "ended");
    let again = http
        .post(format!("{ctl}/calls/{caller}/hangup"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    let log: Value = http
        .get(format!("{ctl}/log"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = log["entries"].as_array().unwrap();
    let commands: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["kind"] == "command")
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        commands,
        [
            ("answer", "executed"),
            ("answer", "unauthorized"),
            ("hangup", "fault_injected")
        ]
    );
    assert!(entries.iter().any(|e| e["kind"] == "webhook"
        && e["event_type"] == "call.initiated"
        && e["status"] == 200));

    let status: Value = http
        .get(format!("{}/calls/{caller}", emulator.base_url()))
        .bearer_auth("any")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["data"]["is_alive"], false);
}
