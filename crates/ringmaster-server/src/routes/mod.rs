//! HTTP handlers, one module per API area.

pub mod admin;
pub mod guard;
pub mod health;
pub mod quality;
pub mod timeline;
pub mod views;
pub mod voip;
pub mod webhook_endpoints;
pub mod webhooks;

use crate::error::ApiError;
use axum::extract::FromRequest;

/// `Json` whose rejections render as our JSON errors (400 malformed, 413 too large, 415).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Longest E.164 number: `+` and 15 digits.
const MAX_E164: usize = 16;

/// Whether `number` is E.164: `+`, a non-zero digit, 1 to 14 more digits.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    number.len() <= MAX_E164
        && digits.len() >= 2
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers() {
        for ok in ["+15551234567", "+44", "+123456789012345"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "15551234567",
            "+0123",
            "+1",
            "+1234567890123456",
            "+1 555",
            "",
            "+",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }
}
