//! `ringmaster bench ingest`: how fast the coordinator acknowledges Telnyx webhooks, against a
//! ceiling measured in the same run.
//!
//! Every scenario posts the same kind of pre-signed `call.initiated` webhooks (one new inbound
//! call each) from many concurrent connections on loopback, and times each acknowledgement:
//! - `ceiling`: a minimal durable ingest endpoint started by the bench (Ed25519 verify, typed
//!   parse, one SQLite insert of the event id per webhook, one transaction each);
//! - `new-call`: the real coordinator (SQLite store in a temporary directory, the built-in
//!   Telnyx emulator), each webhook a new call to a user with 3 devices;
//! - `unknown-number`: the real coordinator, webhooks for a number no user owns;
//! - with a PostgreSQL server (`--database-url`): `pg-1-node` and `pg-2-nodes`, new calls
//!   against one coordinator, then two sharing one fresh schema (connections split evenly
//!   between them, as behind a load balancer), both in this process.
//!
//! Each is bounded by a webhook count and a time limit; the figures are printed as a table
//! (or JSON) with their ratio to the ceiling.

use crate::app::{Settings, DEFAULT_SESSION_CACHE};
use crate::clock::{unix_secs, SystemClock};
use crate::dial_limit::DialLimit;
use crate::engine::{Engine, EngineStats};
use crate::notify::Notifiers;
use crate::server::{start, RunningServer, ServerSetup};
use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use ringmaster_core::{CallControlId, CallLegId, CallSessionId, DeviceId, TenantId, UserId};
use ringmaster_store::{Device, DevicePlatform, PostgresStore, SqliteStore, Store, User};
use ringmaster_telnyx::webhook::{CallInitiated, CallRef, Direction};
use ringmaster_telnyx::{
    ClientConfig, Emulator, EmulatorConfig, EmulatorHandle, Event, TelnyxClient, WebhookEvent,
    WebhookSigner, WebhookVerifier,
};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The number the benchmark user owns.
const USER_NUMBER: &str = "+15550100000";
/// A number nobody owns.
const UNKNOWN_NUMBER: &str = "+15550199999";

/// How much load one run puts on each scenario.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct IngestPlan {
    /// Webhooks per scenario.
    pub webhooks: usize,
    /// Concurrent connections.
    pub connections: usize,
    /// Longest time one scenario may run; it stops early with what it measured.
    pub time_limit: Duration,
    /// The coordinators' `Settings::session_cache` (0: no session cache, no queueing).
    pub session_cache: usize,
}

impl IngestPlan {
    /// A few seconds in total: a smoke test, figures not meaningful.
    pub fn quick() -> Self {
        Self {
            webhooks: 300,
            connections: 8,
            time_limit: Duration::from_secs(20),
            session_cache: DEFAULT_SESSION_CACHE,
        }
    }

    /// The recorded benchmark.
    pub fn full() -> Self {
        Self {
            webhooks: 20_000,
            connections: 64,
            time_limit: Duration::from_secs(60),
            session_cache: DEFAULT_SESSION_CACHE,
        }
    }
}

/// What one scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// Webhooks acknowledged with 200.
    pub acknowledged: usize,
    /// Webhooks answered otherwise, or not at all.
    pub failed: usize,
    /// Acknowledged webhooks per second.
    pub per_sec: f64,
    /// Median acknowledgement latency, ms.
    pub p50_ms: f64,
    /// 99th percentile acknowledgement latency, ms.
    pub p99_ms: f64,
    /// Throughput relative to the ceiling.
    pub ratio: f64,
    /// p99 relative to the ceiling's p99.
    pub p99_ratio: f64,
    /// CPU time of this whole process (server, emulator and load generator) per acknowledged
    /// webhook while the scenario ran, ms; less sensitive to other load on the host than
    /// throughput. `None` where `/proc/self/stat` cannot be read.
    pub cpu_ms: Option<f64>,
    /// What the coordinator's engine did per acknowledged webhook (the coordinator's
    /// SQLite scenarios), counted until its follow-up work (dials, their results, the device
    /// legs' webhooks) has settled.
    pub engine: Option<EnginePerCall>,
}

