//! Translation between Telnyx wire types and the session's inputs and commands: webhooks become
//! [`ProviderEvent`]s, [`Command`]s become Call Control requests whose outcome comes back as an
//! [`Input`].

use ringmaster_core::session::{
    Action, ClientStateRef, Command, CommandError, HangupCause, HangupSource, Input, ProviderEvent,
    ProviderEventKind, RejectCause,
};
use ringmaster_core::CallSessionId;
use ringmaster_telnyx::{
    codes, AnswerRequest, BridgeRequest, ClientState, CommandId, DialRequest, EndOutcome, Event,
    HangupRequest, RecordStartRequest, RecordingChannels, RecordingFormat, RejectRequest,
    SpeakRequest, TelnyxClient, TelnyxError, WebhookEvent,
};
use sha2::{Digest, Sha256};

/// A webhook reduced to what the engine needs to route and handle it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutedEvent {
    /// The session it belongs to: our `client_state` names it, else the Telnyx
    /// `call_session_id` (the inbound caller's leg carries no state until we answer it).
    pub session: CallSessionId,
    /// The input for that session.
    pub event: ProviderEvent,
    /// Set for `call.initiated` of a new inbound PSTN call: it may create a session.
    pub new_inbound: Option<NewInboundCall>,
    /// Set for `call.initiated` of a leg we did not dial whose `from` is a SIP URI, whatever
    /// its `direction`: when the URI is a device's, the device placed the call itself.
    pub new_native: Option<NewInboundCall>,
}

/// The parts of a `call.initiated` we did not dial that start a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInboundCall {
    /// Calling number.
    pub from: String,
    /// Called number (routes to a user).
    pub to: String,
}

/// Why a webhook is acknowledged without being handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// An event type sessions do not act on.
    EventType(String),
    /// A known event without the fields needed to act on it.
    Incomplete(&'static str),
}

impl Ignored {
    /// A short reason for the response body and the log.
    pub fn reason(&self) -> String {
        match self {
            Ignored::EventType(t) => format!("event type {t} is not used"),
            Ignored::Incomplete(what) => format!("event has no {what}"),
        }
    }
}

fn client_state_ref(cs: ClientState) -> ClientStateRef {
    ClientStateRef {
        session: cs.session,
        device: cs.device,
        leg: cs.leg,
        direction: cs.direction,
    }
}

/// Maps a parsed webhook to a session input, or says why it is ignored.
pub fn route(webhook: &WebhookEvent) -> Result<RoutedEvent, Ignored> {
    let (kind, call) = match &webhook.event {
        Event::CallInitiated(p) => (ProviderEventKind::Initiated, &p.call),
        Event::CallAnswered(p) => (ProviderEventKind::Answered, &p.call),
        Event::CallBridged(p) => (ProviderEventKind::Bridged, &p.call),
        Event::CallHangup(p) => (
            ProviderEventKind::Hangup {
                cause: HangupCause::from_wire(p.hangup_cause.as_str()),
                source: HangupSource::from_wire(p.hangup_source.as_str()),
                quality: p
                    .call_quality_stats
                    .as_ref()
                    .and_then(|q| serde_json::to_value(q).ok()),
            },
            &p.call,
        ),
        Event::CallSpeakEnded(p) => (ProviderEventKind::SpeakEnded, &p.call),
        Event::CallRecordingSaved(p) => {
            let url = [
                &p.recording_urls.mp3,
                &p.recording_urls.wav,
                &p.public_recording_urls.mp3,
                &p.public_recording_urls.wav,
            ]
            .into_iter()
            .find_map(|u| u.clone())
            .ok_or(Ignored::Incomplete("recording URL"))?;
            (ProviderEventKind::RecordingSaved { url }, &p.call)
        }
        Event::Unknown {
            event_type,
            payload,
        } if event_type == "call.recording.error" => {
            let call = serde_json::from_value(payload.clone())
                .map_err(|_| Ignored::Incomplete("call fields"))?;
            return Ok(routed(ProviderEventKind::RecordingFailed, &call, None));
        }
        other => return Err(Ignored::EventType(other.event_type().to_owned())),
    };
    let ours = matches!(call.decode_client_state(), Some(Ok(_)));
    let (new_inbound, new_native) = match &webhook.event {
        Event::CallInitiated(p) if !ours => {
            let fresh = || -> Result<NewInboundCall, Ignored> {
                Ok(NewInboundCall {
                    from: call.from.clone().ok_or(Ignored::Incomplete("from"))?,
                    to: call.to.clone().ok_or(Ignored::Incomplete("to"))?,
                })
            };
            let incoming = p.direction == ringmaster_telnyx::webhook::Direction::Incoming;
            let from_sip = call.from.as_deref().is_some_and(is_sip_uri);
            (
                incoming.then(fresh).transpose()?,
                from_sip.then(fresh).transpose()?,
            )
        }
        _ => (None, None),
    };
    let mut routed = routed(kind, call, new_inbound);
    routed.new_native = new_native;
    Ok(routed)
}

