//! A local Telnyx Call Control emulator: the same REST endpoints and signed webhooks, plus a
//! control API (under `/_emulator`) that scripts callers, devices and faults. Usable in-process
//! from tests ([`Emulator::start`]) and as `ringmaster emulator`.

mod delivery;
mod http;
mod world;

use crate::client_state::EncodedClientState;
use crate::signature::WebhookSigner;
use ringmaster_core::{CallControlId, CallLegId, CallSessionId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use world::{Effect, World, WorldConfig};

pub use delivery::FaultState;

/// Largest request body the emulator accepts (same limit as our webhook receiver).
pub const MAX_REQUEST_BYTES: usize = crate::webhook::MAX_WEBHOOK_BODY_BYTES;

/// How the emulator is set up.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where webhooks go; `None` logs them without sending.
    pub webhook_url: Option<String>,
    /// Webhook signing key; `None` generates a fresh one.
    pub signing_key: Option<WebhookSigner>,
    /// Bearer key required on `/v2`; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// `connection_id` of inbound calls.
    pub connection_id: String,
    /// How long one Telnyx second (of `timeout_secs`) lasts here; tests shrink it.
    pub telnyx_second: Duration,
    /// How long a speak or playback lasts before its `.ended` webhook.
    pub media_duration: Duration,
    /// Time the receiver has to answer a webhook (Telnyx: 2 s).
    pub webhook_timeout: Duration,
    /// Extra delivery attempts after a failed one (5xx, 408, 429, network).
    pub webhook_retries: u32,
    /// Wait before the first redelivery; grows linearly.
    pub webhook_retry_backoff: Duration,
}

impl EmulatorConfig {
    /// Telnyx-like timing, listening on `listen`.
    pub fn new(listen: SocketAddr, webhook_url: Option<String>) -> Self {
        Self {
            listen,
            webhook_url,
            signing_key: None,
            api_key: None,
            connection_id: "ringmaster-emulator".to_owned(),
            telnyx_second: Duration::from_secs(1),
            media_duration: Duration::from_secs(2),
            webhook_timeout: Duration::from_secs(2),
            webhook_retries: 2,
            webhook_retry_backoff: Duration::from_millis(200),
        }
    }

    /// Fast timing for tests: a free loopback port, 10 ms Telnyx seconds, 10 ms media.
    pub fn for_tests(webhook_url: Option<String>) -> Self {
        Self {
            telnyx_second: Duration::from_millis(10),
            media_duration: Duration::from_millis(10),
            webhook_timeout: Duration::from_millis(500),
            webhook_retry_backoff: Duration::from_millis(10),
            ..Self::new(SocketAddr::from(([127, 0, 0, 1], 0)), webhook_url)
        }
    }
}

/// How a SIP URI or number answers when dialled (set before the dial happens).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointScript {
    /// Rings until hung up or until `timeout_secs` (the default for unscripted targets).
    Ring,
    /// Answers after this many milliseconds.
    AnswerAfterMs(u64),
    /// Rejects (`call_rejected`, SIP 603) after this many milliseconds.
    RejectAfterMs(u64),
    /// Busy at once (`user_busy`, SIP 486).
    Busy,
    /// Cannot be reached (`not_found`, SIP 404).
    Unreachable,
}

/// Cause of a reject by a device, through the control API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RemoteRejectCause {
    /// Declined (SIP 603).
    #[default]
    CallRejected,
    /// Busy (SIP 486).
    UserBusy,
}

/// Ids of an inbound call created through the control API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundCall {
    /// The caller leg's command handle.
    pub call_control_id: CallControlId,
    /// The caller leg's id.
    pub call_leg_id: CallLegId,
    /// The new session.
    pub call_session_id: CallSessionId,
}

/// State of an emulated leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegState {
    /// Inbound, not answered yet.
    Parked,
    /// Dialled, not answered yet.
    Ringing,
    /// Up.
    Answered,
    /// Over.
    Ended,
}

