//! `POST /webhooks/telnyx`: verify, parse, route, run the input, commit, answer. Dispatch of the
//! resulting commands happens afterwards from the outbox, so the answer takes milliseconds.
//!
//! Status codes: 401 bad or stale signature, 413 body too large, 400 malformed body (Telnyx
//! does not retry 4xx), 200 for everything accepted, including events we ignore (unknown type,
//! unknown call, a number no user owns, an input the session refuses), 5xx only when the store
//! fails (Telnyx then retries, and the dedupe key makes the retry safe).

use super::views::{ErrorBody, WebhookAnswer};
use crate::app::AppState;
use crate::clock::unix_secs;
use crate::engine::{Applied, Created, EngineError};
use crate::error::{ApiError, ApiResult};
use crate::provider::{self, NewInboundCall, RoutedEvent};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use ringmaster_core::session::{
    Input, NewInbound, ProviderEventKind, RingTarget, Session, SessionError,
};
use ringmaster_store::{TimelineEntry, TimelineSource};
use ringmaster_telnyx::{WebhookError, WebhookEvent};
use serde_json::json;
use tracing::Instrument as _;

/// The webhook answer body.
pub fn answer(status: &str, reason: Option<String>) -> Json<WebhookAnswer> {
    Json(WebhookAnswer {
        status: status.to_owned(),
        reason,
    })
}

fn ignored(reason: impl Into<String>) -> Json<WebhookAnswer> {
    let reason = reason.into();
    tracing::info!(%reason, "webhook ignored");
    answer("ignored", Some(reason))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "webhook body is too large",
    )
}

/// The handler.
#[utoipa::path(post, path = "/webhooks/telnyx", tag = "telnyx",
    description = "Telnyx Call Control webhooks, signed with Ed25519 (`telnyx-signature-ed25519`, `telnyx-timestamp`).",
    request_body(content = Object, description = "A Telnyx webhook event"),
    responses((status = 200, body = WebhookAnswer), (status = "4XX", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn telnyx(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<WebhookAnswer>> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_request(e.body_text())
        }
    })?;
    if let Err(e) = app.verifier.verify_headers(&headers, &body, unix_secs()) {
        tracing::warn!(error = %e, "webhook signature rejected");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            e.to_string(),
        ));
    }
    let webhook = WebhookEvent::parse(&body).map_err(|e| match e {
        WebhookError::TooLarge { .. } => too_large(),
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_webhook",
            other.to_string(),
        ),
    })?;
    let routed = match provider::route(&webhook) {
        Ok(r) => r,
        Err(why) => return Ok(ignored(why.reason())),
    };
    let span = tracing::info_span!(
        "webhook",
        call_session_id = %routed.session,
        event_type = webhook.event_type(),
        event_id = %webhook.id,
    );
    handle(&app, &webhook, routed)
        .instrument(span)
        .await
        .map_err(|e| match e {
            EngineError::Store(_) | EngineError::Contention(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "could not record the event; retry",
            ),
            other => ApiError::internal(other),
        })
}

fn arrival(
    webhook: &WebhookEvent,
    routed: &RoutedEvent,
    now: ringmaster_core::Timestamp,
) -> TimelineEntry {
    TimelineEntry {
        call_session_id: routed.session.clone(),
        at: now,
        source: TimelineSource::Backend,
        device_id: routed
            .event
            .client_state
            .as_ref()
            .and_then(|cs| cs.device.clone()),
        kind: format!("webhook.{}", webhook.event_type()),
        from_state: None,
        to_state: None,
        detail: json!({
            "event_id": webhook.id,
            "call_control_id": routed.event.call_control_id,
            "leg": routed.event.client_state.as_ref().map(|cs| cs.leg.clone()),
        }),
    }
}

async fn handle(
    app: &AppState,
    webhook: &WebhookEvent,
    routed: RoutedEvent,
) -> Result<Json<WebhookAnswer>, EngineError> {
    let mut placed_by_device = false;
    if let Some(call) = &routed.new_native {
        match start_native(app, webhook, &routed, call).await {
            Ok(Native::Done(reply)) => return Ok(reply),
            Ok(Native::Exists) => placed_by_device = true,
            Ok(Native::NotADevice) => {}
            Err(EngineError::Quarantined(_)) => return Ok(ignored("call quarantined")),
            Err(e) => return Err(e),
        }
    }
    if let Some(call) = routed.new_inbound.as_ref().filter(|_| !placed_by_device) {
        match start_inbound(app, webhook, &routed, call).await {
            Ok(Some(reply)) => return Ok(reply),
            Ok(None) => {}
            Err(EngineError::Quarantined(_)) => return Ok(ignored("call quarantined")),
            Err(e) => return Err(e),
        }
    }
    let input = Input::Provider(routed.event.clone());
    let applied = app
        .engine
        .apply_logged(&routed.session, input, Some(webhook.id.clone()), |now| {
            vec![arrival(webhook, &routed, now)]
        })
        .await;
    Ok(match applied {
        Ok(Applied::Committed(_)) => answer("processed", None),
        Ok(Applied::Unchanged(_)) => answer("processed", None),
        Ok(Applied::Duplicate) => answer("duplicate", None),
        Ok(Applied::Refused(SessionError::UnknownLeg {
            call_control_id: Some(ccid),
        })) if routed.event.client_state.is_some()
            && !matches!(routed.event.kind, ProviderEventKind::Hangup { .. }) =>
        {
            crate::stray_leg::hang_up(app, &routed.session, &ccid).await?
        }
        Ok(Applied::Refused(e)) => ignored(format!("refused by the call: {e}")),
        Err(EngineError::UnknownSession(_)) => ignored("unknown call"),
        // Acknowledged so Telnyx stops redelivering; the quarantine is logged and counted.
        Err(EngineError::Quarantined(_)) => ignored("call quarantined"),
        Err(e) => return Err(e),
    })
}

