//! Device APIs (bearer device token). Every call lookup is scoped to the device's user: another
//! user's call is a 404, exactly like a call that does not exist.

use super::{is_e164, ApiJson};
use crate::app::AppState;
use crate::auth::DeviceAuth;
use crate::engine::{Applied, Created, Step};
use crate::error::{ApiError, ApiResult};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use ringmaster_core::quality::summarize_telnyx;
use ringmaster_core::session::{
    Channel, Effect, Input, NewOutbound, Notification, NotifyEvent, RingTarget, Session,
    SessionError,
};
use ringmaster_core::table::row_for;
use ringmaster_core::{
    rows_between, CallSessionId, CallState, DeviceId, Direction, Platform, Trigger,
};
use ringmaster_realtime::SocketId;
use ringmaster_store::limits::MAX_PAGE;
use ringmaster_store::{
    ActiveCall, CallRecord, DevicePlatform, PushProvider, TimelineEntry, TimelineSource,
};
use serde::Deserialize;
use serde_json::{json, Value};

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

fn status_json(session: &Session, device: &DeviceId) -> ApiResult<Value> {
    let view = session.status_for(device).map_err(|_| no_call())?;
    Ok(json!({
        "call_session_id": session.id(),
        "status": view.status,
        "device_id": view.device_id,
        "reason": view.reason.as_ref().map(|r| r.code()),
        "version": view.version,
        "call_status": session.status().as_str(),
    }))
}

fn active_json(a: &ActiveCall) -> Value {
    json!({
        "call_session_id": a.call_session_id,
        "device_id": a.device_id,
        "started_at": a.started_at,
    })
}

/// `GET /api/voip/call-status/{id}`: the call as this device should see it (the polling
/// channel of dismissal).
pub async fn call_status(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let session = visible_call(&app, &auth, &call_id).await?;
    Ok(Json(status_json(&session, &auth.device.id)?))
}

/// `GET /api/voip/my-active-call`: the user's bridged call, if any.
pub async fn my_active_call(
    auth: DeviceAuth,
    State(app): State<AppState>,
) -> ApiResult<Json<Value>> {
    let active = app.store.active_calls(&auth.user.id).await?;
    Ok(Json(json!({
        "active_call": active.first().map(active_json),
        "active_calls": active.iter().map(active_json).collect::<Vec<_>>(),
    })))
}

/// `POST /api/voip/calls` body.
#[derive(Debug, Deserialize)]
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

/// `POST /api/voip/calls`: an outbound call from this device (it is rung first, then the
/// destination). 409 `call_collision` when the user is on a call and has no call waiting.
pub async fn place_call(
    auth: DeviceAuth,
    State(app): State<AppState>,
    ApiJson(req): ApiJson<PlaceCall>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    if !auth.user.call_waiting {
        let active = app.store.active_calls(&auth.user.id).await?;
        if let Some(call) = active.first() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "call_collision",
                "the user is already on a call",
            )
            .with_details(json!({ "active_call": active_json(call) })));
        }
    }
    let id = CallSessionId::new(uuid::Uuid::new_v4().to_string());
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
            Ok((
                StatusCode::CREATED,
                Json(json!({
                    "call_session_id": session.id(),
                    "status": session.status().as_str(),
                    "version": session.version(),
                })),
            ))
        }
        Created::Exists | Created::Duplicate => Err(ApiError::internal(format!(
            "fresh session id {id} already in use"
        ))),
    }
}

/// `POST /api/voip/calls/{id}/events` body: one canonical transition seen on the device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceReport {
    /// Per-device sequence number; a repeated one is acknowledged and ignored.
    seq: u64,
    from: CallState,
    to: CallState,
    #[serde(default)]
    trigger: Option<Trigger>,
    /// Device clock, ms since the epoch (kept as reported).
    #[serde(default)]
    at: Option<u64>,
    /// The reporting client's own WebSocket connection, left out of the broadcast (as the
    /// `X-Socket-ID` header).
    #[serde(default)]
    socket_id: Option<String>,
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

fn platform(p: DevicePlatform) -> Platform {
    match p {
        DevicePlatform::Ios => Platform::Ios,
        DevicePlatform::Android => Platform::Android,
        DevicePlatform::Web => Platform::Web,
    }
}

/// Whether the core table has a row for this report on this device.
fn legal(report: &DeviceReport, direction: Direction, platform: Platform) -> bool {
    let fits = |row: &ringmaster_core::TransitionRow| {
        row.to == report.to && row.allows(direction) && row.platforms.contains(&platform)
    };
    match &report.trigger {
        Some(trigger) => row_for(report.from, trigger.kind()).is_some_and(fits),
        None => rows_between(report.from, report.to).any(fits),
    }
}

