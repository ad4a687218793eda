//! The emulated Telnyx world: calls, legs and sessions. Every method takes the current time and
//! returns effects (webhooks to send, timers to arm); the driver in `mod.rs` performs them.

use super::{CallSnapshot, ControlError, EndpointScript, InboundCall, LegState, RemoteRejectCause};
use crate::api_error::{codes, ApiError};
use crate::client_state::EncodedClientState;
use crate::commands::{
    AnswerRequest, BridgeRequest, CommandResult, DialRequest, DialResponse, HangupRequest,
    PlaybackStartRequest, RecordStartRequest, RecordingChannels, RecordingFormat, RejectCause,
    RejectRequest, SpeakRequest, TransferRequest,
};
use crate::iso_time::format_iso;
use crate::webhook::{
    CallAnswered, CallBridged, CallHangup, CallInitiated, CallPayload, CallPlayback,
    CallPlaybackEnded, CallQualityStats, CallRecordingSaved, CallRef, CallSpeakEnded, Direction,
    Event, HangupCause, HangupSource, InboundQuality, OutboundQuality, RecordingUrls, WebhookEvent,
};
use ringmaster_core::{CallControlId, CallLegId, CallSessionId, Timestamp};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// How long a `command_id` is remembered, as documented by Telnyx.
pub(crate) const DEDUPE_WINDOW: Duration = Duration::from_secs(60);
/// Telnyx's default `timeout_secs` for dial.
const DEFAULT_TIMEOUT_SECS: u32 = 30;

/// Something the driver must do.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Send a signed webhook; `url` overrides the configured webhook URL.
    Webhook {
        event: Box<WebhookEvent>,
        url: Option<String>,
    },
    /// Call [`World::fire`] with `timer` after `after`.
    Timer { after: Duration, timer: Timer },
}

/// A scheduled happening; each checks the leg's state when it fires, so stale timers are no-ops.
#[derive(Debug, Clone)]
pub(crate) enum Timer {
    RingTimeout(String),
    ScriptAnswer(String),
    ScriptReject(String),
    MediaEnded { ccid: String, media: u64 },
}

/// An API error with its HTTP status.
#[derive(Debug, Clone)]
pub(crate) struct ApiFailure {
    pub status: u16,
    pub error: Box<ApiError>,
}

impl ApiFailure {
    fn unprocessable(error: ApiError) -> Self {
        Self {
            status: 422,
            error: Box::new(error),
        }
    }

    fn pointing_at(self, pointer: &str) -> Self {
        Self {
            status: self.status,
            error: Box::new((*self.error).with_pointer(pointer)),
        }
    }
}

/// Static settings of the world.
#[derive(Debug, Clone)]
pub(crate) struct WorldConfig {
    pub connection_id: String,
    pub telnyx_second: Duration,
    pub media_duration: Duration,
    pub recording_base_url: String,
}

#[derive(Debug, Clone)]
struct Recording {
    id: String,
    format: RecordingFormat,
    channels: RecordingChannels,
    started_at: Timestamp,
}

#[derive(Debug, Clone)]
enum MediaKind {
    Speak,
    Playback { url: String },
}

#[derive(Debug, Clone)]
struct Media {
    id: u64,
    kind: MediaKind,
}

#[derive(Debug, Clone)]
struct Leg {
    ccid: String,
    leg_id: String,
    session: String,
    direction: Direction,
    from: String,
    to: String,
    connection_id: String,
    client_state: Option<EncodedClientState>,
    webhook_url: Option<String>,
    state: LegState,
    bridged_with: Option<String>,
    park_after_unbridge: bool,
    /// Bridge to this leg on answer (dial `bridge_on_answer`, or transfer).
    bridge_on_answer_to: Option<String>,
    prevent_double_bridge: bool,
    started_at: Timestamp,
    answered_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
    hangup_cause: Option<HangupCause>,
    recording: Option<Recording>,
    media: Option<Media>,
}

struct StoredResult {
    at: Timestamp,
    status: u16,
    body: Value,
}

