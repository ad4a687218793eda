//! The Pusher-protocol WebSocket layer inside the coordinator: channel auth by device token,
//! and the notifier that publishes call events on the user's `private-user.{user_id}` channel.
//!
//! Every WebSocket notification goes on the channel whether or not the device's SIP leg rang,
//! so a web tab whose INVITE was lost still learns of the call (gap G-11).

use crate::app::{bearer_cors, AppState};
use crate::auth::DeviceAuth;
use crate::notify::{Notifier, NotifyError};
use async_trait::async_trait;
use axum::Router;
use ringmaster_core::session::{Channel, Notification, NotifyEvent};
use ringmaster_core::EffectId;
use ringmaster_realtime::{
    user_channel, Authenticator, Principal, PublishError, RealtimeHub, SocketId,
};
use serde_json::{json, Value};
use std::sync::Arc;

/// Resolves device bearer tokens for `/broadcasting/auth`: a device may join only its own
/// user's channels (the realtime crate's default `may_subscribe`).
pub struct DeviceAuthenticator {
    app: AppState,
}

impl DeviceAuthenticator {
    /// An authenticator over the server's device registry.
    pub fn new(app: AppState) -> Self {
        Self { app }
    }
}

#[async_trait]
impl Authenticator for DeviceAuthenticator {
    async fn authenticate(&self, bearer: &str) -> Option<Principal> {
        let auth = DeviceAuth::from_token(&self.app, bearer).await.ok()?;
        Some(Principal {
            user_id: auth.user.id.clone(),
            tenant_id: auth.user.tenant_id.clone(),
            device_id: auth.device.id.clone(),
            // Presence members are per user, so only user-level facts belong here.
            user_info: json!({ "name": auth.user.name }),
        })
    }
}

/// The real-time routes (`/app/{key}`, `/broadcasting/auth`, `/apps/{id}/events`,
/// `/apps/{id}/batch_events`, `/apps/{id}/channels/{channel}/users`) with device-token auth. Browsers on another origin may call
/// `/broadcasting/auth`: it takes a bearer token, never cookies, so any origin is allowed.
pub fn routes(hub: RealtimeHub, app: AppState) -> Router {
    ringmaster_realtime::router(hub, Arc::new(DeviceAuthenticator::new(app))).layer(bearer_cors())
}

/// The event data of a notification, as WebSocket clients receive it: always
/// `call_session_id` and `version`, plus the event's own fields (`reason` and `device_id` on
/// `call_ended`; `device_id`, `platform`, `state` and `previous_state` (canonical names) on
/// `call_state_changed`; `from` and `to` on `incoming_call`) and `effect_id`, the same on a
/// repeat of the event (see `docs/api.md`).
pub fn event_data(n: &Notification, effect: &EffectId) -> Value {
    let mut data = match &n.event {
        NotifyEvent::IncomingCall { from, to, version } => json!({
            "call_session_id": n.call_session_id,
            "from": from,
            "to": to,
            "version": version,
        }),
        NotifyEvent::CallEnded { reason, version } => json!({
            "call_session_id": n.call_session_id,
            "reason": reason.code(),
            "device_id": reason.caused_by(),
            "version": version,
        }),
        NotifyEvent::CallStateChanged {
            device,
            platform,
            state,
            previous_state,
            version,
        } => json!({
            "call_session_id": n.call_session_id,
            "device_id": device,
            "platform": platform,
            "state": state,
            "previous_state": previous_state,
            "version": version,
        }),
    };
    data["effect_id"] = json!(effect);
    data
}

/// Publishes `Channel::WebSocket` notifications through the hub, leaving out the sender's own
/// socket when the notification names one.
pub struct WebSocketNotifier {
    hub: RealtimeHub,
}

impl WebSocketNotifier {
    /// A notifier publishing on `hub`.
    pub fn new(hub: RealtimeHub) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Notifier for WebSocketNotifier {
    async fn notify(&self, n: &Notification, effect: &EffectId) -> Result<(), NotifyError> {
        if n.channel != Channel::WebSocket {
            return Err(NotifyError::Permanent(
                "the WebSocket notifier only takes WebSocket notifications".to_owned(),
            ));
        }
        let channel = user_channel(&n.user).map_err(|e| {
            NotifyError::Permanent(format!("user {} has no valid channel: {e}", n.user))
        })?;
        // A malformed socket id only costs the sender its own echo, which it drops anyway.
        let except = n
            .exclude_socket
            .as_deref()
            .and_then(|s| SocketId::parse(s).ok());
        match self
            .hub
            .publish(
                &channel,
                n.event.name(),
                &event_data(n, effect),
                except.as_ref(),
            )
            .await
        {
            Ok(sockets) => {
                tracing::debug!(call_session_id = %n.call_session_id, event = n.event.name(),
                    %channel, sockets, "published");
                Ok(())
            }
            Err(PublishError::Event(e)) => Err(NotifyError::Permanent(e.to_string())),
            // Local sockets have it; retrying re-sends to them too, and clients drop the
            // repeat by `version`, while other nodes' sockets would otherwise miss it.
            Err(e @ PublishError::Fanout { .. }) => Err(NotifyError::temporary(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmaster_core::{CallSessionId, CallState, DeviceId, DismissReason, TenantId, UserId};

    fn note(event: NotifyEvent) -> Notification {
        Notification {
            tenant: TenantId::new("t"),
            user: UserId::new("u1"),
            call_session_id: CallSessionId::new("cs-1"),
            channel: Channel::WebSocket,
            event,
            exclude_socket: None,
        }
    }

    fn effect() -> EffectId {
        EffectId::of(&CallSessionId::new("cs-1"), 3)
    }

    #[test]
    fn payloads_carry_the_call_reason_device_and_version() {
        let ended = note(NotifyEvent::CallEnded {
            reason: DismissReason::AnsweredElsewhere {
                device_id: DeviceId::new("d2"),
            },
            version: 4,
        });
        assert_eq!(
            event_data(&ended, &effect()),
            json!({"call_session_id": "cs-1", "reason": "answered_elsewhere",
                   "device_id": "d2", "version": 4, "effect_id": "cs-1:3"})
        );
        let missed = note(NotifyEvent::CallEnded {
            reason: DismissReason::Timeout,
            version: 2,
        });
        assert_eq!(event_data(&missed, &effect())["device_id"], Value::Null);
        let changed = note(NotifyEvent::CallStateChanged {
            device: Some(DeviceId::new("d1")),
            platform: Some("ios".into()),
            state: CallState::OnHold,
            previous_state: CallState::Active,
            version: 5,
        });
        assert_eq!(
            event_data(&changed, &effect()),
            json!({"call_session_id": "cs-1", "device_id": "d1", "platform": "ios",
                   "state": "ON_HOLD", "previous_state": "ACTIVE", "version": 5,
                   "effect_id": "cs-1:3"})
        );
        let incoming = note(NotifyEvent::IncomingCall {
            from: "+15550001".into(),
            to: "+15550002".into(),
            version: 1,
        });
        assert_eq!(event_data(&incoming, &effect())["from"], "+15550001");
        assert_eq!(event_data(&incoming, &effect())["version"], 1);
    }
}
