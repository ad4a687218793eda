//! HTTP surface: Telnyx's `/v2/calls` endpoints and the `/_emulator` control API.

use super::delivery::{apply_faults, take_command_fault};
use super::world::{parse_dial, ApiFailure};
use super::{
    lock, CommandOutcome, CommandRecord, ControlError, EndpointScript, Faults, LogEntry,
    RemoteRejectCause, Shared, MAX_REQUEST_BYTES,
};
use crate::api_error::{codes, ApiError, ErrorBody};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

type AppState = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v2/calls", post(dial))
        .route("/v2/calls/{call_control_id}", get(call_status))
        .route("/v2/calls/{call_control_id}/actions/{action}", post(action))
        .route("/_emulator/calls", post(inbound_call).get(list_calls))
        .route("/_emulator/calls/{call_control_id}", get(get_call))
        .route(
            "/_emulator/calls/{call_control_id}/answer",
            post(remote_answer),
        )
        .route(
            "/_emulator/calls/{call_control_id}/reject",
            post(remote_reject),
        )
        .route(
            "/_emulator/calls/{call_control_id}/hangup",
            post(remote_hangup),
        )
        .route("/_emulator/endpoints", post(script_endpoint))
        .route("/_emulator/faults", post(set_faults).get(get_faults))
        .route("/_emulator/log", get(get_log).delete(clear_log))
        .route("/_emulator/public_key", get(public_key))
        .route("/_emulator/recordings/{file}", get(recording))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(shared)
}

fn telnyx_error(status: u16, error: ApiError) -> (StatusCode, Value) {
    let body = serde_json::to_value(ErrorBody {
        errors: vec![error],
    })
    .unwrap_or_default();
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(key) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    match &shared.config.api_key {
        Some(expected) => key == expected,
        None => !key.is_empty(),
    }
}

async fn dial(State(shared): AppState, headers: HeaderMap, body: Bytes) -> Response {
    command(&shared, &headers, &body, "dial", None)
}

