//! An in-process coordinator on 127.0.0.1:0 with the in-process Telnyx emulator sending real
//! signed webhooks, SQLite in a temp dir, a clock tests can move forward, and a notifier that
//! records what would be sent.

#![allow(dead_code)]

pub mod push_mock;
pub mod pusher;

use async_trait::async_trait;
use reqwest::StatusCode;
use ringmaster_core::session::{Channel, Notification, NotifyEvent, Session};
use ringmaster_core::{CallControlId, CallSessionId, EffectId, Timestamp};
use ringmaster_push::PushSender;
use ringmaster_realtime::{RealtimeConfig, RealtimeHub};
use ringmaster_server::clock::system_now;
use ringmaster_server::push::PushNotifier;
use ringmaster_server::realtime::WebSocketNotifier;
use ringmaster_server::{
    start, Clock, Notifier, Notifiers, NotifyError, RunningServer, ServerSetup, Settings,
};
use ringmaster_store::{PostgresStore, SqliteStore, Store};
use ringmaster_telnyx::emulator::{CallSnapshot, CommandOutcome, CommandRecord, LegState};
use ringmaster_telnyx::{
    ClientConfig, Emulator, EmulatorConfig, EmulatorHandle, RetryPolicy, TelnyxClient,
    WebhookSigner,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use tokio::net::TcpListener;

pub const ADMIN: &str = "test-admin-token";
pub const CALLER: &str = "+15557654321";
/// Generous: conditions are polled, never timed.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Real time plus an offset the test can grow.
#[derive(Default)]
pub struct TestClock {
    offset_ms: AtomicU64,
}

impl TestClock {
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(system_now().as_millis() + self.offset_ms.load(Ordering::SeqCst))
    }
}

/// Keeps every notification handed to the WebSocket and push channels.
#[derive(Default)]
pub struct Recorder {
    seen: Mutex<Vec<Notification>>,
}

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, n: &Notification, _: &EffectId) -> Result<(), NotifyError> {
        self.seen.lock().unwrap().push(n.clone());
        Ok(())
    }
}

impl Recorder {
    pub fn for_call(&self, id: &CallSessionId) -> Vec<Notification> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|n| &n.call_session_id == id)
            .cloned()
            .collect()
    }
}

pub const PUSHER_APP_ID: &str = "test-app";
pub const PUSHER_KEY: &str = "test-key";
pub const PUSHER_SECRET: &str = "test-secret";

/// What receives push notifications.
#[derive(Clone, Default)]
pub enum PushMode {
    /// The recorder ([`Harness::notes`]).
    #[default]
    Record,
    /// Nothing: push is off.
    Off,
    /// The real push notifier with these clients.
    Send(Arc<PushSender>),
}

/// How a harness is set up.
#[derive(Clone)]
pub struct Options {
    pub caller_answer_immediately: bool,
    pub ring_timeout_secs: u32,
    /// Serve the Pusher-protocol layer and publish WebSocket notifications through it
    /// (instead of recording them).
    pub realtime: bool,
    pub push: PushMode,
    /// The Telnyx dial rate limit; `None` means none to speak of (the emulator has no limit,
    /// and load tests dial hundreds of legs at once).
    pub dial_limit: Option<ringmaster_server::dial_limit::DialLimit>,
    /// Run on a fresh schema of the real PostgreSQL server instead of an SQLite file.
    pub postgres: bool,
    /// Serve `/metrics` on a listener of its own.
    pub metrics_listen: bool,
    /// Outbound webhook retries; `None` retries fast and never disables an endpoint.
    pub webhooks: Option<ringmaster_server::host_webhooks::WebhookSettings>,
    /// Last changes to the server settings (limits, timeouts).
    pub settings: Option<fn(&mut Settings)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            caller_answer_immediately: false,
            ring_timeout_secs: 30,
            realtime: false,
            push: PushMode::Record,
            dial_limit: None,
            postgres: false,
            metrics_listen: false,
            webhooks: None,
            settings: None,
        }
    }
}

