//! The web console: the built web app (`web/dist`, embedded in the binary) served at `/` and
//! `/operator`, and the device routes the app needs beyond the phone API (`/api/voip/me`,
//! `/api/voip/my-ringing-calls`, and the sandbox's simulated call and answer).
//!
//! The assets are committed, not built by a build script, so `cargo build` never needs Node;
//! `scripts/test-web` rebuilds them and fails when the committed copy is stale.

use crate::app::AppState;
use crate::auth::DeviceAuth;
use crate::error::{ApiError, ApiResult};
use crate::routes::voip::{platform, status_json};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ringmaster_core::session::DeviceStatus;
use ringmaster_core::{CallSessionId, DeviceId, Platform};
use ringmaster_store::{CallStatus, Device};
use serde::Serialize;
use serde_json::{json, Value};

/// The app's page; `/` and `/operator` both load it and it picks its view from the path.
const INDEX_HTML: &[u8] = include_bytes!("../../../web/dist/index.html");
/// The app's script (fixed name: the Vite config turns hashing off).
const APP_JS: &[u8] = include_bytes!("../../../web/dist/assets/app.js");
/// The app's style sheet.
const APP_CSS: &[u8] = include_bytes!("../../../web/dist/assets/app.css");

/// How many of the newest history records are searched for calls still ringing. A call rings
/// at most 600 s, so only a user placing more calls than this within that time could miss one.
const RINGING_SCAN: u32 = 50;
/// The caller number of the sandbox's simulated incoming calls.
pub const SANDBOX_CALLER: &str = "+15557654321";

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Unhashed names: the browser must revalidate after an upgrade.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

/// The static pages and assets of the web console, plus its public settings
/// (`GET /api/web/config`: the Pusher key the page connects with).
pub fn routes(pusher_key: Option<String>, sandbox: bool) -> Router {
    let config = WebConfig {
        pusher_key,
        sandbox,
    };
    Router::new()
        .route("/", get(index))
        .route("/operator", get(index))
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/api/web/config",
            get(move || {
                let config = config.clone();
                async move { Json(config) }
            }),
        )
}

/// `GET /api/web/config`: what the page needs before it has a token.
#[derive(Clone, Debug, Serialize)]
pub struct WebConfig {
    /// The Pusher app key of the WebSocket server (`None` when real-time is not served).
    pub pusher_key: Option<String>,
    /// Whether the server runs against the built-in emulator (the page offers a simulated call).
    pub sandbox: bool,
}

/// The device routes of the web console, merged into the device API router.
pub fn device_routes() -> Router<AppState> {
    Router::new()
        .route("/api/voip/me", get(me))
        .route("/api/voip/my-ringing-calls", get(my_ringing_calls))
        .route(
            "/api/voip/sandbox/incoming-call",
            post(sandbox_incoming_call),
        )
        .route(
            "/api/voip/sandbox/calls/{call_id}/answer",
            post(sandbox_answer),
        )
}

/// One of the user's devices, as the signed-in device sees it (never its token).
#[derive(Debug, Serialize)]
pub struct SiblingDevice {
    /// Device id.
    pub id: DeviceId,
    /// Its platform.
    pub platform: Platform,
}

/// `GET /api/voip/me` answer.
#[derive(Debug, Serialize)]
pub struct Me {
    /// The signed-in device.
    pub device_id: DeviceId,
    /// Its platform.
    pub platform: Platform,
    /// Its user.
    pub user_id: ringmaster_core::UserId,
    /// The user's display name.
    pub user_name: String,
    /// The user's numbers (the first is the default caller id).
    pub numbers: Vec<String>,
    /// The Pusher channel the user's call events arrive on.
    pub channel: String,
    /// Every live device of the user, so the page can name the one that answered.
    pub devices: Vec<SiblingDevice>,
}

fn sibling(d: &Device) -> SiblingDevice {
    SiblingDevice {
        id: d.id.clone(),
        platform: platform(d.platform),
    }
}

