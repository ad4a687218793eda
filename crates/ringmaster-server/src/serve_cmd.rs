//! `ringmaster serve`: the coordinator, against Telnyx or, without an API key, against the
//! built-in emulator (sandbox mode).

use crate::app::{SandboxInfo, Settings};
use crate::clock::SystemClock;
use crate::config::{Config, ServeArgs};
use crate::dial_limit::DialLimit;
use crate::fatal::ConfigError;
use crate::notify::{Notifier, Notifiers};
use crate::push::{sender_from_config, PushNotifier};
use crate::realtime::WebSocketNotifier;
use crate::secrets::{self, SecretsHome};
use crate::server::{start, RunningServer, ServerSetup};
use anyhow::Context as _;
use rand::Rng as _;
use ringmaster_realtime::{
    NatsFanout, NatsFanoutConfig, NatsPresence, NatsPresenceConfig, RealtimeConfig, RealtimeHub,
};
use ringmaster_store::{PostgresStore, SqliteStore};
use ringmaster_telnyx::{ClientConfig, Emulator, EmulatorConfig, EmulatorHandle, TelnyxClient};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// `connection_id` the sandbox dials with (the emulator accepts any).
const SANDBOX_CONNECTION_ID: &str = "ringmaster-emulator";

/// A random 32-hex-digit secret.
pub fn random_secret() -> String {
    hex::encode(rand::thread_rng().gen::<[u8; 16]>())
}

/// The Call Control API root with its `/v2`, whichever way it was configured.
pub fn api_root(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.ends_with("/v2") {
        url.to_owned()
    } else {
        format!("{url}/v2")
    }
}

/// Runs `serve` to completion (Ctrl-C or SIGTERM).
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = resolve_config(args).map_err(ConfigError)?;
    let node = crate::logging::node_span(&config.node_id);
    let _main = node.clone().entered();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || crate::logging::enter_on_this_thread(&node))
        .on_thread_stop(crate::logging::leave_on_this_thread)
        .build()
        .context("starting the async runtime")?
        .block_on(serve(config))
}

/// Resolves `args` the way `serve` does: unset secrets come from (or go to) the secrets file
/// beside the database.
pub fn resolve_config(args: ServeArgs) -> anyhow::Result<Config> {
    Config::resolve(args, |database_url| {
        secrets::load_or_create(database_url, random_secret)
    })
}

/// A coordinator started by `serve`, with the emulator it drives in sandbox mode.
pub struct Launched {
    /// The coordinator.
    pub server: RunningServer,
    /// Sandbox details, in sandbox mode.
    pub sandbox: Option<SandboxInfo>,
    /// The demo user and its web device's token, in sandbox mode.
    pub demo: Option<crate::demo::Demo>,
    emulator: Option<EmulatorHandle>,
    /// Shares presence with the other nodes, with NATS.
    presence: Option<NatsPresence>,
}

impl Launched {
    /// Stops the coordinator, tells the other nodes its presence members are gone, then
    /// stops the emulator.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        if let Some(presence) = self.presence {
            presence.goodbye().await;
        }
        drop(self.emulator);
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = crate::http_server::bind(config.listen)
        .with_context(|| format!("listening on {}", config.listen))?;
    let launched = launch(&config, listener).await?;
    print_banner(&config, &launched);
    shutdown_signal().await;
    println!("shutting down");
    launched.shutdown().await;
    Ok(())
}

fn host_of(addr: SocketAddr) -> IpAddr {
    if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    }
}