/// The PostgreSQL server the tests use (`./scripts/test` starts it).
fn postgres_server() -> String {
    std::env::var("RINGMASTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Creates a schema of its own on the test server and returns a URL whose connections use it.
pub async fn postgres_schema() -> (String, String) {
    let server = postgres_server();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("rm_server_{}_{nanos}", std::process::id());
    let url = ringmaster_store::postgres::create_schema(&server, &schema)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {server}: {e}; run ./scripts/test, which starts it")
        });
    (url, schema)
}

/// Drops a schema made by [`postgres_schema`].
pub async fn drop_postgres_schema(schema: &str) {
    ringmaster_store::postgres::drop_schema(&postgres_server(), schema)
        .await
        .unwrap();
}

pub struct Device {
    pub id: String,
    pub token: String,
    pub sip_uri: String,
    pub platform: String,
}

pub struct User {
    pub id: String,
    pub number: String,
    pub devices: Vec<Device>,
}

pub struct Harness {
    pub emulator: EmulatorHandle,
    pub signer: WebhookSigner,
    pub clock: Arc<TestClock>,
    pub notes: Arc<Recorder>,
    pub http: reqwest::Client,
    pub addr: SocketAddr,
    pub url: String,
    server: Option<RunningServer>,
    db_url: String,
    /// The PostgreSQL schema this harness runs in, when it does.
    pub pg_schema: Option<String>,
    options: Options,
    _dir: TempDir,
}

static NEXT_NUMBER: AtomicU64 = AtomicU64::new(0);

/// A fresh E.164 number, unique within the test process.
pub fn fresh_number() -> String {
    let n = NEXT_NUMBER.fetch_add(1, Ordering::SeqCst);
    format!("+1555{:07}", 1_000_000 + n)
}

impl Harness {
    pub async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (db_url, pg_schema) = if options.postgres {
            let (url, schema) = postgres_schema().await;
            (url, Some(schema))
        } else {
            (
                format!("sqlite://{}/ringmaster.db", dir.path().display()),
                None,
            )
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let signer = WebhookSigner::generate();
        let mut emu_config =
            EmulatorConfig::for_tests(Some(format!("http://{addr}/webhooks/telnyx")));
        // Legs ring in real seconds, so only the server's (movable) ring timer ends ringing.
        emu_config.telnyx_second = Duration::from_secs(1);
        emu_config.webhook_timeout = Duration::from_secs(10);
        emu_config.signing_key = Some(signer.clone());
        let emulator = Emulator::start(emu_config).await.unwrap();
        let mut h = Self {
            emulator,
            signer,
            clock: Arc::new(TestClock::default()),
            notes: Arc::new(Recorder::default()),
            http: reqwest::Client::new(),
            addr,
            url: format!("http://{addr}"),
            server: None,
            db_url,
            pg_schema,
            options,
            _dir: dir,
        };
        h.serve(listener).await;
        h
    }

