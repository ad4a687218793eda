//! Device APIs (bearer device token). Every call lookup is scoped to the device's user: another
//! user's call is a 404, exactly like a call that does not exist.

use super::views::{
    ActiveCallView, CallDetailView, CallStatusView, CallView, ErrorBody, HistoryPage, MyActiveCall,
    PlacedCall, PushTokenView, ReportAck,
};
use super::{is_e164, ApiJson};
use crate::app::AppState;
use crate::auth::DeviceAuth;
use crate::engine::{Applied, Created};
use crate::error::{ApiError, ApiResult};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use ringmaster_core::dismissal::Channel;
use ringmaster_core::quality::summarize_telnyx;
use ringmaster_core::session::{Input, NewOutbound, RingTarget, Session, SessionError};
use ringmaster_core::{
    CallControlId, CallSessionId, CallState, DeviceId, Platform, Timestamp, Trigger,
};
use ringmaster_realtime::SocketId;
use ringmaster_store::limits::MAX_PAGE;
use ringmaster_store::{CallRecord, DevicePlatform, PushProvider};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// History page size when the request names none.
const DEFAULT_PAGE: u32 = 20;

fn no_call() -> ApiError {
    ApiError::not_found("no such call")
}

/// Loads a call the device may see: the user's, and one that rings (or rang) this device.
async fn visible_call(app: &AppState, auth: &DeviceAuth, call_id: &str) -> ApiResult<Session> {
    let id = CallSessionId::new(call_id);
    let (session, _) = app.engine.load(&id).await?.ok_or_else(no_call)?;
    if session.user() != &auth.user.id || session.tenant() != &auth.user.tenant_id {
        return Err(no_call());
    }
    Ok(session)
}

pub(crate) fn status_json(session: &Session, device: &DeviceId) -> ApiResult<CallStatusView> {
    let view = session.status_for(device).map_err(|_| no_call())?;
    Ok(CallStatusView {
        call_session_id: session.id().to_string(),
        status: serde_json::to_value(view.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        device_id: view.device_id.as_ref().map(ToString::to_string),
        reason: view.reason.as_ref().map(|r| r.code().to_owned()),
        version: view.version,
        call_status: session.status().as_str().to_owned(),
    })
}

/// `GET /api/voip/call-status/{id}`: the call as this device should see it (the polling
/// channel of dismissal).
#[utoipa::path(get, path = "/api/voip/call-status/{call_id}", tag = "device",
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 200, body = CallStatusView), (status = "4XX", body = ErrorBody)))]
pub async fn call_status(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<CallStatusView>> {
    let session = visible_call(&app, &auth, &call_id).await?;
    Ok(Json(status_json(&session, &auth.device.id)?))
}

/// `GET /api/voip/my-active-call`: every call a device of the user has answered and that has
/// not ended (`active_call` is the oldest, for older clients).
#[utoipa::path(get, path = "/api/voip/my-active-call", tag = "device",
    security(("device_token" = [])),
    responses((status = 200, body = MyActiveCall), (status = "4XX", body = ErrorBody)))]
pub async fn my_active_call(
    auth: DeviceAuth,
    State(app): State<AppState>,
) -> ApiResult<Json<MyActiveCall>> {
    let active = app.store.active_calls(&auth.user.id).await?;
    Ok(Json(MyActiveCall {
        active_call: active.first().map(ActiveCallView::from),
        active_calls: active.iter().map(ActiveCallView::from).collect(),
    }))
}

/// `POST /api/voip/calls` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceCall {
    to: String,
    #[serde(default)]
    from: Option<String>,
}

fn ring_target(auth: &DeviceAuth) -> RingTarget {
    RingTarget {
        device_id: auth.device.id.clone(),
        sip_uri: auth.device.sip_uri.clone(),
        platform: auth.device.platform.as_str().to_owned(),
    }
}

/// Glare on the user's side: when a call from `to` rings this user now and rings this device,
/// the device answers that call instead of dialling (`answer_ringing`); `None` otherwise.
async fn call_back(app: &AppState, auth: &DeviceAuth, to: &str) -> ApiResult<Option<PlacedCall>> {
    let Some(ringing) = crate::glare::ringing_from(app, &auth.user.id, to).await? else {
        return Ok(None);
    };
    let input = Input::CallBack {
        device: auth.device.id.clone(),
    };
    Ok(match app.engine.apply(&ringing, input, None).await? {
        Applied::Committed(s) | Applied::Unchanged(s) => {
            tracing::info!(call_session_id = %ringing, device_id = %auth.device.id,
                "click-to-call answers the ringing call from the same number");
            Some(PlacedCall {
                call_session_id: s.id().to_string(),
                status: s.status().as_str().to_owned(),
                version: s.version(),
                answer_ringing: true,
            })
        }
        // Its leg on this device is gone (ignored, failed) or the call stopped ringing
        // meanwhile: an ordinary call.
        Applied::Duplicate | Applied::Refused(_) => None,
    })
}

