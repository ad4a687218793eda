//! Signed webhook delivery, one at a time in the order the world produced them, with injected
//! duplication, reordering and delay, and Telnyx-like redelivery on failure.

use super::{lock, now, ControlError, FailNext, Faults, LogEntry, Observed, Shared, WebhookRecord};
use crate::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::webhook::{WebhookEvent, WebhookMeta};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a reorder batch waits for its next webhook before going out short.
const REORDER_WINDOW: Duration = Duration::from_millis(250);

/// A webhook waiting to be delivered.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub event: WebhookEvent,
    pub url: Option<String>,
}

/// Faults currently in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultState {
    /// Webhooks still to be sent twice.
    pub duplicate_next: u32,
    /// Size of the next batch of webhooks to deliver in reverse order.
    pub reorder_next: u32,
    /// Delay before every webhook, in milliseconds.
    pub delay_ms: u64,
    /// Commands still to be failed.
    pub fail_next: Option<FailNext>,
}

/// Merges `faults` into the state in force.
pub(crate) fn apply_faults(shared: &Shared, faults: Faults) -> Result<FaultState, ControlError> {
    if let Some(fail) = &faults.fail_next {
        if !(fail.status == 429 || (500..=599).contains(&fail.status)) {
            return Err(ControlError::BadRequest(format!(
                "fail_next.status must be 429 or 5xx, not {}",
                fail.status
            )));
        }
        if let Some(ra) = &fail.retry_after {
            if http::HeaderValue::from_str(ra).is_err() {
                return Err(ControlError::BadRequest(
                    "fail_next.retry_after is not a valid header value".into(),
                ));
            }
        }
    }
    let mut state = lock(&shared.faults);
    if let Some(n) = faults.duplicate_next {
        state.duplicate_next = n;
    }
    if let Some(n) = faults.reorder_next {
        state.reorder_next = n;
    }
    if let Some(ms) = faults.delay_ms {
        state.delay_ms = ms;
    }
    if let Some(fail) = faults.fail_next {
        state.fail_next = (fail.count > 0).then_some(fail);
    }
    Ok(state.clone())
}

/// Consumes one injected command failure, if any: `(status, retry_after)`.
pub(crate) fn take_command_fault(shared: &Shared) -> Option<(u16, Option<String>)> {
    let mut state = lock(&shared.faults);
    let fail = state.fail_next.as_mut()?;
    let out = (fail.status, fail.retry_after.clone());
    fail.count -= 1;
    if fail.count == 0 {
        state.fail_next = None;
    }
    Some(out)
}

/// The delivery loop; ends when the emulator is dropped.
pub(crate) async fn run(mut rx: mpsc::UnboundedReceiver<Outgoing>, shared: Weak<Shared>) {
    let http = reqwest::Client::new();
    while let Some(first) = rx.recv().await {
        let Some(shared) = shared.upgrade() else {
            break;
        };
        let reorder = std::mem::take(&mut lock(&shared.faults).reorder_next);
        let mut batch = vec![first];
        if reorder > 1 {
            while batch.len() < reorder as usize {
                match tokio::time::timeout(REORDER_WINDOW, rx.recv()).await {
                    Ok(Some(next)) => batch.push(next),
                    _ => break,
                }
            }
            batch.reverse();
        }
        for outgoing in batch {
            deliver(&shared, &http, outgoing).await;
            shared.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

async fn deliver(shared: &Shared, http: &reqwest::Client, outgoing: Outgoing) {
    let (delay_ms, duplicate) = {
        let mut faults = lock(&shared.faults);
        let duplicate = faults.duplicate_next > 0;
        if duplicate {
            faults.duplicate_next -= 1;
        }
        (faults.delay_ms, duplicate)
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let url = outgoing.url.or_else(|| shared.config.webhook_url.clone());
    for _ in 0..if duplicate { 2 } else { 1 } {
        send_with_retries(shared, http, &outgoing.event, url.as_deref()).await;
    }
}

async fn send_with_retries(
    shared: &Shared,
    http: &reqwest::Client,
    event: &WebhookEvent,
    url: Option<&str>,
) {
    let call_control_id = event
        .call()
        .and_then(|c| c.call_control_id.as_ref())
        .map(|c| c.as_str().to_owned());
    let retries = shared.config.webhook_retries;
    for attempt in 1..=retries + 1 {
        let mut event = event.clone();
        event.meta = Some(WebhookMeta {
            attempt: Some(attempt),
            delivered_to: url.map(str::to_owned),
        });
        let body = event.to_bytes();
        let record = |status: Option<u16>, error: Option<String>| {
            let body_json = serde_json::from_slice(&body).unwrap_or_default();
            shared.push_log(|seq| {
                LogEntry::Webhook(WebhookRecord {
                    seq,
                    at_ms: now().as_millis(),
                    event_id: event.id.clone(),
                    event_type: event.event_type().to_owned(),
                    call_control_id: call_control_id.clone(),
                    url: url.map(str::to_owned),
                    attempt,
                    status,
                    error,
                    body: body_json,
                })
            });
        };
        let Some(url) = url else {
            record(None, Some("no webhook URL configured".into()));
            return;
        };
        let timestamp = (now().as_millis() / 1000).to_string();
        let signature = shared.signer.sign(&timestamp, &body);
        shared.observed(|| Observed::Sending {
            at: std::time::Instant::now(),
            event_type: event.event_type().to_owned(),
            call_control_id: call_control_id.clone(),
        });
        let result = http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "telnyx-webhooks")
            .header(SIGNATURE_HEADER, signature)
            .header(TIMESTAMP_HEADER, &timestamp)
            .body(body.clone())
            .timeout(shared.config.webhook_timeout)
            .send()
            .await;
        let status = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                record(Some(status), None);
                Some(status)
            }
            Err(e) => {
                record(None, Some(e.to_string()));
                None
            }
        };
        // As Telnyx documents: 2xx is done, other 4xx (bar 408 and 429) are not retried.
        match status {
            Some(s) if (200..300).contains(&s) => return,
            Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => return,
            _ => {}
        }
        if attempt <= retries {
            tokio::time::sleep(shared.config.webhook_retry_backoff * attempt).await;
        }
    }
}