    async fn serve(&mut self, listener: TcpListener) {
        let store: Arc<dyn Store> = if self.options.postgres {
            Arc::new(PostgresStore::open(&self.db_url).await.unwrap())
        } else {
            Arc::new(SqliteStore::open(&self.db_url).await.unwrap())
        };
        let mut client = ClientConfig::new("test-key").with_base_url(self.emulator.base_url());
        // One attempt per command, so injected failures map one-to-one onto session attempts.
        client.retry = RetryPolicy::no_retries();
        let mut settings = Settings::new(ADMIN, "test-connection");
        settings.ring_timeout_secs = self.options.ring_timeout_secs;
        settings.bridge_retry_delay_ms = 50;
        settings.tick_interval = Duration::from_millis(20);
        settings.sweep_interval = Duration::from_millis(200);
        settings.dial_limit =
            self.options
                .dial_limit
                .unwrap_or(ringmaster_server::dial_limit::DialLimit {
                    max_dials: u32::MAX,
                    window: Duration::from_secs(1),
                });
        settings.webhooks =
            self.options
                .webhooks
                .unwrap_or(ringmaster_server::host_webhooks::WebhookSettings {
                    disable_after: Duration::from_secs(3600),
                    retry_base: Duration::from_millis(50),
                    retry_max: Duration::from_millis(300),
                    timeout: Duration::from_secs(5),
                    poll: Duration::from_millis(50),
                });
        if self.options.metrics_listen {
            settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        }
        if self.options.caller_answer_immediately {
            settings.caller_answer = ringmaster_core::session::CallerAnswer::Immediately;
        }
        if let Some(tweak) = self.options.settings {
            tweak(&mut settings);
        }
        let recorder: Arc<dyn Notifier> = self.notes.clone();
        let hub = self.options.realtime.then(|| {
            RealtimeHub::new(RealtimeConfig::new(
                PUSHER_APP_ID,
                PUSHER_KEY,
                PUSHER_SECRET,
            ))
        });
        let websocket: Arc<dyn Notifier> = match &hub {
            Some(hub) => Arc::new(WebSocketNotifier::new(hub.clone())),
            None => recorder.clone(),
        };
        let push: Option<Arc<dyn Notifier>> = match &self.options.push {
            PushMode::Record => Some(recorder),
            PushMode::Off => None,
            PushMode::Send(sender) => Some(Arc::new(PushNotifier::new(
                store.clone(),
                sender.clone(),
                Duration::from_secs(u64::from(self.options.ring_timeout_secs)),
            ))),
        };
        let server = start(
            listener,
            ServerSetup {
                store,
                telnyx: TelnyxClient::new(client).unwrap(),
                webhook_public_key: self.emulator.public_key_b64(),
                clock: self.clock.clone(),
                notifiers: Notifiers {
                    websocket: Some(websocket),
                    push,
                },
                settings,
                sandbox: None,
                realtime: hub,
                extra_routes: None,
            },
        )
        .await
        .unwrap();
        self.server = Some(server);
    }

    /// Stops the server (HTTP, dispatcher, timers) and closes its database.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Kills the server without letting anything finish.
    pub async fn crash(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        // Let the aborted tasks drop their sockets.
        tokio::task::yield_now().await;
    }