/// `POST /api/voip/calls`: an outbound call from this device (it is rung first, then the
/// destination). 409 `call_collision` when the user is on a call and has no call waiting.
/// When a call from `to` is ringing this device, nothing is dialled: 200 with that call and
/// `answer_ringing` true, and the device answers it. When the user called here is calling this
/// user at the same time, the call with the higher id ends with reason `replaced`.
#[utoipa::path(post, path = "/api/voip/calls", tag = "device", request_body = PlaceCall,
    security(("device_token" = [])),
    responses((status = 201, body = PlacedCall), (status = 200, body = PlacedCall),
        (status = "4XX", body = ErrorBody)))]
pub async fn place_call(
    auth: DeviceAuth,
    State(app): State<AppState>,
    ApiJson(req): ApiJson<PlaceCall>,
) -> ApiResult<(StatusCode, Json<PlacedCall>)> {
    if !is_e164(&req.to) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_number",
            "to must be an E.164 number (+ and up to 15 digits)",
        ));
    }
    crate::routes::guard::may_place_call(&app, &auth).await?;
    let from = match req.from {
        Some(from) if auth.user.numbers.contains(&from) => from,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_number",
                "from must be one of the user's numbers",
            ))
        }
        None => auth.user.numbers.first().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_number",
                "the user has no number to call from",
            )
        })?,
    };
    if let Some(placed) = call_back(&app, &auth, &req.to).await? {
        return Ok((StatusCode::OK, Json(placed)));
    }
    if !auth.user.call_waiting {
        let active = app.store.active_calls(&auth.user.id).await?;
        if let Some(call) = active.first() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "call_collision",
                "the user is already on a call",
            )
            .with_details(json!({ "active_call": ActiveCallView::from(call) })));
        }
    }
    let id = CallSessionId::new(uuid::Uuid::new_v4().to_string());
    tracing::Span::current().record("call_session_id", id.as_str());
    let session = Session::new_outbound(
        NewOutbound {
            id: id.clone(),
            tenant: auth.user.tenant_id.clone(),
            user: auth.user.id.clone(),
            device: ring_target(&auth),
            from,
            to: req.to,
            config: app.settings.session_config(false),
        },
        app.engine.now(),
    )
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_call",
            e.to_string(),
        )
    })?;
    match app.engine.create(session, None, Vec::new()).await? {
        Created::Committed(session) => {
            tracing::info!(call_session_id = %id, device_id = %auth.device.id, "outbound call placed");
            crate::glare::after_outbound(&app, &session).await?;
            // The glare may have replaced this very call: say how it stands now.
            let session = app.engine.load(&id).await?.map_or(*session, |(s, _)| s);
            Ok((
                StatusCode::CREATED,
                Json(PlacedCall {
                    call_session_id: session.id().to_string(),
                    status: session.status().as_str().to_owned(),
                    version: session.version(),
                    answer_ringing: false,
                }),
            ))
        }
        Created::Exists | Created::Duplicate => Err(ApiError::internal(format!(
            "fresh session id {id} already in use"
        ))),
    }
}

/// `POST /api/voip/calls/{id}/events` body: one canonical transition seen on the device.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceReport {
    /// Per-device sequence number; a repeated one is acknowledged and ignored.
    seq: u64,
    /// Canonical state before (e.g. `RINGING_INBOUND`).
    #[schema(value_type = String)]
    from: CallState,
    /// Canonical state after.
    #[schema(value_type = String)]
    to: CallState,
    /// What caused it (see `ringmaster states`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    trigger: Option<Trigger>,
    /// Device clock, ms since the epoch (kept as reported).
    #[serde(default)]
    at: Option<u64>,
    /// The reporting client's own WebSocket connection, left out of the broadcast (as the
    /// `X-Socket-ID` header).
    #[serde(default)]
    socket_id: Option<String>,
    /// For a dismissal, the channel that reached the device first: `sip`, `websocket`, `push`
    /// or `poll` (kept in the timeline; the operator view's latency figures read it).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "websocket")]
    channel: Option<Channel>,
    /// A call the device placed itself: the Telnyx `call_control_id` of its leg, as its SDK
    /// knows it. With `destination`, an IDLE → CONNECTING/REQUESTING report on a call the
    /// server does not know yet creates it (the path's id is the Telnyx `call_session_id`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    call_control_id: Option<CallControlId>,
    /// The Telnyx `call_session_id` as the SDK knows it; when given it must be the path's.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    call_session_id: Option<CallSessionId>,
    /// The number the device dialled (a call the device placed itself).
    #[serde(default)]
    destination: Option<String>,
}