/// Whether a webhook's `from` names a SIP endpoint rather than a phone number.
pub fn is_sip_uri(from: &str) -> bool {
    from.starts_with("sip:") || from.starts_with("sips:") || from.contains('@')
}

/// The spellings a device's registered `sip_uri` may have for a webhook's `from`: as given,
/// and with or without the `sip:` scheme (Telnyx and the admin API do not always agree on it).
pub fn sip_uri_forms(from: &str) -> Vec<String> {
    let bare = from
        .strip_prefix("sip:")
        .or_else(|| from.strip_prefix("sips:"))
        .unwrap_or(from);
    let mut forms = vec![from.to_owned()];
    for form in [bare.to_owned(), format!("sip:{bare}")] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

fn routed(
    kind: ProviderEventKind,
    call: &ringmaster_telnyx::webhook::CallRef,
    new_inbound: Option<NewInboundCall>,
) -> RoutedEvent {
    // Another application's client_state is not ours to interpret: route by session id.
    let client_state = match call.decode_client_state() {
        Some(Ok(cs)) => Some(client_state_ref(cs)),
        _ => None,
    };
    let session = client_state
        .as_ref()
        .map(|cs| cs.session.clone())
        .unwrap_or_else(|| call.call_session_id.clone());
    RoutedEvent {
        session,
        event: ProviderEvent {
            call_control_id: call.call_control_id.clone(),
            client_state,
            kind,
        },
        new_inbound,
        new_native: None,
    }
}

/// The `command_id` sent to Telnyx for a session command id (`"{session}:{n}"`): a UUID
/// derived from it, so re-dispatching the same outbox entry sends the same id.
pub fn wire_command_id(command_id: &str) -> CommandId {
    let digest = Sha256::digest(command_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    CommandId::new(
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string(),
    )
}

fn encode_client_state(cs: &ClientStateRef) -> ringmaster_telnyx::EncodedClientState {
    ClientState {
        session: cs.session.clone(),
        device: cs.device.clone(),
        leg: cs.leg.clone(),
        direction: cs.direction,
    }
    .encode()
}

/// A command that did not reach a final answer.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Transient {
    /// What went wrong.
    pub message: String,
    /// The error to report to the session if we stop retrying.
    pub as_final: CommandError,
    /// How long Telnyx asked us to wait before trying again, when it said.
    pub retry_after: Option<std::time::Duration>,
}

/// Whether the dispatcher should keep retrying a command that failed transiently (instead of
/// reporting the failure to the session at once). Only releases are worth it: a leg left up
/// rings a device forever, while a late dial or bridge is worse than a reported failure.
pub fn retry_transient(action: &Action) -> bool {
    ringmaster_engine::retry::retried_until_confirmed(action)
}

fn command_error(err: &TelnyxError) -> CommandError {
    // Telnyx may list several errors; "call already ended" anywhere in the list decides what
    // the session does with the failure, so it wins over whichever error came first.
    let code = if err.has_code(codes::CALL_ALREADY_ENDED) {
        Some(codes::CALL_ALREADY_ENDED)
    } else {
        err.code()
    };
    CommandError {
        code: code.map(str::to_owned),
        message: err.to_string(),
    }
}

fn is_transient(err: &TelnyxError) -> bool {
    match err {
        TelnyxError::Timeout { .. } | TelnyxError::Transport { .. } => true,
        TelnyxError::Api { status, .. } | TelnyxError::Http { status, .. } => {
            *status == 429 || *status >= 500
        }
        TelnyxError::RetryAfterTooLong { .. } => true,
        TelnyxError::Decode(_) | TelnyxError::Config(_) => false,
    }
}

fn finish<T>(
    command_id: &str,
    result: Result<T, TelnyxError>,
) -> Result<Result<T, CommandError>, Transient> {
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(e) if is_transient(&e) => Err(Transient {
            message: e.to_string(),
            as_final: command_error(&e),
            // A 429 says when to come back; the dispatcher waits at least that long.
            retry_after: e.retry_after(),
        }),
        Err(e) => {
            tracing::info!(command_id, error = %e, "telnyx refused command");
            Ok(Err(command_error(&e)))
        }
    }
}

