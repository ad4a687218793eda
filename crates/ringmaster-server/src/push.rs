//! The push notifier: delivers `Channel::Push` notifications to one device through FCM or
//! APNs, using the push token the device registered, and prunes tokens the provider rejects.

use crate::config::{ApnsSettings, FcmSettings};
use crate::notify::{Notifier, NotifyError};
use anyhow::Context as _;
use async_trait::async_trait;
use ringmaster_core::session::{Channel, Notification, NotifyEvent};
use ringmaster_core::EffectId;
use ringmaster_push::{
    ApnsClient, ApnsConfig, FcmClient, FcmConfig, Platform, PushKind, PushMessage, PushOutcome,
    PushSender, RetryPolicy, ServiceAccount, SystemClock,
};
use ringmaster_store::host_event::{EventData, HostEvent};
use ringmaster_store::{PushProvider, Store};
use sha2::Digest as _;
use std::sync::Arc;
use std::time::Duration;

/// Longest collapse key both providers accept (APNs `apns-collapse-id`).
const MAX_COLLAPSE_KEY: usize = 64;
/// How long a provider may hold a dismissal or state change for an offline phone; after
/// that the call is long over and the app's own status check covers it.
const FOLLOW_UP_TTL: Duration = Duration::from_secs(60);

/// Builds the push clients from configuration; `None` when no provider is configured.
pub fn sender_from_config(
    fcm: Option<&FcmSettings>,
    apns: Option<&ApnsSettings>,
) -> anyhow::Result<Option<PushSender>> {
    let clock = Arc::new(SystemClock);
    let fcm = match fcm {
        Some(s) => {
            let account = ServiceAccount::from_file(&s.service_account_file)
                .context("reading the FCM service account")?;
            let mut config = FcmConfig::new(account);
            // The dispatcher owns retries: one attempt per outbox try.
            config.retry = RetryPolicy::single_attempt();
            if let Some(url) = &s.base_url {
                config.base_url = url.clone();
            }
            Some(FcmClient::new(config, clock.clone()).context("setting up FCM")?)
        }
        None => None,
    };
    let apns = match apns {
        Some(s) => {
            let key = ApnsConfig::read_signing_key(&s.key_file)
                .context("reading the APNs signing key")?;
            let mut config = ApnsConfig::new(&s.key_id, &s.team_id, key, &s.bundle_id);
            config.base_url = s.base_url.clone();
            config.retry = RetryPolicy::single_attempt();
            Some(ApnsClient::new(config, clock).context("setting up APNs")?)
        }
        None => None,
    };
    Ok((fcm.is_some() || apns.is_some()).then(|| PushSender::new(fcm, apns)))
}

/// The push message for a notification: `call_session_id`, `version` and `effect_id` always,
/// plus the event's fields as strings (FCM data messages carry only strings).
pub fn message_for(n: &Notification, effect: &EffectId, incoming_ttl: Duration) -> PushMessage {
    let (kind, ttl) = match &n.event {
        NotifyEvent::IncomingCall { .. } => (PushKind::IncomingCall, incoming_ttl),
        NotifyEvent::CallEnded { .. } => (PushKind::CallEnded, FOLLOW_UP_TTL),
        NotifyEvent::CallStateChanged { .. } => (PushKind::CallStateChanged, FOLLOW_UP_TTL),
    };
    let mut m = PushMessage::new(kind)
        .with("call_session_id", n.call_session_id.as_str())
        .with("effect_id", effect.as_str());
    m.ttl = ttl;
    match &n.event {
        NotifyEvent::IncomingCall { from, to, version } => {
            m = m
                .with("from", from)
                .with("to", to)
                .with("version", version.to_string());
        }
        NotifyEvent::CallEnded { reason, version } => {
            m = m
                .with("reason", reason.code())
                .with("version", version.to_string());
            if let Some(device) = reason.caused_by() {
                m = m.with("device_id", device.as_str());
            }
        }
        NotifyEvent::CallStateChanged {
            device,
            platform,
            state,
            previous_state,
            version,
        } => {
            m = m
                .with("state", state.as_str())
                .with("previous_state", previous_state.as_str())
                .with("version", version.to_string());
            if let Some(platform) = platform {
                m = m.with("platform", platform.as_str());
            }
            if let Some(device) = device {
                m = m.with("device_id", device.as_str());
            }
        }
    }
    // A dismissal still waiting at the provider replaces the ring it ends.
    let key = n.call_session_id.as_str();
    if key.len() <= MAX_COLLAPSE_KEY {
        m.collapse_key = Some(key.to_owned());
    }
    m
}

/// Sends `Channel::Push` notifications to the device's registered token. Devices without a
/// token, or whose provider is not configured, are skipped: the other dismissal channels
/// still reach them.
pub struct PushNotifier {
    store: Arc<dyn Store>,
    sender: Arc<PushSender>,
    incoming_ttl: Duration,
}

impl PushNotifier {
    /// A notifier; `incoming_ttl` bounds how long an `incoming_call` push may wait at the
    /// provider (the ring timeout: a later ring is pointless).
    pub fn new(store: Arc<dyn Store>, sender: Arc<PushSender>, incoming_ttl: Duration) -> Self {
        Self {
            store,
            sender,
            incoming_ttl,
        }
    }
}

