//! Liveness and readiness.

use super::views::{Configured, DialQueue, ErrorBody, Health, Readiness};
use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ringmaster_core::UserId;

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// `GET /readyz`: the store answers; also says which notification channels are configured
/// and how many dials the rate limit has queued.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    if let Err(e) = app.store.get_user(&UserId::new("readyz-probe")).await {
        tracing::warn!(error = %e, "store not reachable");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the database does not answer",
        ));
    }
    Ok(Json(Readiness {
        status: "ready".to_owned(),
        store: "ok".to_owned(),
        push: Configured {
            configured: app.notifiers.push_configured(),
        },
        websocket: Configured {
            configured: app.notifiers.websocket_configured(),
        },
        sandbox: app.sandbox.is_some(),
        dials: DialQueue {
            queued: app.dials.queued(),
        },
        node_id: app.settings.node_id.clone(),
    }))
}