/// A leg as the emulator sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSnapshot {
    /// Command handle.
    pub call_control_id: CallControlId,
    /// Leg id.
    pub call_leg_id: CallLegId,
    /// Session id.
    pub call_session_id: CallSessionId,
    /// `incoming` or `outgoing`.
    pub direction: String,
    /// Calling party.
    pub from: String,
    /// Called party.
    pub to: String,
    /// Current state.
    pub state: LegState,
    /// The leg it is bridged with.
    pub bridged_with: Option<CallControlId>,
    /// Current `client_state`.
    pub client_state: Option<EncodedClientState>,
    /// Why it ended.
    pub hangup_cause: Option<String>,
    /// Whether a recording is running.
    pub recording: bool,
}

/// A control API request that cannot be carried out.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// No such call control id.
    #[error("no call {0}")]
    NotFound(String),
    /// The call already ended.
    #[error("call {0} has already ended")]
    Ended(String),
    /// The call is not in a state that allows this.
    #[error("{0}")]
    InvalidState(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
}

/// Failures injected into the emulator (fields left `None` are unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Send each of the next N webhooks twice (same `data.id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_next: Option<u32>,
    /// Deliver the next N webhooks in reverse order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder_next: Option<u32>,
    /// Delay every webhook by this many milliseconds (0 turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Fail the next commands on `/v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_next: Option<FailNext>,
}

/// Fail the next `count` commands with `status` (429 or 5xx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailNext {
    /// How many commands fail.
    pub count: u32,
    /// HTTP status: 429 or 500–599.
    #[serde(default = "default_fail_status")]
    pub status: u16,
    /// `Retry-After` header value (seconds; fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
}

fn default_fail_status() -> u16 {
    503
}

/// What happened to a command received on `/v2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Carried out (2xx).
    Executed,
    /// Answered from the `command_id` cache; nothing was done.
    Deduplicated,
    /// Refused with a Telnyx error (4xx); nothing was done.
    Failed,
    /// Failed by an injected fault; nothing was done.
    FaultInjected,
    /// Missing or wrong API key.
    Unauthorized,
}

/// One command received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Position in the log.
    pub seq: u64,
    /// Receive time, ms since the epoch.
    pub at_ms: u64,
    /// `dial`, `answer`, `bridge`, ...
    pub action: String,
    /// Target leg (none for dial).
    pub call_control_id: Option<String>,
    /// The command's `command_id`.
    pub command_id: Option<String>,
    /// The JSON body as received (`null` if it was not JSON).
    pub body: Value,
    /// HTTP status returned.
    pub status: u16,
    /// What happened.
    pub outcome: CommandOutcome,
}

/// One webhook delivery attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// Position in the log.
    pub seq: u64,
    /// Send time, ms since the epoch.
    pub at_ms: u64,
    /// `data.id`.
    pub event_id: String,
    /// `data.event_type`.
    pub event_type: String,
    /// The leg it is about.
    pub call_control_id: Option<String>,
    /// Where it was sent (`None` when no URL is configured).
    pub url: Option<String>,
    /// `meta.attempt`.
    pub attempt: u32,
    /// Receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Transport error, if any.
    pub error: Option<String>,
    /// The body sent.
    pub body: Value,
}

/// An entry of the emulator's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogEntry {
    /// A command received on `/v2`.
    Command(CommandRecord),
    /// A webhook delivery attempt.
    Webhook(WebhookRecord),
}

/// Something the emulator did, stamped with the monotonic clock as it happened: for benchmarks,
/// which need finer times than the log's milliseconds (see [`EmulatorHandle::observe`]).
#[derive(Clone, Debug)]
pub enum Observed {
    /// A webhook is about to be posted (once per delivery attempt).
    Sending {
        /// When.
        at: Instant,
        /// `data.event_type`.
        event_type: String,
        /// The leg it is about.
        call_control_id: Option<String>,
    },
    /// An entry was added to the log (a command handled, a delivery attempt answered).
    Logged {
        /// When.
        at: Instant,
        /// The entry.
        entry: LogEntry,
    },
}

/// Error starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The webhook URL is not an http(s) URL.
    #[error("invalid webhook URL {0:?}")]
    WebhookUrl(String),
}

#[derive(Default)]
struct Log {
    entries: Vec<LogEntry>,
    next_seq: u64,
}

