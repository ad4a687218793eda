//! Outbound webhooks to the host app, signed the Standard Webhooks way (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`).
//!
//! Host events are committed to the outbox with the state change that causes them; the relay
//! moves them to the event log in outbox order, then delivers each endpoint's events one at a
//! time from its cursor: in commit order, at least once (a retry keeps the `webhook-id`), with
//! exponential backoff and jitter. An endpoint that keeps failing for
//! [`WebhookSettings::disable_after`] is disabled.

use crate::clock::Clock;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use ringmaster_store::webhook_store::{AttemptResult, LoggedEvent, WebhookEndpoint};
use ringmaster_store::Store;
use sha2::Sha256;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Prefix of endpoint secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// Events moved from the outbox per write; a round writes as many as there are pending. On
/// SQLite each write is one step of a group-writer batch, which every commit queued behind it
/// waits for: at 500 a busy poll added milliseconds to one batch, where 32 add a few tenths,
/// and the commits in between go out in batches of their own.
const PUBLISH_BATCH: u32 = 32;
/// Events read per endpoint per round.
const DELIVER_BATCH: u32 = 100;

/// How deliveries are retried and when an endpoint is given up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// An endpoint failing for this long without a success is disabled.
    pub disable_after: Duration,
    /// Wait before the first retry; doubles per failure.
    pub retry_base: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
    /// Timeout of one delivery.
    pub timeout: Duration,
    /// How often the outbox and the endpoints are checked.
    pub poll: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            disable_after: Duration::from_secs(24 * 3600),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(250),
        }
    }
}

/// A new endpoint secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    format!(
        "{SECRET_PREFIX}{}",
        BASE64.encode(rand::thread_rng().gen::<[u8; 32]>())
    )
}

/// The `webhook-signature` header value of `body` with `secret`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = BASE64
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// Wait before retrying after the `failures`-th failure in a row: exponential, capped, with
/// up to 25% random jitter so endpoints that failed together do not retry together.
pub fn backoff(settings: &WebhookSettings, failures: u32) -> Duration {
    let exp = settings
        .retry_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let wait = exp.min(settings.retry_max);
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    wait.mul_f64(1.0 + jitter)
}

/// Moves host events to the log and delivers them. Run one per process.
pub struct WebhookRelay {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    settings: WebhookSettings,
    in_flight: Mutex<HashSet<String>>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl WebhookRelay {
    /// A relay over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: WebhookSettings,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            store,
            clock,
            http,
            settings,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Relays until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(e) = self.round(&mut tasks).await {
                tracing::warn!(error = %e, "webhook relay round failed");
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    async fn round(
        self: &Arc<Self>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Result<(), ringmaster_store::StoreError> {
        while self.store.publish_host_events(PUBLISH_BATCH).await? == PUBLISH_BATCH {}
        let now = self.clock.now();
        for endpoint in self.store.webhook_endpoints().await? {
            if endpoint.disabled_at.is_some() || endpoint.next_attempt_at > now {
                continue;
            }
            let claimed = self
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(endpoint.id.clone());
            if !claimed {
                continue;
            }
            let me = self.clone();
            tasks.spawn(async move {
                let id = endpoint.id.clone();
                if let Err(e) = me.deliver_pending(endpoint).await {
                    tracing::warn!(endpoint = %id, error = %e, "webhook delivery round failed");
                }
                me.in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            });
        }
        Ok(())
    }

    /// Delivers the endpoint's events after its cursor, in order, until one fails.
    async fn deliver_pending(
        &self,
        endpoint: WebhookEndpoint,
    ) -> Result<(), ringmaster_store::StoreError> {
        let events = self
            .store
            .events_after(endpoint.cursor, DELIVER_BATCH)
            .await?;
        let mut failing_since = endpoint.failing_since;
        let mut failures = endpoint.attempts;
        for event in events {
            if !endpoint.events.contains(&event.event_type) {
                self.store
                    .skip_webhook_events(&endpoint.id, event.seq)
                    .await?;
                continue;
            }
            let at = self.clock.now();
            let outcome = self.post(&endpoint, &event).await;
            let delivered = outcome.is_ok();
            let (status_code, error) = match outcome {
                Ok(status) => (Some(status), None),
                Err((status, error)) => (status, Some(error)),
            };
            let mut attempt = AttemptResult {
                seq: event.seq,
                event_id: event.event_id.clone(),
                at,
                status_code,
                error,
                next_attempt_at: at,
                disable: None,
            };
            if !delivered {
                failures += 1;
                let since = *failing_since.get_or_insert(at);
                attempt.next_attempt_at = at + backoff(&self.settings, failures);
                if at.as_millis().saturating_sub(since.as_millis())
                    >= millis(self.settings.disable_after)
                {
                    attempt.disable = Some(format!(
                        "failing since {} ms ago; last error: {}",
                        at.as_millis().saturating_sub(since.as_millis()),
                        attempt.error.as_deref().unwrap_or("")
                    ));
                    tracing::warn!(endpoint = %endpoint.id, url = %endpoint.url, "webhook endpoint disabled");
                }
            }
            tracing::debug!(endpoint = %endpoint.id, event_id = %event.event_id, delivered, "webhook attempt");
            crate::telemetry::host_webhook(&event.event_type, delivered);
            self.store
                .record_webhook_attempt(&endpoint.id, attempt)
                .await?;
            if !delivered {
                break;
            }
        }
        Ok(())
    }

    /// One signed POST; the endpoint's status on success, else its status (if any) and why.
    async fn post(
        &self,
        endpoint: &WebhookEndpoint,
        event: &LoggedEvent,
    ) -> Result<u16, (Option<u16>, String)> {
        // Receivers check this against their own clock, so it is wall-clock time.
        let timestamp = i64::try_from(crate::clock::unix_secs()).unwrap_or(i64::MAX);
        let signature = sign(&endpoint.secret, &event.event_id, timestamp, &event.body)
            .ok_or((None, "the endpoint secret is not base64".to_owned()))?;
        let response = self
            .http
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &event.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(event.body.clone())
            .send()
            .await
            .map_err(|e| (None, e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err((Some(status.as_u16()), format!("HTTP {status}")))
        }
    }
}

impl std::fmt::Debug for WebhookRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRelay")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_and_32_random_bytes() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        let key = BASE64
            .decode(a.strip_prefix(SECRET_PREFIX).unwrap())
            .unwrap();
        assert_eq!(key.len(), 32);
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let s = WebhookSettings::default();
        let first = backoff(&s, 1);
        assert!(first >= s.retry_base && first <= s.retry_base.mul_f64(1.25));
        let third = backoff(&s, 3);
        assert!(third >= s.retry_base * 4);
        let late = backoff(&s, 40);
        assert!(late >= s.retry_max && late <= s.retry_max.mul_f64(1.25));
    }
}