#[async_trait]
impl Notifier for PushNotifier {
    #[tracing::instrument(skip_all, fields(call_session_id = %n.call_session_id, event = n.event.name()))]
    async fn notify(&self, n: &Notification, effect: &EffectId) -> Result<(), NotifyError> {
        let Channel::Push { device, .. } = &n.channel else {
            return Err(NotifyError::Permanent(
                "the push notifier only takes push notifications".to_owned(),
            ));
        };
        let stored = self
            .store
            .get_device(device)
            .await
            .map_err(|e| NotifyError::temporary(format!("loading device {device}: {e}")))?;
        let Some(stored) = stored.filter(|d| !d.revoked && d.user_id == n.user) else {
            tracing::debug!(device_id = %device, "device gone or revoked; no push");
            return Ok(());
        };
        let (Some(token), Some(provider)) = (stored.push_token, stored.push_provider) else {
            tracing::debug!(device_id = %device, "device has no push token");
            return Ok(());
        };
        let platform = match provider {
            PushProvider::Fcm => Platform::Android,
            PushProvider::Apns => Platform::Ios,
        };
        if !self.sender.supports(platform) {
            tracing::debug!(device_id = %device, %provider, "push provider not configured");
            return Ok(());
        }
        let message = message_for(n, effect, self.incoming_ttl);
        let outcome = self.sender.send(platform, &token, &message).await;
        crate::telemetry::push_sent(
            match platform {
                Platform::Ios => "ios",
                Platform::Android => "android",
            },
            match &outcome {
                PushOutcome::Delivered { .. } => "delivered",
                PushOutcome::InvalidToken { .. } => "invalid_token",
                PushOutcome::Retryable { .. } => "retryable",
                PushOutcome::Fatal(_) => "fatal",
            },
        );
        match outcome {
            PushOutcome::Delivered { id } => {
                tracing::debug!(device_id = %device, ?id, "push delivered");
                Ok(())
            }
            PushOutcome::InvalidToken { reason } => {
                let cleared = self
                    .store
                    .clear_push_token(device, &token)
                    .await
                    .map_err(|e| {
                        NotifyError::temporary(format!("pruning a dead push token: {e}"))
                    })?;
                tracing::info!(device_id = %device, %reason, cleared, "push token rejected; pruned");
                if cleared {
                    self.report_invalid_token(n, &token, provider, &reason)
                        .await?;
                }
                Ok(())
            }
            PushOutcome::Retryable {
                retry_after,
                reason,
            } => Err(NotifyError::Temporary {
                message: match retry_after {
                    Some(wait) => format!("{reason} (provider asked to wait {wait:?})"),
                    None => reason,
                },
                retry_after,
            }),
            PushOutcome::Fatal(e) => {
                tracing::error!(device_id = %device, %provider, error = %e, "push failed");
                Err(NotifyError::Permanent(e.to_string()))
            }
        }
    }
}

impl PushNotifier {
    /// Tells the host app (`device.push_token_invalid`) that a device's token was rejected
    /// and removed, so the app can ask the device for a new one.
    async fn report_invalid_token(
        &self,
        n: &Notification,
        token: &str,
        provider: PushProvider,
        reason: &str,
    ) -> Result<(), NotifyError> {
        let Channel::Push { device, .. } = &n.channel else {
            return Ok(());
        };
        let token_key = hex::encode(&sha2::Sha256::digest(token.as_bytes())[..8]);
        let event = HostEvent::new(
            "device.push_token_invalid",
            &format!("{device}_{token_key}"),
            crate::clock::system_now(),
            EventData {
                user_id: n.user.to_string(),
                tenant_id: Some(n.tenant.to_string()),
                device_id: Some(device.to_string()),
                push_provider: Some(provider.as_str().to_owned()),
                reason: Some(reason.to_owned()),
                ..EventData::default()
            },
        );
        self.store
            .log_host_event(&event)
            .await
            .map_err(|e| NotifyError::temporary(format!("logging device.push_token_invalid: {e}")))
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
            channel: Channel::Push {
                device: DeviceId::new("d1"),
                platform: "ios".into(),
            },
            event,
            exclude_socket: None,
        }
    }

    fn effect() -> EffectId {
        EffectId::of(&CallSessionId::new("cs-1"), 7)
    }

    #[test]
    fn messages_carry_the_event_fields_as_strings() {
        let m = message_for(
            &note(NotifyEvent::IncomingCall {
                from: "+15550001".into(),
                to: "+15550002".into(),
                version: 1,
            }),
            &effect(),
            Duration::from_secs(30),
        );
        assert_eq!(m.kind, PushKind::IncomingCall);
        assert_eq!(m.ttl, Duration::from_secs(30));
        assert_eq!(m.data["from"], "+15550001");
        assert_eq!(m.data["version"], "1");
        assert_eq!(m.collapse_key.as_deref(), Some("cs-1"));
        assert_eq!(m.data["effect_id"], "cs-1:7");

        let m = message_for(
            &note(NotifyEvent::CallEnded {
                reason: DismissReason::AnsweredElsewhere {
                    device_id: DeviceId::new("d2"),
                },
                version: 3,
            }),
            &effect(),
            Duration::from_secs(30),
        );
        assert_eq!(m.kind, PushKind::CallEnded);
        assert_eq!(m.data["reason"], "answered_elsewhere");
        assert_eq!(m.data["device_id"], "d2");
        assert_eq!(m.data["call_session_id"], "cs-1");

        let m = message_for(
            &note(NotifyEvent::CallEnded {
                reason: DismissReason::CallerCancelled,
                version: 3,
            }),
            &effect(),
            Duration::from_secs(30),
        );
        assert!(!m.data.contains_key("device_id"));
    }

    #[test]
    fn long_session_ids_get_no_collapse_key() {
        let mut n = note(NotifyEvent::CallStateChanged {
            device: None,
            platform: None,
            state: CallState::Ended,
            previous_state: CallState::Active,
            version: 9,
        });
        n.call_session_id = CallSessionId::new("x".repeat(65));
        let m = message_for(&n, &effect(), Duration::from_secs(30));
        assert_eq!(m.collapse_key, None);
        assert_eq!(m.data["state"], "ENDED");
    }
}
