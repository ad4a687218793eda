//! Apple Push Notification service over HTTP/2 with token (ES256) authentication. Incoming
//! calls go as VoIP pushes to `<bundle>.voip`; everything else as alert or background pushes.

use crate::clock::{unix_secs, Clock};
use crate::http::{self, read_limited};
use crate::message::{PushKind, PushMessage};
use crate::outcome::{PushError, PushOutcome};
use crate::retry::{retry_after, with_retries, Attempt, RetryPolicy};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Production APNs endpoint.
pub const APNS_PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Development (sandbox) APNs endpoint.
pub const APNS_SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// APNs rejects provider tokens older than an hour.
pub const MAX_TOKEN_AGE: Duration = Duration::from_secs(60 * 60);
/// Payload limit of a VoIP push.
pub const MAX_VOIP_PAYLOAD: usize = 5120;
/// Payload limit of any other push.
pub const MAX_PAYLOAD: usize = 4096;
/// Longest device token accepted (they are hex; 64 characters today).
const MAX_DEVICE_TOKEN_LEN: usize = 200;

/// APNs client settings.
#[derive(Clone)]
pub struct ApnsConfig {
    /// The 10-character key id of the `.p8` signing key (JWT `kid`).
    pub key_id: String,
    /// The Apple developer team id (JWT `iss`).
    pub team_id: String,
    /// Contents of the `.p8` file (PKCS#8 PEM, P-256).
    pub signing_key_pem: String,
    /// The app's bundle id; VoIP pushes go to `<bundle_id>.voip`.
    pub bundle_id: String,
    /// [`APNS_PRODUCTION_URL`], [`APNS_SANDBOX_URL`] or a test server.
    pub base_url: String,
    /// Age at which the provider token is renewed; must stay below an hour (Apple also asks
    /// for no more than one new token every 20 minutes).
    pub token_refresh: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Retries inside [`ApnsClient::send`].
    pub retry: RetryPolicy,
}

