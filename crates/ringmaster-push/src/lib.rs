//! Push delivery for Ringmaster: FCM HTTP v1 for Android and APNs over HTTP/2 for iOS, with
//! provider-token handling, retries that honour `Retry-After`, and typed outcomes
//! ([`PushOutcome`]) that tell the dispatcher to prune a token, retry later, or report.

pub mod apns;
pub mod clock;
pub mod fcm;
mod http;
pub mod message;
pub mod outcome;
pub mod retry;
pub mod sender;

pub use apns::{ApnsClient, ApnsConfig};
pub use clock::{Clock, SystemClock};
pub use fcm::{FcmClient, FcmConfig, ServiceAccount};
pub use message::{Alert, PushKind, PushMessage};
pub use outcome::{PushError, PushOutcome};
pub use retry::RetryPolicy;
pub use sender::{Platform, PushSender};