/// A database URL fit for logs: the password of `scheme://user:password@host` becomes `***`.
fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// Opens the database and starts the coordinator for `config` on `listener` (with the
/// built-in emulator when no Telnyx API key is configured).
pub async fn launch(
    config: &Config,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<Launched> {
    // The URL scheme picks the backend: a shared PostgreSQL server, or an SQLite file.
    let url = &config.database_url;
    let opening = || format!("opening the database {}", redact_password(url));
    let store: Arc<dyn ringmaster_store::Store> = if crate::config::is_postgres(url) {
        // Nodes starting together do not race: the migrator holds a PostgreSQL advisory
        // lock while it applies migrations (see `ringmaster migrate`).
        Arc::new(PostgresStore::open(url).await.with_context(opening)?)
    } else {
        Arc::new(
            SqliteStore::open_with(url, config.limits.sqlite_sync)
                .await
                .with_context(opening)?,
        )
    };
    let addr = listener.local_addr()?;
    let host = host_of(addr);

    let mut emulator = None;
    let (telnyx, public_key, connection_id, sandbox) = match &config.telnyx {
        Some(t) => (
            TelnyxClient::new(
                ClientConfig::new(t.api_key.expose()).with_base_url(api_root(&t.api_url)),
            )?,
            t.public_key.clone(),
            t.connection_id.clone(),
            None,
        ),
        None => {
            let webhook_url = format!(
                "http://{}/webhooks/telnyx",
                SocketAddr::new(host, addr.port())
            );
            let emu = Emulator::start(EmulatorConfig::new(
                SocketAddr::new(host, 0),
                Some(webhook_url),
            ))
            .await
            .context("starting the built-in Telnyx emulator")?;
            let client =
                TelnyxClient::new(ClientConfig::new("sandbox").with_base_url(emu.base_url()))?;
            let info = SandboxInfo {
                emulator_url: emu.control_url(),
                telnyx_api_url: emu.base_url(),
            };
            let key = emu.public_key_b64();
            emulator = Some(emu);
            (client, key, SANDBOX_CONNECTION_ID.to_owned(), Some(info))
        }
    };

    let mut settings = Settings::new(config.admin_token.expose(), connection_id);
    settings.token_secret = config.token_secret.expose().to_owned();
    settings.ring_timeout_secs = config.ring_timeout_secs;
    settings.dial_limit = DialLimit::per_second(config.dials_per_sec);
    settings.http = config.limits.http;
    settings.rate_limits = config.limits.rates;
    settings.device_token_ttl = config.limits.device_token_ttl;
    settings.lease = config.limits.lease;
    settings.session_cache = config.limits.session_cache;
    settings.node_id = config.node_id.clone();
    settings.retention =
        crate::retention::RetentionPolicy::with_history_days(config.history_retention_days)
            .with_quality_days(config.quality_retention_days);
    settings.metrics_listen = config.metrics_listen;
    if let Some(secs) = config.webhook_disable_after_secs {
        settings.webhooks.disable_after = Duration::from_secs(secs);
    }
    let pusher = &config.pusher;
    let mut realtime = RealtimeConfig::new(&pusher.app_id, &pusher.key, pusher.secret.expose());
    realtime.max_connections_per_ip = config.limits.ws_max_per_ip;
    realtime.subscribe_timeout = config.limits.ws_subscribe_timeout;
    let (hub, presence) = match &config.nats_url {
        Some(nats_url) => {
            let fanout_config = NatsFanoutConfig::for_app(nats_url, &realtime)
                .map_err(|e| ConfigError(e.into()))?;
            let presence_config =
                NatsPresenceConfig::for_app(&realtime, config.limits.presence_timeout)
                    .map_err(|e| ConfigError(e.into()))?;
            let fanout = NatsFanout::connect(fanout_config)
                .await
                .context("connecting to NATS for cross-node fan-out")?;
            tracing::info!(
                subject = fanout.subject(),
                "realtime events fan out through NATS"
            );
            let client = fanout.client();
            let hub = RealtimeHub::with_fanout(realtime, fanout);
            let presence = NatsPresence::start(client, &hub, presence_config)
                .await
                .context("subscribing to NATS for cluster-wide presence")?;
            tracing::info!(
                subject = presence.subject(),
                "presence is shared through NATS"
            );
            (hub, Some(presence))
        }
        None => (RealtimeHub::new(realtime), None),
    };
    let push = sender_from_config(config.fcm.as_ref(), config.apns.as_ref())
        .map_err(ConfigError)?
        .map(|sender| {
            let ring = Duration::from_secs(u64::from(config.ring_timeout_secs));
            Arc::new(PushNotifier::new(store.clone(), Arc::new(sender), ring)) as Arc<dyn Notifier>
        });
    let notifiers = Notifiers {
        websocket: Some(Arc::new(WebSocketNotifier::new(hub.clone()))),
        push,
    };
    let server = start(
        listener,
        ServerSetup {
            store,
            telnyx,
            webhook_public_key: public_key,
            clock: Arc::new(SystemClock),
            notifiers,
            settings,
            sandbox: sandbox.clone(),
            realtime: Some(hub),
            extra_routes: None,
        },
    )
    .await?;
    // The demo is a convenience: a database where its number or devices are taken otherwise
    // still serves, without the sign-in link.
    let demo = match &sandbox {
        Some(_) => match crate::demo::ensure(server.state()).await {
            Ok(demo) => Some(demo),
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "no demo user");
                eprintln!("WARNING: no demo web device: {e:#}");
                None
            }
        },
        None => None,
    };
    Ok(Launched {
        server,
        sandbox,
        demo,
        emulator,
        presence,
    })
}