/// State shared by the HTTP handlers, the delivery task and timers.
pub(crate) struct Shared {
    world: Mutex<World>,
    log: Mutex<Log>,
    faults: Mutex<FaultState>,
    signer: WebhookSigner,
    config: EmulatorConfig,
    outbox: mpsc::UnboundedSender<delivery::Outgoing>,
    /// Webhooks queued but not yet fully delivered (or given up on).
    pending: AtomicUsize,
    /// Where [`Observed`] moments go, once someone asked for them.
    observer: Mutex<Option<mpsc::UnboundedSender<Observed>>>,
    /// Where timers run, so handle methods work from any thread.
    runtime: tokio::runtime::Handle,
    me: Weak<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

impl Shared {
    /// Runs `f` on the world and performs its effects while still holding the lock, so webhooks
    /// are queued in the order the world produced them.
    fn with_world<R>(&self, f: impl FnOnce(&mut World, Timestamp) -> (R, Vec<Effect>)) -> R {
        let mut world = lock(&self.world);
        let (result, effects) = f(&mut world, now());
        self.perform(effects);
        result
    }

    fn perform(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Webhook { event, url } => {
                    self.pending.fetch_add(1, Ordering::SeqCst);
                    if self
                        .outbox
                        .send(delivery::Outgoing { event: *event, url })
                        .is_err()
                    {
                        // The delivery task is gone: the emulator is shutting down.
                        self.pending.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                Effect::Timer { after, timer } => {
                    let me = self.me.clone();
                    self.runtime.spawn(async move {
                        tokio::time::sleep(after).await;
                        if let Some(shared) = me.upgrade() {
                            shared.with_world(|w, now| ((), w.fire(timer, now)));
                        }
                    });
                }
            }
        }
    }

    fn push_log(&self, make: impl FnOnce(u64) -> LogEntry) {
        let at = Instant::now();
        let mut log = lock(&self.log);
        let seq = log.next_seq;
        log.next_seq += 1;
        let entry = make(seq);
        self.observed(|| Observed::Logged {
            at,
            entry: entry.clone(),
        });
        log.entries.push(entry);
    }

    /// Hands a moment to the observer, if there is one (built only then).
    fn observed(&self, make: impl FnOnce() -> Observed) {
        if let Some(tx) = lock(&self.observer).as_ref() {
            // A dropped receiver only means nobody is watching any more.
            let _ = tx.send(make());
        }
    }
}

/// Starts emulators.
pub struct Emulator;

impl Emulator {
    /// Binds, starts serving and returns a handle; dropping the handle stops the emulator.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        if let Some(url) = &config.webhook_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(EmulatorError::WebhookUrl(url.clone())),
            }
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.listen,
                source,
            })?;
        let signer = config
            .signing_key
            .clone()
            .unwrap_or_else(WebhookSigner::generate);
        let world = World::new(WorldConfig {
            connection_id: config.connection_id.clone(),
            telnyx_second: config.telnyx_second,
            media_duration: config.media_duration,
            recording_base_url: format!("http://{addr}/_emulator"),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new_cyclic(|me| Shared {
            world: Mutex::new(world),
            log: Mutex::new(Log::default()),
            faults: Mutex::new(FaultState::default()),
            signer,
            config,
            outbox: tx,
            pending: AtomicUsize::new(0),
            observer: Mutex::new(None),
            runtime: tokio::runtime::Handle::current(),
            me: me.clone(),
        });
        let delivery = tokio::spawn(delivery::run(rx, Arc::downgrade(&shared)));
        let app = http::router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "emulator server stopped");
            }
        });
        tracing::info!(%addr, "telnyx emulator listening");
        Ok(EmulatorHandle {
            addr,
            shared,
            tasks: vec![server, delivery],
        })
    }
}

