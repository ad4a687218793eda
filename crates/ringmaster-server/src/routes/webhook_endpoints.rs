//! Admin API of outbound webhook endpoints (the host app's receivers).

use super::views::ErrorBody;
use super::ApiJson;
use crate::app::AppState;
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::host_webhooks::new_secret;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ringmaster_core::Timestamp;
use ringmaster_store::host_event::EVENT_TYPES;
use ringmaster_store::webhook_store::{AttemptRecord, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest endpoint URL.
const MAX_URL: usize = 2048;
/// Attempts shown per endpoint.
const SHOWN_ATTEMPTS: u32 = 20;

/// `POST /api/admin/webhook-endpoints` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// `https://` (or `http://`) URL events are POSTed to.
    url: String,
    /// Event types to receive: `call.ringing`, `call.answered`, `call.missed`,
    /// `call.declined`, `call.ended`, `voicemail.saved`, `device.push_token_invalid`.
    events: Vec<String>,
}

/// An endpoint as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    /// Endpoint id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// Subscribed event types.
    pub events: Vec<String>,
    /// Signing secret (`whsec_` + base64 of 32 bytes); only in the answer to the create.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// Disabled for failing too long; nothing is sent to it any more.
    pub disabled: bool,
    /// When it was disabled.
    pub disabled_at: Option<u64>,
    /// Why.
    pub disabled_reason: Option<String>,
    /// Start of the current run of failures.
    pub failing_since: Option<u64>,
    /// Failed attempts on the event it is stuck on.
    pub failed_attempts: u32,
    /// The latest delivery attempts, newest first (on `GET .../{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_attempts: Option<Vec<AttemptView>>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// The event's `webhook-id`.
    pub event_id: String,
    /// Milliseconds since the epoch.
    pub at: u64,
    /// The endpoint's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Whether it was delivered (2xx).
    pub delivered: bool,
    /// What went wrong.
    pub error: Option<String>,
}

/// `GET /api/admin/webhook-endpoints`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    /// Endpoints, oldest first.
    pub items: Vec<EndpointView>,
}

fn millis(t: Option<Timestamp>) -> Option<u64> {
    t.map(Timestamp::as_millis)
}

fn view(e: &WebhookEndpoint, attempts: Option<Vec<AttemptRecord>>) -> EndpointView {
    EndpointView {
        id: e.id.clone(),
        url: e.url.clone(),
        events: e.events.clone(),
        secret: None,
        created_at: e.created_at.as_millis(),
        disabled: e.disabled_at.is_some(),
        disabled_at: millis(e.disabled_at),
        disabled_reason: e.disabled_reason.clone(),
        failing_since: millis(e.failing_since),
        failed_attempts: e.attempts,
        recent_attempts: attempts.map(|all| {
            all.into_iter()
                .map(|a| AttemptView {
                    delivered: a.error.is_none(),
                    event_id: a.event_id,
                    at: a.at.as_millis(),
                    status_code: a.status_code,
                    error: a.error,
                })
                .collect()
        }),
    }
}

fn valid_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    url.len() <= MAX_URL
        && rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

async fn find(app: &AppState, id: &str) -> ApiResult<WebhookEndpoint> {
    app.store
        .webhook_endpoints()
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ApiError::not_found("no such webhook endpoint"))
}

/// `POST /api/admin/webhook-endpoints`: registers a receiver; the answer carries its signing
/// secret (shown once).
#[utoipa::path(post, path = "/api/admin/webhook-endpoints", tag = "admin",
    request_body = NewEndpoint, security(("admin_token" = [])),
    responses((status = 201, body = EndpointView), (status = "4XX", body = ErrorBody)))]
pub async fn create(
    _: Admin,
    State(app): State<AppState>,
    ApiJson(req): ApiJson<NewEndpoint>,
) -> ApiResult<(StatusCode, Json<EndpointView>)> {
    if !valid_url(&req.url) {
        return Err(ApiError::bad_request(format!(
            "url must be an http(s) URL of at most {MAX_URL} bytes"
        )));
    }
    let mut events: Vec<String> = Vec::new();
    for event in req.events {
        if !EVENT_TYPES.contains(&event.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_event",
                format!("events must be among {}", EVENT_TYPES.join(", ")),
            ));
        }
        if !events.contains(&event) {
            events.push(event);
        }
    }
    if events.is_empty() {
        return Err(ApiError::bad_request("events must name at least one event"));
    }
    let now = app.engine.now();
    let endpoint = WebhookEndpoint {
        id: format!("whe_{}", uuid::Uuid::new_v4().simple()),
        url: req.url,
        events,
        secret: new_secret(),
        created_at: now,
        cursor: 0,
        attempts: 0,
        next_attempt_at: now,
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
    };
    let endpoint = app.store.create_webhook_endpoint(endpoint).await?;
    tracing::info!(endpoint = %endpoint.id, url = %endpoint.url, "webhook endpoint registered");
    let mut body = view(&endpoint, None);
    body.secret = Some(endpoint.secret);
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /api/admin/webhook-endpoints`: every endpoint, with its state.
#[utoipa::path(get, path = "/api/admin/webhook-endpoints", tag = "admin",
    security(("admin_token" = [])),
    responses((status = 200, body = EndpointList), (status = "4XX", body = ErrorBody)))]
pub async fn list(_: Admin, State(app): State<AppState>) -> ApiResult<Json<EndpointList>> {
    let items = app
        .store
        .webhook_endpoints()
        .await?
        .iter()
        .map(|e| view(e, None))
        .collect();
    Ok(Json(EndpointList { items }))
}

/// `GET /api/admin/webhook-endpoints/{id}`: one endpoint with its latest delivery attempts.
#[utoipa::path(get, path = "/api/admin/webhook-endpoints/{id}", tag = "admin",
    params(("id" = String, Path, description = "Endpoint id")),
    security(("admin_token" = [])),
    responses((status = 200, body = EndpointView), (status = "4XX", body = ErrorBody)))]
pub async fn get(
    _: Admin,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    let endpoint = find(&app, &id).await?;
    let attempts = app.store.webhook_attempts(&id, SHOWN_ATTEMPTS).await?;
    Ok(Json(view(&endpoint, Some(attempts))))
}

/// `DELETE /api/admin/webhook-endpoints/{id}`: stops deliveries to the endpoint.
#[utoipa::path(delete, path = "/api/admin/webhook-endpoints/{id}", tag = "admin",
    params(("id" = String, Path, description = "Endpoint id")),
    security(("admin_token" = [])),
    responses((status = 204, description = "Deleted"), (status = "4XX", body = ErrorBody)))]
pub async fn delete(
    _: Admin,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if app.store.delete_webhook_endpoint(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such webhook endpoint"))
    }
}