async fn action(
    State(shared): AppState,
    Path((call_control_id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    command(&shared, &headers, &body, &action, Some(call_control_id))
}

/// The pipeline every command goes through: auth, injected faults, JSON, `command_id` dedupe,
/// execution; each command is logged once with what happened to it.
fn command(
    shared: &Shared,
    headers: &HeaderMap,
    raw: &[u8],
    action: &str,
    call_control_id: Option<String>,
) -> Response {
    let parsed: Option<Value> = if raw.iter().all(u8::is_ascii_whitespace) {
        Some(json!({}))
    } else {
        serde_json::from_slice(raw).ok()
    };
    let logged_body = parsed.clone().unwrap_or(Value::Null);
    let command_id = logged_body
        .get("command_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let log = |status: StatusCode, outcome: CommandOutcome| {
        shared.push_log(|seq| {
            LogEntry::Command(CommandRecord {
                seq,
                at_ms: super::now().as_millis(),
                action: action.to_owned(),
                call_control_id: call_control_id.clone(),
                command_id: command_id.clone(),
                body: logged_body.clone(),
                status: status.as_u16(),
                outcome,
            })
        })
    };

    if !authorized(shared, headers) {
        let (status, body) = telnyx_error(
            401,
            ApiError::new(
                codes::AUTH_FAILED,
                "Authentication failed",
                "Missing or invalid API key in the Authorization header.",
            ),
        );
        log(status, CommandOutcome::Unauthorized);
        return (status, Json(body)).into_response();
    }

    if let Some((status, retry_after)) = take_command_fault(shared) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        log(status, CommandOutcome::FaultInjected);
        let mut response = if status == StatusCode::TOO_MANY_REQUESTS {
            let (_, body) = telnyx_error(
                429,
                ApiError::new(
                    codes::TOO_MANY_REQUESTS,
                    "Too many requests",
                    "Rate limit exceeded (injected by the emulator).",
                ),
            );
            (status, Json(body)).into_response()
        } else {
            // Like a load balancer in trouble: not a Telnyx error document.
            (status, format!("{status} (injected by the emulator)")).into_response()
        };
        if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }

    let Some(body @ Value::Object(_)) = parsed else {
        let (status, body) = telnyx_error(
            400,
            ApiError::new(
                "10028",
                "Character encoding error",
                "The request body is not a JSON object.",
            ),
        );
        log(status, CommandOutcome::Failed);
        return (status, Json(body)).into_response();
    };

    let scope = call_control_id.clone().unwrap_or_else(|| "dial".to_owned());
    let (status, response) = shared.with_world(|world, now| {
        if let Some(id) = &command_id {
            if let Some((status, body)) = world.deduplicated(&scope, id, now) {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                log(status, CommandOutcome::Deduplicated);
                return ((status, body), Vec::new());
            }
        }
        let result = match &call_control_id {
            None => parse_dial(body)
                .and_then(|req| world.dial(req, now))
                .map(|(data, effects)| (json!({ "data": data }), effects)),
            Some(ccid) => world
                .action(ccid, action, body, now)
                .map(|(data, effects)| (json!({ "data": data }), effects)),
        };
        match result {
            Ok((body, effects)) => {
                // Only commands that acted are remembered: a refused one changed nothing, so a
                // retry with the same id deserves a fresh look.
                if let Some(id) = &command_id {
                    world.remember(&scope, id, now, 200, body.clone());
                }
                log(StatusCode::OK, CommandOutcome::Executed);
                ((StatusCode::OK, body), effects)
            }
            Err(ApiFailure { status, error }) => {
                let (status, body) = telnyx_error(status, *error);
                log(status, CommandOutcome::Failed);
                ((status, body), Vec::new())
            }
        }
    });
    (status, Json(response)).into_response()
}

async fn call_status(
    State(shared): AppState,
    Path(call_control_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&shared, &headers) {
        let (status, body) = telnyx_error(
            401,
            ApiError::new(
                codes::AUTH_FAILED,
                "Authentication failed",
                "Missing or invalid API key.",
            ),
        );
        return (status, Json(body)).into_response();
    }
    let result = lock(&shared.world).status(&call_control_id, super::now());
    match result {
        Ok(data) => Json(json!({ "data": data })).into_response(),
        Err(ApiFailure { status, error }) => {
            let (status, body) = telnyx_error(status, *error);
            (status, Json(body)).into_response()
        }
    }
}

fn control_error(error: ControlError) -> Response {
    let (status, code) = match &error {
        ControlError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ControlError::Ended(_) => (StatusCode::CONFLICT, "call_ended"),
        ControlError::InvalidState(_) => (StatusCode::CONFLICT, "invalid_state"),
        ControlError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
    };
    (
        status,
        Json(json!({ "error": { "code": code, "message": error.to_string() } })),
    )
        .into_response()
}

fn parse_body<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ControlError> {
    let raw: &[u8] = if raw.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        raw
    };
    serde_json::from_slice(raw).map_err(|e| ControlError::BadRequest(e.to_string()))
}

#[derive(Deserialize)]
struct InboundBody {
    from: String,
    to: String,
    #[serde(default)]
    connection_id: Option<String>,
}

async fn inbound_call(State(shared): AppState, raw: Bytes) -> Response {
    let body: InboundBody = match parse_body(&raw) {
        Ok(b) => b,
        Err(e) => return control_error(e),
    };
    if body.from.trim().is_empty() || body.to.trim().is_empty() {
        return control_error(ControlError::BadRequest("from and to are required".into()));
    }
    let call =
        shared.with_world(|w, now| w.inbound_call(body.from, body.to, body.connection_id, now));
    (StatusCode::CREATED, Json(call)).into_response()
}

async fn list_calls(State(shared): AppState) -> Response {
    Json(json!({ "calls": lock(&shared.world).snapshots() })).into_response()
}

async fn get_call(State(shared): AppState, Path(call_control_id): Path<String>) -> Response {
    match lock(&shared.world).snapshot(&call_control_id) {
        Some(call) => Json(call).into_response(),
        None => control_error(ControlError::NotFound(call_control_id)),
    }
}