/// All emulated state.
pub(crate) struct World {
    config: WorldConfig,
    legs: HashMap<String, Leg>,
    order: Vec<String>,
    scripts: HashMap<String, EndpointScript>,
    dedupe: HashMap<(String, String), StoredResult>,
    /// `dedupe`'s keys, oldest first, so the expired ones go without a scan of every result.
    dedupe_order: VecDeque<(Timestamp, (String, String))>,
    recordings: HashMap<String, Duration>,
    next_media: u64,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn is_dialable(number: &str) -> bool {
    if let Some(rest) = number.strip_prefix("sip:") {
        return rest.contains('@') || !rest.is_empty();
    }
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn app_side_source(leg: &Leg) -> HangupSource {
    // For an inbound call the application is the callee; for a dialled leg, the caller.
    if leg.direction == Direction::Incoming {
        HangupSource::Callee
    } else {
        HangupSource::Caller
    }
}

fn remote_side_source(leg: &Leg) -> HangupSource {
    if leg.direction == Direction::Incoming {
        HangupSource::Caller
    } else {
        HangupSource::Callee
    }
}

impl World {
    pub(crate) fn new(config: WorldConfig) -> Self {
        Self {
            config,
            legs: HashMap::new(),
            order: Vec::new(),
            scripts: HashMap::new(),
            dedupe: HashMap::new(),
            dedupe_order: VecDeque::new(),
            recordings: HashMap::new(),
            next_media: 0,
        }
    }

    /// A stored result for a repeated `command_id` within the window.
    pub(crate) fn deduplicated(
        &mut self,
        scope: &str,
        command_id: &str,
        now: Timestamp,
    ) -> Option<(u16, Value)> {
        while let Some((at, _)) = self.dedupe_order.front() {
            if now.saturating_since(*at) < DEDUPE_WINDOW {
                break;
            }
            if let Some((at, key)) = self.dedupe_order.pop_front() {
                // A key remembered again since is kept until its newer result expires.
                if self.dedupe.get(&key).is_some_and(|s| s.at == at) {
                    self.dedupe.remove(&key);
                }
            }
        }
        self.dedupe
            .get(&(scope.to_owned(), command_id.to_owned()))
            .map(|s| (s.status, s.body.clone()))
    }

    /// Remembers the result of a command for dedupe.
    pub(crate) fn remember(
        &mut self,
        scope: &str,
        command_id: &str,
        now: Timestamp,
        status: u16,
        body: Value,
    ) {
        let key = (scope.to_owned(), command_id.to_owned());
        self.dedupe_order.push_back((now, key.clone()));
        self.dedupe.insert(
            key,
            StoredResult {
                at: now,
                status,
                body,
            },
        );
    }

    pub(crate) fn set_script(&mut self, to: String, script: EndpointScript) {
        self.scripts.insert(to, script);
    }

    pub(crate) fn snapshot(&self, ccid: &str) -> Option<CallSnapshot> {
        self.legs.get(ccid).map(|leg| CallSnapshot {
            call_control_id: CallControlId::new(leg.ccid.clone()),
            call_leg_id: CallLegId::new(leg.leg_id.clone()),
            call_session_id: CallSessionId::new(leg.session.clone()),
            direction: leg.direction.as_str().to_owned(),
            from: leg.from.clone(),
            to: leg.to.clone(),
            state: leg.state,
            bridged_with: leg.bridged_with.clone().map(CallControlId::new),
            client_state: leg.client_state.clone(),
            hangup_cause: leg.hangup_cause.map(|c| c.as_str().to_owned()),
            recording: leg.recording.is_some(),
        })
    }

    pub(crate) fn snapshots(&self) -> Vec<CallSnapshot> {
        self.order.iter().filter_map(|c| self.snapshot(c)).collect()
    }

    pub(crate) fn recording_length(&self, id: &str) -> Option<Duration> {
        self.recordings.get(id).copied()
    }

    fn call_ref(leg: &Leg) -> CallRef {
        CallRef {
            call_control_id: Some(CallControlId::new(leg.ccid.clone())),
            call_leg_id: CallLegId::new(leg.leg_id.clone()),
            call_session_id: CallSessionId::new(leg.session.clone()),
            connection_id: Some(leg.connection_id.clone()),
            client_state: leg.client_state.clone(),
            from: Some(leg.from.clone()),
            to: Some(leg.to.clone()),
        }
    }

    fn webhook(leg: &Leg, now: Timestamp, event: Event) -> Effect {
        Effect::Webhook {
            event: Box::new(WebhookEvent {
                id: new_id(),
                occurred_at: now,
                meta: None,
                event,
            }),
            url: leg.webhook_url.clone(),
        }
    }

    fn live(&self, ccid: &str) -> Result<&Leg, ApiFailure> {
        match self.legs.get(ccid) {
            None => Err(ApiFailure::unprocessable(
                ApiError::new(
                    codes::INVALID_CALL_CONTROL_ID,
                    "Invalid Call Control ID",
                    "The call_control_id provided was not valid.",
                )
                .with_pointer("/call_control_id"),
            )),
            Some(leg) if leg.state == LegState::Ended => {
                Err(ApiFailure::unprocessable(ApiError::new(
                    codes::CALL_ALREADY_ENDED,
                    "Call has already ended",
                    "This call is no longer active and can't receive commands.",
                )))
            }
            Some(leg) => Ok(leg),
        }
    }

    fn leg_mut(&mut self, ccid: &str) -> &mut Leg {
        // Callers check existence with `live` first; a missing leg here is a bug in this module.
        self.legs
            .get_mut(ccid)
            .unwrap_or_else(|| unreachable!("leg {ccid} checked before use"))
    }

    fn set_client_state(
        &mut self,
        ccid: &str,
        client_state: Option<EncodedClientState>,
    ) -> Result<(), ApiFailure> {
        if let Some(cs) = client_state {
            if !cs.is_valid_base64() {
                return Err(ApiFailure::unprocessable(
                    ApiError::new(
                        codes::BAD_REQUEST,
                        "Invalid client_state",
                        "client_state must be valid base64.",
                    )
                    .with_pointer("/client_state"),
                ));
            }
            self.leg_mut(ccid).client_state = Some(cs);
        }
        Ok(())
    }

    fn insert_leg(&mut self, leg: Leg) {
        self.order.push(leg.ccid.clone());
        self.legs.insert(leg.ccid.clone(), leg);
    }

    #[allow(clippy::too_many_arguments)]
    fn new_leg(
        &self,
        direction: Direction,
        session: String,
        from: String,
        to: String,
        connection_id: String,
        client_state: Option<EncodedClientState>,
        now: Timestamp,
    ) -> Leg {
        Leg {
            ccid: format!("v3:{}", uuid::Uuid::new_v4().simple()),
            leg_id: new_id(),
            session,
            state: if direction == Direction::Incoming {
                LegState::Parked
            } else {
                LegState::Ringing
            },
            direction,
            from,
            to,
            connection_id,
            client_state,
            webhook_url: None,
            bridged_with: None,
            park_after_unbridge: false,
            bridge_on_answer_to: None,
            prevent_double_bridge: false,
            started_at: now,
            answered_at: None,
            ended_at: None,
            hangup_cause: None,
            recording: None,
            media: None,
        }
    }

    fn initiated(leg: &Leg, now: Timestamp) -> Effect {
        let incoming = leg.direction == Direction::Incoming;
        Self::webhook(
            leg,
            now,
            Event::CallInitiated(CallInitiated {
                call: Self::call_ref(leg),
                direction: leg.direction,
                state: Some(if incoming { "parked" } else { "bridging" }.to_owned()),
                start_time: Some(format_iso(leg.started_at)),
                caller_id_name: None,
                custom_headers: None,
                tags: None,
            }),
        )
    }

    /// A PSTN call arrives at `to`.
    pub(crate) fn inbound_call(
        &mut self,
        from: String,
        to: String,
        connection_id: Option<String>,
        now: Timestamp,
    ) -> (InboundCall, Vec<Effect>) {
        let connection_id = connection_id.unwrap_or_else(|| self.config.connection_id.clone());
        let leg = self.new_leg(
            Direction::Incoming,
            new_id(),
            from,
            to,
            connection_id,
            None,
            now,
        );
        let effects = vec![Self::initiated(&leg, now)];
        let call = InboundCall {
            call_control_id: CallControlId::new(leg.ccid.clone()),
            call_leg_id: CallLegId::new(leg.leg_id.clone()),
            call_session_id: CallSessionId::new(leg.session.clone()),
        };
        self.insert_leg(leg);
        (call, effects)
    }

    /// `POST /v2/calls`.
    pub(crate) fn dial(
        &mut self,
        req: DialRequest,
        now: Timestamp,
    ) -> Result<(DialResponse, Vec<Effect>), ApiFailure> {
        for (field, value) in [
            ("connection_id", &req.connection_id),
            ("to", &req.to),
            ("from", &req.from),
        ] {
            if value.trim().is_empty() {
                return Err(missing(field));
            }
        }
        for (field, value) in [("to", &req.to), ("from", &req.from)] {
            if !is_dialable(value) {
                return Err(ApiFailure::unprocessable(
                    ApiError::new(
                        codes::NOT_E164,
                        "Phone number must be in +E164 format",
                        format!("The '{field}' parameter must be in E164 format or a SIP URI."),
                    )
                    .with_pointer(&format!("/{field}")),
                ));
            }
        }
        let timeout_secs = req.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if !(5..=600).contains(&timeout_secs) {
            return Err(ApiFailure::unprocessable(
                ApiError::new(
                    codes::OUT_OF_RANGE,
                    "Value outside of range",
                    "The value is outside of allowed range 5 to 600",
                )
                .with_pointer("/timeout_secs"),
            ));
        }
        if let Some(cs) = &req.client_state {
            if !cs.is_valid_base64() {
                return Err(ApiFailure::unprocessable(
                    ApiError::new(
                        codes::BAD_REQUEST,
                        "Invalid client_state",
                        "client_state must be valid base64.",
                    )
                    .with_pointer("/client_state"),
                ));
            }
        }
        let (session, from) = match &req.link_to {
            Some(link) => {
                let linked = self
                    .live(link.as_str())
                    .map_err(|f| f.pointing_at("/link_to"))?;
                let from = if req.bridge_intent == Some(true) {
                    linked.from.clone()
                } else {
                    req.from.clone()
                };
                (linked.session.clone(), from)
            }
            None => (new_id(), req.from.clone()),
        };
        let mut leg = self.new_leg(
            Direction::Outgoing,
            session,
            from,
            req.to.clone(),
            req.connection_id.clone(),
            req.client_state.clone(),
            now,
        );
        leg.webhook_url = req.webhook_url.clone();
        leg.park_after_unbridge = req.park_after_unbridge.as_deref() == Some("self");
        leg.prevent_double_bridge = req.prevent_double_bridge == Some(true);
        if req.bridge_on_answer == Some(true) {
            leg.bridge_on_answer_to = req.link_to.as_ref().map(|l| l.as_str().to_owned());
        }
        let response = DialResponse {
            call_control_id: CallControlId::new(leg.ccid.clone()),
            call_leg_id: CallLegId::new(leg.leg_id.clone()),
            call_session_id: CallSessionId::new(leg.session.clone()),
            is_alive: false,
            record_type: "call".to_owned(),
            client_state: leg.client_state.clone(),
        };
        let ccid = leg.ccid.clone();
        let mut effects = vec![Self::initiated(&leg, now)];
        self.insert_leg(leg);
        self.start_ringing(&ccid, timeout_secs, now, &mut effects);
        Ok((response, effects))
    }

    /// Applies the endpoint script of a freshly dialled leg.
    fn start_ringing(
        &mut self,
        ccid: &str,
        timeout_secs: u32,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let to = self.leg_mut(ccid).to.clone();
        let script = self
            .scripts
            .get(&to)
            .cloned()
            .unwrap_or(EndpointScript::Ring);
        let ring_timeout = Effect::Timer {
            after: self.config.telnyx_second.saturating_mul(timeout_secs),
            timer: Timer::RingTimeout(ccid.to_owned()),
        };
        match script {
            EndpointScript::Ring => effects.push(ring_timeout),
            EndpointScript::AnswerAfterMs(ms) => {
                effects.push(ring_timeout);
                effects.push(Effect::Timer {
                    after: Duration::from_millis(ms),
                    timer: Timer::ScriptAnswer(ccid.to_owned()),
                });
            }
            EndpointScript::RejectAfterMs(ms) => {
                effects.push(ring_timeout);
                effects.push(Effect::Timer {
                    after: Duration::from_millis(ms),
                    timer: Timer::ScriptReject(ccid.to_owned()),
                });
            }
            EndpointScript::Busy => self.end_leg(
                ccid,
                HangupCause::UserBusy,
                HangupSource::Callee,
                "486",
                now,
                effects,
            ),
            EndpointScript::Unreachable => self.end_leg(
                ccid,
                HangupCause::NotFound,
                HangupSource::Callee,
                "404",
                now,
                effects,
            ),
        }
    }

    /// Dispatches `POST /v2/calls/{ccid}/actions/{action}`; the body is already JSON.
    pub(crate) fn action(
        &mut self,
        ccid: &str,
        action: &str,
        body: Value,
        now: Timestamp,
    ) -> Result<(CommandResult, Vec<Effect>), ApiFailure> {
        self.live(ccid)?;
        let mut effects = Vec::new();
        let recording_id = match action {
            "answer" => {
                let req: AnswerRequest = typed(body)?;
                self.answer(ccid, req, now, &mut effects)?;
                None
            }
            "bridge" => {
                let req: BridgeRequest = typed(body)?;
                self.bridge(ccid, req, now, &mut effects)?;
                None
            }
            "hangup" => {
                let req: HangupRequest = typed(body)?;
                self.set_client_state(ccid, req.client_state)?;
                let leg = self.leg_mut(ccid);
                let source = app_side_source(leg);
                let (cause, sip) = match leg.state {
                    LegState::Answered => (HangupCause::NormalClearing, "200"),
                    LegState::Ringing => (HangupCause::OriginatorCancel, "487"),
                    _ => (HangupCause::NormalClearing, "unspecified"),
                };
                self.end_leg(ccid, cause, source, sip, now, &mut effects);
                None
            }
            "reject" => {
                let req: RejectRequest = typed(body)?;
                let leg = self.leg_mut(ccid);
                if leg.state != LegState::Parked {
                    return Err(bad_state(
                        "Only an unanswered inbound call can be rejected.",
                    ));
                }
                self.set_client_state(ccid, req.client_state)?;
                let (cause, sip) = match req.cause {
                    RejectCause::CallRejected => (HangupCause::CallRejected, "603"),
                    RejectCause::UserBusy => (HangupCause::UserBusy, "486"),
                };
                self.end_leg(ccid, cause, HangupSource::Callee, sip, now, &mut effects);
                None
            }
            "transfer" => {
                let req: TransferRequest = typed(body)?;
                self.transfer(ccid, req, now, &mut effects)?;
                None
            }
            "record_start" => {
                let req: RecordStartRequest = typed(body)?;
                Some(self.record_start(ccid, req, now)?)
            }
            "speak" => {
                let req: SpeakRequest = typed(body)?;
                self.require_answered(ccid)?;
                self.set_client_state(ccid, req.client_state)?;
                self.start_media(ccid, MediaKind::Speak, now, &mut effects);
                None
            }
            "playback_start" => {
                let req: PlaybackStartRequest = typed(body)?;
                self.require_answered(ccid)?;
                self.set_client_state(ccid, req.client_state)?;
                let kind = MediaKind::Playback { url: req.audio_url };
                self.start_media(ccid, kind, now, &mut effects);
                None
            }
            other => {
                return Err(ApiFailure {
                    status: 404,
                    error: Box::new(ApiError::new(
                        "10005",
                        "Resource not found",
                        format!("The emulator does not implement the action {other:?}."),
                    )),
                })
            }
        };
        Ok((
            CommandResult {
                result: "ok".to_owned(),
                recording_id,
            },
            effects,
        ))
    }

    fn require_answered(&self, ccid: &str) -> Result<(), ApiFailure> {
        if self.live(ccid)?.state != LegState::Answered {
            return Err(not_answered());
        }
        Ok(())
    }

    fn answer(
        &mut self,
        ccid: &str,
        req: AnswerRequest,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ApiFailure> {
        let leg = self.live(ccid)?;
        if leg.direction != Direction::Incoming || leg.state != LegState::Parked {
            return Err(bad_state(
                "Only an unanswered inbound call can be answered.",
            ));
        }
        self.set_client_state(ccid, req.client_state)?;
        self.mark_answered(ccid, now, effects);
        Ok(())
    }

    fn mark_answered(&mut self, ccid: &str, now: Timestamp, effects: &mut Vec<Effect>) {
        let leg = self.leg_mut(ccid);
        leg.state = LegState::Answered;
        leg.answered_at = Some(now);
        let event = Event::CallAnswered(CallAnswered {
            call: Self::call_ref(leg),
            state: Some("answered".to_owned()),
            start_time: Some(format_iso(leg.started_at)),
            custom_headers: None,
            tags: None,
        });
        effects.push(Self::webhook(leg, now, event));
    }

    fn bridge(
        &mut self,
        ccid: &str,
        req: BridgeRequest,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ApiFailure> {
        let other = req.call_control_id.as_str().to_owned();
        if other == ccid {
            return Err(bad_state("A call cannot be bridged to itself."));
        }
        let a = self.live(ccid)?;
        let b = self
            .live(&other)
            .map_err(|f| f.pointing_at("/call_control_id"))?;
        if a.state != LegState::Answered || b.state != LegState::Answered {
            return Err(not_answered());
        }
        let b_busy = b.bridged_with.as_ref().is_some_and(|p| p != ccid);
        let a_busy = a.bridged_with.as_ref().is_some_and(|p| p != &other);
        if b_busy && req.prevent_double_bridge == Some(true) {
            // Documented: the call is hung up instead of being bridged.
            let source = app_side_source(a);
            self.end_leg(
                ccid,
                HangupCause::NormalClearing,
                source,
                "200",
                now,
                effects,
            );
            return Ok(());
        }
        if a_busy || b_busy {
            return Err(bad_state("One of the calls is already bridged."));
        }
        self.set_client_state(ccid, req.client_state)?;
        if let Some(park) = req.park_after_unbridge {
            self.leg_mut(ccid).park_after_unbridge = park == "self";
        }
        self.join(ccid, &other, now, effects);
        Ok(())
    }

    fn join(&mut self, a: &str, b: &str, now: Timestamp, effects: &mut Vec<Effect>) {
        self.leg_mut(a).bridged_with = Some(b.to_owned());
        self.leg_mut(b).bridged_with = Some(a.to_owned());
        for ccid in [a, b] {
            let leg = self.leg_mut(ccid);
            let event = Event::CallBridged(CallBridged {
                call: Self::call_ref(leg),
                state: Some("bridged".to_owned()),
            });
            effects.push(Self::webhook(leg, now, event));
        }
    }

    fn transfer(
        &mut self,
        ccid: &str,
        req: TransferRequest,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) -> Result<(), ApiFailure> {
        self.require_answered(ccid)?;
        if !is_dialable(&req.to) {
            return Err(ApiFailure::unprocessable(
                ApiError::new(
                    codes::NOT_E164,
                    "Phone number must be in +E164 format",
                    "The 'to' parameter must be in E164 format or a SIP URI.",
                )
                .with_pointer("/to"),
            ));
        }
        let timeout_secs = req
            .timeout_secs
            .unwrap_or(DEFAULT_TIMEOUT_SECS)
            .clamp(5, 600);
        let source = self.live(ccid)?;
        let from = req.from.clone().unwrap_or_else(|| source.to.clone());
        let (session, connection_id) = (source.session.clone(), source.connection_id.clone());
        let mut leg = self.new_leg(
            Direction::Outgoing,
            session,
            from,
            req.to,
            connection_id,
            req.client_state,
            now,
        );
        leg.bridge_on_answer_to = Some(ccid.to_owned());
        let new_ccid = leg.ccid.clone();
        effects.push(Self::initiated(&leg, now));
        self.insert_leg(leg);
        self.start_ringing(&new_ccid, timeout_secs, now, effects);
        Ok(())
    }

    fn record_start(
        &mut self,
        ccid: &str,
        req: RecordStartRequest,
        now: Timestamp,
    ) -> Result<String, ApiFailure> {
        let leg = self.live(ccid)?;
        if leg.state != LegState::Answered {
            return Err(ApiFailure::unprocessable(ApiError::new(
                codes::RECORDING_BEFORE_AUDIO,
                "Call recording triggered before audio started",
                "Call recording cannot be started until audio has commenced on the call.",
            )));
        }
        if leg.recording.is_some() {
            return Err(bad_state("The call is already being recorded."));
        }
        self.set_client_state(ccid, req.client_state)?;
        let id = new_id();
        self.leg_mut(ccid).recording = Some(Recording {
            id: id.clone(),
            format: req.format,
            channels: req.channels,
            started_at: now,
        });
        Ok(id)
    }

    fn start_media(
        &mut self,
        ccid: &str,
        kind: MediaKind,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        self.finish_media(ccid, "stopped", now, effects);
        self.next_media += 1;
        let id = self.next_media;
        let leg = self.leg_mut(ccid);
        let call = Self::call_ref(leg);
        let event = match &kind {
            MediaKind::Speak => Event::CallSpeakStarted(CallPayload { call }),
            MediaKind::Playback { url } => Event::CallPlaybackStarted(CallPlayback {
                call,
                media_url: Some(url.clone()),
            }),
        };
        leg.media = Some(Media { id, kind });
        effects.push(Self::webhook(leg, now, event));
        effects.push(Effect::Timer {
            after: self.config.media_duration,
            timer: Timer::MediaEnded {
                ccid: ccid.to_owned(),
                media: id,
            },
        });
    }

    fn finish_media(
        &mut self,
        ccid: &str,
        status: &str,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let leg = self.leg_mut(ccid);
        let Some(media) = leg.media.take() else {
            return;
        };
        let call = Self::call_ref(leg);
        let event = match media.kind {
            MediaKind::Speak => Event::CallSpeakEnded(CallSpeakEnded {
                call,
                status: Some(status.to_owned()),
            }),
            MediaKind::Playback { url } => Event::CallPlaybackEnded(CallPlaybackEnded {
                call,
                media_url: Some(url),
                status: Some(status.to_owned()),
            }),
        };
        effects.push(Self::webhook(leg, now, event));
    }

    /// Ends a leg: `call.hangup`, then `call.recording.saved` if it was recording, then the
    /// bridged peer is hung up too unless it asked to be parked.
    fn end_leg(
        &mut self,
        ccid: &str,
        cause: HangupCause,
        source: HangupSource,
        sip: &str,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        if self
            .legs
            .get(ccid)
            .is_none_or(|l| l.state == LegState::Ended)
        {
            return;
        }
        self.finish_media(ccid, "call_hangup", now, effects);
        let base_url = self.config.recording_base_url.clone();
        let leg = self.leg_mut(ccid);
        leg.state = LegState::Ended;
        leg.ended_at = Some(now);
        leg.hangup_cause = Some(cause);
        let peer = leg.bridged_with.take();
        let stats = leg.answered_at.map(|answered| {
            let packets = now.saturating_since(answered).as_millis() / 20;
            let packets = u64::try_from(packets).unwrap_or(u64::MAX);
            CallQualityStats {
                inbound: Some(InboundQuality {
                    jitter_max_variance: Some(0.0),
                    jitter_packet_count: Some(0),
                    mos: Some(4.5),
                    packet_count: Some(packets),
                    skip_packet_count: Some(0),
                }),
                outbound: Some(OutboundQuality {
                    packet_count: Some(packets),
                    skip_packet_count: Some(0),
                }),
            }
        });
        let event = Event::CallHangup(CallHangup {
            call: Self::call_ref(leg),
            hangup_cause: cause,
            hangup_source: source,
            sip_hangup_cause: Some(sip.to_owned()),
            state: Some("hangup".to_owned()),
            start_time: Some(format_iso(leg.started_at)),
            end_time: Some(format_iso(now)),
            call_quality_stats: stats,
            tags: None,
        });
        effects.push(Self::webhook(leg, now, event));
        if let Some(rec) = leg.recording.take() {
            let ext = match rec.format {
                RecordingFormat::Wav => "wav",
                RecordingFormat::Mp3 => "mp3",
            };
            let url = format!("{base_url}/recordings/{}.{ext}", rec.id);
            let urls = match rec.format {
                RecordingFormat::Wav => RecordingUrls {
                    mp3: None,
                    wav: Some(url),
                },
                RecordingFormat::Mp3 => RecordingUrls {
                    mp3: Some(url),
                    wav: None,
                },
            };
            let event = Event::CallRecordingSaved(CallRecordingSaved {
                call: Self::call_ref(leg),
                channels: Some(
                    match rec.channels {
                        RecordingChannels::Single => "single",
                        RecordingChannels::Dual => "dual",
                    }
                    .to_owned(),
                ),
                recording_id: Some(rec.id.clone()),
                format: Some(ext.to_owned()),
                recording_started_at: Some(format_iso(rec.started_at)),
                recording_ended_at: Some(format_iso(now)),
                recording_urls: urls,
                public_recording_urls: RecordingUrls::default(),
            });
            effects.push(Self::webhook(leg, now, event));
            self.recordings
                .insert(rec.id, now.saturating_since(rec.started_at));
        }
        if let Some(peer) = peer {
            let Some(peer_leg) = self.legs.get_mut(&peer) else {
                return;
            };
            peer_leg.bridged_with = None;
            if !peer_leg.park_after_unbridge {
                let source = app_side_source(peer_leg);
                self.end_leg(
                    &peer,
                    HangupCause::NormalClearing,
                    source,
                    "200",
                    now,
                    effects,
                );
            }
        }
    }

    /// Runs a timer that came due.
    pub(crate) fn fire(&mut self, timer: Timer, now: Timestamp) -> Vec<Effect> {
        let mut effects = Vec::new();
        let ringing =
            |w: &World, c: &str| w.legs.get(c).is_some_and(|l| l.state == LegState::Ringing);
        match timer {
            Timer::RingTimeout(c) if ringing(self, &c) => self.end_leg(
                &c,
                HangupCause::Timeout,
                HangupSource::Caller,
                "487",
                now,
                &mut effects,
            ),
            Timer::ScriptAnswer(c) if ringing(self, &c) => {
                self.remote_answered(&c, now, &mut effects)
            }
            Timer::ScriptReject(c) if ringing(self, &c) => self.end_leg(
                &c,
                HangupCause::CallRejected,
                HangupSource::Callee,
                "603",
                now,
                &mut effects,
            ),
            Timer::MediaEnded { ccid, media } => {
                let current = self
                    .legs
                    .get(&ccid)
                    .and_then(|l| l.media.as_ref())
                    .map(|m| m.id);
                if current == Some(media) {
                    self.finish_media(&ccid, "completed", now, &mut effects);
                }
            }
            _ => {}
        }
        effects
    }

    /// A dialled leg is answered by its endpoint; bridges if the dial asked for it.
    fn remote_answered(&mut self, ccid: &str, now: Timestamp, effects: &mut Vec<Effect>) {
        self.mark_answered(ccid, now, effects);
        let leg = self.leg_mut(ccid);
        let Some(target) = leg.bridge_on_answer_to.clone() else {
            return;
        };
        let prevent = leg.prevent_double_bridge;
        let Some(t) = self.legs.get(&target) else {
            return;
        };
        if t.state == LegState::Ended {
            return;
        }
        if t.bridged_with.is_some() {
            if prevent {
                self.end_leg(
                    ccid,
                    HangupCause::NormalClearing,
                    HangupSource::Caller,
                    "200",
                    now,
                    effects,
                );
            }
            return;
        }
        if t.state == LegState::Parked {
            // Bridging a parked inbound call answers it, as Telnyx does for bridge_on_answer.
            self.mark_answered(&target, now, effects);
        }
        self.join(ccid, &target, now, effects);
    }

    /// Control API: the far end of a dialled leg answers now.
    pub(crate) fn control_answer(
        &mut self,
        ccid: &str,
        now: Timestamp,
    ) -> Result<Vec<Effect>, ControlError> {
        let leg = self.control_leg(ccid)?;
        if leg.direction != Direction::Outgoing || leg.state != LegState::Ringing {
            return Err(ControlError::InvalidState(
                "only a ringing dialled leg can be answered by its endpoint".into(),
            ));
        }
        let mut effects = Vec::new();
        self.remote_answered(ccid, now, &mut effects);
        Ok(effects)
    }

    /// Control API: the far end of a dialled leg rejects it now.
    pub(crate) fn control_reject(
        &mut self,
        ccid: &str,
        cause: RemoteRejectCause,
        now: Timestamp,
    ) -> Result<Vec<Effect>, ControlError> {
        let leg = self.control_leg(ccid)?;
        if leg.direction != Direction::Outgoing || leg.state != LegState::Ringing {
            return Err(ControlError::InvalidState(
                "only a ringing dialled leg can be rejected by its endpoint".into(),
            ));
        }
        let (cause, sip) = match cause {
            RemoteRejectCause::CallRejected => (HangupCause::CallRejected, "603"),
            RemoteRejectCause::UserBusy => (HangupCause::UserBusy, "486"),
        };
        let mut effects = Vec::new();
        self.end_leg(ccid, cause, HangupSource::Callee, sip, now, &mut effects);
        Ok(effects)
    }

    /// Control API: the far end (PSTN caller or device) hangs up now.
    pub(crate) fn control_hangup(
        &mut self,
        ccid: &str,
        now: Timestamp,
    ) -> Result<Vec<Effect>, ControlError> {
        let leg = self.control_leg(ccid)?;
        let source = remote_side_source(leg);
        let (cause, sip) = match (leg.direction, leg.state) {
            (_, LegState::Answered) => (HangupCause::NormalClearing, "200"),
            // The caller gives up before the application answered.
            (Direction::Incoming, _) => (HangupCause::OriginatorCancel, "487"),
            // A device hanging up a ringing leg declines it.
            _ => (HangupCause::CallRejected, "603"),
        };
        let mut effects = Vec::new();
        self.end_leg(ccid, cause, source, sip, now, &mut effects);
        Ok(effects)
    }

    fn control_leg(&self, ccid: &str) -> Result<&Leg, ControlError> {
        match self.legs.get(ccid) {
            None => Err(ControlError::NotFound(ccid.to_owned())),
            Some(l) if l.state == LegState::Ended => Err(ControlError::Ended(ccid.to_owned())),
            Some(l) => Ok(l),
        }
    }

    /// `GET /v2/calls/{ccid}`.
    pub(crate) fn status(&self, ccid: &str, now: Timestamp) -> Result<Value, ApiFailure> {
        let Some(leg) = self.legs.get(ccid) else {
            return self.live(ccid).map(|_| Value::Null);
        };
        let end = leg.ended_at.unwrap_or(now);
        let mut data = serde_json::json!({
            "call_control_id": leg.ccid,
            "call_leg_id": leg.leg_id,
            "call_session_id": leg.session,
            "client_state": leg.client_state,
            "is_alive": leg.state != LegState::Ended,
            "record_type": "call",
            "start_time": format_iso(leg.started_at),
            "call_duration": end.saturating_since(leg.started_at).as_secs(),
        });
        if let (Some(ended), Value::Object(map)) = (leg.ended_at, &mut data) {
            map.insert("end_time".into(), Value::from(format_iso(ended)));
        }
        Ok(data)
    }
}

fn typed<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiFailure> {
    serde_json::from_value(body).map_err(|e| {
        let message = e.to_string();
        match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            Some(field) => missing(field),
            None => ApiFailure::unprocessable(ApiError::new(
                codes::BAD_REQUEST,
                "Invalid parameter",
                message,
            )),
        }
    })
}

fn missing(field: &str) -> ApiFailure {
    ApiFailure::unprocessable(
        ApiError::new(
            codes::MISSING_PARAMETER,
            "Missing required parameter",
            format!("The '{field}' parameter is required and cannot be blank."),
        )
        .with_pointer(&format!("/{field}")),
    )
}

fn not_answered() -> ApiFailure {
    ApiFailure::unprocessable(ApiError::new(
        codes::CALL_NOT_ANSWERED,
        "Call not answered yet",
        "This call can't receive this command because it has not been answered yet.",
    ))
}

fn bad_state(detail: &str) -> ApiFailure {
    ApiFailure::unprocessable(ApiError::new(
        codes::BAD_REQUEST,
        "Unable to execute command",
        detail,
    ))
}

/// `typed` on a dial body, exposed for the HTTP layer.
pub(crate) fn parse_dial(body: Value) -> Result<DialRequest, ApiFailure> {
    typed(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        World::new(WorldConfig {
            connection_id: "conn".into(),
            telnyx_second: Duration::from_millis(10),
            media_duration: Duration::from_millis(10),
            recording_base_url: "http://emulator/_emulator".into(),
        })
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + secs * 1000)
    }

    fn event_types(effects: &[Effect]) -> Vec<&str> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Webhook { event, .. } => Some(event.event_type()),
                Effect::Timer { .. } => None,
            })
            .collect()
    }

    #[test]
    fn command_ids_are_remembered_for_sixty_seconds() {
        let mut w = world();
        w.remember("v3:a", "c1", at(0), 200, Value::from("first"));
        assert_eq!(
            w.deduplicated("v3:a", "c1", at(59)),
            Some((200, Value::from("first")))
        );
        assert_eq!(
            w.deduplicated("v3:b", "c1", at(59)),
            None,
            "scoped per call"
        );
        assert_eq!(w.deduplicated("v3:a", "c1", at(60)), None);
    }

    #[test]
    fn stale_timers_do_nothing() {
        let mut w = world();
        let (call, _) = w.inbound_call("+15550000001".into(), "+15550000002".into(), None, at(0));
        let ccid = call.call_control_id.as_str().to_owned();
        // The inbound leg is parked, not ringing: a ring timeout must not end it.
        assert!(w.fire(Timer::RingTimeout(ccid.clone()), at(1)).is_empty());
        let effects = w.control_hangup(&ccid, at(2)).unwrap();
        assert_eq!(event_types(&effects), ["call.hangup"]);
        assert!(w.fire(Timer::ScriptAnswer(ccid.clone()), at(3)).is_empty());
        assert!(w
            .fire(Timer::MediaEnded { ccid, media: 1 }, at(3))
            .is_empty());
    }

    #[test]
    fn ending_a_bridged_leg_ends_its_peer_once() {
        let mut w = world();
        let (call, _) = w.inbound_call("+15550000001".into(), "+15550000002".into(), None, at(0));
        let a = call.call_control_id.as_str().to_owned();
        w.action(&a, "answer", Value::Object(Default::default()), at(1))
            .unwrap();
        let mut dial = DialRequest::new("conn", "sip:b@x", "+15550000002");
        dial.link_to = Some(call.call_control_id.clone());
        let (leg, _) = w.dial(dial, at(1)).unwrap();
        let b = leg.call_control_id.as_str().to_owned();
        w.control_answer(&b, at(2)).unwrap();
        let (_, effects) = w
            .action(
                &a,
                "bridge",
                serde_json::json!({ "call_control_id": b }),
                at(3),
            )
            .unwrap();
        assert_eq!(event_types(&effects), ["call.bridged", "call.bridged"]);
        let effects = w.control_hangup(&b, at(4)).unwrap();
        assert_eq!(event_types(&effects), ["call.hangup", "call.hangup"]);
        assert!(w.control_hangup(&a, at(5)).is_err());
    }

    #[test]
    fn a_command_id_is_remembered_for_sixty_seconds_from_its_last_result() {
        let mut w = world();
        w.remember("conn", "a", at(0), 200, Value::from("a0"));
        w.remember("conn", "b", at(10), 200, Value::from("b10"));
        // Remembered again: the newer result counts, from its own time.
        w.remember("conn", "a", at(30), 200, Value::from("a30"));
        assert_eq!(
            w.deduplicated("conn", "a", at(59)),
            Some((200, Value::from("a30")))
        );
        assert_eq!(w.deduplicated("conn", "b", at(69)).map(|r| r.0), Some(200));
        assert_eq!(w.deduplicated("conn", "b", at(70)), None);
        assert_eq!(w.deduplicated("conn", "a", at(89)).map(|r| r.0), Some(200));
        assert_eq!(w.deduplicated("conn", "a", at(90)), None);
        assert!(w.dedupe.is_empty() && w.dedupe_order.is_empty());
    }
}
