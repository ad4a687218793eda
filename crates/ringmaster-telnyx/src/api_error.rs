//! Telnyx REST error bodies: `{"errors":[{"code","title","detail","source","meta"}]}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Error codes Ringmaster reacts to (Telnyx sends them as digit strings).
pub mod codes {
    /// Call has already ended; success for hangup and reject.
    pub const CALL_ALREADY_ENDED: &str = "90018";
    /// Invalid Call Control ID.
    pub const INVALID_CALL_CONTROL_ID: &str = "90015";
    /// Call not answered yet.
    pub const CALL_NOT_ANSWERED: &str = "90034";
    /// Call recording triggered before audio started.
    pub const RECORDING_BEFORE_AUDIO: &str = "90020";
    /// Missing required parameter.
    pub const MISSING_PARAMETER: &str = "10004";
    /// Bad request or invalid `connection_id`.
    pub const BAD_REQUEST: &str = "10015";
    /// Phone number not in E.164 format.
    pub const NOT_E164: &str = "10016";
    /// Invalid enumerated value.
    pub const INVALID_ENUM: &str = "10032";
    /// Value outside of range.
    pub const OUT_OF_RANGE: &str = "10033";
    /// Authentication failed.
    pub const AUTH_FAILED: &str = "10009";
    /// Too many requests.
    pub const TOO_MANY_REQUESTS: &str = "10011";
}

/// One entry of an `errors` array.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Digit string such as `"90018"`.
    pub code: String,
    /// Short title.
    pub title: String,
    /// Longer explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Which request field or parameter was at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ErrorSource>,
    /// Extra data such as a docs URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
}

/// `source` of an [`ApiError`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSource {
    /// JSON pointer into the request body, e.g. `/call_control_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Query parameter name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

/// The whole error body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The errors, most relevant first.
    pub errors: Vec<ApiError>,
}

impl ApiError {
    /// An error with code, title and detail.
    pub fn new(code: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            title: title.to_owned(),
            detail: Some(detail.into()),
            source: None,
            meta: None,
        }
    }

    /// Points the error at a request field.
    pub fn with_pointer(mut self, pointer: &str) -> Self {
        self.source = Some(ErrorSource {
            pointer: Some(pointer.to_owned()),
            parameter: None,
        });
        self
    }
}