/// Engine work per acknowledged webhook of a scenario.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct EnginePerCall {
    /// Session commits written.
    pub commits: f64,
    /// Commits that lost the compare-and-set (each one a repeated load, handle and commit).
    pub cas_conflicts: f64,
    /// Sessions read from the store by the engine.
    pub store_reads: f64,
    /// Inputs served from the engine's session cache instead of a store read.
    pub cache_hits: f64,
}

impl EnginePerCall {
    fn between(before: EngineStats, after: EngineStats, calls: usize) -> Self {
        let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / calls.max(1) as f64;
        Self {
            commits: per(after.commits, before.commits),
            cas_conflicts: per(after.cas_conflicts, before.cas_conflicts),
            store_reads: per(after.loads, before.loads),
            cache_hits: per(after.cache_hits, before.cache_hits),
        }
    }
}

/// Waits until `engine` has committed nothing for a while (the follow-ups of the last
/// webhooks have landed), at most a few seconds.
async fn settle(engine: &Engine) -> EngineStats {
    let mut last = engine.stats();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = engine.stats();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct IngestReport {
    /// The load applied.
    pub plan: IngestPlan,
    /// Ceiling first, then the coordinator's scenarios.
    pub scenarios: Vec<ScenarioResult>,
}

/// One webhook ready to post.
#[derive(Clone)]
struct Signed {
    timestamp: String,
    signature: String,
    body: Bytes,
}

/// `count` signed `call.initiated` webhooks of new inbound calls to `to`, ids prefixed by
/// `tag` so scenarios never collide.
fn webhooks(signer: &WebhookSigner, tag: &str, to: &str, count: usize) -> Vec<Signed> {
    let timestamp = unix_secs().to_string();
    (0..count)
        .map(|i| {
            let event = WebhookEvent {
                id: format!("bench-{tag}-{i}"),
                occurred_at: crate::clock::system_now(),
                meta: None,
                event: Event::CallInitiated(CallInitiated {
                    call: CallRef {
                        call_control_id: Some(CallControlId::new(format!("v3:bench-{tag}-{i}"))),
                        call_leg_id: CallLegId::new(format!("leg-{tag}-{i}")),
                        call_session_id: CallSessionId::new(format!("session-{tag}-{i}")),
                        connection_id: Some("bench".into()),
                        client_state: None,
                        from: Some(format!("+1555{:07}", i % 10_000_000)),
                        to: Some(to.to_owned()),
                    },
                    direction: Direction::Incoming,
                    state: Some("parked".into()),
                    start_time: None,
                    caller_id_name: None,
                    custom_headers: None,
                    tags: None,
                }),
            };
            let body = Bytes::from(event.to_bytes());
            Signed {
                signature: signer.sign(&timestamp, &body),
                timestamp: timestamp.clone(),
                body,
            }
        })
        .collect()
}

/// Posts every webhook from `plan.connections` connections, connection `i` to
/// `urls[i % urls.len()]`; latencies of the 200s.
async fn load(
    name: &str,
    urls: &[String],
    hooks: Vec<Signed>,
    plan: &IngestPlan,
) -> anyhow::Result<(Vec<Duration>, usize, Duration)> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.connections)
        .build()?;
    let hooks = Arc::new(hooks);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(hooks.len())));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + plan.time_limit;
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..plan.connections {
        let (http, hooks, next, done) = (http.clone(), hooks.clone(), next.clone(), done.clone());
        let (latencies, failed) = (latencies.clone(), failed.clone());
        let url = urls[i % urls.len()].clone();
        workers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= hooks.len() || Instant::now() >= deadline {
                    break;
                }
                let hook = &hooks[i];
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("telnyx-signature-ed25519", &hook.signature)
                    .header("telnyx-timestamp", &hook.timestamp)
                    .body(hook.body.clone())
                    .send()
                    .await;
                let ok = match response {
                    Ok(r) => r.status() == StatusCode::OK && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    mine.push(sent.elapsed());
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(mine);
        });
    }
    let total = hooks.len();
    let progress = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            bar(name, done.load(Ordering::Relaxed), total);
        }
    };
    tokio::select! {
        _ = async { while workers.join_next().await.is_some() {} } => {}
        _ = progress => {}
    }
    let elapsed = started.elapsed();
    bar(name, done.load(Ordering::Relaxed), total);
    eprintln!();
    let latencies = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((latencies, failed.load(Ordering::Relaxed), elapsed))
}

