//! Admin API (bearer admin token): users, their numbers and devices; device tokens.

use super::views::{ErrorBody, NewDeviceView, SandboxView, UserView};
use super::{is_e164, ApiJson};
use crate::app::AppState;
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::tokens::token_hash;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ringmaster_core::{DeviceId, TenantId, UserId};
use ringmaster_store::{Device, DevicePlatform, User, UserSettings};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// Longest device SIP URI (sessions refuse longer addresses).
const MAX_SIP_URI: usize = 256;
/// Longest user display name.
const MAX_NAME: usize = 200;
/// Longest tenant id.
const MAX_TENANT: usize = 128;
/// Tenant of users created without one.
pub const DEFAULT_TENANT: &str = "default";

/// `POST /api/admin/users` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    #[serde(default)]
    numbers: Vec<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    call_waiting: bool,
    #[serde(default)]
    voicemail: bool,
}

/// `PATCH /api/admin/users/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default)]
    call_waiting: Option<bool>,
    #[serde(default)]
    voicemail: Option<bool>,
}

/// `POST /api/admin/users/{id}/devices` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    platform: String,
    sip_uri: String,
}

fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TENANT
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_sip_uri(uri: &str) -> bool {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"));
    uri.len() <= MAX_SIP_URI
        && rest.is_some_and(|r| !r.is_empty())
        && !uri.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// `POST /api/admin/users`: creates a user with its numbers.
#[utoipa::path(post, path = "/api/admin/users", tag = "admin", request_body = NewUser,
    security(("admin_token" = [])),
    responses((status = 201, body = UserView), (status = "4XX", body = ErrorBody)))]
pub async fn create_user(
    _: Admin,
    State(app): State<AppState>,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::bad_request(format!(
            "name must be 1..={MAX_NAME} characters"
        )));
    }
    if let Some(bad) = req.numbers.iter().find(|n| !is_e164(n)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_number",
            format!(
                "{:?} is not an E.164 number (+ and up to 15 digits)",
                bad.chars().take(32).collect::<String>()
            ),
        ));
    }
    let tenant = req.tenant_id.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    if !valid_tenant(&tenant) {
        return Err(ApiError::bad_request(format!(
            "tenant_id must be 1..={MAX_TENANT} of A-Z a-z 0-9 - _ ."
        )));
    }
    let user = User {
        id: UserId::new(new_id("usr")),
        tenant_id: TenantId::new(tenant),
        name: name.to_owned(),
        numbers: req.numbers,
        call_waiting: req.call_waiting,
        voicemail_enabled: req.voicemail,
        created_at: app.engine.now(),
    };
    let user = app.store.create_user(user).await?;
    tracing::info!(user_id = %user.id, "user created");
    Ok((StatusCode::CREATED, Json(UserView::new(&user, Some(&[])))))
}

/// `GET /api/admin/users/{id}`: the user and its devices.
#[utoipa::path(get, path = "/api/admin/users/{user_id}", tag = "admin",
    params(("user_id" = String, Path, description = "User id")),
    security(("admin_token" = [])),
    responses((status = 200, body = UserView), (status = "4XX", body = ErrorBody)))]
pub async fn get_user(
    _: Admin,
    State(app): State<AppState>,
    Path(user_id): Path<String>,
) -> ApiResult<Json<UserView>> {
    let id = UserId::new(user_id);
    let user = app
        .store
        .get_user(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let devices = app.store.devices_of_user(&id).await?;
    Ok(Json(UserView::new(&user, Some(&devices))))
}

/// `PATCH /api/admin/users/{id}`: call waiting and voicemail switches.
#[utoipa::path(patch, path = "/api/admin/users/{user_id}", tag = "admin", request_body = UserPatch,
    params(("user_id" = String, Path, description = "User id")),
    security(("admin_token" = [])),
    responses((status = 200, body = UserView), (status = "4XX", body = ErrorBody)))]
