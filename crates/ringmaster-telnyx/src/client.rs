//! Call Control REST client: every command carries a caller-chosen `command_id`, so retrying
//! (on 5xx, 429 and network errors, with capped exponential backoff and jitter) never runs a
//! command twice.

use crate::api_error::{codes, ApiError, ErrorBody};
use crate::commands::{
    AnswerRequest, BridgeRequest, CommandId, CommandResult, DataEnvelope, DialRequest,
    DialResponse, HangupRequest, PlaybackStartRequest, RecordStartRequest, RejectRequest,
    SpeakRequest, TransferRequest,
};
use reqwest::{StatusCode, Url};
use ringmaster_core::CallControlId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// Telnyx's production API root.
pub const DEFAULT_BASE_URL: &str = "https://api.telnyx.com/v2";
/// Largest response body read; anything bigger is treated as a broken response.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How failed requests are retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles on each further retry.
    pub initial_backoff: Duration,
    /// Upper bound of the exponential backoff.
    pub max_backoff: Duration,
    /// Longest `Retry-After` we wait for; when asked to wait longer we give up instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The exponential backoff before retry number `retry` (1-based), before jitter.
    pub fn base_backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The wait before retry number `retry`: half the backoff plus a random part up to the other
    /// half (so concurrent clients spread out), and never less than `retry_after`.
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        rng: &mut impl rand::Rng,
    ) -> Duration {
        let base = self.base_backoff(retry);
        let half = base / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let jittered = half + Duration::from_millis(rng.gen_range(0..=jitter_ms));
        retry_after.map_or(jittered, |ra| ra.max(jittered))
    }
}

/// Where and how to reach Telnyx.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// API root including `/v2`, e.g. [`DEFAULT_BASE_URL`] or an emulator's `base_url()`.
    pub base_url: String,
    /// API key, sent as `Authorization: Bearer`.
    pub api_key: String,
    /// Limit for one attempt (connect, send and read the response).
    pub request_timeout: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
}

impl ClientConfig {
    /// Production Telnyx with default timeouts and retries.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: api_key.into(),
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }

    /// The same configuration against another API root.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }
}

/// A command that failed.
#[derive(Debug, thiserror::Error)]
pub enum TelnyxError {
    /// Telnyx answered with an `{"errors":[...]}` body.
    #[error("Telnyx answered {status} after {attempts} attempt(s): {}", summary(.errors))]
    Api {
        /// HTTP status.
        status: u16,
        /// The parsed errors.
        errors: Vec<ApiError>,
        /// Attempts made.
        attempts: u32,
        /// The wait the last response's `Retry-After` asked for, if it had one.
        retry_after: Option<Duration>,
    },
    /// Telnyx answered with an error status and a body that is not an error document.
    #[error("Telnyx answered {status} after {attempts} attempt(s): {body}")]
    Http {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
        /// Attempts made.
        attempts: u32,
        /// The wait the last response's `Retry-After` asked for, if it had one.
        retry_after: Option<Duration>,
    },
    /// No complete response within the per-request timeout, on every attempt.
    #[error("no response within the timeout after {attempts} attempt(s)")]
    Timeout {
        /// Attempts made.
        attempts: u32,
    },
    /// Connection or protocol failure, on every attempt.
    #[error("transport error after {attempts} attempt(s): {message}")]
    Transport {
        /// What went wrong.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Telnyx asked us to wait longer than the policy's `max_retry_after`.
    #[error("Telnyx asked to retry after {retry_after:?}, longer than allowed")]
    RetryAfterTooLong {
        /// The requested wait.
        retry_after: Duration,
        /// HTTP status that carried it.
        status: u16,
    },
    /// A success response whose body is not what the API documents.
    #[error("unexpected response body: {0}")]
    Decode(String),
    /// The client configuration is unusable.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

fn summary(errors: &[ApiError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} {}", e.code, e.title))
        .collect::<Vec<_>>()
        .join("; ")
}

impl TelnyxError {
    /// The first Telnyx error code, e.g. `"90018"`.
    pub fn code(&self) -> Option<&str> {
        match self {
            TelnyxError::Api { errors, .. } => errors.first().map(|e| e.code.as_str()),
            _ => None,
        }
    }

    /// Whether any error carries `code`.
    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, TelnyxError::Api { errors, .. } if errors.iter().any(|e| e.code == code))
    }

