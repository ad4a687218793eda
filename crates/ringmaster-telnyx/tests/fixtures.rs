//! Every provider fixture (copied from `shared/telnyx/fixtures/`) parses to the right typed value.

use ringmaster_core::Timestamp;
use ringmaster_telnyx::api_error::{codes, ApiError, ErrorBody};
use ringmaster_telnyx::commands::*;
use ringmaster_telnyx::iso_time::parse_iso;
use ringmaster_telnyx::webhook::*;
use ringmaster_telnyx::ClientStateError;
use serde_json::Value;
use std::collections::BTreeMap;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("fixtures/", $name)).as_slice()
    };
}

const SPEC_CCID: &str = "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg";
const SPEC_ID: &str = "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0";

fn at(iso: &str) -> Timestamp {
    parse_iso(iso).unwrap()
}

fn spec_call() -> CallRef {
    CallRef {
        call_control_id: Some(SPEC_CCID.into()),
        call_leg_id: "428c31b6-7af4-4bcb-b7f5-5013ef9657c1".into(),
        call_session_id: "428c31b6-7af4-4bcb-b7f5-5013ef9657c1".into(),
        connection_id: Some("7267xxxxxxxxxxxxxx".into()),
        client_state: Some(ringmaster_telnyx::EncodedClientState::from_raw(
            "aGF2ZSBhIG5pY2UgZGF5ID1d",
        )),
        from: Some("+35319605860".into()),
        to: Some("+35319605860".into()),
    }
}

fn parse(body: &[u8]) -> WebhookEvent {
    WebhookEvent::parse(body).unwrap_or_else(|e| panic!("{e}"))
}

/// Serialise, parse again, and compare: the emulator sends exactly what we parse.
fn assert_round_trips(event: &WebhookEvent) {
    let again = WebhookEvent::parse(&event.to_bytes()).unwrap();
    assert_eq!(&again, event);
}

#[test]
fn spec_call_initiated() {
    let event = parse(fixture!("webhook-call.initiated.spec.json"));
    assert_eq!(event.id, SPEC_ID);
    assert_eq!(event.occurred_at, at("2018-02-02T22:25:27.521992Z"));
    assert_eq!(event.meta, None);
    let Event::CallInitiated(p) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(p.call, spec_call());
    assert_eq!(p.direction, Direction::Incoming);
    assert_eq!(p.state.as_deref(), Some("parked"));
    assert_round_trips(&event);
}

#[test]
fn spec_call_answered() {
    let event = parse(fixture!("webhook-call.answered.spec.json"));
    let Event::CallAnswered(p) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(p.call, spec_call());
    assert_eq!(p.state.as_deref(), Some("answered"));
    assert_eq!(p.start_time.as_deref(), Some("2018-02-02T22:25:27.521992Z"));
    assert_round_trips(&event);
}

#[test]
fn spec_call_bridged() {
    let event = parse(fixture!("webhook-call.bridged.spec.json"));
    assert_eq!(
        event.event,
        Event::CallBridged(CallBridged {
            call: spec_call(),
            state: None
        })
    );
    assert_round_trips(&event);
}

#[test]
fn spec_call_hangup_with_quality_stats() {
    let event = parse(fixture!("webhook-call.hangup.spec.json"));
    let Event::CallHangup(p) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(p.call, spec_call());
    assert_eq!(p.hangup_cause, HangupCause::CallRejected);
    assert_eq!(p.hangup_source, HangupSource::Caller);
    assert_eq!(p.sip_hangup_cause.as_deref(), Some("603"));
    assert_eq!(p.start_time.as_deref(), Some("2018-02-02T22:20:27.521992Z"));
    let stats = p.call_quality_stats.as_ref().unwrap();
    assert_eq!(
        stats.inbound,
        Some(InboundQuality {
            jitter_max_variance: Some(2.74),
            jitter_packet_count: Some(0),
            mos: Some(4.5),
            packet_count: Some(591),
            skip_packet_count: Some(9),
        })
    );
    assert_eq!(
        stats.outbound,
        Some(OutboundQuality {
            packet_count: Some(0),
            skip_packet_count: Some(0)
        })
    );
    assert_round_trips(&event);
}

