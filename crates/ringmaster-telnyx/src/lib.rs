//! Telnyx Call Control v2 for Ringmaster: typed webhooks, Ed25519 signature verification, a
//! REST client whose commands are idempotent by `command_id`, and a local emulator that speaks
//! the same wire formats so nobody needs a Telnyx account to run or test Ringmaster.

pub mod api_error;
pub mod client;
pub mod client_state;
pub mod commands;
pub mod emulator;
pub mod iso_time;
pub mod signature;
pub mod webhook;

pub use api_error::{codes, ApiError, ErrorBody};
pub use client::{ClientConfig, EndOutcome, RetryPolicy, TelnyxClient, TelnyxError};
pub use client_state::{ClientState, ClientStateError, EncodedClientState};
pub use commands::*;
pub use emulator::{Emulator, EmulatorConfig, EmulatorHandle};
pub use signature::{
    SignatureError, WebhookSigner, WebhookVerifier, SIGNATURE_HEADER, TIMESTAMP_HEADER,
    TIMESTAMP_TOLERANCE_SECS,
};
pub use webhook::{Event, WebhookError, WebhookEvent, MAX_WEBHOOK_BODY_BYTES};
