//! Firebase Cloud Messaging HTTP v1: a service-account JWT (RS256) exchanged for an OAuth
//! access token that is cached until shortly before it expires; high-priority data messages.

use crate::clock::{unix_secs, Clock};
use crate::http::{self, read_limited};
use crate::message::PushMessage;
use crate::outcome::{PushError, PushOutcome};
use crate::retry::{retry_after, with_retries, Attempt, RetryPolicy};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Production FCM endpoint.
pub const FCM_BASE_URL: &str = "https://fcm.googleapis.com";
/// OAuth scope for sending messages.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Google's token endpoint, used when the service account names none.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// FCM's limit on a message's data payload.
pub const MAX_DATA_BYTES: usize = 4096;
/// Longest registration token accepted.
const MAX_TOKEN_LEN: usize = 4096;
/// An access token is renewed this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

fn default_token_uri() -> String {
    GOOGLE_TOKEN_URI.to_owned()
}

/// The fields of a Google service-account JSON key file that FCM needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    /// Firebase project id (the `{project}` of the send URL).
    pub project_id: String,
    /// Service account email: the JWT issuer.
    pub client_email: String,
    /// PEM-encoded RSA private key.
    pub private_key: String,
    /// Key id, sent as the JWT `kid`.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// OAuth token endpoint.
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    /// Parses the JSON key file's contents.
    pub fn from_json(json: &str) -> Result<Self, PushError> {
        serde_json::from_str(json)
            .map_err(|e| PushError::Credentials(format!("service account JSON: {e}")))
    }

    /// Reads and parses a JSON key file.
    pub fn from_file(path: &Path) -> Result<Self, PushError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PushError::Credentials(format!("{}: {e}", path.display())))?;
        Self::from_json(&text)
    }
}

/// FCM client settings.
#[derive(Clone, Debug)]
pub struct FcmConfig {
    /// The service account that signs token requests.
    pub service_account: ServiceAccount,
    /// Base URL of the FCM API ([`FCM_BASE_URL`] in production).
    pub base_url: String,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Retries inside [`FcmClient::send`].
    pub retry: RetryPolicy,
}