#[test]
fn every_hangup_cause_is_typed_and_unknown_ones_are_unspecified() {
    let template = std::str::from_utf8(fixture!("webhook-call.hangup.spec.json")).unwrap();
    let cases = [
        ("call_rejected", HangupCause::CallRejected),
        ("normal_clearing", HangupCause::NormalClearing),
        ("originator_cancel", HangupCause::OriginatorCancel),
        ("timeout", HangupCause::Timeout),
        ("time_limit", HangupCause::TimeLimit),
        ("user_busy", HangupCause::UserBusy),
        ("not_found", HangupCause::NotFound),
        ("no_answer", HangupCause::NoAnswer),
        ("unspecified", HangupCause::Unspecified),
        ("something_new_in_2027", HangupCause::Unspecified),
    ];
    for (wire, expected) in cases {
        let body = template.replace(
            "\"hangup_cause\": \"call_rejected\"",
            &format!("\"hangup_cause\": \"{wire}\""),
        );
        let Event::CallHangup(p) = parse(body.as_bytes()).event else {
            panic!("not a hangup")
        };
        assert_eq!(p.hangup_cause, expected, "{wire}");
    }
}

#[test]
fn spec_recording_saved_without_call_control_id() {
    let event = parse(fixture!("webhook-call.recording.saved.spec.json"));
    let Event::CallRecordingSaved(p) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(p.call.call_control_id, None);
    assert_eq!(p.channels.as_deref(), Some("single"));
    assert_eq!(
        p.recording_urls,
        RecordingUrls {
            mp3: Some("http://example.com/recording.mp3".into()),
            wav: Some("http://example.com/recording.wav".into()),
        }
    );
    assert_eq!(p.public_recording_urls, p.recording_urls);
    assert_round_trips(&event);
}

#[test]
fn spec_machine_detection_ended() {
    let event = parse(fixture!("webhook-call.machine.detection.ended.spec.json"));
    let Event::CallMachineDetectionEnded(p) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(p.result, MachineDetectionResult::Human);
    assert_eq!(p.call.call_control_id, None);
    assert_eq!(
        p.call.call_session_id.as_str(),
        "428c31b6-7af4-4bcb-b7f5-5013ef9657c1"
    );
    assert_round_trips(&event);
}

#[test]
fn docs_initiated_with_meta() {
    for body in [
        fixture!("docs-call.initiated-with-meta.json"),
        fixture!("docs-call.initiated-with-meta.webhook-fundamentals.json"),
    ] {
        let event = parse(body);
        assert_eq!(event.meta.as_ref().unwrap().attempt, Some(1));
        let Event::CallInitiated(p) = &event.event else {
            panic!("{event:?}")
        };
        assert_eq!(
            p.call.call_control_id.as_ref().unwrap().as_str(),
            "d14dbcee-880b-11eb-8204-02420a0f7568"
        );
        assert_eq!(p.direction, Direction::Incoming);
        // "have a nice day =]": someone else's client_state is kept, and decodes to a typed error.
        assert!(matches!(
            p.call.decode_client_state(),
            Some(Err(ClientStateError::Json(_)))
        ));
        assert_round_trips(&event);
    }
    // The non-E.164 caller of the webhook-fundamentals page is accepted as is.
    let event = parse(fixture!(
        "docs-call.initiated-with-meta.webhook-fundamentals.json"
    ));
    assert_eq!(
        event.call().unwrap().from.as_deref(),
        Some("+1-202-555-0133")
    );
    assert_eq!(
        event.meta.unwrap().delivered_to.as_deref(),
        Some("http://example.com/webhooks")
    );
}

