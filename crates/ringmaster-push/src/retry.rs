//! The retry policy every client applies, and the loop that applies it.

use crate::clock::Clock;
use crate::outcome::PushOutcome;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use ringmaster_core::retry_after::parse_retry_after;
use std::future::Future;
use std::time::{Duration, SystemTime};

/// How many times to try and how long to wait in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubles each time after.
    pub initial_backoff: Duration,
    /// Cap on the exponential backoff.
    pub max_backoff: Duration,
    /// Longest wait the client does itself. A provider asking for more (via `Retry-After`) gets
    /// a `Retryable` outcome back to the caller instead of a blocked task.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// One attempt: for callers that own the retries (the outbox dispatcher), so retries never
    /// nest. A refused auth token is still renewed once, which is not a retry of the send.
    pub fn single_attempt() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Backoff after the `attempt`-th failure (1-based): `initial · 2^(attempt-1)`, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What one attempt came to.
pub(crate) enum Attempt {
    /// Final: return this outcome.
    Done(PushOutcome),
    /// Transient: wait (at least `retry_after`) and try again.
    Retry {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// The auth token was refused and has been dropped: try again at once with a new one.
    Reauth { reason: String },
}

/// The response's `Retry-After` at `now`, in either form (the shared parser of every
/// provider client).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// Runs `attempt` under `policy`: backs off between transient failures, honours Retry-After,
/// allows one immediate re-authentication.
pub(crate) async fn with_retries<F, Fut>(
    policy: &RetryPolicy,
    clock: &dyn Clock,
    mut attempt: F,
) -> PushOutcome
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut n = 1;
    let mut reauthed = false;
    loop {
        match attempt(n).await {
            Attempt::Done(outcome) => return outcome,
            Attempt::Reauth { reason } if !reauthed => {
                tracing::debug!(%reason, "auth token refused; retrying with a fresh one");
                reauthed = true;
            }
            Attempt::Reauth { reason } => {
                return PushOutcome::Fatal(crate::PushError::Credentials(reason));
            }
            Attempt::Retry {
                retry_after,
                reason,
            } => {
                if n >= max_attempts {
                    return PushOutcome::Retryable {
                        retry_after,
                        reason,
                    };
                }
                let wait = policy.backoff(n).max(retry_after.unwrap_or_default());
                if wait > policy.max_wait {
                    return PushOutcome::Retryable {
                        retry_after: Some(wait),
                        reason,
                    };
                }
                tracing::debug!(%reason, attempt = n, wait_ms = wait.as_millis() as u64, "push failed; retrying");
                clock.sleep(wait).await;
                n += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_wait: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(350));
        assert_eq!(p.backoff(40), Duration::from_millis(350));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_767);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(10)));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }
}