fn control_result(shared: &Shared, ccid: &str, result: Result<(), ControlError>) -> Response {
    match result {
        Ok(()) => Json(lock(&shared.world).snapshot(ccid)).into_response(),
        Err(e) => control_error(e),
    }
}

fn run_control(
    shared: &Shared,
    f: impl FnOnce(
        &mut super::World,
        ringmaster_core::Timestamp,
    ) -> Result<Vec<super::Effect>, ControlError>,
) -> Result<(), ControlError> {
    shared.with_world(|w, now| match f(w, now) {
        Ok(effects) => (Ok(()), effects),
        Err(e) => (Err(e), Vec::new()),
    })
}

async fn remote_answer(State(shared): AppState, Path(ccid): Path<String>) -> Response {
    let result = run_control(&shared, |w, now| w.control_answer(&ccid, now));
    control_result(&shared, &ccid, result)
}

#[derive(Deserialize)]
struct RejectBody {
    #[serde(default)]
    cause: RemoteRejectCause,
}

async fn remote_reject(State(shared): AppState, Path(ccid): Path<String>, raw: Bytes) -> Response {
    let body: RejectBody = match parse_body(&raw) {
        Ok(b) => b,
        Err(e) => return control_error(e),
    };
    let result = run_control(&shared, |w, now| w.control_reject(&ccid, body.cause, now));
    control_result(&shared, &ccid, result)
}

async fn remote_hangup(State(shared): AppState, Path(ccid): Path<String>) -> Response {
    let result = run_control(&shared, |w, now| w.control_hangup(&ccid, now));
    control_result(&shared, &ccid, result)
}

#[derive(Deserialize)]
struct ScriptBody {
    to: String,
    script: EndpointScript,
}

async fn script_endpoint(State(shared): AppState, raw: Bytes) -> Response {
    let body: ScriptBody = match parse_body(&raw) {
        Ok(b) => b,
        Err(e) => return control_error(e),
    };
    if body.to.trim().is_empty() {
        return control_error(ControlError::BadRequest("to is required".into()));
    }
    lock(&shared.world).set_script(body.to.clone(), body.script.clone());
    Json(json!({ "to": body.to, "script": body.script })).into_response()
}

async fn set_faults(State(shared): AppState, raw: Bytes) -> Response {
    let faults: Faults = match parse_body(&raw) {
        Ok(f) => f,
        Err(e) => return control_error(e),
    };
    match apply_faults(&shared, faults) {
        Ok(state) => Json(state).into_response(),
        Err(e) => control_error(e),
    }
}

async fn get_faults(State(shared): AppState) -> Response {
    Json(lock(&shared.faults).clone()).into_response()
}

async fn get_log(State(shared): AppState) -> Response {
    Json(json!({ "entries": lock(&shared.log).entries })).into_response()
}

async fn clear_log(State(shared): AppState) -> Response {
    lock(&shared.log).entries.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn public_key(State(shared): AppState) -> Response {
    Json(json!({ "public_key": shared.signer.public_key_b64() })).into_response()
}

/// Serves a saved recording as silence of the recorded length (WAV only).
async fn recording(State(shared): AppState, Path(file): Path<String>) -> Response {
    let Some(id) = file.strip_suffix(".wav") else {
        return control_error(ControlError::NotFound(format!(
            "{file}: the emulator renders recordings as .wav only"
        )));
    };
    let Some(length) = lock(&shared.world).recording_length(id) else {
        return control_error(ControlError::NotFound(file));
    };
    (
        [(header::CONTENT_TYPE, "audio/wav")],
        silent_wav(length.min(Duration::from_secs(60))),
    )
        .into_response()
}

/// 8 kHz mono 16-bit PCM silence.
fn silent_wav(length: Duration) -> Vec<u8> {
    const RATE: u32 = 8000;
    let samples = u32::try_from(length.as_millis() * u128::from(RATE) / 1000).unwrap_or(0);
    let data_len = samples * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.resize(44 + data_len as usize, 0);
    wav
}