impl DeviceReport {
    /// Whether this report opens a call the device placed itself.
    fn opens_native_call(&self) -> bool {
        self.from == CallState::Idle
            && matches!(self.to, CallState::Connecting | CallState::Requesting)
    }
}

/// Header naming the caller's own WebSocket connection (laravel-echo sends it).
const SOCKET_ID_HEADER: &str = "x-socket-id";

/// The sender's socket to leave out of a broadcast: the body's `socket_id`, else the
/// `X-Socket-ID` header; 400 when it is not a Pusher socket id.
fn sender_socket(headers: &HeaderMap, field: Option<&str>) -> ApiResult<Option<SocketId>> {
    let raw = match field {
        Some(raw) => raw,
        None => match headers.get(SOCKET_ID_HEADER) {
            Some(value) => value.to_str().map_err(|_| invalid_socket_id())?,
            None => return Ok(None),
        },
    };
    SocketId::parse(raw)
        .map(Some)
        .map_err(|_| invalid_socket_id())
}

fn invalid_socket_id() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_socket_id",
        "socket_id must be a Pusher socket id (digits.digits)",
    )
}

pub(crate) fn platform(p: DevicePlatform) -> Platform {
    match p {
        DevicePlatform::Ios => Platform::Ios,
        DevicePlatform::Android => Platform::Android,
        DevicePlatform::Web => Platform::Web,
    }
}

/// `POST /api/voip/calls/{id}/events`: the device reports a transition. The session checks it
/// against the table and the device's last report, bumps the version, records it in the
/// timeline and broadcasts `call_state_changed` (not to the reporter's own WebSocket
/// connection, when it names one).
#[utoipa::path(post, path = "/api/voip/calls/{call_id}/events", tag = "device",
    request_body = DeviceReport,
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 200, body = ReportAck), (status = "4XX", body = ErrorBody)))]
pub async fn report(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
    ApiJson(report): ApiJson<DeviceReport>,
) -> ApiResult<Json<ReportAck>> {
    let exclude_socket =
        sender_socket(&headers, report.socket_id.as_deref())?.map(|s| s.as_str().to_owned());
    if report
        .call_session_id
        .as_ref()
        .is_some_and(|id| id.as_str() != call_id)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "call_session_mismatch",
            "call_session_id must be the call id of the path",
        ));
    }
    if report.opens_native_call() {
        open_native_call(&app, &auth, &call_id, &report).await?;
    }
    let session = visible_call(&app, &auth, &call_id).await?;
    crate::routes::guard::may_report(&app, &auth, &session).await?;
    let input = Input::DeviceReport {
        device: auth.device.id.clone(),
        seq: report.seq,
        from: report.from,
        to: report.to,
        trigger: report.trigger,
        at: report.at.map(Timestamp::from_millis),
        exclude_socket,
        channel: report.channel,
    };
    let reply = |status: &str, s: &Session| {
        Json(ReportAck {
            status: status.to_owned(),
            version: s.version(),
        })
    };
    match app.engine.apply(session.id(), input, None).await? {
        Applied::Committed(s) => Ok(reply("accepted", &s)),
        Applied::Unchanged(s) => Ok(reply("duplicate", &s)),
        Applied::Duplicate => Ok(reply("duplicate", &session)),
        Applied::Refused(e) => Err(report_refused(e)),
    }
}

/// Creates the session of a call the device placed itself, unless it exists (its
/// `call.initiated` came first, or this is a retry).
async fn open_native_call(
    app: &AppState,
    auth: &DeviceAuth,
    call_id: &str,
    report: &DeviceReport,
) -> ApiResult<()> {
    let id = CallSessionId::new(call_id);
    if app.engine.load(&id).await?.is_some() {
        return Ok(());
    }
    let (Some(leg), Some(to)) = (&report.call_control_id, &report.destination) else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_call_ids",
            "a report opening a call the device placed needs call_control_id and destination",
        ));
    };
    app.rate_limits.check(
        crate::rate_limit::RateClass::PlaceCall,
        &auth.device.id,
        &auth.user.id,
        app.engine.now(),
    )?;
    let call = crate::native::NativeCall {
        id,
        leg: Some(leg.clone()),
        initiated: false,
        to: to.clone(),
    };
    match crate::native::create(app, &auth.user, &auth.device, call, None, Vec::new()).await? {
        Ok(_) => Ok(()),
        Err(why) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_call",
            why,
        )),
    }
}