    /// The HTTP status, when Telnyx answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            TelnyxError::Api { status, .. }
            | TelnyxError::Http { status, .. }
            | TelnyxError::RetryAfterTooLong { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long Telnyx asked us to wait before trying again (its `Retry-After`), when it said;
    /// kept after the client's own retries ran out so the caller can schedule the next try.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TelnyxError::Api { retry_after, .. } | TelnyxError::Http { retry_after, .. } => {
                *retry_after
            }
            TelnyxError::RetryAfterTooLong { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Result of hangup and reject, where "already ended" (90018) is not a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndOutcome {
    /// Telnyx accepted the command.
    Ended(CommandResult),
    /// The call had already ended (Telnyx error 90018).
    AlreadyEnded,
}

/// Call Control v2 client.
#[derive(Clone, Debug)]
pub struct TelnyxClient {
    http: reqwest::Client,
    base: Url,
    config: ClientConfig,
}

enum Attempt<T> {
    Done(Result<T, TelnyxError>),
    Retry {
        error: TelnyxError,
        retry_after: Option<Duration>,
    },
}

impl TelnyxClient {
    /// A client for `config`; fails when the base URL is not http(s).
    pub fn new(config: ClientConfig) -> Result<Self, TelnyxError> {
        let base = Url::parse(&config.base_url)
            .map_err(|e| TelnyxError::Config(format!("base_url {:?}: {e}", config.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(TelnyxError::Config(format!(
                "base_url {:?} is not an http(s) URL",
                config.base_url
            )));
        }
        if config.retry.max_attempts == 0 {
            return Err(TelnyxError::Config(
                "max_attempts must be at least 1".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("ringmaster/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TelnyxError::Config(e.to_string()))?;
        Ok(Self { http, base, config })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The same client making exactly one attempt per command: for callers that own the
    /// retries themselves (the outbox dispatcher), so retries never nest.
    pub fn single_attempt(&self) -> Self {
        let mut config = self.config.clone();
        config.retry = RetryPolicy::no_retries();
        Self {
            http: self.http.clone(),
            base: self.base.clone(),
            config,
        }
    }

    /// `POST /calls`: dials a new leg. Returns the leg's ids (the only trusted source of them).
    pub async fn dial(
        &self,
        command_id: &CommandId,
        req: &DialRequest,
    ) -> Result<DialResponse, TelnyxError> {
        let url = self.url(&["calls"]);
        self.send(url, "dial", command_id, req).await
    }

    /// `actions/answer` on an inbound call.
    pub async fn answer(
        &self,
        call: &CallControlId,
        command_id: &CommandId,
        req: &AnswerRequest,
    ) -> Result<CommandResult, TelnyxError> {
        self.action(call, "answer", command_id, req).await
    }

    /// `actions/bridge`: joins `call` with `req.call_control_id`.
    pub async fn bridge(
        &self,
        call: &CallControlId,
        command_id: &CommandId,
        req: &BridgeRequest,
    ) -> Result<CommandResult, TelnyxError> {
        self.action(call, "bridge", command_id, req).await
    }

    /// `actions/hangup`; a call that already ended counts as success.
    pub async fn hangup(
        &self,
        call: &CallControlId,
        command_id: &CommandId,
        req: &HangupRequest,
    ) -> Result<EndOutcome, TelnyxError> {
        ended_ok(self.action(call, "hangup", command_id, req).await)
    }

    /// `actions/reject` of an unanswered inbound call; a call that already ended counts as success.
    pub async fn reject(
        &self,
        call: &CallControlId,
        command_id: &CommandId,
        req: &RejectRequest,
    ) -> Result<EndOutcome, TelnyxError> {
        ended_ok(self.action(call, "reject", command_id, req).await)
    }

    /// `actions/transfer` to another number or URI.
    pub async fn transfer(
        &self,
        call: &CallControlId,
        command_id: &CommandId,
        req: &TransferRequest,
    ) -> Result<CommandResult, TelnyxError> {
        self.action(call, "transfer", command_id, req).await
    }

    /// `actions/record_start`.
    pub async fn record_start(
        &self,
        call: &CallControlId,
        command_id: &CommandId,
        req: &RecordStartRequest,
    ) -> Result<CommandResult, TelnyxError> {
        self.action(call, "record_start", command_id, req).await
    }

    /// `actions/speak` (text to speech).
    pub async fn speak(
        &self,
        call: &CallControlId,
        command_id: &CommandId,
        req: &SpeakRequest,
    ) -> Result<CommandResult, TelnyxError> {
        self.action(call, "speak", command_id, req).await
    }

    /// `actions/playback_start` (play an audio file).
    pub async fn playback_start(
        &self,
        call: &CallControlId,
        command_id: &CommandId,
        req: &PlaybackStartRequest,
    ) -> Result<CommandResult, TelnyxError> {
        self.action(call, "playback_start", command_id, req).await
    }

    /// Any `POST /calls/{id}/actions/{action}` command, for actions without a typed method.
    pub async fn action<B: Serialize>(
        &self,
        call: &CallControlId,
        action: &str,
        command_id: &CommandId,
        body: &B,
    ) -> Result<CommandResult, TelnyxError> {
        let url = self.url(&["calls", call.as_str(), "actions", action]);
        self.send(url, action, command_id, body).await
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // Segments are percent-encoded here: call control ids may contain '/', '+' or '='.
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        url: Url,
        action: &str,
        command_id: &CommandId,
        body: &B,
    ) -> Result<T, TelnyxError> {
        let mut json =
            serde_json::to_value(body).map_err(|e| TelnyxError::Decode(e.to_string()))?;
        match &mut json {
            Value::Object(map) => {
                map.insert("command_id".into(), Value::from(command_id.as_str()));
            }
            _ => return Err(TelnyxError::Decode("command body is not an object".into())),
        }
        let policy = &self.config.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            tracing::debug!(action, %command_id, attempt, "telnyx command");
            match self.attempt::<T>(&url, &json, attempt).await {
                Attempt::Done(result) => return result,
                Attempt::Retry { error, retry_after } => {
                    if attempt >= policy.max_attempts {
                        return Err(error);
                    }
                    if let Some(ra) = retry_after {
                        if ra > policy.max_retry_after {
                            return Err(TelnyxError::RetryAfterTooLong {
                                retry_after: ra,
                                status: error.status().unwrap_or(429),
                            });
                        }
                    }
                    let delay = policy.delay(attempt, retry_after, &mut rand::thread_rng());
                    tracing::warn!(action, %command_id, attempt, ?delay, %error, "retrying telnyx command");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        url: &Url,
        body: &Value,
        attempts: u32,
    ) -> Attempt<T> {
        let request = self
            .http
            .post(url.clone())
            .bearer_auth(&self.config.api_key)
            .json(body)
            .send();
        let limit = self.config.request_timeout;
        let outcome = tokio::time::timeout(limit, async {
            let response = request.await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let body = read_limited(response).await?;
            Ok::<_, reqwest::Error>((status, retry_after, body))
        })
        .await;
        let (status, retry_after, bytes) = match outcome {
            Err(_) => {
                return Attempt::Retry {
                    error: TelnyxError::Timeout { attempts },
                    retry_after: None,
                }
            }
            Ok(Err(e)) => {
                let error = if e.is_timeout() {
                    TelnyxError::Timeout { attempts }
                } else {
                    TelnyxError::Transport {
                        message: error_chain(&e),
                        attempts,
                    }
                };
                return Attempt::Retry {
                    error,
                    retry_after: None,
                };
            }
            Ok(Ok(parts)) => parts,
        };
        let Some(bytes) = bytes else {
            return Attempt::Retry {
                error: TelnyxError::Transport {
                    message: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
                    attempts,
                },
                retry_after: None,
            };
        };
        if status.is_success() {
            return Attempt::Done(
                serde_json::from_slice::<DataEnvelope<T>>(&bytes)
                    .map(|env| env.data)
                    .map_err(|e| TelnyxError::Decode(e.to_string())),
            );
        }
        let error = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) if !body.errors.is_empty() => TelnyxError::Api {
                status: status.as_u16(),
                errors: body.errors,
                attempts,
                retry_after,
            },
            _ => TelnyxError::Http {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
                attempts,
                retry_after,
            },
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retry { error, retry_after }
        } else {
            Attempt::Done(Err(error))
        }
    }
}

fn ended_ok(result: Result<CommandResult, TelnyxError>) -> Result<EndOutcome, TelnyxError> {
    match result {
        Ok(r) => Ok(EndOutcome::Ended(r)),
        Err(e) if e.has_code(codes::CALL_ALREADY_ENDED) => Ok(EndOutcome::AlreadyEnded),
        Err(e) => Err(e),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads the body, `None` when it exceeds [`MAX_RESPONSE_BYTES`].
async fn read_limited(mut response: reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

pub use ringmaster_core::retry_after::parse_retry_after;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_range() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(1),
        };
        assert_eq!(policy.base_backoff(1), Duration::from_millis(100));
        assert_eq!(policy.base_backoff(2), Duration::from_millis(200));
        assert_eq!(policy.base_backoff(3), Duration::from_millis(350));
        assert_eq!(policy.base_backoff(40), Duration::from_millis(350));
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retry in 1..6 {
            let base = policy.base_backoff(retry);
            let d = policy.delay(retry, None, &mut rng);
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
        }
        let asked = Duration::from_millis(900);
        assert_eq!(policy.delay(1, Some(asked), &mut rng), asked);
    }

    #[test]
    fn bad_base_url_is_a_config_error() {
        let err = TelnyxClient::new(ClientConfig::new("k").with_base_url("ftp://x")).unwrap_err();
        assert!(matches!(err, TelnyxError::Config(_)));
    }

    #[test]
    fn action_urls_percent_encode_the_call_control_id() {
        let client =
            TelnyxClient::new(ClientConfig::new("k").with_base_url("http://127.0.0.1:9/v2/"))
                .unwrap();
        let url = client.url(&["calls", "v2:a/b+c==", "actions", "hangup"]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/v2/calls/v2:a%2Fb+c==/actions/hangup"
        );
    }
}
