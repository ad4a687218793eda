//! Ringmaster's real-time layer: a Pusher Channels protocol 7 WebSocket server that pusher-js
//! and laravel-echo use unchanged, the `/broadcasting/auth` endpoint, the signed HTTP publish
//! API, and an in-process publish API for the server's dispatcher.
//!
//! ```no_run
//! # async fn demo(auth: std::sync::Arc<dyn ringmaster_realtime::Authenticator>) {
//! use ringmaster_realtime::{router, RealtimeConfig, RealtimeHub};
//! let hub = RealtimeHub::new(RealtimeConfig::new("app-id", "app-key", "app-secret"));
//! let app = router(hub.clone(), auth); // merge into the server's axum Router
//! # let _ = app;
//! # }
//! ```

pub mod api_error;
pub mod auth_endpoint;
pub mod channel;
pub mod config;
mod connection;
pub mod event;
pub mod fanout;
pub mod http_api;
pub mod hub;
pub mod nats_fanout;
pub mod nats_presence;
mod outbox;
pub mod presence;
pub mod protocol;
pub mod signing;
pub mod socket_id;
mod upgrade;

pub use api_error::ApiError;
/// Re-exported so implementors of [`Authenticator`] need no direct dependency.
pub use async_trait::async_trait;
pub use auth_endpoint::{owns_channel, Authenticator, Principal};
pub use channel::{user_channel, user_presence_channel, ChannelKind, ChannelName};
pub use config::RealtimeConfig;
pub use connection::{WS_CONNECTIONS, WS_MESSAGES};
pub use event::{Event, EventError};
pub use fanout::{Fanout, FanoutError, FanoutSink, InProcessFanout, NodeId};
pub use hub::{PresenceMember, PublishError, RealtimeHub};
pub use nats_fanout::{NatsFanout, NatsFanoutConfig, NatsFanoutError};
pub use nats_presence::{NatsPresence, NatsPresenceConfig};
pub use presence::{PresenceSettings, PresenceTable, DEFAULT_NODE_TIMEOUT};
pub use protocol::ProtocolError;
pub use socket_id::SocketId;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Channel auth requests are two short fields.
const AUTH_BODY_LIMIT: usize = 4 * 1024;

/// State shared by this crate's routes.
#[derive(Clone)]
pub(crate) struct RouterState {
    hub: RealtimeHub,
    authenticator: Arc<dyn Authenticator>,
}

/// The routes of the real-time layer, ready to merge into the server's router:
/// `GET /app/{key}` (WebSocket), `POST /broadcasting/auth`, `POST /apps/{app_id}/events`,
/// `POST /apps/{app_id}/batch_events` and `GET /apps/{app_id}/channels/{channel}/users`.
pub fn router(hub: RealtimeHub, authenticator: Arc<dyn Authenticator>) -> Router {
    let api_limit = 11 * hub.config().max_event_bytes + 64 * 1024;
    let state = RouterState { hub, authenticator };
    Router::new()
        .route("/app/{key}", get(websocket))
        .route(
            "/broadcasting/auth",
            post(auth_endpoint::broadcasting_auth).layer(DefaultBodyLimit::max(AUTH_BODY_LIMIT)),
        )
        .route(
            "/apps/{app_id}/events",
            post(http_api::events).layer(DefaultBodyLimit::max(api_limit)),
        )
        .route(
            "/apps/{app_id}/batch_events",
            post(http_api::batch_events).layer(DefaultBodyLimit::max(api_limit)),
        )
        .route(
            "/apps/{app_id}/channels/{channel}/users",
            get(http_api::channel_users),
        )
        .with_state(state)
}

async fn websocket(
    State(state): State<RouterState>,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Response {
    let (mut parts, _) = request.into_parts();
    let handshake = match upgrade::Handshake::check(&mut parts) {
        Ok(handshake) => handshake,
        Err(e) => return e.into_response(),
    };
    let config = state.hub.config();
    // Browsers cannot read an HTTP error on a WebSocket handshake, so refusals are sent as
    // Pusher errors over the upgraded socket.
    let refusal = if key != config.key {
        Some(ProtocolError::AppNotFound)
    } else {
        protocol::check_protocol(params.get("protocol").map(String::as_str)).err()
    };
    let hub = state.hub.clone();
    // The listener inserts the peer address; without it (a bare router) no per-address cap.
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    handshake.respond(move |io| connection::serve(hub, io, refusal, peer))
}