/// User plus system CPU time this process has used, from `/proc/self/stat` (Linux).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime
    // are the 14th and 15th fields, in clock ticks (USER_HZ, 100 on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// [`load`], with the process CPU time it took.
async fn measured(
    name: &str,
    urls: &[String],
    hooks: Vec<Signed>,
    plan: &IngestPlan,
) -> anyhow::Result<ScenarioResult> {
    let cpu_before = process_cpu();
    let (lat, failed, elapsed) = load(name, urls, hooks, plan).await?;
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    let mut result = summarise(name, lat, failed, elapsed);
    result.cpu_ms = cpu.map(|c| c.as_secs_f64() * 1000.0 / result.acknowledged.max(1) as f64);
    Ok(result)
}

/// Redraws a progress bar on stderr.
pub(super) fn bar(name: &str, done: usize, total: usize) {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    eprint!(
        "\r{name:<15} [{}{}] {done}/{total}",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    );
    let _ = std::io::stderr().flush();
}

/// The `p`th percentile of `sorted`, in milliseconds (0 when empty).
pub(super) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn summarise(
    name: &str,
    mut latencies: Vec<Duration>,
    failed: usize,
    elapsed: Duration,
) -> ScenarioResult {
    latencies.sort_unstable();
    ScenarioResult {
        name: name.to_owned(),
        acknowledged: latencies.len(),
        failed,
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        ratio: 1.0,
        p99_ratio: 1.0,
        cpu_ms: None,
        engine: None,
    }
}

/// The ceiling: verify, parse, one durable insert per webhook.
#[derive(Clone)]
struct Ceiling {
    verifier: Arc<WebhookVerifier>,
    db: SqlitePool,
}

