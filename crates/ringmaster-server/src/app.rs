//! The shared application state and the HTTP router.

use crate::dial_limit::{DialBudget, DialLimit};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::http_server::HttpLimits;
use crate::notify::Notifiers;
use crate::rate_limit::{RateLimiter, RateLimits};
use crate::routes::{admin, health, quality, timeline, voip, webhook_endpoints, webhooks};
use crate::tokens::TokenSigner;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, Method};
use axum::routing::{delete, get, post, put};
use axum::Router;
use ringmaster_core::session::{
    CallerAnswer, SessionConfig, VoicemailConfig, DEFAULT_BRIDGE_RETRY_DELAY_MS,
    DEFAULT_RING_TIMEOUT_SECS,
};
use ringmaster_realtime::RealtimeHub;
use ringmaster_store::Store;
use ringmaster_telnyx::{WebhookVerifier, MAX_WEBHOOK_BODY_BYTES};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;

/// Largest body the JSON API accepts; its requests are a few hundred bytes.
pub const API_BODY_LIMIT: usize = 64 * 1024;

/// Behaviour settings of a running server.
#[derive(Clone)]
pub struct Settings {
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// Secret device tokens are signed with; changing it invalidates every device token.
    pub token_secret: String,
    /// Telnyx Call Control connection id used for dials.
    pub connection_id: String,
    /// Seconds devices ring (5–600).
    pub ring_timeout_secs: u32,
    /// When the inbound caller is answered.
    pub caller_answer: CallerAnswer,
    /// Wait before the one retry of a failed bridge.
    pub bridge_retry_delay_ms: u64,
    /// Voicemail used for users who have it enabled.
    pub voicemail: VoicemailConfig,
    /// How often due session timers are polled.
    pub tick_interval: Duration,
    /// How often the outbox is swept without a wake-up (restart safety, retries).
    pub sweep_interval: Duration,
    /// Dials allowed per window on the Telnyx account; more are queued.
    pub dial_limit: DialLimit,
    /// How long old rows are kept.
    pub retention: crate::retention::RetentionPolicy,
    /// Where `/metrics` is served on its own; `None` serves it on the main listener.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Retries and give-up time of outbound webhooks to the host app.
    pub webhooks: crate::host_webhooks::WebhookSettings,
    /// Timeouts and the connection cap of the HTTP listener.
    pub http: HttpLimits,
    /// Device API rate limits and caps.
    pub rate_limits: RateLimits,
    /// Lifetime of newly issued device tokens; `None` never expires.
    pub device_token_ttl: Option<Duration>,
    /// This node's name in outbox leases and logs; unique per running process.
    pub node_id: String,
    /// How long this node's claim on an outbox row lasts; longer than any one attempt (see
    /// [`crate::dispatch::DEFAULT_LEASE`]), and what a dead node's rows wait before another
    /// node sends them.
    pub lease: Duration,
    /// Sessions the engine remembers between inputs, and whether one session's inputs queue
    /// on this node instead of racing (see `Engine::with_session_cache`); 0 turns both off.
    pub session_cache: usize,
}

/// How many sessions the engine remembers by default: far more than the calls ringing at
/// once on one node, a few MB at most.
pub const DEFAULT_SESSION_CACHE: usize = 4096;

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The admin token and the token secret never reach a log line.
        f.debug_struct("Settings")
            .field("admin_token", &"***")
            .field("token_secret", &"***")
            .field("connection_id", &self.connection_id)
            .field("ring_timeout_secs", &self.ring_timeout_secs)
            .field("dial_limit", &self.dial_limit)
            .field("http", &self.http)
            .field("rate_limits", &self.rate_limits)
            .field("device_token_ttl", &self.device_token_ttl)
            .field("retention", &self.retention)
            .field("metrics_listen", &self.metrics_listen)
            .field("node_id", &self.node_id)
            .field("lease", &self.lease)
            .field("session_cache", &self.session_cache)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Defaults with the given admin token and connection id. Device tokens are signed with
    /// the admin token until `token_secret` is set (`ringmaster serve` always sets it).
    pub fn new(admin_token: impl Into<String>, connection_id: impl Into<String>) -> Self {
        let admin_token = admin_token.into();
        Self {
            token_secret: admin_token.clone(),
            admin_token,
            connection_id: connection_id.into(),
            ring_timeout_secs: DEFAULT_RING_TIMEOUT_SECS,
            caller_answer: CallerAnswer::default(),
            bridge_retry_delay_ms: DEFAULT_BRIDGE_RETRY_DELAY_MS,
            voicemail: VoicemailConfig::default(),
            tick_interval: Duration::from_millis(100),
            sweep_interval: Duration::from_secs(1),
            dial_limit: DialLimit::default(),
            retention: crate::retention::RetentionPolicy::default(),
            metrics_listen: None,
            webhooks: Default::default(),
            http: HttpLimits::default(),
            rate_limits: RateLimits::default(),
            device_token_ttl: None,
            node_id: default_node_id(),
            lease: crate::dispatch::DEFAULT_LEASE,
            session_cache: DEFAULT_SESSION_CACHE,
        }
    }

    /// The session settings for a user.
    pub fn session_config(&self, voicemail_enabled: bool) -> SessionConfig {
        SessionConfig {
            ring_timeout_secs: self.ring_timeout_secs,
            caller_answer: self.caller_answer,
            bridge_retry_delay_ms: self.bridge_retry_delay_ms,
            voicemail: voicemail_enabled.then(|| self.voicemail.clone()),
            ..SessionConfig::default()
        }
    }
}

