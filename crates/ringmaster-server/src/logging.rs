//! Process-wide logging: human-readable lines by default, one JSON object per line with
//! `RINGMASTER_LOG_FORMAT=json`; and the span that gives every device-API request about a call
//! its `call_session_id`.

use axum::extract::{RawPathParams, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;

/// Environment variable choosing the log format (`text` or `json`).
pub const LOG_FORMAT_VAR: &str = "RINGMASTER_LOG_FORMAT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the event's spans and their fields.
    Json,
}

/// The value of `RINGMASTER_LOG_FORMAT` is neither `text` nor `json`.
#[derive(Debug, thiserror::Error)]
#[error("{LOG_FORMAT_VAR} must be text or json, not {0:?}")]
pub struct UnknownLogFormat(String);

impl LogFormat {
    /// The format named by `RINGMASTER_LOG_FORMAT` (text when unset or empty).
    pub fn from_env() -> Result<Self, UnknownLogFormat> {
        match std::env::var(LOG_FORMAT_VAR) {
            Ok(v) => v.parse(),
            Err(_) => Ok(Self::Text),
        }
    }
}

impl std::str::FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, UnknownLogFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(UnknownLogFormat(s.to_owned())),
        }
    }
}

/// Installs the global subscriber writing to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // The span list carries `call_session_id` from whichever span set it, so a log
        // pipeline can select a call's lines without knowing which layer logged them.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

thread_local! {
    /// The node span this runtime thread runs inside (see [`enter_on_this_thread`]).
    static NODE_SPAN: std::cell::RefCell<Option<tracing::span::EnteredSpan>> =
        const { std::cell::RefCell::new(None) };
}

/// The root span every log line of a `serve` process carries: `node{node_id=...}`.
pub fn node_span(node_id: &str) -> tracing::Span {
    tracing::info_span!("node", node_id = %node_id)
}

/// Enters `span` on the calling thread until [`leave_on_this_thread`]; the runtime calls it
/// on every worker thread it starts, so events of every task sit inside the node span
/// (a spawned task does not inherit its spawner's span).
pub fn enter_on_this_thread(span: &tracing::Span) {
    NODE_SPAN.with(|slot| *slot.borrow_mut() = Some(span.clone().entered()));
}

/// Leaves the span entered by [`enter_on_this_thread`].
pub fn leave_on_this_thread() {
    NODE_SPAN.with(|slot| slot.borrow_mut().take());
}

/// Route middleware: runs the request in a `call` span whose `call_session_id` is the route's
/// `{call_id}`; a handler that creates a call records the new id into it.
pub async fn call_span(params: RawPathParams, request: Request, next: Next) -> Response {
    let call_id = params
        .iter()
        .find(|(name, _)| *name == "call_id")
        .map(|(_, value)| value.to_owned());
    let span = tracing::info_span!("call", call_session_id = tracing::field::Empty);
    if let Some(id) = &call_id {
        span.record("call_session_id", id.as_str());
    }
    let method = request.method().clone();
    let route = request.uri().path().to_owned();
    async move {
        let response = next.run(request).await;
        tracing::debug!(%method, %route, status = response.status().as_u16(), "device request");
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_unknown_ones_are_refused() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("".parse::<LogFormat>().unwrap(), LogFormat::Text);
        let err = "yaml".parse::<LogFormat>().unwrap_err().to_string();
        assert!(err.contains("RINGMASTER_LOG_FORMAT"), "{err}");
    }
}