async fn ceiling_ingest(State(c): State<Ceiling>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if c.verifier
        .verify_headers(&headers, &body, unix_secs())
        .is_err()
    {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = WebhookEvent::parse(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let stored = async {
        let mut tx = c.db.begin().await?;
        sqlx::query("INSERT OR IGNORE INTO events (id) VALUES (?)")
            .bind(&event.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    };
    match stored.await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Starts the ceiling endpoint on loopback; returns its URL.
async fn start_ceiling(dir: &std::path::Path, signer: &WebhookSigner) -> anyhow::Result<String> {
    // The same durability as the store's default (`RINGMASTER_SQLITE_SYNC=full`): WAL, every
    // commit on disk before the answer, one writer. A ceiling with weaker durability would
    // make the coordinator look slower than it is.
    let options = SqliteConnectOptions::new()
        .filename(dir.join("ceiling.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::query("CREATE TABLE events (id TEXT PRIMARY KEY NOT NULL)")
        .execute(&db)
        .await?;
    let state = Ceiling {
        verifier: Arc::new(signer.verifier()),
        db,
    };
    let app = axum::Router::new()
        .route("/webhooks/telnyx", post(ceiling_ingest))
        .with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/telnyx", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Adds a user owning `number` with three devices (iOS, Android, web; SIP URIs from
/// [`device_uri`]) to `store`.
pub(super) async fn seed_user(store: &dyn Store, user: &str, number: &str) -> anyhow::Result<()> {
    let now = crate::clock::system_now();
    store
        .create_user(User {
            id: UserId::new(user),
            tenant_id: TenantId::new("bench"),
            name: "Bench".into(),
            numbers: vec![number.into()],
            call_waiting: true,
            voicemail_enabled: false,
            created_at: now,
        })
        .await?;
    for (i, platform) in DEVICE_PLATFORMS.into_iter().enumerate() {
        store
            .create_device(Device {
                id: DeviceId::new(format!("{user}-device-{i}")),
                user_id: UserId::new(user),
                platform,
                sip_uri: device_uri(user, i),
                token_hash: format!("unused-{user}-{i}"),
                push_token: None,
                push_provider: None,
                revoked: false,
                created_at: now,
            })
            .await?;
    }
    Ok(())
}

/// The platforms of a seeded user's devices, in order.
pub(super) const DEVICE_PLATFORMS: [DevicePlatform; 3] = [
    DevicePlatform::Ios,
    DevicePlatform::Android,
    DevicePlatform::Web,
];

/// The SIP URI of device `i` of a seeded user.
pub(super) fn device_uri(user: &str, i: usize) -> String {
    format!("sip:{user}-{i}@sip.telnyx.com")
}

/// Starts the coordinator on loopback over `store`, with the emulator (signing with `signer`)
/// as Telnyx; `configure` adjusts the settings. Returns it, the emulator and the webhook URL.
pub(super) async fn start_coordinator(
    store: Arc<dyn Store>,
    signer: &WebhookSigner,
    notifiers: Notifiers,
    configure: impl FnOnce(&mut Settings),
) -> anyhow::Result<(RunningServer, EmulatorHandle, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}/webhooks/telnyx");
    let mut emu = EmulatorConfig::new(
        "127.0.0.1:0".parse().context("loopback address")?,
        Some(url.clone()),
    );
    emu.signing_key = Some(signer.clone());
    let emulator = Emulator::start(emu).await?;
    let telnyx = TelnyxClient::new(ClientConfig::new("bench").with_base_url(emulator.base_url()))?;
    let mut settings = Settings::new("bench-admin", "bench");
    // The emulator has no dial limit; the bench measures the coordinator, not Telnyx's quota.
    settings.dial_limit = DialLimit {
        max_dials: u32::MAX,
        window: Duration::from_secs(1),
    };
    configure(&mut settings);
    let server = start(
        listener,
        ServerSetup {
            store,
            telnyx,
            webhook_public_key: signer.public_key_b64(),
            clock: Arc::new(SystemClock),
            notifiers,
            settings,
            sandbox: None,
            realtime: None,
            extra_routes: None,
        },
    )
    .await?;
    Ok((server, emulator, url))
}

/// Starts a coordinator on loopback over `store` (the emulator as Telnyx, no notifiers);
/// returns it and its webhook URL.
async fn start_server(
    store: Arc<dyn Store>,
    signer: &WebhookSigner,
    plan: &IngestPlan,
) -> anyhow::Result<(RunningServer, String)> {
    let (server, emulator, url) = start_coordinator(store, signer, Notifiers::none(), |s| {
        s.session_cache = plan.session_cache;
    })
    .await?;
    // The emulator lives as long as the process: the run ends right after.
    std::mem::forget(emulator);
    Ok((server, url))
}

/// `nodes` coordinators on one fresh PostgreSQL schema; their webhook URLs.
async fn start_pg_nodes(
    server: &str,
    nodes: usize,
    signer: &WebhookSigner,
    plan: &IngestPlan,
) -> anyhow::Result<(Vec<RunningServer>, Vec<String>, String)> {
    let schema = format!("rm_bench_{}_{nodes}n", std::process::id());
    let url = ringmaster_store::postgres::create_schema(server, &schema)
        .await
        .with_context(|| format!("creating schema {schema} on {server}"))?;
    let mut servers = Vec::new();
    let mut urls = Vec::new();
    for i in 0..nodes {
        let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&url).await?);
        if i == 0 {
            seed_user(store.as_ref(), "bench-user", USER_NUMBER).await?;
        }
        let (server, hook_url) = start_server(store, signer, plan).await?;
        servers.push(server);
        urls.push(hook_url);
    }
    Ok((servers, urls, schema))
}

/// Runs the ingest scenarios under `plan`; with `postgres` (a server URL) also one node
/// against two on a fresh schema there.
pub async fn ingest(plan: IngestPlan, postgres: Option<&str>) -> anyhow::Result<IngestReport> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let signer = WebhookSigner::generate();

    let ceiling_url = start_ceiling(dir.path(), &signer).await?;
    let hooks = webhooks(&signer, "ceiling", USER_NUMBER, plan.webhooks);
    let ceiling = measured("ceiling", &[ceiling_url], hooks, &plan).await?;
    let relative = |mut result: ScenarioResult| {
        result.ratio = result.per_sec / ceiling.per_sec.max(1e-9);
        result.p99_ratio = result.p99_ms / ceiling.p99_ms.max(1e-9);
        result
    };

    let url = format!("sqlite://{}/ringmaster.db", dir.path().display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await?);
    seed_user(store.as_ref(), "bench-user", USER_NUMBER).await?;
    let (server, url) = start_server(store, &signer, &plan).await?;
    let mut scenarios = vec![ceiling.clone()];
    let engine = server.state().engine.clone();
    for (name, to) in [
        ("new-call", USER_NUMBER),
        ("unknown-number", UNKNOWN_NUMBER),
    ] {
        let hooks = webhooks(&signer, name, to, plan.webhooks);
        let before = engine.stats();
        let mut result = relative(measured(name, std::slice::from_ref(&url), hooks, &plan).await?);
        let after = settle(&engine).await;
        result.engine = Some(EnginePerCall::between(before, after, result.acknowledged));
        scenarios.push(result);
    }
    server.abort();

    if let Some(pg) = postgres {
        for (name, nodes) in [("pg-1-node", 1), ("pg-2-nodes", 2)] {
            let (servers, urls, schema) = start_pg_nodes(pg, nodes, &signer, &plan).await?;
            let hooks = webhooks(&signer, name, USER_NUMBER, plan.webhooks);
            let result = measured(name, &urls, hooks, &plan).await;
            for server in servers {
                server.abort();
            }
            ringmaster_store::postgres::drop_schema(pg, &schema).await?;
            scenarios.push(relative(result?));
        }
    }
    Ok(IngestReport { plan, scenarios })
}

/// The report as a table.
pub fn table(report: &IngestReport) -> String {
    let mut out = format!(
        "{} webhooks per scenario, {} connections\n{:<15} {:>8} {:>7} {:>12} {:>9} {:>9} {:>7} {:>9} {:>7}\n",
        report.plan.webhooks,
        report.plan.connections,
        "scenario",
        "acked",
        "failed",
        "webhooks/s",
        "p50 ms",
        "p99 ms",
        "ratio",
        "p99 ratio",
        "cpu ms"
    );
    for s in &report.scenarios {
        out.push_str(&format!(
            "{:<15} {:>8} {:>7} {:>12.0} {:>9.2} {:>9.2} {:>6.2}x {:>8.2}x {:>7}\n",
            s.name,
            s.acknowledged,
            s.failed,
            s.per_sec,
            s.p50_ms,
            s.p99_ms,
            s.ratio,
            s.p99_ratio,
            s.cpu_ms.map_or("-".to_owned(), |c| format!("{c:.3}"))
        ));
    }
    let mut engine = report
        .scenarios
        .iter()
        .filter_map(|s| s.engine.map(|e| (s, e)))
        .peekable();
    if engine.peek().is_some() {
        out.push_str(&format!(
            "engine work per acknowledged webhook\n{:<15} {:>8} {:>13} {:>12} {:>11}\n",
            "scenario", "commits", "CAS conflicts", "store reads", "cache hits"
        ));
    }
    for (s, e) in engine {
        out.push_str(&format!(
            "{:<15} {:>8.2} {:>13.2} {:>12.2} {:>11.2}\n",
            s.name, e.commits, e.cas_conflicts, e.store_reads, e.cache_hits
        ));
    }
    out
}