/// `GET /api/voip/me`: who this token is, and where its events arrive.
#[utoipa::path(get,
    path = "/api/voip/me",
    tag = "device",
    security(("device_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn me(auth: DeviceAuth, State(app): State<AppState>) -> ApiResult<Json<Me>> {
    let channel = ringmaster_realtime::user_channel(&auth.user.id)
        .map_err(|e| ApiError::internal(format!("user has no valid channel: {e}")))?;
    let devices = app.store.devices_of_user(&auth.user.id).await?;
    Ok(Json(Me {
        device_id: auth.device.id.clone(),
        platform: platform(auth.device.platform),
        user_id: auth.user.id.clone(),
        user_name: auth.user.name.clone(),
        numbers: auth.user.numbers.clone(),
        channel: channel.to_string(),
        devices: devices.iter().filter(|d| !d.revoked).map(sibling).collect(),
    }))
}

/// `GET /api/voip/my-ringing-calls`: the user's calls that still ring, each with this device's
/// view of it (`status` is `ringing` when this device should ring), so a page that reconnects
/// mid-ring can show the call again.
#[utoipa::path(get,
    path = "/api/voip/my-ringing-calls",
    tag = "device",
    security(("device_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn my_ringing_calls(
    auth: DeviceAuth,
    State(app): State<AppState>,
) -> ApiResult<Json<Value>> {
    let page = app
        .store
        .list_calls(&auth.user.id, None, RINGING_SCAN)
        .await?;
    let mut calls = Vec::new();
    for record in page
        .items
        .iter()
        .filter(|c| c.status == CallStatus::Ringing)
    {
        let Some((session, _)) = app.engine.load(&record.call_session_id).await? else {
            continue;
        };
        // A call that does not ring this device (an outbound call of another device) has no
        // view for it and is left out.
        let Ok(view) = status_json(&session, &auth.device.id) else {
            continue;
        };
        let mut view = serde_json::to_value(view).map_err(ApiError::internal)?;
        if let Some(obj) = view.as_object_mut() {
            obj.insert("from".into(), record.from.clone().into());
            obj.insert("to".into(), record.to.clone().into());
            obj.insert("direction".into(), json!(record.direction));
            obj.insert("started_at".into(), json!(record.started_at));
        }
        calls.push(view);
    }
    Ok(Json(json!({ "ringing_calls": calls })))
}

fn sandbox_url(app: &AppState) -> ApiResult<String> {
    app.sandbox
        .as_ref()
        .map(|s| s.emulator_url.clone())
        .ok_or_else(|| ApiError::not_found("not in sandbox mode"))
}

async fn emulator_post(url: String, body: Value) -> ApiResult<Value> {
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| ApiError::internal(format!("the emulator did not answer: {e}")))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "emulator_error",
            format!("the emulator refused ({status}): {body}"),
        ));
    }
    Ok(body)
}

/// `POST /api/voip/sandbox/incoming-call`: in sandbox mode, a PSTN caller rings the user's first
/// number through the emulator (the page's "simulate an incoming call" button).
#[utoipa::path(post,
    path = "/api/voip/sandbox/incoming-call",
    tag = "device",
    security(("device_token" = [])),
    responses((status = 201, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn sandbox_incoming_call(
    auth: DeviceAuth,
    State(app): State<AppState>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let emulator = sandbox_url(&app)?;
    let to = auth.user.numbers.first().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_number",
            "the user has no number to call",
        )
    })?;
    let call = emulator_post(
        format!("{emulator}/calls"),
        json!({ "from": SANDBOX_CALLER, "to": to }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "call_session_id": call["call_session_id"], "from": SANDBOX_CALLER, "to": to }),
        ),
    ))
}

/// `POST /api/voip/sandbox/calls/{id}/answer`: in sandbox mode, this device's ringing leg
/// answers (what the browser's SIP client does outside the sandbox).
#[utoipa::path(post,
    path = "/api/voip/sandbox/calls/{call_id}/answer",
    tag = "device",
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn sandbox_answer(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let emulator = sandbox_url(&app)?;
    let id = CallSessionId::new(call_id);
    let detail = app
        .store
        .get_call(&auth.user.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such call"))?;
    let (session, _) = app
        .engine
        .load(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such call"))?;
    let view = session
        .status_for(&auth.device.id)
        .map_err(|_| ApiError::not_found("no such call"))?;
    if view.status != DeviceStatus::Ringing {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ringing",
            "the call no longer rings this device",
        ));
    }
    let leg = detail
        .legs
        .iter()
        .rev()
        .find(|l| l.device_id.as_ref() == Some(&auth.device.id) && l.ended_at.is_none())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "not_ringing",
                "this device has no ringing leg yet",
            )
        })?;
    emulator_post(
        format!("{emulator}/calls/{}/answer", leg.call_control_id),
        json!({}),
    )
    .await?;
    Ok(Json(
        json!({ "call_session_id": id, "answering": leg.call_control_id }),
    ))
}
