//! Starting and stopping a coordinator: HTTP server, outbox dispatcher and timer loop around
//! one [`AppState`]. `ringmaster serve` and the end-to-end tests both go through [`start`].

use crate::app::{router, AppInner, AppState, SandboxInfo, Settings};
use crate::clock::Clock;
use crate::dial_limit::{DialBudget, DialLimiter, SharedDialBudget};
use crate::dispatch::Dispatcher;
use crate::engine::Engine;
use crate::notify::Notifiers;
use crate::rate_limit::RateLimiter;
use crate::tokens::TokenSigner;
use anyhow::Context as _;
use ringmaster_realtime::RealtimeHub;
use ringmaster_store::Store;
use ringmaster_telnyx::{TelnyxClient, WebhookVerifier};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How long shutdown waits for open HTTP requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a coordinator runs on.
pub struct ServerSetup {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Call Control client (real Telnyx or the emulator).
    pub telnyx: TelnyxClient,
    /// Base64 Ed25519 key webhooks are signed with.
    pub webhook_public_key: String,
    /// Time source of sessions and timers.
    pub clock: Arc<dyn Clock>,
    /// Notification channels.
    pub notifiers: Notifiers,
    /// Behaviour settings.
    pub settings: Settings,
    /// Sandbox details, when the built-in emulator stands in for Telnyx.
    pub sandbox: Option<SandboxInfo>,
    /// The Pusher-protocol hub; when set, its WebSocket, channel-auth and publish routes are
    /// served on the same listener, with channel auth by device token. Pair it with a
    /// [`crate::realtime::WebSocketNotifier`] in `notifiers` so call events reach it.
    pub realtime: Option<RealtimeHub>,
    /// More routes to serve on the same listener.
    pub extra_routes: Option<axum::Router>,
}