#[test]
fn logged_outbound_sequence_parses_with_real_extra_fields() {
    let initiated =
        WebhookEvent::parse_logged(fixture!("docs-outbound-sequence-1-call.initiated.json"))
            .unwrap();
    let answered =
        WebhookEvent::parse_logged(fixture!("docs-outbound-sequence-2-call.answered.json"))
            .unwrap();
    let hangup =
        WebhookEvent::parse_logged(fixture!("docs-outbound-sequence-3-call.hangup.json")).unwrap();

    assert_eq!(initiated.id, "52c959b6-f6a0-4ccc-ad1f-b76fba2efc6d");
    assert_eq!(initiated.occurred_at, at("2025-09-02T09:17:43.976123Z"));
    let Event::CallInitiated(p) = &initiated.event else {
        panic!()
    };
    assert_eq!(p.direction, Direction::Outgoing);
    assert_eq!(p.state.as_deref(), Some("bridging"));
    assert_eq!(p.tags, Some(vec!["single".to_owned(), "dual".to_owned()]));
    assert_eq!(p.call.client_state, None);

    assert!(matches!(answered.event, Event::CallAnswered(_)));
    assert!(initiated.occurred_at < answered.occurred_at);
    assert!(answered.occurred_at < hangup.occurred_at);

    let Event::CallHangup(h) = &hangup.event else {
        panic!()
    };
    assert_eq!(h.hangup_cause, HangupCause::NormalClearing);
    assert_eq!(h.hangup_source, HangupSource::Callee);
    assert_eq!(h.sip_hangup_cause.as_deref(), Some("200"));
    assert_eq!(h.end_time.as_deref(), Some("2025-09-02T09:18:06.396120Z"));
    let inbound = h
        .call_quality_stats
        .as_ref()
        .unwrap()
        .inbound
        .as_ref()
        .unwrap();
    assert_eq!(inbound.jitter_max_variance, Some(63.77));
    assert_eq!(inbound.packet_count, Some(329));
    // All three legs are one call.
    for e in [&initiated, &answered, &hangup] {
        assert_eq!(
            e.call().unwrap().call_session_id.as_str(),
            "aeb5639a-87dd-11f0-af54-02420a1f0b69"
        );
        assert_round_trips(e);
    }
    // The log form is not a webhook body: the endpoint parser refuses it.
    assert_eq!(
        WebhookEvent::parse(fixture!("docs-outbound-sequence-1-call.initiated.json")),
        Err(WebhookError::MissingEnvelope)
    );
}

#[test]
fn logged_2022_recording_saved() {
    let event = WebhookEvent::parse_logged(fixture!("docs-recording_saved-2022.json")).unwrap();
    assert_eq!(event.id, "a6854826-41ae-4781-b299-415a760663a0");
    let Event::CallRecordingSaved(p) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(
        p.recording_id.as_deref(),
        Some("10cd86ac-fef8-4765-b203-0f7511f9fc75")
    );
    assert_eq!(p.format.as_deref(), Some("wav"));
    assert!(p
        .recording_urls
        .wav
        .as_deref()
        .unwrap()
        .contains("X-Amz-Expires=600"));
    assert_eq!(p.recording_urls.mp3, None);
    assert_eq!(p.public_recording_urls, RecordingUrls::default());
    assert_round_trips(&event);
}

#[test]
fn delivery_record_form_parses_its_inner_event() {
    let body = fixture!("docs-call.answered-delivery-record.webhook-fundamentals.json");
    let event = WebhookEvent::parse_logged(body).unwrap();
    let Event::CallAnswered(p) = &event.event else {
        panic!("{event:?}")
    };
    assert_eq!(
        p.call.call_control_id.as_ref().unwrap().as_str(),
        "v2:F5_vIJVqrosogeY_2L_JhCEHd2Dh-x4xz7tROTbh34tg6Zsk4JJc-w"
    );
    assert_eq!(p.call.from.as_deref(), Some("+8005550199"));
    assert_eq!(
        WebhookEvent::parse(body),
        Err(WebhookError::MissingEnvelope)
    );
}