    /// Starts a new server on the same address and database (stopping the old one cleanly if
    /// it still runs).
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener).await;
    }

    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    /// The session as stored (in-process peek for assertions only).
    pub async fn session(&self, id: &CallSessionId) -> Option<Session> {
        self.server()
            .state()
            .engine
            .load(id)
            .await
            .unwrap()
            .map(|(s, _)| s)
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    /// A user with one device per platform given, through the admin API.
    pub async fn user(&self, platforms: &[&str], call_waiting: bool, voicemail: bool) -> User {
        let number = fresh_number();
        let (status, user) = self
            .post(
                "/api/admin/users",
                ADMIN,
                json!({"name": "Test user", "numbers": [number],
                       "call_waiting": call_waiting, "voicemail": voicemail}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        let id = user["id"].as_str().unwrap().to_owned();
        let mut devices = Vec::new();
        for (i, platform) in platforms.iter().enumerate() {
            let sip_uri = format!("sip:{platform}-{i}-{}@test.invalid", &number[1..]);
            let (status, d) = self
                .post(
                    &format!("/api/admin/users/{id}/devices"),
                    ADMIN,
                    json!({"platform": platform, "sip_uri": sip_uri}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{d}");
            devices.push(Device {
                id: d["id"].as_str().unwrap().to_owned(),
                token: d["token"].as_str().unwrap().to_owned(),
                sip_uri,
                platform: (*platform).to_owned(),
            });
        }
        User {
            id,
            number,
            devices,
        }
    }

    /// A PSTN call to `user` arrives.
    pub fn call(&self, user: &User) -> (CallSessionId, CallControlId) {
        let c = self.emulator.inbound_call(CALLER, &user.number);
        (c.call_session_id, c.call_control_id)
    }

    /// The device's leg of the emulated call, once dialled.
    pub fn leg_of(&self, call: &CallSessionId, device: &Device) -> Option<CallSnapshot> {
        self.emulator
            .calls()
            .into_iter()
            .find(|c| &c.call_session_id == call && c.to == device.sip_uri)
    }

    /// Waits until every device of `user` has a ringing leg for `call` and every webhook so
    /// far has been delivered; returns the legs in device order.
    pub async fn ringing(&self, call: &CallSessionId, user: &User) -> Vec<CallControlId> {
        let legs = eventually("every device rings", || {
            let legs: Vec<_> = user
                .devices
                .iter()
                .map(|d| self.leg_of(call, d))
                .collect::<Option<Vec<_>>>()?;
            legs.iter()
                .all(|l| l.state == LegState::Ringing)
                .then(|| legs.into_iter().map(|l| l.call_control_id).collect())
        })
        .await;
        assert!(self.emulator.wait_for_webhooks(PATIENCE).await);
        legs
    }

    /// Commands carried out on one leg with `action`.
    pub fn executed_on(&self, action: &str, ccid: &CallControlId) -> Vec<CommandRecord> {
        self.emulator
            .executed(action)
            .into_iter()
            .filter(|c| c.call_control_id.as_deref() == Some(ccid.as_str()))
            .collect()
    }

    /// Every command received for `ccid` with `action`, whatever happened to it.
    pub fn received_on(&self, action: &str, ccid: &CallControlId) -> Vec<CommandRecord> {
        self.emulator
            .commands()
            .into_iter()
            .filter(|c| c.action == action && c.call_control_id.as_deref() == Some(ccid.as_str()))
            .collect()
    }

    /// The call as `device` sees it through the status API.
    pub async fn status(&self, call: &CallSessionId, device: &Device) -> Value {
        let (code, body) = self
            .get(&format!("/api/voip/call-status/{call}"), &device.token)
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        body
    }

    /// Polls the status API until `call_status` is `want`.
    pub async fn wait_status(&self, call: &CallSessionId, device: &Device, want: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            // 404 until the call's first webhook has created the session.
            let (code, s) = self
                .get(&format!("/api/voip/call-status/{call}"), &device.token)
                .await;
            assert!(
                code == StatusCode::OK || code == StatusCode::NOT_FOUND,
                "{s}"
            );
            if s["call_status"] == want {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {call} never became {want}; last {s}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The call's history detail (record, legs, timeline).
    pub async fn detail(&self, call: &CallSessionId, device: &Device) -> Value {
        let (code, body) = self
            .get(&format!("/api/voip/calls/{call}"), &device.token)
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        body
    }

    /// Names of the call's timeline entries, in order.
    pub async fn timeline(&self, call: &CallSessionId, device: &Device) -> Vec<String> {
        self.detail(call, device).await["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A webhook body signed with the emulator's key (or any signer) at `timestamp`.
    pub async fn send_webhook(
        &self,
        signer: &WebhookSigner,
        timestamp: u64,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let ts = timestamp.to_string();
        let sig = signer.sign(&ts, &body);
        let resp = self
            .http
            .post(format!("{}/webhooks/telnyx", self.url))
            .header("content-type", "application/json")
            .header("telnyx-signature-ed25519", sig)
            .header("telnyx-timestamp", ts)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Notifications recorded for the call.
    pub fn notes_for(&self, call: &CallSessionId) -> Vec<Notification> {
        self.notes.for_call(call)
    }

    /// Every command id the emulator executed more than once (must stay empty).
    pub fn executed_twice(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.emulator
            .commands()
            .into_iter()
            .filter(|c| c.outcome == CommandOutcome::Executed)
            .filter_map(|c| {
                let key = format!(
                    "{}|{}",
                    c.call_control_id.unwrap_or_default(),
                    c.command_id?
                );
                (!seen.insert(key.clone())).then_some(key)
            })
            .collect()
    }
}

/// Seconds since the Unix epoch, for webhook timestamps.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Polls `check` until it yields a value (or panics after [`PATIENCE`]).
pub async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether a notification is `call_ended` with `reason` on `channel` kind.
pub fn is_call_ended(n: &Notification, reason: &str, push: bool) -> bool {
    matches!(&n.event, NotifyEvent::CallEnded { reason: r, .. } if r.code() == reason)
        && matches!(n.channel, Channel::Push { .. }) == push
}

/// A Telnyx webhook body of `event_type` with `payload`, a fresh `data.id`, ready to sign.
pub fn telnyx_webhook(event_type: &str, payload: Value) -> Vec<u8> {
    json!({"data": {
        "record_type": "event",
        "event_type": event_type,
        "id": uuid::Uuid::new_v4().to_string(),
        "occurred_at": "2026-01-01T00:00:00.000Z",
        "payload": payload,
    }})
    .to_string()
    .into_bytes()
}
