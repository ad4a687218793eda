//! A tiny webhook receiver for tests: verifies every signature and keeps what arrived.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use ringmaster_telnyx::webhook::{Event, HangupCause, HangupSource};
use ringmaster_telnyx::{
    Emulator, EmulatorConfig, EmulatorHandle, SignatureError, WebhookEvent, WebhookSigner,
    WebhookVerifier,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Long enough to never fire on a healthy run; only turns a hang into a failure.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Inner {
    events: Mutex<Vec<WebhookEvent>>,
    rejected: Mutex<Vec<SignatureError>>,
    notify: Notify,
    fail_next: AtomicU32,
}

/// Receives webhooks on a loopback port.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Inner>,
    pub url: String,
}

struct AppState {
    inner: Arc<Inner>,
    verifier: WebhookVerifier,
}

async fn receive(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if let Err(e) = state.verifier.verify_headers(&headers, &body, now) {
        state.inner.rejected.lock().unwrap().push(e);
        return StatusCode::UNAUTHORIZED;
    }
    if state
        .inner
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let Ok(event) = WebhookEvent::parse(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    state.inner.events.lock().unwrap().push(event);
    state.inner.notify.notify_waiters();
    StatusCode::OK
}

impl Receiver {
    /// Starts a receiver that accepts webhooks signed by `public_key_b64`.
    pub async fn start(public_key_b64: &str) -> Receiver {
        let inner = Arc::new(Inner::default());
        let state = Arc::new(AppState {
            inner: inner.clone(),
            verifier: WebhookVerifier::new(public_key_b64).unwrap(),
        });
        let app = Router::new()
            .route("/webhooks", post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            inner,
            url: format!("http://{addr}/webhooks"),
        }
    }

    /// Everything accepted so far, in arrival order.
    pub fn events(&self) -> Vec<WebhookEvent> {
        self.inner.events.lock().unwrap().clone()
    }

    /// Signature failures seen.
    pub fn rejected(&self) -> Vec<SignatureError> {
        self.inner.rejected.lock().unwrap().clone()
    }

    /// Answers the next `n` valid webhooks with 500.
    pub fn fail_next(&self, n: u32) {
        self.inner.fail_next.store(n, Ordering::SeqCst);
    }

    /// Waits until `count` accepted webhooks match `pred`; returns them.
    pub async fn wait_n(
        &self,
        count: usize,
        pred: impl Fn(&WebhookEvent) -> bool,
    ) -> Vec<WebhookEvent> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found: Vec<_> = self.events().into_iter().filter(|e| pred(e)).collect();
            if found.len() >= count {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {count} matching webhooks; got {:#?}",
                    self.events()
                        .iter()
                        .map(|e| (
                            e.event_type().to_owned(),
                            e.call().and_then(|c| c.call_control_id.clone())
                        ))
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    /// Waits for the first webhook of `event_type` about `ccid`.
    pub async fn wait_for(&self, event_type: &str, ccid: &str) -> WebhookEvent {
        self.wait_n(1, |e| is(e, event_type, ccid)).await.remove(0)
    }

    /// Waits for the `call.hangup` of `ccid` and returns its cause, source and SIP code.
    pub async fn hangup_of(&self, ccid: &str) -> (HangupCause, HangupSource, String) {
        let event = self.wait_for("call.hangup", ccid).await;
        let Event::CallHangup(h) = event.event else {
            unreachable!()
        };
        (
            h.hangup_cause,
            h.hangup_source,
            h.sip_hangup_cause.unwrap_or_default(),
        )
    }
}

/// Whether `e` is `event_type` about leg `ccid`.
pub fn is(e: &WebhookEvent, event_type: &str, ccid: &str) -> bool {
    e.event_type() == event_type
        && e.call()
            .and_then(|c| c.call_control_id.as_ref())
            .is_some_and(|c| c.as_str() == ccid)
}

/// An emulator with test timing whose webhooks go to a fresh verifying receiver.
pub async fn emulator_with_receiver() -> (EmulatorHandle, Receiver) {
    let signer = WebhookSigner::generate();
    let receiver = Receiver::start(&signer.public_key_b64()).await;
    let mut config = EmulatorConfig::for_tests(Some(receiver.url.clone()));
    config.signing_key = Some(signer);
    let emulator = Emulator::start(config).await.unwrap();
    (emulator, receiver)
}
