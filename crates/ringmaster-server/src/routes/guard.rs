//! Abuse limits of the device API, checked before a request changes anything: the token
//! buckets of [`crate::rate_limit`], the cap on a user's unfinished calls, no reports on a call
//! that has ended, and the per-call timeline cap.

use crate::app::AppState;
use crate::auth::DeviceAuth;
use crate::error::{ApiError, ApiResult};
use crate::rate_limit::RateClass;
use axum::http::StatusCode;
use ringmaster_core::session::Session;
use std::time::Duration;

/// How long a client refused for too many unfinished calls should wait: about one ring.
const UNFINISHED_RETRY: Duration = Duration::from_secs(30);

/// Click-to-call: the device's and user's buckets, then the user's unfinished calls.
pub async fn may_place_call(app: &AppState, auth: &DeviceAuth) -> ApiResult<()> {
    let cap = app.rate_limits.limits().max_unfinished_calls;
    let unfinished = app.store.unfinished_calls(&auth.user.id).await?;
    if unfinished >= u64::from(cap) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_calls",
            format!("the user already has {unfinished} unfinished calls (at most {cap})"),
        );
        e.retry_after = Some(UNFINISHED_RETRY);
        return Err(e);
    }
    app.rate_limits.check(
        RateClass::PlaceCall,
        &auth.device.id,
        &auth.user.id,
        app.engine.now(),
    )
}

/// A device report on a live call: refused when its timeline is full (409 `timeline_full`),
/// and rate limited.
pub async fn may_report(app: &AppState, auth: &DeviceAuth, session: &Session) -> ApiResult<()> {
    // A report on an ended call is refused by the session itself (409 `call_ended`), after
    // its duplicate check, so a retried report still gets its 200 `duplicate`.
    if session.is_closed() {
        return Ok(());
    }
    let cap = app.rate_limits.limits().max_timeline_entries;
    let entries = app
        .store
        .call_timeline(&auth.user.id, session.id(), 0, 0)
        .await?
        .map_or(0, |(_, total)| total);
    if entries >= u64::from(cap) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "timeline_full",
            format!("the call's timeline holds its maximum of {cap} entries"),
        ));
    }
    app.rate_limits.check(
        RateClass::Report,
        &auth.device.id,
        &auth.user.id,
        app.engine.now(),
    )
}
