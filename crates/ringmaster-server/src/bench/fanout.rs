//! `ringmaster bench fanout`: N WebSocket clients subscribe to one public channel, events are
//! published at a steady rate through the signed HTTP API (`POST /apps/{id}/events`), and each
//! delivery's latency (publish call started → frame read by the client) is recorded. Reports
//! p50/p99, the server's memory per subscribed socket and the connect rate.
//!
//! Without `--url` it starts `ringmaster serve` (sandbox mode, temporary database) as a child
//! process, so the server's memory is measured apart from the clients'. With `--url` it drives
//! any Pusher-protocol server, e.g. soketi (`scripts/bench-peers`); pass `--server-pid` for
//! its memory.

use anyhow::Context as _;
use clap::Args;
use futures::{SinkExt as _, StreamExt as _};
use ringmaster_realtime::signing::sign_api_request;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The channel every socket subscribes to.
const CHANNEL: &str = "bench-fanout";
/// How long deliveries are awaited after the last publish.
const DRAIN: Duration = Duration::from_secs(10);

/// `ringmaster bench fanout` arguments.
#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Sockets subscribed to the channel.
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Events published.
    #[arg(long, default_value_t = 100)]
    pub events: usize,
    /// Events per second.
    #[arg(long, default_value_t = 20)]
    pub rate: u32,
    /// Server to drive (`http://host:port`); default: a `ringmaster serve` child process.
    #[arg(long)]
    pub url: Option<String>,
    /// Pusher app id of the server.
    #[arg(long, default_value = "ringmaster")]
    pub app_id: String,
    /// Pusher app key.
    #[arg(long, default_value = "ringmaster-key")]
    pub key: String,
    /// Pusher app secret.
    #[arg(long, default_value = "bench-secret-0123456789")]
    pub secret: String,
    /// Process id of the server behind `--url`, for its memory figure (Linux).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The binary whose `serve` is started when no `--url` is given (default: this one), e.g.
    /// a build of another commit for a before/after comparison with the same generator.
    #[arg(long)]
    pub server_bin: Option<std::path::PathBuf>,
    /// CPUs (a `taskset -c` list, e.g. `0`) the `serve` child process is confined to, so that
    /// it and this generator do not compete for the same cores. A server behind `--url` is
    /// pinned by whoever starts it (`scripts/bench-peers` with `PIN=1`).
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// Connection handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Wait for each publish's response before the next tick (the method before 2026-12-07).
    /// By default publishes go out on schedule whatever the server's response time: a server
    /// that answers only after writing the fan-out would otherwise hold up the next event,
    /// and the generator's own backlog of frames would delay its next request.
    #[arg(long)]
    pub await_each_publish: bool,
    /// A label for the result line (e.g. `ringmaster`, `soketi`).
    #[arg(long, default_value = "ringmaster")]
    pub label: String,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct FanoutResult {
    /// The `--label`.
    pub label: String,
    /// Sockets subscribed.
    pub sockets: usize,
    /// Events published.
    pub events: usize,
    /// Deliveries expected (sockets × events) and received.
    pub expected: usize,
    /// Deliveries received before the drain timeout.
    pub delivered: usize,
    /// Median delivery latency, ms.
    pub p50_ms: f64,
    /// 99th percentile delivery latency, ms.
    pub p99_ms: f64,
    /// Slowest delivery, ms.
    pub max_ms: f64,
    /// Seconds to connect and subscribe every socket.
    pub connect_secs: f64,
    /// Sockets connected and subscribed per second.
    pub connects_per_sec: f64,
    /// Server resident memory added per subscribed socket, KB (when the pid is known).
    pub kb_per_socket: Option<f64>,
    /// CPU seconds the server used from the first publish until the last delivery or the
    /// drain timeout (when the pid is known, Linux).
    pub server_cpu_secs: Option<f64>,
    /// CPU seconds this generator used over the same span.
    pub generator_cpu_secs: Option<f64>,
}

