//! `GET /api/voip/calls/{id}/timeline`: a call's timeline, oldest first, a page at a time.

use crate::app::AppState;
use crate::auth::DeviceAuth;
use crate::error::{ApiError, ApiResult};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use ringmaster_core::CallSessionId;
use ringmaster_store::limits::MAX_PAGE;
use ringmaster_store::TimelineEntry;
use serde::{Deserialize, Serialize};

/// Page size when the request names none.
const DEFAULT_PAGE: u32 = 100;

/// The query: `cursor` from a previous page's `next_cursor`, `limit` 1..=200.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// One page of a call's timeline.
#[derive(Debug, Serialize)]
pub struct TimelinePage {
    /// Entries, oldest first.
    pub items: Vec<TimelineEntry>,
    /// Entries the call's timeline holds in all.
    pub total: u64,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The handler. Another user's call is a 404, like one that does not exist.
#[utoipa::path(get,
    path = "/api/voip/calls/{call_id}/timeline",
    tag = "device",
    params(("call_id" = String, Path, description = "The call's call_session_id")),
    security(("device_token" = [])),
    responses((status = 200, body = serde_json::Value), (status = "4XX", body = crate::routes::views::ErrorBody)))]
pub async fn call_timeline(
    auth: DeviceAuth,
    State(app): State<AppState>,
    Path(call_id): Path<String>,
    query: Result<Query<TimelineQuery>, QueryRejection>,
) -> ApiResult<Json<TimelinePage>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // The cursor is the offset of the next entry: the timeline only ever grows at its end.
    let offset = match q.cursor.as_deref() {
        None => 0,
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("cursor must come from next_cursor"))?,
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let (items, total) = app
        .store
        .call_timeline(&auth.user.id, &CallSessionId::new(call_id), offset, limit)
        .await?
        .ok_or_else(|| ApiError::not_found("no such call"))?;
    let next = offset + items.len() as u64;
    Ok(Json(TimelinePage {
        next_cursor: (next < total).then(|| next.to_string()),
        items,
        total,
    }))
}