impl FcmConfig {
    /// Production settings for a service account.
    pub fn new(service_account: ServiceAccount) -> Self {
        Self {
            service_account,
            base_url: FCM_BASE_URL.to_owned(),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct AccessToken {
    token: String,
    expires_at: SystemTime,
}

/// Sends FCM data messages. Cheap to share behind an `Arc`; the token cache is shared.
pub struct FcmClient {
    config: FcmConfig,
    key: EncodingKey,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    token: Mutex<Option<AccessToken>>,
}

impl fmt::Debug for FcmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The FCM error body: `{"error":{"code","message","status","details":[...]}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl ErrorDetail {
    /// The FCM-specific `errorCode` from `details`, falling back to the RPC status.
    fn fcm_code(&self) -> &str {
        self.details
            .iter()
            .find_map(|d| d.get("errorCode").and_then(Value::as_str))
            .unwrap_or(&self.status)
    }

    /// Whether a `BadRequest` detail blames the registration token.
    fn blames_token(&self) -> bool {
        let violation = self.details.iter().any(|d| {
            d.get("fieldViolations")
                .and_then(Value::as_array)
                .is_some_and(|v| {
                    v.iter()
                        .any(|f| f.get("field").and_then(Value::as_str) == Some("message.token"))
                })
        });
        violation
            || self
                .message
                .to_ascii_lowercase()
                .contains("registration token")
    }
}

impl FcmClient {
    /// Builds a client; fails if the private key does not parse.
    pub fn new(config: FcmConfig, clock: Arc<dyn Clock>) -> Result<Self, PushError> {
        let key = EncodingKey::from_rsa_pem(config.service_account.private_key.as_bytes())
            .map_err(|e| PushError::Credentials(format!("service account private key: {e}")))?;
        let http = http::client(&config.base_url, config.request_timeout, false)?;
        Ok(Self {
            config,
            key,
            http,
            clock,
            token: Mutex::new(None),
        })
    }

    /// Sends `message` to one registration token, retrying transient failures.
    pub async fn send(&self, token: &str, message: &PushMessage) -> PushOutcome {
        if token.is_empty()
            || token.len() > MAX_TOKEN_LEN
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            return PushOutcome::InvalidToken {
                reason: "malformed registration token".to_owned(),
            };
        }
        let body = match self.body(token, message) {
            Ok(body) => body,
            Err(e) => return PushOutcome::Fatal(e),
        };
        with_retries(&self.config.retry, self.clock.as_ref(), |_| {
            self.attempt(&body)
        })
        .await
    }

    fn body(&self, token: &str, message: &PushMessage) -> Result<Value, PushError> {
        let mut data = serde_json::Map::new();
        data.insert(
            "type".to_owned(),
            Value::String(message.kind.as_str().to_owned()),
        );
        for (k, v) in &message.data {
            data.insert(k.clone(), Value::String(v.clone()));
        }
        let size: usize = data
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > MAX_DATA_BYTES {
            return Err(PushError::InvalidMessage(format!(
                "data is {size} bytes; FCM allows {MAX_DATA_BYTES}"
            )));
        }
        let mut android =
            json!({ "priority": "HIGH", "ttl": format!("{}s", message.ttl.as_secs()) });
        if let Some(key) = &message.collapse_key {
            android["collapse_key"] = Value::String(key.clone());
        }
        Ok(json!({ "message": { "token": token, "data": data, "android": android } }))
    }

    async fn attempt(&self, body: &Value) -> Attempt {
        let access = match self.access_token().await {
            Ok(token) => token,
            Err(attempt) => return attempt,
        };
        let url = format!(
            "{}/v1/projects/{}/messages:send",
            http::base(&self.config.base_url),
            self.config.service_account.project_id
        );
        let response = match self
            .http
            .post(&url)
            .bearer_auth(&access)
            .json(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    retry_after: None,
                    reason: format!("FCM request failed: {e}"),
                }
            }
        };
        let status = response.status();
        let wait = retry_after(response.headers(), self.clock.now());
        let bytes = read_limited(response).await;
        if status.is_success() {
            let id = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned));
            return Attempt::Done(PushOutcome::Delivered { id });
        }
        let detail = serde_json::from_slice::<ErrorBody>(&bytes)
            .unwrap_or_default()
            .error;
        let code = detail.fcm_code().to_owned();
        let reason = if detail.message.is_empty() {
            code.clone()
        } else {
            format!("{code}: {}", detail.message)
        };
        match (status.as_u16(), code.as_str()) {
            (_, "UNREGISTERED") => Attempt::Done(PushOutcome::InvalidToken { reason }),
            (400, _) | (_, "INVALID_ARGUMENT") if detail.blames_token() => {
                Attempt::Done(PushOutcome::InvalidToken { reason })
            }
            (401, _) => {
                *self.token.lock().await = None;
                Attempt::Reauth { reason }
            }
            (429 | 500..=599, _) | (_, "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") => {
                Attempt::Retry {
                    retry_after: wait,
                    reason,
                }
            }
            (s, _) => Attempt::Done(PushOutcome::Fatal(PushError::Rejected {
                status: s,
                reason,
            })),
        }
    }

    /// A cached access token, or a fresh one from the token endpoint.
    async fn access_token(&self) -> Result<String, Attempt> {
        let mut cached = self.token.lock().await;
        let now = self.clock.now();
        if let Some(token) = cached.as_ref() {
            if now + EXPIRY_MARGIN < token.expires_at {
                return Ok(token.token.clone());
            }
        }
        let account = &self.config.service_account;
        let iat = unix_secs(now);
        let claims = Claims {
            iss: &account.client_email,
            scope: FCM_SCOPE,
            aud: &account.token_uri,
            iat,
            exp: iat + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = account.private_key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            Attempt::Done(PushOutcome::Fatal(PushError::Credentials(format!(
                "signing the token request: {e}"
            ))))
        })?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ];
        let response = self
            .http
            .post(&account.token_uri)
            .form(&form)
            .send()
            .await
            .map_err(|e| Attempt::Retry {
                retry_after: None,
                reason: format!("token request failed: {e}"),
            })?;
        let status = response.status();
        let wait = retry_after(response.headers(), self.clock.now());
        let bytes = read_limited(response).await;
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Attempt::Retry {
                retry_after: wait,
                reason: format!("token endpoint answered {status}"),
            });
        }
        let parsed = status
            .is_success()
            .then(|| serde_json::from_slice::<TokenResponse>(&bytes).ok())
            .flatten()
            .filter(|t| !t.access_token.is_empty());
        let Some(token) = parsed else {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            return Err(Attempt::Done(PushOutcome::Fatal(PushError::Credentials(
                format!("token endpoint answered {status}: {text}"),
            ))));
        };
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        *cached = Some(AccessToken {
            token: token.access_token.clone(),
            expires_at: now + lifetime,
        });
        Ok(token.access_token)
    }
}