pub async fn update_user(
    _: Admin,
    State(app): State<AppState>,
    Path(user_id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<UserView>> {
    let id = UserId::new(user_id);
    let user = app
        .store
        .get_user(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    let settings = UserSettings {
        call_waiting: patch.call_waiting.unwrap_or(user.call_waiting),
        voicemail_enabled: patch.voicemail.unwrap_or(user.voicemail_enabled),
    };
    let user = app.store.update_user_settings(&id, settings).await?;
    Ok(Json(UserView::new(&user, None)))
}

/// `POST /api/admin/users/{id}/devices`: registers a device; the answer carries its token
/// (shown once; only its hash is stored).
#[utoipa::path(post, path = "/api/admin/users/{user_id}/devices", tag = "admin",
    request_body = NewDevice,
    params(("user_id" = String, Path, description = "User id")),
    security(("admin_token" = [])),
    responses((status = 201, body = NewDeviceView), (status = "4XX", body = ErrorBody)))]
pub async fn create_device(
    _: Admin,
    State(app): State<AppState>,
    Path(user_id): Path<String>,
    ApiJson(req): ApiJson<NewDevice>,
) -> ApiResult<(StatusCode, Json<NewDeviceView>)> {
    let platform: DevicePlatform = req
        .platform
        .parse()
        .map_err(|_| ApiError::bad_request("platform must be one of ios, android, web"))?;
    if !valid_sip_uri(&req.sip_uri) {
        return Err(ApiError::bad_request(format!(
            "sip_uri must be a sip: or sips: URI of at most {MAX_SIP_URI} bytes without spaces"
        )));
    }
    let id = DeviceId::new(new_id("dev"));
    let (token, expires_at) = issue_token(&app, &id);
    let device = Device {
        id,
        user_id: UserId::new(user_id),
        platform,
        sip_uri: req.sip_uri,
        token_hash: token_hash(&token),
        push_token: None,
        push_provider: None,
        revoked: false,
        created_at: app.engine.now(),
    };
    let device = app.store.create_device(device).await?;
    tracing::info!(device_id = %device.id, user_id = %device.user_id, "device registered");
    Ok((
        StatusCode::CREATED,
        Json(NewDeviceView {
            device: (&device).into(),
            token,
            token_expires_at: expires_at,
        }),
    ))
}

/// A fresh token for `device` under the configured lifetime, and its expiry (Unix seconds).
fn issue_token(app: &AppState, device: &DeviceId) -> (String, Option<u64>) {
    let expires_at = app
        .settings
        .device_token_ttl
        .map(|ttl| app.engine.now().as_millis() / 1000 + ttl.as_secs());
    (app.tokens.issue_until(device, expires_at), expires_at)
}

/// `DELETE /api/admin/devices/{id}`: revokes a device. Its token is refused from now on, it is
/// no longer rung, and its WebSocket connections on every node are closed with 4009
/// (`sockets_closed` counts this node's).
/// Revoking twice is harmless.
#[utoipa::path(delete,
    path = "/api/admin/devices/{device_id}",
    tag = "admin",
    params(("device_id" = String, Path, description = "The device")),
    security(("admin_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn revoke_device(
    _: Admin,
    State(app): State<AppState>,
    Path(device_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = DeviceId::new(device_id);
    app.store.revoke_device(&id).await?;
    let sockets_closed = match &app.realtime {
        Some(hub) => hub.revoke_device(&id).await,
        None => 0,
    };
    tracing::info!(device_id = %id, sockets_closed, "device revoked");
    Ok(Json(json!({
        "id": id,
        "revoked": true,
        "sockets_closed": sockets_closed,
    })))
}

/// `POST /api/admin/devices/{id}/token`: issues a new token for a device; the old one stops
/// working at once. 409 `device_revoked` for a revoked device.
#[utoipa::path(post,
    path = "/api/admin/devices/{device_id}/token",
    tag = "admin",
    params(("device_id" = String, Path, description = "The device")),
    security(("admin_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn reissue_token(
    _: Admin,
    State(app): State<AppState>,
    Path(device_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = DeviceId::new(device_id);
    let device = app
        .store
        .get_device(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such device"))?;
    if device.revoked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "device_revoked",
            "a revoked device gets no new token; register a new device",
        ));
    }
    let (token, expires_at) = issue_token(&app, &id);
    app.store.set_device_token(&id, &token_hash(&token)).await?;
    tracing::info!(device_id = %id, "device token re-issued");
    Ok(Json(json!({
        "id": id,
        "token": token,
        "token_expires_at": expires_at,
    })))
}

/// `GET /api/admin/sandbox`: where the built-in emulator listens (404 outside sandbox mode).
#[utoipa::path(get, path = "/api/admin/sandbox", tag = "admin",
    security(("admin_token" = [])),
    responses((status = 200, body = SandboxView), (status = "4XX", body = ErrorBody)))]
pub async fn sandbox(_: Admin, State(app): State<AppState>) -> ApiResult<Json<SandboxView>> {
    let sandbox = app
        .sandbox
        .as_ref()
        .ok_or_else(|| ApiError::not_found("not in sandbox mode"))?;
    Ok(Json(SandboxView {
        emulator_url: sandbox.emulator_url.clone(),
        telnyx_api_url: sandbox.telnyx_api_url.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris_and_tenants_are_checked() {
        assert!(valid_sip_uri("sip:alice@example.com"));
        assert!(valid_sip_uri("sips:bob@example.com"));
        for bad in [
            "alice@example.com",
            "sip:",
            "sip:a b@x",
            "tel:+1555",
            &format!("sip:{}", "a".repeat(300)),
        ] {
            assert!(!valid_sip_uri(bad), "{bad}");
        }
        assert!(valid_tenant("acme-1.eu_west"));
        assert!(!valid_tenant(""));
        assert!(!valid_tenant("a/b"));
    }
}