fn report_refused(e: SessionError) -> ApiError {
    let message = e.to_string();
    match e {
        SessionError::CallEnded => ApiError::new(StatusCode::CONFLICT, "call_ended", message),
        SessionError::StateMismatch { last, from } => {
            ApiError::new(StatusCode::CONFLICT, "state_mismatch", message)
                .with_details(json!({ "last_reported": last, "from": from }))
        }
        SessionError::IllegalTransition { from, to, .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "illegal_transition",
            message,
        )
        .with_details(json!({ "from": from, "to": to })),
        SessionError::InvalidTrigger(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_trigger", message)
        }
        SessionError::UnknownDevice { .. } => no_call(),
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            other.to_string(),
        ),
    }
}

async fn device_input(
    app: &AppState,
    auth: &DeviceAuth,
    call_id: &str,
    input: Input,
) -> ApiResult<Json<CallStatusView>> {
    let session = visible_call(app, auth, call_id).await?;
    match app.engine.apply(session.id(), input, None).await? {
        Applied::Committed(s) | Applied::Unchanged(s) => {
            Ok(Json(status_json(&s, &auth.device.id)?))
        }
        Applied::Duplicate => Ok(Json(status_json(&session, &auth.device.id)?)),
        Applied::Refused(SessionError::NotRinging { status }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ringing",
            format!("the call is no longer ringing (status {status})"),
        )),
        Applied::Refused(SessionError::UnknownDevice { .. }) => Err(no_call()),
        Applied::Refused(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "refused",
            e.to_string(),
        )),
    }
}