/// `POST /api/voip/calls/{id}/events`: the device reports a transition; it is validated by the
/// core table, appended to the timeline and broadcast as `call_state_changed` (not to the
/// reporter's own WebSocket connection, when it names one).
pub async fn report(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
    headers: HeaderMap,
    ApiJson(report): ApiJson<DeviceReport>,
) -> ApiResult<Json<Value>> {
    let exclude_socket =
        sender_socket(&headers, report.socket_id.as_deref())?.map(|s| s.as_str().to_owned());
    let session = visible_call(&app, &auth, &call_id).await?;
    session.status_for(&auth.device.id).map_err(|_| no_call())?;
    crate::routes::guard::may_report(&app, &auth, &session).await?;
    let direction = match session.direction() {
        ringmaster_core::session::Direction::Inbound => Direction::Inbound,
        ringmaster_core::session::Direction::Outbound => Direction::Outbound,
    };
    let platform = platform(auth.device.platform);
    if let Some(Err(e)) = report.trigger.as_ref().map(Trigger::validate) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_trigger",
            e.to_string(),
        ));
    }
    if !legal(&report, direction, platform) {
        let via = report
            .trigger
            .map(|t| format!(" on {t}"))
            .unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "illegal_transition",
            format!(
                "{} -> {}{via} is not a legal transition for an {} call on {}",
                report.from,
                report.to,
                direction.as_str(),
                platform
            ),
        )
        .with_details(json!({ "from": report.from, "to": report.to })));
    }
    let device = auth.device.id.clone();
    let dedupe = format!("device:{}:{}", device, report.seq);
    let detail = json!({
        "seq": report.seq,
        "trigger": report.trigger,
        "reported_at": report.at,
        "platform": platform,
    });
    let applied = app
        .engine
        .apply_with(session.id(), Some(dedupe), |s, now| {
            s.status_for(&device)?;
            let notify = Effect::Notify(Notification {
                tenant: s.tenant().clone(),
                user: s.user().clone(),
                call_session_id: s.id().clone(),
                channel: Channel::WebSocket,
                event: NotifyEvent::CallStateChanged {
                    device: Some(device.clone()),
                    state: report.to.as_str().to_owned(),
                    version: s.version(),
                },
                exclude_socket: exclude_socket.clone(),
            });
            Ok(Step {
                effects: vec![notify],
                timeline: vec![TimelineEntry {
                    call_session_id: s.id().clone(),
                    at: now,
                    source: TimelineSource::Device,
                    device_id: Some(device.clone()),
                    kind: "device.transition".to_owned(),
                    from_state: Some(report.from.as_str().to_owned()),
                    to_state: Some(report.to.as_str().to_owned()),
                    detail: detail.clone(),
                }],
            })
        })
        .await?;
    match applied {
        Applied::Committed(_) | Applied::Unchanged(_) => {
            Ok(Json(json!({ "accepted": true, "duplicate": false })))
        }
        Applied::Duplicate => Ok(Json(json!({ "accepted": false, "duplicate": true }))),
        Applied::Refused(_) => Err(no_call()),
    }
}

async fn device_input(
    app: &AppState,
    auth: &DeviceAuth,
    call_id: &str,
    input: Input,
) -> ApiResult<Json<Value>> {
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
pub async fn decline(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let input = Input::DeviceDecline {
        device: auth.device.id.clone(),
    };
    device_input(&app, &auth, &call_id, input).await
}

/// `POST /api/voip/calls/{id}/ignore`: stop ringing on this device only.
pub async fn ignore(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let input = Input::DeviceIgnore {
        device: auth.device.id.clone(),
    };
    device_input(&app, &auth, &call_id, input).await
}

/// `GET /api/voip/calls` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /api/voip/calls`: the user's call history, newest first, paginated by cursor.
pub async fn history(
    auth: DeviceAuth,
    State(app): State<AppState>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let page = app
        .store
        .list_calls(&auth.user.id, q.cursor.as_deref(), limit)
        .await?;
    let items = page
        .items
        .iter()
        .map(call_json)
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(json!({
        "items": items,
        "next_cursor": page.next_cursor,
    })))
}

/// A history record with its billing figures and quality summary, which are derived from the
/// stored record rather than stored.
fn call_json(call: &CallRecord) -> ApiResult<Value> {
    let mut value = serde_json::to_value(call).map_err(ApiError::internal)?;
    let summary = call.quality.as_ref().and_then(summarize_telnyx);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("billable_seconds".into(), call.billable_seconds().into());
        obj.insert("billing_minutes".into(), call.billing_minutes().into());
        obj.insert(
            "quality_summary".into(),
            serde_json::to_value(summary).map_err(ApiError::internal)?,
        );
    }
    Ok(value)
}

/// `GET /api/voip/calls/{id}`: one call with its legs and timeline.
pub async fn call_detail(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let detail = app
        .store
        .get_call(&auth.user.id, &CallSessionId::new(call_id))
        .await?
        .ok_or_else(no_call)?;
    Ok(Json(json!({
        "call": call_json(&detail.call)?,
        "legs": detail.legs,
        "timeline": detail.timeline,
    })))
}

/// Largest body `PUT /api/voip/devices/{id}/push-token` accepts: one token of at most
/// [`ringmaster_store::limits::MAX_PUSH_TOKEN_LEN`] bytes and a provider name.
pub const PUSH_TOKEN_BODY_LIMIT: usize = 8 * 1024;
/// Longest APNs device token accepted (hex; 64 characters today).
const MAX_APNS_TOKEN: usize = 200;

/// `PUT /api/voip/devices/{id}/push-token` body.
#[derive(Debug, Deserialize)]
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
pub async fn register_push_token(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(device_id): Path<String>,
    ApiJson(req): ApiJson<PushTokenRequest>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({
        "device_id": auth.device.id,
        "push_provider": provider.as_str(),
        "registered": true,
    })))
}

/// `DELETE /api/voip/devices/{id}/push-token`: the device stops receiving pushes (sign-out).
pub async fn remove_push_token(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(device_id): Path<String>,
) -> ApiResult<Json<Value>> {
    own_device(&auth, &device_id)?;
    if let Some(token) = &auth.device.push_token {
        app.store.clear_push_token(&auth.device.id, token).await?;
    }
    Ok(Json(json!({
        "device_id": auth.device.id,
        "registered": false,
    })))
}