/// The input that reports a final command outcome to its session.
pub fn result_input(command: &Command, outcome: Result<Option<DeviceLeg>, CommandError>) -> Input {
    ringmaster_engine::executor::command_input(
        command,
        outcome.map(|leg| leg.map(|l| l.call_control_id)),
    )
}

/// The leg a dial created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceLeg {
    /// Its call control id.
    pub call_control_id: ringmaster_core::CallControlId,
}

/// Sends one command. `Ok` carries the final outcome (success or a refusal to report to the
/// session); `Err` means no final answer was obtained (network, 5xx, 429: the dispatcher
/// retries).
pub async fn execute(
    client: &TelnyxClient,
    connection_id: &str,
    command: &Command,
) -> Result<Result<Option<DeviceLeg>, CommandError>, Transient> {
    let id = wire_command_id(&command.command_id);
    let cid = command.command_id.as_str();
    match &command.action {
        Action::Dial {
            to,
            from,
            timeout_secs,
            client_state,
            link_to,
            device: _,
        } => {
            let mut req = DialRequest::new(connection_id, to.clone(), from.clone());
            req.timeout_secs = Some(*timeout_secs);
            req.client_state = Some(encode_client_state(client_state));
            req.link_to = link_to.clone();
            let r = finish(cid, client.dial(&id, &req).await)?;
            Ok(r.map(|resp| {
                Some(DeviceLeg {
                    call_control_id: resp.call_control_id,
                })
            }))
        }
        Action::Answer { ccid, client_state } => {
            let req = AnswerRequest {
                client_state: Some(encode_client_state(client_state)),
            };
            Ok(finish(cid, client.answer(ccid, &id, &req).await)?.map(|_| None))
        }
        Action::Bridge { ccid, to_ccid } => {
            let req = BridgeRequest::to(to_ccid.clone());
            Ok(finish(cid, client.bridge(ccid, &id, &req).await)?.map(|_| None))
        }
        Action::Hangup { ccid } => {
            let r = client.hangup(ccid, &id, &HangupRequest::default()).await;
            Ok(finish(cid, r.map(|_: EndOutcome| ()))?.map(|()| None))
        }
        Action::Reject { ccid, cause } => {
            let req = RejectRequest {
                cause: match cause {
                    RejectCause::CallRejected => ringmaster_telnyx::RejectCause::CallRejected,
                    RejectCause::UserBusy => ringmaster_telnyx::RejectCause::UserBusy,
                },
                client_state: None,
            };
            let r = client.reject(ccid, &id, &req).await;
            Ok(finish(cid, r.map(|_: EndOutcome| ()))?.map(|()| None))
        }
        Action::Speak {
            ccid,
            text,
            voice,
            language,
        } => {
            let req = SpeakRequest {
                payload: text.clone(),
                voice: voice.clone(),
                language: Some(language.clone()),
                payload_type: None,
                client_state: None,
            };
            Ok(finish(cid, client.speak(ccid, &id, &req).await)?.map(|_| None))
        }
        Action::RecordStart {
            ccid,
            max_length_secs,
            play_beep,
        } => {
            let req = RecordStartRequest {
                format: RecordingFormat::Wav,
                channels: RecordingChannels::Single,
                play_beep: Some(*play_beep),
                max_length: Some(*max_length_secs),
                client_state: None,
            };
            Ok(finish(cid, client.record_start(ccid, &id, &req).await)?.map(|_| None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmaster_core::DeviceId;

    #[test]
    fn wire_command_ids_are_stable_distinct_uuids() {
        let a = wire_command_id("sess-1:0");
        assert_eq!(a, wire_command_id("sess-1:0"));
        assert_ne!(a, wire_command_id("sess-1:1"));
        assert!(uuid::Uuid::parse_str(a.as_str()).is_ok());
    }

    #[test]
    fn webhooks_route_by_client_state_then_session_id() {
        let cs = ClientState {
            session: CallSessionId::new("ours"),
            device: Some(DeviceId::new("d1")),
            leg: "device".into(),
            direction: None,
        }
        .encode();
        let body = serde_json::json!({"data": {
            "id": "e1", "event_type": "call.answered", "occurred_at": "2026-01-01T00:00:00Z",
            "record_type": "event",
            "payload": {"call_control_id": "v3:x", "call_leg_id": "l", "call_session_id": "telnyx",
                        "client_state": cs.as_str()}}});
        let ev = WebhookEvent::parse(body.to_string().as_bytes()).unwrap();
        let routed = route(&ev).unwrap();
        assert_eq!(routed.session.as_str(), "ours");
        assert_eq!(routed.event.kind, ProviderEventKind::Answered);
        assert_eq!(
            routed.event.client_state.unwrap().device,
            Some(DeviceId::new("d1"))
        );

        let body = serde_json::json!({"data": {
            "id": "e2", "event_type": "call.initiated", "occurred_at": "2026-01-01T00:00:00Z",
            "payload": {"call_control_id": "v3:c", "call_leg_id": "l", "call_session_id": "s9",
                        "client_state": null, "direction": "incoming",
                        "from": "+15551230000", "to": "+15559870000"}}});
        let routed = route(&WebhookEvent::parse(body.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(routed.session.as_str(), "s9");
        assert_eq!(
            routed.new_inbound,
            Some(NewInboundCall {
                from: "+15551230000".into(),
                to: "+15559870000".into()
            })
        );
    }

    fn api_error(codes: &[&str]) -> TelnyxError {
        TelnyxError::Api {
            status: 422,
            errors: codes
                .iter()
                .map(|c| ringmaster_telnyx::ApiError {
                    code: (*c).to_owned(),
                    title: format!("error {c}"),
                    detail: None,
                    source: None,
                    meta: None,
                })
                .collect(),
            attempts: 1,
            retry_after: None,
        }
    }

    #[test]
    fn call_already_ended_is_recognised_anywhere_in_the_error_list() {
        let err = api_error(&["10015", codes::CALL_ALREADY_ENDED]);
        assert_eq!(
            command_error(&err).code.as_deref(),
            Some(ringmaster_core::session::CALL_ENDED_CODE)
        );
        assert_eq!(
            command_error(&api_error(&["10015", "90034"]))
                .code
                .as_deref(),
            Some("10015")
        );
    }

    #[test]
    fn a_too_long_retry_after_is_kept_for_the_dispatcher() {
        let wait = std::time::Duration::from_secs(90);
        let r: Result<(), _> = Err(TelnyxError::RetryAfterTooLong {
            retry_after: wait,
            status: 429,
        });
        let t = finish("s:0", r).unwrap_err();
        assert_eq!(t.retry_after, Some(wait));
        let r: Result<(), _> = Err(TelnyxError::Timeout { attempts: 3 });
        assert_eq!(finish("s:0", r).unwrap_err().retry_after, None);
    }

    #[test]
    fn a_rate_limit_outlasting_the_client_retries_keeps_its_retry_after() {
        let wait = std::time::Duration::from_secs(3);
        let TelnyxError::Api { errors, .. } = api_error(&[codes::TOO_MANY_REQUESTS]) else {
            unreachable!("api_error builds an Api error")
        };
        let r: Result<(), _> = Err(TelnyxError::Api {
            status: 429,
            errors,
            attempts: 4,
            retry_after: Some(wait),
        });
        let t = finish("s:0", r).unwrap_err();
        assert_eq!(t.retry_after, Some(wait));
        assert_eq!(t.as_final.code.as_deref(), Some(codes::TOO_MANY_REQUESTS));
        let cap = crate::dispatch::RELEASE_BACKOFF_CAP;
        assert!(
            crate::dispatch::retry_wait(0, t.retry_after, cap, &mut rand::thread_rng()) >= wait,
            "the dispatcher waits at least as long as Telnyx asked"
        );
    }

    #[test]
    fn unused_event_types_are_ignored() {
        let body = serde_json::json!({"data": {
            "id": "e3", "event_type": "call.dtmf.received", "occurred_at": "2026-01-01T00:00:00Z",
            "payload": {}}});
        let ev = WebhookEvent::parse(body.to_string().as_bytes()).unwrap();
        assert!(matches!(route(&ev), Err(Ignored::EventType(t)) if t == "call.dtmf.received"));
    }
}
