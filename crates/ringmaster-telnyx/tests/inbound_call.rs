//! A whole inbound call through the emulator, driven by the real client, with every webhook's
//! signature verified by the receiver: initiated → answer → dial 3 legs → one answers → bridge
//! → the other legs are cancelled → the caller hangs up → the bridged leg follows.

mod common;

use common::{emulator_with_receiver, is};
use ringmaster_core::{CallControlId, CallSessionId, DeviceId};
use ringmaster_telnyx::emulator::{CommandOutcome, EndpointScript, LegState};
use ringmaster_telnyx::webhook::{Direction, Event, HangupCause, HangupSource};
use ringmaster_telnyx::{
    AnswerRequest, BridgeRequest, ClientConfig, ClientState, CommandId, DialRequest, EndOutcome,
    HangupRequest, RetryPolicy, TelnyxClient,
};
use std::time::Duration;

const DEVICES: [&str; 3] = ["phone", "tablet", "browser"];

fn device_uri(device: &str) -> String {
    format!("sip:{device}@ringmaster.test")
}

#[tokio::test]
async fn inbound_call_rings_three_devices_and_bridges_the_one_that_answers() {
    let (emulator, receiver) = emulator_with_receiver().await;
    let client = TelnyxClient::new(ClientConfig {
        request_timeout: Duration::from_secs(2),
        retry: RetryPolicy::no_retries(),
        ..ClientConfig::new("test-key").with_base_url(emulator.base_url())
    })
    .unwrap();

    // The tablet answers quickly; the phone and the browser ring on.
    emulator.script_endpoint(&device_uri("phone"), EndpointScript::Ring);
    emulator.script_endpoint(&device_uri("tablet"), EndpointScript::AnswerAfterMs(20));
    emulator.script_endpoint(&device_uri("browser"), EndpointScript::Ring);

    // A PSTN caller dials the user's number.
    let inbound = emulator.inbound_call("+15551230000", "+15559870000");
    let caller = inbound.call_control_id.clone();
    let initiated = receiver.wait_for("call.initiated", caller.as_str()).await;
    let Event::CallInitiated(p) = &initiated.event else {
        panic!()
    };
    assert_eq!(p.direction, Direction::Incoming);
    assert_eq!(p.state.as_deref(), Some("parked"));
    assert_eq!(p.call.from.as_deref(), Some("+15551230000"));
    let session: CallSessionId = p.call.call_session_id.clone();
    assert_eq!(session, inbound.call_session_id);

    // Answer the caller, tagging the leg with our client_state.
    let caller_state = ClientState::caller(session.clone());
    client
        .answer(
            &caller,
            &CommandId::new(format!("{session}:1")),
            &AnswerRequest {
                client_state: Some(caller_state.encode()),
            },
        )
        .await
        .unwrap();
    let answered = receiver.wait_for("call.answered", caller.as_str()).await;
    assert_eq!(
        answered.call().unwrap().decode_client_state(),
        Some(Ok(caller_state))
    );

    // Fork: one dialled leg per device, linked to the caller's session.
    let mut legs: Vec<(DeviceId, CallControlId)> = Vec::new();
    for (i, device) in DEVICES.iter().enumerate() {
        let device_id = DeviceId::new(*device);
        let mut dial = DialRequest::new("conn-1", device_uri(device), "+15559870000");
        dial.link_to = Some(caller.clone());
        dial.timeout_secs = Some(600);
        dial.client_state = Some(ClientState::device(session.clone(), device_id.clone()).encode());
        let leg = client
            .dial(&CommandId::new(format!("{session}:dial:{i}")), &dial)
            .await
            .unwrap();
        assert_eq!(leg.call_session_id, session, "link_to joins the session");
        assert!(!leg.is_alive);
        legs.push((device_id, leg.call_control_id));
    }

    // Every dialled leg announces itself with its client_state.
    for (device, ccid) in &legs {
        let initiated = receiver.wait_for("call.initiated", ccid.as_str()).await;
        let Event::CallInitiated(p) = &initiated.event else {
            panic!()
        };
        assert_eq!(p.direction, Direction::Outgoing);
        let state = p.call.decode_client_state().unwrap().unwrap();
        assert_eq!(state.session, session);
        assert_eq!(state.device.as_ref(), Some(device));
        assert_eq!(state.leg, device.as_str());
    }

    // The tablet answers; we learn which device from client_state alone.
    let winner_event = receiver
        .wait_n(1, |e| {
            e.event_type() == "call.answered"
                && legs.iter().any(|(_, c)| is(e, "call.answered", c.as_str()))
        })
        .await
        .remove(0);
    let winner_state = winner_event
        .call()
        .unwrap()
        .decode_client_state()
        .unwrap()
        .unwrap();
    assert_eq!(winner_state.device, Some(DeviceId::new("tablet")));
    let winner = winner_event
        .call()
        .unwrap()
        .call_control_id
        .clone()
        .unwrap();

    // Bridge the caller to the winner and cancel the others.
    client
        .bridge(
            &caller,
            &CommandId::new(format!("{session}:bridge")),
            &BridgeRequest::to(winner.clone()),
        )
        .await
        .unwrap();
    for (i, (_, ccid)) in legs.iter().filter(|(_, c)| *c != winner).enumerate() {
        let outcome = client
            .hangup(
                ccid,
                &CommandId::new(format!("{session}:cancel:{i}")),
                &HangupRequest::default(),
            )
            .await
            .unwrap();
        assert!(matches!(outcome, EndOutcome::Ended(_)));
    }

    receiver.wait_for("call.bridged", caller.as_str()).await;
    receiver.wait_for("call.bridged", winner.as_str()).await;
    for (_, ccid) in legs.iter().filter(|(_, c)| *c != winner) {
        assert_eq!(
            receiver.hangup_of(ccid.as_str()).await,
            (
                HangupCause::OriginatorCancel,
                HangupSource::Caller,
                "487".to_owned()
            )
        );
    }
    assert_eq!(
        emulator.call(&caller).unwrap().bridged_with,
        Some(winner.clone())
    );

    // The caller hangs up; the bridged tablet leg is hung up too.
    emulator.hangup(&caller).unwrap();
    assert_eq!(
        receiver.hangup_of(caller.as_str()).await,
        (
            HangupCause::NormalClearing,
            HangupSource::Caller,
            "200".to_owned()
        )
    );
    let (cause, source, _) = receiver.hangup_of(winner.as_str()).await;
    assert_eq!(
        (cause, source),
        (HangupCause::NormalClearing, HangupSource::Caller)
    );
    let hangup = receiver.wait_for("call.hangup", winner.as_str()).await;
    let Event::CallHangup(h) = hangup.event else {
        panic!()
    };
    assert!(
        h.call_quality_stats.is_some(),
        "answered legs carry quality stats"
    );

    // Everything ended, and the emulator saw exactly the commands we sent, once each.
    for snapshot in emulator.calls() {
        assert_eq!(snapshot.state, LegState::Ended, "{snapshot:?}");
    }
    let commands = emulator.commands();
    let actions: Vec<&str> = commands.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(
        actions,
        ["answer", "dial", "dial", "dial", "bridge", "hangup", "hangup"]
    );
    assert!(commands
        .iter()
        .all(|c| c.outcome == CommandOutcome::Executed));
    assert_eq!(commands[4].body["call_control_id"], winner.as_str());
    assert_eq!(
        commands[4].command_id.as_deref(),
        Some(format!("{session}:bridge").as_str())
    );
    assert!(receiver.rejected().is_empty());

    // One call.hangup per leg, no more.
    let hangups = receiver
        .wait_n(4, |e| e.event_type() == "call.hangup")
        .await;
    assert_eq!(hangups.len(), 4);
}
