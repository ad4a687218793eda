//! One entry point for the dispatcher: route a push to FCM or APNs by the device's platform.

use crate::apns::ApnsClient;
use crate::fcm::FcmClient;
use crate::message::PushMessage;
use crate::outcome::{PushError, PushOutcome};

/// Which push service a device token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// Firebase Cloud Messaging.
    Android,
    /// Apple Push Notification service.
    Ios,
}

/// The configured push clients; either may be absent (push off for that platform).
#[derive(Debug, Default)]
pub struct PushSender {
    fcm: Option<FcmClient>,
    apns: Option<ApnsClient>,
}

impl PushSender {
    /// Bundles the clients that are configured.
    pub fn new(fcm: Option<FcmClient>, apns: Option<ApnsClient>) -> Self {
        Self { fcm, apns }
    }

    /// Whether `platform` has a client.
    pub fn supports(&self, platform: Platform) -> bool {
        match platform {
            Platform::Android => self.fcm.is_some(),
            Platform::Ios => self.apns.is_some(),
        }
    }

    /// Whether any push client is configured (for `/readyz`).
    pub fn is_enabled(&self) -> bool {
        self.fcm.is_some() || self.apns.is_some()
    }

    /// Sends `message` to `token` on `platform`.
    pub async fn send(
        &self,
        platform: Platform,
        token: &str,
        message: &PushMessage,
    ) -> PushOutcome {
        match platform {
            Platform::Android => match &self.fcm {
                Some(fcm) => fcm.send(token, message).await,
                None => PushOutcome::Fatal(PushError::NotConfigured("Android (FCM)")),
            },
            Platform::Ios => match &self.apns {
                Some(apns) => apns.send(token, message).await,
                None => PushOutcome::Fatal(PushError::NotConfigured("iOS (APNs)")),
            },
        }
    }
}