fn print_banner(config: &Config, launched: &Launched) {
    let addr = launched.server.addr();
    let host = host_of(addr);
    let pusher = &config.pusher;
    let sandbox = &launched.sandbox;
    let url = format!("http://{}", SocketAddr::new(host, addr.port()));
    println!(
        "ringmaster listening on {url} (database {}, node {})",
        redact_password(&config.database_url),
        config.node_id
    );
    match &config.nats_url {
        Some(nats) => println!("cross-node fan-out: NATS {}", redact_password(nats)),
        None => println!("cross-node fan-out: off (set RINGMASTER_NATS_URL to run several nodes)"),
    }
    println!(
        "WebSocket (Pusher protocol 7): ws://{}/app/{}  app id {}  channel auth {url}/broadcasting/auth",
        SocketAddr::new(host, addr.port()),
        pusher.key,
        pusher.app_id
    );
    match &config.generated_secrets {
        Some(SecretsHome::File(path)) => println!(
            "secrets not configured (admin token, Pusher secret, token secret) are kept in {}",
            path.display()
        ),
        Some(SecretsHome::Memory) => println!(
            "WARNING: secrets not configured are kept in memory only (database {}): device \
             tokens issued now stop working on restart; set RINGMASTER_TOKEN_SECRET",
            redact_password(&config.database_url)
        ),
        None => {}
    }
    println!("web console: {url}/  (operator view: {url}/operator)");
    match launched.server.metrics_addr() {
        Some(metrics) => println!("Prometheus metrics: http://{metrics}/metrics"),
        None => println!("Prometheus metrics: {url}/metrics"),
    }
    println!(
        "Telnyx dial limit: {} per second (queued beyond that)",
        config.dials_per_sec
    );
    let on_off = |on: bool| if on { "on" } else { "off" };
    println!(
        "push: FCM {}, APNs {}",
        on_off(config.fcm.is_some()),
        on_off(config.apns.is_some())
    );
    if let Some(sandbox) = &sandbox {
        println!();
        println!(
            "SANDBOX MODE: no Telnyx API key is set, so the built-in Telnyx emulator plays Telnyx."
        );
        println!("  emulator control API: {}", sandbox.emulator_url);
        // Sandbox only: the operator needs these to try the demo, and nothing real is at stake.
        let admin_token = config.admin_token.expose();
        println!("  admin token:          {admin_token}");
        println!(
            "  Pusher app:           id {}  key {}  secret {}",
            pusher.app_id,
            pusher.key,
            pusher.secret.expose()
        );
        if let Some(demo) = &launched.demo {
            println!();
            println!(
                "Open the web console as the demo user's web device ({} rings its iPhone, Android and web devices):",
                demo.number
            );
            println!("  {url}/?device_token={}", demo.web_token);
            println!(
                "  operator view: {url}/operator?admin_token={}",
                config.admin_token.expose()
            );
        }
        println!();
        println!("Watch a simultaneous ring (a demo user with 3 devices; one answers):");
        println!("  ringmaster call --server {url} --admin-token {admin_token}");
        println!(
            "  (from a checkout: cargo run --release -- call --server {url} --admin-token {admin_token})"
        );
        println!();
        println!("Or step by step with curl:");
        println!("  curl -s -H 'Authorization: Bearer {admin_token}' -d '{{\"name\":\"Ada\",\"numbers\":[\"+15550100001\"]}}' -H 'Content-Type: application/json' {url}/api/admin/users");
        println!("  curl -s -H 'Authorization: Bearer {admin_token}' -d '{{\"platform\":\"web\",\"sip_uri\":\"sip:ada@example.com\"}}' -H 'Content-Type: application/json' {url}/api/admin/users/USER_ID/devices");
        println!(
            "  curl -s -d '{{\"from\":\"+15557654321\",\"to\":\"+15550100001\"}}' {}/calls",
            sandbox.emulator_url
        );
        println!("  curl -s -H 'Authorization: Bearer DEVICE_TOKEN' {url}/api/voip/call-status/CALL_SESSION_ID");
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM"),
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_password;

    #[test]
    fn database_passwords_never_reach_the_logs() {
        assert_eq!(
            redact_password("postgres://app:s3cret@db.internal:5432/ringmaster"),
            "postgres://app:***@db.internal:5432/ringmaster"
        );
        assert_eq!(
            redact_password("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redact_password("sqlite://data/ringmaster.db"),
            "sqlite://data/ringmaster.db"
        );
        assert_eq!(redact_password("sqlite::memory:"), "sqlite::memory:");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_root_always_ends_in_v2() {
        assert_eq!(
            api_root("https://api.telnyx.com"),
            "https://api.telnyx.com/v2"
        );
        assert_eq!(
            api_root("https://api.telnyx.com/v2/"),
            "https://api.telnyx.com/v2"
        );
        assert_eq!(
            api_root("http://127.0.0.1:8090"),
            "http://127.0.0.1:8090/v2"
        );
    }

    #[test]
    fn secrets_are_random_hex() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