#[test]
fn legacy_v1_is_rejected_with_a_specific_error() {
    let body = fixture!("legacy-v1-call_initiated.telnyx-python-test.json");
    let expected = WebhookError::LegacyV1 {
        event_type: "call_initiated".into(),
    };
    assert_eq!(WebhookEvent::parse(body), Err(expected.clone()));
    assert_eq!(WebhookEvent::parse_logged(body), Err(expected.clone()));
    assert!(expected.to_string().contains("webhook_api_version"));
}

#[test]
fn unknown_event_types_are_kept_raw() {
    let body = br#"{"data":{"event_type":"call.dtmf.received","id":"e1","occurred_at":"2024-01-01T00:00:00Z","payload":{"digit":"5","call_leg_id":"l","call_session_id":"s"},"record_type":"event"}}"#;
    let event = parse(body);
    let Event::Unknown {
        event_type,
        payload,
    } = &event.event
    else {
        panic!("{event:?}")
    };
    assert_eq!(event_type, "call.dtmf.received");
    assert_eq!(payload["digit"], "5");
    assert_eq!(event.call(), None);
    assert_round_trips(&event);
}

#[test]
fn unknown_fields_are_ignored() {
    let body = br#"{"data":{"event_type":"call.hold","id":"e2","occurred_at":"2024-01-01T00:00:00Z","payload":{"call_leg_id":"l","call_session_id":"s","brand_new":{"x":1}},"record_type":"event","extra":true},"meta":{"attempt":3,"future":1}}"#;
    let event = parse(body);
    assert!(matches!(event.event, Event::CallHold(_)));
    assert_eq!(event.meta.unwrap().attempt, Some(3));
}

#[test]
fn round_trip_covers_every_typed_event() {
    let call = CallRef {
        call_control_id: Some("v3:x".into()),
        call_leg_id: "leg".into(),
        call_session_id: "sess".into(),
        connection_id: Some("conn".into()),
        client_state: None,
        from: Some("+15550001111".into()),
        to: Some("sip:alice@example.com".into()),
    };
    let payload = CallPayload { call: call.clone() };
    let events = vec![
        Event::CallHold(payload.clone()),
        Event::CallUnhold(payload.clone()),
        Event::CallSpeakStarted(payload),
        Event::CallSpeakEnded(CallSpeakEnded {
            call: call.clone(),
            status: Some("completed".into()),
        }),
        Event::CallPlaybackStarted(CallPlayback {
            call: call.clone(),
            media_url: Some("http://x/a.wav".into()),
        }),
        Event::CallPlaybackEnded(CallPlaybackEnded {
            call: call.clone(),
            media_url: Some("http://x/a.wav".into()),
            status: Some("call_hangup".into()),
        }),
        Event::CallHangup(CallHangup {
            call: call.clone(),
            hangup_cause: HangupCause::NoAnswer,
            hangup_source: HangupSource::Unknown,
            sip_hangup_cause: Some("unspecified".into()),
            state: Some("hangup".into()),
            start_time: None,
            end_time: None,
            call_quality_stats: None,
            tags: None,
        }),
        Event::CallMachineDetectionEnded(CallMachineDetectionEnded {
            call,
            result: MachineDetectionResult::NotSure,
        }),
    ];
    let mut seen = BTreeMap::new();
    for (i, event) in events.into_iter().enumerate() {
        let webhook = WebhookEvent {
            id: format!("id-{i}"),
            occurred_at: Timestamp::from_millis(1_700_000_000_123),
            meta: Some(WebhookMeta {
                attempt: Some(1),
                delivered_to: Some("http://h/".into()),
            }),
            event,
        };
        let json: Value = serde_json::from_slice(&webhook.to_bytes()).unwrap();
        assert_eq!(json["data"]["record_type"], "event");
        assert_eq!(json["data"]["occurred_at"], "2023-11-14T22:13:20.123000Z");
        // Telnyx sends `client_state: null` rather than leaving it out.
        assert_eq!(json["data"]["payload"]["client_state"], Value::Null);
        assert_round_trips(&webhook);
        seen.insert(webhook.event_type().to_owned(), ());
    }
    assert_eq!(seen.len(), 8);
}

