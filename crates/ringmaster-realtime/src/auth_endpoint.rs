//! `POST /broadcasting/auth`: signs private and presence subscriptions for authenticated
//! devices, as laravel-echo and pusher-js expect.

use crate::api_error::ApiError;
use crate::channel::{user_channel, user_presence_channel, ChannelKind, ChannelName};
use crate::socket_id::SocketId;
use crate::RouterState;
use async_trait::async_trait;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::{Form, Json};
use ringmaster_core::{DeviceId, TenantId, UserId};
use serde::Deserialize;
use serde_json::{json, Value};

/// Who a bearer token belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// The user whose channels the device may join.
    pub user_id: UserId,
    /// The user's tenant.
    pub tenant_id: TenantId,
    /// The device the token was issued to.
    pub device_id: DeviceId,
    /// Presence `user_info` (e.g. name, device kind); `null` when there is none.
    pub user_info: Value,
}

/// Resolves bearer tokens to principals and decides which channels they may join.
/// The server implements it on top of its device registry.
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// The principal a token belongs to, or `None` when the token is unknown or revoked.
    async fn authenticate(&self, bearer: &str) -> Option<Principal>;

    /// Whether `principal` may subscribe to `channel`; by default only its own user's
    /// `private-user.{id}` and `presence-user.{id}`.
    fn may_subscribe(&self, principal: &Principal, channel: &ChannelName) -> bool {
        owns_channel(principal, channel)
    }
}

/// Whether `channel` is one of the principal's own user channels.
pub fn owns_channel(principal: &Principal, channel: &ChannelName) -> bool {
    let own = |c: Result<ChannelName, _>| c.is_ok_and(|c| c == *channel);
    own(user_channel(&principal.user_id)) || own(user_presence_channel(&principal.user_id))
}

#[derive(Deserialize)]
struct AuthRequest {
    socket_id: String,
    channel_name: String,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn parse_body(request: Request) -> Result<AuthRequest, ApiError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let parsed = if is_json {
        Json::<AuthRequest>::from_request(request, &())
            .await
            .map(|j| j.0)
            .map_err(|e| (e.status(), e.body_text()))
    } else {
        Form::<AuthRequest>::from_request(request, &())
            .await
            .map(|f| f.0)
            .map_err(|e| (e.status(), e.body_text()))
    };
    parsed.map_err(|(status, text)| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(status, "body_too_large", text);
        }
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("expected socket_id and channel_name, form or JSON encoded: {text}"),
        )
    })
}

/// Handler for `POST /broadcasting/auth`.
pub(crate) async fn broadcasting_auth(
    State(state): State<RouterState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let token = bearer(request.headers())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "missing bearer token",
            )
        })?
        .to_owned();
    let request = parse_body(request).await?;
    let socket_id = SocketId::parse(&request.socket_id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_socket_id", e.to_string()))?;
    let channel = ChannelName::parse(&request.channel_name)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_channel", e.to_string()))?;
    match channel.kind() {
        ChannelKind::Private | ChannelKind::Presence => {}
        ChannelKind::Public => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_channel",
                "public channels need no auth",
            ))
        }
        ChannelKind::PrivateEncrypted => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_channel",
                "encrypted channels are not supported",
            ))
        }
    }
    let principal = state
        .authenticator
        .authenticate(&token)
        .await
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "unknown or revoked token",
            )
        })?;
    if !state.authenticator.may_subscribe(&principal, &channel) {
        tracing::info!(user_id = %principal.user_id, device_id = %principal.device_id, channel = %channel,
            "refused channel auth for a foreign channel");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_channel",
            "this device may not subscribe to that channel",
        ));
    }
    state
        .hub
        .bind_device(&socket_id, &principal.device_id)
        .await;
    Ok(Json(if channel.kind() == ChannelKind::Presence {
        let channel_data =
            json!({ "user_id": principal.user_id.as_str(), "user_info": principal.user_info })
                .to_string();
        let auth = state
            .hub
            .channel_auth(&socket_id, &channel, Some(&channel_data));
        json!({ "auth": auth, "channel_data": channel_data })
    } else {
        json!({ "auth": state.hub.channel_auth(&socket_id, &channel, None) })
    }))
}