/// A running emulator. Dropping it stops the server and webhook delivery.
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl EmulatorHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// REST API root, for [`crate::ClientConfig::base_url`]: `http://ADDR/v2`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v2", self.addr)
    }

    /// Control API root: `http://ADDR/_emulator`.
    pub fn control_url(&self) -> String {
        format!("http://{}/_emulator", self.addr)
    }

    /// The webhook signing public key, base64.
    pub fn public_key_b64(&self) -> String {
        self.shared.signer.public_key_b64()
    }

    /// A PSTN call from `from` arrives at `to`: `call.initiated` (incoming, parked) is sent.
    pub fn inbound_call(&self, from: &str, to: &str) -> InboundCall {
        self.shared
            .with_world(|w, now| w.inbound_call(from.to_owned(), to.to_owned(), None, now))
    }

    /// Scripts how `to` (a SIP URI or number) behaves when dialled from now on.
    pub fn script_endpoint(&self, to: &str, script: EndpointScript) {
        lock(&self.shared.world).set_script(to.to_owned(), script);
    }

    /// The far end of a ringing dialled leg answers now.
    pub fn answer(&self, call: &CallControlId) -> Result<(), ControlError> {
        self.control(|w, now| w.control_answer(call.as_str(), now))
    }

    /// The far end of a ringing dialled leg rejects it now.
    pub fn reject(
        &self,
        call: &CallControlId,
        cause: RemoteRejectCause,
    ) -> Result<(), ControlError> {
        self.control(|w, now| w.control_reject(call.as_str(), cause, now))
    }

    /// The far end hangs up now (for the inbound leg: the caller hangs up or cancels).
    pub fn hangup(&self, call: &CallControlId) -> Result<(), ControlError> {
        self.control(|w, now| w.control_hangup(call.as_str(), now))
    }

    fn control(
        &self,
        f: impl FnOnce(&mut World, Timestamp) -> Result<Vec<Effect>, ControlError>,
    ) -> Result<(), ControlError> {
        self.shared.with_world(|w, now| match f(w, now) {
            Ok(effects) => (Ok(()), effects),
            Err(e) => (Err(e), Vec::new()),
        })
    }

    /// Adds faults; returns the fault state now in force.
    pub fn inject(&self, faults: Faults) -> Result<FaultState, ControlError> {
        delivery::apply_faults(&self.shared, faults)
    }

    /// One leg's state.
    pub fn call(&self, call: &CallControlId) -> Option<CallSnapshot> {
        lock(&self.shared.world).snapshot(call.as_str())
    }

    /// Every leg, in creation order.
    pub fn calls(&self) -> Vec<CallSnapshot> {
        lock(&self.shared.world).snapshots()
    }

    /// Everything received and sent so far.
    pub fn log(&self) -> Vec<LogEntry> {
        lock(&self.shared.log).entries.clone()
    }

    /// The commands received, in order.
    pub fn commands(&self) -> Vec<CommandRecord> {
        self.log()
            .into_iter()
            .filter_map(|e| match e {
                LogEntry::Command(c) => Some(c),
                LogEntry::Webhook(_) => None,
            })
            .collect()
    }

    /// The commands with `action` that were carried out.
    pub fn executed(&self, action: &str) -> Vec<CommandRecord> {
        self.commands()
            .into_iter()
            .filter(|c| c.action == action && c.outcome == CommandOutcome::Executed)
            .collect()
    }

    /// The webhook delivery attempts, in order.
    pub fn webhooks(&self) -> Vec<WebhookRecord> {
        self.log()
            .into_iter()
            .filter_map(|e| match e {
                LogEntry::Webhook(w) => Some(w),
                LogEntry::Command(_) => None,
            })
            .collect()
    }

    /// Webhooks produced but not yet delivered (including redelivery attempts in progress).
    pub fn pending_webhooks(&self) -> usize {
        self.shared.pending.load(Ordering::SeqCst)
    }

    /// Waits until every webhook produced so far has been delivered or given up on; `false` if
    /// that takes longer than `limit`. Timers that have not fired yet are not waited for.
    pub async fn wait_for_webhooks(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending_webhooks() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// From now on, every webhook about to be sent and every log entry, stamped with the
    /// monotonic clock; a second call replaces the first receiver.
    pub fn observe(&self) -> mpsc::UnboundedReceiver<Observed> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.shared.observer) = Some(tx);
        rx
    }

    /// Empties the log.
    pub fn clear_log(&self) {
        lock(&self.shared.log).entries.clear();
    }
}