/// What became of a `call.initiated` from a SIP URI.
enum Native {
    /// No device has that SIP URI: it may be an inbound call.
    NotADevice,
    /// The device's own report created the session first: the webhook is an input to it.
    Exists,
    /// Handled (created, duplicate or ignored).
    Done(Json<WebhookAnswer>),
}

/// Creates the session of a call a device placed itself (its `from` is the device's SIP URI),
/// whatever `direction` Telnyx gave the leg.
async fn start_native(
    app: &AppState,
    webhook: &WebhookEvent,
    routed: &RoutedEvent,
    call: &NewInboundCall,
) -> Result<Native, EngineError> {
    let Some(device) = crate::native::device_for_sip_uri(app, &call.from).await? else {
        return Ok(Native::NotADevice);
    };
    if app.engine.load(&routed.session).await?.is_some() {
        return Ok(Native::Exists);
    }
    let Some(ccid) = routed.event.call_control_id.clone() else {
        return Ok(Native::Done(ignored("device call without call_control_id")));
    };
    let Some(user) = app.store.get_user(&device.user_id).await? else {
        return Ok(Native::NotADevice);
    };
    let now = app.engine.now();
    let native = crate::native::NativeCall {
        id: routed.session.clone(),
        leg: Some(ccid),
        initiated: true,
        to: call.to.clone(),
    };
    let timeline = vec![arrival(webhook, routed, now)];
    let created = crate::native::create(
        app,
        &user,
        &device,
        native,
        Some(webhook.id.clone()),
        timeline,
    )
    .await?;
    Ok(match created {
        Ok(Created::Committed(_)) => Native::Done(answer("processed", None)),
        Ok(Created::Duplicate) => Native::Done(answer("duplicate", None)),
        Ok(Created::Exists) => Native::Exists,
        Err(why) => Native::Done(ignored(format!("cannot follow this call: {why}"))),
    })
}

/// Creates the session of a new inbound call. `None` means the session already exists and the
/// event should be handled as an input to it.
///
/// The session is not read first: the create's compare-and-set (no session expected)
/// reports one that exists (`Created::Exists`), and a redelivery is caught by its dedupe key,
/// so a new call costs no store read. Only when the event cannot start a call is the store
/// asked whether the session exists after all.
async fn start_inbound(
    app: &AppState,
    webhook: &WebhookEvent,
    routed: &RoutedEvent,
    call: &NewInboundCall,
) -> Result<Option<Json<WebhookAnswer>>, EngineError> {
    let unless_exists = |reason: String| async move {
        Ok(match app.engine.load(&routed.session).await? {
            Some(_) => None,
            None => Some(ignored(reason)),
        })
    };
    let Some(ccid) = routed.event.call_control_id.clone() else {
        return unless_exists("incoming call without call_control_id".into()).await;
    };
    let Some(user) = app.store.user_by_number(&call.to).await? else {
        // Not ours to answer: Telnyx keeps the call parked until it times out. Operators who
        // share a connection with another application rely on this.
        return unless_exists(format!("no user owns {}", call.to)).await;
    };
    let devices: Vec<RingTarget> = app
        .store
        .devices_of_user(&user.id)
        .await?
        .into_iter()
        .filter(|d| !d.revoked)
        .map(|d| RingTarget {
            device_id: d.id,
            sip_uri: d.sip_uri,
            platform: d.platform.as_str().to_owned(),
        })
        .take(ringmaster_core::session::MAX_DEVICES)
        .collect();
    let busy = !user.call_waiting && !app.store.active_calls(&user.id).await?.is_empty();
    let now = app.engine.now();
    let new = NewInbound {
        id: routed.session.clone(),
        tenant: user.tenant_id.clone(),
        user: user.id.clone(),
        caller_leg: ccid,
        from: call.from.clone(),
        to: call.to.clone(),
        devices,
        busy,
        config: app.settings.session_config(user.voicemail_enabled),
    };
    let session = match Session::new_inbound(new, now) {
        Ok(s) => s,
        Err(e) => return unless_exists(format!("cannot ring this call: {e}")).await,
    };
    let timeline = vec![arrival(webhook, routed, now)];
    match app
        .engine
        .create(session, Some(webhook.id.clone()), timeline)
        .await?
    {
        Created::Committed(s) => {
            tracing::info!(
                call_session_id = %s.id(),
                user_id = %user.id,
                devices = s.devices().len(),
                busy,
                "inbound call"
            );
            Ok(Some(answer("processed", None)))
        }
        Created::Duplicate => Ok(Some(answer("duplicate", None))),
        Created::Exists => Ok(None),
    }
}