impl fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("signing_key_pem", &"<redacted>")
            .field("bundle_id", &self.bundle_id)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ApnsConfig {
    /// Production settings for a signing key.
    pub fn new(
        key_id: impl Into<String>,
        team_id: impl Into<String>,
        signing_key_pem: impl Into<String>,
        bundle_id: impl Into<String>,
    ) -> Self {
        Self {
            key_id: key_id.into(),
            team_id: team_id.into(),
            signing_key_pem: signing_key_pem.into(),
            bundle_id: bundle_id.into(),
            base_url: APNS_PRODUCTION_URL.to_owned(),
            token_refresh: Duration::from_secs(50 * 60),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }

    /// Reads the signing key from a `.p8` file.
    pub fn read_signing_key(path: &Path) -> Result<String, PushError> {
        std::fs::read_to_string(path)
            .map_err(|e| PushError::Credentials(format!("{}: {e}", path.display())))
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    reason: String,
}

struct ProviderToken {
    jwt: String,
    issued_at: SystemTime,
}

/// How one message goes over APNs.
struct Request {
    topic: String,
    push_type: &'static str,
    priority: &'static str,
    collapse_id: Option<String>,
    expiration: u64,
    payload: Vec<u8>,
}

/// Sends APNs pushes over one HTTP/2 connection pool. Share it behind an `Arc`.
pub struct ApnsClient {
    config: ApnsConfig,
    key: EncodingKey,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    token: Mutex<Option<ProviderToken>>,
}

impl fmt::Debug for ApnsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ApnsClient {
    /// Builds a client; fails if the key does not parse or `token_refresh` is not below an hour.
    pub fn new(config: ApnsConfig, clock: Arc<dyn Clock>) -> Result<Self, PushError> {
        let key = EncodingKey::from_ec_pem(config.signing_key_pem.as_bytes())
            .map_err(|e| PushError::Credentials(format!("APNs signing key: {e}")))?;
        if config.token_refresh.is_zero() || config.token_refresh >= MAX_TOKEN_AGE {
            return Err(PushError::Credentials(
                "token_refresh must be between 0 and 60 minutes".to_owned(),
            ));
        }
        // APNs speaks only HTTP/2.
        let http = http::client(&config.base_url, config.request_timeout, true)?;
        Ok(Self {
            config,
            key,
            http,
            clock,
            token: Mutex::new(None),
        })
    }

    /// Sends `message` to one device token, retrying transient failures.
    pub async fn send(&self, device_token: &str, message: &PushMessage) -> PushOutcome {
        let token_ok = !device_token.is_empty()
            && device_token.len() <= MAX_DEVICE_TOKEN_LEN
            && device_token.bytes().all(|b| b.is_ascii_hexdigit());
        if !token_ok {
            return PushOutcome::InvalidToken {
                reason: "malformed device token".to_owned(),
            };
        }
        let request = match self.request(message) {
            Ok(request) => request,
            Err(e) => return PushOutcome::Fatal(e),
        };
        with_retries(&self.config.retry, self.clock.as_ref(), |_| {
            self.attempt(device_token, &request)
        })
        .await
    }

    /// Maps a message onto APNs headers and payload. Only `IncomingCall` may become a VoIP
    /// push: iOS requires every VoIP push to report a new CallKit call.
    fn request(&self, message: &PushMessage) -> Result<Request, PushError> {
        let mut payload = Map::new();
        for (k, v) in &message.data {
            payload.insert(k.clone(), Value::String(v.clone()));
        }
        payload.insert(
            "type".to_owned(),
            Value::String(message.kind.as_str().to_owned()),
        );
        let bundle = &self.config.bundle_id;
        let (topic, push_type, priority, limit) = match (message.kind, &message.alert) {
            (PushKind::IncomingCall, _) => {
                (format!("{bundle}.voip"), "voip", "10", MAX_VOIP_PAYLOAD)
            }
            (_, Some(alert)) => {
                let aps = json!({ "alert": { "title": alert.title, "body": alert.body }, "content-available": 1 });
                payload.insert("aps".to_owned(), aps);
                (bundle.clone(), "alert", "10", MAX_PAYLOAD)
            }
            (_, None) => {
                payload.insert("aps".to_owned(), json!({ "content-available": 1 }));
                // Apple requires priority 5 for background pushes.
                (bundle.clone(), "background", "5", MAX_PAYLOAD)
            }
        };
        let payload =
            serde_json::to_vec(&payload).map_err(|e| PushError::InvalidMessage(e.to_string()))?;
        if payload.len() > limit {
            return Err(PushError::InvalidMessage(format!(
                "payload is {} bytes; APNs allows {limit} for {push_type}",
                payload.len()
            )));
        }
        if message.collapse_key.as_ref().is_some_and(|k| k.len() > 64) {
            return Err(PushError::InvalidMessage(
                "apns-collapse-id is longer than 64 bytes".to_owned(),
            ));
        }
        let expiration = if message.ttl.is_zero() {
            0
        } else {
            unix_secs(self.clock.now()) + message.ttl.as_secs().max(1)
        };
        Ok(Request {
            topic,
            push_type,
            priority,
            collapse_id: message.collapse_key.clone(),
            expiration,
            payload,
        })
    }

    async fn attempt(&self, device_token: &str, request: &Request) -> Attempt {
        let jwt = match self.provider_token().await {
            Ok(jwt) => jwt,
            Err(e) => return Attempt::Done(PushOutcome::Fatal(e)),
        };
        let url = format!(
            "{}/3/device/{device_token}",
            http::base(&self.config.base_url)
        );
        let mut builder = self
            .http
            .post(&url)
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", &request.topic)
            .header("apns-push-type", request.push_type)
            .header("apns-priority", request.priority)
            .header("apns-expiration", request.expiration.to_string())
            .header("content-type", "application/json")
            .body(request.payload.clone());
        if let Some(id) = &request.collapse_id {
            builder = builder.header("apns-collapse-id", id);
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    retry_after: None,
                    reason: format!("APNs request failed: {e}"),
                }
            }
        };
        let status = response.status().as_u16();
        let wait = retry_after(response.headers(), self.clock.now());
        let apns_id = response
            .headers()
            .get("apns-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(response).await;
        if status == 200 {
            return Attempt::Done(PushOutcome::Delivered { id: apns_id });
        }
        let reason = serde_json::from_slice::<ErrorBody>(&bytes)
            .unwrap_or_default()
            .reason;
        let reason = if reason.is_empty() {
            format!("HTTP {status}")
        } else {
            reason
        };
        match (status, reason.as_str()) {
            (410, _) | (_, "BadDeviceToken" | "Unregistered" | "ExpiredToken") => {
                Attempt::Done(PushOutcome::InvalidToken { reason })
            }
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                *self.token.lock().await = None;
                Attempt::Reauth { reason }
            }
            (429 | 500..=599, _) => Attempt::Retry {
                retry_after: wait,
                reason,
            },
            _ => Attempt::Done(PushOutcome::Fatal(PushError::Rejected { status, reason })),
        }
    }

    /// The cached provider token, re-signed once it reaches `token_refresh` in age.
    async fn provider_token(&self) -> Result<String, PushError> {
        let mut cached = self.token.lock().await;
        let now = self.clock.now();
        if let Some(token) = cached.as_ref() {
            let age = now.duration_since(token.issued_at).unwrap_or(Duration::MAX);
            if age < self.config.token_refresh {
                return Ok(token.jwt.clone());
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.config.key_id.clone());
        let claims = Claims {
            iss: &self.config.team_id,
            iat: unix_secs(now),
        };
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| PushError::Credentials(format!("signing the provider token: {e}")))?;
        *cached = Some(ProviderToken {
            jwt: jwt.clone(),
            issued_at: now,
        });
        Ok(jwt)
    }
}
