//! What a push attempt came to, typed so the dispatcher can prune, retry or report.

use std::time::Duration;

/// The result of sending one push to one device token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The provider accepted the push.
    Delivered {
        /// The provider's message id (FCM `name`, APNs `apns-id`), when it gave one.
        id: Option<String>,
    },
    /// The token is dead (FCM `UNREGISTERED` or an invalid token, APNs 410 or
    /// `BadDeviceToken`): remove it from the device.
    InvalidToken {
        /// The provider's reason.
        reason: String,
    },
    /// A transient failure that outlived the client's own retries; try again later.
    Retryable {
        /// How long the provider asked to wait, if it said.
        retry_after: Option<Duration>,
        /// What failed last.
        reason: String,
    },
    /// A failure retrying cannot fix (credentials, a rejected payload): log and report it.
    Fatal(PushError),
}

/// Why a push can never succeed as configured or as built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Credentials are unusable: a key that does not parse, or a provider that refuses them.
    #[error("push credentials rejected: {0}")]
    Credentials(String),
    /// The message cannot be sent (too large, bad field).
    #[error("invalid push message: {0}")]
    InvalidMessage(String),
    /// The provider refused the request for a reason other than the token.
    #[error("provider rejected the push with HTTP {status}: {reason}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The provider's reason string.
        reason: String,
    },
    /// No client is configured for the device's platform.
    #[error("push is not configured for {0}")]
    NotConfigured(&'static str),
    /// The HTTP client could not be built.
    #[error("HTTP client setup failed: {0}")]
    Client(String),
}