#[test]
fn rest_request_fixtures_deserialize_into_command_types() {
    let dial: DialRequest =
        serde_json::from_slice(fixture!("rest-dial-request.spec.json")).unwrap();
    assert_eq!(dial.connection_id, "7267xxxxxxxxxxxxxx");
    assert_eq!(dial.timeout_secs, Some(60));
    assert_eq!(dial.bridge_on_answer, Some(true));
    assert_eq!(
        dial.link_to.unwrap().as_str(),
        "ilditnZK_eVysupV21KzmzN_sM29ygfauQojpm4BgFtfX5hXAcjotg=="
    );
    assert_eq!(dial.custom_headers.unwrap().len(), 2);

    let bridge: BridgeRequest =
        serde_json::from_slice(fixture!("rest-bridge-request.spec.json")).unwrap();
    assert_eq!(bridge.call_control_id.as_str(), SPEC_CCID);
    assert_eq!(bridge.park_after_unbridge.as_deref(), Some("self"));

    let hangup: HangupRequest =
        serde_json::from_slice(fixture!("rest-hangup-request.spec.json")).unwrap();
    assert!(hangup.client_state.unwrap().is_valid_base64());

    let reject: RejectRequest =
        serde_json::from_slice(fixture!("rest-reject-request.spec.json")).unwrap();
    assert_eq!(reject.cause, RejectCause::UserBusy);

    let record: RecordStartRequest =
        serde_json::from_slice(fixture!("rest-record-start-request.spec.json")).unwrap();
    assert_eq!(record.format, RecordingFormat::Wav);
    assert_eq!(record.channels, RecordingChannels::Single);
    assert_eq!(record.play_beep, Some(true));
}

#[test]
fn rest_response_fixtures_deserialize() {
    let dial: DataEnvelope<DialResponse> =
        serde_json::from_slice(fixture!("rest-dial-response.spec.json")).unwrap();
    assert_eq!(dial.data.call_control_id.as_str(), SPEC_CCID);
    assert_eq!(
        dial.data.call_session_id.as_str(),
        "2dc1b3c8-f9e0-11ea-bc5a-02420a0f7768"
    );
    assert!(!dial.data.is_alive);

    let status: DataEnvelope<DialResponse> =
        serde_json::from_slice(fixture!("rest-call-status-response.spec.json")).unwrap();
    assert_eq!(status.data.record_type, "call");

    let ok: DataEnvelope<CommandResult> =
        serde_json::from_slice(fixture!("rest-command-result.spec.json")).unwrap();
    assert_eq!(ok.data.result, "ok");
}

#[test]
fn error_fixtures_parse() {
    let ended: ErrorBody =
        serde_json::from_slice(fixture!("real-error-90018-call-already-ended.json")).unwrap();
    assert_eq!(ended.errors[0].code, codes::CALL_ALREADY_ENDED);

    let invalid: Vec<ApiError> =
        serde_json::from_slice(fixture!("real-error-90015-invalid-call-control-id.json")).unwrap();
    assert_eq!(invalid[0].code, codes::INVALID_CALL_CONTROL_ID);
    assert_eq!(
        invalid[0].source.as_ref().unwrap().pointer.as_deref(),
        Some("/call_control_id")
    );

    let all: BTreeMap<String, BTreeMap<String, ErrorBody>> =
        serde_json::from_slice(fixture!("rest-errors.spec-examples.json")).unwrap();
    let count: usize = all.values().map(|group| group.len()).sum();
    assert_eq!(count, 23);
    let meta = &all["BadRequestResponse"]["character_encoding_error"].errors[0];
    assert_eq!(meta.code, "10028");
    assert!(meta.meta.is_some());
    for group in all.values() {
        for body in group.values() {
            assert!(body.errors[0].code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
