//! Pusher's HTTP publish API: `POST /apps/{app_id}/events` and `/batch_events`, signed with
//! the app secret and refused outside the timestamp window.

use crate::api_error::ApiError;
use crate::channel::{ChannelKind, ChannelName};
use crate::event::{Event, EventError};
use crate::hub::PublishError;
use crate::signing::{self, ApiAuthError, ApiCredentials};
use crate::socket_id::SocketId;
use crate::RouterState;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Pusher's cap on events per batch.
pub const MAX_BATCH_EVENTS: usize = 10;

#[derive(Deserialize)]
struct EventBody {
    name: String,
    data: Value,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Checks the app id and the request signature.
fn authenticate(
    state: &RouterState,
    method: &str,
    app_id: &str,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Result<(), ApiError> {
    let config = state.hub.config();
    if app_id != config.app_id {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "app_not_found",
            "unknown app id",
        ));
    }
    // Count before decoding anything: a long query of junk is refused in one pass.
    let query = uri.query().unwrap_or_default();
    if !query.is_empty() && query.split('&').count() > signing::MAX_API_PARAMS {
        return Err(bad_request(
            "too_many_parameters",
            format!(
                "at most {} query parameters are accepted",
                signing::MAX_API_PARAMS
            ),
        ));
    }
    let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| bad_request("invalid_query", e.body_text()))?;
    let creds = ApiCredentials {
        key: &config.key,
        secret: &config.secret,
        window: config.timestamp_window,
    };
    signing::verify_api_request(creds, method, uri.path(), &params, body, now_unix()).map_err(|e| {
        let code = match e {
            ApiAuthError::Timestamp(_) => "timestamp_out_of_window",
            ApiAuthError::BodyMd5 => "body_md5_mismatch",
            ApiAuthError::TooManyParams => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "too_many_parameters",
                    e.to_string(),
                )
            }
            _ => "invalid_signature",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    })
}

fn to_event(body: EventBody, max_data_bytes: usize) -> Result<Event, ApiError> {
    let names = match (body.channels, body.channel) {
        (Some(list), None) => list,
        (None, Some(one)) => vec![one],
        _ => {
            return Err(bad_request(
                "invalid_event",
                "give exactly one of channels or channel",
            ))
        }
    };
    let channels = names
        .iter()
        .map(|c| ChannelName::parse(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_request("invalid_channel", e.to_string()))?;
    let except = body
        .socket_id
        .map(|s| SocketId::parse(&s))
        .transpose()
        .map_err(|e| bad_request("invalid_socket_id", e.to_string()))?;
    // Pusher wants `data` as a string; an object is accepted and sent as its JSON text.
    let data = match body.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Event::new(channels, body.name, data, except, max_data_bytes).map_err(|e| match e {
        EventError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "data_too_large",
            e.to_string(),
        ),
        _ => bad_request("invalid_event", e.to_string()),
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad_request("invalid_body", e.to_string()))
}

async fn publish_all(state: &RouterState, events: &[Event]) -> Result<(), ApiError> {
    for event in events {
        match state.hub.publish_event(event).await {
            Ok(_) => {}
            Err(PublishError::Event(e)) => return Err(bad_request("invalid_event", e.to_string())),
            Err(e @ PublishError::Fanout { .. }) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "fanout_failed",
                    e.to_string(),
                ))
            }
        }
    }
    Ok(())
}

/// Handler for `POST /apps/{app_id}/events`.
pub(crate) async fn events(
    State(state): State<RouterState>,
    Path(app_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authenticate(&state, "POST", &app_id, &uri, &body)?;
    let event = to_event(parse_json(&body)?, state.hub.config().max_event_bytes)?;
    publish_all(&state, &[event]).await?;
    Ok(Json(json!({})))
}

/// Handler for `POST /apps/{app_id}/batch_events`.
pub(crate) async fn batch_events(
    State(state): State<RouterState>,
    Path(app_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authenticate(&state, "POST", &app_id, &uri, &body)?;
    let batch: BatchBody = parse_json(&body)?;
    if batch.batch.is_empty() || batch.batch.len() > MAX_BATCH_EVENTS {
        return Err(bad_request(
            "invalid_batch",
            format!("a batch holds 1 to {MAX_BATCH_EVENTS} events"),
        ));
    }
    let max = state.hub.config().max_event_bytes;
    // Validate the whole batch first so a bad item publishes nothing.
    let events = batch
        .batch
        .into_iter()
        .map(|e| to_event(e, max))
        .collect::<Result<Vec<_>, _>>()?;
    publish_all(&state, &events).await?;
    Ok(Json(json!({})))
}

/// One user in the answer of `GET /apps/{app_id}/channels/{channel}/users`.
#[derive(Serialize)]
pub struct ChannelUser {
    /// The user id.
    pub id: String,
}

/// Answer of `GET /apps/{app_id}/channels/{channel}/users`.
#[derive(Serialize)]
pub struct ChannelUsers {
    /// The users present on the channel, on every node, sorted by id.
    pub users: Vec<ChannelUser>,
}

/// Handler for `GET /apps/{app_id}/channels/{channel}/users`: a presence channel's members.
pub(crate) async fn channel_users(
    State(state): State<RouterState>,
    Path((app_id, channel)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<ChannelUsers>, ApiError> {
    authenticate(&state, "GET", &app_id, &uri, &[])?;
    let channel =
        ChannelName::parse(&channel).map_err(|e| bad_request("invalid_channel", e.to_string()))?;
    if channel.kind() != ChannelKind::Presence {
        return Err(bad_request(
            "invalid_channel",
            "users are listed for presence channels only",
        ));
    }
    let users = state
        .hub
        .presence_members(channel.as_str())
        .into_iter()
        .map(|m| ChannelUser { id: m.user_id })
        .collect();
    Ok(Json(ChannelUsers { users }))
}