/// A running coordinator.
pub struct RunningServer {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    state: AppState,
    realtime: Option<RealtimeHub>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Every route of a coordinator: the API, webhooks, operations, and the real-time layer's
/// routes when `realtime` is set. What the OpenAPI document must describe.
pub fn all_routes(state: &AppState, realtime: Option<&RealtimeHub>) -> axum::Router {
    let mut app = router(state.clone());
    if let Some(hub) = realtime {
        app = app.merge(crate::realtime::routes(hub.clone(), state.clone()));
    }
    let pusher_key = realtime.map(|h| h.config().key.clone());
    app.merge(crate::web::routes(pusher_key, state.sandbox.is_some()))
}

/// Serves `setup` on `listener` and starts the dispatcher and the timer loop.
pub async fn start(listener: TcpListener, setup: ServerSetup) -> anyhow::Result<RunningServer> {
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let verifier = WebhookVerifier::new(&setup.webhook_public_key).map_err(|e| {
        crate::fatal::ConfigError(anyhow::anyhow!(
            "the Telnyx public key must be base64 of a 32-byte Ed25519 key: {e}"
        ))
    })?;
    let kick = Arc::new(Notify::new());
    let (handoff, handed) =
        ringmaster_engine::handoff::channel(setup.settings.node_id.clone(), setup.settings.lease);
    let mut engine =
        Engine::new(setup.store.clone(), setup.clock.clone(), kick.clone()).with_handoff(handoff);
    if setup.settings.session_cache > 0 {
        engine = engine.with_session_cache(setup.settings.session_cache);
    }
    // One budget per account across every node where the store is shared (PostgreSQL).
    let dials: Arc<dyn DialBudget> = match setup.store.dial_ledger() {
        Some(ledger) => Arc::new(SharedDialBudget::new(
            ledger,
            setup.settings.connection_id.clone(),
            setup.settings.dial_limit,
        )),
        None => Arc::new(DialLimiter::new(setup.settings.dial_limit)),
    };
    let state = AppState(Arc::new(AppInner {
        store: setup.store.clone(),
        engine: engine.clone(),
        verifier,
        tokens: TokenSigner::new(&setup.settings.token_secret),
        settings: setup.settings.clone(),
        notifiers: setup.notifiers.clone(),
        sandbox: setup.sandbox,
        dials: dials.clone(),
        rate_limits: RateLimiter::new(setup.settings.rate_limits),
        realtime: setup.realtime.clone(),
    }));
    let (shutdown, stop) = watch::channel(false);
    let dispatcher = Arc::new(
        Dispatcher::new(
            setup.store.clone(),
            engine.clone(),
            setup.telnyx,
            setup.settings.connection_id.clone(),
            setup.notifiers,
            kick,
            setup.settings.sweep_interval,
        )
        .with_clock(setup.clock.clone())
        .with_dial_budget(dials)
        .with_lease(setup.settings.node_id.clone(), setup.settings.lease)
        .with_handoff(handed)
        .with_ring_timeout(Duration::from_secs(setup.settings.ring_timeout_secs.into())),
    );
    let mut app = all_routes(&state, setup.realtime.as_ref());
    if let Some(extra) = setup.extra_routes {
        app = app.merge(extra);
    }
    crate::telemetry::handle();
    let mut tasks = Vec::new();
    let metrics_addr = match setup.settings.metrics_listen {
        Some(listen) => {
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening for /metrics on {listen}"))?;
            let addr = listener.local_addr()?;
            let routes = crate::telemetry::metrics_router(state.clone());
            let mut metrics_stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let serve = axum::serve(listener, routes).with_graceful_shutdown(async move {
                    let _ = metrics_stop.wait_for(|stop| *stop).await;
                });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "metrics listener stopped");
                }
            }));
            Some(addr)
        }
        None => None,
    };
    let http = tokio::spawn(crate::http_server::serve(
        listener,
        app,
        setup.settings.http,
        stop.clone(),
        DRAIN_TIMEOUT,
    ));
    // The main HTTP server first: shutdown drains it before the rest.
    tasks.insert(0, http);
    tasks.push(tokio::spawn(dispatcher.run(stop.clone())));
    let relay = crate::host_webhooks::WebhookRelay::new(
        setup.store.clone(),
        setup.clock.clone(),
        setup.settings.webhooks,
    )?;
    tasks.push(tokio::spawn(Arc::new(relay).run(stop.clone())));
    tasks.push(tokio::spawn(crate::timer_loop::run(
        setup.store,
        engine,
        setup.settings.node_id.clone(),
        setup.settings.tick_interval,
        setup.settings.retention,
        stop,
    )));
    tracing::info!(%addr, "ringmaster listening");
    Ok(RunningServer {
        addr,
        metrics_addr,
        state,
        realtime: setup.realtime,
        shutdown,
        tasks,
    })
}

impl RunningServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served when it has its own listener.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The application state (store, engine, settings).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The Pusher-protocol hub, when the real-time layer is served.
    pub fn realtime(&self) -> Option<&RealtimeHub> {
        self.realtime.as_ref()
    }

    /// Stops everything at once, as a crash would: effects in flight are neither finished nor
    /// recorded, so the next start on the same database sends them again (same `command_id`).
    /// WebSocket clients lose their connection, as they would with the process.
    pub fn abort(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(hub) = &self.realtime {
            hub.close_all();
        }
    }

    /// Stops accepting requests, stops the loops and closes the store. Effects not yet
    /// dispatched stay in the outbox for the next start.
    /// WebSocket clients are told to reconnect (4200), to this node once it is back or to
    /// another one.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Some(hub) = &self.realtime {
            hub.close_all();
        }
        let mut tasks = self.tasks.into_iter();
        if let Some(http) = tasks.next() {
            let abort = http.abort_handle();
            if tokio::time::timeout(DRAIN_TIMEOUT, http).await.is_err() {
                abort.abort();
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        self.state.store.close().await;
    }
}