/// Runs the benchmark and prints its result.
pub fn run(args: FanoutArgs) -> anyhow::Result<()> {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(measure(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "{:<12} sockets {:>6}  delivered {}/{}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  connect {:>6.2} s ({:>7.0}/s)  memory {}  cpu server {} generator {}",
            result.label,
            result.sockets,
            result.delivered,
            result.expected,
            result.p50_ms,
            result.p99_ms,
            result.max_ms,
            result.connect_secs,
            result.connects_per_sec,
            result
                .kb_per_socket
                .map_or("n/a".to_owned(), |kb| format!("{kb:.1} KB/socket")),
            secs(result.server_cpu_secs),
            secs(result.generator_cpu_secs),
        );
    }
    Ok(())
}

fn secs(cpu: Option<f64>) -> String {
    cpu.map_or("n/a".to_owned(), |s| format!("{s:.2} s"))
}

/// A `ringmaster serve` child process on a free port, killed on drop.
struct Child {
    process: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

async fn spawn_server(args: &FanoutArgs) -> anyhow::Result<Child> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let exe = match &args.server_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe().context("locating the ringmaster binary")?,
    };
    // `taskset` execs the server, so the child's pid stays the server's (for its memory).
    let mut command = match &args.server_cpus {
        Some(cpus) => {
            let mut c = tokio::process::Command::new("taskset");
            c.arg("-c").arg(cpus).arg(exe);
            c
        }
        None => tokio::process::Command::new(exe),
    };
    let process = command
        .arg("serve")
        .env("RINGMASTER_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "RINGMASTER_DATABASE_URL",
            format!("sqlite://{}/bench.db", dir.path().display()),
        )
        .env("RINGMASTER_PUSHER_APP_ID", &args.app_id)
        .env("RINGMASTER_PUSHER_KEY", &args.key)
        .env("RINGMASTER_PUSHER_SECRET", &args.secret)
        .env("RINGMASTER_WS_MAX_PER_IP", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting ringmaster serve")?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        anyhow::ensure!(Instant::now() < deadline, "ringmaster serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Child {
        process,
        url,
        _dir: dir,
    })
}

/// Resident memory of a process in KB (Linux `/proc`).
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of a process in seconds, from `/proc/PID/stat` (Linux).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are space-separated.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // The kernel reports these in USER_HZ, 100 on every Linux ABI.
    Some((utime + stime) / 100.0)
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The event data: when the publish call started.
#[derive(Serialize, Deserialize)]
struct Tick {
    sent_us: u64,
}