/// This host's name and the process id (`web-1-4242`): unique among running nodes, and a
/// restarted process is a new node (its predecessor's leases simply expire).
pub fn default_node_id() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| {
            let name = std::fs::read_to_string(path).ok()?;
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Present when the server drives the built-in emulator instead of Telnyx.
#[derive(Clone, Debug)]
pub struct SandboxInfo {
    /// The emulator's control API root (`http://ADDR/_emulator`).
    pub emulator_url: String,
    /// The emulator's Telnyx API root (`http://ADDR/v2`).
    pub telnyx_api_url: String,
}

/// Everything the routes share.
pub struct AppInner {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Runs inputs against sessions.
    pub engine: Engine,
    /// Checks Telnyx webhook signatures.
    pub verifier: WebhookVerifier,
    /// Issues and checks device tokens.
    pub tokens: TokenSigner,
    /// Behaviour settings.
    pub settings: Settings,
    /// Notification channels (for `/readyz`; the dispatcher holds its own handle).
    pub notifiers: Notifiers,
    /// Sandbox details, when running against the built-in emulator.
    pub sandbox: Option<SandboxInfo>,
    /// The Telnyx dial budget the dispatcher uses (its queued-dial counter and grant log).
    pub dials: Arc<dyn DialBudget>,
    /// Per-device and per-user request limits of the device API.
    pub rate_limits: RateLimiter,
    /// The Pusher-protocol hub, when served (revoking a device closes its sockets there).
    pub realtime: Option<RealtimeHub>,
}

/// The one application state every route receives. Cheap to clone.
#[derive(Clone)]
pub struct AppState(pub Arc<AppInner>);

impl Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// CORS for routes browsers on another origin call with a device bearer token. Those
/// requests never carry cookies, so any origin is allowed and credentials are not.
pub fn bearer_cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-socket-id"),
            HeaderName::from_static("x-requested-with"),
        ])
}

/// All HTTP routes of the coordinator, with body limits and request tracing. Only the device
/// API (`/api/voip/*`) answers cross-origin requests; the admin API is for servers, not tabs.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/api/admin/users", post(admin::create_user))
        .route(
            "/api/admin/users/{user_id}",
            get(admin::get_user).patch(admin::update_user),
        )
        .route(
            "/api/admin/users/{user_id}/devices",
            post(admin::create_device),
        )
        .route(
            "/api/admin/devices/{device_id}",
            delete(admin::revoke_device),
        )
        .route(
            "/api/admin/devices/{device_id}/token",
            post(admin::reissue_token),
        )
        .route("/api/admin/sandbox", get(admin::sandbox))
        .merge(quality::admin_routes())
        .merge(crate::operator::routes())
        .route(
            "/api/admin/webhook-endpoints",
            post(webhook_endpoints::create).get(webhook_endpoints::list),
        )
        .route(
            "/api/admin/webhook-endpoints/{id}",
            get(webhook_endpoints::get).delete(webhook_endpoints::delete),
        );
    let voip = Router::new()
        .route("/api/voip/call-status/{call_id}", get(voip::call_status))
        .route("/api/voip/my-active-call", get(voip::my_active_call))
        .route("/api/voip/calls", post(voip::place_call).get(voip::history))
        .route("/api/voip/calls/{call_id}", get(voip::call_detail))
        .route(
            "/api/voip/calls/{call_id}/timeline",
            get(timeline::call_timeline),
        )
        .route("/api/voip/calls/{call_id}/events", post(voip::report))
        .route("/api/voip/calls/{call_id}/decline", post(voip::decline))
        .route("/api/voip/calls/{call_id}/ignore", post(voip::ignore))
        .merge(quality::device_routes())
        .route(
            "/api/voip/devices/{device_id}/push-token",
            put(voip::register_push_token)
                .delete(voip::remove_push_token)
                .layer(DefaultBodyLimit::max(voip::PUSH_TOKEN_BODY_LIMIT)),
        )
        .merge(crate::web::device_routes())
        .route_layer(axum::middleware::from_fn(crate::logging::call_span))
        // Set before the CORS layer so it is wrapped too: the outer router's fallback would
        // replace a still-default one unwrapped, and preflights (OPTIONS) would get a bare 405.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(bearer_cors());
    let api = admin
        .merge(voip)
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    let hooks = Router::new()
        .route("/webhooks/telnyx", post(webhooks::telnyx))
        .route_layer(axum::middleware::from_fn(crate::telemetry::track_webhook))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY_BYTES));
    let metrics = match state.settings.metrics_listen {
        None => Router::new().route("/metrics", get(crate::telemetry::metrics_page)),
        Some(_) => Router::new(),
    };
    Router::new()
        .merge(api)
        .merge(hooks)
        .merge(metrics)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .merge(crate::openapi::routes())
        .layer(TraceLayer::new_for_http())
}
