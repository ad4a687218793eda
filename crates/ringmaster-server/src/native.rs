//! Calls a device places itself: its Telnyx SDK dials through the device's SIP credential
//! (issue 14, point 4). The session is created by whichever comes first, the leg's
//! `call.initiated` (from the device's SIP URI) or the device's report of IDLE → CONNECTING /
//! REQUESTING; both carry the Telnyx `call_session_id` the session is keyed by, so the second
//! becomes an input to the session the first created.

use crate::app::AppState;
use crate::engine::{Created, EngineError};
use ringmaster_core::session::{NewNativeOutbound, RingTarget, Session};
use ringmaster_core::{CallControlId, CallSessionId};
use ringmaster_store::{Device, TimelineEntry, User};

/// What the device's call is known by when its session is created.
pub struct NativeCall {
    /// The Telnyx `call_session_id`.
    pub id: CallSessionId,
    /// The device's leg, when known.
    pub leg: Option<CallControlId>,
    /// Telnyx already reported the leg (the creator is its `call.initiated`).
    pub initiated: bool,
    /// The number the device dialled.
    pub to: String,
}

/// The device (not revoked) registered with the SIP URI a webhook's `from` names, newest first.
pub async fn device_for_sip_uri(app: &AppState, from: &str) -> Result<Option<Device>, EngineError> {
    for form in crate::provider::sip_uri_forms(from) {
        let found = app.store.devices_by_sip_uri(&form).await?;
        if let Some(device) = found.into_iter().rev().find(|d| !d.revoked) {
            return Ok(Some(device));
        }
    }
    Ok(None)
}

/// Creates the session of `call`, placed by `device` of `user`. `Exists` when the other
/// source of the call got there first. A glare with a call the callee is placing to this user
/// is resolved once the session is committed.
pub async fn create(
    app: &AppState,
    user: &User,
    device: &Device,
    call: NativeCall,
    dedupe_key: Option<String>,
    timeline: Vec<TimelineEntry>,
) -> Result<Result<Created, String>, EngineError> {
    let target = RingTarget {
        device_id: device.id.clone(),
        sip_uri: device.sip_uri.clone(),
        platform: device.platform.as_str().to_owned(),
    };
    let from = user
        .numbers
        .first()
        .cloned()
        .unwrap_or_else(|| device.sip_uri.clone());
    let new = NewNativeOutbound {
        id: call.id,
        tenant: user.tenant_id.clone(),
        user: user.id.clone(),
        device: target,
        device_leg: call.leg,
        initiated: call.initiated,
        from,
        to: call.to,
        config: app.settings.session_config(false),
    };
    let session = match Session::new_native(new, app.engine.now()) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let created = app.engine.create(session, dedupe_key, timeline).await?;
    if let Created::Committed(s) = &created {
        tracing::info!(
            call_session_id = %s.id(),
            user_id = %user.id,
            device_id = %device.id,
            "native outbound call"
        );
        crate::glare::after_outbound(app, s).await?;
    }
    Ok(Ok(created))
}