/// `POST /api/voip/calls/{id}/decline`: decline for every device of the user.
#[utoipa::path(post, path = "/api/voip/calls/{call_id}/decline", tag = "device",
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 200, body = CallStatusView), (status = "4XX", body = ErrorBody)))]
pub async fn decline(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<CallStatusView>> {
    let input = Input::DeviceDecline {
        device: auth.device.id.clone(),
    };
    device_input(&app, &auth, &call_id, input).await
}

/// `POST /api/voip/calls/{id}/ignore`: stop ringing on this device only.
#[utoipa::path(post, path = "/api/voip/calls/{call_id}/ignore", tag = "device",
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 200, body = CallStatusView), (status = "4XX", body = ErrorBody)))]
pub async fn ignore(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<CallStatusView>> {
    let input = Input::DeviceIgnore {
        device: auth.device.id.clone(),
    };
    device_input(&app, &auth, &call_id, input).await
}

/// `GET /api/voip/calls` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Page size (1-100, default 20).
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/voip/calls`: the user's call history, newest first, paginated by cursor.
#[utoipa::path(get, path = "/api/voip/calls", tag = "device", params(HistoryQuery),
    security(("device_token" = [])),
    responses((status = 200, body = HistoryPage), (status = "4XX", body = ErrorBody)))]
pub async fn history(
    auth: DeviceAuth,
    State(app): State<AppState>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Json<HistoryPage>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let page = app
        .store
        .list_calls(&auth.user.id, q.cursor.as_deref(), limit)
        .await?;
    Ok(Json(HistoryPage {
        items: page.items.iter().map(call_json).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A history record with its billing figures and quality summary, which are derived from the
/// stored record rather than stored.
fn call_json(call: &CallRecord) -> CallView {
    let summary = call.quality.as_ref().and_then(summarize_telnyx);
    CallView {
        record: call.clone(),
        billable_seconds: call.billable_seconds(),
        billing_minutes: call.billing_minutes(),
        quality_summary: summary.and_then(|s| serde_json::to_value(s).ok()),
    }
}

/// `GET /api/voip/calls/{id}`: one call with its legs, timeline and billing record.
#[utoipa::path(get, path = "/api/voip/calls/{call_id}", tag = "device",
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 200, body = CallDetailView), (status = "4XX", body = ErrorBody)))]
pub async fn call_detail(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<CallDetailView>> {
    let detail = app
        .store
        .get_call(&auth.user.id, &CallSessionId::new(call_id))
        .await?
        .ok_or_else(no_call)?;
    Ok(Json(CallDetailView {
        call: call_json(&detail.call),
        legs: serde_json::to_value(&detail.legs).map_err(ApiError::internal)?,
        timeline: serde_json::to_value(&detail.timeline).map_err(ApiError::internal)?,
        billing: serde_json::to_value(&detail.billing).map_err(ApiError::internal)?,
    }))
}

/// Largest body `PUT /api/voip/devices/{id}/push-token` accepts: one token of at most
/// [`ringmaster_store::limits::MAX_PUSH_TOKEN_LEN`] bytes and a provider name.
pub const PUSH_TOKEN_BODY_LIMIT: usize = 8 * 1024;
/// Longest APNs device token accepted (hex; 64 characters today).
const MAX_APNS_TOKEN: usize = 200;

/// `PUT /api/voip/devices/{id}/push-token` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushTokenRequest {
    provider: String,
    token: String,
}

fn own_device(auth: &DeviceAuth, device_id: &str) -> ApiResult<()> {
    if auth.device.id.as_str() == device_id {
        Ok(())
    } else {
        Err(ApiError::not_found("no such device"))
    }
}

fn invalid_token(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_push_token", message)
}

/// Checks the token's shape for its provider, and that the provider serves the platform.
fn check_push_token(
    platform: DevicePlatform,
    provider: PushProvider,
    token: &str,
) -> ApiResult<()> {
    match provider {
        PushProvider::Apns => {
            if token.is_empty()
                || token.len() > MAX_APNS_TOKEN
                || !token.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(invalid_token(
                    "an APNs device token is 1-200 hexadecimal characters",
                ));
            }
        }
        PushProvider::Fcm => {
            if token.is_empty()
                || token.len() > ringmaster_store::limits::MAX_PUSH_TOKEN_LEN
                || !token.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(invalid_token(
                    "an FCM registration token is 1-4096 printable ASCII characters",
                ));
            }
        }
    }
    let expected = match platform {
        DevicePlatform::Ios => PushProvider::Apns,
        DevicePlatform::Android => PushProvider::Fcm,
        DevicePlatform::Web => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "push_unsupported",
                "web devices are reached over the WebSocket, not by push",
            ))
        }
    };
    if provider != expected {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_provider",
            format!(
                "{} devices register {} tokens",
                platform.as_str(),
                expected.as_str()
            ),
        ));
    }
    Ok(())
}

/// `PUT /api/voip/devices/{id}/push-token`: the device registers (or replaces) its push token.
/// Only the device itself may; any other id is a 404.
#[utoipa::path(put, path = "/api/voip/devices/{device_id}/push-token", tag = "device",
    request_body = PushTokenRequest,
    params(("device_id" = String, Path, description = "The calling device's own id")),
    security(("device_token" = [])),
    responses((status = 200, body = PushTokenView), (status = "4XX", body = ErrorBody)))]
pub async fn register_push_token(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(device_id): Path<String>,
    ApiJson(req): ApiJson<PushTokenRequest>,
) -> ApiResult<Json<PushTokenView>> {
    own_device(&auth, &device_id)?;
    let provider: PushProvider = req.provider.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_provider",
            "provider must be fcm or apns",
        )
    })?;
    check_push_token(auth.device.platform, provider, &req.token)?;
    app.store
        .set_push_token(&auth.device.id, provider, &req.token)
        .await?;
    tracing::info!(device_id = %auth.device.id, %provider, "push token registered");
    Ok(Json(PushTokenView {
        device_id: auth.device.id.to_string(),
        push_provider: Some(provider.as_str().to_owned()),
        registered: true,
    }))
}

/// `DELETE /api/voip/devices/{id}/push-token`: the device stops receiving pushes (sign-out).
#[utoipa::path(delete, path = "/api/voip/devices/{device_id}/push-token", tag = "device",
    params(("device_id" = String, Path, description = "The calling device's own id")),
    security(("device_token" = [])),
    responses((status = 200, body = PushTokenView), (status = "4XX", body = ErrorBody)))]
pub async fn remove_push_token(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(device_id): Path<String>,
) -> ApiResult<Json<PushTokenView>> {
    own_device(&auth, &device_id)?;
    if let Some(token) = &auth.device.push_token {
        app.store.clear_push_token(&auth.device.id, token).await?;
    }
    Ok(Json(PushTokenView {
        device_id: auth.device.id.to_string(),
        push_provider: None,
        registered: false,
    }))
}
