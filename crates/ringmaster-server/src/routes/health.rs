//! Liveness and readiness.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ringmaster_core::UserId;
use serde_json::{json, Value};

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers; also says which notification channels are configured
/// and how many dials the rate limit has queued.
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Value>, ApiError> {
    if let Err(e) = app.store.get_user(&UserId::new("readyz-probe")).await {
        tracing::warn!(error = %e, "store not reachable");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the database does not answer",
        ));
    }
    Ok(Json(json!({
        "status": "ready",
        "store": "ok",
        "push": { "configured": app.notifiers.push_configured() },
        "websocket": { "configured": app.notifiers.websocket_configured() },
        "sandbox": app.sandbox.is_some(),
        "dials": { "queued": app.dials.queued() },
    })))
}