#[derive(Deserialize)]
struct Frame {
    event: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_frame(ws: &mut Socket) -> anyhow::Result<Frame> {
    loop {
        match ws.next().await.context("connection closed")?? {
            Message::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
            Message::Close(frame) => anyhow::bail!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Bytes each client socket reads at a time. Tungstenite's default (128 KiB) is zero-filled
/// before every read: with thousands of sockets that memset was half of the generator's CPU,
/// and the generator, not the server, set the latency.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// Connects one socket and subscribes it to [`CHANNEL`].
async fn connect(ws_url: &str) -> anyhow::Result<Socket> {
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(ws_url, Some(config), false).await?;
    let hello = next_frame(&mut ws).await?;
    anyhow::ensure!(
        hello.event == "pusher:connection_established",
        "unexpected first frame {}",
        hello.event
    );
    let subscribe = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": CHANNEL}});
    ws.send(Message::Text(subscribe.to_string().into())).await?;
    let ok = next_frame(&mut ws).await?;
    anyhow::ensure!(
        ok.event == "pusher_internal:subscription_succeeded",
        "subscribe refused: {}",
        ok.event
    );
    Ok(ws)
}

/// Reads a subscribed socket until it closes, sending each event's latency (µs).
async fn listen(ws: Socket, latencies: mpsc::UnboundedSender<u64>) {
    let (mut sink, mut stream) = ws.split();
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let received = unix_micros();
        let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
            continue;
        };
        match frame.event.as_str() {
            "tick" => {
                let tick = frame
                    .data
                    .as_ref()
                    .and_then(|d| d.as_str())
                    .and_then(|d| serde_json::from_str::<Tick>(d).ok());
                if let Some(tick) = tick {
                    let _ = latencies.send(received.saturating_sub(tick.sent_us));
                }
            }
            "pusher:ping" => {
                let pong = r#"{"event":"pusher:pong","data":{}}"#;
                if sink.send(Message::Text(pong.into())).await.is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// Connects, publishes and measures once.
pub async fn measure(args: &FanoutArgs) -> anyhow::Result<FanoutResult> {
    anyhow::ensure!(
        args.sockets > 0 && args.events > 0 && args.rate > 0,
        "nothing to measure"
    );
    let child = match &args.url {
        Some(_) => None,
        None => Some(spawn_server(args).await?),
    };
    let base = args
        .url
        .clone()
        .or_else(|| child.as_ref().map(|c| c.url.clone()))
        .context("no server")?
        .trim_end_matches('/')
        .to_owned();
    let pid = args
        .server_pid
        .or_else(|| child.as_ref().and_then(|c| c.process.id()));
    let ws_url = format!(
        "{}/app/{}?protocol=7&client=ringmaster-bench&version=1",
        base.replacen("http", "ws", 1),
        args.key
    );
    let before = pid.and_then(rss_kb);

    let (tx, mut rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let started = Instant::now();
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..args.sockets {
        let (gate, ws_url) = (gate.clone(), ws_url.clone());
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            connect(&ws_url).await
        });
    }
    let mut listeners = tokio::task::JoinSet::new();
    while let Some(joined) = connecting.join_next().await {
        let ws = joined??;
        listeners.spawn(listen(ws, tx.clone()));
    }
    drop(tx);
    let connect_secs = started.elapsed().as_secs_f64();
    // Let the server settle before reading its memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = pid.and_then(rss_kb);

    let server_pid = pid.map(|p| p.to_string());
    let cpu_before = (server_pid.as_deref().and_then(cpu_secs), cpu_secs("self"));
    let http = reqwest::Client::new();
    let path = format!("/apps/{}/events", args.app_id);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    let mut publishes = tokio::task::JoinSet::new();
    for _ in 0..args.events {
        ticker.tick().await;
        let data = serde_json::to_string(&Tick {
            sent_us: unix_micros(),
        })?;
        let body =
            serde_json::json!({"name": "tick", "channel": CHANNEL, "data": data}).to_string();
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        let query = sign_api_request(&args.key, &args.secret, "POST", &path, body.as_bytes(), now);
        let publish = publish(http.clone(), format!("{base}{path}?{query}"), body);
        if args.await_each_publish {
            publish.await?;
        } else {
            publishes.spawn(publish);
        }
    }
    while let Some(published) = publishes.join_next().await {
        published??;
    }
    let expected = args.sockets * args.events;
    let mut latencies = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + DRAIN;
    while latencies.len() < expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(us)) => latencies.push(us),
            _ => break,
        }
    }
    let cpu_used = |before: Option<f64>, pid: Option<&str>| {
        before
            .zip(pid.and_then(cpu_secs))
            .map(|(b, a)| (a - b).max(0.0))
    };
    let server_cpu_secs = cpu_used(cpu_before.0, server_pid.as_deref());
    let generator_cpu_secs = cpu_used(cpu_before.1, Some("self"));
    listeners.abort_all();
    latencies.sort_unstable();
    Ok(FanoutResult {
        label: args.label.clone(),
        sockets: args.sockets,
        events: args.events,
        expected,
        delivered: latencies.len(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: percentile(&latencies, 1.0),
        connect_secs,
        connects_per_sec: args.sockets as f64 / connect_secs,
        kb_per_socket: before
            .zip(after)
            .map(|(b, a)| a.saturating_sub(b) as f64 / args.sockets as f64),
        server_cpu_secs,
        generator_cpu_secs,
    })
}

/// Sends one signed publish request; an answer other than 2xx is an error.
async fn publish(http: reqwest::Client, url: String, body: String) -> anyhow::Result<()> {
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "publish refused: {} {}",
        resp.status(),
        resp.text().await.unwrap_or_default()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_rank_rounded_up() {
        let v: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
