//! The one error type every route returns; it renders `{"error":{"code","message"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An HTTP error with a stable machine-readable code and a human message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code clients can branch on.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Extra fields merged into the error object (e.g. the active call on a collision).
    pub details: Option<serde_json::Value>,
    /// Sent as `Retry-After` (whole seconds, rounded up) when set.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 429 with code `rate_limited` and a `Retry-After` of `wait`.
    pub fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        e.retry_after = Some(wait);
        e
    }

    /// Attaches extra JSON to the error object.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401 with code `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 with code `not_found`; also used for other tenants' resources so they stay invisible.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 with code `internal`; the cause is logged, not sent.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(serde_json::Value::Object(extra)), Some(obj)) =
            (self.details, error.as_object_mut())
        {
            obj.extend(extra);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs.max(1)),
            );
        }
        response
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as R;
        match rejection {
            R::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            R::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large",
            ),
            // Anything else failing while the body is read: it was cut off or too slow.
            R::BytesRejection(e) => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_incomplete",
                format!(
                    "the request body could not be read in time: {}",
                    e.body_text()
                ),
            ),
            other => Self::new(StatusCode::BAD_REQUEST, "invalid_json", other.body_text()),
        }
    }
}

/// Route result type.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<ringmaster_store::StoreError> for ApiError {
    fn from(err: ringmaster_store::StoreError) -> Self {
        use ringmaster_store::StoreError as E;
        match err {
            E::Invalid { what, reason } => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("invalid {what}: {reason}"),
            ),
            E::NotFound { kind, id } => Self::not_found(format!("{kind} {id} not found")),
            E::AlreadyExists { kind, id } => Self::new(
                StatusCode::CONFLICT,
                "already_exists",
                format!("{kind} {id} already exists"),
            ),
            E::NumberTaken { number } => Self::new(
                StatusCode::CONFLICT,
                "number_taken",
                format!("number {number} already belongs to a user"),
            ),
            other => Self::internal(other),
        }
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(err: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        match err {
            E::UnknownSession(_) => Self::not_found("no such call"),
            E::Contention(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the call is changing too fast; try again",
            ),
            E::Store(e) => e.into(),
            other => Self::internal(other),
        }
    }
}
