//! The seam between the dispatcher and the notification channels (WebSocket hub, push).
//!
//! Sessions emit [`Notification`]s as outbox effects; the dispatcher hands each one to
//! [`Notifiers::deliver`], which routes it by [`Channel`] to the configured [`Notifier`].
//! A channel with no notifier configured drops the notification (logged): the other dismissal
//! channels (SIP hangup, status polling) still reach the device.

use async_trait::async_trait;
use ringmaster_core::session::{Channel, Notification};
use ringmaster_core::EffectId;
use std::sync::Arc;
use std::time::Duration;

/// Why a notification could not be delivered.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum NotifyError {
    /// Worth retrying later (network trouble, provider 5xx/429); the outbox keeps it.
    #[error("temporary delivery failure: {message}")]
    Temporary {
        /// What went wrong.
        message: String,
        /// The provider's `Retry-After`: the outbox does not try again before it has passed.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (invalid token, rejected payload); the outbox gives up on it.
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

impl NotifyError {
    /// A temporary failure without a provider-requested wait.
    pub fn temporary(message: impl Into<String>) -> Self {
        Self::Temporary {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Delivers notifications of one kind (e.g. the Pusher-protocol hub, or FCM/APNs).
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Delivers one notification, the outbox effect `effect` (its payload carries the id so
    /// clients drop a repeat); `Ok` once it has been handed to the channel.
    async fn notify(
        &self,
        notification: &Notification,
        effect: &EffectId,
    ) -> Result<(), NotifyError>;
}

/// What happened to a notification handed to [`Notifiers::deliver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The channel's notifier took it.
    Sent,
    /// No notifier is configured for its channel; it was dropped.
    NoChannel,
}

/// The composition point: one optional notifier per channel kind.
#[derive(Clone, Default)]
pub struct Notifiers {
    /// Receives `Channel::WebSocket` notifications (the user's private channel).
    pub websocket: Option<Arc<dyn Notifier>>,
    /// Receives `Channel::Push` notifications (one mobile device each).
    pub push: Option<Arc<dyn Notifier>>,
}

impl Notifiers {
    /// No channel configured: notifications are dropped.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether push delivery is configured (reported by `/readyz`).
    pub fn push_configured(&self) -> bool {
        self.push.is_some()
    }

    /// Whether WebSocket delivery is configured.
    pub fn websocket_configured(&self) -> bool {
        self.websocket.is_some()
    }

    /// Routes `notification` (the outbox effect `effect`) to the notifier of its channel.
    pub async fn deliver(
        &self,
        notification: &Notification,
        effect: &EffectId,
    ) -> Result<Delivery, NotifyError> {
        let notifier = match notification.channel {
            Channel::WebSocket => self.websocket.as_ref(),
            Channel::Push { .. } => self.push.as_ref(),
        };
        match notifier {
            Some(n) => n
                .notify(notification, effect)
                .await
                .map(|()| Delivery::Sent),
            None => {
                tracing::debug!(
                    call_session_id = %notification.call_session_id,
                    event = notification.event.name(),
                    "no notifier for this channel; notification dropped"
                );
                Ok(Delivery::NoChannel)
            }
        }
    }
}
